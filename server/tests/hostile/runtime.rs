//! Hostile input: runtime. Slow and half-sent requests, a flood of large uploads against the
//! in-flight budget, queries past the request timeout, heavy merges beside health checks, and
//! the headers every answer carries.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

#[allow(unused_imports)]
use super::*;

/// One answer: status, head (lower-cased header names as sent) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads a whole answer from `stream` (the request said `Connection: close`).
fn read_answer(mut stream: TcpStream) -> std::io::Result<Answer> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("no head: {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let mut body = body.to_string();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // Only JSON errors and small answers are read whole here: one chunk is enough.
        body = body.split_once("\r\n").map(|(_, rest)| rest.to_string()).unwrap_or_default();
        body = body.rsplit_once("\r\n0\r\n").map(|(b, _)| b.to_string()).unwrap_or(body);
    }
    Ok(Answer { status, head: head.to_string(), body })
}

/// One request on its own connection, with its headers.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    read_answer(stream)
}

/// A JSON error answer with `status` and a `Retry-After`.
fn assert_unavailable(answer: &Answer, context: &str) {
    assert_eq!(answer.status, 503, "{context}: {}", answer.body);
    let seconds: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{context}: no Retry-After in {}", answer.head));
    assert!(seconds >= 1, "{context}");
    let json: serde_json::Value =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {}", answer.body));
    assert!(json["error"].as_str().is_some_and(|m| !m.is_empty()), "{context}: {}", answer.body);
}

/// Folded text of `lines` distinct stacks, `bytes_per_line` long or so.
fn folded(lines: usize, seed: usize) -> String {
    (0..lines).map(|i| format!("main;work_{seed};step_{};leaf_{} 1\n", i % 97, i)).collect()
}

