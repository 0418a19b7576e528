//! The query API end to end without a socket: `/render` in every format, `/render-diff`,
//! label matchers and maxNodes, against a real store in a temp directory.
//!
//! Golden files live in `tests/golden/`; `BLESS=1 cargo test -p kiln-server --test query`
//! rewrites them from the current output (review the diff before committing).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, Response, StatusCode, header};
use kiln_server::api::{AppState, router};
use kiln_server::proto::Profile;
use kiln_server::storage::Store;
use prost::Message;
use serde_json::Value;
use tower::ServiceExt;

async fn app(dir: &Path) -> Router {
    router(AppState::new(Arc::new(Store::open(dir).await.unwrap())))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, body.to_vec(), content_type)
}

async fn post(app: &Router, uri: &str, body: impl Into<Body>) {
    let (status, body, _) = send(app, Request::post(uri).body(body.into()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
}

async fn get_bytes(app: &Router, uri: &str) -> (StatusCode, Vec<u8>, Option<String>) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let (status, body, _) = get_bytes(app, uri).await;
    (status, String::from_utf8(body).unwrap())
}

async fn get_json(app: &Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A 4xx whose JSON `error` mentions `needle`.
async fn assert_error(app: &Router, uri: &str, needle: &str) {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{uri}: not JSON: {body}"));
    let error = json["error"].as_str().unwrap();
    assert!(error.contains(needle), "{uri}: `{error}` should mention `{needle}`");
}

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn golden(name: &str, actual: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with BLESS=1 to create it", path.display()));
    assert_eq!(pretty, expected, "{name} differs; run with BLESS=1 to accept the new output");
}

fn multiset(folded: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in folded.lines().filter(|l| !l.trim().is_empty()) {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        *out.entry(stack.to_string()).or_insert(0) += count.parse::<u64>().unwrap();
    }
    out
}

const RANGE: &str = "from=1700000000&until=1700000060";

/// Fixed inputs: name → folded text.
fn fixtures() -> Vec<(&'static str, String)> {
    let deep: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
    vec![
        ("example", "a;b 1\na;c 2\n".to_string()),
        ("deep", format!("{} 5\n{} 2\n", deep.join(";"), deep[..10].join(";"))),
        ("recursion", "main;f;f;f 3\nmain;f;g;f 2\nmain;f 1\n".to_string()),
        ("unicode", "main;<script>alert(1)</script> 2\nmain;ünïcødé;日本語 3\nmain;a&b \"q\" 'x' 1\n".to_string()),
    ]
}

#[tokio::test]
async fn render_json_matches_golden_flamebearers() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    for (name, folded) in fixtures() {
        post(&app, &format!("/ingest?name={name}.cpu&from=1700000000&until=1700000010"), folded).await;
        let json = get_json(&app, &format!("/render?query={name}.cpu&{RANGE}")).await;
        golden(&format!("render-{name}.json"), &json);
    }
}

#[tokio::test]
async fn folded_round_trips_as_the_same_multiset_of_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    for (name, folded) in fixtures() {
        post(&app, &format!("/ingest?name={name}.cpu"), folded.clone()).await;
        let (status, out) = get(&app, &format!("/render?query={name}.cpu&format=folded")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(multiset(&out), multiset(&folded), "{name}");
    }
}

#[tokio::test]
async fn pprof_export_decodes_to_the_same_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    for (name, folded) in fixtures() {
        post(&app, &format!("/ingest?name={name}.cpu&sampleRate=100"), folded.clone()).await;
        let (status, gz, content_type) = get_bytes(&app, &format!("/render?query={name}.cpu&format=pprof")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        let profile = Profile::decode(&raw[..]).unwrap();
        let strings: Vec<String> = profile.string_table.iter().map(|s| String::from_utf8(s.clone()).unwrap()).collect();
        assert_eq!(strings[0], "");
        let st = &profile.sample_type[0];
        assert_eq!((strings[st.r#type as usize].as_str(), strings[st.unit as usize].as_str()), ("cpu", "samples"));
        assert_eq!(profile.period, 10_000_000, "100 Hz");
        let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
        let expected: u64 = multiset(&folded).values().sum();
        assert_eq!(total as u64, expected, "{name}");
        // Deduplicated: one function and one location per distinct frame name.
        let mut names: Vec<&str> = profile.function.iter().map(|f| strings[f.name as usize].as_str()).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "{name}: functions are deduplicated");
        assert_eq!(profile.location.len(), count);
        // And Kiln reads its own export back into the same stacks.
        post(&app, &format!("/ingest?name=back-{name}&format=pprof"), gz).await;
        let (_, back) = get(&app, &format!("/render?query=back-{name}.cpu&format=folded")).await;
        assert_eq!(multiset(&back), multiset(&folded), "{name}");
    }
}

/// Well-formed XML: every tag closed in order, nothing left open.
fn assert_well_formed(svg: &str) {
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
        }
        assert!(depth >= 0);
    }
    assert_eq!(depth, 0, "unclosed tags");
}

#[tokio::test]
async fn svg_export_escapes_names_and_is_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=unicode.cpu", fixtures()[3].1.clone()).await;
    let uri = "/render?query=unicode.cpu&format=svg&title=My%20%3Capp%3E&inverted=true&reverse=false&colors=java&minwidth=0.5";
    let (status, body, content_type) = get_bytes(&app, uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("image/svg+xml"));
    let svg = String::from_utf8(body).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "names are escaped");
    assert!(!svg.contains("<script>alert"), "no raw markup from frame names");
    assert!(svg.contains("ünïcødé") && svg.contains("日本語"));
    assert!(svg.contains("My &lt;app&gt;"), "the title is passed through, escaped");

    // Nothing in range still draws (an empty graph that says so).
    let (status, empty) = get(&app, "/render?query=nothing.cpu&format=svg").await;
    assert_eq!(status, StatusCode::OK);
    assert_well_formed(&empty);

    assert_error(&app, "/render?query=unicode.cpu&format=svg&colors=plaid", "colors").await;
    assert_error(&app, "/render?query=unicode.cpu&format=svg&inverted=maybe", "inverted").await;
    assert_error(&app, "/render?query=unicode.cpu&format=svg&minwidth=-3", "minwidth").await;
}

