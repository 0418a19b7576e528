//! The router end to end without a socket: `oneshot` requests against a real store in a temp
//! directory.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use kiln_model::codec;
use kiln_server::api::{AppState, Auth, router};
use kiln_server::ingest::IngestLimits;
use kiln_server::storage::Store;
use tower::ServiceExt;

async fn app(dir: &Path) -> Router {
    app_with(dir, Auth::default()).await
}

async fn app_with(dir: &Path, auth: Auth) -> Router {
    let store = Arc::new(Store::open(dir).await.unwrap());
    let limits = IngestLimits { max_decompressed_bytes: 8 << 20, ..IngestLimits::default() };
    router(AppState { limits, auth, ..AppState::new(store) })
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> (StatusCode, String) {
    send(app, Request::post(uri).body(body.into()).unwrap()).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    lines.sort();
    lines
}

fn real(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data").join(name)
}

#[tokio::test]
async fn folded_uploads_merge_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    assert_eq!(
        post(&app, "/ingest?name=shop.cpu%7Benv%3Dprod%7D", "a;b 1\na;c 2").await,
        (StatusCode::OK, String::new())
    );
    assert_eq!(
        post(&app, "/pyroscope/ingest?name=shop.cpu%7Benv%3Dprod%7D&format=lines", "a;c\na;c\n").await.0,
        StatusCode::OK
    );
    let (status, folded) = get(&app, "/render?query=shop.cpu&format=folded").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(folded, "a;b 1\na;c 4\n");

    let response = app
        .clone()
        .oneshot(Request::get("/render?format=tree&query=shop.cpu%7Benv%3D%22prod%22%7D").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], codec::CONTENT_TYPE);
    let tree = codec::decode(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(tree.total(), 5);

    let (_, other_env) = get(&app, "/render?query=shop.cpu%7Benv%3D%22dev%22%7D&format=folded").await;
    assert_eq!(other_env, "", "label matchers select series");
}

#[tokio::test]
async fn perf_script_is_collapsed_like_inferno_does() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let gz = std::fs::read(real("example-perf-stacks.txt.gz")).unwrap();
    // Gzip with no Content-Encoding header, as some agents send it.
    assert_eq!(post(&app, "/ingest?name=perf&format=perf_script", gz).await, (StatusCode::OK, String::new()));
    let (_, folded) = get(&app, "/render?query=perf&format=folded").await;
    let expected = std::fs::read_to_string(real("example-perf-stacks-collapsed.txt")).unwrap();
    assert_eq!(sorted_lines(&folded), sorted_lines(&expected));
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=keep", "base 7").await;
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'a'; 20 << 20]).unwrap();
        e.finish().unwrap()
    };
    let cases: Vec<(&str, Body, StatusCode, &str)> = vec![
        ("/ingest?name=keep", "ok 1\nbad -3\n".into(), StatusCode::BAD_REQUEST, "line 2"),
        ("/ingest?name=keep", "ok 99999999999999999999999".into(), StatusCode::BAD_REQUEST, "too large"),
        ("/ingest", "ok 1".into(), StatusCode::BAD_REQUEST, "missing `name`"),
        ("/ingest?name=a%7Bb%3Dc%7D%7D%7B", "ok 1".into(), StatusCode::BAD_REQUEST, "name"),
        ("/ingest?name=keep&format=bogus", "ok 1".into(), StatusCode::BAD_REQUEST, "perf_script"),
        ("/ingest?name=keep&from=yesterday", "ok 1".into(), StatusCode::BAD_REQUEST, "from"),
        ("/ingest?name=keep", vec![0x1f, 0x8b, 8, 0, 0, 0].into(), StatusCode::BAD_REQUEST, "gzip"),
        ("/ingest?name=keep", bomb.into(), StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
    ];
    for (uri, body, status, needle) in cases {
        let (got, text) = post(&app, uri, body).await;
        assert_eq!(got, status, "{uri}: {text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{uri}: not JSON: {text}"));
        assert!(json["error"].as_str().unwrap().contains(needle), "{uri}: {text}");
    }
    assert_eq!(get(&app, "/render?query=keep&format=folded").await.1, "base 7\n");
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(metrics.contains("kiln_ingest_errors_total 8"), "{metrics}");
    assert!(metrics.contains("kiln_ingest_uploads_total 1"), "{metrics}");
}

