//! The formats read by the model's parsers (V8 `.cpuprofile`, Chrome traces, callgrind) against
//! the real binary: each real file uploaded to `/ingest` with no `format` is recognised by its
//! content, stored, and read back by `/render` with what the model reads from the file.

mod support;

use std::path::PathBuf;

use kiln_model::formats;
use kiln_model::profile_set::ProfileSet;
use support::{Kiln, folded_values, http};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/model/tests/data/formats").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the model reads from the file, as the table's parser for the format it is recognised as.
fn model(bytes: &[u8]) -> ProfileSet {
    let format = formats::sniff(bytes).expect("recognised");
    let formats::Decoder::Parser(parser) = format.decoder else { panic!("{} has no parser", format.name) };
    parser.parse(bytes, 1024, &mut kiln_model::budget::DecodeBudget::unlimited()).unwrap()
}

fn folded(tree: &kiln_model::CallTree) -> String {
    kiln_model::folded::print(&tree.to_flat())
}

#[test]
fn every_parsed_format_is_stored_without_format_and_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;

    // A Node .cpuprofile: one series in nanoseconds.
    let cpuprofile = data("node-fib.cpuprofile");
    assert_eq!(http(addr, "POST", "/ingest?name=node.cpu", &cpuprofile).unwrap(), (200, String::new()));
    let (status, render) = http(addr, "GET", "/render?query=node.cpu&format=folded&from=now-1h", b"").unwrap();
    assert_eq!(status, 200, "{render}");
    let set = model(&cpuprofile);
    let (tree, units) = set.merged().unwrap();
    assert_eq!(units, "nanoseconds");
    assert_eq!(folded_values(&render), folded_values(&folded(&tree)));
    let (_, json) = http(addr, "GET", "/render?query=node.cpu&from=now-1h", b"").unwrap();
    assert!(json.contains(r#""units":"nanoseconds""#), "{json}");

    // A Chromium trace: one series per thread (`thread_name`), all of them merged by a query.
    let trace = data("chromium.trace.json");
    assert_eq!(http(addr, "POST", "/ingest?name=chrome.cpu", &trace).unwrap(), (200, String::new()));
    let set = model(&trace);
    let (merged, _) = set.merged().unwrap();
    let (_, render) = http(addr, "GET", "/render?query=chrome.cpu&format=folded&from=now-1h", b"").unwrap();
    assert_eq!(folded_values(&render), folded_values(&folded(&merged)));
    let (_, threads) = http(addr, "GET", "/label-values?label=thread_name&query=chrome.cpu", b"").unwrap();
    let threads: Vec<String> = serde_json::from_str(&threads).unwrap();
    let mut expected: Vec<String> = set.parts.iter().map(|p| p.name.clone()).collect();
    expected.sort();
    assert_eq!(threads, expected);

    // The older forms, told apart by content too: Chrome's performance-panel export (a
    // `CpuProfile` event) and the head-tree `.cpuprofile`.
    for (file, name) in
        [("chrome-timeline-cpuprofile.json", "oldchrome.cpu"), ("v8-profiler-head.cpuprofile", "oldv8.cpu")]
    {
        let bytes = data(file);
        assert_eq!(
            http(addr, "POST", &format!("/ingest?name={name}"), &bytes).unwrap(),
            (200, String::new()),
            "{file}"
        );
        let (merged, _) = model(&bytes).merged().unwrap();
        let (_, render) = http(addr, "GET", &format!("/render?query={name}&format=folded&from=now-1h"), b"").unwrap();
        assert_eq!(folded_values(&render), folded_values(&folded(&merged)), "{file}");
    }

    // callgrind: one series per event type, typed and measured by the event (queried by its
    // profile type ID, as any type beyond Pyroscope's own).
    let callgrind = data("cg.callgrind");
    assert_eq!(http(addr, "POST", "/ingest?name=cg", &callgrind).unwrap(), (200, String::new()));
    for part in &model(&callgrind).parts {
        let event = &part.name;
        let query = format!(
            "/render?query={event}:{event}:count:{event}:count%7Bservice_name%3D%22cg%22%7D&format=folded&from=now-1h"
        );
        let (status, render) = http(addr, "GET", &query, b"").unwrap();
        assert_eq!(status, 200, "{render}");
        assert_eq!(folded_values(&render), folded_values(&folded(&part.tree)), "{}", part.name);
    }
    let (_, types) = http(addr, "GET", "/api/apps", b"").unwrap();
    assert!(types.contains("DLmw"), "{types}");

    // `/api/collapse` recognises each the same way and stores nothing more.
    for (file, total) in [(&cpuprofile, tree.total()), (&trace, merged.total())] {
        let (status, _) = http(addr, "POST", "/api/collapse", file).unwrap();
        assert_eq!(status, 200, "total {total}");
    }

    // A broken file of a recognised format is a 400 naming the format and the fault.
    let broken = String::from_utf8(cpuprofile.clone())
        .unwrap()
        .replacen("\"samples\":[", "\"samples\":[999999999,", 1)
        .replacen("\"timeDeltas\":[", "\"timeDeltas\":[0,", 1);
    let (status, error) = http(addr, "POST", "/ingest?name=bad.cpu", broken.as_bytes()).unwrap();
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("cpuprofile: sample 0 is of node 999999999, which does not exist"), "{error}");
    let (status, error) = http(addr, "POST", "/api/collapse", b"events: Ir\nfn=main\n1 x\n").unwrap();
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("callgrind: line 3: cost `x`"), "{error}");
}

