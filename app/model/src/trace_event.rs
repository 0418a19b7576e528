//! Chrome's Trace Event format (<https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU>):
//! what Chrome's performance panel, `chrome://tracing`, Perfetto's JSON export and many tracers
//! write. A JSON array of events, or an object with them in `traceEvents`.
//!
//! Read per thread (`pid`, `tid`), in nanoseconds (`ts` and `dur` are microseconds):
//! - `B`/`E` and `X` (complete) events are spans: the time a span is open and no span inside it
//!   is, is self time of the stack of open spans. An `E` with nothing open (a trace started
//!   inside a span) is skipped; spans still open at the end run until the thread's last time; a
//!   span that outlives its parent is cut at the parent's end.
//! - `Profile` and `ProfileChunk` events carry V8 CPU-profile samples (nodes, samples,
//!   `timeDeltas`), read as a `.cpuprofile` ([`crate::cpuprofile`]) is, one profile per id.
//!
//! Thread and process names come from `thread_name`/`process_name` metadata events. A file cut
//! short (Chrome writes the array incrementally: no closing `]`, a trailing comma) is read up
//! to its last whole event.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::{self, Node};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "chrome_trace";

/// A trace as an object: its events are `traceEvents`. (Told apart from an array by the first
/// byte rather than by an untagged enum, which would buffer the whole file as a generic tree
/// before trying each shape: several times the file's size and most of the time of a big one.)
#[derive(Deserialize)]
struct Traced {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<Event>,
}

/// The events of a trace, an array of events or an object with `traceEvents`.
fn events(bytes: &[u8]) -> serde_json::Result<Vec<Event>> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Traced>(bytes).map(|t| t.trace_events),
        _ => serde_json::from_slice(bytes),
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    ph: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pid: Value,
    #[serde(default)]
    tid: Value,
    ts: Option<f64>,
    dur: Option<f64>,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    args: Value,
}

/// True when `bytes` look like a trace: an array of objects with a `ph`, or an object with
/// `traceEvents`, within the first 4 KiB.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => memchr::memmem::find(head, b"\"ph\"").is_some(),
        Some(b'{') => memchr::memmem::find(head, b"\"traceEvents\"").is_some(),
        _ => false,
    }
}

/// Reads a trace. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// A file cut short, closed: trailing whitespace and commas dropped and the array closed.
fn closed(bytes: &[u8]) -> Option<Vec<u8>> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'[' {
        return None;
    }
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace() && *b != b',')?;
    if bytes[end] == b']' {
        return None;
    }
    let mut fixed = bytes[..=end].to_vec();
    fixed.push(b']');
    Some(fixed)
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let events = match events(bytes) {
        Ok(events) => events,
        Err(first) => closed(bytes).and_then(|fixed| events(&fixed).ok()).ok_or_else(|| {
            FormatError::new(NAME, format!("not a trace (an array of events, or `traceEvents`): {first}"))
        })?,
    };
    read(&events, max_depth, budget)
}

/// A thread's key: `pid` and `tid` as written (numbers or strings).
fn key(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `ts` in nanoseconds, checked.
fn nanos(micros: f64, i: usize) -> Result<i64, FormatError> {
    let ns = (micros * 1000.0).round();
    if !ns.is_finite() || ns.abs() >= 9.2e18 {
        return Err(FormatError::new(
            NAME,
            format!("event {i}: time {micros} µs is not a number or beyond 64 bits of nanoseconds"),
        ));
    }
    Ok(ns as i64)
}

/// A span: its start and end in ns, its name, its position in the file.
struct Span<'a> {
    start: i64,
    end: i64,
    name: &'a str,
    order: usize,
}

#[derive(Default)]
struct Thread<'a> {
    spans: Vec<Span<'a>>,
    /// Open `B` events: start, name, order.
    open: Vec<(i64, &'a str, usize)>,
    last: i64,
}

/// A V8 profile spread over `Profile` and `ProfileChunk` events.
struct Chunks {
    pid: String,
    tid: String,
    start_time: Option<i64>,
    nodes: Vec<Node>,
    samples: Vec<u64>,
    deltas: Vec<i64>,
}

