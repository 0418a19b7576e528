//! Firefox Profiler profiles in Gecko's own JSON format: what Firefox writes with
//! `MOZ_PROFILER_SHUTDOWN=file.json` or "Save as file" from `about:profiling`'s raw download
//! (<https://github.com/firefox-devtools/profiler/blob/main/docs-developer/gecko-profile-format.md>),
//! read into one profile per thread, in nanoseconds.
//!
//! A profile has `meta` (its sampling `interval` in milliseconds), `threads`, and `processes`,
//! each a child process's profile of the same shape. A thread's tables are schema-based: a
//! `schema` maps each column's name to its place in every row of `data`. `samples` rows name a
//! `stack` (or null: no stack); `stackTable` rows a `prefix` stack (null at the root) and a
//! `frame`; `frameTable` rows a `location`, an index into the thread's `stringTable`, which is
//! the frame's name. Every sample weighs the interval. A prefix always comes before its stack
//! in Gecko's tables, which rules out cycles; anything else (an index out of range, a
//! schema without a column, an interval that is not a positive number of milliseconds) is an
//! error naming the format and what is wrong. The processed format that the Firefox Profiler's
//! site saves is told apart and read by [`crate::firefox_processed`].

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "gecko";

#[derive(Deserialize)]
struct Profile {
    meta: Meta,
    #[serde(default)]
    threads: Vec<Thread>,
    #[serde(default)]
    processes: Vec<Profile>,
}

#[derive(Deserialize)]
struct Meta {
    interval: Option<f64>,
    #[serde(rename = "preprocessedProfileVersion")]
    preprocessed: Option<Value>,
}

#[derive(Deserialize)]
struct Thread {
    #[serde(default)]
    name: String,
    #[serde(default)]
    pid: Value,
    #[serde(default)]
    tid: Value,
    samples: Option<Table>,
    #[serde(rename = "stackTable")]
    stack_table: Option<Table>,
    #[serde(rename = "frameTable")]
    frame_table: Option<Table>,
    #[serde(rename = "stringTable", default)]
    string_table: Vec<String>,
}

/// A schema-based table: `data` rows whose columns `schema` names.
#[derive(Deserialize)]
struct Table {
    schema: HashMap<String, usize>,
    data: Vec<Vec<Value>>,
}

impl Table {
    fn column(&self, table: &str, name: &str) -> Result<usize, String> {
        self.schema.get(name).copied().ok_or_else(|| format!("{table} has no `{name}` column in its schema"))
    }

    /// The index in row `row`'s column `column`: `None` for null (or a row too short to have it).
    fn index(&self, table: &str, row: usize, column: usize) -> Result<Option<usize>, String> {
        match self.data[row].get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .map(Some)
                .ok_or_else(|| format!("{table} row {row}: `{value}` is not an index")),
        }
    }
}

/// True when `bytes` are a JSON object that starts like a Gecko profile: Firefox writes its
/// `libs` first, each with a `breakpadId`, then `meta` with the sampling `interval` and
/// `stackwalk` (or, in the processed format, its version).
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(65536)];
    let has = |key: &[u8]| memchr::memmem::find(head, key).is_some();
    let meta =
        has(b"\"meta\"") && has(b"\"interval\"") && (has(b"\"stackwalk\"") || has(b"\"preprocessedProfileVersion\""));
    crate::speedscope::looks_like_json(bytes) && (meta || has(b"\"breakpadId\""))
}

