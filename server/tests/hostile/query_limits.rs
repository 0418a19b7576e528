//! Hostile input: queries that would read too much, tenants that make too many series, huge
//! trees asked for as JSON, and names the selector could not write.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kiln_server::ingest::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use prost::Message;

use super::*;

/// `text` escaped for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request with extra headers; status and raw body (the shared helper reads text only).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    assert!(!head.to_ascii_lowercase().contains("chunked"), "expected a sized body: {head}");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, response[split + 4..].to_vec())
}

fn ingest(addr: SocketAddr, name: &str, body: &str) -> std::io::Result<(u16, String)> {
    http(addr, "POST", &format!("/ingest?name={}", encode(name)), body.as_bytes())
}

fn folded(addr: SocketAddr, query: &str) -> (u16, String) {
    http(addr, "GET", &format!("/render?query={}&format=folded", encode(query)), b"").expect("query answers")
}

/// The error message of a JSON refusal.
fn message(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    json["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn new_series_beyond_the_tenant_limit_are_refused_and_active_ones_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    // The baseline is the first of three.
    let kiln = start_with_baseline(dir.path(), &["--max-series-per-tenant", "3"]);
    for pod in 0..2 {
        let (status, body) = ingest(kiln.addr, &format!("fleet.cpu{{pod=p{pod}}}"), "main;work 1").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for pod in 2..12 {
        let answer = ingest(kiln.addr, &format!("fleet.cpu{{pod=p{pod}}}"), "main;work 1").unwrap();
        let text = message(&answer.1);
        assert_refused(Ok(answer), 400, "a new series over the limit");
        assert!(text.contains("--max-series-per-tenant") && text.contains("limit of 3"), "{text}");
    }
    // Existing series keep flowing, the refused ones were not stored.
    for _ in 0..3 {
        let (status, body) = ingest(kiln.addr, "fleet.cpu{pod=p1}", "main;work 1").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(folded(kiln.addr, r#"fleet.cpu{pod="p1"}"#).1, "main;work 4\n");
    assert_eq!(folded(kiln.addr, "fleet.cpu").1, "main;work 5\n");
    assert_eq!(folded(kiln.addr, r#"fleet.cpu{pod="p5"}"#).1, "");
    assert_alive(kiln.addr);
}

#[test]
fn a_query_over_too_many_series_is_refused_with_how_to_narrow_it() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-query-series", "3"]);
    for pod in 0..5 {
        let (status, body) = ingest(kiln.addr, &format!("wide.cpu{{pod=p{pod}}}"), "main;work 1").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for path in
        ["/render?query=wide.cpu", "/render?query=wide.cpu&format=tree", "/api/page-data/summary?query=wide.cpu"]
    {
        let answer = http(kiln.addr, "GET", path, b"").unwrap();
        let text = message(&answer.1);
        assert_refused(Ok(answer), 422, path);
        assert!(text.contains("selects 5 series") && text.contains("--max-query-series"), "{text}");
        assert!(text.contains("label matchers"), "{text}");
    }
    // Narrowed, it answers.
    assert_eq!(folded(kiln.addr, r#"wide.cpu{pod=~"p[12]"}"#), (200, "main;work 2\n".to_string()));
    assert_alive(kiln.addr);
}

#[test]
fn a_query_that_would_read_too_many_bytes_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    // Every upload is cut into a block at once, so queries read chunks; the baseline's chunk
    // fits in 4 KiB, the big upload's does not.
    let kiln = start_with_baseline(dir.path(), &["--head-max-bytes", "1", "--max-query-bytes", "4096"]);
    let mut rng = support::XorShift::seeded();
    let big: String =
        (0..4000).map(|i| format!("main;f{};g{};h{} {}\n", rng.below(1 << 30), i, rng.below(1 << 30), 1 + i)).collect();
    let (status, body) = ingest(kiln.addr, "heavy.cpu", &big).unwrap();
    assert_eq!(status, 200, "{body}");
    // Wait (generously) for the block: until then the upload is read from memory.
    let deadline = Instant::now() + Duration::from_secs(120);
    let refused = loop {
        let answer = http(kiln.addr, "GET", "/render?query=heavy.cpu&format=folded", b"").expect("answers");
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = message(&refused.1);
    assert_refused(Ok(refused), 422, "heavy query");
    assert!(text.contains("--max-query-bytes") && text.contains("shorter time range"), "{text}");
    assert_alive(kiln.addr);
}

#[test]
fn a_huge_tree_is_answered_as_bounded_json() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let leaves = 20_000u64;
    let body: String = (0..leaves).map(|i| format!("main;fn{i} 1\n")).collect();
    let (status, answer) = ingest(kiln.addr, "huge.cpu", &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    // Flamebearer levels hold four numbers per node.
    let nodes = |json: &serde_json::Value| -> usize {
        json["flamebearer"]["levels"].as_array().unwrap().iter().map(|l| l.as_array().unwrap().len() / 4).sum()
    };
    let (status, answer) = http(kiln.addr, "GET", "/render?query=huge.cpu", b"").unwrap();
    assert_eq!(status, 200, "{answer}");
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    // The default (8192) plus the `other` standing for what was cut; every sample still counted.
    assert!(nodes(&json) <= 8192 + 1, "{} nodes", nodes(&json));
    assert_eq!(json["flamebearer"]["numTicks"], leaves);
    let (status, answer) = http(kiln.addr, "GET", "/render?query=huge.cpu&maxNodes=100", b"").unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(nodes(&serde_json::from_str(&answer).unwrap()) <= 101);
    // A bound over the hard cap is refused; so is an unbounded comparison of the huge tree.
    let answer = http(kiln.addr, "GET", "/render?query=huge.cpu&maxNodes=100000000", b"").unwrap();
    let text = message(&answer.1);
    assert_refused(Ok(answer), 422, "maxNodes over the cap");
    assert!(text.contains("--max-nodes-max"), "{text}");
    let (status, answer) = http(kiln.addr, "GET", "/render-diff?leftQuery=huge.cpu&rightQuery=huge.cpu", b"").unwrap();
    assert_eq!(status, 200, "{answer}");
    let levels = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["flamebearer"]["levels"].clone();
    // Seven numbers per node in a comparison.
    let diff_nodes: usize = levels.as_array().unwrap().iter().map(|l| l.as_array().unwrap().len() / 7).sum();
    assert!(diff_nodes <= 8192 + 1, "{diff_nodes} nodes");
    // The binary tree (what the viewer reads) still has everything.
    let (status, tree) = request(kiln.addr, "GET", "/render?query=huge.cpu&format=folded", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(tree).unwrap().lines().count() as u64, leaves);
    assert_alive(kiln.addr);
}

#[test]
fn many_labels_with_odd_names_are_stored_and_queried_by_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let (status, pprof) = request(kiln.addr, "GET", &format!("/render?query={BASELINE_APP}&format=pprof"), &[], b"");
    assert_eq!(status, 200);
    // 64 labels (the most a series may carry), names Prometheus could not write bare.
    let mut labels: Vec<LabelPair> = (0..63)
        .map(|i| LabelPair { name: format!("k8s.io/label-{i}"), value: format!("value \"{i}\" {{x}}") })
        .collect();
    labels.push(LabelPair { name: "service_name".into(), value: "labelled".into() });
    labels.push(LabelPair { name: "__name__".into(), value: "process_cpu".into() });
    labels.push(LabelPair { name: "env".into(), value: "prod".into() });
    let push = PushRequest {
        series: vec![RawProfileSeries {
            labels,
            samples: vec![RawSample { raw_profile: pprof.clone(), id: String::new() }],
        }],
    };
    let (status, body) = request(
        kiln.addr,
        "POST",
        "/push.v1.PusherService/Push",
        &[("Content-Type", "application/proto")],
        &push.encode_to_vec(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let want = folded_values(BASELINE_BODY);
    let query = r#"labelled.cpu{"k8s.io/label-7"="value \"7\" {x}",env="prod","k8s.io/label-62"=~"value.*"}"#;
    let (status, body) = folded(kiln.addr, query);
    assert_eq!(status, 200, "{body}");
    assert_eq!(folded_values(&body), want);
    // One label too many is refused, and nothing is stored.
    let too_many: String = (0..65).map(|i| format!("l{i}=v")).collect::<Vec<_>>().join(",");
    assert_refused(ingest(kiln.addr, &format!("many.cpu{{{too_many}}}"), "main 1"), 400, "65 labels");
    assert_eq!(folded(kiln.addr, "many.cpu").1, "");
    assert_alive(kiln.addr);
}

#[test]
fn a_pushed_service_name_the_bare_selector_cannot_write_is_queried_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let (status, pprof) = request(kiln.addr, "GET", &format!("/render?query={BASELINE_APP}&format=pprof"), &[], b"");
    assert_eq!(status, 200);
    let odd = ["my app {x}", "say \"hi\"", "web.cpu", "a:b:c:d:e", "服务.wall"];
    let push = PushRequest {
        series: odd
            .iter()
            .map(|name| RawProfileSeries {
                labels: vec![
                    // A profile-type suffix is dropped from the name: `web.cpu.cpu` is `web.cpu`.
                    LabelPair { name: "service_name".into(), value: format!("{name}.cpu") },
                    LabelPair { name: "__name__".into(), value: "process_cpu".into() },
                ],
                samples: vec![RawSample { raw_profile: pprof.clone(), id: String::new() }],
            })
            .collect(),
    };
    let (status, body) = request(
        kiln.addr,
        "POST",
        "/push.v1.PusherService/Push",
        &[("Content-Type", "application/proto")],
        &push.encode_to_vec(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let want = folded_values(BASELINE_BODY);
    for (name, query) in [
        ("my app {x}", r#""my app {x}".cpu"#),
        ("say \"hi\"", r#""say \"hi\"".cpu"#),
        ("web.cpu", r#""web.cpu".cpu"#),
        ("a:b:c:d:e", r#""a:b:c:d:e".cpu"#),
        ("服务.wall", r#""服务.wall".cpu"#),
        ("my app {x}", r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="my app {x}"}"#),
    ] {
        let (status, body) = folded(kiln.addr, query);
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(folded_values(&body), want, "{name} as {query}");
    }
    // The home page links each by its quoted name.
    let (status, home) = http(kiln.addr, "GET", "/", b"").unwrap();
    assert_eq!(status, 200);
    assert!(home.contains(&format!("/explore?query={}", encode(r#""my app {x}""#))), "no quoted link on the home page");
    assert_alive(kiln.addr);
}
