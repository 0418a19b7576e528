//! Graceful shutdown with uploads in flight: SIGTERM while 20 uploads are half sent. Kiln must
//! stop accepting, let every started upload finish and be stored, exit 0, and have all of them
//! after a restart.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> SocketAddr {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn start(addr: SocketAddr, data: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(data)
        .env("KILN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kiln")
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nhost: k\r\nconnection: close\r\n\r\n").await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("kiln did not become ready on {addr}");
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: k\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_uploads_finish_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut kiln = start(addr, dir.path());
    wait_ready(addr).await;

    // Every upload sends its headers and half its body, then waits for the signal.
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut uploads = Vec::new();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(20);
    for i in 0..20u64 {
        let mut go = go_rx.clone();
        let sent = sent_tx.clone();
        uploads.push(tokio::spawn(async move {
            let body = format!("main;task{i} {}\n", i + 1);
            let (first, rest) = body.split_at(5);
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /ingest?name=shut.cpu HTTP/1.1\r\nhost: k\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{first}",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            sent.send(()).await.unwrap();
            go.wait_for(|g| *g).await.unwrap();
            s.write_all(rest.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out.starts_with("HTTP/1.1 200")
        }));
    }
    for _ in 0..20 {
        sent_rx.recv().await.unwrap();
    }
    // Give the server a moment to have read what was sent, then stop it mid-upload.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill").args(["-TERM", &kiln.id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new connection is no longer accepted while the old ones drain.
    assert!(TcpStream::connect(addr).await.is_err(), "stopped accepting");
    go_tx.send(true).unwrap();
    let mut acknowledged = 0;
    for upload in uploads {
        if upload.await.unwrap() {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 20, "every upload in flight at SIGTERM finishes");
    let exit = tokio::task::spawn_blocking(move || kiln.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "kiln exits 0 after a graceful stop: {exit:?}");

    let mut again = start(addr, dir.path());
    wait_ready(addr).await;
    let folded = get(addr, "/render?query=shut.cpu&format=folded").await;
    let _ = again.kill();
    let _ = again.wait();
    for i in 0..20u64 {
        let line = format!("main;task{i} {}", i + 1);
        assert!(folded.lines().any(|l| l == line), "missing `{line}` after restart in:\n{folded}");
    }
}