/// Reads a Gecko profile. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    if crate::firefox_processed::looks_like(bytes) {
        return crate::firefox_processed::parse_budgeted(bytes, max_depth, budget);
    }
    let profile: Profile =
        serde_json::from_slice(bytes).map_err(|e| FormatError::new(NAME, format!("not a Gecko profile: {e}")))?;
    let mut parts = Vec::new();
    // The main process, then its children, then theirs: a list, not recursion.
    let mut pending = vec![&profile];
    while let Some(profile) = pending.pop() {
        if profile.meta.preprocessed.is_some() {
            // Past the start of the file (where the processed format's reader looks for it).
            return Err(FormatError::new(
                NAME,
                "meta.preprocessedProfileVersion says this is the Firefox Profiler's processed format, \
                 but its start does not: name it first in `meta`",
            ));
        }
        let interval = profile.meta.interval.unwrap_or(1.0);
        let weight = interval * 1e6;
        if !((1.0..1e15).contains(&weight)) {
            return Err(FormatError::new(NAME, format!("meta.interval {interval} is not a sampling interval in ms")));
        }
        for (index, thread) in profile.threads.iter().enumerate() {
            let (tree, time_order) = read_thread(thread, weight as u64, max_depth, budget).map_err(|e| match e {
                Failure::Malformed(reason) => {
                    FormatError::new(NAME, format!("thread {index} ({}): {reason}", thread.name))
                }
                Failure::Exhausted(e) => FormatError::exhausted(NAME, e),
            })?;
            if !tree.is_empty() {
                parts.push(Part { name: thread_name(thread), units: "nanoseconds".into(), tree, time_order });
            }
        }
        pending.extend(profile.processes.iter().rev());
    }
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// `GeckoMain (pid 12, tid 12)`: thread names repeat across processes.
fn thread_name(thread: &Thread) -> String {
    let name = if thread.name.is_empty() { "thread" } else { &thread.name };
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match (id(&thread.pid), id(&thread.tid)) {
        (pid, tid) if !pid.is_empty() && !tid.is_empty() => format!("{name} (pid {pid}, tid {tid})"),
        (pid, _) if !pid.is_empty() => format!("{name} (pid {pid})"),
        _ => name.to_string(),
    }
}

/// A JS frame's location without the index into the profile's `sources` that newer Geckos
/// add (`fib (file:///a.html:4:13)[11]`, `file:///a.html[11]`), as the Firefox Profiler shows it.
fn without_source(location: &str) -> &str {
    match location.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((before, index))
            if !before.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) =>
        {
            before
        }
        _ => location,
    }
}

