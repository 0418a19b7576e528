//! V8 CPU profiles: the `.cpuprofile` files `node --cpu-prof` and Chrome DevTools write
//! (<https://chromedevtools.github.io/devtools-protocol/tot/Profiler/#type-Profile>), read into
//! a call tree in nanoseconds.
//!
//! A profile is a tree of `nodes` (each an `id`, a `callFrame` and its `children` ids, or, in
//! Chrome traces' `ProfileChunk`s, its `parent` id), a list of `samples` (the node on CPU at
//! each tick) and `timeDeltas` (microseconds since the tick before). A sample weighs the time
//! until the next sample in time order; the last one the time until `endTime`. A profile without
//! `samples` (older DevTools files) is read from each node's `hitCount`, in samples.
//!
//! V8's `(root)` node is the tree's root; `(program)`, `(idle)` and `(garbage collector)` stay
//! frames as V8 names them. A frame is named by its `functionName`, or `(anonymous) url:line`
//! for an anonymous function. Anything malformed (a child that does not exist or has two
//! parents, a cycle, a sample of an unknown node, deltas that do not match the samples, times
//! beyond 64 bits) is an error naming the format and what is wrong.

use std::collections::HashMap;

use serde::Deserialize;

use crate::budget::{DecodeBudget, TreeSize};
use crate::json_events::Event;
use crate::nested_tree::{self, NestedTree, Place, whole};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "cpuprofile";

/// The part of a `.cpuprofile` Kiln reads.
#[derive(Deserialize)]
pub(crate) struct File {
    pub(crate) nodes: Vec<Node>,
    #[serde(rename = "startTime")]
    pub(crate) start_time: Option<i64>,
    #[serde(rename = "endTime")]
    pub(crate) end_time: Option<i64>,
    pub(crate) samples: Option<Vec<u64>>,
    #[serde(rename = "timeDeltas")]
    pub(crate) time_deltas: Option<Vec<i64>>,
}

/// One node of V8's profile tree.
#[derive(Deserialize, Clone)]
pub(crate) struct Node {
    pub(crate) id: u64,
    #[serde(rename = "callFrame")]
    pub(crate) call_frame: CallFrame,
    #[serde(rename = "hitCount", default)]
    pub(crate) hit_count: u64,
    #[serde(default)]
    pub(crate) children: Vec<u64>,
    pub(crate) parent: Option<u64>,
}

/// Where a node's code is.
#[derive(Deserialize, Clone)]
pub(crate) struct CallFrame {
    #[serde(rename = "functionName", default)]
    pub(crate) function_name: String,
    #[serde(default)]
    pub(crate) url: String,
    #[serde(rename = "lineNumber", default)]
    pub(crate) line_number: i64,
}

impl CallFrame {
    fn name(&self) -> String {
        frame_name(&self.function_name, &self.url, self.line_number)
    }
}

/// How a V8 call frame is named (CPU and heap profiles alike): its function, or
/// `(anonymous) url:line` for an anonymous function.
pub(crate) fn frame_name(function_name: &str, url: &str, line_number: i64) -> String {
    match (function_name.is_empty(), url.is_empty()) {
        (false, _) => function_name.to_string(),
        (true, true) => "(anonymous)".to_string(),
        // V8's lines count from 0.
        (true, false) => format!("(anonymous) {url}:{}", line_number.saturating_add(1)),
    }
}

/// True when `bytes` are a JSON object with V8's `nodes` of `callFrame`s: cheap enough to run
/// on every upload, strict enough not to take another JSON format for it.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    crate::speedscope::looks_like_json(bytes)
        && memchr::memmem::find(head, b"\"nodes\"").is_some()
        && memchr::memmem::find(head, b"\"callFrame\"").is_some()
}

