//! `/api/collapse` on files of several profiles: the list of parts (`x-kiln-parts`), which one
//! was answered (`x-kiln-part`), `?part=` for another, and the time order of a chosen part;
//! gzipped files read like plain ones. Real files from the model's golden inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use kiln_model::budget::DecodeBudget;
use kiln_model::formats::{self, Decoder};
use kiln_model::profile_set::ProfileSet;
use kiln_model::{codec, time_order};
use kiln_server::api::{AppState, router};
use kiln_server::storage::Store;
use tower::ServiceExt;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/formats").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn model(bytes: &[u8]) -> ProfileSet {
    let Decoder::Parser(parser) = formats::sniff(bytes).expect("recognised").decoder else { panic!("no parser") };
    parser.parse(bytes, 1024, &mut DecodeBudget::unlimited()).unwrap()
}

async fn app(dir: &Path) -> Router {
    router(AppState::new(Arc::new(Store::open(dir).await.unwrap())))
}

struct Answer {
    status: StatusCode,
    parts: Option<serde_json::Value>,
    part: Option<String>,
    units: Option<String>,
    body: Vec<u8>,
}

async fn post(app: &Router, uri: &str, body: &[u8]) -> Answer {
    let response = app.clone().oneshot(Request::post(uri).body(Body::from(body.to_vec())).unwrap()).await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let parts = header("x-kiln-parts").map(|v| serde_json::from_str(&v).unwrap());
    let (part, units) = (header("x-kiln-part"), header("x-kiln-units"));
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
    Answer { status, parts, part, units, body }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_trace_lists_its_threads_and_answers_each_or_all_merged() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let trace = data("chromium.trace.json");
    let set = model(&trace);
    assert!(set.parts.len() >= 2);
    let (merged, _) = set.merged().unwrap();

    // Gzipped or not, the same answer: every thread merged, and the list of threads.
    for body in [trace.clone(), gzip(&trace)] {
        let answer = post(&app, "/api/collapse", &body).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.part.as_deref(), Some("all"));
        assert_eq!(codec::decode(&answer.body).unwrap().total(), merged.total());
        let parts = answer.parts.unwrap();
        let listed: Vec<(&str, u64, bool)> = parts
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["total"].as_u64().unwrap(), p["timed"].as_bool().unwrap()))
            .collect();
        let expected: Vec<(&str, u64, bool)> = set
            .parts
            .iter()
            .map(|p| (p.name.as_str(), p.tree.total(), p.time_order.as_ref().is_some_and(|o| !o.samples.is_empty())))
            .collect();
        assert_eq!(listed, expected);
    }

    // One thread by its index: its own tree, in its unit.
    let busiest = (0..set.parts.len()).max_by_key(|&i| set.parts[i].tree.total()).unwrap();
    let other = (busiest + 1) % set.parts.len();
    for i in [busiest, other] {
        let answer = post(&app, &format!("/api/collapse?part={i}"), &trace).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.part, Some(i.to_string()));
        assert_eq!(answer.units.as_deref(), Some(set.parts[i].units.as_str()));
        let tree = codec::decode(&answer.body).unwrap();
        assert_eq!(kiln_model::folded::print(&tree), kiln_model::folded::print(&set.parts[i].tree.to_flat()));
    }

    // The time order follows the part chosen; without one it is the busiest thread's.
    let timed = |answer: Answer| {
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
        time_order::decode(&answer.body).unwrap()
    };
    let busiest_order = timed(post(&app, "/api/collapse/time-order", &gzip(&trace)).await);
    assert_eq!(busiest_order.name, set.parts[busiest].name);
    let chosen = timed(post(&app, &format!("/api/collapse/time-order?part={other}"), &trace).await);
    assert_eq!(chosen.name, set.parts[other].name);
    assert_eq!(timed(post(&app, "/api/collapse/time-order?part=all", &trace).await).name, busiest_order.name);

    // A part that is not there, or not a part at all: 400 saying so.
    let count = set.parts.len();
    for uri in [format!("/api/collapse?part={count}"), format!("/api/collapse/time-order?part={count}")] {
        let answer = post(&app, &uri, &trace).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        assert!(text.contains(&format!("holds {count} profiles; there is no profile {count}")), "{text}");
    }
    let answer = post(&app, "/api/collapse?part=first", &trace).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("`part` is `all` or"));
}

