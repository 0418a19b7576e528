//! Hostile conditions: the disk nearly full. Below `--min-free-disk`, uploads are refused
//! with a 503, `Retry-After` and a JSON error before they reach the write-ahead log, and
//! everything else (queries, earlier uploads) keeps working. The object store going away is
//! `tests/s3_outage.rs` (it needs a real S3 server).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::*;

/// The response head of a request (status line and headers), lowercased.
fn response_head(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    text.split_once("\r\n\r\n").map(|(head, _)| head.to_string()).unwrap_or(text)
}

#[test]
fn uploads_below_the_free_disk_floor_are_refused_and_the_rest_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    // The baseline is stored with the default floor; then Kiln restarts with a floor above
    // any disk's size, as if the disk had filled up meanwhile.
    drop(start_with_baseline(dir.path(), &[]));
    let kiln = Kiln::start(dir.path(), &["--min-free-disk", "100000TiB"]);
    let addr = kiln.addr;
    for path in ["/ingest?name=refused.cpu", "/ingest?name=refused.cpu&format=folded&from=now-10s&until=now"] {
        assert_refused(http(addr, "POST", path, b"main;lost 1\n"), 503, path);
    }
    let (_, body) = http(addr, "POST", "/ingest?name=refused.cpu", b"main;lost 1\n").unwrap();
    assert!(body.contains("low on disk space"), "the message says why: {body}");
    let head = response_head(addr, "POST", "/ingest?name=refused.cpu", b"main;lost 1\n");
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("\r\nretry-after: 60"), "a client is told when to come back: {head}");
    // Nothing of the refused uploads was stored; queries and listings still answer.
    let (status, body) = http(addr, "GET", "/render?query=refused.cpu&format=folded", b"").unwrap();
    assert_eq!((status, folded_values(&body).len()), (200, 0), "{body}");
    let (status, apps) = http(addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(status, 200, "{apps}");
    assert!(!apps.contains("refused"), "{apps}");
    assert_alive(addr);

    // Space comes back (here: the floor is lowered): uploads are accepted again.
    drop(kiln);
    let kiln = Kiln::start(dir.path(), &["--min-free-disk", "0"]);
    let (status, body) = http(kiln.addr, "POST", "/ingest?name=accepted.cpu", b"main;kept 1\n").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_alive(kiln.addr);
}