#[tokio::test]
async fn health_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let (_, empty_home) = get(&app, "/").await;
    assert!(empty_home.contains("No profiles yet"), "{empty_home}");
    post(&app, "/ingest?name=web.cpu", "main;serve 40\nmain;<b>bold</b> 2").await;
    let (status, home) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains(r#"href="/explore?query=web""#), "{home}");
    let (_, explore) = get(&app, "/explore?query=web").await;
    assert!(explore.contains("<canvas"), "{explore}");
    assert!(explore.contains("42 samples in total"), "{explore}");
    assert!(explore.contains("&lt;b&gt;bold&lt;/b&gt;") && !explore.contains("<b>bold"), "names are escaped");
}

/// Each of the explorer's views renders whole. The page is rendered on the heavy lane and the
/// end of its body (which drops the page's reactive owner) is sent from another thread, so a
/// browser-only value made while rendering (a thread-local store) would panic there and cut the
/// page short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_explorer_view_renders_whole() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=web.cpu", "main;serve 40\nmain;parse 2").await;
    for view in ["flame", "flame&orient=flame", "time", "table", "sandwich&fn=serve"] {
        let (status, page) = get(&app, &format!("/explore?query=web.cpu&view={view}")).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert!(page.contains("</body></html>") && page.trim_end().ends_with("</script>"), "{view}: {page}");
    }
}

#[tokio::test]
async fn pages_fetch_their_data_in_the_encoding_they_decode() {
    use kiln_model::page_data::{QuerySummary, decode};
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=web.cpu{env=prod}&from=1700000000&until=1700000010", "main;serve 40\nmain;idle 2").await;
    post(&app, "/ingest?name=web.cpu{env=dev}&from=1700000000&until=1700000010", "main;serve 5").await;

    let (status, body) =
        get(&app, "/api/page-data/summary?query=web.cpu%7Benv%3D%22prod%22%7D&from=1700000000&until=1700000100").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let summary: QuerySummary = decode(&body).unwrap();
    assert_eq!((summary.total, summary.units.as_str(), summary.functions), (42, "samples", 3));
    let rows: Vec<_> = summary.rows.iter().map(|r| (r.name.as_str(), r.self_value, r.total)).collect();
    assert_eq!(rows, [("main", 0, 42), ("serve", 40, 40), ("idle", 2, 2)]);
    assert_eq!(summary.timeline.samples.iter().sum::<u64>(), 42);

    let (status, body) = get(&app, "/api/page-data/label-values?label=env&query=web.cpu").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(decode::<Vec<String>>(&body).unwrap(), ["dev", "prod"]);
    let (_, body) = get(&app, "/api/page-data/label-names?query=web.cpu").await;
    assert!(decode::<Vec<String>>(&body).unwrap().contains(&"env".to_string()), "{body}");

    // A query the engine refuses is a 400 with its reason; an unknown name is a 404.
    let (status, body) = get(&app, "/api/page-data/summary?query=web.cpu%7Benv%3D&from=now-1h&until=now").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert_eq!(get(&app, "/api/page-data/nothing").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let app = app(dir.path()).await;
        post(&app, "/ingest?name=svc.cpu", "a;b 3\nc 1").await;
        post(&app, "/ingest?name=svc.cpu", "a;b 2").await;
        get(&app, "/render?query=svc.cpu&format=folded").await.1
    };
    let app = app(dir.path()).await;
    assert_eq!(get(&app, "/render?query=svc.cpu&format=folded").await.1, before);
    assert_eq!(before, "a;b 5\nc 1\n");
}