#[tokio::test]
async fn callgrind_event_types_are_picked_one_at_a_time_never_merged() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let file = data("cg.callgrind");
    let set = model(&file);
    let answer = post(&app, "/api/collapse", &file).await;
    assert_eq!(answer.status, StatusCode::OK);
    // The first event type by default: Ir and Dr are different quantities.
    assert_eq!(answer.part.as_deref(), Some("0"));
    assert_eq!(answer.units.as_deref(), Some("Ir"));
    let parts = answer.parts.unwrap();
    let names: Vec<&str> = parts.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]);
    let dr = post(&app, "/api/collapse?part=1", &file).await;
    assert_eq!(dr.units.as_deref(), Some("Dr"));
    assert_eq!(codec::decode(&dr.body).unwrap().total(), set.parts[1].tree.total());
    let all = post(&app, "/api/collapse?part=all", &file).await;
    assert_eq!(all.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&all.body).contains("do not merge"));
}

#[tokio::test]
async fn names_beyond_ascii_are_escaped_in_the_list_and_single_profile_files_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let speedscope = r#"{"shared": {"frames": [{"name": "main"}, {"name": "work"}]}, "profiles": [
        {"type": "sampled", "name": "Haupt-Fädchen \u007f 🔥", "unit": "none", "startValue": 0, "endValue": 3,
         "samples": [[0, 1], [0]], "weights": [2, 1]},
        {"type": "sampled", "name": "", "unit": "none", "startValue": 0, "endValue": 1,
         "samples": [[1]], "weights": [4]}]}"#;
    let answer = post(&app, "/api/collapse", speedscope.as_bytes()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let parts = answer.parts.unwrap();
    assert_eq!(parts[0]["name"], "Haupt-Fädchen \u{7f} 🔥");
    assert_eq!(parts[0]["total"], 3);
    assert_eq!(parts[1]["name"], "profile 2", "a profile without a name is named by its place");
    assert_eq!(
        codec::decode(&post(&app, "/api/collapse?part=1", speedscope.as_bytes()).await.body).unwrap().total(),
        4
    );

    // Folded text is one profile: no list, and only part 0 (or all) is there.
    let folded = post(&app, "/api/collapse", b"main;work 3\n").await;
    assert_eq!((folded.status, folded.parts, folded.part), (StatusCode::OK, None, None));
    assert_eq!(post(&app, "/api/collapse?part=all", b"main;work 3\n").await.status, StatusCode::OK);
    assert_eq!(post(&app, "/api/collapse?part=1", b"main;work 3\n").await.status, StatusCode::BAD_REQUEST);
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    (status, String::from_utf8_lossy(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).into_owned())
}

#[tokio::test]
async fn stackprof_and_gecko_files_open_and_store_by_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // Ruby stackprof: one profile, no list; stored as one series in nanoseconds.
    let stackprof = data("stackprof-fib.json");
    let set = model(&stackprof);
    let answer = post(&app, "/api/collapse", &stackprof).await;
    assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("nanoseconds")));
    assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total());
    assert_eq!(post(&app, "/ingest?name=ruby.cpu", &stackprof).await.status, StatusCode::OK);
    let (status, render) = get(&app, "/render?query=ruby.cpu&format=folded&from=now-1h").await;
    assert_eq!(status, StatusCode::OK, "{render}");
    let lines = |text: &str| text.lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(lines(&render), lines(&kiln_model::folded::print(&set.parts[0].tree.to_flat())));

    // Firefox's Gecko profile: a thread per process main thread, listed with their totals, gzipped too.
    let gecko = data("gecko-fib.json");
    let set = model(&gecko);
    assert_eq!(set.parts.len(), 3);
    let answer = post(&app, "/api/collapse", &gzip(&gecko)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let totals: Vec<u64> =
        answer.parts.unwrap().as_array().unwrap().iter().map(|p| p["total"].as_u64().unwrap()).collect();
    assert_eq!(totals, set.parts.iter().map(|p| p.tree.total()).collect::<Vec<_>>());
    assert_eq!(codec::decode(&answer.body).unwrap().total(), totals.iter().sum::<u64>());
    assert_eq!(post(&app, "/ingest?name=firefox.cpu", &gecko).await.status, StatusCode::OK);
    let (_, threads) = get(&app, "/label-values?label=thread_name&query=firefox.cpu").await;
    let threads: Vec<String> = serde_json::from_str(&threads).unwrap();
    assert_eq!(threads.len(), 3, "{threads:?}");

    // A broken file of either is a 400 naming the format.
    for (body, format) in [(&stackprof[..stackprof.len() / 2], "stackprof: "), (&gecko[..gecko.len() / 2], "gecko: ")] {
        let answer = post(&app, "/api/collapse", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&answer.body).contains(format));
    }
}

