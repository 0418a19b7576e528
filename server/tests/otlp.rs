//! OTLP profiles: requests written by an independent producer (Python's `opentelemetry-proto`,
//! `data/otlp/make.py`) decoded against goldens, and a live Kiln fed by a real gRPC client
//! (tonic, from the same crate Kiln serves with) and an OTLP/HTTP client (reqwest), including
//! hostile requests.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_server::ingest::IngestLimits;
use kiln_server::ingest::otlp::{self, ExportProfilesServiceRequest, OtlpOptions};
use kiln_server::storage::Upload;
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost_otlp::Message;
use support::Kiln;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/otlp")
}

fn data(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The producer's requests were written at 2023-11-14; "now" is a day later.
const NOW: i64 = 1_700_086_400;

fn decode(request: &ExportProfilesServiceRequest, options: &OtlpOptions) -> Result<otlp::Decoded, String> {
    let limits = IngestLimits::default();
    let mut budget = limits.budget();
    budget.decode.grant(request.encoded_len() as u64);
    otlp::decode(request, options, &limits, &mut budget, NOW).map_err(|e| e.to_string())
}

/// Uploads as text: one header line per upload, then its stacks (root first) sorted.
fn render(uploads: &[Upload]) -> String {
    let mut blocks: Vec<String> = uploads
        .iter()
        .map(|u| {
            let m = &u.meta;
            let labels: Vec<String> = m.series.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut text = format!(
                "app={} type={} units={} aggregation={:?} rate={} spy={} range={}..{} labels={{{}}}\n",
                m.series.app,
                m.series.profile_type,
                m.units,
                m.aggregation,
                m.sample_rate,
                m.spy_name,
                m.from,
                m.until,
                labels.join(",")
            );
            let mut stacks: Vec<String> =
                u.tree.stacks().iter().map(|(frames, v)| format!("  {} {v}\n", frames.join(";"))).collect();
            stacks.sort();
            text.extend(stacks);
            text
        })
        .collect();
    blocks.sort();
    blocks.concat()
}

/// Compares with `<name>.golden`; `BLESS=1` writes it instead.
fn golden(name: &str, got: &str) {
    let path = data_dir().join(format!("{name}.golden"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", path.display()));
    if want != got {
        let dump = std::env::temp_dir().join(format!("kiln-otlp-{name}.got"));
        std::fs::write(&dump, got).unwrap();
        panic!("{name}: output differs from {} (got: {})", path.display(), dump.display());
    }
}

/// Per "app type", what the uploads add up to.
fn totals(uploads: &[Upload]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for u in uploads {
        *totals.entry(format!("{} {}", u.meta.series.app, u.meta.series.profile_type)).or_default() += u.tree.total();
    }
    totals
}

fn expected(case: &str) -> BTreeMap<String, u64> {
    let all: BTreeMap<String, BTreeMap<String, u64>> = serde_json::from_slice(&data("expected.json")).unwrap();
    all[case].clone()
}

#[test]
fn the_python_producers_bytes_are_the_layout_the_rust_crate_decodes() {
    // Decoded and re-encoded byte for byte: every field the producer wrote has the number and
    // wire type the crate's messages give it (proto v1.10), none of them unknown.
    for case in ["cpu", "alloc", "multi", "partial", "broken"] {
        let bytes = data(&format!("{case}.binpb"));
        let request = ExportProfilesServiceRequest::decode(&bytes[..]).unwrap();
        assert_eq!(request.encode_to_vec(), bytes, "{case}");
    }
    // And the fields that moved between releases are where the producer put them.
    let request = otlp::from_protobuf(&data("multi.binpb")).unwrap();
    let off_cpu = &request.resource_profiles[1].scope_profiles[0].profiles[0];
    assert_eq!(off_cpu.samples[0].values, [100, 200, 300, 400]);
    assert_eq!(off_cpu.samples[0].timestamps_unix_nano.len(), 4);
}

/// Runs the producer (its own venv, PyPI) and compares what it writes with the committed files:
/// they are what the pinned package makes of make.py, not hand edits.
#[test]
#[ignore = "needs python3 and PyPI; run with --ignored"]
fn the_python_producer_reproduces_the_committed_files() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(data_dir().join("make.sh")).arg(out.path()).status().unwrap();
    assert!(status.success(), "make.sh failed: {status}");
    for name in
        ["cpu.binpb", "cpu.json", "alloc.binpb", "multi.binpb", "partial.binpb", "broken.binpb", "expected.json"]
    {
        let made = std::fs::read(out.path().join(name)).unwrap();
        assert!(made == data(name), "{name} differs from what make.sh writes now");
    }
}

#[test]
fn producer_requests_match_their_goldens_and_the_producers_totals() {
    let options = OtlpOptions::default();
    for case in ["cpu", "alloc", "multi", "partial"] {
        let request = otlp::from_protobuf(&data(&format!("{case}.binpb"))).unwrap();
        let decoded = decode(&request, &options).unwrap();
        assert_eq!(totals(&decoded.uploads), expected(case), "{case}");
        let partial =
            decoded.partial_success().map(|p| format!("rejected={} {}\n", p.rejected_profiles, p.error_message));
        golden(case, &format!("{}{}", partial.unwrap_or_default(), render(&decoded.uploads)));
    }
}

#[test]
fn otlp_json_decodes_to_what_the_protobuf_does() {
    let options = OtlpOptions::default();
    let from_json = otlp::json::from_json(&data("cpu.json")).unwrap();
    let from_protobuf = otlp::from_protobuf(&data("cpu.binpb")).unwrap();
    assert_eq!(
        render(&decode(&from_json, &options).unwrap().uploads),
        render(&decode(&from_protobuf, &options).unwrap().uploads)
    );
}

#[test]
fn listed_sample_attributes_become_labels() {
    let request = otlp::from_protobuf(&data("cpu.binpb")).unwrap();
    let options = OtlpOptions { sample_labels: vec!["thread.name".into()] };
    let decoded = decode(&request, &options).unwrap();
    let threads: Vec<&str> =
        decoded.uploads.iter().filter_map(|u| u.meta.series.labels.get("thread.name").map(String::as_str)).collect();
    assert_eq!(threads.len(), 3, "worker-1, worker-2, MainThread: {threads:?}");
    assert_eq!(totals(&decoded.uploads), expected("cpu"), "labels split series, never totals");
}

#[test]
fn a_broken_dictionary_refuses_the_whole_request() {
    let request = otlp::from_protobuf(&data("broken.binpb")).unwrap();
    let error = decode(&request, &OtlpOptions::default()).unwrap_err();
    assert!(error.contains("function 77"), "{error}");
    assert!(otlp::from_protobuf(&data("cpu.binpb")[..100]).is_err(), "truncated bytes");
}

// ---- live ----------------------------------------------------------------------------------

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn string_value(text: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(text.into())) })
}