#[tokio::test]
async fn render_json_is_pyroscopes_flamebearer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=fb.cpu&from=1700000000&until=1700000010&spyName=rbspy&sampleRate=99", "a;b 1").await;
    post(&app, "/ingest?name=fb.cpu&from=1700000020&until=1700000030&spyName=rbspy&sampleRate=99", "a;c 2").await;
    let (status, body) = get(&app, "/render?query=fb.cpu&from=1700000000&until=1700000100").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["flamebearer"],
        serde_json::json!({
            "names": ["total", "a", "b", "c"],
            "levels": [[0, 3, 0, 0], [0, 3, 0, 1], [0, 1, 1, 2, 0, 2, 2, 3]],
            "numTicks": 3,
            "maxSelf": 2,
        })
    );
    assert_eq!(json["metadata"]["format"], "single");
    assert_eq!(json["metadata"]["spyName"], "rbspy");
    assert_eq!(json["metadata"]["sampleRate"], 99);
    assert_eq!(json["metadata"]["units"], "samples");
    assert_eq!(json["timeline"]["startTime"], 1700000000);
    assert_eq!(json["timeline"]["durationDelta"], 10);
    assert_eq!(json["timeline"]["samples"], serde_json::json!([1, 0, 2, 0, 0, 0, 0, 0, 0, 0]));

    let (status, outside) = get(&app, "/render?query=fb.cpu&from=1600000000&until=1600000100").await;
    assert_eq!(status, StatusCode::OK);
    assert!(outside.contains(r#""numTicks":0"#), "{outside}");
    let (status, error) = get(&app, "/render?query=fb.cpu&from=now&until=now-1h").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
}

#[tokio::test]
async fn apps_labels_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=api.cpu%7Benv%3Dprod%2Cregion%3Deu%7D&until=1700000000", "a 1").await;
    post(&app, "/ingest?name=api.cpu%7Benv%3Ddev%7D&until=1700000100", "a 1").await;
    post(&app, "/ingest?name=other.alloc_space%7Bpod%3Dx%7D&until=1600000000", "a 1").await;
    let (_, apps) = get(&app, "/api/apps").await;
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap();
    assert_eq!(apps[0]["name"], "api");
    assert_eq!(apps[0]["profileTypes"], serde_json::json!(["cpu"]));
    assert_eq!(apps[0]["labelNames"], serde_json::json!(["env", "region"]));
    assert_eq!(apps[0]["lastSeen"], 1700000100);
    assert_eq!(apps[1]["name"], "other");
    assert_eq!(get(&app, "/labels?query=api.cpu").await.1, r#"["__name__","env","region"]"#);
    assert_eq!(get(&app, "/labels?query=api.cpu%7Benv%3D%22dev%22%7D").await.1, r#"["__name__","env"]"#);
    assert_eq!(get(&app, "/label-values?label=env&query=api").await.1, r#"["dev","prod"]"#);
    assert_eq!(get(&app, "/label-values?label=env&query=api%7Benv!%3D%22dev%22%7D").await.1, r#"["prod"]"#);
    assert_eq!(get(&app, "/label-values?label=__name__").await.1, r#"["api.cpu","other.alloc_space"]"#);
    assert_eq!(get(&app, "/label-values?query=api").await.0, StatusCode::BAD_REQUEST);
}

fn with_auth(request: axum::http::request::Builder, authorization: Option<&str>) -> axum::http::request::Builder {
    match authorization {
        Some(value) => request.header(header::AUTHORIZATION, value),
        None => request,
    }
}

async fn post_as(app: &Router, uri: &str, authorization: Option<&str>) -> axum::http::Response<Body> {
    let request = with_auth(Request::post(uri), authorization).body(Body::from("a;b 1")).unwrap();
    app.clone().oneshot(request).await.unwrap()
}

async fn get_as(app: &Router, uri: &str, authorization: Option<&str>) -> StatusCode {
    let request = with_auth(Request::get(uri), authorization).body(Body::empty()).unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn tokens_guard_ingest_and_queries_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), Auth::new(Some("in-token".into()), Some("out-token".into()))).await;
    // "agent:in-token" and "grafana:out-token"
    let basic_in = "Basic YWdlbnQ6aW4tdG9rZW4=";
    let basic_out = "Basic Z3JhZmFuYTpvdXQtdG9rZW4=";

    for (authorization, why) in
        [(None, "missing"), (Some("Bearer wrong"), "wrong"), (Some("Bearer out-token"), "the query token")]
    {
        let response = post_as(&app, "/ingest?name=shop.cpu", authorization).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
        let challenges: Vec<_> =
            response.headers().get_all(header::WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap()).collect();
        assert!(challenges.contains(&"Bearer realm=\"kiln\""), "{challenges:?}");
        assert!(challenges.iter().any(|c| c.starts_with("Basic realm=\"kiln\"")), "{challenges:?}");
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["error"].is_string(), "{json}");
    }
    assert_eq!(post_as(&app, "/ingest?name=shop.cpu", Some("Bearer in-token")).await.status(), StatusCode::OK);
    assert_eq!(post_as(&app, "/pyroscope/ingest?name=shop.cpu", Some(basic_in)).await.status(), StatusCode::OK);
    assert_eq!(
        post_as(&app, "/push.v1.PusherService/Push", None).await.status(),
        StatusCode::UNAUTHORIZED,
        "the Connect push endpoint is an ingest endpoint"
    );

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get_as(&app, path, None).await, StatusCode::OK, "{path} stays open");
    }
    let render = "/render?query=shop.cpu&format=folded";
    assert_eq!(get_as(&app, render, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&app, render, Some("Bearer in-token")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&app, render, Some("Bearer out-token")).await, StatusCode::OK);
    assert_eq!(get_as(&app, render, Some(basic_out)).await, StatusCode::OK);
    assert_eq!(get_as(&app, "/api/apps", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&app, "/", None).await, StatusCode::UNAUTHORIZED, "the web UI is a query surface");
}