#[tokio::test]
async fn a_v8_heap_profile_opens_and_stores_in_bytes_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let heap = data("node-alloc.heapprofile");
    let set = model(&heap);
    let answer = post(&app, "/api/collapse", &gzip(&heap)).await;
    assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("bytes")));
    assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total());
    assert_eq!(post(&app, "/ingest?name=node.inuse_space", &heap).await.status, StatusCode::OK);
    let (status, render) = get(&app, "/render?query=node.inuse_space&format=folded&from=now-1h").await;
    assert_eq!(status, StatusCode::OK, "{render}");
    assert!(render.lines().any(|l| l.contains(";buildTable;makeRow ")), "{render}");
    let stored: u64 = render.lines().filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok()).sum();
    assert_eq!(stored, set.parts[0].tree.total());
    // Cut short, or nested past any stack: a 400 naming the format, or read within the budget.
    let answer = post(&app, "/api/collapse", &heap[..heap.len() / 2]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("heapprofile: "));
    let deep = format!(
        r#"{{"head":{}{}}}"#,
        r#"{"callFrame":{"functionName":"f"},"selfSize":1,"children":["#.repeat(200_000),
        "]}".repeat(200_000)
    );
    let answer = post(&app, "/ingest?name=deep.inuse_space", deep.as_bytes()).await;
    assert!(answer.status == StatusCode::OK || answer.status.is_client_error(), "{}", answer.status);
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_preprocessed_node_tick_log_opens_in_time_order_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let log = data("v8-work.prof.json");
    let set = model(&log);
    let answer = post(&app, "/api/collapse", &log).await;
    assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("nanoseconds")));
    assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total());
    let answer = post(&app, "/api/collapse/time-order", &gzip(&log)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    let timed = time_order::decode(&answer.body).unwrap();
    assert_eq!(timed.end(), set.parts[0].time_order.as_ref().unwrap().samples.last().unwrap().end());
    assert_eq!(post(&app, "/ingest?name=node-prof.cpu", &log).await.status, StatusCode::OK);
    let (status, render) = get(&app, "/render?query=node-prof.cpu&format=folded&from=now-1h").await;
    assert_eq!(status, StatusCode::OK, "{render}");
    assert!(render.lines().any(|l| l.contains(";main;hot ")), "{render}");
    // A tick naming a code entry that is not there: a 400 naming the format.
    let broken = br#"{"code": [{"name": "a", "type": "CPP"}], "ticks": [{"tm": 1, "vm": 0, "s": [5, 0]}]}"#;
    let answer = post(&app, "/ingest?name=node-prof.cpu", broken).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("v8_prof: "), "{}", String::from_utf8_lossy(&answer.body));
}