/// Reads a `.cpuprofile`. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let file: File =
        serde_json::from_slice(bytes).map_err(|e| FormatError::new(NAME, format!("not a V8 CPU profile: {e}")))?;
    let (tree, units, time_order) = read(&file, max_depth, budget).map_err(|e| e.named(NAME))?;
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: "main".into(), units: units.into(), tree, time_order }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// The older form's name in the table of formats: the `.cpuprofile` of Chrome DevTools before
/// 2016 and of the `v8-profiler` modules for Node, V8's C++ API written out as it is.
pub const TREE_NAME: &str = "cpuprofile_tree";

/// The older form of a CPU profile as read: its nodes in document order (a parent before its
/// children), each with its parent's index, and the document's times.
#[derive(Default)]
struct TreeFile {
    nodes: Vec<TreeNode>,
    /// Seconds.
    start_time: Option<f64>,
    /// Seconds.
    end_time: Option<f64>,
    samples: Option<Vec<u64>>,
    /// Microseconds, absolute.
    timestamps: Option<Vec<f64>>,
}

#[derive(Default)]
struct TreeNode {
    parent: Option<usize>,
    id: Option<u64>,
    function_name: String,
    url: String,
    /// Counted from 1 in this form (V8's C++ API), from 0 in `callFrame`s.
    line_number: i64,
    hit_count: u64,
}

/// The older form's own containers: the document's `samples` and `timestamps`.
#[derive(Clone, Copy)]
enum TreeList {
    Samples,
    Timestamps,
}

impl NestedTree for TreeFile {
    type Own = TreeList;
    const WHAT: &'static str = "a V8 CPU profile";
    const ROOT: &'static str = "head";

    fn node(&mut self, parent: Option<usize>) {
        self.nodes.push(TreeNode { parent, ..TreeNode::default() });
    }

    fn open(
        &mut self,
        within: Place<TreeList>,
        key: Option<&str>,
        is_object: bool,
        _: &mut DecodeBudget,
    ) -> Result<Option<TreeList>, Failure> {
        Ok(match (within, key, is_object) {
            (Place::Document, Some("samples"), false) => {
                self.samples = Some(Vec::new());
                Some(TreeList::Samples)
            }
            (Place::Document, Some("timestamps"), false) => {
                self.timestamps = Some(Vec::new());
                Some(TreeList::Timestamps)
            }
            (Place::Own(_), None, _) => {
                return Err("the `samples` or `timestamps` hold a nested value".to_string().into());
            }
            _ => None,
        })
    }