#[tokio::test]
async fn without_tokens_everything_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    assert_eq!(post_as(&app, "/ingest?name=shop.cpu", None).await.status(), StatusCode::OK);
    assert_eq!(get_as(&app, "/render?query=shop.cpu&format=folded", None).await, StatusCode::OK);
}

/// Two threads in milliseconds: `MainThread` spends 3 ms in `main;work` and 1 ms in `main`,
/// `worker-1` 1 ms in `work`.
const SPEEDSCOPE_THREADS: &str = r#"{
  "$schema": "https://www.speedscope.app/file-format-schema.json",
  "shared": {"frames": [{"name": "main", "file": "app.py", "line": 3}, {"name": "work"}]},
  "profiles": [
    {"type": "sampled", "name": "MainThread", "unit": "milliseconds", "startValue": 0, "endValue": 4,
     "samples": [[0, 1], [0], [0, 1]], "weights": [2, 1, 1]},
    {"type": "evented", "name": "worker-1", "unit": "milliseconds", "startValue": 0, "endValue": 2,
     "events": [{"type": "O", "at": 1, "frame": 1}, {"type": "C", "at": 2, "frame": 1}]}
  ],
  "activeProfileIndex": 0,
  "exporter": "test"
}"#;

async fn post_json(app: &Router, uri: &str, body: &str) -> (StatusCode, String) {
    let request =
        Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string()));
    send(app, request.unwrap()).await
}

#[tokio::test]
async fn speedscope_files_become_one_series_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    assert_eq!(
        post(&app, "/ingest?name=py.cpu%7Benv%3Ddev%7D&format=speedscope", SPEEDSCOPE_THREADS).await,
        (StatusCode::OK, String::new())
    );
    let (_, all) = get(&app, "/render?query=py.cpu&format=folded").await;
    assert_eq!(all, "main 1000000\nmain;work 3000000\nwork 1000000\n");
    let (_, worker) = get(&app, "/render?query=py.cpu%7Bthread_name%3D%22worker-1%22%7D&format=folded").await;
    assert_eq!(worker, "work 1000000\n");
    assert_eq!(get(&app, "/label-values?label=thread_name&query=py").await.1, r#"["MainThread","worker-1"]"#);
    let (_, json) = get(&app, "/render?query=py.cpu").await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["metadata"]["units"], "nanoseconds");

    // No `format`, a JSON content type: speedscope too.
    assert_eq!(post_json(&app, "/ingest?name=rb.cpu", SPEEDSCOPE_THREADS).await, (StatusCode::OK, String::new()));
    assert_eq!(get(&app, "/render?query=rb.cpu&format=folded").await.1, all);
}