#[tokio::test]
async fn a_ghc_json_profile_lists_time_and_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let ghc = data("ghc-fib.prof.json");
    let set = model(&ghc);
    let answer = post(&app, "/api/collapse", &ghc).await;
    assert_eq!(answer.status, StatusCode::OK);
    let listed: Vec<(String, String, u64)> = answer
        .parts
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["name"].as_str().unwrap().into(), p["units"].as_str().unwrap().into(), p["total"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, String, u64)> =
        set.parts.iter().map(|p| (p.name.clone(), p.units.clone(), p.tree.total())).collect();
    assert_eq!(listed, expected);
    assert_eq!(answer.part.as_deref(), Some("0"), "event types do not merge: the first is answered");
    let bytes = post(&app, "/api/collapse?part=1", &ghc).await;
    assert_eq!((bytes.status, bytes.units.as_deref()), (StatusCode::OK, Some("bytes")));
    assert_eq!(post(&app, "/ingest?name=haskell", &ghc).await.status, StatusCode::OK);
    // A node of a cost centre that is not listed: 400 naming the format.
    let broken = br#"{"program": "p", "tick_interval": 1000, "cost_centres": [], "profile": {"id": 4, "ticks": 1, "children": []}}"#;
    let answer = post(&app, "/api/collapse", broken).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("ghcprof_json: "));
}

#[tokio::test]
async fn a_flight_recording_lists_its_profiles_one_per_event_kind() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let file = data("jfr-demo.jfr");
    let set = model(&file);
    // Gzipped or not: CPU samples first, every other profile listed, none merged.
    for body in [file.clone(), gzip(&file)] {
        let answer = post(&app, "/api/collapse", &body).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!((answer.part.as_deref(), answer.units.as_deref()), (Some("0"), Some("samples")));
        assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total());
        let parts = answer.parts.unwrap();
        let listed: Vec<(&str, u64)> = parts
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["total"].as_u64().unwrap()))
            .collect();
        let expected: Vec<(&str, u64)> = set.parts.iter().map(|p| (p.name.as_str(), p.tree.total())).collect();
        assert_eq!(listed, expected);
        assert_eq!(listed[0].0, "cpu");
        assert!(listed.iter().any(|(name, _)| *name == "alloc_in_new_tlab_bytes"));
        assert!(listed.iter().any(|(name, _)| *name == "lock_duration"));
    }
    let lock = set.parts.iter().position(|p| p.name == "lock_duration").unwrap();
    let answer = post(&app, &format!("/api/collapse?part={lock}"), &file).await;
    assert_eq!(answer.units.as_deref(), Some("lock_nanoseconds"));
    let tree = codec::decode(&answer.body).unwrap();
    assert_eq!(kiln_model::folded::print(&tree), kiln_model::folded::print(&set.parts[lock].tree.to_flat()));
    let all = post(&app, "/api/collapse?part=all", &file).await;
    assert_eq!(all.status, StatusCode::BAD_REQUEST);

    // A recording cut short is an error naming the format, not a guess at another one.
    let cut = post(&app, "/api/collapse", &file[..file.len() / 3]).await;
    assert_eq!(cut.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&cut.body).contains("jfr: chunk 1"), "{}", String::from_utf8_lossy(&cut.body));
}

#[tokio::test]
async fn a_raw_node_prof_log_opens_in_time_order_and_stores_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let log = data("v8-work.isolate.log");
    let set = model(&log);
    let ticks = String::from_utf8_lossy(&log).lines().filter(|l| l.starts_with("tick,")).count();
    // Plain or gzipped, one profile in nanoseconds, listed with its total, its ticks in time
    // order.
    let total = set.parts[0].tree.total();
    for body in [log.clone(), gzip(&log)] {
        let answer = post(&app, "/api/collapse", &body).await;
        assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("nanoseconds")));
        assert_eq!(codec::decode(&answer.body).unwrap().total(), total);
        let parts = answer.parts.unwrap();
        assert_eq!((parts[0]["name"].as_str(), parts[0]["total"].as_u64()), (Some("main"), Some(total)));
        assert_eq!(parts.as_array().unwrap().len(), 1);
    }
    let answer = post(&app, "/api/collapse/time-order", &log).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(time_order::decode(&answer.body).unwrap().samples.len(), ticks);
    // Stored by its content, without `format`; the stacks name the script's functions.
    assert_eq!(post(&app, "/ingest?name=node-raw.cpu", &log).await.status, StatusCode::OK);
    let (status, render) = get(&app, "/render?query=node-raw.cpu&format=folded&from=now-1h").await;
    assert_eq!(status, StatusCode::OK, "{render}");
    assert!(render.lines().any(|l| l.contains(";main;hot ")), "{render}");
    // A tick whose time is not a number: a 400 naming the format and the line.
    let broken = b"v8-version,11,3,244,8,-node.38,0\ntick,0x10,soon,0,0x0,0\n";
    let answer = post(&app, "/api/collapse", broken).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("v8_log: line 2: the time `soon`"), "{text}");
}