enum Failure {
    Malformed(String),
    Exhausted(crate::budget::Exhausted),
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

/// One thread's samples into a tree, each weighing `weight` nanoseconds, and their time order
/// when the samples have a `time` column (milliseconds).
fn read_thread(
    thread: &Thread,
    weight: u64,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<(CallTree, Option<TimeOrder>), Failure> {
    let mut tree = CallTree::new();
    let Some(samples) = &thread.samples else { return Ok((tree, None)) };
    if samples.data.is_empty() {
        return Ok((tree, None));
    }
    let time_column = samples.schema.get("time").copied();
    // (time in ms, stack node) of each sample with a stack, while the times are numbers.
    let mut timed: Option<Vec<(f64, NodeId)>> = time_column.map(|_| Vec::new());
    let stacks = thread.stack_table.as_ref().ok_or_else(|| "samples without a stackTable".to_string())?;
    let frames = thread.frame_table.as_ref().ok_or_else(|| "samples without a frameTable".to_string())?;
    let sample_stack = samples.column("samples", "stack")?;
    let (prefix_column, frame_column) = (stacks.column("stackTable", "prefix")?, stacks.column("stackTable", "frame")?);
    let location = frames.column("frameTable", "location")?;
    let mut mark = TreeSize::of(&tree);
    // Each stack's tree node and depth, once it has been placed.
    let mut placed: Vec<Option<(NodeId, usize)>> = vec![None; stacks.data.len()];
    let mut unplaced: Vec<usize> = Vec::new();
    let mut sum = 0u64;
    for row in 0..samples.data.len() {
        let Some(stack) = samples.index("samples", row, sample_stack)? else { continue };
        if stack >= stacks.data.len() {
            return Err(format!("sample {row} is of stack {stack}, beyond the {} stacks", stacks.data.len()).into());
        }
        // Up the prefixes to a placed stack (or the root), then down, placing each.
        let mut at = Some(stack);
        while let Some(i) = at {
            if placed[i].is_some() {
                break;
            }
            unplaced.push(i);
            let prefix = stacks.index("stackTable", i, prefix_column)?;
            if prefix.is_some_and(|p| p >= i) {
                return Err(format!("stack {i}'s prefix {} is not before it", prefix.unwrap_or_default()).into());
            }
            at = prefix;
        }
        let (mut node, mut depth) = at.and_then(|i| placed[i]).unwrap_or((ROOT, 0));
        while let Some(i) = unplaced.pop() {
            budget.spend_frames(1)?;
            let frame =
                stacks.index("stackTable", i, frame_column)?.ok_or_else(|| format!("stack {i} has no frame"))?;
            if frame >= frames.data.len() {
                return Err(format!("stack {i} is of frame {frame}, beyond the {} frames", frames.data.len()).into());
            }
            let string =
                frames.index("frameTable", frame, location)?.ok_or_else(|| format!("frame {frame} has no location"))?;
            let name = thread.string_table.get(string).ok_or_else(|| {
                format!("frame {frame}'s location is string {string}, beyond the {} strings", thread.string_table.len())
            })?;
            depth += 1;
            if depth <= max_depth {
                node = tree.child(node, without_source(name));
            }
            placed[i] = Some((node, depth));
        }
        budget.spend_growth(&tree, &mut mark)?;
        sum = sum.checked_add(weight).ok_or_else(|| "the samples add up beyond 64 bits of nanoseconds".to_string())?;
        tree.add_self(node, weight);
        if let (Some(times), Some(column)) = (&mut timed, time_column) {
            match samples.data[row].get(column).and_then(Value::as_f64).filter(|t| t.is_finite()) {
                Some(time) => times.push((time, node)),
                // A sample without a time: the thread has no time order.
                None => timed = None,
            }
        }
    }
    Ok((tree, timed.map(|times| time_order(times, weight))))
}

/// Samples at their times (ms), in time order from the first, each lasting `weight` ns.
fn time_order(mut times: Vec<(f64, NodeId)>, weight: u64) -> TimeOrder {
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let origin = times.first().map_or(0.0, |&(t, _)| t);
    let mut order = TimeOrder::default();
    for (time, node) in times {
        // Within a finite f64 of ms: saturates rather than wraps for absurd spans.
        let at = ((time - origin) * 1e6).clamp(0.0, u64::MAX as f64) as u64;
        order.push(node, at, weight);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| format!("# {}\n{}", p.name, folded::print(&p.tree.to_flat()))).collect()
    }

    /// A thread with stacks (root) → main → work, and main → idle; `samples` rows as given.
    fn thread(name: &str, samples: &str) -> String {
        format!(
            r#"{{"name": "{name}", "pid": 7, "tid": 8,
            "samples": {{"schema": {{"stack": 0, "time": 1}}, "data": {samples}}},
            "stackTable": {{"schema": {{"prefix": 0, "frame": 1}}, "data": [[null, 0], [0, 1], [1, 2], [1, 3]]}},
            "frameTable": {{"schema": {{"location": 0, "line": 1}}, "data": [[0, null], [1, 3], [2, 9], [3, null]]}},
            "stringTable": ["(root)", "main", "work (file:///a.js:9:1)[3]", "idle"]}}"#
        )
    }

    fn profile(interval: &str, threads: &[String], processes: &[String]) -> String {
        format!(
            r#"{{"meta": {{"version": 27, "interval": {interval}, "stackwalk": 1, "product": "Firefox"}},
            "threads": [{}], "processes": [{}]}}"#,
            threads.join(","),
            processes.join(",")
        )
    }

    #[test]
    fn threads_of_every_process_weigh_the_interval_per_sample() {
        let child = profile("0.5", &[thread("DOM Worker", "[[2, 1.0], [2, 2.0]]")], &[]);
        let file = profile("1", &[thread("GeckoMain", "[[2, 1.0], [3, 2.0], [null, 3.0], [1, 4.0]]")], &[child]);
        assert!(looks_like(file.as_bytes()));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(
            folded_of(&set),
            "# GeckoMain (pid 7, tid 8)\n(root);main 1000000\n(root);main;idle 1000000\n(root);main;work (file:///a.js:9:1) 1000000\n\
             # DOM Worker (pid 7, tid 8)\n(root);main;work (file:///a.js:9:1) 1000000\n"
        );
        assert!(set.parts.iter().all(|p| p.units == "nanoseconds"));
        let shallow = parse(file.as_bytes(), 2).unwrap();
        assert_eq!(shallow.parts[0].tree.total(), 3_000_000);
        assert_eq!(shallow.parts[0].tree.node_count(), 3, "the root, (root) and main");
    }

    #[test]
    fn hostile_files_are_refused_naming_the_format_and_what_is_wrong() {
        let ok = thread("T", "[[2, 1.0]]");
        let with = |from: &str, to: &str| profile("1", &[ok.replace(from, to)], &[]);
        let deep = "[".repeat(100_000);
        let cases = [
            (profile("1", std::slice::from_ref(&ok), &[])[..80].to_string(), "not a Gecko profile"),
            (with("[[2, 1.0]]", "[[9, 1.0]]"), "sample 0 is of stack 9, beyond the 4 stacks"),
            (with("[[null, 0], [0, 1]", "[[null, 0], [2, 1]"), "stack 1's prefix 2 is not before it"),
            (with("[1, 2], [1, 3]]", "[1, 99], [1, 3]]"), "stack 2 is of frame 99, beyond the 4 frames"),
            (with("[[0, null], [1, 3]", "[[0, null], [40, 3]"), "location is string 40, beyond the 4 strings"),
            (with("[[2, 1.0]]", "[[-2, 1.0]]"), "`-2` is not an index"),
            (with("[[2, 1.0]]", "[[18446744073709551615, 1.0]]"), "beyond the 4 stacks"),
            (with(r#""stack": 0"#, r#""stak": 0"#), "samples has no `stack` column"),
            (profile("0", std::slice::from_ref(&ok), &[]), "meta.interval 0 is not a sampling interval"),
            (profile("1e300", std::slice::from_ref(&ok), &[]), "is not a sampling interval"),
            (format!(r#"{{"meta": {{"interval": 1, "processes": {deep}"#), "not a Gecko profile"),
        ];
        for (text, needle) in cases {
            let err = parse(text.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("gecko: "), "{err}");
            assert!(err.reason.contains(needle), "{needle}: {err}");
        }
        // The processed format, named `gecko`, is read as what it is.
        let processed = r#"{"meta": {"interval": 1, "preprocessedProfileVersion": 48}, "threads": [{"samples": 1}]}"#;
        assert!(parse(processed.as_bytes(), 64).unwrap_err().to_string().starts_with("firefox_processed: "));
        // Nested processes as deep as JSON allows are read without recursion.
        let mut nested = profile("1", std::slice::from_ref(&ok), &[]);
        for _ in 0..40 {
            nested = profile("1", &[], &[nested]);
        }
        assert_eq!(parse(nested.as_bytes(), 64).unwrap().parts.len(), 1);
        // Within a small budget a big file is refused as too costly.
        let many = format!("[{}]", vec!["[2, 1.0]"; 5000].join(","));
        let big = profile("1", &[thread("T", &many)], &[]);
        assert_eq!(parse(big.as_bytes(), 64).unwrap().parts[0].tree.total(), 5_000_000_000);
        let err = parse_budgeted(big.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_tables_never_panic(
            stacks in proptest::collection::vec((prop_oneof![Just(None), (0u64..6).prop_map(Some)], 0u64..5), 0..8),
            samples in proptest::collection::vec(prop_oneof![Just(None), (0u64..9).prop_map(Some)], 0..10),
        ) {
            let cell = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
            let stacks: Vec<String> = stacks.iter().map(|(p, f)| format!("[{}, {f}]", cell(*p))).collect();
            let samples: Vec<String> = samples.iter().map(|s| format!("[{}, 0]", cell(*s))).collect();
            let thread = format!(
                r#"{{"name": "T", "samples": {{"schema": {{"stack": 0}}, "data": [{}]}},
                "stackTable": {{"schema": {{"prefix": 0, "frame": 1}}, "data": [{}]}},
                "frameTable": {{"schema": {{"location": 0}}, "data": [[0], [1], [2], [5]]}},
                "stringTable": ["a", "b", "c"]}}"#,
                samples.join(","), stacks.join(",")
            );
            if let Ok(set) = parse(profile("1", &[thread], &[]).as_bytes(), 3) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
