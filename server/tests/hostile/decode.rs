//! Hostile input: decoding. Small bodies that expand (a name copied per inlined line, a stack
//! shared by a million references, a long name in thousands of trees, gzip bombs) and bodies
//! that are simply broken. Each is answered (200 when it fits the limits, 400 malformed, 413
//! over a byte limit, 422 over the decode budget), and the process lives on.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flate2::{Compression, write::GzEncoder};
use kiln_server::ingest::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use kiln_server::proto::{Function, Label, Line, Location, Profile, Sample, ValueType};
use prost::Message;

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// One request with headers on its own connection: status and body.
fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) and close before the whole body is sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A Connect error: `status` and a JSON body with `code` and `message`.
fn assert_connect_refused(answer: std::io::Result<(u16, String)>, status: u16, context: &str) -> String {
    let (got, body) = answer.unwrap_or_else(|e| panic!("{context}: no answer: {e}"));
    assert_eq!(got, status, "{context}: {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {body}"));
    assert!(json["code"].as_str().is_some(), "{context}: {body}");
    json["message"].as_str().unwrap_or_default().to_string()
}

/// The error message of a refusal (after [`assert_refused`]'s checks).
fn refusal(answer: std::io::Result<(u16, String)>, status: u16, context: &str) -> String {
    let (got, body) = answer.unwrap_or_else(|e| panic!("{context}: no answer: {e}"));
    assert_refused(Ok((got, body.clone())), status, context);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["error"].as_str().unwrap().to_string()
}

/// A CPU pprof with the given strings (after ""), functions (id, name index), locations (id,
/// function ids innermost first) and samples (location ids leaf first, value).
fn pprof(
    strings: &[&str],
    functions: &[(u64, i64)],
    locations: &[(u64, Vec<u64>)],
    samples: &[(Vec<u64>, i64)],
) -> Profile {
    let mut string_table: Vec<Vec<u8>> = vec![Vec::new(), b"cpu".to_vec(), b"nanoseconds".to_vec()];
    string_table.extend(strings.iter().map(|s| s.as_bytes().to_vec()));
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: samples
            .iter()
            .map(|(ids, value)| Sample { location_id: ids.clone(), value: vec![*value], label: vec![] })
            .collect(),
        location: locations
            .iter()
            .map(|(id, lines)| Location {
                id: *id,
                address: 0,
                line: lines.iter().map(|&function_id| Line { function_id, line: 1 }).collect(),
            })
            .collect(),
        function: functions.iter().map(|&(id, name)| Function { id, name }).collect(),
        string_table,
        time_nanos: 0,
        duration_nanos: 0,
        period_type: None,
        period: 0,
    }
}

/// The first string a test adds is at this index.
const FIRST: i64 = 3;