#[tokio::test]
async fn a_processed_firefox_profile_gzipped_as_the_profiler_saves_it_lists_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // Written by hand from the Firefox Profiler's documented types: no producer runs here.
    let file = data("firefox-processed.json");
    let set = model(&file);
    assert_eq!(set.parts.len(), 3);
    let answer = post(&app, "/api/collapse", &gzip(&file)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.part.as_deref(), Some("all"));
    let listed: Vec<(String, u64)> = answer
        .parts
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["total"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> = set.parts.iter().map(|p| (p.name.clone(), p.tree.total())).collect();
    assert_eq!(listed, expected);
    assert_eq!(codec::decode(&answer.body).unwrap().total(), expected.iter().map(|(_, t)| t).sum::<u64>());
    // The content process's main thread alone, and in time order.
    let content = post(&app, "/api/collapse?part=1", &gzip(&file)).await;
    let tree = codec::decode(&content.body).unwrap();
    assert_eq!(kiln_model::folded::print(&tree), kiln_model::folded::print(&set.parts[1].tree.to_flat()));
    let answer = post(&app, "/api/collapse/time-order?part=1", &file).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(time_order::decode(&answer.body).unwrap().name, set.parts[1].name);
    assert_eq!(post(&app, "/ingest?name=firefox-processed.cpu", &file).await.status, StatusCode::OK);
    // A sample of a stack that is not there: a 400 naming the format and the thread.
    let text = String::from_utf8(file).unwrap();
    let broken = text.replacen("\"stack\": [1, 2, 2, 2, 1, null, 2]", "\"stack\": [1, 2, 2, 2, 1, null, 9]", 1);
    assert_ne!(broken, text);
    let answer = post(&app, "/api/collapse", broken.as_bytes()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let message = String::from_utf8_lossy(&answer.body);
    assert!(message.contains("firefox_processed: thread 0 (GeckoMain): sample 6 is of stack 9"), "{message}");
}

#[tokio::test]
async fn instruments_pmcstat_and_papyrus_text_open_and_store_by_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // Each written by hand from its tool's layout (no producer runs here), CRLF and UTF-16
    // as well as they are.
    for (file, units, broken, says) in [
        ("instruments-deep-copy.txt", "nanoseconds", "Weight\tSymbol Names\nsoon\tmain\n", "instruments: line 2"),
        ("pmcstat-callgraph.txt", "samples", "@ e [3 samples]\n100.0%  [x]  f\n", "pmcstat: line 2"),
        ("papyrus-stack.log", "nanoseconds", "5:PUSH:1:0:None:a..b\n3:POP:1:0:None:a..b\n", "papyrus: line 2"),
    ] {
        let bytes = data(file);
        let set = model(&bytes);
        let crlf = String::from_utf8(bytes.clone()).unwrap().replace('\n', "\r\n");
        let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain(crlf.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        for body in [bytes.clone(), crlf.into_bytes(), utf16] {
            let answer = post(&app, "/api/collapse", &body).await;
            assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some(units)), "{file}");
            assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total(), "{file}");
        }
        let name = format!("/ingest?name={}.cpu", file.split(['-', '.']).next().unwrap());
        assert_eq!(post(&app, &name, &bytes).await.status, StatusCode::OK, "{file}");
        let answer = post(&app, "/api/collapse", broken.as_bytes()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{file}");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(text.contains(says), "{file}: {text}");
    }
    // pmcstat's events are picked one at a time, never merged.
    let graph = data("pmcstat-callgraph.txt");
    let answer = post(&app, "/api/collapse", &graph).await;
    let names: Vec<String> =
        answer.parts.unwrap().as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["CPU_CLK_UNHALTED_CORE", "INSTR_RETIRED_ANY"]);
    assert_eq!(post(&app, "/api/collapse?part=all", &graph).await.status, StatusCode::BAD_REQUEST);
    // Papyrus' stacks open in time order.
    let answer = post(&app, "/api/collapse/time-order", &data("papyrus-stack.log")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(time_order::decode(&answer.body).unwrap().name, "stack 4242");
}

