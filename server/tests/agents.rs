//! Real agent uploads (captured copies in tests/data/agents) replayed through the whole router, then
//! read back with `/render`: golden folded output, totals, and bad input that must change
//! nothing.
//!
//! Expected totals come from `decode_body.py` over the same bodies. `BLESS=1` rewrites the
//! golden files under `tests/golden/agents/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kiln_server::api::{AppState, router};
use kiln_server::ingest::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use kiln_server::storage::Store;
use prost::Message;
use tower::ServiceExt;

const AGENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/agents");

/// A captured agent and what its uploads add up to.
struct Capture {
    dir: &'static str,
    /// The query that finds its CPU data.
    query: &'static str,
    /// Sum of every sample value, per `decode_body.py`.
    total: u64,
    /// Functions the profiled program ran, which the profile must show.
    functions: &'static [&'static str],
}

const RUST_FUNCTIONS: &[&str] = &["burn_fibonacci", "burn_primes"];
const NODE_FUNCTIONS: &[&str] = &["fibonacci", "descendLeft", "buildRecords"];

const CAPTURES: &[Capture] = &[
    // pprof-rs 0.5 sends `cpu/nanoseconds`: 4.59 + 4.81 + 4.75 + 2.93 s.
    Capture { dir: "rust-v05", query: "agenttest.cpu", total: 17_080_000_000, functions: RUST_FUNCTIONS },
    // The folded encoding names the series `agenttest.cpu.cpu`; the repeated type is dropped.
    Capture { dir: "rust-v05-folded", query: "agenttest.cpu", total: 345 + 480 + 500 + 402, functions: RUST_FUNCTIONS },
    // Connect push, `cpu/nanoseconds`: 4.67 + 4.85 + 4.95 + 2.70 s.
    Capture { dir: "rust-v2", query: "agenttest.cpu", total: 17_170_000_000, functions: RUST_FUNCTIONS },
    // A multipart body as the Go agent builds it (its CPU part a Node profile with `wall`
    // renamed `cpu`): the `samples/count` type answers `cpu`.
    Capture { dir: "go-multipart", query: "agenttest.go.cpu", total: 344, functions: NODE_FUNCTIONS },
    // @pyroscope/nodejs 0.6.4, wall every 10 s: 6.18 + 4.96 + 6.00 + 2.89 s of wall time.
    Capture {
        dir: "node-0.6",
        query: "agenttest.node.wall",
        total: 6_182_712_000 + 4_960_000_000 + 5_999_070_000 + 2_894_118_000,
        functions: NODE_FUNCTIONS,
    },
    // The same agent at its default 60 s interval.
    Capture {
        dir: "node-0.6-default",
        query: "agenttest.node.wall",
        total: 35_517_756_000 + 35_000_010_000 + 5_374_464_000,
        functions: NODE_FUNCTIONS,
    },
];

struct Server {
    router: Router,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    Server { router: router(AppState::new(store.clone())), store, _dir: dir }
}