#[tokio::test]
async fn speedscope_files_open_without_being_stored() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    for uri in ["/api/collapse", "/api/collapse?format=auto", "/api/collapse?format=speedscope"] {
        let response =
            app.clone().oneshot(Request::post(uri).body(Body::from(SPEEDSCOPE_THREADS)).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(response.headers()["x-kiln-units"], "nanoseconds", "{uri}");
        let tree = codec::decode(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!(tree.total(), 5_000_000, "{uri}: every thread merged");
    }
    let (status, error) = post(&app, "/api/collapse?format=speedscope", r#"{"shared": {"frames": []}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.contains("profiles"), "{error}");
    assert_eq!(get(&app, "/api/apps").await.1, "[]", "nothing stored");
}

#[tokio::test]
async fn bad_speedscope_files_are_a_400_naming_the_problem_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let bad_index = SPEEDSCOPE_THREADS.replace("[[0, 1], [0], [0, 1]]", "[[0, 1], [0], [0, 7]]");
    let negative = SPEEDSCOPE_THREADS.replace("[2, 1, 1]", "[2, -1, 1]");
    let bad_close = SPEEDSCOPE_THREADS.replace(r#""C", "at": 2, "frame": 1"#, r#""C", "at": 2, "frame": 0"#);
    let cases: [(&str, &str, serde_json::Value); 5] = [
        (r#"{"shared": "#, "not a speedscope file", serde_json::Value::Null),
        (&bad_index, "sample 2: frame index 7 is out of range", 0.into()),
        (&negative, "weight 1 is negative", 0.into()),
        (&bad_close, "closes frame 0", 1.into()),
        (&SPEEDSCOPE_THREADS.replace("milliseconds", "fortnights"), "unknown unit `fortnights`", 0.into()),
    ];
    for (body, needle, profile) in cases {
        let (status, text) = post_json(&app, "/ingest?name=bad.cpu", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.starts_with("speedscope: ") && error.contains(needle), "{needle}: {text}");
        assert_eq!(json["detail"]["profile"], profile, "{text}");
    }
    assert_eq!(get(&app, "/api/apps").await.1, "[]", "nothing stored, not even the valid profiles");
}

#[tokio::test]
async fn speedscope_export_ingests_back_to_the_same_stacks_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let folded = "main;a;b 1\nmain;a;c 2\nmain 5\nother;ünï 3\n";
    for (name, units) in [("rt.cpu", "samples"), ("rtn.wall", "nanoseconds"), ("rtb.alloc_space", "bytes")] {
        let (status, text) = post(&app, &format!("/ingest?name={name}&units={units}"), folded).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (_, before) = get(&app, &format!("/render?query={name}&format=folded")).await;
        let (_, export) = get(&app, &format!("/render?query={name}&format=speedscope")).await;
        let again = format!("re{name}");
        let (status, text) = post(&app, &format!("/ingest?name={again}&format=speedscope"), export).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (_, after) = get(&app, &format!("/render?query={again}&format=folded")).await;
        assert_eq!(sorted_lines(&after), sorted_lines(&before), "{name}");
        assert_eq!(sorted_lines(&after), sorted_lines(folded), "{name}");
        let (_, json) = get(&app, &format!("/render?query={again}")).await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["metadata"]["units"], units, "{name}");
        assert_eq!(json["flamebearer"]["numTicks"], 11, "{name}");
    }
}

#[tokio::test]
async fn a_folded_export_with_replaced_bytes_ingests_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let limits = IngestLimits { max_line_bytes: 64, ..IngestLimits::default() };
    let app = router(AppState { limits, ..AppState::new(store) });
    // A 61-byte stack, 40 bytes of it invalid UTF-8: exported as 141 bytes (U+FFFD is 3 bytes).
    let mut body = b"main;".to_vec();
    body.extend(std::iter::repeat_n(0xff, 40));
    body.extend_from_slice(b";fifteen_bytes__ 9");
    assert_eq!(post(&app, "/ingest?name=bytes.cpu", body).await, (StatusCode::OK, String::new()));
    let (_, export) = get(&app, "/render?query=bytes.cpu&format=folded").await;
    assert!(export.len() > 64 * 2, "{export}");
    assert_eq!(post(&app, "/ingest?name=again.cpu", export.clone()).await, (StatusCode::OK, String::new()));
    assert_eq!(get(&app, "/render?query=again.cpu&format=folded").await.1, export);
    // The limit itself still holds.
    let (status, text) = post(&app, "/ingest?name=long.cpu", format!("{} 1", "x".repeat(65))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("longer than 64 bytes"), "{text}");
}