#[tokio::test]
async fn a_safari_timeline_recording_opens_in_time_order_and_stores_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // Written by hand in the shape of Web Inspector's export: no Safari runs here.
    let file = data("safari-recording.json");
    let set = model(&file);
    let answer = post(&app, "/api/collapse", &gzip(&file)).await;
    assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("nanoseconds")));
    assert_eq!(codec::decode(&answer.body).unwrap().total(), set.parts[0].tree.total());
    let answer = post(&app, "/api/collapse/time-order", &file).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(time_order::decode(&answer.body).unwrap().name, "Timeline Recording 1");
    assert_eq!(post(&app, "/ingest?name=safari.cpu", &file).await.status, StatusCode::OK);
    let (status, render) = get(&app, "/render?query=safari.cpu&format=folded&from=now-1h").await;
    assert_eq!(status, StatusCode::OK, "{render}");
    assert!(render.lines().any(|l| l.starts_with("(program);busy;fib;fib ")), "{render}");
    // Durations that do not match the samples: a 400 naming the format and what is wrong.
    let text = String::from_utf8(file).unwrap();
    let broken = text.replace("\"sampleDurations\":[0.001,", "\"sampleDurations\":[");
    let answer = post(&app, "/api/collapse", broken.as_bytes()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let message = String::from_utf8_lossy(&answer.body);
    assert!(message.contains("safari: recording.sampleStackTraces has 8 samples but sampleDurations 7"), "{message}");
}

/// Folded stacks without the frames `dropped` names (nor addresses, `0x…`), equal stacks merged.
fn without_frames(
    folded: &str,
    dropped: &std::collections::HashSet<String>,
) -> std::collections::BTreeMap<String, u64> {
    let mut stacks = std::collections::BTreeMap::new();
    for line in folded.lines() {
        let (stack, value) = line.rsplit_once(' ').unwrap();
        let kept: Vec<&str> = stack.split(';').filter(|f| !dropped.contains(*f) && !f.starts_with("0x")).collect();
        *stacks.entry(kept.join(";")).or_insert(0) += value.parse::<u64>().unwrap();
    }
    stacks
}

