//! The object store goes away mid-run and comes back (a real S3 API: `s3s-fs` over a temp
//! folder, stopped and restarted on the same port): ingest keeps answering 200 because the
//! disk is the buffer, memory stays flat while heads pile up unpublished, acknowledged data
//! stays queryable, and once the store is back every acknowledged upload is in a block in the
//! bucket and answers exactly once.
//!
//! Needs `s3s-fs` on `PATH` (`make s3s-fs`); without it the test says so and passes, like
//! `tests/s3.rs`.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Kiln, S3Server, folded_values, http, on_path};

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// Block metas in the bucket folder: (uploads, id, ids it replaces) of each.
fn metas(dir: &Path) -> Vec<(u64, String, Vec<String>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".meta.json")
                && let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text)
            {
                let replaced = meta["compacted_from"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                found.push((meta["uploads"].as_u64().unwrap_or(0), meta["id"].as_str().unwrap_or("").into(), replaced));
            }
        }
    }
    found
}

/// Uploads in the bucket's blocks, not counting blocks a compacted one replaces.
fn uploads_in_bucket(dir: &Path) -> u64 {
    let metas = metas(dir);
    let replaced: Vec<&String> = metas.iter().flat_map(|(_, _, r)| r).collect();
    metas.iter().filter(|(_, id, _)| !replaced.contains(&id)).map(|(n, _, _)| n).sum()
}

fn wal_segments(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("wal"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".wal")).count())
        .unwrap_or(0)
}

/// A profile of about 100 KB of folded text with frame names of its own, so nothing is
/// shared between uploads: what the server keeps of it in memory is its own.
fn bulk_body(i: usize) -> String {
    let pad = "x".repeat(100);
    (0..400).map(|j| format!("bulk_{i}_{j}_{pad};leaf_{i}_{j}_{pad} 1\n")).collect()
}

/// The upload count `/api/apps` gives for `app`.
fn app_uploads(addr: SocketAddr, app: &str) -> u64 {
    let (status, body) = http(addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let apps: serde_json::Value = serde_json::from_str(&body).unwrap();
    apps.as_array().unwrap().iter().find(|a| a["name"] == app).and_then(|a| a["uploads"].as_u64()).unwrap_or(0)
}

#[test]
fn ingest_rides_out_an_object_store_outage_in_flat_memory_and_loses_nothing() {
    let Some(s3s) = on_path("s3s-fs") else {
        println!("skipped: `s3s-fs` is not on PATH; install it with `make s3s-fs`");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("kiln")).unwrap();
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let s3 = S3Server::start(&s3s, addr, root.path());
    let endpoint = format!("http://{addr}");
    let data = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(
        data.path(),
        &[
            "--storage",
            "s3://kiln/outage",
            "--s3-endpoint",
            &endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-access-key",
            "kilnkey",
            "--s3-secret-key",
            "kilnsecret",
            // Small heads, cut often: an outage of seconds piles up many frozen heads.
            "--block-duration",
            "1s",
            "--head-max-bytes",
            "1048576",
            "--block-refresh",
            "1s",
        ],
    );
    let post = |path: &str, body: &str| {
        let (status, text) = http(kiln.addr, "POST", path, body.as_bytes()).unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    };
    let bucket = root.path().join("kiln");

    // Store up: a first block is published.
    post("/ingest?name=before.cpu", "main;work 5\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploads_in_bucket(&bucket) < 1 {
        assert!(Instant::now() < deadline, "no block was published while the store was up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Warm up the paths the outage phase uses, so the baseline includes their buffers.
    for i in 0..10 {
        post("/ingest?name=warmup.cpu", &bulk_body(100_000 + i));
    }
    std::thread::sleep(Duration::from_secs(2));
    let baseline = rss(kiln.pid());

    // Store down.
    drop(s3);
    let uploads = 600;
    let mut peak = baseline;
    for i in 0..uploads {
        post("/ingest?name=bulk.cpu", &bulk_body(i));
        post("/ingest?name=marker.cpu", &format!("marker;u{i} 1\n"));
        if i % 20 == 0 {
            peak = peak.max(rss(kiln.pid()));
        }
    }
    peak = peak.max(rss(kiln.pid()));
    // About 60 MB of profiles arrived: all of it stays on disk, not in memory.
    let wal: u64 =
        std::fs::read_dir(data.path().join("wal")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    let growth = peak.saturating_sub(baseline);
    println!("outage: {uploads} uploads, log {} MiB, RSS {} MiB -> peak {} MiB", wal >> 20, baseline >> 20, peak >> 20);
    assert!(wal > 40 << 20, "the log holds the outage's uploads ({wal} bytes)");
    assert!(growth < 32 << 20, "memory grew by {} MiB while the store was down", growth >> 20);
    assert!(wal_segments(data.path()) > 5, "several heads froze and kept their segments");
    // Acknowledged during the outage, and already queryable (from memory and the log).
    let (status, body) = http(kiln.addr, "GET", "/render?query=marker.cpu&format=folded", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let markers = folded_values(&body);
    assert_eq!(markers.len(), uploads, "every marker answers during the outage");
    assert!(markers.values().all(|&v| v == 1), "each exactly once");
    assert_eq!(app_uploads(kiln.addr, "bulk"), uploads as u64, "the listing counts heads held only on disk");

    // Store back: everything is published, the log empties, every upload answers once.
    let _s3 = S3Server::start(&s3s, addr, root.path());
    let expected_in_bucket = 1 + 10 + 2 * uploads as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while uploads_in_bucket(&bucket) < expected_in_bucket || wal_segments(data.path()) > 1 {
        assert!(
            Instant::now() < deadline,
            "after the store returned: {} of {expected_in_bucket} uploads in the bucket, {} log segments",
            uploads_in_bucket(&bucket),
            wal_segments(data.path())
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(uploads_in_bucket(&bucket), expected_in_bucket, "nothing is published twice");
    let (status, body) = http(kiln.addr, "GET", "/render?query=marker.cpu&format=folded", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let markers = folded_values(&body);
    assert_eq!(markers.len(), uploads);
    assert!(markers.values().all(|&v| v == 1), "each marker exactly once, from blocks");
    assert_eq!(app_uploads(kiln.addr, "bulk"), uploads as u64, "every bulk upload, once, in blocks");
    let (_, body) = http(kiln.addr, "GET", "/render?query=before.cpu&format=folded", b"").unwrap();
    assert_eq!(folded_values(&body), folded_values("main;work 5\n"), "data from before the outage");
}
