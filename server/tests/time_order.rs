//! `/api/collapse/time-order` against the real binary: files with timestamps answer their
//! samples in time order (what the model reads from the same file), files without say so, and
//! the number of samples is capped with a clear error. `/render/time-order` shows stored uploads
//! one column each, capped the same way.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use kiln_model::budget::DecodeBudget;
use kiln_model::cpuprofile;
use kiln_model::time_order::{self, MAX_SAMPLES, TimedProfile};
use support::{Kiln, http};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/formats").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A POST answered with its status, content type and body as bytes (the support module's
/// `http` reads bodies as text).
fn post_bytes(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    request_bytes(addr, "POST", path, body)
}

fn request_bytes(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let content_type = head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_string();
    (status, content_type, response[split + 4..].to_vec())
}

#[test]
fn timed_files_answer_their_time_order_and_others_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;

    // A Node .cpuprofile: exactly what the model reads from it.
    let bytes = data("node-fib.cpuprofile");
    let (status, content_type, body) = post_bytes(addr, "/api/collapse/time-order", &bytes);
    assert_eq!((status, content_type.as_str()), (200, time_order::CONTENT_TYPE));
    let answered = time_order::decode(&body).unwrap();
    let set = cpuprofile::parse_budgeted(&bytes, 1024, &mut DecodeBudget::unlimited()).unwrap();
    let part = &set.parts[0];
    let expected = TimedProfile::new(&part.tree, part.time_order.as_ref().unwrap(), &part.units);
    assert_eq!(answered, TimedProfile { name: "main".into(), ..expected });
    assert_eq!(answered.samples.len(), 336);
    assert!(body.len() < 336 * 8 + 16 * 1024, "compact: {} bytes", body.len());

    // A Chrome trace: its busiest timed thread, named or not.
    let trace = data("chromium.trace.json");
    for path in ["/api/collapse/time-order", "/api/collapse/time-order?format=chrome_trace"] {
        let (status, _, body) = post_bytes(addr, path, &trace);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answered = time_order::decode(&body).unwrap();
        assert!(answered.tree.names.iter().any(|n| n == "fib"), "the V8 samples' thread is the busiest");
        assert!(answered.name.starts_with("CPU profile"), "{}", answered.name);
        assert_eq!(
            answered.samples.iter().map(|s| s.weight).sum::<u64>() + answered.tree.self_value[0],
            answered.tree.total()
        );
    }

    // Evented speedscope, read in time order; sampled speedscope has no times.
    let frames = r#""shared": {"frames": [{"name": "main"}, {"name": "work"}]}"#;
    let evented = format!(
        r#"{{{frames}, "profiles": [{{"type": "evented", "name": "t", "unit": "milliseconds", "startValue": 0,
            "endValue": 4, "events": [{{"type": "O", "at": 0, "frame": 0}}, {{"type": "O", "at": 1, "frame": 1}},
            {{"type": "C", "at": 3, "frame": 1}}, {{"type": "C", "at": 4, "frame": 0}}]}}]}}"#
    );
    let (status, _, body) = post_bytes(addr, "/api/collapse/time-order", evented.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answered = time_order::decode(&body).unwrap();
    let starts: Vec<(u64, u64)> = answered.samples.iter().map(|s| (s.start, s.weight)).collect();
    assert_eq!(starts, [(0, 1_000_000), (1_000_000, 2_000_000), (3_000_000, 1_000_000)]);
    let sampled = format!(
        r#"{{{frames}, "profiles": [{{"type": "sampled", "name": "t", "unit": "none", "startValue": 0,
            "endValue": 1, "samples": [[0]], "weights": [1]}}]}}"#
    );

    // Files without times: 422 saying what does open; an unknown format 400.
    for (path, body, needle) in [
        ("/api/collapse/time-order", b"main;work 3\n".as_slice(), "not a format with timestamps"),
        ("/api/collapse/time-order", sampled.as_bytes(), "count samples"),
        ("/api/collapse/time-order?format=callgrind", b"events: Ir\nfn=main\n1 2\n", "no timestamps"),
    ] {
        let (status, error) = http(addr, "POST", path, body).unwrap();
        assert_eq!(status, 422, "{error}");
        assert!(error.contains(needle) && error.contains(".cpuprofile"), "{error}");
    }
    let (status, error) = http(addr, "POST", "/api/collapse/time-order?format=nope", b"{}").unwrap();
    assert_eq!(status, 400, "{error}");
    // A broken file of a timed format names the format and the fault, as /api/collapse does.
    let (status, error) = http(addr, "POST", "/api/collapse/time-order?format=cpuprofile", b"{\"nodes\": [").unwrap();
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("cpuprofile: not a V8 CPU profile"), "{error}");
}

#[test]
fn perf_script_with_times_is_read_with_the_flamegraph_s_frame_names() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/example-perf-stacks.txt.gz");
    let mut script = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut script).unwrap();
    // Recognised by content, as the Open page sends it.
    let (status, _, body) = post_bytes(kiln.addr, "/api/collapse/time-order", &script);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let timed = time_order::decode(&body).unwrap();
    assert!(timed.samples.len() > 100, "{} samples", timed.samples.len());
    assert!(timed.samples.windows(2).all(|w| w[0].end() <= w[1].start));
    // Every stack of the busiest thread is one inferno's collapse (the flamegraph the page
    // shows) has too: the same names, so the link between the views finds them.
    let collapsed = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/example-perf-stacks-collapsed.txt"),
    )
    .unwrap();
    let inferno: std::collections::HashSet<&str> =
        collapsed.lines().filter_map(|l| l.rsplit_once(' ').map(|(stack, _)| stack)).collect();
    for (stack, _) in timed.tree.stacks() {
        let stack = stack.join(";");
        assert!(inferno.contains(stack.as_str()), "{stack} is not in inferno's collapse");
    }
}

