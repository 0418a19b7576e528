//! Hostile input: times. Every time parameter of every endpoint takes offsets past any `i64`
//! and absurd stamps; ingest refuses stamps outside its window; data stored with absurd stamps
//! (by an older Kiln, or under a wide window) never breaks a query.

use super::*;

/// `now` minus nearly `i64::MAX` seconds: fits an `i64` after parsing, but any range arithmetic
/// on it wraps.
const FAR_PAST: &str = "now-9223372036854775307";
const TIME_ATTACKS: &[&str] = &[
    FAR_PAST,
    "now%2B9223372036854775307",
    "now-9999999999999999999999999",
    "now-300000000000000000y",
    "-9223372036854775808",
    "9223372036854775807",
    "0",
];

#[test]
fn every_query_time_parameter_survives_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    for attack in TIME_ATTACKS {
        for path in [
            format!("/render?query={BASELINE_APP}&from={attack}&until=now"),
            format!("/render?query={BASELINE_APP}&from=now-1h&until={attack}"),
            format!("/render?query={BASELINE_APP}&from={attack}&until={attack}&format=folded"),
            format!("/render?query={BASELINE_APP}&from={attack}&format=pprof"),
            format!("/pyroscope/render?query={BASELINE_APP}&from={attack}&until=now&format=svg"),
            format!(
                "/render-diff?leftQuery={BASELINE_APP}&leftFrom={attack}&rightQuery={BASELINE_APP}&rightUntil={attack}"
            ),
            format!("/api/page-data/summary?query={BASELINE_APP}&from={attack}&until=now"),
            format!("/api/page-data/diff?leftQuery={BASELINE_APP}&leftFrom={attack}&rightQuery={BASELINE_APP}"),
            format!("/explore?query={BASELINE_APP}&from={attack}&until=now"),
            format!("/diff?leftQuery={BASELINE_APP}&leftFrom={attack}&rightQuery={BASELINE_APP}&rightFrom={attack}"),
            format!("/labels?query={BASELINE_APP}&from={attack}"),
            format!("/label-values?label=__name__&query={BASELINE_APP}&from={attack}&until={attack}"),
        ] {
            let (status, body) = http(kiln.addr, "GET", &path, b"").unwrap_or_else(|e| panic!("{path}: {e}"));
            // A clear answer either way: the data (clamped range) or a 4xx naming the problem.
            assert!(status == 200 || (400..500).contains(&status), "{path}: {status} {body}");
            if status >= 400 && !path.starts_with("/explore") && !path.starts_with("/diff") {
                assert!(body.contains("\"error\""), "{path}: {body}");
            }
        }
        assert_alive(kiln.addr);
    }
}

#[test]
fn the_timeline_of_a_century_wide_range_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let (status, body) =
        http(kiln.addr, "GET", &format!("/render?query={BASELINE_APP}&from={FAR_PAST}&until=now"), b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let points = json["timeline"]["samples"].as_array().expect("a timeline").len();
    assert!((1..=1001).contains(&points), "{points} timeline points");
    assert_alive(kiln.addr);
}

#[test]
fn ingest_refuses_times_outside_its_window_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    for (query, parameter) in [
        (format!("from={FAR_PAST}&until=now"), "from"),
        ("from=now-1h&until=now%2B2d".to_string(), "until"),
        ("from=946684799&until=946684800".to_string(), "from"),
        ("until=100".to_string(), "until"),
        ("from=now-9999999999999999999999999".to_string(), "from"),
    ] {
        let path = format!("/ingest?name=abs.cpu&{query}");
        let answer = http(kiln.addr, "POST", &path, b"a;b 1\n");
        let body = answer.as_ref().map(|a| a.1.clone()).unwrap_or_default();
        assert_refused(answer, 400, &path);
        assert!(body.contains(&format!("`{parameter}`")), "{path}: the error names `{parameter}`: {body}");
    }
    // Nothing of the refused uploads was stored.
    let (status, body) = http(kiln.addr, "GET", "/render?query=abs.cpu&format=folded", b"").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.trim().is_empty(), "refused uploads left data: {body}");
    assert_alive(kiln.addr);
}

#[test]
fn a_pprof_stamped_in_year_one_million_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = start_with_baseline(dir.path(), &[]);
    let answer = http(kiln.addr, "POST", "/ingest?name=abs&format=pprof", &pprof_stamped(i64::MAX - 1));
    let body = answer.as_ref().map(|a| a.1.clone()).unwrap_or_default();
    assert_refused(answer, 400, "pprof with time_nanos near i64::MAX");
    assert!(body.contains("time_nanos"), "{body}");
    assert_alive(kiln.addr);
}

#[test]
fn data_stored_with_absurd_times_never_breaks_a_query() {
    let dir = tempfile::tempdir().unwrap();
    // A window wide open, as an older Kiln stored anything: the poisoned upload goes in.
    let wide = ["--ingest-oldest=-9223372036854775808"];
    let kiln = start_with_baseline(dir.path(), &wide);
    let path = format!("/ingest?name=abs.cpu&from={FAR_PAST}&until=now");
    let (status, body) = http(kiln.addr, "POST", &path, b"poison;frame 5\n").unwrap();
    assert_eq!(status, 200, "the wide window stores it: {body}");
    assert_queries_answer(&kiln);
    // After a restart the data is read back from the log: the same answers.
    drop(kiln);
    assert_queries_answer(&Kiln::start(dir.path(), &wide));
}

fn assert_queries_answer(kiln: &Kiln) {
    for path in [
        "/render?query=abs.cpu",
        "/render?query=abs.cpu&from=now-1h",
        "/render?query=abs.cpu&format=pprof",
        "/api/page-data/summary?query=abs.cpu",
        "/explore?query=abs.cpu",
        "/",
    ] {
        let (status, body) = http(kiln.addr, "GET", path, b"").unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, folded) = http(kiln.addr, "GET", "/render?query=abs.cpu&format=folded", b"").unwrap();
    assert_eq!(folded_values(&folded), folded_values("poison;frame 5\n"));
    assert_alive(kiln.addr);
}

/// A minimal pprof: one sample of one location, stamped `time_nanos`.
fn pprof_stamped(time_nanos: i64) -> Vec<u8> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct ValueType {
        #[prost(int64, tag = "1")]
        ty: i64,
        #[prost(int64, tag = "2")]
        unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        value: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Line {
        #[prost(uint64, tag = "1")]
        function_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Location {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(message, repeated, tag = "4")]
        line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Function {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(int64, tag = "2")]
        name: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Profile {
        #[prost(message, repeated, tag = "1")]
        sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        time_nanos: i64,
        #[prost(int64, tag = "10")]
        duration_nanos: i64,
    }
    Profile {
        sample_type: vec![ValueType { ty: 1, unit: 2 }],
        sample: vec![Sample { location_id: vec![1], value: vec![3] }],
        location: vec![Location { id: 1, line: vec![Line { function_id: 1 }] }],
        function: vec![Function { id: 1, name: 3 }],
        string_table: vec![String::new(), "cpu".into(), "nanoseconds".into(), "main".into()],
        time_nanos,
        duration_nanos: 10_000_000_000,
    }
    .encode_to_vec()
}