#[tokio::test]
async fn speedscope_export_is_a_sampled_profile() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=ss.cpu", "a;b 1\na;c 2").await;
    let json = get_json(&app, "/render?query=ss.cpu&format=speedscope").await;
    let profile = &json["profiles"][0];
    assert_eq!(profile["type"], "sampled");
    assert_eq!(profile["endValue"], 3);
    let frames: Vec<&str> =
        json["shared"]["frames"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    let stacks: Vec<String> = profile["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array().unwrap().iter().map(|i| frames[i.as_u64().unwrap() as usize]).collect::<Vec<_>>().join(";")
        })
        .collect();
    assert_eq!(stacks, ["a;b", "a;c"]);
    assert_eq!(profile["weights"], serde_json::json!([1, 2]));
}

#[tokio::test]
async fn max_nodes_keeps_the_largest_and_conserves_totals() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=big.cpu", "a;big 10\na;s1 1\na;s2 2\nb 1").await;
    let json = get_json(&app, "/render?query=big.cpu&maxNodes=3").await;
    assert_eq!(json["flamebearer"]["numTicks"], 14);
    assert_eq!(json["flamebearer"]["names"], serde_json::json!(["total", "a", "big", "other"]));
    let (_, folded) = get(&app, "/render?query=big.cpu&max-nodes=3&format=folded").await;
    assert_eq!(folded, "a;big 10\na;other 3\nother 1\n");
    let (_, all) = get(&app, "/render?query=big.cpu&maxNodes=100&format=folded").await;
    assert_eq!(multiset(&all).len(), 4);
    assert_error(&app, "/render?query=big.cpu&maxNodes=0", "maxNodes").await;
    assert_error(&app, "/render?query=big.cpu&maxNodes=lots", "maxNodes").await;
}