impl Server {
    async fn send(&self, request: Request<Body>) -> (StatusCode, String, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, String::from_utf8_lossy(&body).into_owned())
    }

    async fn post(&self, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, String, String) {
        let mut request = Request::post(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn folded(&self, query: &str) -> String {
        let uri = format!("/render?query={}&format=folded", encode(query));
        let (status, _, body) = self.send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body
    }

    /// Everything stored, as a comparable snapshot.
    async fn snapshot(&self) -> Vec<String> {
        let selected = self.store.select(i64::MIN, i64::MAX, |_| true).await.unwrap();
        let mut all: Vec<String> = selected.iter().map(|u| format!("{:?}", u)).collect();
        all.sort();
        all
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// One captured request: its path and query, headers and body.
struct Captured {
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads `requests.log`: a `POST <uri> body=…B -> <file>` line, then indented `name: value`
/// headers (lines starting `?` echo the query string).
fn captured(dir: &str) -> Vec<Captured> {
    let base = Path::new(AGENTS).join(dir);
    let log = std::fs::read_to_string(base.join("requests.log")).unwrap();
    let mut out: Vec<Captured> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split(" POST ").nth(1) {
            let uri = rest.split_whitespace().next().unwrap().to_string();
            let file = rest.rsplit("-> ").next().unwrap().trim();
            out.push(Captured { uri, headers: Vec::new(), body: std::fs::read(base.join(file)).unwrap() });
        } else if let (Some(last), Some((name, value))) = (out.last_mut(), line.trim().split_once(": ")) {
            let indented = line.starts_with("      ") && !line.trim_start().starts_with('?');
            if indented && !matches!(name, "content-length" | "host") {
                last.headers.push((name.to_string(), value.to_string()));
            }
        }
    }
    assert!(!out.is_empty(), "no requests in {dir}/requests.log");
    out
}

async fn replay(server: &Server, dir: &str) {
    for request in captured(dir) {
        let headers: Vec<(&str, &str)> = request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let (status, _, body) = server.post(&request.uri, &headers, request.body).await;
        assert_eq!(status, StatusCode::OK, "{dir} {}: {body}", request.uri);
        assert!(body.is_empty(), "agents expect an empty body, got {body}");
    }
}

fn total(folded: &str) -> u64 {
    folded.lines().map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap()).sum()
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/agents").join(format!("{name}.folded"))
}

/// Compares with the golden file, or rewrites it under `BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; run `BLESS=1 cargo test -p kiln-server --test agents` to create it", path.display())
    });
    if expected != actual {
        let missing: Vec<&str> = expected.lines().filter(|l| !actual.lines().any(|a| a == *l)).collect();
        let extra: Vec<&str> = actual.lines().filter(|l| !expected.lines().any(|e| e == *l)).collect();
        let mut message = format!("{} differs from the render output\n", path.display());
        for l in missing.iter().take(20) {
            message.push_str(&format!("- {l}\n"));
        }
        for l in extra.iter().take(20) {
            message.push_str(&format!("+ {l}\n"));
        }
        message.push_str("if the change is intended: BLESS=1 cargo test -p kiln-server --test agents\n");
        panic!("{message}");
    }
}

#[tokio::test]
async fn every_capture_renders_its_golden_cpu_profile() {
    let mut dirs: Vec<String> = std::fs::read_dir(AGENTS)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut cases: Vec<&str> = CAPTURES.iter().map(|c| c.dir).collect();
    cases.sort_unstable();
    assert_eq!(dirs, cases, "a capture without a test case");
    for capture in CAPTURES {
        let server = server().await;
        replay(&server, capture.dir).await;
        let folded = server.folded(capture.query).await;
        assert_eq!(total(&folded), capture.total, "{}: total", capture.dir);
        for function in capture.functions {
            assert!(folded.contains(function), "{}: no {function} in\n{folded}", capture.dir);
        }
        // The tags travel as sample labels (v0.5) or series labels (push); both are queryable.
        let tagged = server.folded(&format!("{}{{env=\"test\",region=\"local\"}}", capture.query)).await;
        assert_eq!(total(&tagged), capture.total, "{}: labelled total", capture.dir);
        check_golden(capture.dir, &folded);
    }
}

/// The first pprof of the v2 capture, unwrapped from its PushRequest.
fn v2_pprof() -> Vec<u8> {
    let body = std::fs::read(Path::new(AGENTS).join("rust-v2/bodies/0001-conn1.bin")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw).unwrap();
    PushRequest::decode(&raw[..]).unwrap().series.remove(0).samples.remove(0).raw_profile
}