#[test]
fn more_samples_than_the_cap_is_a_clear_413() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    // Two nodes sampled in turn, one sample past the cap (the last sample lasts until
    // `endTime`, here no time, and so is not one): the flamegraph of such a file still opens
    // (/api/collapse), its time order does not.
    let n = MAX_SAMPLES + 2;
    let mut file = String::from(
        r#"{"nodes": [{"id": 1, "callFrame": {"functionName": "(root)"}, "children": [2, 3]},
        {"id": 2, "callFrame": {"functionName": "a"}}, {"id": 3, "callFrame": {"functionName": "b"}}],
        "startTime": 0, "endTime": 0, "samples": ["#,
    );
    file.push_str(&vec!["2,3"; n / 2].join(","));
    file.push_str(if n % 2 == 1 { ",2" } else { "" });
    file.push_str(r#"], "timeDeltas": ["#);
    file.push_str(&vec!["1"; n].join(","));
    file.push_str("]}");
    let (status, error) = http(kiln.addr, "POST", "/api/collapse/time-order", file.as_bytes()).unwrap();
    let start = &error[..error.len().min(300)];
    assert_eq!(status, 413, "{start}");
    assert!(error.contains("more than 2000000 samples"), "{start}");
    let (status, _) = http(kiln.addr, "POST", "/api/collapse", file.as_bytes()).unwrap();
    assert_eq!(status, 200);
}

/// Each sample of a time order as (stack, start, weight), the stack as `a;b;c`.
fn named_samples(p: &TimedProfile) -> Vec<(String, u64, u64)> {
    p.samples
        .iter()
        .map(|s| {
            let path: Vec<&str> = p.tree.path_to(s.stack).iter().map(|&n| p.tree.name_of(n)).collect();
            (path.join(";"), s.start, s.weight)
        })
        .collect()
}

#[test]
fn stored_uploads_show_one_column_each_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;
    let uploads: [(i64, &str); 3] =
        [(1_700_000_000, "main;a 3\nmain;b 2\n"), (1_700_000_010, "main;a 20\nidle 5\n"), (1_700_000_020, "idle 4\n")];
    // Stored out of order: the columns follow the uploads' times, not their arrival.
    for (from, folded) in uploads.iter().rev() {
        let path = format!("/ingest?name=spiky.cpu&from={from}&until={}", from + 10);
        assert_eq!(http(addr, "POST", &path, folded.as_bytes()).unwrap().0, 200);
    }
    let (status, content_type, body) =
        request_bytes(addr, "GET", "/render/time-order?query=spiky.cpu&from=1700000000&until=1700000100", b"");
    assert_eq!((status, content_type.as_str()), (200, time_order::CONTENT_TYPE), "{}", String::from_utf8_lossy(&body));
    let timed = time_order::decode(&body).unwrap();
    assert_eq!(timed.name, "3 uploads, one column each");
    assert_eq!(timed.tree.total(), 34);
    let s = |stack: &str, start, weight| (stack.to_string(), start, weight);
    // Each column as wide as its upload's total, laid out as its flamegraph (names in order):
    // the spike in the middle is the widest.
    assert_eq!(
        named_samples(&timed),
        [s("main;a", 0, 3), s("main;b", 3, 2), s("idle", 5, 5), s("main;a", 10, 20), s("idle", 30, 4)]
    );

    // The range picks the uploads: only the last two.
    let (status, _, body) =
        request_bytes(addr, "GET", "/render/time-order?query=spiky.cpu&from=1700000015&until=1700000100", b"");
    assert_eq!(status, 200);
    let timed = time_order::decode(&body).unwrap();
    assert_eq!(named_samples(&timed), [s("idle", 0, 5), s("main;a", 5, 20), s("idle", 25, 4)]);
    assert_eq!(timed.name, "2 uploads, one column each");

    // No query is a clear 400.
    let (status, _, body) = request_bytes(addr, "GET", "/render/time-order?from=1700000000", b"");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn stored_time_order_refuses_more_uploads_than_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;
    let cap = 1000;
    // Recent uploads: the store's retention would drop blocks of old ones as the head flushes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let base = now - 20_000;
    for i in 0..=cap {
        let path = format!("/ingest?name=many.cpu&from={}&until={}", base + i * 10, base + i * 10 + 10);
        let folded = format!("main;work {}\n", i + 1);
        assert_eq!(http(addr, "POST", &path, folded.as_bytes()).unwrap().0, 200);
    }
    let all = format!("/render/time-order?query=many.cpu&from={base}&until={}", base + 20_000);
    let (status, _, body) = request_bytes(addr, "GET", &all, b"");
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("1001 uploads in this range, more than the 1000"), "{message}");
    // One upload fewer in the range is shown whole.
    let fewer = format!("/render/time-order?query=many.cpu&from={base}&until={}", base + 10_000);
    let (status, _, body) = request_bytes(addr, "GET", &fewer, b"");
    assert_eq!(status, 200);
    assert_eq!(time_order::decode(&body).unwrap().samples.len(), cap as usize);
}
