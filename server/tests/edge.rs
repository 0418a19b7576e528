//! The edge's connection timeouts, seen from a raw HTTP/1.1 client on a real socket.
//!
//! Times are scaled down from the defaults; every window is generous in the "may be late"
//! direction and exact in the "must not be early" one, because tokio timers never fire early.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use kiln_server::edge::{self, EdgeConfig};
use kiln_server::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How late a timeout may fire on a loaded machine before a test calls it broken.
const LATE: Duration = Duration::from_secs(10);

/// How long a test waits for anything before failing instead of hanging.
const GIVE_UP: Duration = Duration::from_secs(60);

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    uploads: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(config: EdgeConfig) -> Server {
        let uploads = Arc::new(AtomicU64::new(0));
        let counter = uploads.clone();
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/upload",
                post(move |body: Bytes| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    format!("{} bytes", body.len())
                }),
            )
            .route(
                "/slow",
                post(|body: Bytes| async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    format!("{} bytes, slowly", body.len())
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(edge::serve(listener, router, metrics.clone(), config, async {
            let _ = stopped.await;
        }));
        Server { addr, metrics, uploads, stop: Some(stop), task }
    }

    async fn connect(&self) -> Client {
        Client { stream: TcpStream::connect(self.addr).await.expect("connect"), buf: Vec::new() }
    }

    fn accepted(&self) -> u64 {
        self.metrics.accepted_connections.load(Ordering::SeqCst)
    }

    /// Stops the server and waits for `serve` to return.
    async fn shutdown(mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
        tokio::time::timeout(LATE, self.task).await.expect("serve returns after shutdown").expect("serve ran");
    }
}

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 client on one kept-alive connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one response with a `content-length` body.
    async fn response(&mut self) -> io::Result<Response> {
        tokio::time::timeout(GIVE_UP, self.read_response()).await.expect("no response")
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let end = head_end + 4 + length;
        while self.buf.len() < end {
            self.fill().await?;
        }
        let body = self.buf[head_end + 4..end].to_vec();
        self.buf.drain(..end);
        Ok(Response { status, headers, body })
    }

    async fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: kiln\r\n\r\n").as_bytes()).await?;
        self.response().await
    }

    async fn upload(&mut self, body: &[u8]) -> io::Result<Response> {
        let head = format!("POST /upload HTTP/1.1\r\nhost: kiln\r\ncontent-length: {}\r\n\r\n", body.len());
        self.send(head.as_bytes()).await?;
        self.send(body).await?;
        self.response().await
    }

    /// Waits for the server to end the connection; returns whatever arrived before that.
    /// A reset counts as an end too. Fails the test if the connection stays open.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut chunk = [0u8; 4096];
        let closed = async {
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return std::mem::take(&mut self.buf),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(GIVE_UP, closed).await.expect("the server never closed the connection")
    }
}

fn config(idle: Duration, header: Duration, body: Duration) -> EdgeConfig {
    EdgeConfig {
        idle_timeout: idle,
        header_read_timeout: header,
        body_read_timeout: body,
        request_timeout: Duration::from_secs(60),
        ..EdgeConfig::default()
    }
}

