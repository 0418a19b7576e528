//! Java Flight Recorder uploads against the real binary: a real OpenJDK recording sent as the
//! Java Pyroscope agent sends it (`format=jfr`, the body raw or gzipped, or multipart with its
//! `jfr` and `labels` parts) and with no format at all, stored as one series per profile and
//! read back by `/render` as the model reads the file; hostile recordings get a 400 naming what
//! is wrong, and Kiln stays up with its data unchanged.

mod support;

use std::io::Write;
use std::path::PathBuf;

use kiln_model::budget::DecodeBudget;
use kiln_model::profile_set::ProfileSet;
use kiln_server::ingest::jfr::{Context, LabelsSnapshot};
use prost::Message;
use support::{Kiln, folded_values, http, http_with};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/formats").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `/render`'s folded stacks for `query` (`app.type{labels}`, URL-encoded here).
fn render(addr: std::net::SocketAddr, query: &str) -> String {
    let encoded = kiln_model::query_string::encode(query);
    let (status, body) = http(addr, "GET", &format!("/render?query={encoded}&format=folded&from=now-1h"), b"").unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn folded(set: &ProfileSet, profile_type: &str) -> String {
    let part = set.parts.iter().find(|p| p.name == profile_type).unwrap_or_else(|| panic!("{profile_type}"));
    kiln_model::folded::print(&part.tree.to_flat())
}

/// A multipart body as pyroscope-java builds it: the gzipped recording, then the labels.
fn agent_multipart(boundary: &str, recording: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in [("jfr", "profile.jfr", recording), ("labels", "labels.pb", labels)] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn java_agent_uploads_are_stored_per_profile_and_hostile_recordings_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;
    let recording = data("jfr-demo.jfr");
    let set = kiln_model::jfr::parse_budgeted(&recording, 1024, &mut DecodeBudget::unlimited()).unwrap();
    assert!(set.parts.len() >= 10, "every profile of the recording");

    // The agent's query, the recording as the body: one series per profile, typed by it.
    let agent_query =
        "format=jfr&from=now-10s&until=now&sampleRate=100&spyName=javaspy&units=samples&aggregationType=sum";
    let name = kiln_model::query_string::encode("javaapp{env=test}");
    let (status, body) = http(addr, "POST", &format!("/ingest?name={name}&{agent_query}"), &recording).unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    for part in &set.parts {
        let stored = render(addr, &format!("javaapp.{}{{env=\"test\"}}", part.name));
        assert_eq!(folded_values(&stored), folded_values(&folded(&set, &part.name)), "{}", part.name);
    }

    // Gzipped and with no format: recognised by its magic bytes.
    let (status, body) = http(addr, "POST", "/ingest?name=gzapp", &gzip(&recording)).unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(folded_values(&render(addr, "gzapp.lock_duration")), folded_values(&folded(&set, "lock_duration")));

    // Multipart with the labels part (OpenJDK writes no async-profiler contexts, so the series
    // keep the request's labels).
    let snapshot = LabelsSnapshot {
        contexts: [(1, Context { labels: [(1, 2)].into() })].into(),
        strings: [(1, "endpoint".to_string()), (2, "/checkout".to_string())].into(),
    };
    let boundary = "------------------------jfr4kiln";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let multipart = agent_multipart(boundary, &gzip(&recording), &gzip(&snapshot.encode_to_vec()));
    let path = format!("/ingest?name=agentapp&{agent_query}");
    let (status, body) = http_with(addr, "POST", &path, &[("Content-Type", &content_type)], &multipart).unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(folded_values(&render(addr, "agentapp.cpu")), folded_values(&folded(&set, "cpu")));
    let bad_labels = agent_multipart(boundary, &recording, b"\xff\xff\xff not protobuf");
    let (status, body) = http_with(addr, "POST", &path, &[("Content-Type", &content_type)], &bad_labels).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the `labels` part is not a LabelsSnapshot protobuf"), "{body}");

    // Hostile recordings (written by the model's tests) and the real one cut short: 400 with
    // what is wrong, named or detected, and nothing stored.
    let (_, apps_before) = http(addr, "GET", "/api/apps", b"").unwrap();
    let before = render(addr, "javaapp.cpu{env=\"test\"}");
    let hostile_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/formats/hostile-jfr");
    let mut hostile: Vec<(String, Vec<u8>)> = std::fs::read_dir(&hostile_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(hostile.len() >= 7);
    hostile.push(("truncated chunk".into(), recording[..recording.len() / 2].to_vec()));
    for (what, bytes) in &hostile {
        for path in ["/ingest?name=badapp&format=jfr", "/ingest?name=badapp"] {
            let (status, body) = http(addr, "POST", path, bytes).unwrap();
            assert_eq!(status, 400, "{what} {path}: {body}");
            assert!(body.contains("jfr: chunk 1, byte "), "{what} {path}: {body}");
        }
    }
    let (status, body) = http(addr, "POST", "/ingest?name=badapp", &recording[..recording.len() / 2]).unwrap();
    assert!(status == 400 && body.contains("(truncated?)"), "{body}");
    let (_, apps_after) = http(addr, "GET", "/api/apps", b"").unwrap();
    assert_eq!(apps_after, apps_before);
    assert!(!apps_after.contains("badapp"));
    assert_eq!(render(addr, "javaapp.cpu{env=\"test\"}"), before);
}

#[test]
fn a_recording_costs_what_the_decode_budget_allows_and_kiln_upload_detects_it() {
    // A budget of one frame per KiB and no floor: the real recording walks more, so it is
    // refused with 422 saying which allowance ran out, and nothing is stored.
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &["--max-frames-per-kib", "1", "--decode-floor-kib", "0"]);
    let recording = data("jfr-demo.jfr");
    let (status, body) = http(kiln.addr, "POST", "/ingest?name=tight&format=jfr", &recording).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("stack frames"), "{body}");
    let (_, apps) = http(kiln.addr, "GET", "/api/apps", b"").unwrap();
    assert!(!apps.contains("tight"), "{apps}");
    drop(kiln);

    // `kiln upload` of a `.jfr` next to a folded file: each read by its content.
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let jfr_file = dir.path().join("app.jfr");
    std::fs::write(&jfr_file, &recording).unwrap();
    let folded_file = dir.path().join("more.folded");
    std::fs::write(&folded_file, "JfrDemo.main;extra 5\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["upload", "--server", &format!("http://{}", kiln.addr), "--app", "uploaded"])
        .args([&jfr_file, &folded_file])
        .env_remove("KILN_INGEST_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let set = kiln_model::jfr::parse_budgeted(&recording, 1024, &mut DecodeBudget::unlimited()).unwrap();
    let mut expected = folded_values(&folded(&set, "cpu"));
    *expected.entry("JfrDemo.main;extra".into()).or_default() += 5;
    assert_eq!(folded_values(&render(kiln.addr, "uploaded.cpu")), expected);
    assert_eq!(
        folded_values(&render(kiln.addr, "uploaded.block_duration")),
        folded_values(&folded(&set, "block_duration"))
    );
}