/// One sample of an exposition: its name, its labels as written, its value.
type Samples = std::collections::BTreeMap<(String, String), f64>;

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `{a="x",b="y\"z"} 1` into the label text and what follows, checking each label.
fn split_labels(rest: &str) -> (&str, &str) {
    let Some(inner) = rest.strip_prefix('{') else { return ("", rest) };
    let bytes = inner.as_bytes();
    let (mut i, mut in_value) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_value => i += 1,
            b'"' => in_value = !in_value,
            b'}' if !in_value => break,
            _ => {}
        }
        i += 1;
    }
    let labels = &inner[..i];
    let mut pair = labels;
    while !pair.is_empty() {
        let (name, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("label without a value: {labels}"));
        assert!(is_metric_name(name) && !name.contains(':'), "bad label name {name:?}");
        let end = value.char_indices().scan(false, |escaped, (at, c)| {
            let closes = c == '"' && !*escaped;
            *escaped = c == '\\' && !*escaped;
            Some((at, closes))
        });
        let end = end.filter(|(_, closes)| *closes).map(|(at, _)| at).next().expect("closing quote");
        pair = value[end + 1..].strip_prefix(',').unwrap_or(&value[end + 1..]);
    }
    (labels, &inner[i + 1..])
}

/// Parses an exposition in the Prometheus text format or OpenMetrics, panicking on anything
/// malformed: every sample belongs to the family its `# TYPE` declared just before, with the
/// suffixes that type allows, values are numbers, histogram buckets are cumulative and end in
/// `+Inf` equal to `_count`, and OpenMetrics ends with `# EOF`.
fn parse_exposition(text: &str, openmetrics: bool) -> Samples {
    let mut samples = Samples::new();
    let mut family: Option<(String, String)> = None;
    let mut declared = std::collections::HashSet::new();
    let mut saw_eof = false;
    for line in text.lines() {
        assert!(!saw_eof, "text after # EOF: {line}");
        if line == "# EOF" {
            assert!(openmetrics, "# EOF in the Prometheus format");
            saw_eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().expect("metric name"));
            assert!(is_metric_name(name), "bad name in {line}");
            match keyword {
                "HELP" | "UNIT" => {}
                "TYPE" => {
                    let kind = parts.next().expect("type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped", "unknown", "info"].contains(&kind),
                        "{line}"
                    );
                    assert!(declared.insert(name.to_string()), "family {name} declared twice");
                    family = Some((name.to_string(), kind.to_string()));
                }
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        let (labels, rest) = split_labels(&line[name_end..]);
        let value = rest.trim_start().split(' ').next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (family_name, kind) = family.as_ref().unwrap_or_else(|| panic!("sample before any # TYPE: {line}"));
        let suffix =
            name.strip_prefix(family_name.as_str()).unwrap_or_else(|| panic!("{name} outside family {family_name}"));
        let allowed: &[&str] = match (kind.as_str(), openmetrics) {
            ("counter", true) => &["_total", "_created"],
            ("histogram", _) => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{name} in a {kind} family {family_name}");
        assert!(samples.insert((name.to_string(), labels.to_string()), value).is_none(), "duplicate sample {line}");
    }
    assert_eq!(saw_eof, openmetrics, "OpenMetrics ends with # EOF, Prometheus text has none");
    // Histograms: cumulative buckets, the last at +Inf equal to the count.
    let mut buckets: std::collections::BTreeMap<(String, String), Vec<(f64, f64)>> = Default::default();
    for ((name, labels), value) in &samples {
        if let Some(base) = name.strip_suffix("_bucket") {
            // `le` is one label among the others, wherever the encoder puts it.
            let mut series = Vec::new();
            let mut le = None;
            for pair in labels.split(',') {
                match pair.strip_prefix("le=\"") {
                    Some(bound) => le = Some(bound.trim_end_matches('"')),
                    None => series.push(pair),
                }
            }
            let (series, le) = (series.join(","), le.expect("a bucket has `le`"));
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            buckets.entry((base.to_string(), series)).or_default().push((le, *value));
        }
    }
    for ((base, series), mut bounds) in buckets {
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(bounds.windows(2).all(|w| w[0].1 <= w[1].1), "{base}{{{series}}} buckets not cumulative");
        assert_eq!(bounds.last().unwrap().0, f64::INFINITY, "{base}{{{series}}} has no +Inf bucket");
        assert_eq!(Some(&bounds.last().unwrap().1), samples.get(&(format!("{base}_count"), series.clone())));
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &str) -> f64 {
    *samples
        .get(&(name.to_string(), labels.to_string()))
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {samples:#?}"))
}

async fn scrape(app: &Router, openmetrics: bool) -> Samples {
    let mut request = Request::get("/metrics");
    if openmetrics {
        request = request.header(header::ACCEPT, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
    let expected = if openmetrics { "application/openmetrics-text" } else { "text/plain; version=0.0.4" };
    assert!(content_type.starts_with(expected), "{content_type}");
    let text = String::from_utf8(to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    parse_exposition(&text, openmetrics)
}

#[tokio::test]
async fn metrics_time_requests_by_route_and_report_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let app = router(AppState::new(store.clone()));
    post(&app, "/ingest?name=shop.cpu", "main;work 5").await;
    post(&app, "/ingest?name=shop.cpu", "main;idle 2").await;
    assert_eq!(get(&app, "/render?query=shop.cpu&format=folded").await.1, "main;idle 2\nmain;work 5\n");
    assert_eq!(get(&app, "/api/page-data/secret-name?query=shop.cpu").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/no/such/secret-path").await.0, StatusCode::NOT_FOUND);

    let before = scrape(&app, false).await;
    let duration = "kiln_http_request_duration_seconds_count";
    assert_eq!(sample(&before, duration, r#"route="/ingest",method="POST",status="2xx""#), 2.0);
    assert_eq!(sample(&before, duration, r#"route="/render",method="GET",status="2xx""#), 1.0);
    // The template, not the name in the path; unknown paths share one label value.
    assert_eq!(sample(&before, duration, r#"route="/api/page-data/{name}",method="GET",status="4xx""#), 1.0);
    assert_eq!(sample(&before, duration, r#"route="unmatched",method="GET",status="4xx""#), 1.0);
    assert!(!before.keys().any(|(_, labels)| labels.contains("secret")));
    let render_sum =
        sample(&before, "kiln_http_request_duration_seconds_sum", r#"route="/render",method="GET",status="2xx""#);
    assert!(render_sum > 0.0, "{render_sum}");
    assert_eq!(sample(&before, "kiln_http_requests_total", r#"status="2xx""#), 3.0);
    assert_eq!(sample(&before, "kiln_http_requests_total", r#"status="4xx""#), 2.0);
    assert_eq!(sample(&before, "kiln_ingest_uploads_total", ""), 2.0);
    // Both uploads are in the head and the log, nothing is in a block yet.
    assert!(sample(&before, "kiln_head_bytes", "") > 0.0);
    assert_eq!(sample(&before, "kiln_wal_segments", ""), 1.0);
    assert_eq!(sample(&before, "kiln_blocks", ""), 0.0);
    assert_eq!(sample(&before, "kiln_frozen_heads", ""), 0.0);
    assert_eq!(sample(&before, "kiln_rejected_overload_total", r#"reason="inflight_bytes""#), 0.0);
    assert_eq!(sample(&before, "kiln_inflight_decompressed_bytes", ""), 0.0);

    assert_eq!(store.flush().await.unwrap(), 1);
    let after = scrape(&app, true).await;
    // The head became a block; its segment was deleted and a fresh one is open.
    assert_eq!(sample(&after, "kiln_head_bytes", ""), 0.0);
    assert_eq!(sample(&after, "kiln_blocks", ""), 1.0);
    assert_eq!(sample(&after, "kiln_wal_segments", ""), 1.0);
    assert_eq!(sample(&after, duration, r#"route="/metrics",method="GET",status="2xx""#), 1.0);
    assert_eq!(sample(&after, "kiln_ingest_uploads_total", ""), 2.0);
}

#[tokio::test]
async fn uploads_without_a_format_are_read_by_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // perf script (gzipped, as `perf script | gzip` makes it): collapsed as if named.
    let gz = std::fs::read(real("example-perf-stacks.txt.gz")).unwrap();
    assert_eq!(post(&app, "/ingest?name=perf", gz.clone()).await, (StatusCode::OK, String::new()));
    assert_eq!(post(&app, "/ingest?name=perf_named&format=perf_script", gz).await, (StatusCode::OK, String::new()));
    let (_, detected) = get(&app, "/render?query=perf&format=folded").await;
    let (_, named) = get(&app, "/render?query=perf_named&format=folded").await;
    assert!(!detected.is_empty());
    assert_eq!(sorted_lines(&detected), sorted_lines(&named));

    // DTrace's aggregated stacks (written here in its output format), and `format=auto`.
    let dtrace = "CPU     ID                    FUNCTION:NAME\n  0  64091                        :tick-60s \n\n\n\
                  \x20             genunix`vn_free+0x9a\n              unix`sys_syscall+0x17a\n                3\n\n\
                  \x20             genunix`cv_broadcast+0x1\n              unix`sys_syscall+0x17a\n                2\n";
    assert_eq!(post(&app, "/ingest?name=dtrace&format=auto", dtrace).await, (StatusCode::OK, String::new()));
    let (_, folded) = get(&app, "/render?query=dtrace&format=folded").await;
    assert_eq!(
        sorted_lines(&folded),
        ["unix`sys_syscall;genunix`cv_broadcast 2", "unix`sys_syscall;genunix`vn_free 3"]
    );

    // Folded text with a blank line first and CRLF line ends, and a raw pprof (a real agent's body).
    let folded = "\r\nmain;work 5\r\nmain 1\r\n";
    assert_eq!(post(&app, "/ingest?name=plain", folded).await, (StatusCode::OK, String::new()));
    let (_, plain) = get(&app, "/render?query=plain&format=folded").await;
    assert_eq!(sorted_lines(&plain), ["main 1", "main;work 5"]);
    // The same saved as UTF-16 with its byte-order mark, as Windows PowerShell's `>` writes.
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(folded.encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(post(&app, "/ingest?name=wide", utf16).await, (StatusCode::OK, String::new()));
    assert_eq!(get(&app, "/render?query=wide&format=folded").await.1, plain);
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agents");
    let pprof = std::fs::read(agents.join("rust-v05/bodies/0002-conn2.bin")).unwrap();
    assert_eq!(post(&app, "/ingest?name=rusty", pprof).await, (StatusCode::OK, String::new()));
    let (_, types) = get(&app, "/label-values?label=__name__").await;
    assert!(types.contains("rusty."), "the pprof was stored under its own types: {types}");

    // Something no reader recognises: a 400 that says so and how to name the format, with
    // what was stored before intact.
    let (status, error) = post(&app, "/ingest?name=perf", "just some prose\nover two lines\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.contains("could not recognise") && error.contains("format="), "{error}");
    let (_, after) = get(&app, "/render?query=perf&format=folded").await;
    assert_eq!(after, detected);
}