/// Stores `count` series of `lines` stacks each, one upload per series.
fn upload_series(addr: SocketAddr, app: &str, count: usize, lines: usize) {
    for i in 0..count {
        let path = format!("/ingest?name={app}.cpu%7Bpod%3Dp{i}%7D");
        let answer = request(addr, "POST", &path, folded(lines, i).as_bytes()).expect("upload answers");
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

#[test]
fn slow_and_half_sent_requests_are_closed_without_harming_others() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--header-read-timeout", "1s", "--body-read-timeout", "1s"]);
    let addr = kiln.addr;
    let connect = move || {
        let stream = TcpStream::connect(addr).expect("connects");
        // Generous: the server's own limits are one second.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    };
    // Headers trickled a byte at a time, then nothing more.
    let trickle = std::thread::spawn(move || {
        let mut stream = connect();
        for byte in b"POST /ingest?name=slow.cpu HTTP/1.1\r\nHost: k" {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    // A body shorter than its Content-Length, then the client's half of the connection closed.
    let cut = std::thread::spawn(move || {
        let mut stream = connect();
        stream
            .write_all(b"POST /ingest?name=cut.cpu HTTP/1.1\r\nHost: k\r\nContent-Length: 1000\r\n\r\nmain;a 1\n")
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    // A body shorter than its Content-Length on a connection held open.
    let short = std::thread::spawn(move || {
        let mut stream = connect();
        stream
            .write_all(b"POST /ingest?name=short.cpu HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\nmain;a 1\n")
            .unwrap();
        let mut answer = Vec::new();
        // A reset is a close too; only our own read timeout means the server left it open.
        let closed = match stream.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        };
        (closed, String::from_utf8_lossy(&answer).into_owned())
    });
    // Others are served meanwhile.
    assert_alive(addr);
    let trickled = trickle.join().unwrap();
    assert!(trickled.is_empty() || trickled.starts_with("HTTP/1.1 408 "), "trickled headers: {trickled:?}");
    let cut = cut.join().unwrap();
    assert!(cut.is_empty() || cut.starts_with("HTTP/1.1 400 "), "a body cut short: {cut:?}");
    let (closed, short) = short.join().unwrap();
    assert!(closed, "a stalled body's connection is closed by the server, not left open");
    assert!(short.is_empty() || short.starts_with("HTTP/1.1 400 "), "a stalled body: {short:?}");
    for app in ["slow", "cut", "short"] {
        let answer = request(addr, "GET", &format!("/render?query={app}.cpu&format=folded"), b"").unwrap();
        assert!(answer.body.trim().is_empty(), "nothing of a half-sent upload is stored: {}", answer.body);
    }
    assert_alive(addr);
}

#[test]
fn uploads_beyond_the_inflight_budget_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // One byte: one upload at a time is admitted, any other arriving meanwhile is refused.
    let kiln = start_with_baseline(dir.path(), &["--max-inflight-bytes", "1"]);
    let addr = kiln.addr;
    let body = folded(20_000, 0);
    let (mut stored, mut refused) = (0, 0);
    // Concurrent uploads of a few hundred KiB overlap; rounds repeat in case one did not.
    for _round in 0..10 {
        let senders: Vec<_> = (0..6)
            .map(|i| {
                let body = body.clone();
                std::thread::spawn(move || {
                    request(addr, "POST", &format!("/ingest?name=flood.cpu%7Bn%3D{i}%7D"), body.as_bytes())
                })
            })
            .collect();
        for sender in senders {
            let answer = sender.join().unwrap().expect("every upload is answered");
            match answer.status {
                200 => stored += 1,
                _ => {
                    assert_unavailable(&answer, "over the in-flight budget");
                    refused += 1;
                }
            }
        }
        if stored > 0 && refused > 0 {
            break;
        }
    }
    assert!(stored > 0, "one upload at a time is always admitted");
    assert!(refused > 0, "concurrent uploads beyond the budget are refused");
    // Nothing is held once they are done: a single upload goes through.
    let answer = request(addr, "POST", "/ingest?name=after.cpu", b"main;a 1\n").unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_alive(addr);
}

#[test]
fn a_refused_upload_is_read_to_its_end_so_its_sender_sees_the_503() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-inflight-bytes", "3000000"]);
    let addr = kiln.addr;
    // An upload that has sent its head and half its body holds its declared size in the budget.
    let held = folded(60_000, 1);
    let mut holder = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    holder.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /ingest?name=held.cpu HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        held.len()
    );
    holder.write_all(head.as_bytes()).unwrap();
    let (first, rest) = held.as_bytes().split_at(held.len() / 2);
    holder.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Another, bigger than any socket buffer, is refused while its sender is still writing:
    // the sender writes it all and reads the refusal, instead of a reset connection.
    let refused_body = folded(200_000, 2);
    assert!(refused_body.len() + held.len() > 3_000_000);
    let answer = request(addr, "POST", "/ingest?name=refused.cpu", refused_body.as_bytes())
        .expect("the refused upload's sender writes its body and reads the answer");
    assert_unavailable(&answer, "over the in-flight budget while another upload is half-sent");
    holder.write_all(rest).unwrap();
    let answer = read_answer(holder).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = request(addr, "GET", "/render?query=refused.cpu&format=folded", b"").unwrap();
    assert!(answer.body.trim().is_empty(), "nothing of a refused upload is stored: {}", answer.body);
    assert_alive(addr);
}

#[test]
fn queries_past_the_request_timeout_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    upload_series(kiln.addr, "big", 40, 2_000);
    kiln.kill();
    // Same data, a deadline no merge can meet: the query's work runs on the heavy lane and is
    // still running when the deadline passes.
    let kiln = Kiln::start(dir.path(), &["--request-timeout", "1ms"]);
    for path in ["/render?query=big.cpu", "/api/page-data/summary?query=big.cpu", "/explore?query=big.cpu"] {
        let answer = request(kiln.addr, "GET", path, b"").expect("answered");
        assert_unavailable(&answer, &format!("{path} past the request timeout"));
        assert!(answer.body.contains("--request-timeout"), "{path}: {}", answer.body);
    }
    let (status, _) = support::http(kiln.addr, "GET", "/healthz", b"").expect("still serving");
    assert_eq!(status, 200);
    kiln.kill();
    let kiln = Kiln::start(dir.path(), &[]);
    assert_alive(kiln.addr);
}

#[test]
fn health_checks_and_small_uploads_answer_during_heavy_merges() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let addr = kiln.addr;
    upload_series(addr, "heavy", 60, 2_000);
    let queries: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/render?query=heavy.cpu&format=svg", b"")))
        .collect();
    for i in 0..5 {
        let (status, body) = support::http(addr, "GET", "/healthz", b"").expect("healthz answers");
        assert_eq!(status, 200, "{body}");
        let (status, body) =
            support::http(addr, "POST", &format!("/ingest?name=small.cpu%7Bi%3D{i}%7D"), b"main;a 1\n").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for query in queries {
        let answer = query.join().unwrap().expect("the heavy query answers");
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_alive(addr);
}

#[test]
fn pages_api_answers_and_svg_exports_carry_protective_headers() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let addr = kiln.addr;
    let page = request(addr, "GET", "/", b"").unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{}", page.head);
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("content-security-policy"), Some("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let api = request(addr, "GET", &format!("/render?query={BASELINE_APP}"), b"").unwrap();
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.header("x-content-type-options"), Some("nosniff"));
    assert!(api.header("x-frame-options").is_none(), "{}", api.head);
    let refused = request(addr, "GET", "/render?query=", b"").unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    for path in [
        format!("/render?query={BASELINE_APP}&format=svg"),
        format!("/render-diff?leftQuery={BASELINE_APP}&rightQuery={BASELINE_APP}&format=svg"),
    ] {
        let svg = request(addr, "GET", &path, b"").unwrap();
        assert_eq!(svg.status, 200, "{path}: {}", svg.body);
        assert_eq!(svg.header("content-type"), Some("image/svg+xml"), "{path}");
        assert!(svg.body.contains("<script"), "{path}: inferno's SVG carries script");
        let policy = svg.header("content-security-policy").unwrap_or_else(|| panic!("{path}: {}", svg.head));
        assert!(policy.split(' ').next() == Some("sandbox"), "{path}: {policy}");
        assert_eq!(svg.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    assert_alive(addr);
}
