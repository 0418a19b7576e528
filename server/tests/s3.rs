//! Several Kiln servers on one S3 bucket (a real S3 API: `s3s-fs` over a temp folder): two
//! writers flush blocks, a third server that receives nothing serves both writers' data.
//!
//! Needs `s3s-fs` on `PATH` (`cargo install s3s-fs@0.14.1 --features binary --locked`);
//! without it the test says so and passes.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use support::{Kiln, S3Server, folded_values, http, on_path};

#[test]
fn writers_and_a_reader_share_one_bucket() {
    let Some(s3s) = on_path("s3s-fs") else {
        println!(
            "skipped: `s3s-fs` is not on PATH; install it with `cargo install s3s-fs@0.14.1 --features binary --locked`"
        );
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("kiln")).unwrap();
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let _s3 = S3Server::start(&s3s, addr, root.path());
    let endpoint = format!("http://{addr}");
    let flags = [
        "--storage",
        "s3://kiln/shared",
        "--s3-endpoint",
        &endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-access-key",
        "kilnkey",
        "--s3-secret-key",
        "kilnsecret",
        "--block-duration",
        "1s",
        "--block-refresh",
        "1s",
    ];
    let dirs = tempfile::tempdir().unwrap();
    let writer_a = Kiln::start(&dirs.path().join("a"), &flags);
    let writer_b = Kiln::start(&dirs.path().join("b"), &flags);
    let reader = Kiln::start(&dirs.path().join("reader"), &flags);
    for i in 0..5 {
        for (kiln, who) in [(&writer_a, "a"), (&writer_b, "b")] {
            let body = format!("main;from_{who} {}\nmain;both 1\n", i + 1);
            let (status, text) = http(kiln.addr, "POST", "/ingest?name=shared.cpu{env=test}", body.as_bytes()).unwrap();
            assert_eq!(status, 200, "{text}");
        }
    }
    let expected: BTreeMap<String, u64> =
        [("main;both", 10), ("main;from_a", 15), ("main;from_b", 15)].map(|(s, v)| (s.to_string(), v)).into();
    // The reader received nothing itself; the writers see each other's blocks as well.
    for kiln in [&reader, &writer_a, &writer_b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http(kiln.addr, "GET", "/render?query=shared.cpu&format=folded", b"").unwrap();
            assert_eq!(status, 200, "{body}");
            if folded_values(&body) == expected {
                break;
            }
            assert!(Instant::now() < deadline, "{} never saw both writers' data; last answer:\n{body}", kiln.addr);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (_, apps) = http(reader.addr, "GET", "/api/apps", b"").unwrap();
    assert!(apps.contains("\"shared\""), "{apps}");
}
