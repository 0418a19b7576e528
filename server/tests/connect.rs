//! Pyroscope's Connect query API against a real Kiln holding the real agent captures: every
//! method in `application/proto` and `application/json`, byte for byte where the spec gives
//! bytes, the flamegraph rebuilt the way Grafana rebuilds it, and hostile requests answered
//! with Connect errors while Kiln stays up.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use kiln_server::api::connect::messages::*;
use prost::Message;
use serde_json::{Value, json};
use support::{Kiln, folded_values};

const AGENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/agents");
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Milliseconds around every capture (late November 2026).
const START_MS: i64 = 1_795_000_000_000;
const END_MS: i64 = 1_796_000_000_000;
/// The folded and Go captures sample at 100 Hz: one sample is 10 ms of CPU.
const NANOS_PER_SAMPLE: u64 = 10_000_000;

/// An HTTP answer: status, headers (lowercase names), body bytes.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A Connect error's code, checking its shape on the way.
    fn error_code(&self) -> String {
        assert_eq!(self.headers.get("content-type").map(String::as_str), Some("application/json"));
        let v = self.json();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["code"].as_str().unwrap().to_string()
    }
}

/// One request on its own connection, bytes in and out.
fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // A server that refuses a body may answer and close before reading it all: the answer
    // is what counts, not whether the whole body went out.
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "no answer: {e}");
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 4 + size..];
        }
        body = out;
    }
    if headers.get("content-encoding").is_some_and(|e| e == "gzip") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).unwrap();
        body = plain;
    }
    Answer { status, headers, body }
}

fn querier(method: &str) -> String {
    format!("/querier.v1.QuerierService/{method}")
}

/// A call in binary proto; the answer must be 200 `application/proto`.
fn call_proto<Resp: Message + Default>(addr: SocketAddr, method: &str, message: &impl Message) -> Resp {
    let answer = request(addr, &querier(method), &[("Content-Type", "application/proto")], &message.encode_to_vec());
    assert_eq!(answer.status, 200, "{method}: {}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.headers.get("content-type").map(String::as_str), Some("application/proto"));
    Resp::decode(&answer.body[..]).unwrap()
}

/// A call in protojson; the answer must be 200 `application/json`.
fn call_json(addr: SocketAddr, path: &str, body: Value) -> Value {
    let answer = request(addr, path, &[("Content-Type", "application/json")], body.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{path}: {}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.headers.get("content-type").map(String::as_str), Some("application/json"));
    answer.json()
}

/// A captured upload: its path and query, headers, body.
type CapturedRequest = (String, Vec<(String, String)>, Vec<u8>);

/// A hostile request: what it is, path, headers, body, and the status and code it must get.
type HostileCase<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

/// Replays one capture directory's requests (`requests.log`: `POST <uri> … -> <file>` and its
/// indented headers).
fn replay(addr: SocketAddr, dir: &str) {
    let base = Path::new(AGENTS).join(dir);
    let log = std::fs::read_to_string(base.join("requests.log")).unwrap();
    let mut requests: Vec<CapturedRequest> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split(" POST ").nth(1) {
            let uri = rest.split_whitespace().next().unwrap().to_string();
            let file = rest.rsplit("-> ").next().unwrap().trim();
            requests.push((uri, Vec::new(), std::fs::read(base.join(file)).unwrap()));
        } else if let (Some(last), Some((name, value))) = (requests.last_mut(), line.trim().split_once(": ")) {
            let indented = line.starts_with("      ") && !line.trim_start().starts_with('?');
            if indented && !matches!(name, "content-length" | "host" | "connection") {
                last.1.push((name.to_string(), value.to_string()));
            }
        }
    }
    for (uri, headers, body) in requests {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let answer = request(addr, &uri, &headers, &body);
        assert_eq!(answer.status, 200, "{dir} {uri}: {}", String::from_utf8_lossy(&answer.body));
    }
}

/// Kiln with the folded (rust), pprof (Go) and Node captures.
fn kiln_with_captures(dir: &Path, flags: &[&str]) -> Kiln {
    let mut all = vec!["--retention", "0"];
    all.extend_from_slice(flags);
    let kiln = Kiln::start(dir, &all);
    for capture in ["rust-v05-folded", "go-multipart", "node-0.6"] {
        replay(kiln.addr, capture);
    }
    kiln
}

fn stacktraces(selector: &str, max_nodes: Option<i64>) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: START_MS,
        end: END_MS,
        max_nodes,
        format: 1,
        stack_trace_selector: None,
        profile_id_selector: Vec::new(),
        r#async: None,
        trace_id_selector: Vec::new(),
        span_selector: Vec::new(),
    }
}

fn flamegraph(addr: SocketAddr, selector: &str, max_nodes: Option<i64>) -> FlameGraph {
    let response: SelectMergeStacktracesResponse =
        call_proto(addr, "SelectMergeStacktraces", &stacktraces(selector, max_nodes));
    response.flamegraph.expect("a flamegraph")
}

/// A node Grafana rebuilds: absolute range, values, name, parent.
#[derive(Debug, Clone)]
struct Node {
    start: i64,
    total: i64,
    self_value: i64,
    name: String,
    parent: Option<usize>,
}