#[tokio::test]
async fn collapse_merges_the_named_recursion_in_every_export() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=rec.cpu", "main;walk;walk;walk;leaf 20\nmain;walk 5\nmain;parse;parse 4\n").await;
    let (_, folded) = get(&app, "/render?query=rec.cpu&format=folded&collapse=walk").await;
    assert_eq!(multiset(&folded), multiset("main;walk;leaf 20\nmain;walk 5\nmain;parse;parse 4\n"));
    let (_, both) = get(&app, "/render?query=rec.cpu&format=folded&collapse=walk%3Bparse").await;
    assert_eq!(multiset(&both), multiset("main;walk;leaf 20\nmain;walk 5\nmain;parse 4\n"));
    // Empty or unknown names change nothing; the total is kept either way.
    let (_, same) = get(&app, "/render?query=rec.cpu&format=folded&collapse=%3Bnone").await;
    assert_eq!(multiset(&same), multiset("main;walk;walk;walk;leaf 20\nmain;walk 5\nmain;parse;parse 4\n"));
    let json = get_json(&app, "/render?query=rec.cpu&collapse=walk").await;
    assert_eq!(json["flamebearer"]["numTicks"], 29);
    let (status, svg) = get(&app, "/render?query=rec.cpu&format=svg&collapse=walk&inverted=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_well_formed(&svg);
}