    fn value(&mut self, within: Place<TreeList>, key: Option<&str>, value: Event) -> Result<(), Failure> {
        let number = |event: &Event, what: &str| match event {
            Event::Number(n) => n.parse::<f64>().map_err(|_| format!("{what} is not a number: {n}")),
            _ => Err(format!("{what} is not a number")),
        };
        match (within, key) {
            (Place::Node(node), Some(field)) => {
                let node = &mut self.nodes[node];
                match (field, value) {
                    ("functionName", Event::String(text)) => node.function_name = text.into_owned(),
                    ("url", Event::String(text)) => node.url = text.into_owned(),
                    ("lineNumber", Event::Number(n)) => node.line_number = whole(n, "a `lineNumber`")?,
                    ("id", Event::Number(n)) => {
                        node.id = Some(n.parse().map_err(|_| format!("a node's `id` is not a whole number: {n}"))?);
                    }
                    ("hitCount", Event::Number(n)) => {
                        node.hit_count =
                            n.parse().map_err(|_| format!("a node's `hitCount` is not a whole number: {n}"))?;
                    }
                    ("id" | "hitCount", _) => return Err(format!("a node's `{field}` is not a number").into()),
                    _ => {}
                }
            }
            (Place::Document, Some(field @ ("startTime" | "endTime"))) => {
                let seconds = number(&value, &format!("`{field}`"))?;
                if field == "startTime" { self.start_time = Some(seconds) } else { self.end_time = Some(seconds) }
            }
            (Place::Own(TreeList::Samples), None) => {
                let Event::Number(n) = value else { return Err("a sample is not a node's id".to_string().into()) };
                let id = n.parse().map_err(|_| format!("a sample is not a node's id: {n}"))?;
                self.samples.get_or_insert_default().push(id);
            }
            (Place::Own(TreeList::Timestamps), None) => {
                let at = number(&value, "a timestamp")?;
                self.timestamps.get_or_insert_default().push(at);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The older form's document, read without recursion ([`crate::nested_tree`]): its tree nests
/// as deep as the profiled stacks, past what a recursive reader takes.
fn read_tree_file(bytes: &[u8], budget: &mut DecodeBudget) -> Result<TreeFile, Failure> {
    let mut file = TreeFile::default();
    nested_tree::read(bytes, &mut file, budget)?;
    Ok(file)
}

/// True when `bytes` are a JSON object with a `head` node of the older form: `"head": {` and
/// a node's `functionName` and `children` within the first 4 KiB, and no `callFrame` (the
/// newer forms', also of heap profiles, which nest a tree under `head` too).
pub fn looks_like_tree(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let opens_head = memchr::memmem::find_iter(head, b"\"head\"").any(|at| {
        let mut rest = head[at + 6..].iter().skip_while(|b| b.is_ascii_whitespace());
        rest.next() == Some(&b':') && rest.find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    });
    crate::speedscope::looks_like_json(bytes)
        && opens_head
        && memchr::memmem::find(head, b"\"functionName\"").is_some()
        && memchr::memmem::find(head, b"\"children\"").is_some()
        && memchr::memmem::find(head, b"\"callFrame\"").is_none()
}

/// Reads a `.cpuprofile` of the older form ([`TREE_NAME`]). Stacks deeper than `max_depth`
/// lose their leaf end.
pub fn parse_tree(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_tree_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse_tree`] within `budget` (which the caller has granted the file's size).
pub fn parse_tree_budgeted(
    bytes: &[u8],
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<ProfileSet, FormatError> {
    let malformed = |reason: String| FormatError::new(TREE_NAME, reason);
    let file = read_tree_file(bytes, budget).map_err(|e| e.named(TREE_NAME))?;
    // The tree, flattened into nodes that name their parent.
    let ids: Vec<u64> = file
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| node.id.ok_or_else(|| malformed(format!("node {i} of the tree has no `id`"))))
        .collect::<Result<_, _>>()?;
    let nodes = file
        .nodes
        .into_iter()
        .map(|node| Node {
            id: node.id.unwrap_or_default(),
            call_frame: CallFrame {
                function_name: node.function_name,
                url: node.url,
                line_number: node.line_number.saturating_sub(1),
            },
            hit_count: node.hit_count,
            children: Vec::new(),
            parent: node.parent.map(|p| ids[p]),
        })
        .collect();
    let micros = |seconds: f64, what: &str| -> Result<i64, FormatError> {
        let us = (seconds * 1e6).round();
        if !us.is_finite() || us.abs() >= 9.2e18 {
            return Err(malformed(format!("`{what}` ({seconds} s) is beyond 64 bits of microseconds")));
        }
        Ok(us as i64)
    };
    let start_time = file.start_time.map(|s| micros(s, "startTime")).transpose()?;
    let end_time = file.end_time.map(|s| micros(s, "endTime")).transpose()?;
    // Absolute sample times into the newer form's deltas, the first from `startTime`.
    let time_deltas = match (&file.samples, &file.timestamps) {
        (Some(_), None) => return Err(malformed("`samples` without `timestamps`".into())),
        (_, Some(timestamps)) => {
            let mut deltas = Vec::with_capacity(timestamps.len());
            let mut previous = start_time.unwrap_or_else(|| timestamps.first().map_or(0.0, |t| t.round()) as i64);
            for (i, &timestamp) in timestamps.iter().enumerate() {
                let at = timestamp.round();
                if !at.is_finite() || at.abs() >= 9.2e18 {
                    return Err(malformed(format!("timestamp {i} ({timestamp} µs) is beyond 64 bits")));
                }
                let at = at as i64;
                deltas.push(at.checked_sub(previous).ok_or_else(|| {
                    malformed(format!("timestamp {i} ({timestamp} µs) is too far from the one before"))
                })?);
                previous = at;
            }
            Some(deltas)
        }
        (None, None) => None,
    };
    let flat = File { nodes, start_time, end_time, samples: file.samples, time_deltas };
    let (tree, units, time_order) = read(&flat, max_depth, budget).map_err(|e| e.named(TREE_NAME))?;
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: "main".into(), units: units.into(), tree, time_order }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// Why a profile could not be read, before the format is named.
pub(crate) enum Failure {
    Malformed(String),
    Exhausted(crate::budget::Exhausted),
}

impl Failure {
    pub(crate) fn named(self, format: &'static str) -> FormatError {
        match self {
            Failure::Malformed(reason) => FormatError::new(format, reason),
            Failure::Exhausted(e) => FormatError::exhausted(format, e),
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Malformed(reason)
    }
}

impl From<crate::budget::Exhausted> for Failure {
    fn from(e: crate::budget::Exhausted) -> Self {
        Failure::Exhausted(e)
    }
}

/// Microseconds to nanoseconds, checked.
fn nanos(micros: i128, what: impl Fn() -> String) -> Result<u64, String> {
    micros
        .checked_mul(1000)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("{} ({micros} µs) is negative or beyond 64 bits of nanoseconds", what()))
}

/// One V8 profile into a tree, its unit, and its samples in time order (none for a profile of
/// hit counts, which has no times).
pub(crate) fn read(
    file: &File,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<(CallTree, &'static str, Option<TimeOrder>), Failure> {
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let index: HashMap<u64, usize> = file.nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    if index.len() != file.nodes.len() {
        return Err(format!("two nodes share an id ({} nodes, {} ids)", file.nodes.len(), index.len()).into());
    }
    // Parents from either `children` or `parent`, checked to name one parent each.
    let mut parent: Vec<Option<usize>> = vec![None; file.nodes.len()];
    let set_parent = |child_id: u64, of: usize, parent: &mut Vec<Option<usize>>| -> Result<(), String> {
        let child = *index.get(&child_id).ok_or_else(|| {
            format!(
                "node {} names node {child_id} as its child or parent, but there is no such node",
                file.nodes[of].id
            )
        })?;
        match parent[child] {
            Some(p) if p != of => {
                Err(format!("node {child_id} has two parents ({} and {})", file.nodes[p].id, file.nodes[of].id))
            }
            _ => {
                parent[child] = Some(of);
                Ok(())
            }
        }
    };
    for (i, node) in file.nodes.iter().enumerate() {
        for &child in &node.children {
            set_parent(child, i, &mut parent)?;
        }
    }
    for (i, node) in file.nodes.iter().enumerate() {
        if let Some(p) = node.parent {
            let p =
                *index.get(&p).ok_or_else(|| format!("node {} has parent {p}, but there is no such node", node.id))?;
            match parent[i] {
                Some(q) if q != p => {
                    return Err(format!(
                        "node {} has two parents ({} and {})",
                        node.id, file.nodes[q].id, file.nodes[p].id
                    )
                    .into());
                }
                _ => parent[i] = Some(p),
            }
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); file.nodes.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    // Tree node of every profile node, from the parentless ones down; `(root)` is the root.
    let mut placed: Vec<Option<NodeId>> = vec![None; file.nodes.len()];
    let mut stack: Vec<(usize, NodeId, usize)> = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        if p.is_none() {
            let is_root = file.nodes[i].call_frame.function_name == "(root)";
            stack.push((i, ROOT, usize::from(!is_root)));
            if is_root {
                placed[i] = Some(ROOT);
            }
        }
    }
    while let Some((i, above, depth)) = stack.pop() {
        let here = match placed[i] {
            Some(here) => here,
            None => {
                budget.spend_frames(1)?;
                let here = if depth > max_depth { above } else { tree.child(above, &file.nodes[i].call_frame.name()) };
                budget.spend_growth(&tree, &mut mark)?;
                placed[i] = Some(here);
                here
            }
        };
        for &child in &children[i] {
            stack.push((child, here, depth + 1));
        }
    }
    if let Some(i) = placed.iter().position(Option::is_none) {
        return Err(format!("node {} is not reachable from a root: the nodes form a cycle", file.nodes[i].id).into());
    }
    let placed: Vec<NodeId> = placed.into_iter().flatten().collect();
    let Some(samples) = &file.samples else {
        let mut sum = 0u64;
        for (i, node) in file.nodes.iter().enumerate() {
            sum = sum.checked_add(node.hit_count).ok_or_else(|| "the hit counts add up beyond 2^64".to_string())?;
            tree.add_self(placed[i], node.hit_count);
        }
        return Ok((tree, crate::speedscope::SAMPLES, None));
    };
    let deltas = file.time_deltas.as_deref().ok_or_else(|| "`samples` without `timeDeltas`".to_string())?;
    if deltas.len() != samples.len() {
        return Err(format!("{} samples but {} timeDeltas", samples.len(), deltas.len()).into());
    }
    // Sample times in µs from startTime; V8 may list a sample before an earlier one, so the
    // weights follow time order, not file order.
    let mut times: Vec<(i128, usize)> = Vec::with_capacity(samples.len());
    let mut now: i128 = 0;
    for (i, &delta) in deltas.iter().enumerate() {
        now += i128::from(delta);
        times.push((now, i));
    }
    times.sort_unstable();
    let end = file.end_time.zip(file.start_time).map(|(end, start)| i128::from(end) - i128::from(start));
    let mut sum = 0u64;
    // Times in the time order count from the first sample.
    let origin = times.first().map_or(0, |&(at, _)| at);
    let mut order = TimeOrder::default();
    for (k, &(at, i)) in times.iter().enumerate() {
        budget.spend_frames(1)?;
        let node = *index
            .get(&samples[i])
            .ok_or_else(|| format!("sample {i} is of node {}, which does not exist", samples[i]))?;
        let next = match times.get(k + 1) {
            Some(&(next, _)) => next,
            None => end.unwrap_or(at).max(at),
        };
        let weight = nanos(next - at, || format!("the time of sample {i}"))?;
        sum = sum.checked_add(weight).ok_or_else(|| "the samples add up beyond 64 bits of nanoseconds".to_string())?;
        tree.add_self(placed[node], weight);
        order.push(placed[node], nanos(at - origin, || format!("the time of sample {i}"))?, weight);
    }
    Ok((tree, "nanoseconds", Some(order)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| folded::print(&p.tree.to_flat())).collect()
    }

    const NODES: &str = r#""nodes": [
        {"id": 1, "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1}, "children": [2, 4]},
        {"id": 2, "callFrame": {"functionName": "main", "url": "file:///a.js", "lineNumber": 0}, "children": [3]},
        {"id": 3, "callFrame": {"functionName": "", "url": "file:///a.js", "lineNumber": 9}, "hitCount": 2},
        {"id": 4, "callFrame": {"functionName": "(idle)"}, "hitCount": 1}]"#;

    #[test]
    fn samples_weigh_the_time_to_the_next_sample_in_time_order() {
        // Samples at 5, 15, 45 and 35 µs (V8 lists the last out of order), the end at 55.
        let file = format!(
            r#"{{{NODES}, "startTime": 1000, "endTime": 1055, "samples": [2, 4, 3, 3], "timeDeltas": [5, 10, 30, -10]}}"#
        );
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "nanoseconds");
        // At 5: main for 10; at 15: idle for 20; at 35: anonymous for 10; at 45: anonymous for 10.
        assert_eq!(folded_of(&set), "(idle) 20000\nmain 10000\nmain;(anonymous) file:///a.js:10 20000\n");
        let shallow = parse(file.as_bytes(), 1).unwrap();
        assert_eq!(folded_of(&shallow), "(idle) 20000\nmain 30000\n");
        // In time order, from the first sample: main, idle, then the anonymous function twice.
        let part = &set.parts[0];
        let timed = crate::time_order::TimedProfile::new(&part.tree, part.time_order.as_ref().unwrap(), &part.units);
        let names: Vec<(&str, u64, u64)> =
            timed.samples.iter().map(|s| (timed.tree.name_of(s.stack), s.start, s.weight)).collect();
        assert_eq!(
            names,
            [
                ("main", 0, 10_000),
                ("(idle)", 10_000, 20_000),
                ("(anonymous) file:///a.js:10", 30_000, 10_000),
                ("(anonymous) file:///a.js:10", 40_000, 10_000)
            ]
        );
    }

    #[test]
    fn without_samples_hit_counts_are_samples() {
        let set = parse(format!("{{{NODES}}}").as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "samples");
        assert_eq!(folded_of(&set), "(idle) 1\nmain;(anonymous) file:///a.js:10 2\n");
    }

    #[test]
    fn parent_ids_build_the_same_tree_as_children() {
        let file = r#"{"nodes": [{"id": 1, "callFrame": {"functionName": "(root)"}},
            {"id": 2, "callFrame": {"functionName": "main"}, "parent": 1},
            {"id": 3, "callFrame": {"functionName": "work"}, "parent": 2}],
            "samples": [3, 2], "timeDeltas": [0, 4], "startTime": 0, "endTime": 5}"#;
        assert_eq!(folded_of(&parse(file.as_bytes(), 64).unwrap()), "main 1000\nmain;work 4000\n");
    }

    #[test]
    fn broken_profiles_name_the_format_and_what_is_wrong() {
        let with = |samples: &str, deltas: &str| {
            format!(r#"{{{NODES}, "startTime": 0, "endTime": 9, "samples": {samples}, "timeDeltas": {deltas}}}"#)
        };
        let cases = [
            ("{\"nodes\": [".to_string(), "not a V8 CPU profile"),
            (with("[2, 9]", "[1, 1]"), "sample 1 is of node 9, which does not exist"),
            (with("[2, 3]", "[1]"), "2 samples but 1 timeDeltas"),
            (with("[-2]", "[5]"), "not a V8 CPU profile"),
            (with("[2, 3]", "[9223372036854775807, 9223372036854775807]"), "beyond 64 bits"),
            (NODES.replace("[2, 4]", "[2, 5]").replace(r#""nodes""#, r#"{"nodes""#) + "}", "no such node"),
            (NODES.replace("[2, 4]", "[2, 3]").replace(r#""nodes""#, r#"{"nodes""#) + "}", "two parents"),
            (
                r#"{"nodes": [{"id": 1, "callFrame": {}, "children": [2]}, {"id": 2, "callFrame": {}, "children": [1]}]}"#.to_string(),
                "cycle",
            ),
            (
                r#"{"nodes": [{"id": 1, "callFrame": {}}, {"id": 1, "callFrame": {}}]}"#.to_string(),
                "two nodes share an id",
            ),
            (format!("{{{NODES}, \"samples\": [2]}}"), "without `timeDeltas`"),
            (format!("{{{NODES}, \"samples\": [2], \"timeDeltas\": [1e400]}}"), "not a V8 CPU profile"),
        ];
        for (file, needle) in cases {
            let err = parse(file.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("cpuprofile: "), "{err}");
            assert!(err.reason.contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn deep_chains_and_big_files_stay_within_bounds() {
        // A chain of 100 000 nodes: no recursion to overflow the stack, depth cut at 64.
        let n = 100_000;
        let mut nodes = String::from(r#"{"id": 0, "callFrame": {"functionName": "(root)"}, "children": [1]}"#);
        for i in 1..n {
            nodes.push_str(&format!(
                r#",{{"id": {i}, "callFrame": {{"functionName": "f{i}"}}, "children": [{}]}}"#,
                i + 1
            ));
        }
        nodes.push_str(&format!(r#",{{"id": {n}, "callFrame": {{"functionName": "leaf"}}, "hitCount": 3}}"#));
        let file = format!(r#"{{"nodes": [{nodes}]}}"#);
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 3);
        assert_eq!(set.parts[0].tree.node_count(), 65);
        // Within a small budget the same file is refused as too costly, not read.
        let mut budget = DecodeBudget::new(1, 1, 1);
        let err = parse_budgeted(file.as_bytes(), 64, &mut budget).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
        // Huge hit counts add up exactly or are refused, never saturate silently.
        let one = r#"{"id": 1, "callFrame": {"functionName": "a"}, "hitCount": 18446744073709551615}"#;
        let huge = format!(r#"{{"nodes": [{one}]}}"#);
        assert_eq!(parse(huge.as_bytes(), 64).unwrap().parts[0].tree.total(), u64::MAX);
        let two = format!(r#"{{"nodes": [{one}, {}]}}"#, one.replace("\"id\": 1", "\"id\": 2"));
        let err = parse(two.as_bytes(), 64).unwrap_err();
        assert!(err.reason.contains("add up beyond 2^64"), "{err}");
    }

    /// A `head` tree of the older form: `(root)` with `main` (holding an anonymous function at
    /// line 10, counted from 1) and `(idle)`.
    fn tree_file(times: &str) -> String {
        format!(
            r#"{{"head": {{"functionName": "(root)", "id": 1, "hitCount": 0, "children": [
                {{"functionName": "main", "url": "/a.js", "lineNumber": 1, "id": 2, "hitCount": 1, "children": [
                    {{"functionName": "", "url": "/a.js", "lineNumber": 10, "id": 3, "hitCount": 2, "children": []}}]}},
                {{"functionName": "(idle)", "id": 4, "hitCount": 1, "children": []}}]}}{times}}}"#
        )
    }

    #[test]
    fn the_older_head_tree_reads_as_the_newer_form() {
        // Samples at 5, 15, 45 and 35 µs after startTime (10 s), the end at 55 µs: as in
        // `samples_weigh_the_time_to_the_next_sample_in_time_order`, with absolute times.
        let file = tree_file(
            r#", "startTime": 10, "endTime": 10.000055, "samples": [2, 4, 3, 3],
               "timestamps": [10000005, 10000015, 10000045, 10000035]"#,
        );
        assert!(looks_like_tree(file.as_bytes()) && !looks_like(file.as_bytes()));
        let set = parse_tree(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "nanoseconds");
        assert_eq!(folded_of(&set), "(idle) 20000\nmain 10000\nmain;(anonymous) /a.js:10 20000\n");
        // Without samples, the hit counts.
        let set = parse_tree(tree_file("").as_bytes(), 64).unwrap();
        assert_eq!(
            (folded_of(&set).as_str(), set.parts[0].units.as_str()),
            ("(idle) 1\nmain 1\nmain;(anonymous) /a.js:10 2\n", "samples")
        );
    }

    #[test]
    fn broken_head_trees_name_the_format_and_what_is_wrong() {
        let cases = [
            (r#"{"head": 5}"#.to_string(), "there is no `head` node"),
            (r#"[{"head": {}}]"#.to_string(), "a JSON object, not an array"),
            (r#"{"head": {"functionName": "a", "children": []}}"#.to_string(), "node 0 of the tree has no `id`"),
            (
                r#"{"head": {"functionName": "a", "id": 1, "children": [{"functionName": "b"}]}}"#.to_string(),
                "node 1 of the tree has no `id`",
            ),
            (r#"{"head": {"id": "one", "children": []}}"#.to_string(), "`id` is not a number"),
            (r#"{"head": {"id": 1, "children": [5]}}"#.to_string(), "not a node"),
            (tree_file(r#", "samples": [[2]]"#), "nested value"),
            (tree_file(r#", "samples": [2]"#), "`samples` without `timestamps`"),
            (tree_file(r#", "startTime": 0, "samples": [9], "timestamps": [1]"#), "sample 0 is of node 9"),
            (tree_file(r#", "startTime": 0, "samples": [2, 3], "timestamps": [1]"#), "2 samples but 1"),
            (tree_file(r#", "startTime": 1e300, "samples": [2], "timestamps": [1]"#), "beyond 64 bits"),
            (tree_file(r#", "samples": [2, 3], "timestamps": [-9e18, 9e18]"#), "too far from the one before"),
            (
                r#"{"head": {"functionName": "a", "id": 1, "children": [{"functionName": "b", "id": 1, "children": []}]}}"#.to_string(),
                "two nodes share an id",
            ),
            (r#"{"head": {"functionName": "a", "id": 1, "children": []"#.to_string(), "not a V8 CPU profile: the JSON ends early"),
        ];
        for (file, needle) in cases {
            let err = parse_tree(file.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("cpuprofile_tree: "), "{err}");
            assert!(err.reason.contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn a_deep_head_tree_neither_recurses_nor_hits_the_json_nesting_limit() {
        // 20 000 nested nodes (40 000 levels of JSON): read one level at a time, depth cut at 64.
        let n = 20_000;
        let mut file = String::from(r#"{"head": "#);
        for i in 0..n {
            file.push_str(&format!(r#"{{"functionName": "f{i}", "id": {i}, "hitCount": 1, "children": ["#));
        }
        file.push_str(&"]}".repeat(n));
        file.push('}');
        let set = parse_tree(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), n as u64);
        assert_eq!(set.parts[0].tree.node_count(), 65);
        let err = parse_tree_budgeted(file.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_bytes_never_panic_as_a_head_tree(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_tree(&bytes, 16);
        }

        #[test]
        fn arbitrary_head_trees_never_panic(
            ids in proptest::collection::vec(0u64..6, 1..8),
            samples in proptest::collection::vec((0u64..7, -1e7f64..1e7), 0..10),
        ) {
            // A chain of nodes with the given (possibly repeated) ids.
            let mut file = String::from(r#"{"head": "#);
            for id in &ids {
                file.push_str(&format!(r#"{{"functionName": "f{id}", "id": {id}, "hitCount": 1, "children": ["#));
            }
            file.push_str(&"]}".repeat(ids.len()));
            let sampled: Vec<String> = samples.iter().map(|s| s.0.to_string()).collect();
            let times: Vec<String> = samples.iter().map(|s| s.1.to_string()).collect();
            file.push_str(&format!(
                r#", "startTime": 0, "endTime": 20, "samples": [{}], "timestamps": [{}]}}"#,
                sampled.join(","), times.join(",")
            ));
            if let Ok(set) = parse_tree(file.as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }

        #[test]
        fn arbitrary_node_graphs_never_panic(
            edges in proptest::collection::vec((0u64..8, 0u64..8), 0..12),
            samples in proptest::collection::vec((0u64..9, -100i64..100), 0..12),
        ) {
            let nodes: Vec<String> = (0..8u64)
                .map(|id| {
                    let children: Vec<String> = edges.iter().filter(|e| e.0 == id).map(|e| e.1.to_string()).collect();
                    format!(r#"{{"id": {id}, "callFrame": {{"functionName": "f{id}"}}, "children": [{}]}}"#, children.join(","))
                })
                .collect();
            let ids: Vec<String> = samples.iter().map(|s| s.0.to_string()).collect();
            let deltas: Vec<String> = samples.iter().map(|s| s.1.to_string()).collect();
            let file = format!(
                r#"{{"nodes": [{}], "startTime": 0, "endTime": 50, "samples": [{}], "timeDeltas": [{}]}}"#,
                nodes.join(","), ids.join(","), deltas.join(",")
            );
            if let Ok(set) = parse(file.as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