/// Rebuilds the tree as Grafana does: absolute starts from the per-level offsets, then each
/// node given to the first node of the level above whose range contains it. Checks there are
/// no orphans and that every node's total is its self plus its children's totals.
fn rebuild(names: &[String], levels: &[Vec<i64>], width: usize, side: usize) -> Vec<Node> {
    assert_eq!(names[0], "total");
    assert!(!levels.is_empty());
    let mut nodes: Vec<Node> = Vec::new();
    let mut previous_level: Vec<usize> = Vec::new();
    for (depth, values) in levels.iter().enumerate() {
        assert_eq!(values.len() % width, 0, "level {depth} holds whole tuples");
        let mut end = 0i64;
        let mut this_level = Vec::new();
        for tuple in values.chunks(width) {
            let (offset, total, self_value) = (tuple[side * 3], tuple[side * 3 + 1], tuple[side * 3 + 2]);
            let start = end + offset;
            end = start + total;
            let name = names[tuple[width - 1] as usize].clone();
            let parent = if depth == 0 {
                assert_eq!((offset, self_value, tuple[width - 1]), (0, 0, 0), "level 0 is the root [0, total, 0, 0]");
                None
            } else {
                let found = previous_level.iter().copied().find(|&p| {
                    let p: &Node = &nodes[p];
                    p.start <= start && start + total <= p.start + p.total
                });
                // A node of zero width on this side (the other side's, in a diff) may sit at
                // an edge; every node with a value must have a parent.
                assert!(found.is_some() || total == 0, "orphan {name} at {start}+{total} on level {depth}");
                found
            };
            this_level.push(nodes.len());
            nodes.push(Node { start, total, self_value, name, parent });
        }
        if depth == 0 {
            assert_eq!(this_level.len(), 1, "one root");
        }
        previous_level = this_level;
    }
    let mut children_total = vec![0i64; nodes.len()];
    for node in &nodes {
        if let Some(p) = node.parent {
            children_total[p] += node.total;
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node.self_value + children_total[i], node.total, "{} adds up", node.name);
    }
    nodes
}

fn rebuild_graph(graph: &FlameGraph) -> Vec<Node> {
    let levels: Vec<Vec<i64>> = graph.levels.iter().map(|l| l.values.clone()).collect();
    let nodes = rebuild(&graph.names, &levels, 4, 0);
    assert_eq!(nodes[0].total, graph.total);
    assert_eq!(nodes.iter().map(|n| n.self_value).max().unwrap_or(0), graph.max_self);
    nodes
}

/// `stack self` of every node with self time, root excluded, as `/render?format=folded` prints.
fn folded(nodes: &[Node]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for node in nodes.iter().skip(1) {
        if node.self_value == 0 {
            continue;
        }
        let mut path = vec![node.name.clone()];
        let mut at = node.parent;
        while let Some(p) = at.filter(|&p| p != 0) {
            path.push(nodes[p].name.clone());
            at = nodes[p].parent;
        }
        path.reverse();
        *out.entry(path.join(";")).or_default() += node.self_value as u64;
    }
    out
}

fn render_folded(addr: SocketAddr, query: &str) -> BTreeMap<String, u64> {
    let (status, body) = support::http(addr, "GET", &format!("/render?query={query}&format=folded"), b"").unwrap();
    assert_eq!(status, 200, "{body}");
    folded_values(&body)
}