#[tokio::test]
async fn queries_over_several_series_select_only_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let series = [
        ("web.cpu{env=prod,region=eu-1}", "prod_eu 1"),
        ("web.cpu{env=preprod,region=eu-2}", "preprod_eu 10"),
        ("web.cpu{env=prod,region=us-1}", "prod_us 100"),
        ("web.cpu", "unlabelled 1000"),
        ("web.alloc_space{env=prod}", "alloc 10000"),
        ("api.cpu{env=prod}", "api 100000"),
    ];
    for (name, folded) in series {
        post(&app, &format!("/ingest?name={}", enc(name)), folded).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("web.cpu", &["preprod_eu", "prod_eu", "prod_us", "unlabelled"]),
        ("web", &["preprod_eu", "prod_eu", "prod_us", "unlabelled"]),
        (r#"web.cpu{env="prod"}"#, &["prod_eu", "prod_us"]),
        (r#"web.cpu{env=~"prod"}"#, &["prod_eu", "prod_us"]),
        (r#"web.cpu{env=~".*prod"}"#, &["preprod_eu", "prod_eu", "prod_us"]),
        (r#"web.cpu{env!~"pre.*",region=~"eu-.*"}"#, &["prod_eu"]),
        (r#"web.cpu{env!="prod"}"#, &["preprod_eu", "unlabelled"]),
        (r#"web.cpu{env=""}"#, &["unlabelled"]),
        (r#"web.alloc_space{env=~"p.*"}"#, &["alloc"]),
        (r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="web",region="us-1"}"#, &["prod_us"]),
        (r#"memory:alloc_space:bytes:space:bytes{service_name="web"}"#, &["alloc"]),
        (r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}"#, &["api"]),
        (r#"web.cpu{env=~"nope"}"#, &[]),
    ];
    for (query, expected) in cases {
        let (status, folded) = get(&app, &format!("/render?query={}&format=folded", enc(query))).await;
        assert_eq!(status, StatusCode::OK, "{query}: {folded}");
        let got: Vec<String> = multiset(&folded).into_keys().collect();
        assert_eq!(got, *expected, "{query}");
    }
    let values = get(&app, &format!("/label-values?label=env&query={}", enc(r#"web{region=~"eu-.*"}"#))).await.1;
    assert_eq!(values, r#"["preprod","prod"]"#);

    assert_error(&app, &format!("/render?query={}", enc(r#"web.cpu{region=~"eu-("}"#)), "`eu-(`").await;
    assert_error(&app, &format!("/render?query={}", enc(r#"web.cpu{region!~"[z-a]"}"#)), "region").await;
    assert_error(&app, &format!("/labels?query={}", enc(r#"web{env=~"("}"#)), "regular expression").await;
    assert_error(
        &app,
        &format!("/render?query={}", enc("process_cpu:cpu:nanoseconds:cpu:nanoseconds{}")),
        "service_name",
    )
    .await;
    assert_error(&app, "/render?query=web.cpu&format=gif", "unknown format `gif`").await;
    assert_error(&app, "/render", "missing `query`").await;
    assert_error(&app, "/render?query=web&from=yesterday", "`from`").await;
}

#[tokio::test]
async fn average_aggregation_averages_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    post(&app, "/ingest?name=mem.inuse_space&aggregationType=average&from=1700000000&until=1700000010", "a;b 10\na 2")
        .await;
    post(&app, "/ingest?name=mem.inuse_space&aggregationType=average&from=1700000010&until=1700000020", "a;b 30").await;
    let (_, folded) = get(&app, "/render?query=mem.inuse_space&format=folded").await;
    assert_eq!(folded, "a 1\na;b 20\n");
    let json = get_json(&app, "/render?query=mem.inuse_space").await;
    assert_eq!(json["flamebearer"]["numTicks"], 21);
}

async fn ingest_comparison(app: &Router) {
    post(app, "/ingest?name=cmp.cpu&from=1700000000&until=1700000010", "a;b 1\na;c 2").await;
    post(app, "/ingest?name=cmp.cpu&from=1700001000&until=1700001010", "a;c 5\nd 1\n<x>&y;ü 4").await;
    post(app, "/ingest?name=cmp.alloc_space&from=1700001000&until=1700001010", "a 5").await;
}

const DIFF: &str = "/render-diff?leftQuery=cmp.cpu&leftFrom=1700000000&leftUntil=1700000060\
                    &rightQuery=cmp.cpu&rightFrom=1700001000&rightUntil=1700001060";

#[tokio::test]
async fn render_diff_is_pyroscopes_double_format() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    ingest_comparison(&app).await;
    let json = get_json(&app, DIFF).await;
    assert_eq!(json["metadata"]["format"], "double");
    assert_eq!((json["leftTicks"].as_u64(), json["rightTicks"].as_u64()), (Some(3), Some(10)));
    // Every level holds whole nodes of seven integers, each side summing to its own ticks.
    for level in json["flamebearer"]["levels"].as_array().unwrap() {
        assert_eq!(level.as_array().unwrap().len() % 7, 0);
    }
    golden("render-diff.json", &json);

    let reversed = get_json(
        &app,
        "/render-diff?leftQuery=cmp.cpu&leftFrom=1700001000&leftUntil=1700001060\
         &rightQuery=cmp.cpu&rightFrom=1700000000&rightUntil=1700000060",
    )
    .await;
    golden("render-diff-reversed.json", &reversed);

    let (status, body, content_type) = get_bytes(&app, &format!("{DIFF}&format=svg&title=cmp")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("image/svg+xml"));
    let svg = String::from_utf8(body).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("&lt;x&gt;&amp;y") && svg.contains("ü"), "names are escaped");

    assert_error(
        &app,
        "/render-diff?leftQuery=cmp.cpu&rightQuery=cmp.alloc_space",
        "profile types differ: left is `cpu`, right is `alloc_space`",
    )
    .await;
    post(&app, "/ingest?name=ns.cpu&units=nanoseconds&from=1700000000&until=1700000010", "a 5").await;
    post(&app, "/ingest?name=ns.cpu&from=1700001000&until=1700001010", "a 5").await;
    assert_error(
        &app,
        "/render-diff?leftQuery=ns.cpu&leftUntil=1700000100&rightQuery=ns.cpu&rightFrom=1700000900",
        "units differ: left is in `nanoseconds`, right in `samples`",
    )
    .await;
    assert_error(&app, "/render-diff?leftQuery=cmp.cpu", "missing `rightQuery`").await;
    assert_error(&app, "/render-diff?rightQuery=cmp.cpu", "missing `leftQuery`").await;
    assert_error(&app, "/render-diff?leftQuery=cmp.cpu&rightQuery=cmp.cpu&leftFrom=soon", "`leftFrom`").await;
    assert_error(&app, &format!("/render-diff?leftQuery=cmp.cpu&rightQuery={}", enc(r#"cmp{a=~"("}"#)), "`rightQuery`")
        .await;
    assert_error(&app, &format!("{DIFF}&format=pprof"), "for a comparison").await;

    // maxNodes: the largest nodes of either side stay, both sides' ticks are conserved.
    let cut = get_json(&app, &format!("{DIFF}&maxNodes=3")).await;
    assert_eq!((cut["leftTicks"].as_u64(), cut["rightTicks"].as_u64()), (Some(3), Some(10)));
    assert_eq!(cut["flamebearer"]["names"], serde_json::json!(["total", "a", "c", "other"]));
    let (status, body, _) = get_bytes(&app, &format!("{DIFF}&maxNodes=3&format=svg")).await;
    assert_eq!(status, StatusCode::OK);
    assert_well_formed(&String::from_utf8(body).unwrap());
    assert_error(&app, &format!("{DIFF}&maxNodes=-1"), "maxNodes").await;
}

#[tokio::test]
async fn visible_width_sends_the_frames_a_graph_that_wide_shows() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // One heavy call chain and 20,000 light leaves under `main`: at 100 pixels, the leaves
    // are each far under a pixel, so only they and nothing below them can show.
    let mut folded = String::from("main;work;deep;deeper;deepest 1000000\n");
    for i in 0..20_000 {
        folded.push_str(&format!("main;leaf{i};below{i};bottom{i} 1\n"));
    }
    post(&app, "/ingest?name=wide.cpu", folded).await;
    let tree_of = |response: Response<Body>| async move {
        let part = response.headers().get("x-kiln-tree-part").map(|v| v.to_str().unwrap().to_owned());
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (kiln_model::codec::decode(&body).unwrap(), part)
    };
    let fetch = |uri: &str| app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());
    let (whole, part) = tree_of(fetch("/render?query=wide.cpu&format=tree").await.unwrap()).await;
    assert_eq!(part.as_deref(), Some("whole"));
    let (visible, part) = tree_of(fetch("/render?query=wide.cpu&format=tree&visibleWidth=100").await.unwrap()).await;
    assert_eq!(part.as_deref(), Some("visible"));
    assert_eq!(visible.total(), whole.total());
    assert!(visible.len() * 2 <= whole.len(), "{} of {} nodes", visible.len(), whole.len());
    assert!(!visible.names.iter().any(|n| n.starts_with("below")), "nothing under a sub-pixel frame");
    assert!(visible.names.iter().any(|n| n == "deeper"));

    // A small tree is sent whole: fetching it twice would cost more than it saves.
    post(&app, "/ingest?name=small.cpu", "a;b 1\na;c 1000\n").await;
    let (_, part) = tree_of(fetch("/render?query=small.cpu&format=tree&visibleWidth=1").await.unwrap()).await;
    assert_eq!(part.as_deref(), Some("whole"));

    for bad in ["0", "-5", "lots", "65537", "18446744073709551616"] {
        assert_error(&app, &format!("/render?query=wide.cpu&format=tree&visibleWidth={bad}"), "visibleWidth").await;
    }
}