fn push_body(series: Vec<Vec<(&str, &str)>>, raw_profile: &[u8]) -> Vec<u8> {
    PushRequest {
        series: series
            .into_iter()
            .map(|labels| RawProfileSeries {
                labels: labels.into_iter().map(|(n, v)| LabelPair { name: n.into(), value: v.into() }).collect(),
                samples: vec![RawSample { raw_profile: raw_profile.to_vec(), id: "x".into() }],
            })
            .collect(),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn go_multipart_node_gzip_and_json_push_are_read() {
    let server = server().await;
    let pprof = v2_pprof();
    let boundary = "b0undary";
    let mut multipart = Vec::new();
    multipart.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    multipart.extend_from_slice(&pprof);
    multipart.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"prev_profile\"; filename=\"p.pprof\"\r\n\r\nignored\r\n").as_bytes());
    multipart.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"c.json\"\r\n\r\n{{\"cpu\":{{\"units\":\"nanoseconds\",\"display-name\":\"wall\"}}}}\r\n--{boundary}--\r\n").as_bytes(),
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, _, body) = server
        .post("/ingest?name=gotest&from=1700000100&until=1700000110", &[("content-type", &content_type)], multipart)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(total(&server.folded("gotest.wall").await), 4_670_000_000);

    // Node: gzip with no Content-Encoding header.
    let gzipped = std::fs::read(Path::new(AGENTS).join("rust-v05/bodies/0001-conn1.bin")).unwrap();
    let (status, _, body) = server
        .post("/pyroscope/ingest?name=nodetest&format=pprof", &[("content-type", "application/octet-stream")], gzipped)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(total(&server.folded("nodetest.cpu").await), 4_590_000_000);

    use base64::Engine;
    let json = serde_json::json!({ "series": [{
        "labels": [{ "name": "service_name", "value": "jsontest" }, { "name": "__name__", "value": "process_cpu" }],
        "samples": [{ "rawProfile": base64::engine::general_purpose::STANDARD.encode(&pprof), "ID": "1" }],
    }]});
    let (status, content_type, body) = server
        .post("/push.v1.PusherService/Push", &[("content-type", "application/json")], json.to_string().into_bytes())
        .await;
    assert_eq!((status, content_type.as_str(), body.as_str()), (StatusCode::OK, "application/json", "{}"));
    assert_eq!(total(&server.folded("jsontest.cpu").await), 4_670_000_000);
}

/// What is wrong, where it goes, its headers and body, the expected status.
type BadCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Vec<u8>, StatusCode);

#[tokio::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let server = server().await;
    replay(&server, "rust-v05").await;
    let before = server.snapshot().await;
    let pprof = v2_pprof();
    let v05 = std::fs::read(Path::new(AGENTS).join("rust-v05/bodies/0001-conn1.bin")).unwrap();
    let truncated_gzip = v05[..v05.len() / 2].to_vec();
    let proto = [("content-type", "application/proto")];
    let gzip = [("content-type", "binary/octet-stream"), ("content-encoding", "gzip")];
    let ingest = "/ingest?name=agenttest.cpu&format=pprof";
    let push = "/push.v1.PusherService/Push";
    let good = vec![("service_name", "agenttest.cpu"), ("env", "test")];
    let cases: Vec<BadCase> = vec![
        ("garbage pprof", ingest, &gzip, b"\x0a\xff\xff\xff garbage".to_vec(), StatusCode::BAD_REQUEST),
        ("truncated gzip pprof", ingest, &gzip, truncated_gzip.clone(), StatusCode::BAD_REQUEST),
        ("garbage push", push, &proto, b"\x0a\xff\xff\xff garbage".to_vec(), StatusCode::BAD_REQUEST),
        ("truncated gzip push", push, &proto, truncated_gzip, StatusCode::BAD_REQUEST),
        (
            "push without service_name",
            push,
            &proto,
            push_body(vec![vec![("env", "test")]], &pprof),
            StatusCode::BAD_REQUEST,
        ),
        (
            "one bad series spoils the request",
            push,
            &proto,
            push_body(vec![good.clone(), vec![("env", "x")]], &pprof),
            StatusCode::BAD_REQUEST,
        ),
        ("garbage raw profile", push, &proto, push_body(vec![good.clone()], b"\x0a\xff\xff"), StatusCode::BAD_REQUEST),
        (
            "push in text",
            push,
            &[("content-type", "text/plain")],
            push_body(vec![good], &pprof),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (what, uri, headers, body, expected) in cases {
        let (status, content_type, answer) = server.post(uri, headers, body).await;
        assert_eq!(status, expected, "{what}: {answer}");
        if uri == push {
            let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(content_type, "application/json", "{what}");
            assert_eq!(error["code"], "invalid_argument", "{what}: {answer}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
        }
        assert_eq!(server.snapshot().await, before, "{what} changed the stored data");
    }
}