/// A request for `app`: one CPU profile (counted samples, 10 ms period) with `stacks` (leaf
/// first frame names, count), stamped now.
fn request(app: &str, stacks: &[(&[&str], i64)]) -> ExportProfilesServiceRequest {
    let mut strings = vec![String::new(), "samples".into(), "count".into(), "cpu".into(), "nanoseconds".into()];
    let mut intern = |s: &str| -> i32 {
        if let Some(i) = strings.iter().position(|x| x == s) {
            return i as i32;
        }
        strings.push(s.into());
        strings.len() as i32 - 1
    };
    let mut dictionary = ProfilesDictionary {
        location_table: vec![Location::default()],
        function_table: vec![Function::default()],
        stack_table: vec![Stack::default()],
        attribute_table: vec![KeyValueAndUnit::default()],
        ..Default::default()
    };
    let mut samples = Vec::new();
    for (frames, count) in stacks {
        let mut locations = Vec::new();
        for frame in *frames {
            dictionary.function_table.push(Function { name_strindex: intern(frame), ..Default::default() });
            let function_index = dictionary.function_table.len() as i32 - 1;
            dictionary
                .location_table
                .push(Location { lines: vec![Line { function_index, ..Default::default() }], ..Default::default() });
            locations.push(dictionary.location_table.len() as i32 - 1);
        }
        dictionary.stack_table.push(Stack { location_indices: locations });
        samples.push(Sample {
            stack_index: dictionary.stack_table.len() as i32 - 1,
            values: vec![*count],
            ..Default::default()
        });
    }
    dictionary.string_table = strings;
    let profile = Profile {
        sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
        period_type: Some(ValueType { type_strindex: 3, unit_strindex: 4 }),
        period: 10_000_000,
        time_unix_nano: now_nanos() - 5_000_000_000,
        duration_nano: 5_000_000_000,
        samples,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string_value(app),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles { profiles: vec![profile], ..Default::default() }],
            ..Default::default()
        }],
        dictionary: Some(dictionary),
    }
}