#[tokio::test]
async fn a_raw_node_prof_log_whose_code_moved_reads_as_v8s_own_tick_processor_reads_it() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // A real run with thousands of code and function moves, gzipped as it is committed.
    let gzipped = data("v8-moves.isolate.log.gz");
    let mut log = String::new();
    flate2::read::GzDecoder::new(&gzipped[..]).read_to_string(&mut log).unwrap();
    assert!(log.lines().filter(|l| l.starts_with("code-move,")).count() > 1000);
    let answer = post(&app, "/api/collapse", &gzipped).await;
    assert_eq!((answer.status, answer.units.as_deref()), (StatusCode::OK, Some("nanoseconds")));
    let tree = codec::decode(&answer.body).unwrap();

    // What `node --prof-process --preprocess` made of the same log: tick by tick the same
    // JavaScript stacks, every address resolved to the code at it when the tick was taken.
    // Native frames differ by design (V8's tool names C++ from the binary's symbols, and
    // builtins in the binary by the binary; Kiln by library and by their code-creation names).
    let preprocessed = data("v8-moves.isolate.prof.json");
    let reference = kiln_model::v8log::parse(&preprocessed, 1024).unwrap();
    assert_eq!(tree.total(), reference.parts[0].tree.total());
    let json: serde_json::Value = serde_json::from_slice(&preprocessed).unwrap();
    let mut native: std::collections::HashSet<String> = json["code"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "CPP" || c["type"] == "SHARED_LIB")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    native.extend(log.lines().filter_map(|l| l.strip_prefix("shared-library,")?.split(',').next().map(String::from)));
    native.extend(
        log.lines()
            .filter(|l| l.starts_with("code-creation,Builtin,") || l.starts_with("code-creation,BytecodeHandler,"))
            .map(|l| l.split(',').nth(6).unwrap().to_string()),
    );
    let ours = without_frames(&kiln_model::folded::print(&tree), &native);
    let theirs = without_frames(&kiln_model::folded::print(&reference.parts[0].tree.to_flat()), &native);
    assert!(ours.keys().any(|stack| stack.contains(";main;fib;fib;fib")), "{ours:?}");
    assert!(ours.keys().any(|stack| stack.contains(";main;churn")), "{ours:?}");
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn a_perf_script_capture_lists_its_threads_in_inferno_s_samples_adding_up_to_inferno_s_whole() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let real = |name: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data").join(name);
    let gz = std::fs::read(real("example-perf-stacks.txt.gz")).unwrap();
    let mut script = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut script).unwrap();
    // inferno's own collapse of the capture (its test data), which the merged tree must stay.
    let mut golden: Vec<String> =
        std::fs::read_to_string(real("example-perf-stacks-collapsed.txt")).unwrap().lines().map(String::from).collect();
    golden.sort();
    let golden_total: u64 = golden.iter().map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap()).sum();

    // Recognised by content, gzipped or not, and named.
    let mut listings = Vec::new();
    for (uri, body) in
        [("/api/collapse", &script), ("/api/collapse", &gz), ("/api/collapse?format=perf_script", &script)]
    {
        let answer = post(&app, uri, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.part.as_deref(), Some("all"));
        assert_eq!(answer.units.as_deref(), Some("samples"));
        let merged = codec::decode(&answer.body).unwrap();
        let mut lines: Vec<String> = kiln_model::folded::print(&merged).lines().map(String::from).collect();
        lines.sort();
        assert_eq!(lines, golden, "{uri}: the merged tree is inferno's collapse");
        listings.push(answer.parts.expect("a list of threads"));
    }
    assert!(listings.iter().all(|l| *l == listings[0]));
    let parts = listings[0].as_array().unwrap();
    let listed: Vec<(String, u64)> =
        parts.iter().map(|p| (p["name"].as_str().unwrap().to_string(), p["total"].as_u64().unwrap())).collect();
    assert!(listed.len() > 10 && listed.len() < 256, "{} threads", listed.len());
    // Threads as perf prints them (`comm pid/tid`), in name order, each with times (the capture
    // has them) and in samples; together they are the whole.
    assert!(listed.iter().any(|(name, _)| name == "java 339/363"), "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(parts.iter().all(|p| p["units"] == "samples" && p["timed"] == true));
    assert_eq!(listed.iter().map(|(_, total)| total).sum::<u64>(), golden_total);

    // `?part=` answers one thread: its total as listed, its root the command alone, and its
    // time order is the same thread's.
    let busiest = (0..listed.len()).max_by_key(|&i| listed[i].1).unwrap();
    for i in [0, busiest, listed.len() - 1] {
        let answer = post(&app, &format!("/api/collapse?part={i}"), &script).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.part, Some(i.to_string()));
        let tree = codec::decode(&answer.body).unwrap();
        assert_eq!(tree.total(), listed[i].1, "{}", listed[i].0);
        let command = listed[i].0.rsplit_once(' ').unwrap().0;
        assert_eq!(tree.names[tree.name[1] as usize], command);
        let timed = post(&app, &format!("/api/collapse/time-order?part={i}"), &script).await;
        assert_eq!(timed.status, StatusCode::OK, "{}", String::from_utf8_lossy(&timed.body));
        assert_eq!(time_order::decode(&timed.body).unwrap().name, listed[i].0);
    }
    let past = post(&app, &format!("/api/collapse?part={}", listed.len()), &script).await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
}