/// The lost-upload bug: uploads arriving just before the idle limit must reuse the one
/// connection, every time. The header and body limits are shorter than the gap between
/// uploads, so a header timer that also ran between requests would break this too.
#[tokio::test]
async fn uploads_just_inside_the_idle_limit_share_one_connection() {
    let idle = Duration::from_secs(3);
    let interval = Duration::from_millis(2400);
    let server = Server::start(config(idle, Duration::from_secs(1), Duration::from_secs(1))).await;
    let mut client = server.connect().await;
    let mut answered = 0;
    for i in 0..10 {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let response = client.upload(b"profile").await.unwrap_or_else(|e| panic!("upload {i} failed: {e}"));
        assert_eq!(response.status, 200, "upload {i}");
        assert_eq!(response.body, b"7 bytes");
        answered += 1;
    }
    assert_eq!(answered, 10);
    assert_eq!(server.uploads.load(Ordering::SeqCst), 10);
    assert_eq!(server.accepted(), 1, "every upload on the first connection");
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_not_before() {
    let idle = Duration::from_millis(1500);
    let server = Server::start(config(idle, Duration::from_millis(300), Duration::from_millis(300))).await;
    let mut client = server.connect().await;
    let started = Instant::now();
    let response = client.get("/").await.expect("first request");
    assert_eq!(response.status, 200);
    let leftover = client.until_closed().await;
    let waited = started.elapsed();
    assert!(leftover.is_empty(), "nothing sent before the close: {leftover:?}");
    assert!(waited >= idle, "closed after {waited:?}, before the idle timeout {idle:?}");
    assert!(waited < idle + LATE, "still open after {waited:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(1500);
    let server = Server::start(config(idle, Duration::from_millis(300), Duration::from_millis(300))).await;
    let started = Instant::now();
    let mut client = server.connect().await;
    assert!(client.until_closed().await.is_empty());
    let waited = started.elapsed();
    assert!(waited >= idle, "closed after {waited:?}, before the idle timeout {idle:?}");
    assert!(waited < idle + LATE);
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_request_headers_are_cut_after_the_header_timeout() {
    let header = Duration::from_secs(1);
    let server = Server::start(config(Duration::from_secs(60), header, Duration::from_secs(60))).await;
    let mut client = server.connect().await;
    let started = Instant::now();
    client.send(b"GET / HT").await.expect("send half a request line");
    let got = client.until_closed().await;
    let waited = started.elapsed();
    assert!(waited >= header, "cut after {waited:?}, before the header timeout");
    assert!(waited < header + LATE, "not cut: waited {waited:?}");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408 "), "answer: {got:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_header_timeout_counts_from_the_first_byte_not_from_idle() {
    let header = Duration::from_millis(500);
    let server = Server::start(config(Duration::from_secs(60), header, Duration::from_secs(60))).await;
    let mut client = server.connect().await;
    assert_eq!(client.get("/").await.expect("first").status, 200);
    tokio::time::sleep(header * 3).await;
    assert_eq!(client.get("/").await.expect("after a pause longer than the header timeout").status, 200);
    assert_eq!(server.accepted(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_after_the_body_timeout() {
    let body = Duration::from_secs(1);
    let server = Server::start(config(Duration::from_secs(60), Duration::from_secs(60), body)).await;
    let mut client = server.connect().await;
    client.send(b"POST /upload HTTP/1.1\r\nhost: kiln\r\ncontent-length: 100\r\n\r\n0123456789").await.expect("send");
    let started = Instant::now();
    let got = client.until_closed().await;
    let waited = started.elapsed();
    assert!(waited >= body, "cut after {waited:?}, before the body timeout");
    assert!(waited < body + LATE, "not cut: waited {waited:?}");
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "a stalled upload was accepted: {got:?}");
    assert_eq!(server.uploads.load(Ordering::SeqCst), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_body_that_keeps_coming_is_not_cut() {
    let body = Duration::from_secs(1);
    let server = Server::start(config(Duration::from_secs(60), Duration::from_secs(60), body)).await;
    let mut client = server.connect().await;
    client.send(b"POST /upload HTTP/1.1\r\nhost: kiln\r\ncontent-length: 40\r\n\r\n").await.expect("send head");
    // Longer in total than the body timeout, but never a gap that long.
    for _ in 0..4 {
        tokio::time::sleep(body / 3).await;
        client.send(b"0123456789").await.expect("send a piece");
    }
    let response = client.response().await.expect("answered");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"40 bytes");
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_handler_is_not_mistaken_for_a_stalled_body() {
    // The handler takes 2 s after reading the body; the body and header limits are shorter.
    let server =
        Server::start(config(Duration::from_secs(60), Duration::from_millis(500), Duration::from_millis(500))).await;
    let mut client = server.connect().await;
    client.send(b"POST /slow HTTP/1.1\r\nhost: kiln\r\ncontent-length: 3\r\n\r\nabc").await.expect("send");
    let response = client.response().await.expect("answered");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"3 bytes, slowly");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_past_the_request_timeout_get_503_with_retry_after() {
    let server =
        Server::start(EdgeConfig { request_timeout: Duration::from_millis(500), ..EdgeConfig::default() }).await;
    let mut client = server.connect().await;
    client.send(b"POST /slow HTTP/1.1\r\nhost: kiln\r\ncontent-length: 3\r\n\r\nabc").await.expect("send");
    let response = client.response().await.expect("answered");
    assert_eq!(response.status, 503);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.header("retry-after"), Some("5"));
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("a JSON error");
    assert!(json["error"].as_str().is_some_and(|e| e.contains("--request-timeout")), "{json}");
    server.shutdown().await;
}

#[tokio::test]
async fn responses_advertise_the_idle_limit_less_five_seconds() {
    let server = Server::start(EdgeConfig::default()).await;
    let mut client = server.connect().await;
    let response = client.get("/").await.expect("answered");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("keep-alive"), Some("timeout=115"));
    let response = client.upload(b"x").await.expect("answered");
    assert_eq!(response.header("keep-alive"), Some("timeout=115"));
    let response = client.get("/missing").await.expect("answered");
    assert_eq!(response.status, 404);
    assert_eq!(response.header("keep-alive"), Some("timeout=115"));
    server.shutdown().await;

    let server = Server::start(EdgeConfig { idle_timeout: Duration::from_secs(65), ..EdgeConfig::default() }).await;
    let mut client = server.connect().await;
    assert_eq!(client.get("/").await.expect("answered").header("keep-alive"), Some("timeout=60"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_promptly() {
    let server = Server::start(EdgeConfig {
        idle_timeout: Duration::from_secs(600),
        drain_timeout: Duration::from_secs(600),
        ..EdgeConfig::default()
    })
    .await;
    let mut idle_after_request = server.connect().await;
    assert_eq!(idle_after_request.get("/").await.expect("answered").status, 200);
    let mut never_sent = server.connect().await;
    let started = Instant::now();
    // Returns well before the drain timeout only if the idle connections were closed.
    server.shutdown().await;
    assert!(started.elapsed() < LATE);
    assert!(idle_after_request.until_closed().await.is_empty());
    assert!(never_sent.until_closed().await.is_empty());
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let server = Server::start(EdgeConfig::default()).await;
    let mut client = server.connect().await;
    client.send(b"POST /slow HTTP/1.1\r\nhost: kiln\r\ncontent-length: 3\r\n\r\nabc").await.expect("send");
    // Let the request reach the handler before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shutdown = tokio::spawn(server.shutdown());
    let response = client.response().await.expect("answered during the drain");
    assert_eq!(response.status, 200);
    assert!(client.until_closed().await.is_empty());
    shutdown.await.expect("shutdown finished");
}