/// `/render` of `query` in `tenant`, folded, over the last hour.
async fn render_folded(addr: std::net::SocketAddr, tenant: &str, query: &str) -> (u16, String) {
    render_range(addr, tenant, query, "from=now-1h&until=now%2B1h").await
}

async fn render_range(addr: std::net::SocketAddr, tenant: &str, query: &str, range: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/render?query={query}&format=folded&{range}"))
        .header("X-Scope-OrgID", tenant)
        .header("Authorization", "Bearer reader")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post(addr: std::net::SocketAddr, content_type: &str, gzipped: bool, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut builder = reqwest::Client::new()
        .post(format!("http://{addr}{}", otlp::HTTP_PATH))
        .header("Content-Type", content_type)
        .header("X-Scope-OrgID", "team-http")
        .header("Authorization", "Bearer writer");
    let body = if gzipped {
        builder = builder.header("Content-Encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    let response = builder.body(body).send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

async fn grpc_client(addr: std::net::SocketAddr) -> ProfilesServiceClient<tonic::transport::Channel> {
    ProfilesServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX)
}

fn grpc_request(request: ExportProfilesServiceRequest, tenant: &str) -> tonic::Request<ExportProfilesServiceRequest> {
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert("x-scope-orgid", tenant.parse().unwrap());
    request.metadata_mut().insert("authorization", "Bearer writer".parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_clients_export_to_a_live_kiln() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &["--ingest-token", "writer", "--query-token", "reader"]);
    let addr = kiln.addr;
    let mut client = grpc_client(addr).await;

    // gRPC, gzipped, in a tenant of its own; the app's dots stay in its name.
    let answer = client
        .export(grpc_request(request("svc.cpu", &[(&["work", "main"], 3), (&["main"], 1)]), "team-grpc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
    let (status, folded) = render_folded(addr, "team-grpc", "%22svc.cpu%22.cpu").await;
    assert_eq!(status, 200, "{folded}");
    assert_eq!(
        support::folded_values(&folded),
        BTreeMap::from([("main".into(), 10_000_000), ("main;work".into(), 30_000_000)])
    );
    let (_, other_tenant) = render_folded(addr, "team-http", "%22svc.cpu%22.cpu").await;
    assert!(support::folded_values(&other_tenant).is_empty(), "{other_tenant}");

    // Without the token: refused.
    let mut anonymous = tonic::Request::new(request("svc", &[(&["main"], 1)]));
    anonymous.metadata_mut().insert("x-scope-orgid", "team-grpc".parse().unwrap());
    assert_eq!(client.export(anonymous).await.unwrap_err().code(), tonic::Code::Unauthenticated);

    // OTLP/HTTP: protobuf gzipped, then JSON; both answer an ExportProfilesServiceResponse.
    let (status, body) =
        post(addr, "application/x-protobuf", true, request("web", &[(&["a"], 2)]).encode_to_vec()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(otlp::ExportProfilesServiceResponse::decode(&body[..]).unwrap().partial_success, None);
    let json = serde_json::json!({
        "resourceProfiles": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
            "scopeProfiles": [{"profiles": [{"sampleType": {"typeStrindex": 1, "unitStrindex": 2},
                "timeUnixNano": (now_nanos() - 1_000_000_000).to_string(),
                "samples": [{"stackIndex": 1, "values": ["5"]}]}]}]}],
        "dictionary": {"stringTable": ["", "cpu", "nanoseconds", "b"], "functionTable": [{}, {"nameStrindex": 3}],
            "locationTable": [{}, {"lines": [{"functionIndex": 1}]}], "stackTable": [{}, {"locationIndices": [1]}]}
    });
    let (status, body) = post(addr, "application/json", false, json.to_string().into_bytes()).await;
    assert_eq!((status, String::from_utf8_lossy(&body).into_owned()), (200, "{}".to_string()));
    let (_, folded) = render_folded(addr, "team-http", "web.cpu").await;
    // Counted samples in nanoseconds beside a profile in nanoseconds: one unit.
    assert_eq!(support::folded_values(&folded), BTreeMap::from([("a".into(), 20_000_000), ("b".into(), 5)]));

    let (status, _) = post(addr, "text/plain", false, b"main 1".to_vec()).await;
    assert_eq!(status, 415);

    // The Python producer's request, as it wrote it: off-CPU time in three 10 s buckets, found
    // by its own type, and an application whose name ends in a type's name.
    let (status, body) = post(addr, "application/x-protobuf", true, data("multi.binpb")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let range = "from=1700000000&until=1700000040";
    let (_, folded) = render_range(addr, "team-http", "frontend.off_cpu", range).await;
    assert_eq!(support::folded_values(&folded), BTreeMap::from([("main;futex_wait_[k]".into(), 1000)]));
    let (_, folded) = render_range(addr, "team-http", "frontend.off_cpu", "from=1700000010&until=1700000020").await;
    assert_eq!(support::folded_values(&folded), BTreeMap::from([("main;futex_wait_[k]".into(), 500)]), "one bucket");
    let (_, folded) = render_range(addr, "team-http", "%22ledger.cpu%22.cpu", range).await;
    assert_eq!(support::folded_values(&folded), BTreeMap::from([("main;work".into(), 31_500_000)]));

    // A bad profile among good ones: partial success, the good ones stored.
    let mut mixed = request("mixed", &[(&["ok"], 1)]);
    let mut bad = mixed.resource_profiles[0].scope_profiles[0].profiles[0].clone();
    bad.samples[0].stack_index = 50;
    mixed.resource_profiles[0].scope_profiles[0].profiles.push(bad);
    let answer = client.export(grpc_request(mixed.clone(), "team-grpc")).await.unwrap().into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_profiles, 1);
    assert!(partial.error_message.contains("stack 50"), "{}", partial.error_message);
    let (_, folded) = render_folded(addr, "team-grpc", "mixed.cpu").await;
    assert_eq!(support::folded_values(&folded), BTreeMap::from([("ok".into(), 10_000_000)]));
    let (status, body) = post(addr, "application/json", false, br#"{"resourceProfiles":[{"scopeProfiles":[{"profiles":[{"sampleType":{"typeStrindex":1,"unitStrindex":2},"samples":[{"stackIndex":9,"values":[1]}]}]}]}],"dictionary":{"stringTable":["","cpu","nanoseconds"]}}"#.to_vec()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""rejectedProfiles":"1""#), "{text}");

    // A broken dictionary: INVALID_ARGUMENT / 400, nothing of the request stored.
    let mut broken = request("broken", &[(&["x"], 1)]);
    broken.dictionary.as_mut().unwrap().location_table[1].lines[0].function_index = 99;
    let status = client.export(grpc_request(broken.clone(), "team-grpc")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let (status, body) = post(addr, "application/x-protobuf", false, broken.encode_to_vec()).await;
    assert_eq!(status, 400);
    // A google.rpc.Status: code (field 1) INVALID_ARGUMENT, then the message (field 2).
    assert_eq!(body[..2], [0x08, 3]);
    assert!(String::from_utf8_lossy(&body).contains("function 99"), "{body:?}");
    let (_, folded) = render_folded(addr, "team-grpc", "broken.cpu").await;
    assert!(support::folded_values(&folded).is_empty(), "{folded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_answers_and_kiln_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &["--ingest-token", "writer", "--query-token", "reader"]);
    let addr = kiln.addr;
    let mut client = grpc_client(addr).await;

    // Counts that overflow: the profile is refused, not wrapped.
    let huge = request("huge", &[(&["a"], i64::MAX), (&["b"], i64::MAX)]);
    let answer = client.export(grpc_request(huge, "t")).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.map(|p| p.rejected_profiles), Some(1));

    // Indices far outside every table, in the dictionary and in samples.
    let mut wild = request("wild", &[(&["a"], 1)]);
    wild.dictionary.as_mut().unwrap().stack_table[1].location_indices = vec![i32::MAX, -1];
    assert_eq!(client.export(grpc_request(wild, "t")).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let mut negative = request("negative", &[(&["a"], 1)]);
    negative.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = -7;
    negative.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].attribute_indices = vec![i32::MIN];
    let answer = client.export(grpc_request(negative, "t")).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.map(|p| p.rejected_profiles), Some(1));

    // A stack of 200,000 frames (one location repeated): kept to the depth limit.
    let mut deep = request("deep", &[(&["f"], 1)]);
    deep.dictionary.as_mut().unwrap().stack_table[1].location_indices = vec![1; 200_000];
    let answer = client.export(grpc_request(deep.clone(), "t")).await.unwrap().into_inner();
    assert_eq!(answer.partial_success, None);
    let (_, folded) = render_folded(addr, "t", "deep.cpu").await;
    let depth = folded.lines().next().map(|l| l.split(';').count()).unwrap_or(0);
    assert_eq!(depth, 1024, "--max-stack-depth's default");

    // Truncated and garbage bodies: 400 / INVALID_ARGUMENT, never a hang or a crash.
    let bytes = deep.encode_to_vec();
    let (status, _) = post(addr, "application/x-protobuf", false, bytes[..bytes.len() / 2].to_vec()).await;
    assert_eq!(status, 400);
    let (status, _) = post(addr, "application/x-protobuf", true, vec![0xff; 4096]).await;
    assert_eq!(status, 400);
    let (status, body) = post(addr, "application/json", false, b"{\"resourceProfiles\": [".to_vec()).await;
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((error["code"].as_i64(), error["message"] == error["error"]), (Some(3), true), "{error}");
    // An empty request is a valid one with nothing in it.
    let empty = grpc_request(ExportProfilesServiceRequest::default(), "t");
    assert_eq!(client.export(empty).await.unwrap().into_inner().partial_success, None);
    let (status, body) = support::http(addr, "GET", "/healthz", b"").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));

    // Over the body limit: RESOURCE_EXHAUSTED (a gRPC status, not a JSON body) and 413.
    let small_dir = tempfile::tempdir().unwrap();
    let small = Kiln::start(small_dir.path(), &["--max-body-bytes", "65536"]);
    // Uncompressed: the same stack gzips to a few hundred bytes.
    let mut client = ProfilesServiceClient::connect(format!("http://{}", small.addr)).await.unwrap();
    let status = client.export(grpc_request(deep.clone(), "t")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let (status, _) = post(small.addr, "application/x-protobuf", false, deep.encode_to_vec()).await;
    assert_eq!(status, 413);
}
