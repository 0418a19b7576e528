//! Open-loop ingest load against a real Kiln process: how many real agent uploads a second it
//! takes, their latency, and the server's CPU per upload.
//!
//! Starts `--kiln` (the release binary) as a child on a loopback port with a fresh data
//! directory, then replays captured agent requests (`--capture DIR` in the `requests.log` +
//! `bodies/` format of `server/tests/data/agents/`, or `--request HEAD --body BODY`) on
//! `--connections` kept-alive connections at `--rate` uploads a second in total, for
//! `--seconds`. Open loop: each upload has an intended start time on a fixed schedule and its
//! latency is counted from then, so a slow answer that delays the next upload on the same
//! connection shows in the latency instead of silently lowering the rate (no coordinated
//! omission). The generator itself is one thread, so that it takes as little of the machine as
//! it can.
//!
//! Pushed samples carry an `ID` that Kiln deduplicates; each replayed push gets a fresh one, so
//! every upload is stored like a new one.
//!
//! Prints uploads/s achieved, statuses, latency percentiles, and the server's user and system
//! CPU over the run (from `/proc/<pid>/stat`) divided by the uploads it answered.
//!
//! ```sh external
//! cargo build --release -p kiln-server --example ingest_load
//! target/release/examples/ingest_load --kiln target/release/kiln \
//!     --capture server/tests/data/agents/rust-v2 --connections 64 --rate 10000 --seconds 30
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use kiln_server::ingest::push::PushRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// The `kiln` binary to start (a release build for figures worth writing down).
    #[arg(long, default_value = "target/release/kiln")]
    kiln: PathBuf,
    /// A folder of captured requests: `requests.log` and `bodies/`. Repeat to mix agents.
    #[arg(long)]
    capture: Vec<PathBuf>,
    /// A request head as text (request line and headers), with `--body`.
    #[arg(long, requires = "body")]
    request: Option<PathBuf>,
    /// The body sent with `--request`.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Kept-alive connections, one upload in flight on each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Uploads a second, all connections together (the schedule, not a ceiling).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to measure, after `--warmup-seconds`.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Load before measuring starts (connections open, caches warm).
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Extra flags for `kiln serve` (e.g. `--kiln-arg=--block-duration=10s`).
    #[arg(long, allow_hyphen_values = true)]
    kiln_arg: Vec<String>,
}

/// One request to replay: its head up to the blank line (without `Content-Length`) and body.
#[derive(Clone)]
struct Replay {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Replay {
    fn bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head =
            format!("POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", self.path, self.body.len());
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Headers the generator writes itself, or that would change the replay's meaning.
fn kept_header(name: &str) -> bool {
    !matches!(name.to_ascii_lowercase().as_str(), "host" | "content-length" | "connection" | "transfer-encoding")
}

/// Reads a `requests.log` capture: `… POST <path>  body=…B -> bodies/<file>` lines, each
/// followed by its indented `name: value` headers (and `?param = value` notes, skipped).
fn read_capture(dir: &Path) -> Vec<Replay> {
    let log = std::fs::read_to_string(dir.join("requests.log"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("requests.log").display()));
    let mut replays: Vec<Replay> = Vec::new();
    for line in log.lines() {
        if let Some(at) = line.find(" POST ") {
            let rest = &line[at + 6..];
            let path = rest.split_whitespace().next().expect("a path").to_string();
            let file = rest.rsplit("-> ").next().expect("a body file").trim();
            let body = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            replays.push(Replay { path, headers: Vec::new(), body });
        } else if let (Some(replay), Some((name, value))) = (replays.last_mut(), line.trim().split_once(": "))
            && line.starts_with("      ")
            && !name.starts_with('?')
            && kept_header(name)
        {
            replay.headers.push((name.to_string(), value.to_string()));
        }
    }
    assert!(!replays.is_empty(), "no requests in {}", dir.display());
    replays
}

/// Reads a request head as text (`POST /path HTTP/1.1`, then headers) and its body.
fn read_request(head: &Path, body: &Path) -> Replay {
    let text = std::fs::read_to_string(head).unwrap_or_else(|e| panic!("{}: {e}", head.display()));
    let mut lines = text.lines();
    let request_line = lines.next().expect("a request line");
    let path = request_line.split_whitespace().nth(1).expect("a path").to_string();
    let headers = lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| kept_header(n))
        .collect();
    Replay { path, headers, body: std::fs::read(body).unwrap_or_else(|e| panic!("{}: {e}", body.display())) }
}

/// Copies of a Connect push with a fresh sample `ID` each, so that Kiln stores every one.
fn fresh_push_ids(replay: &Replay, copies: usize) -> Vec<Replay> {
    let gzipped = replay.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-encoding") && v.contains("gzip"));
    let mut raw = Vec::new();
    if gzipped {
        std::io::Read::read_to_end(&mut GzDecoder::new(&replay.body[..]), &mut raw).expect("a gzip body");
    } else {
        raw = replay.body.clone();
    }
    let Ok(request) = PushRequest::decode(&raw[..]) else { return vec![replay.clone()] };
    if !request.series.iter().any(|s| s.samples.iter().any(|x| !x.id.is_empty())) {
        return vec![replay.clone()];
    }
    (0..copies)
        .map(|copy| {
            let mut request = request.clone();
            for (i, sample) in request.series.iter_mut().flat_map(|s| s.samples.iter_mut()).enumerate() {
                sample.id = format!("load-{:08x}-{copy:08x}-{i:04x}", std::process::id());
            }
            let encoded = request.encode_to_vec();
            let body = if gzipped {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
                std::io::Write::write_all(&mut encoder, &encoded).unwrap();
                encoder.finish().unwrap()
            } else {
                encoded
            };
            Replay { body, ..replay.clone() }
        })
        .collect()
}

/// The server's user and system CPU time so far, in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux.
    let user: f64 = fields[11].parse().unwrap();
    let system: f64 = fields[12].parse().unwrap();
    (user / ticks, system / ticks)
}

