//! Soak load for `end2end/soak.sh`: N simulated agents, each on its own kept-alive HTTP/1.1
//! connection, upload a small folded profile every interval for a while; then a report of
//! connections, errors and ingest latency.
//!
//! Raw HTTP on tokio sockets, so that what is measured is Kiln and the connection behaviour is
//! exactly that of an agent: one connection, reused until the server closes it.
//!
//! `cargo run --example soak -- --addr 127.0.0.1:4040 --agents 200 --duration 10m`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use kiln_server::timespec::parse_duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

#[derive(Debug, Parser)]
struct Args {
    /// The Kiln to load.
    #[arg(long)]
    addr: SocketAddr,
    /// Simulated agents, one connection each.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// How long to run (`10m`, `120s`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Time between one agent's uploads.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// Longest wait for one response before it counts as an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    uploads: AtomicU64,
    errors: AtomicU64,
    closed_by_server: AtomicU64,
}

/// A folded profile of a few dozen stacks, different per agent and tick.
fn profile(agent: usize, tick: u64) -> String {
    let mut out = String::new();
    for i in 0..40u64 {
        let leaf = (i + tick) % 13;
        out.push_str(&format!("main;serve;handler_{};work_{leaf} {}\n", agent % 7, 1 + (i * 7 + tick) % 20));
    }
    out
}

enum Failure {
    /// The connection is unusable (reset, EOF, timeout): reconnect.
    Connection(String),
    /// An error status on a healthy connection.
    Status(u16),
}

/// Sends one upload on `stream` and reads the answer; `Ok(keep)` says whether the connection
/// may be reused.
async fn upload(stream: &mut TcpStream, buf: &mut Vec<u8>, agent: usize, tick: u64) -> Result<bool, Failure> {
    let body = profile(agent, tick);
    let request = format!(
        "POST /ingest?name=soak.cpu%7Bagent%3D{agent}%7D&format=folded HTTP/1.1\r\nhost: kiln\r\n\
         content-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let io = |e: std::io::Error| Failure::Connection(e.to_string());
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(Failure::Connection("server closed the connection before answering".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| Failure::Connection(head.clone()))?;
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(Failure::Connection("server closed the connection mid-response".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if status != 200 {
        return Err(Failure::Status(status));
    }
    Ok(!head.contains("connection: close"))
}

async fn agent(agent: usize, args: Arc<Args>, counters: Arc<Counters>, deadline: Instant) -> Vec<Duration> {
    let mut latencies = Vec::new();
    // Spread the agents over one interval, as real ones started at different times are.
    tokio::time::sleep(args.interval.mul_f64(agent as f64 / args.agents as f64)).await;
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    for tick in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(args.addr).await {
                Ok(conn) => {
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.set_nodelay(true);
                    stream.insert(conn)
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("agent {agent}: connect: {e}");
                    continue;
                }
            },
        };
        let started = Instant::now();
        match tokio::time::timeout(args.timeout, upload(conn, &mut buf, agent, tick)).await {
            Ok(Ok(keep)) => {
                latencies.push(started.elapsed());
                counters.uploads.fetch_add(1, Ordering::Relaxed);
                if !keep {
                    counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    stream = None;
                }
            }
            Ok(Err(Failure::Status(status))) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("agent {agent}: status {status}");
            }
            Ok(Err(Failure::Connection(e))) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("agent {agent}: {e}");
                stream = None;
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("agent {agent}: no answer within {:?}", args.timeout);
                stream = None;
            }
        }
    }
    latencies
}

/// `/metrics` on a connection of its own.
async fn metrics(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: kiln\r\nconnection: close\r\n\r\n").await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    let counters = Arc::new(Counters::default());
    let deadline = Instant::now() + args.duration;
    eprintln!(
        "soak: {} agents, one upload each per {:?}, for {:?}, against {}",
        args.agents, args.interval, args.duration, args.addr
    );
    let tasks: Vec<_> =
        (0..args.agents).map(|i| tokio::spawn(agent(i, args.clone(), counters.clone(), deadline))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("agent task"));
    }
    latencies.sort();
    let text = metrics(args.addr).await.unwrap_or_default();
    let accepted = metric(&text, "kiln_accepted_connections_total");
    let errors = counters.errors.load(Ordering::Relaxed);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("duration            {:?}", args.duration);
    println!("agents              {}", args.agents);
    println!("uploads ok          {}", counters.uploads.load(Ordering::Relaxed));
    println!("errors              {errors}");
    println!("connections opened  {} by the agents", counters.connects.load(Ordering::Relaxed));
    match accepted {
        // The metrics request is one connection more.
        Some(n) => println!("                    {} accepted by Kiln (kiln_accepted_connections_total - 1)", n - 1.0),
        None => println!("                    unknown on Kiln's side (no /metrics)"),
    }
    println!("closed by Kiln      {}", counters.closed_by_server.load(Ordering::Relaxed));
    println!(
        "ingest latency      p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    if let (Some(uploads), Some(rejected)) =
        (metric(&text, "kiln_ingest_uploads_total"), metric(&text, "kiln_ingest_errors_total"))
    {
        println!("Kiln counted        {uploads} uploads stored, {rejected} rejected");
    }
    if errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