/// The JSON levels as numbers: every int64 must be a string.
fn json_levels(graph: &Value) -> Vec<Vec<i64>> {
    graph["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().expect("int64 as a string").parse().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn profile_types_labels_and_series_in_both_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;

    // "Save & test": the exact bytes of the spec, answered 200.
    let save_and_test = ProfileTypesRequest { start: 1000, end: 4000 };
    assert_eq!(save_and_test.encode_to_vec(), [0x08, 0xe8, 0x07, 0x10, 0xa0, 0x1f]);
    let types: ProfileTypesResponse = call_proto(addr, "ProfileTypes", &save_and_test);
    let ids: Vec<&str> = types.profile_types.iter().map(|t| t.id.as_str()).collect();
    assert!(ids.contains(&CPU), "{ids:?}");
    assert!(ids.contains(&"memory:inuse_space:bytes:space:bytes"), "the Go heap capture: {ids:?}");
    for t in &types.profile_types {
        let parts: Vec<&str> = t.id.split(':').collect();
        assert_eq!(parts, [&t.name, &t.sample_type, &t.sample_unit, &t.period_type, &t.period_unit], "{}", t.id);
    }
    let json = call_json(addr, &querier("ProfileTypes"), json!({"start": "1000", "end": 4000}));
    let json_ids: Vec<&str> =
        json["profileTypes"].as_array().unwrap().iter().map(|t| t["ID"].as_str().unwrap()).collect();
    assert_eq!(json_ids, ids);
    let cpu = json["profileTypes"].as_array().unwrap().iter().find(|t| t["ID"] == CPU).unwrap();
    assert_eq!(
        cpu,
        &json!({"ID": CPU, "name": "process_cpu", "sampleType": "cpu", "sampleUnit": "nanoseconds", "periodType": "cpu", "periodUnit": "nanoseconds"})
    );

    // Label names: the series' own labels and the pseudo-labels.
    let names: NamesResponse =
        call_proto(addr, "LabelNames", &LabelNamesRequest { matchers: vec![], start: START_MS, end: END_MS });
    for name in ["service_name", "__profile_type__", "__name__", "__type__", "__unit__", "env", "region"] {
        assert!(names.names.contains(&name.to_string()), "{name} in {:?}", names.names);
    }
    let json = call_json(addr, &querier("LabelNames"), json!({"matchers": ["{service_name=\"agenttest\"}"]}));
    assert!(json["names"].as_array().unwrap().contains(&json!("env")));
    assert!(!json["names"].as_array().unwrap().contains(&json!("process.runtime.name")), "only agenttest.cpu's labels");

    // Label values, with selectors as Grafana writes them.
    let apps = |matchers: Vec<String>| -> Vec<String> {
        let r: NamesResponse = call_proto(
            addr,
            "LabelValues",
            &LabelValuesRequest { name: "service_name".into(), matchers, start: START_MS, end: END_MS },
        );
        r.names
    };
    assert_eq!(apps(vec![]), ["agenttest", "agenttest.go", "agenttest.node"]);
    // Names, values and series follow the request's range (Grafana sends the dashboard's): a
    // range without uploads lists nothing.
    let empty_range: NamesResponse = call_proto(
        addr,
        "LabelValues",
        &LabelValuesRequest { name: "service_name".into(), matchers: vec![], start: 1000, end: 4000 },
    );
    assert!(empty_range.names.is_empty(), "{:?}", empty_range.names);
    let empty_range: NamesResponse =
        call_proto(addr, "LabelNames", &LabelNamesRequest { matchers: vec![], start: 1000, end: 4000 });
    assert!(empty_range.names.is_empty(), "{:?}", empty_range.names);
    assert_eq!(apps(vec!["{}".into()]), ["agenttest", "agenttest.go", "agenttest.node"]);
    assert_eq!(apps(vec![r#"{service_name=~"agenttest(\\.go)?"}"#.into()]), ["agenttest", "agenttest.go"]);
    assert_eq!(
        apps(vec![r#"{service_name="agenttest.node"}"#.into(), r#"{service_name="agenttest"}"#.into()]),
        ["agenttest", "agenttest.node"]
    );
    // Go and Node send heap profiles; the folded capture does not.
    assert_eq!(
        apps(vec![r#"{__profile_type__="memory:inuse_space:bytes:space:bytes"}"#.into()]),
        ["agenttest.go", "agenttest.node"]
    );
    let json = call_json(
        addr,
        &querier("LabelValues"),
        json!({"name": "__profile_type__", "matchers": ["{service_name=\"agenttest\"}"]}),
    );
    assert_eq!(json, json!({"names": [CPU]}));

    // Series: Pyroscope's UI asks for service_name and __profile_type__.
    let series: SeriesResponse = call_proto(
        addr,
        "Series",
        &SeriesRequest {
            matchers: vec![],
            label_names: vec!["service_name".into(), "__profile_type__".into()],
            start: START_MS,
            end: END_MS,
        },
    );
    let pairs: Vec<Vec<(String, String)>> = series
        .labels_set
        .iter()
        .map(|s| s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect())
        .collect();
    assert!(
        pairs.contains(&vec![("__profile_type__".into(), CPU.into()), ("service_name".into(), "agenttest".into())]),
        "{pairs:?}"
    );
    assert!(pairs.iter().all(|p| p.len() == 2));
    let json = call_json(
        addr,
        &querier("Series"),
        json!({"matchers": ["{service_name=\"agenttest\"}"], "labelNames": ["service_name", "env"]}),
    );
    assert_eq!(
        json,
        json!({"labelsSet": [{"labels": [{"name": "env", "value": "test"}, {"name": "service_name", "value": "agenttest"}]}]})
    );

    // Another tenant sees nothing: the empty answer is `{}`.
    let other = request(
        addr,
        &querier("ProfileTypes"),
        &[("Content-Type", "application/json"), ("X-Scope-OrgID", "team-b")],
        b"{}",
    );
    assert_eq!((other.status, other.json()), (200, json!({})));
    let bad_tenant = request(
        addr,
        &querier("ProfileTypes"),
        &[("Content-Type", "application/json"), ("X-Scope-OrgID", "a/b")],
        b"{}",
    );
    assert_eq!((bad_tenant.status, bad_tenant.error_code().as_str()), (400, "invalid_argument"));
}

#[test]
fn flamegraph_rebuilds_as_grafana_does_and_matches_render() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;

    let graph = flamegraph(addr, r#"{service_name="agenttest"}"#, None);
    let nodes = rebuild_graph(&graph);
    assert!(nodes.len() > 10 && graph.total > 0);
    // The same stacks as Kiln's own `app.cpu` query, in nanoseconds (100 Hz samples).
    let expected: BTreeMap<String, u64> =
        render_folded(addr, "agenttest").into_iter().map(|(k, v)| (k, v * NANOS_PER_SAMPLE)).collect();
    assert_eq!(folded(&nodes), expected);

    // JSON: the same graph, int64s as strings, names camelCase.
    let json = call_json(
        addr,
        &querier("SelectMergeStacktraces"),
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"agenttest\"}", "start": START_MS.to_string(), "end": END_MS, "format": "PROFILE_FORMAT_FLAMEGRAPH"}),
    );
    let g = &json["flamegraph"];
    assert_eq!(g["total"], json!(graph.total.to_string()));
    assert_eq!(g["maxSelf"], json!(graph.max_self.to_string()));
    assert_eq!(json_levels(g), graph.levels.iter().map(|l| l.values.clone()).collect::<Vec<_>>());
    assert_eq!(g["names"].as_array().unwrap().len(), graph.names.len());

    // `{}` reads every application: its total is the sum of theirs.
    let all = flamegraph(addr, "{}", None);
    let per_app: i64 = ["agenttest", "agenttest.go", "agenttest.node"]
        .iter()
        .map(|a| flamegraph(addr, &format!("{{service_name=\"{a}\"}}"), None).total)
        .sum();
    assert_eq!(all.total, per_app);
    rebuild_graph(&all);
    let two = flamegraph(addr, r#"{service_name=~"agenttest(\\.go)?"}"#, None);
    assert!(two.total < all.total && two.total > graph.total);

    // A call site focuses on the stacks through it, computed on the server.
    let first_child = nodes.iter().find(|n| n.parent == Some(0)).unwrap().name.clone();
    let mut focused = stacktraces(r#"{service_name="agenttest"}"#, None);
    focused.stack_trace_selector =
        Some(StackTraceSelector { call_site: vec![CallSiteLocation { name: first_child.clone() }], go_pgo: None });
    let response: SelectMergeStacktracesResponse = call_proto(addr, "SelectMergeStacktraces", &focused);
    let focused_nodes = rebuild_graph(response.flamegraph.as_ref().unwrap());
    assert!(folded(&focused_nodes).keys().all(|stack| stack.split(';').next() == Some(first_child.as_str())));
    let expected_focus: u64 =
        expected.iter().filter(|(k, _)| k.split(';').next() == Some(first_child.as_str())).map(|(_, v)| v).sum();
    assert_eq!(focused_nodes[0].total as u64, expected_focus);

    // A gzipped request, a gzipped answer.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&stacktraces("{}", None).encode_to_vec()).unwrap();
    let answer = request(
        addr,
        &querier("SelectMergeStacktraces"),
        &[("Content-Type", "application/proto"), ("Content-Encoding", "gzip"), ("Accept-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    let unzipped = SelectMergeStacktracesResponse::decode(&answer.body[..]).unwrap();
    assert_eq!(unzipped.flamegraph.unwrap(), all);
}

#[test]
fn max_nodes_merges_the_rest_into_other_per_parent() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let full = flamegraph(addr, "{}", None);
    let cut = flamegraph(addr, "{}", Some(8));
    let nodes = rebuild_graph(&cut);
    let others: Vec<&Node> = nodes.iter().filter(|n| n.name == "other").collect();
    assert!(!others.is_empty(), "dropped children are merged into `other`");
    assert!(nodes.len() - others.len() <= 8, "{} nodes kept", nodes.len() - others.len());
    assert_eq!(cut.total, full.total);
    // At most one `other` per parent, always a leaf.
    let mut parents: Vec<usize> = others.iter().map(|o| o.parent.unwrap()).collect();
    parents.sort();
    parents.dedup();
    assert_eq!(parents.len(), others.len());
    assert!(others.iter().all(|o| o.self_value == o.total));
    // Beyond the allowed maximum, an error.
    let answer = request(
        addr,
        &querier("SelectMergeStacktraces"),
        &[("Content-Type", "application/proto")],
        &stacktraces("{}", Some(1 << 21)).encode_to_vec(),
    );
    assert_eq!((answer.status, answer.error_code().as_str()), (400, "invalid_argument"));
}

fn select_series(
    selector: &str,
    group_by: &[&str],
    aggregation: Option<i32>,
    limit: Option<i64>,
) -> SelectSeriesRequest {
    SelectSeriesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: START_MS,
        end: END_MS,
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        step: 3600.0,
        aggregation,
        stack_trace_selector: None,
        limit,
        exemplar_type: 0,
    }
}

#[test]
fn series_points_add_up_to_the_flamegraph() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let sum = |s: &Series| s.points.iter().map(|p| p.value).sum::<f64>();

    let all: SelectSeriesResponse = call_proto(addr, "SelectSeries", &select_series("{}", &[], None, None));
    assert_eq!(all.series.len(), 1);
    assert!(all.series[0].labels.is_empty());
    assert_eq!(sum(&all.series[0]), flamegraph(addr, "{}", None).total as f64);
    for p in &all.series[0].points {
        assert_eq!((p.timestamp - START_MS) % 3_600_000, 0, "points sit on steps");
    }

    let grouped: SelectSeriesResponse =
        call_proto(addr, "SelectSeries", &select_series("{}", &["service_name"], Some(0), None));
    assert_eq!(grouped.series.len(), 3);
    for s in &grouped.series {
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.labels[0].name, "service_name");
        let app_total = flamegraph(addr, &format!("{{service_name=\"{}\"}}", s.labels[0].value), None).total;
        assert_eq!(sum(s), app_total as f64, "{}", s.labels[0].value);
    }
    // Largest first; `limit` keeps the top ones.
    let totals: Vec<f64> = grouped.series.iter().map(sum).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    let top: SelectSeriesResponse =
        call_proto(addr, "SelectSeries", &select_series("{}", &["service_name"], None, Some(1)));
    assert_eq!(top.series, grouped.series[..1]);

    // AVERAGE is the mean of the uploads in each step. The folded capture is four 10 s
    // uploads from 1795611430 on: one step of an hour holds all four, 10 s steps one each.
    let around = |step: f64, aggregation: i32| SelectSeriesRequest {
        start: 1_795_611_000_000,
        end: 1_795_612_000_000,
        step,
        ..select_series(r#"{service_name="agenttest"}"#, &[], Some(aggregation), None)
    };
    let hour_sum: SelectSeriesResponse = call_proto(addr, "SelectSeries", &around(3600.0, 0));
    let hour_avg: SelectSeriesResponse = call_proto(addr, "SelectSeries", &around(3600.0, 1));
    assert_eq!(hour_sum.series[0].points.len(), 1);
    assert_eq!(hour_avg.series[0].points[0].value, hour_sum.series[0].points[0].value / 4.0);
    let fine_sum: SelectSeriesResponse = call_proto(addr, "SelectSeries", &around(10.0, 0));
    let fine_avg: SelectSeriesResponse = call_proto(addr, "SelectSeries", &around(10.0, 1));
    assert_eq!(fine_sum.series[0].points.len(), 4);
    assert_eq!(fine_avg, fine_sum);
    assert_eq!(sum(&fine_sum.series[0]), sum(&hour_sum.series[0]));

    // JSON: enums by name, timestamps as strings, values as numbers.
    let json = call_json(
        addr,
        &querier("SelectSeries"),
        json!({"profileTypeID": CPU, "labelSelector": "{}", "start": START_MS, "end": END_MS.to_string(), "step": 3600, "groupBy": ["service_name"], "aggregation": "TIME_SERIES_AGGREGATION_TYPE_SUM"}),
    );
    let series = json["series"].as_array().unwrap();
    assert_eq!(series.len(), 3);
    let first: f64 = series[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["timestamp"].is_string());
            p["value"].as_f64().unwrap()
        })
        .sum();
    assert_eq!(first, totals[0]);
}

#[test]
fn diff_answers_aligned_seven_tuples() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let left = stacktraces(r#"{service_name="agenttest"}"#, None);
    let right = stacktraces(r#"{service_name=~"agenttest(\\.go)?"}"#, None);
    let (left_total, right_total) =
        (flamegraph(addr, &left.label_selector, None).total, flamegraph(addr, &right.label_selector, None).total);
    let response: DiffResponse =
        call_proto(addr, "Diff", &DiffRequest { left: Some(left.clone()), right: Some(right.clone()) });
    let graph = response.flamegraph.unwrap();
    assert_eq!((graph.left_ticks, graph.right_ticks), (left_total, right_total));
    assert_eq!(graph.total, left_total + right_total);
    let levels: Vec<Vec<i64>> = graph.levels.iter().map(|l| l.values.clone()).collect();
    assert_eq!(levels[0], [0, left_total, 0, 0, right_total, 0, 0]);
    // Both sides rebuild on the one shape, each adding up on its own axis.
    let left_nodes = rebuild(&graph.names, &levels, 7, 0);
    let right_nodes = rebuild(&graph.names, &levels, 7, 1);
    assert_eq!(left_nodes.len(), right_nodes.len());
    let only_left: BTreeMap<String, u64> = folded(&left_nodes).into_iter().filter(|(_, v)| *v > 0).collect();
    let expected: BTreeMap<String, u64> =
        render_folded(addr, "agenttest").into_iter().map(|(k, v)| (k, v * NANOS_PER_SAMPLE)).collect();
    assert_eq!(only_left, expected);

    let json = call_json(
        addr,
        &querier("Diff"),
        json!({
            "left": {"profileTypeID": CPU, "labelSelector": left.label_selector, "start": START_MS, "end": END_MS},
            "right": {"profile_typeID": CPU, "label_selector": right.label_selector, "start": START_MS, "end": END_MS},
        }),
    );
    assert_eq!(json["flamegraph"]["leftTicks"], json!(left_total.to_string()));
    assert_eq!(json["flamegraph"]["rightTicks"], json!(right_total.to_string()));
    assert_eq!(json_levels(&json["flamegraph"]), levels);

    let one_sided = request(addr, &querier("Diff"), &[("Content-Type", "application/json")], br#"{"left":{}}"#);
    assert_eq!((one_sided.status, one_sided.error_code().as_str()), (400, "invalid_argument"));
}

#[test]
fn merged_pprof_reads_back_through_kilns_own_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let merge_profile = |selector: &str| SelectMergeProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: START_MS,
        end: END_MS,
        max_nodes: None,
        stack_trace_selector: None,
        profile_id_selector: Vec::new(),
        trace_id_selector: Vec::new(),
    };
    let answer = request(
        addr,
        &querier("SelectMergeProfile"),
        &[("Content-Type", "application/proto")],
        &merge_profile("{service_name=\"agenttest.go\"}").encode_to_vec(),
    );
    assert_eq!(answer.status, 200);
    let profile = kiln_server::proto::Profile::decode(&answer.body[..]).unwrap();
    assert_eq!(profile.sample_type.len(), 1);
    let cpu_ns: Vec<&[u8]> = [profile.sample_type[0].r#type, profile.sample_type[0].unit]
        .iter()
        .map(|&i| profile.string_table[i as usize].as_slice())
        .collect();
    assert_eq!(cpu_ns, [b"cpu".as_slice(), b"nanoseconds".as_slice()]);

    // Uploaded as a pprof to another application, it renders the same graph.
    let ingest = request(
        addr,
        "/ingest?name=readback.cpu&format=pprof&from=1795871220&until=1795871230",
        &[("Content-Type", "application/octet-stream")],
        &answer.body,
    );
    assert_eq!(ingest.status, 200, "{}", String::from_utf8_lossy(&ingest.body));
    let original = rebuild_graph(&flamegraph(addr, "{service_name=\"agenttest.go\"}", None));
    let read_back = rebuild_graph(&flamegraph(addr, "{service_name=\"readback\"}", None));
    assert_eq!(folded(&read_back), folded(&original));

    // The PPROF format of SelectMergeStacktraces is the same profile.
    let mut as_pprof = stacktraces("{service_name=\"agenttest.go\"}", None);
    as_pprof.format = 4;
    let response: SelectMergeStacktracesResponse = call_proto(addr, "SelectMergeStacktraces", &as_pprof);
    let embedded = response.pprof.unwrap().profile.unwrap();
    assert_eq!(embedded.sample, profile.sample);

    // In JSON, the profile's int64s are strings too.
    let json = call_json(
        addr,
        &querier("SelectMergeProfile"),
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"agenttest.go\"}", "start": START_MS, "end": END_MS}),
    );
    assert_eq!(json["stringTable"].as_array().unwrap().len(), profile.string_table.len());
    assert!(json["sample"][0]["value"][0].is_string());
}

#[test]
fn stats_analysis_and_span_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let stats: GetProfileStatsResponse = call_proto(addr, "GetProfileStats", &Empty {});
    assert!(stats.data_ingested);
    assert!(
        START_MS <= stats.oldest_profile_time
            && stats.oldest_profile_time <= stats.newest_profile_time
            && stats.newest_profile_time <= END_MS,
        "{stats:?}"
    );
    let json = call_json(addr, &querier("GetProfileStats"), json!({}));
    assert_eq!(
        json,
        json!({"dataIngested": true, "oldestProfileTime": stats.oldest_profile_time.to_string(), "newestProfileTime": stats.newest_profile_time.to_string()})
    );
    let empty = request(
        addr,
        &querier("GetProfileStats"),
        &[("Content-Type", "application/json"), ("X-Scope-OrgID", "nobody")],
        b"{}",
    );
    assert_eq!(empty.json(), json!({}));

    let analysis: AnalyzeQueryResponse = call_proto(
        addr,
        "AnalyzeQuery",
        &AnalyzeQueryRequest {
            start: START_MS,
            end: END_MS,
            query: format!("{CPU}{{service_name=~\"agenttest(\\\\.go)?\"}}"),
        },
    );
    let series: SeriesResponse = call_proto(
        addr,
        "Series",
        &SeriesRequest {
            matchers: vec![format!("{{__profile_type__=\"{CPU}\",service_name=~\"agenttest(\\\\.go)?\"}}")],
            label_names: vec![],
            start: START_MS,
            end: END_MS,
        },
    );
    assert!(series.labels_set.len() >= 2);
    assert_eq!(analysis.query_impact.as_ref().unwrap().total_queried_series, series.labels_set.len() as u64);
    assert_eq!(analysis.query_scopes[0].series_count, series.labels_set.len() as u64);
    let json = call_json(addr, &querier("AnalyzeQuery"), json!({"start": START_MS, "end": END_MS, "query": "{}"}));
    assert!(json["queryImpact"]["totalQueriedSeries"].as_str().unwrap().parse::<u64>().unwrap() >= 3);

    let span: SelectMergeSpanProfileResponse = call_proto(
        addr,
        "SelectMergeSpanProfile",
        &SelectMergeSpanProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            span_selector: vec!["00f067aa0ba902b7".into()],
            start: START_MS,
            end: END_MS,
            max_nodes: None,
            format: 1,
        },
    );
    let graph = span.flamegraph.unwrap();
    assert_eq!((graph.names, graph.total), (vec!["total".to_string()], 0));
    let json = call_json(
        addr,
        &querier("SelectMergeSpanProfile"),
        json!({"profileTypeID": CPU, "labelSelector": "{}", "spanSelector": ["x"], "start": START_MS, "end": END_MS}),
    );
    assert_eq!(json, json!({"flamegraph": {"names": ["total"], "levels": [{"values": ["0", "0", "0", "0"]}]}}));
}

#[test]
fn settings_are_kept_per_tenant_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = |m: &str| format!("/settings.v1.SettingsService/{m}");
    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;
    assert_eq!(call_json(addr, &path("Get"), json!({})), json!({}));
    let set =
        call_json(addr, &path("Set"), json!({"setting": {"name": "pluginSettings", "value": "{\"collapsed\":true}"}}));
    assert_eq!(set["setting"]["name"], "pluginSettings");
    let stamped: i64 = set["setting"]["modifiedAt"].as_str().unwrap().parse().unwrap();
    assert!(stamped > 1_700_000_000_000);
    let proto_set = SettingMessage { setting: Some(Setting { name: "b".into(), value: "2".into(), modified_at: 5 }) };
    let answer = request(addr, &path("Set"), &[("Content-Type", "application/proto")], &proto_set.encode_to_vec());
    assert_eq!(SettingMessage::decode(&answer.body[..]).unwrap(), proto_set);
    let other =
        request(addr, &path("Get"), &[("Content-Type", "application/json"), ("X-Scope-OrgID", "team-b")], b"{}");
    assert_eq!(other.json(), json!({}), "tenants do not share settings");
    drop(kiln);

    let kiln = Kiln::start(dir.path(), &[]);
    let addr = kiln.addr;
    let answer = request(addr, &path("Get"), &[("Content-Type", "application/proto")], b"");
    let got = GetSettingsResponse::decode(&answer.body[..]).unwrap();
    assert_eq!(got.settings.len(), 2, "kept across a restart");
    assert_eq!(got.settings[0], proto_set.setting.clone().unwrap());
    assert_eq!(got.settings[1].value, "{\"collapsed\":true}");
    assert_eq!(call_json(addr, &path("Delete"), json!({"name": "b"})), json!({}));
    let left = call_json(addr, &path("Get"), json!({}));
    assert_eq!(left["settings"].as_array().unwrap().len(), 1);
    let nameless =
        request(addr, &path("Set"), &[("Content-Type", "application/json")], br#"{"setting":{"value":"x"}}"#);
    assert_eq!((nameless.status, nameless.error_code().as_str()), (400, "invalid_argument"));
}

#[test]
fn hostile_requests_get_connect_errors_and_kiln_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = kiln_with_captures(dir.path(), &[]);
    let addr = kiln.addr;
    let proto = [("Content-Type", "application/proto")];
    let json_type = [("Content-Type", "application/json")];
    let valid = stacktraces("{}", None).encode_to_vec();
    let mut gzip_bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip_bomb.write_all(&vec![0u8; 4 << 20]).unwrap();
    let gzip_bomb = gzip_bomb.finish().unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_matchers: Vec<String> = (0..1000).map(|i| format!("{{a=\"{i}\"}}")).collect();
    let cases: Vec<HostileCase> = vec![
        ("truncated proto", querier("SelectMergeStacktraces"), proto.to_vec(), valid[..valid.len() / 2].to_vec(), 400, "invalid_argument"),
        ("overflowing varint", querier("ProfileTypes"), proto.to_vec(), vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 400, "invalid_argument"),
        ("huge length prefix", querier("LabelNames"), proto.to_vec(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'], 400, "invalid_argument"),
        ("huge packed count", querier("SelectMergeStacktraces"), proto.to_vec(), vec![0x3a, 0xff, 0xff, 0xff, 0x7f, 0x0a, 0x00], 400, "invalid_argument"),
        ("too many matchers", querier("LabelNames"), proto.to_vec(), LabelNamesRequest { matchers: many_matchers, start: 0, end: 0 }.encode_to_vec(), 400, "invalid_argument"),
        ("deep JSON", querier("LabelNames"), json_type.to_vec(), deep.clone().into_bytes(), 400, "invalid_argument"),
        ("deep JSON in a field", querier("LabelNames"), json_type.to_vec(), format!("{{\"matchers\":{deep}}}").into_bytes(), 400, "invalid_argument"),
        ("not JSON", querier("LabelNames"), json_type.to_vec(), b"{\"matchers\":".to_vec(), 400, "invalid_argument"),
        ("wrong JSON type", querier("LabelNames"), json_type.to_vec(), br#"{"matchers":"x"}"#.to_vec(), 400, "invalid_argument"),
        ("int64 overflow in JSON", querier("ProfileTypes"), json_type.to_vec(), br#"{"start":"99999999999999999999"}"#.to_vec(), 400, "invalid_argument"),
        ("garbage gzip", querier("ProfileTypes"), vec![("Content-Type", "application/proto"), ("Content-Encoding", "gzip")], b"\x1f\x8b\x08\x00garbage".to_vec(), 400, "invalid_argument"),
        ("gzip bomb", querier("ProfileTypes"), vec![("Content-Type", "application/proto"), ("Content-Encoding", "gzip")], gzip_bomb, 429, "resource_exhausted"),
        ("unknown encoding", querier("ProfileTypes"), vec![("Content-Type", "application/proto"), ("Content-Encoding", "br")], vec![], 501, "unimplemented"),
        ("unknown content type", querier("ProfileTypes"), vec![("Content-Type", "text/plain")], vec![], 415, "unimplemented"),
        ("bad regex", querier("SelectMergeStacktraces"), proto.to_vec(), stacktraces("{service_name=~\"(\"}", None).encode_to_vec(), 400, "invalid_argument"),
        ("bad selector", querier("SelectMergeStacktraces"), proto.to_vec(), stacktraces("service_name=\"x\"", None).encode_to_vec(), 400, "invalid_argument"),
        ("unknown profile type", querier("SelectMergeStacktraces"), json_type.to_vec(), br#"{"profileTypeID":"nope","labelSelector":"{}","start":1,"end":2}"#.to_vec(), 400, "invalid_argument"),
        ("unknown enum", querier("SelectMergeStacktraces"), json_type.to_vec(), br#"{"format":"PROFILE_FORMAT_SVG"}"#.to_vec(), 400, "invalid_argument"),
        ("format TREE", querier("SelectMergeStacktraces"), json_type.to_vec(), format!("{{\"profileTypeID\":\"{CPU}\",\"labelSelector\":\"{{}}\",\"start\":1,\"end\":2,\"format\":\"PROFILE_FORMAT_TREE\"}}").into_bytes(), 501, "unimplemented"),
        ("SelectHeatmap", querier("SelectHeatmap"), json_type.to_vec(), b"{}".to_vec(), 501, "unimplemented"),
        ("adhocprofiles", "/adhocprofiles.v1.AdHocProfileService/Upload".into(), json_type.to_vec(), b"{}".to_vec(), 501, "unimplemented"),
        ("vcs", "/vcs.v1.VCSService/GetFile".into(), json_type.to_vec(), b"{}".to_vec(), 501, "unimplemented"),
        ("unknown method", querier("Nope"), json_type.to_vec(), b"{}".to_vec(), 404, "not_found"),
        (
            "client deadline passed",
            querier("SelectMergeStacktraces"),
            vec![("Content-Type", "application/proto"), ("Connect-Timeout-Ms", "0")],
            valid.clone(),
            504,
            "deadline_exceeded",
        ),
        (
            "bad client deadline",
            querier("SelectMergeStacktraces"),
            vec![("Content-Type", "application/proto"), ("Connect-Timeout-Ms", "soon")],
            valid.clone(),
            400,
            "invalid_argument",
        ),
        ("series without step", querier("SelectSeries"), proto.to_vec(), SelectSeriesRequest { step: 0.0, ..select_series("{}", &[], None, None) }.encode_to_vec(), 400, "invalid_argument"),
        ("series with too many points", querier("SelectSeries"), proto.to_vec(), SelectSeriesRequest { step: 1.0, ..select_series("{}", &[], None, None) }.encode_to_vec(), 400, "invalid_argument"),
    ];
    for (what, path, headers, body, status, code) in cases {
        let answer = request(addr, &path, &headers, &body);
        assert_eq!(answer.status, status, "{what}: {}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.error_code(), code, "{what}");
    }
    // A body over the message limit is refused.
    let big = vec![b' '; (2 << 20) + 1];
    let answer = request(addr, &querier("LabelNames"), &json_type, &big);
    assert_eq!((answer.status, answer.error_code().as_str()), (429, "resource_exhausted"));
    let (status, _) = support::http(addr, "GET", "/healthz", b"").unwrap();
    assert_eq!(status, 200);
    flamegraph(addr, "{}", None);
}

#[test]
fn query_token_applies_as_on_render() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::start(dir.path(), &["--query-token", "s3cret"]);
    let addr = kiln.addr;
    let path = querier("LabelNames");
    let open = request(addr, &path, &[("Content-Type", "application/json")], b"{}");
    assert_eq!(open.status, 401, "Pyroscope's UI reads 401 as multi-tenant");
    let wrong = request(addr, &path, &[("Content-Type", "application/json"), ("Authorization", "Bearer nope")], b"{}");
    assert_eq!(wrong.status, 401);
    // Grafana sends Basic auth with the token as the password ("grafana:s3cret").
    let basic = request(
        addr,
        &path,
        &[("Content-Type", "application/json"), ("Authorization", "Basic Z3JhZmFuYTpzM2NyZXQ=")],
        b"{}",
    );
    assert_eq!((basic.status, basic.json()), (200, json!({})));
    let settings = request(addr, "/settings.v1.SettingsService/Get", &[("Content-Type", "application/json")], b"{}");
    assert_eq!(settings.status, 401);
}

/// Kills the S3 server when the test ends, however it ends.
#[test]
fn servers_on_one_bucket_share_settings() {
    let Some(s3s) = support::on_path("s3s-fs") else {
        println!("skipped: `s3s-fs` is not on PATH (see tests/s3.rs)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("kiln")).unwrap();
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let _s3 = support::S3Server::start(&s3s, addr, root.path());
    let endpoint = format!("http://{addr}");
    let flags = [
        "--storage",
        "s3://kiln/shared",
        "--s3-endpoint",
        &endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-access-key",
        "kilnkey",
        "--s3-secret-key",
        "kilnsecret",
    ];
    let dirs = tempfile::tempdir().unwrap();
    let a = Kiln::start(&dirs.path().join("a"), &flags);
    let b = Kiln::start(&dirs.path().join("b"), &flags);
    let path = |m: &str| format!("/settings.v1.SettingsService/{m}");
    call_json(a.addr, &path("Set"), json!({"setting": {"name": "drilldown", "value": "v1", "modifiedAt": "7"}}));
    assert_eq!(
        call_json(b.addr, &path("Get"), json!({})),
        json!({"settings": [{"name": "drilldown", "value": "v1", "modifiedAt": "7"}]}),
        "a server sharing the bucket sees the setting"
    );
    call_json(b.addr, &path("Delete"), json!({"name": "drilldown"}));
    assert_eq!(call_json(a.addr, &path("Get"), json!({})), json!({}));
}