/// A location inlining `lines` frames (named `f0`, `f1`, …), then one location per sample on
/// top of it: each sample is `(its own location, the long one)`, the own one at the root end
/// when `own_at_root`, else at the leaf end (cut off by the depth limit).
fn expanding_pprof(lines: u64, samples: u64, own_at_root: bool) -> Vec<u8> {
    let mut names: Vec<String> = (0..lines).map(|i| format!("f{i}")).collect();
    names.extend((0..samples).map(|s| format!("g{s}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let functions: Vec<(u64, i64)> = (0..lines + samples).map(|i| (i + 1, FIRST + i as i64)).collect();
    let mut locations = vec![(1, (1..=lines).collect::<Vec<u64>>())];
    let mut stacks = Vec::new();
    for s in 0..samples {
        let own = 2 + s;
        locations.push((own, vec![lines + 1 + s]));
        stacks.push((if own_at_root { vec![1, own] } else { vec![own, 1] }, 1));
    }
    pprof(&names, &functions, &locations, &stacks).encode_to_vec()
}

fn push_body(profiles: &[Vec<u8>]) -> Vec<u8> {
    PushRequest {
        series: profiles
            .iter()
            .enumerate()
            .map(|(i, raw)| RawProfileSeries {
                labels: vec![
                    LabelPair { name: "service_name".into(), value: "pushed".into() },
                    LabelPair { name: "series".into(), value: i.to_string() },
                ],
                samples: vec![RawSample { raw_profile: raw.clone(), id: String::new() }],
            })
            .collect(),
    }
    .encode_to_vec()
}

const PROTO: &[(&str, &str)] = &[("Content-Type", "application/proto")];

#[test]
fn a_long_name_inlined_twenty_thousand_times_is_read_once_and_cut_at_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-stack-depth", "64"]);
    let name = "n".repeat(1 << 20);
    let raw = pprof(&[&name], &[(1, FIRST)], &[(1, vec![1; 20_000])], &[(vec![1], 5)]).encode_to_vec();
    let body = gzip(&raw);
    assert!(body.len() < 4096, "the attack is small: {} bytes", body.len());
    let (status, answer) = http(kiln.addr, "POST", "/ingest?name=x.cpu&format=pprof", &body).expect("an answer");
    assert_eq!(status, 200, "{answer}");
    let (status, json) = http(kiln.addr, "GET", "/render?query=x.cpu&format=json", b"").expect("render");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let flamebearer = &json["flamebearer"];
    assert_eq!(flamebearer["numTicks"], 5);
    assert_eq!(flamebearer["levels"].as_array().unwrap().len(), 1 + 64, "cut at --max-stack-depth");
    assert_eq!(
        flamebearer["names"].as_array().unwrap().len(),
        2,
        "one copy of the name: {}",
        json["flamebearer"]["names"].as_array().unwrap().len()
    );
    assert_alive(kiln.addr);
}

#[test]
fn pprof_numbers_ids_and_indexes_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-stack-depth", "32"]);
    let ingest = "/ingest?name=odd.cpu&format=pprof";
    let one = |samples: &[(Vec<u64>, i64)]| pprof(&["main"], &[(1, FIRST)], &[(1, vec![1])], samples);
    let overflowing = one(&[(vec![1], i64::MAX), (vec![1], i64::MAX), (vec![1], i64::MAX)]).encode_to_vec();
    assert!(refusal(http(kiln.addr, "POST", ingest, &overflowing), 400, "overflow").contains("2^64"));
    let negative = one(&[(vec![1], -5)]).encode_to_vec();
    assert!(refusal(http(kiln.addr, "POST", ingest, &negative), 400, "negative").contains("negative"));
    let past_table = one(&[(vec![1, 1_000_000_007], 1)]).encode_to_vec();
    assert!(refusal(http(kiln.addr, "POST", ingest, &past_table), 400, "location").contains("missing location"));
    let mut bad_string = one(&[(vec![1], 1)]);
    bad_string.function[0].name = 1 << 40;
    assert!(refusal(http(kiln.addr, "POST", ingest, &bad_string.encode_to_vec()), 400, "string").contains("string"));
    let mut bad_label = one(&[(vec![1], 1)]);
    bad_label.sample[0].label = vec![Label { key: -1, str: 3, num: 0 }];
    assert_refused(http(kiln.addr, "POST", ingest, &bad_label.encode_to_vec()), 400, "label index");
    // A million references to one location in one sample, and 200 000 samples of one stack
    // of 5 000 inlined frames: each stack is built once, cut at the depth limit, and stored.
    let mut counts = pprof(&["main"], &[(1, FIRST)], &[(1, vec![1]), (2, vec![1; 5_000])], &[(vec![1; 1_000_000], 3)]);
    counts.sample.extend((0..200_000).map(|_| Sample { location_id: vec![2], value: vec![1], label: vec![] }));
    let (status, answer) = http(kiln.addr, "POST", ingest, &gzip(&counts.encode_to_vec())).expect("an answer");
    assert_eq!(status, 200, "{answer}");
    let (status, folded) = http(kiln.addr, "GET", "/render?query=odd.cpu&format=folded", b"").unwrap();
    assert_eq!(status, 200);
    assert_eq!(folded_values(&folded), BTreeMap::from([(vec!["main"; 32].join(";"), 200_003)]));
    assert_alive(kiln.addr);
}

#[test]
fn pprof_expansion_beyond_the_decode_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    // Every sample makes 1024 new nodes from 10 bytes: refused on nodes.
    let nodes = gzip(&expanding_pprof(1024, 20_000, true));
    let message = refusal(http(kiln.addr, "POST", "/ingest?name=wide.cpu&format=pprof", &nodes), 422, "nodes");
    assert!(message.contains("--max-nodes-per-kib"), "{message}");
    // Every sample walks 1024 frames that exist already: refused on frames.
    let frames = gzip(&expanding_pprof(1024, 20_000, false));
    let message = refusal(http(kiln.addr, "POST", "/ingest?name=long.cpu&format=pprof", &frames), 422, "frames");
    assert!(message.contains("--max-frames-per-kib"), "{message}");
    // The same through the viewer's file reader.
    let message = refusal(http(kiln.addr, "POST", "/api/collapse?format=auto", &frames), 422, "collapse");
    assert!(message.contains("--max-frames-per-kib"), "{message}");
    let (status, apps) = http(kiln.addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(status, 200);
    assert!(!apps.contains("wide") && !apps.contains("long"), "nothing stored: {apps}");
    assert_alive(kiln.addr);
}

#[test]
fn deep_stacks_are_cut_at_the_leaf_end() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-stack-depth", "100"]);
    let depth = 50_000u64;
    let names: Vec<String> = (0..depth).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let functions: Vec<(u64, i64)> = (0..depth).map(|i| (i + 1, FIRST + i as i64)).collect();
    let mut locations: Vec<(u64, Vec<u64>)> = (1..=depth).map(|i| (i, vec![i])).collect();
    // The same stack inlined in one location, innermost (d49999) first.
    locations.push((depth + 1, (1..=depth).rev().collect()));
    // Leaf first: d49999 is the leaf, d0 the root; and 100 000 samples of the inlined one.
    let stack: Vec<u64> = (1..=depth).rev().collect();
    let mut samples = vec![(stack, 9)];
    samples.extend((0..100_000).map(|_| (vec![depth + 1], 1)));
    let raw = pprof(&names, &functions, &locations, &samples).encode_to_vec();
    let (status, answer) = http(kiln.addr, "POST", "/ingest?name=deep.cpu&format=pprof", &gzip(&raw)).unwrap();
    assert_eq!(status, 200, "{answer}");
    let (_, folded) = http(kiln.addr, "GET", "/render?query=deep.cpu&format=folded", b"").unwrap();
    let want: Vec<String> = (0..100).map(|i| format!("d{i}")).collect();
    assert_eq!(folded_values(&folded), BTreeMap::from([(want.join(";"), 100_009)]));
    assert_alive(kiln.addr);
}

