//! Latency of health checks and small agent uploads while heavy queries run.
//!
//! Starts Kiln in this process (the real edge and router on a loopback port, a temporary data
//! directory), stores one series whose merge has `--stacks` distinct stacks, then for
//! `--duration` runs two clients querying it back to back (flamebearer JSON of the whole tree),
//! `--agents` simulated agents uploading a small gzipped profile every `--interval` on kept-alive
//! connections, and one `/healthz` probe every 20 ms; then prints the latency percentiles.
//!
//! `cargo run --release -p kiln-server --example overload -- --stacks 1000000 --duration 30s`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::Compression;
use flate2::write::GzEncoder;
use kiln_server::api::{AppState, router};
use kiln_server::edge::{self, EdgeConfig};
use kiln_server::storage::{Store, StoreConfig};
use kiln_server::timespec::parse_duration;

#[derive(Debug, Parser)]
struct Args {
    /// Distinct stacks the heavy query merges.
    #[arg(long, default_value_t = 1_000_000)]
    stacks: usize,
    /// Heavy queries run at once, back to back.
    #[arg(long, default_value_t = 2)]
    queries: usize,
    /// Simulated agents, one kept-alive connection each.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Time between one agent's uploads.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    interval: Duration,
    /// How long to measure.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
}

/// A kept-alive HTTP/1.1 connection that reads `content-length` answers.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connects");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { reader: BufReader::new(stream) }
    }

    /// Sends one request and reads its answer; the status.
    fn send(&mut self, head: &str, body: &[u8]) -> std::io::Result<u16> {
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(line.clone()))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// `(p50, p99, max)` in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let store = runtime.block_on(Store::open_with(StoreConfig::new(dir.path()))).unwrap();
    let state = AppState::new(Arc::new(store));
    let metrics = state.metrics.clone();
    runtime.spawn(edge::serve(listener, router(state), metrics, EdgeConfig::default(), std::future::pending()));

    // The heavy series: uploads of 100 000 distinct stacks each.
    let started = Instant::now();
    let per_upload = 100_000.min(args.stacks);
    let mut conn = Conn::open(addr);
    for part in 0..args.stacks.div_ceil(per_upload) {
        let body: String = (0..per_upload)
            .map(|i| format!("main;service_{};handler_{};work_{};leaf_{part}_{i} 1\n", i % 7, i % 131, i % 1009))
            .collect();
        let body = gzip(body.as_bytes());
        let head = format!(
            "POST /ingest?name=big.cpu HTTP/1.1\r\nHost: k\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(conn.send(&head, &body).expect("stores"), 200);
    }
    println!("stored {} stacks in {:.1?}", args.stacks, started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let queries_done = Arc::new(AtomicU64::new(0));
    let mut heavy = Vec::new();
    for _ in 0..args.queries {
        let (stop, done) = (stop.clone(), queries_done.clone());
        heavy.push(std::thread::spawn(move || {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .write_all(b"GET /render?query=big.cpu HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer).unwrap();
                assert!(
                    answer.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                );
                took.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            took
        }));
    }
    // Let the heavy queries start before measuring.
    std::thread::sleep(Duration::from_millis(200));
    let deadline = Instant::now() + args.duration;
    let agents: Vec<_> = (0..args.agents)
        .map(|agent| {
            let interval = args.interval;
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut latencies = Vec::new();
                let mut tick = 0u64;
                // Spread the agents over the interval, as real ones are.
                std::thread::sleep(interval * agent as u32 / 20);
                while Instant::now() < deadline {
                    let folded: String = (0..200u64)
                        .map(|i| format!("main;serve;handler_{};work_{} {}\n", agent % 7, (i + tick) % 13, 1 + i % 5))
                        .collect();
                    let body = gzip(folded.as_bytes());
                    let head = format!(
                        "POST /ingest?name=agent.cpu%7Bagent%3D{agent}%7D HTTP/1.1\r\nHost: k\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let t = Instant::now();
                    assert_eq!(conn.send(&head, &body).expect("upload answered"), 200);
                    latencies.push(t.elapsed());
                    tick += 1;
                    std::thread::sleep(interval.saturating_sub(t.elapsed()));
                }
                latencies
            })
        })
        .collect();
    let mut health = Vec::new();
    let mut probe = Conn::open(addr);
    while Instant::now() < deadline {
        let t = Instant::now();
        assert_eq!(probe.send("GET /healthz HTTP/1.1\r\nHost: k\r\n\r\n", b"").expect("healthz answered"), 200);
        health.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let uploads: Vec<Duration> = agents.into_iter().flat_map(|a| a.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let queries: Vec<Duration> = heavy.into_iter().flat_map(|q| q.join().unwrap()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} cores; {} heavy queries of {} stacks over {:?}, {} agents every {:?}",
        cores, args.queries, args.stacks, args.duration, args.agents, args.interval
    );
    for (what, samples) in [("healthz", health), ("small upload", uploads), ("heavy query", queries)] {
        let n = samples.len();
        let (p50, p99, max) = percentiles(samples);
        println!("{what:>13}: n={n:>5}  p50 {p50:>8.1} ms  p99 {p99:>8.1} ms  max {max:>8.1} ms");
    }
    println!("heavy queries answered: {}", queries_done.load(Ordering::Relaxed));
}