/// The server's peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The blocks the server published (meta objects under its data directory), and how many of
/// them are compactions: proof that the run went through cuts and compaction.
fn published_blocks(dir: &std::path::Path) -> (usize, usize) {
    let (mut blocks, mut compacted) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".meta.json") {
                blocks += 1;
                let meta: serde_json::Value =
                    std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
                if meta["level"].as_u64().unwrap_or(0) > 0 {
                    compacted += 1;
                }
            }
        }
    }
    (blocks, compacted)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let log = std::fs::File::create(dir.path().join("kiln.log")).unwrap();
    let child = Command::new(&args.kiln)
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.path().join("data"))
        // Captures keep the time they were taken at; the load is about speed, not time checks.
        .args(["--ingest-oldest", "0"])
        .args(&args.kiln_arg)
        .env("KILN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{}: {e} (build it with `cargo build --release -p kiln-server`)", args.kiln.display())
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "kiln did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, addr, dir }
}

/// What one connection saw: latencies (µs, from each upload's intended start) and statuses.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    failures: u64,
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (Kiln's answers to uploads); its status.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// One connection's schedule: an upload every `interval` from `first` until `end`; latencies
/// are kept from `measure_from` on.
#[derive(Clone, Copy)]
struct Schedule {
    first: tokio::time::Instant,
    interval: Duration,
    measure_from: tokio::time::Instant,
    end: tokio::time::Instant,
}

/// Replays `requests` (from the `next`th on, round robin) on one kept-alive connection.
async fn connection(addr: SocketAddr, requests: std::sync::Arc<Vec<Vec<u8>>>, mut next: usize, at: Schedule) -> Seen {
    let Schedule { first, interval, measure_from, end } = at;
    let mut seen = Seen::default();
    let mut stream = None::<TcpStream>;
    let mut buffer = Vec::new();
    let mut intended = first;
    while intended < end {
        tokio::time::sleep_until(intended).await;
        if tokio::time::Instant::now() >= end {
            // Behind schedule at the end: what is left was never sent, and does not count.
            break;
        }
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    stream = Some(s);
                }
                Err(_) => {
                    seen.failures += 1;
                    intended += interval;
                    continue;
                }
            }
        }
        let conn = stream.as_mut().unwrap();
        let request = &requests[next % requests.len()];
        next += 1;
        let answer = match conn.write_all(request).await {
            Ok(()) => read_answer(conn, &mut buffer).await,
            Err(e) => Err(e),
        };
        let done = tokio::time::Instant::now();
        // Counted when answered inside the measured window, as the server's CPU is.
        if done >= measure_from && done < end {
            match answer {
                Ok(status) => {
                    *seen.statuses.entry(status).or_default() += 1;
                    seen.latencies_us.push((done - intended).as_micros().min(u32::MAX as u128) as u32);
                }
                Err(_) => seen.failures += 1,
            }
        }
        if answer_closes(&buffer) {
            stream = None;
        }
        intended += interval;
    }
    seen
}