#[test]
fn push_requests_share_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-decompressed-bytes", "1048576"]);
    let push = "/push.v1.PusherService/Push";
    // Three profiles of 600 KB each, gzipped: each under the limit, together over it.
    let padding = "p".repeat(600_000);
    let padded = gzip(&pprof(&[&padding, "main"], &[(1, FIRST + 1)], &[(1, vec![1])], &[(vec![1], 1)]).encode_to_vec());
    let message = assert_connect_refused(
        request(kiln.addr, push, PROTO, &push_body(&[padded.clone(), padded.clone(), padded])),
        413,
        "inner bombs",
    );
    assert!(message.contains("--max-decompressed-bytes"), "{message}");
    // A push whose profile expands beyond the budget.
    let wide = expanding_pprof(1024, 20_000, true);
    let message =
        assert_connect_refused(request(kiln.addr, push, PROTO, &push_body(&[wide])), 422, "expanding profile");
    assert!(message.contains("--max-nodes-per-kib"), "{message}");
    // Many series, each cheap, that together walk more frames than the request may.
    let small = expanding_pprof(1024, 200, false);
    let many: Vec<Vec<u8>> = (0..50).map(|_| small.clone()).collect();
    let message = assert_connect_refused(request(kiln.addr, push, PROTO, &push_body(&many)), 422, "many series");
    assert!(message.contains("--max-frames-per-kib"), "{message}");
    // A bomb as the body itself, and broken bodies.
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert_connect_refused(request(kiln.addr, push, PROTO, &bomb), 413, "push bomb");
    let whole = push_body(&[padded_small()]);
    assert_connect_refused(request(kiln.addr, push, PROTO, &whole[..whole.len() - 3]), 400, "truncated push");
    let json = &[("Content-Type", "application/json")];
    assert_connect_refused(request(kiln.addr, push, json, br#"{"series": [{"labels": ["#), 400, "truncated JSON push");
    let (status, apps) = http(kiln.addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(status, 200);
    assert!(!apps.contains("pushed"), "nothing stored: {apps}");
    assert_alive(kiln.addr);
}

fn padded_small() -> Vec<u8> {
    pprof(&["main"], &[(1, FIRST)], &[(1, vec![1])], &[(vec![1], 1)]).encode_to_vec()
}

/// A speedscope file with one frame named `name` and the given profiles (JSON objects).
fn speedscope(name: &str, profiles: &[String]) -> Vec<u8> {
    format!(r#"{{"shared": {{"frames": [{{"name": "{name}"}}]}}, "profiles": [{}]}}"#, profiles.join(",")).into_bytes()
}

#[test]
fn speedscope_expansion_is_linear_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let name = "s".repeat(1 << 20);
    // 300 000 samples of a 1 MiB-named frame, and one sample of two million frames.
    let mut samples = String::from("[");
    samples.push_str(&vec!["[0]"; 300_000].join(","));
    samples.push_str(",[");
    samples.push_str(&vec!["0"; 2_000_000].join(","));
    samples.push_str("]]");
    let sampled = format!(
        r#"{{"type": "sampled", "name": "t", "unit": "none", "startValue": 0, "endValue": 1, "samples": {samples}}}"#
    );
    let ingest = "/ingest?name=scope&format=speedscope";
    let (status, answer) = http(kiln.addr, "POST", ingest, &speedscope(&name, &[sampled])).unwrap();
    assert_eq!(status, 200, "{answer}");
    // 100 000 opens and closes of that frame, and 50 000 opens nested without a close.
    let mut events: Vec<String> = Vec::new();
    for i in 0..100_000 {
        events.push(format!(r#"{{"type":"O","at":{i},"frame":0}},{{"type":"C","at":{i},"frame":0}}"#));
    }
    for _ in 0..50_000 {
        events.push(r#"{"type":"O","at":100000,"frame":0}"#.to_string());
    }
    let evented = format!(
        r#"{{"type": "evented", "name": "e", "unit": "none", "startValue": 0, "endValue": 100001, "events": [{}]}}"#,
        events.join(",")
    );
    let (status, answer) =
        http(kiln.addr, "POST", "/ingest?name=nested&format=speedscope", &speedscope(&name, &[evented])).unwrap();
    assert_eq!(status, 200, "{answer}");
    // Thousands of profiles, each a tree holding the 1 MiB name: refused.
    let profiles: Vec<String> = (0..3_000)
        .map(|i| format!(r#"{{"type": "sampled", "name": "t{i}", "unit": "none", "startValue": 0, "endValue": 1, "samples": [[0]]}}"#))
        .collect();
    let message = refusal(
        http(kiln.addr, "POST", "/ingest?name=threads&format=speedscope", &speedscope(&name, &profiles)),
        422,
        "profiles",
    );
    assert!(message.contains("--max-nodes-per-kib"), "{message}");
    let message = refusal(
        http(kiln.addr, "POST", "/api/collapse?format=speedscope", &speedscope(&name, &profiles)),
        422,
        "collapse",
    );
    assert!(message.contains("--max-nodes-per-kib"), "{message}");
    assert_alive(kiln.addr);
}

#[test]
fn gzip_bombs_oversized_and_broken_bodies_get_413_or_400_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(
        dir.path(),
        &["--max-decompressed-bytes", "1048576", "--max-body-bytes", "2097152", "--max-collapse-body-bytes", "2097152"],
    );
    let bomb = gzip(&vec![b'a'; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    for path in [
        "/ingest?name=bomb.cpu",
        "/ingest?name=bomb.cpu&format=pprof",
        "/ingest?name=bomb.cpu&format=perf_script",
        "/api/collapse?format=auto",
        "/api/collapse?format=perf_script",
    ] {
        let message = refusal(http(kiln.addr, "POST", path, &bomb), 413, path);
        assert!(message.contains("--max-decompressed-bytes"), "{path}: {message}");
    }
    // A gzipped multipart part, as the Go agent sends its profile.
    let boundary = "b0undary";
    let mut multipart =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"p.pprof\"\r\n\r\n")
            .into_bytes();
    multipart.extend_from_slice(&bomb);
    multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let message = refusal(
        request(kiln.addr, "/ingest?name=multi", &[("Content-Type", &content_type)], &multipart),
        413,
        "multipart",
    );
    assert!(message.contains("--max-decompressed-bytes"), "{message}");
    // Over the raw limit: 413 in the JSON error shape too.
    let huge = vec![b'x'; 3 << 20];
    for (path, setting) in [
        ("/ingest?name=big.cpu", "--max-body-bytes"),
        ("/api/collapse?format=auto", "--max-collapse-body-bytes"),
        ("/api/collapse/time-order?format=auto", "--max-collapse-body-bytes"),
    ] {
        let message = refusal(http(kiln.addr, "POST", path, &huge), 413, path);
        assert!(message.contains(setting), "{path}: {message}");
    }
    let message = assert_connect_refused(request(kiln.addr, "/push.v1.PusherService/Push", PROTO, &huge), 413, "push");
    assert!(message.contains("--max-body-bytes"), "{message}");
    // Truncated and malformed bodies: 400.
    let whole = padded_small();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/ingest?name=m.cpu&format=pprof", whole[..whole.len() - 2].to_vec()),
        ("/ingest?name=m.cpu&format=pprof", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec()),
        ("/ingest?name=m.cpu&format=pprof", b"\x0b\x00".to_vec()),
        ("/ingest?name=m.cpu&format=pprof", gzip(&whole)[..20].to_vec()),
        (
            "/ingest?name=m&format=speedscope",
            br#"{"shared": {"frames": [{"name": "a"}]}, "profiles": [{"type": "sampled""#.to_vec(),
        ),
        (
            "/ingest?name=m&format=speedscope",
            br#"{"shared": {"frames": []}, "profiles": [{"type": "sampled", "unit": "none", "samples": [[0]]}]}"#
                .to_vec(),
        ),
        ("/api/collapse?format=pprof", whole[..whole.len() - 2].to_vec()),
        ("/api/collapse?format=speedscope", b"{\"shared\": ".to_vec()),
    ];
    for (path, body) in cases {
        assert_refused(http(kiln.addr, "POST", path, &body), 400, &format!("{path}: {body:?}"));
    }
    assert_alive(kiln.addr);
}

/// The in-flight bytes `/metrics` reports.
fn inflight_bytes(addr: SocketAddr) -> u64 {
    let (_, metrics) = http(addr, "GET", "/metrics", b"").expect("metrics answer");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("kiln_inflight_decompressed_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no in-flight gauge in {metrics}"))
}

#[test]
fn gzipped_profiles_inside_a_push_are_held_in_the_inflight_budget() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &["--max-inflight-bytes", "2000000"]);
    let push = "/push.v1.PusherService/Push";
    // Another upload holds 1.5 MB: its headers declare it, its body never comes.
    let mut held = TcpStream::connect(kiln.addr).unwrap();
    let head = format!("POST /ingest?name=held.cpu HTTP/1.1\r\nHost: {}\r\nContent-Length: 1500000\r\n\r\n", kiln.addr);
    held.write_all(head.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while inflight_bytes(kiln.addr) < 1_500_000 {
        assert!(std::time::Instant::now() < deadline, "the held upload never reached the budget");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A push of a few KB whose gzipped profiles decompress to 1.8 MB: only its own few KB are
    // visible from outside, the rest must fit beside the held 1.5 MB when it is decompressed.
    let padding = "p".repeat(600_000);
    let padded = gzip(&pprof(&[&padding, "main"], &[(1, FIRST + 1)], &[(1, vec![1])], &[(vec![1], 1)]).encode_to_vec());
    let body = push_body(&[padded.clone(), padded.clone(), padded]);
    assert!(body.len() < 10_000, "a small body: {}", body.len());
    let answer = request(kiln.addr, push, PROTO, &body).expect("answered");
    assert_eq!(answer.0, 503, "{}", answer.1);
    let message = assert_connect_refused(Ok(answer), 503, "nested gzip over the in-flight budget");
    assert!(message.contains("--max-inflight-bytes"), "{message}");
    // Once the other upload is gone, the same push fits and is stored; nothing is left held.
    drop(held);
    while inflight_bytes(kiln.addr) > 0 {
        assert!(std::time::Instant::now() < deadline, "the held bytes were never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body_text) = request(kiln.addr, push, PROTO, &body).expect("answered");
    assert_eq!(status, 200, "{body_text}");
    assert_eq!(inflight_bytes(kiln.addr), 0, "the push gave back what it held");
    assert_alive(kiln.addr);
}