#[test]
fn an_opened_file_may_be_larger_than_an_upload() {
    // The Open page posts a big file raw: `/api/collapse` has its own body limit, larger than
    // an upload's, and answers 413 naming it beyond; `/ingest` keeps `--max-body-bytes`.
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &["--max-body-bytes", "1048576", "--max-collapse-body-bytes", "3145728"]);
    let addr = kiln.addr;
    let trace = data("chromium.trace.json");
    // The real trace, padded with spaces past the upload limit (JSON ignores them).
    let mut padded = trace.clone();
    padded.resize(2 << 20, b' ');
    let (status, message) = http(addr, "POST", "/ingest?name=big.trace", &padded).unwrap();
    assert_eq!(status, 413, "{message}");
    assert!(message.contains("--max-body-bytes"), "{message}");
    let (status, body) = http(addr, "POST", "/api/collapse?format=auto", &padded).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(addr, "POST", "/api/collapse/time-order?format=auto", &padded).unwrap();
    assert_eq!(status, 200, "{body}");
    padded.resize(4 << 20, b' ');
    let (status, message) = http(addr, "POST", "/api/collapse?format=auto", &padded).unwrap();
    assert_eq!(status, 413, "{message}");
    assert!(message.contains("--max-collapse-body-bytes"), "{message}");
    // Raising the upload limit above it raises the Open page's too.
    drop(kiln);
    let kiln = Kiln::start(dir.path(), &["--max-body-bytes", "8388608", "--max-collapse-body-bytes", "1048576"]);
    let (status, body) = http(kiln.addr, "POST", "/api/collapse?format=auto", &padded).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_ghc_text_profile_is_recognised_by_its_content() {
    // Written by GHC 9.0.2 (`ghc-fib.hs` built with `-prof -fprof-auto`, run with `+RTS -p`):
    // recognised without a `format` by inferno's collapsers, with each cost centre's
    // individual share of the time, as inferno reads GHC's text profiles.
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &[]);
    let profile = data("ghc-fib.prof");
    assert_eq!(http(kiln.addr, "POST", "/ingest?name=ghc.cpu", &profile).unwrap(), (200, String::new()));
    let (status, render) = http(kiln.addr, "GET", "/render?query=ghc.cpu&format=folded&from=now-1h", b"").unwrap();
    assert_eq!(status, 200, "{render}");
    // The individual %time of each cost centre in tenths of a percent (fib 21.9, sortedChecksum
    // 8.8, sumSquares 22.3 and its lambda 47.1 in the file), named as the JSON profile's
    // frames are (`ghc_json_profile` in the model's tests).
    assert_eq!(
        folded_values(&render),
        folded_values(
            "MAIN.MAIN;Main.CAF;Main.main;Main.fib 219\n\
             MAIN.MAIN;Main.CAF;Main.main;Main.sortedChecksum 88\n\
             MAIN.MAIN;Main.CAF;Main.main;Main.sumSquares 223\n\
             MAIN.MAIN;Main.CAF;Main.main;Main.sumSquares;Main.sumSquares.\\ 471\n"
        )
    );
    let (status, _) = http(kiln.addr, "POST", "/api/collapse", &profile).unwrap();
    assert_eq!(status, 200);
}