fn answer_closes(buffer: &[u8]) -> bool {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase().contains("connection: close")
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() {
    let args = Args::parse();
    let mut replays: Vec<Replay> = args.capture.iter().flat_map(|dir| read_capture(dir)).collect();
    if let (Some(head), Some(body)) = (&args.request, &args.body) {
        replays.push(read_request(head, body));
    }
    assert!(!replays.is_empty(), "give --capture DIR or --request HEAD --body BODY");
    let total = (args.rate * (args.seconds + args.warmup_seconds)) as usize;
    let replays: Vec<Replay> =
        replays.iter().flat_map(|r| fresh_push_ids(r, total.div_ceil(replays.len()).clamp(1, 1 << 20))).collect();
    let server = start_server(&args);
    let requests = std::sync::Arc::new(replays.iter().map(|r| r.bytes(server.addr)).collect::<Vec<_>>());
    let mean_body = replays.iter().map(|r| r.body.len()).sum::<usize>() / replays.len();
    println!(
        "{} distinct requests (mean body {mean_body} B), {} connections, {} uploads/s scheduled, {} s (+{} s warm-up)",
        requests.len(),
        args.connections,
        args.rate,
        args.seconds,
        args.warmup_seconds
    );

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pid = server.child.id();
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate as f64);
    let (seen, cpu, elapsed, own_cpu) = runtime.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let measure_from = start + Duration::from_secs(args.warmup_seconds);
        let end = measure_from + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| {
                // Connections are spread over one interval, so the schedule is even.
                let first = start + interval.mul_f64(c as f64 / args.connections as f64);
                let schedule = Schedule { first, interval, measure_from, end };
                tokio::spawn(connection(server.addr, requests.clone(), c * requests.len() / args.connections, schedule))
            })
            .collect();
        tokio::time::sleep_until(measure_from).await;
        let (cpu_before, own_before, wall_before) = (cpu_seconds(pid), cpu_seconds(std::process::id()), Instant::now());
        tokio::time::sleep_until(end).await;
        let (cpu_after, own_after, elapsed) =
            (cpu_seconds(pid), cpu_seconds(std::process::id()), wall_before.elapsed());
        let own = own_after.0 + own_after.1 - own_before.0 - own_before.1;
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap());
        }
        (seen, (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1), elapsed, own)
    });

    let mut latencies: Vec<u32> = seen.iter().flat_map(|s| s.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for s in &seen {
        for (status, n) in &s.statuses {
            *statuses.entry(*status).or_default() += n;
        }
    }
    let failures: u64 = seen.iter().map(|s| s.failures).sum();
    let answered = latencies.len() as f64;
    let per_upload_us = |seconds: f64| if answered > 0.0 { seconds * 1e6 / answered } else { 0.0 };
    println!(
        "answered {answered} uploads in {:.1} s: {:.0} uploads/s",
        elapsed.as_secs_f64(),
        answered / args.seconds as f64
    );
    println!("statuses {statuses:?}, connection failures {failures}");
    println!(
        "latency from intended start: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "server CPU per upload: {:.1} µs user + {:.1} µs system = {:.1} µs ({:.2} cores busy); peak RSS {} MiB",
        per_upload_us(cpu.0),
        per_upload_us(cpu.1),
        per_upload_us(cpu.0 + cpu.1),
        (cpu.0 + cpu.1) / elapsed.as_secs_f64(),
        peak_rss_kib(pid) / 1024
    );
    println!("load generator: {:.2} cores busy", own_cpu / elapsed.as_secs_f64());
    let (blocks, compacted) = published_blocks(server.dir.path());
    println!("blocks published by the end: {blocks} ({compacted} of them compactions)");
}