fn read(events: &[Event], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let mut threads: BTreeMap<(String, String), Thread> = BTreeMap::new();
    let mut thread_names: HashMap<(String, String), String> = HashMap::new();
    let mut process_names: HashMap<String, String> = HashMap::new();
    let mut profiles: Vec<(String, Chunks)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        budget.spend_frames(1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let pid = key(&event.pid);
        let tid = key(&event.tid);
        match event.ph.as_str() {
            "M" => {
                let name = event.args.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                match event.name.as_str() {
                    "thread_name" => {
                        thread_names.insert((pid, tid), name);
                    }
                    "process_name" => {
                        process_names.insert(pid, name);
                    }
                    _ => {}
                }
            }
            "B" | "E" | "X" => {
                let at = nanos(
                    event
                        .ts
                        .ok_or_else(|| FormatError::new(NAME, format!("event {i} (`{}`) has no `ts`", event.ph)))?,
                    i,
                )?;
                let thread = threads.entry((pid, tid)).or_default();
                match event.ph.as_str() {
                    "B" => thread.open.push((at, &event.name, i)),
                    "E" => {
                        // An end with nothing open began before the trace did.
                        if let Some((start, name, order)) = thread.open.pop() {
                            thread.spans.push(Span { start, end: at.max(start), name, order });
                        }
                    }
                    _ => {
                        let dur = event.dur.unwrap_or(0.0);
                        if dur.is_nan() || dur < 0.0 {
                            return Err(FormatError::new(
                                NAME,
                                format!("event {i} (`X`) has a negative or invalid `dur` ({dur})"),
                            ));
                        }
                        let end = nanos(event.ts.unwrap_or_default() + dur, i)?;
                        thread.spans.push(Span { start: at, end: end.max(at), name: &event.name, order: i });
                        thread.last = thread.last.max(end);
                    }
                }
                thread.last = thread.last.max(at);
            }
            "P" | "I" | "i" if event.name == "Profile" || event.name == "ProfileChunk" => {
                let id = key(&event.id);
                let data = event.args.get("data").cloned().unwrap_or(Value::Null);
                let found = match profiles.iter().position(|(p, c)| *p == id && c.pid == pid) {
                    Some(found) => found,
                    None => {
                        profiles.push((
                            id,
                            Chunks {
                                pid: pid.clone(),
                                tid: tid.clone(),
                                start_time: None,
                                nodes: Vec::new(),
                                samples: Vec::new(),
                                deltas: Vec::new(),
                            },
                        ));
                        profiles.len() - 1
                    }
                };
                let chunks = &mut profiles[found].1;
                let bad = |what: &str, e: serde_json::Error| {
                    FormatError::new(NAME, format!("event {i} (`{}`): {what}: {e}", event.name))
                };
                if event.name == "Profile" {
                    chunks.tid = tid;
                    chunks.start_time = data.get("startTime").and_then(Value::as_i64);
                    continue;
                }
                if let Some(profile) = data.get("cpuProfile") {
                    if let Some(nodes) = profile.get("nodes") {
                        let nodes: Vec<Node> = Vec::deserialize(nodes).map_err(|e| bad("`cpuProfile.nodes`", e))?;
                        chunks.nodes.extend(nodes);
                    }
                    if let Some(samples) = profile.get("samples") {
                        let samples: Vec<u64> =
                            Vec::deserialize(samples).map_err(|e| bad("`cpuProfile.samples`", e))?;
                        chunks.samples.extend(samples);
                    }
                }
                if let Some(deltas) = data.get("timeDeltas") {
                    let deltas: Vec<i64> = Vec::deserialize(deltas).map_err(|e| bad("`timeDeltas`", e))?;
                    chunks.deltas.extend(deltas);
                }
            }
            _ => {}
        }
    }
    let thread_label = |pid: &str, tid: &str| {
        let process = process_names.get(pid).map_or_else(|| format!("pid {pid}"), |n| format!("{n} (pid {pid})"));
        match thread_names.get(&(pid.to_string(), tid.to_string())) {
            Some(name) => format!("{process} {name} (tid {tid})"),
            None => format!("{process} tid {tid}"),
        }
    };
    let mut parts = Vec::new();
    for ((pid, tid), mut thread) in threads {
        let (tree, order) = spans_tree(&mut thread, max_depth, budget)?;
        if !tree.is_empty() {
            parts.push(Part {
                name: thread_label(&pid, &tid),
                units: "nanoseconds".into(),
                tree,
                time_order: Some(order),
            });
        }
    }
    for (id, chunks) in profiles {
        let file = cpuprofile::File {
            nodes: chunks.nodes,
            start_time: chunks.start_time,
            end_time: None,
            samples: Some(chunks.samples),
            time_deltas: Some(chunks.deltas),
        };
        let (tree, units, time_order) = cpuprofile::read(&file, max_depth, budget)
            .map_err(|f| f.named(NAME))
            .map_err(|e| FormatError { reason: format!("CPU profile {id}: {}", e.reason), ..e })?;
        if !tree.is_empty() {
            parts.push(Part {
                name: format!("CPU profile, {}", thread_label(&chunks.pid, &chunks.tid)),
                units: units.into(),
                tree,
                time_order,
            });
        }
    }
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// One thread's spans into a tree of self time, and the same self time in time order (from the
/// thread's first span).
fn spans_tree(
    thread: &mut Thread,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<(CallTree, TimeOrder), FormatError> {
    let exhausted = |e| FormatError::exhausted(NAME, e);
    // Spans still open end with the thread's last time.
    while let Some((start, name, order)) = thread.open.pop() {
        thread.spans.push(Span { start, end: thread.last.max(start), name, order });
    }
    // Outer spans first: by start, the longer first, then in file order.
    thread.spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.order.cmp(&b.order)));
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let mut open: Vec<(i64, NodeId)> = Vec::new();
    let mut last = i64::MIN;
    let elapsed = |from: i64, to: i64| u64::try_from(i128::from(to) - i128::from(from)).unwrap_or(0);
    let origin = thread.spans.first().map_or(0, |s| s.start);
    let mut order = TimeOrder::default();
    let mut add_self = |tree: &mut CallTree, node: NodeId, from: i64, to: i64| {
        tree.add_self(node, elapsed(from, to));
        order.push(node, elapsed(origin, from), elapsed(from, to));
    };
    for span in &thread.spans {
        while let Some(&(end, node)) = open.last() {
            if end > span.start {
                break;
            }
            add_self(&mut tree, node, last, end);
            last = end;
            open.pop();
        }
        if let Some(&(_, node)) = open.last() {
            add_self(&mut tree, node, last, span.start);
        }
        last = span.start;
        let (end, parent) = open.last().map_or((span.end, ROOT), |&(end, node)| (span.end.min(end), node));
        budget.spend_frames(1).map_err(exhausted)?;
        let node = if open.len() < max_depth { tree.child(parent, span.name) } else { parent };
        budget.spend_growth(&tree, &mut mark).map_err(exhausted)?;
        open.push((end, node));
    }
    while let Some((end, node)) = open.pop() {
        add_self(&mut tree, node, last, end);
        last = end;
    }
    Ok((tree, order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> Vec<(String, String)> {
        set.parts.iter().map(|p| (p.name.clone(), folded::print(&p.tree.to_flat()))).collect()
    }

    #[test]
    fn spans_give_self_time_per_thread() {
        // Thread 1: main [0, 10) with work [2, 7) (as B/E) holding io [3, 5) (as X); thread 2: one X.
        let trace = r#"[
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "Main"}},
            {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "app"}},
            {"ph": "X", "name": "main", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
            {"ph": "B", "name": "work", "pid": 1, "tid": 1, "ts": 2},
            {"ph": "X", "name": "io", "pid": 1, "tid": 1, "ts": 3, "dur": 2},
            {"ph": "E", "pid": 1, "tid": 1, "ts": 7},
            {"ph": "X", "name": "gc", "pid": 1, "tid": "2", "ts": 1, "dur": 0.5},
            {"ph": "E", "pid": 1, "tid": "2", "ts": 9}
        ]"#;
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(
            folded_of(&set),
            [
                ("app (pid 1) Main (tid 1)".to_string(), "main 5000\nmain;work 3000\nmain;work;io 2000\n".to_string()),
                ("app (pid 1) tid 2".to_string(), "gc 500\n".to_string()),
            ]
        );
        let (merged, units) = set.merged().unwrap();
        assert_eq!((merged.total(), units), (10_500, "nanoseconds"));
        // The same events under `traceEvents`, cut short with a trailing comma.
        let object = format!(r#"{{"traceEvents": {trace}}}"#);
        assert_eq!(folded_of(&parse(object.as_bytes(), 64).unwrap()), folded_of(&set));
        let cut = &trace[..trace.rfind(']').unwrap()];
        let cut = format!("{},\n", cut.trim_end());
        assert_eq!(folded_of(&parse(cut.as_bytes(), 64).unwrap()), folded_of(&set));
    }

    #[test]
    fn open_spans_run_to_the_threads_last_time_and_children_end_with_parents() {
        let trace = r#"[{"ph": "B", "name": "a", "pid": 1, "tid": 1, "ts": 0},
            {"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 1, "dur": 1},
            {"ph": "X", "name": "c", "pid": 1, "tid": 1, "ts": 2, "dur": 100},
            {"ph": "X", "name": "d", "pid": 1, "tid": 1, "ts": 50, "dur": 1},
            {"ph": "B", "name": "e", "pid": 1, "tid": 1, "ts": 100},
            {"ph": "X", "name": "f", "pid": 1, "tid": 1, "ts": 100, "dur": 200}]"#;
        // a runs to the last time (300); e and f start inside c and are cut at its end (102).
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 300_000);
        let printed = folded::print(&set.parts[0].tree.to_flat());
        assert!(printed.contains("a;c;d 1000\n"), "{printed}");
    }

    #[test]
    fn profile_chunks_are_cpu_profiles() {
        let trace = r#"{"traceEvents": [
            {"ph": "P", "name": "Profile", "id": "0x1", "pid": 7, "tid": 8, "ts": 0, "args": {"data": {"startTime": 100}}},
            {"ph": "P", "name": "ProfileChunk", "id": "0x1", "pid": 7, "tid": 9, "ts": 5, "args": {"data": {
                "cpuProfile": {"nodes": [{"id": 1, "callFrame": {"functionName": "(root)"}},
                                          {"id": 2, "callFrame": {"functionName": "main"}, "parent": 1}],
                               "samples": [2, 2]},
                "timeDeltas": [0, 10]}}},
            {"ph": "P", "name": "ProfileChunk", "id": "0x1", "pid": 7, "tid": 9, "ts": 6, "args": {"data": {
                "cpuProfile": {"nodes": [{"id": 3, "callFrame": {"functionName": "work"}, "parent": 2}], "samples": [3, 1]},
                "timeDeltas": [10, 5]}}}]}"#;
        let set = parse(trace.as_bytes(), 64).unwrap();
        // main 0-10 and 10-20, work 20-25, the last sample (root) weighs nothing.
        assert_eq!(
            folded_of(&set),
            [("CPU profile, pid 7 tid 8".to_string(), "main 20000\nmain;work 5000\n".to_string())]
        );
    }

    #[test]
    fn broken_traces_name_the_format_and_what_is_wrong() {
        let cases = [
            (r#"[{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0, "dur": -1}]"#, "negative or invalid `dur`"),
            (r#"[{"ph": "B", "name": "a", "pid": 1, "tid": 1}]"#, "has no `ts`"),
            (r#"[{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 1e300, "dur": 1}]"#, "beyond 64 bits"),
            (r#"{"traceEvents": [{"ph": "X", "name": "a", "ts": 0, "dur": 1}"#, "not a trace"),
            (r#"[{"ph": "X", "name": "a", "ts": 0, "du"#, "not a trace"),
            (r#"[{"ph": 7}]"#, "not a trace"),
            (
                r#"[{"ph": "P", "name": "ProfileChunk", "id": 1, "args": {"data": {"cpuProfile": {"nodes": 5}}}}]"#,
                "`cpuProfile.nodes`",
            ),
            (
                r#"[{"ph": "P", "name": "ProfileChunk", "id": 1, "args": {"data": {"cpuProfile": {"nodes": [], "samples": [4]}, "timeDeltas": [1]}}}]"#,
                "CPU profile 1: sample 0 is of node 4",
            ),
        ];
        for (trace, needle) in cases {
            let err = parse(trace.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("chrome_trace: "), "{err}");
            assert!(err.reason.contains(needle), "{trace}: {err}");
        }
    }

    #[test]
    fn deep_and_many_spans_stay_within_bounds() {
        // 50 000 nested spans: no recursion, depth cut at 64, every nanosecond kept.
        let n = 50_000;
        let events: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"ph": "X", "name": "f{i}", "pid": 1, "tid": 1, "ts": {i}, "dur": {}}}"#, 2 * (n - i)))
            .collect();
        let trace = format!("[{}]", events.join(","));
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 2 * n as u64 * 1000);
        assert_eq!(set.parts[0].tree.node_count(), 65);
        let err = parse_budgeted(trace.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_spans_never_panic(
            spans in proptest::collection::vec((0u8..4, 0u8..3, -5.0f64..50.0, -1.0f64..30.0), 0..16),
        ) {
            let phases = ["B", "E", "X", "I"];
            let events: Vec<String> = spans
                .iter()
                .map(|&(ph, tid, ts, dur)| {
                    format!(r#"{{"ph": "{}", "name": "f{tid}", "pid": 1, "tid": {tid}, "ts": {ts}, "dur": {dur}}}"#, phases[ph as usize])
                })
                .collect();
            if let Ok(set) = parse(format!("[{}", events.join(",")).as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
