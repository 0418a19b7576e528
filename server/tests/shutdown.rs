//! Graceful shutdown with uploads in flight: SIGTERM while 20 uploads are half sent. Kiln must
//! stop accepting, let every started upload finish and be stored, exit 0, and have all of them
//! after a restart.

mod support;

use std::time::Duration;

use support::{Kiln, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_uploads_finish_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let kiln = tokio::task::spawn_blocking(move || Kiln::start(&data, &[])).await.unwrap();
    let addr = kiln.addr;

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
    let status = std::process::Command::new("kill").args(["-TERM", &kiln.pid().to_string()]).status().unwrap();
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
    let exit = tokio::task::spawn_blocking(move || kiln.wait()).await.unwrap();
    assert!(exit.success(), "kiln exits 0 after a graceful stop: {exit:?}");

    let data = dir.path().to_path_buf();
    let folded = tokio::task::spawn_blocking(move || {
        let again = Kiln::start(&data, &[]);
        let (status, folded) = http(again.addr, "GET", "/render?query=shut.cpu&format=folded", b"").unwrap();
        assert_eq!(status, 200);
        folded
    })
    .await
    .unwrap();
    for i in 0..20u64 {
        let line = format!("main;task{i} {}", i + 1);
        assert!(folded.lines().any(|l| l == line), "missing `{line}` after restart in:\n{folded}");
    }
}
