//! The Firefox Profiler's processed profile format: what profiler.firefox.com saves ("Download"
//! or an uploaded profile's file, often gzipped) and what tools that write for it produce
//! (samply, `perf` converters), as its types describe it
//! (<https://github.com/firefox-devtools/profiler/blob/main/src/types/profile.ts>). Read into
//! one profile per thread.
//!
//! A profile has `meta` (its sampling `interval` in milliseconds and its
//! `preprocessedProfileVersion`) and one flat list of `threads` of every process. A thread's
//! tables are columns of equal length: `samples` has a `stack` per sample (or null: no stack),
//! its times as `time` or as `timeDeltas` (milliseconds), and an optional `weight` of the kind
//! `weightType` names; `stackTable` has each stack's `prefix` (null at the root, always an
//! earlier stack) and `frame`; `frameTable` each frame's `func`; `funcTable` each function's
//! `name`, and for JavaScript (`isJS`) its `fileName`, `lineNumber` and `columnNumber`. Strings
//! are indices into `shared.stringArray` (the thread's own `stringArray` or `stringTable` in
//! older versions).
//!
//! A function is named as the Gecko profile labels its frames ([`crate::gecko`]), so that a
//! profile reads alike before and after the Firefox Profiler processed it: its name, and for
//! JavaScript its location, `fib (file:///a.html:4:13)`. A sample weighs its `weight` (1 when
//! there is none) times the interval for `samples`, its weight in milliseconds for
//! `tracing-ms` (both in nanoseconds, with their time order), its weight in bytes for `bytes`.

use serde::Deserialize;
use serde_json::Value;

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::Failure;
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "firefox_processed";

#[derive(Deserialize)]
struct Profile {
    meta: Meta,
    #[serde(default)]
    shared: Option<Shared>,
    #[serde(default)]
    threads: Vec<Thread>,
}

#[derive(Deserialize)]
struct Meta {
    interval: Option<f64>,
}

#[derive(Deserialize)]
struct Shared {
    #[serde(rename = "stringArray", default)]
    string_array: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Thread {
    #[serde(default)]
    name: String,
    #[serde(rename = "processName", default)]
    process_name: Option<String>,
    #[serde(default)]
    pid: Value,
    #[serde(default)]
    tid: Value,
    samples: Option<Samples>,
    #[serde(rename = "stackTable")]
    stack_table: Option<StackTable>,
    #[serde(rename = "frameTable")]
    frame_table: Option<FrameTable>,
    #[serde(rename = "funcTable")]
    func_table: Option<FuncTable>,
    #[serde(rename = "stringArray", default)]
    string_array: Option<Vec<String>>,
    #[serde(rename = "stringTable", default)]
    string_table: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Samples {
    stack: Vec<Option<u64>>,
    time: Option<Vec<Option<f64>>>,
    #[serde(rename = "timeDeltas")]
    time_deltas: Option<Vec<Option<f64>>>,
    weight: Option<Vec<f64>>,
    #[serde(rename = "weightType")]
    weight_type: Option<String>,
}

#[derive(Deserialize)]
struct StackTable {
    frame: Vec<u64>,
    prefix: Vec<Option<u64>>,
}

#[derive(Deserialize)]
struct FrameTable {
    func: Vec<u64>,
}

#[derive(Deserialize)]
struct FuncTable {
    name: Vec<u64>,
    #[serde(rename = "isJS", default)]
    is_js: Vec<bool>,
    #[serde(rename = "fileName", default)]
    file_name: Vec<Option<u64>>,
    #[serde(rename = "lineNumber", default)]
    line_number: Vec<Option<u64>>,
    #[serde(rename = "columnNumber", default)]
    column_number: Vec<Option<u64>>,
}

/// True when `bytes` are a JSON object whose start has the processed format's version in
/// `meta` (which the Firefox Profiler writes first).
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(65536)];
    crate::speedscope::looks_like_json(bytes)
        && memchr::memmem::find(head, b"\"preprocessedProfileVersion\"").is_some()
        && memchr::memmem::find(head, b"\"meta\"").is_some()
}

/// Reads a processed Firefox profile. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let profile: Profile = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::new(NAME, format!("not a processed Firefox profile: {e}")))?;
    let interval = profile.meta.interval.unwrap_or(1.0);
    if !(interval * 1e6 >= 1.0 && interval * 1e6 < 1e15) {
        return Err(FormatError::new(NAME, format!("meta.interval {interval} is not a sampling interval in ms")));
    }
    let shared = profile.shared.as_ref().and_then(|s| s.string_array.as_deref());
    let mut parts = Vec::new();
    for (index, thread) in profile.threads.iter().enumerate() {
        let part = read_thread(thread, shared, interval, max_depth, budget).map_err(|e| match e {
            Failure::Malformed(reason) => FormatError::new(NAME, format!("thread {index} ({}): {reason}", thread.name)),
            Failure::Exhausted(e) => FormatError::exhausted(NAME, e),
        })?;
        if let Some(part) = part.filter(|p| !p.tree.is_empty()) {
            parts.push(part);
        }
    }
    // Threads in one unit merge; a profile mixing time and bytes does not.
    let split = if parts.windows(2).all(|w| w[0].units == w[1].units) { Split::Threads } else { Split::EventTypes };
    Ok(ProfileSet { split, parts })
}

/// `GeckoMain (pid 12, tid 12)`, as the Gecko reader names threads, with the process's name
/// when the thread's own says nothing more (`GeckoMain` is every process's main thread).
fn thread_name(thread: &Thread) -> String {
    let name = if thread.name.is_empty() { "thread" } else { &thread.name };
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let name = match thread.process_name.as_deref().filter(|p| !p.is_empty() && *p != name) {
        Some(process) => format!("{process} {name}"),
        None => name.to_string(),
    };
    match (id(&thread.pid), id(&thread.tid)) {
        (pid, tid) if !pid.is_empty() && !tid.is_empty() => format!("{name} (pid {pid}, tid {tid})"),
        (pid, _) if !pid.is_empty() => format!("{name} (pid {pid})"),
        _ => name,
    }
}

/// Column `column` of `table` at `row`, or an error naming them.
fn cell<T: Copy>(values: &[T], table: &str, column: &str, row: usize) -> Result<T, String> {
    values.get(row).copied().ok_or_else(|| format!("{table}.{column} has no row {row} ({} rows)", values.len()))
}

/// What a sample's weight counts, and so the profile's unit.
enum Weighs {
    /// Samples, each the interval (ns).
    Samples(f64),
    /// Milliseconds of traced time.
    TracingMs,
    Bytes,
}

/// One thread's samples into a profile.
fn read_thread(
    thread: &Thread,
    shared: Option<&[String]>,
    interval_ms: f64,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<Option<Part>, Failure> {
    let Some(samples) = &thread.samples else { return Ok(None) };
    if samples.stack.is_empty() {
        return Ok(None);
    }
    let strings = shared
        .or(thread.string_array.as_deref())
        .or(thread.string_table.as_deref())
        .ok_or_else(|| "no strings (shared.stringArray, or the thread's stringArray)".to_string())?;
    let stacks = thread.stack_table.as_ref().ok_or_else(|| "samples without a stackTable".to_string())?;
    let frames = thread.frame_table.as_ref().ok_or_else(|| "samples without a frameTable".to_string())?;
    let funcs = thread.func_table.as_ref().ok_or_else(|| "samples without a funcTable".to_string())?;
    let weighs = match samples.weight_type.as_deref().unwrap_or("samples") {
        "samples" => Weighs::Samples(interval_ms * 1e6),
        "tracing-ms" => Weighs::TracingMs,
        "bytes" => Weighs::Bytes,
        other => return Err(format!("samples.weightType `{other}` is none of samples, tracing-ms, bytes").into()),
    };
    let count = samples.stack.len();
    // Every sample's time in ms, when the thread gives them all.
    let times: Option<Vec<f64>> = match (&samples.time, &samples.time_deltas) {
        (Some(time), _) => time.iter().copied().collect::<Option<Vec<f64>>>(),
        (None, Some(deltas)) => deltas
            .iter()
            .scan(0.0, |sum, delta| {
                *sum += (*delta)?;
                Some(Some(*sum))
            })
            .collect::<Option<Vec<f64>>>()
            .filter(|t| t.len() == deltas.len()),
        (None, None) => None,
    };
    let times = times.filter(|t| t.len() == count && t.iter().all(|x| x.is_finite()));
    if let Some(weights) = &samples.weight
        && weights.len() != count
    {
        return Err(format!("samples has {count} stacks but {} weights", weights.len()).into());
    }

    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let mut placed: Vec<Option<(NodeId, usize)>> = vec![None; stacks.frame.len()];
    let mut unplaced: Vec<usize> = Vec::new();
    let mut timed: Vec<(f64, NodeId, u64)> = Vec::new();
    let mut sum = 0u64;
    for (row, stack) in samples.stack.iter().enumerate() {
        let Some(stack) = *stack else { continue };
        let stack = usize::try_from(stack)
            .ok()
            .filter(|&s| s < stacks.frame.len())
            .ok_or_else(|| format!("sample {row} is of stack {stack}, beyond the {} stacks", stacks.frame.len()))?;
        // Up the prefixes to a placed stack (or the root), then down, placing each.
        let mut at = Some(stack);
        while let Some(i) = at {
            if placed[i].is_some() {
                break;
            }
            unplaced.push(i);
            let prefix = cell(&stacks.prefix, "stackTable", "prefix", i)?;
            if prefix.is_some_and(|p| p >= i as u64) {
                return Err(format!("stack {i}'s prefix {} is not before it", prefix.unwrap_or_default()).into());
            }
            at = prefix.map(|p| p as usize);
        }
        let (mut node, mut depth) = at.and_then(|i| placed[i]).unwrap_or((ROOT, 0));
        while let Some(i) = unplaced.pop() {
            budget.spend_frames(1)?;
            let frame = cell(&stacks.frame, "stackTable", "frame", i)?;
            let func = usize::try_from(frame)
                .ok()
                .and_then(|f| frames.func.get(f).copied())
                .ok_or_else(|| format!("stack {i} is of frame {frame}, beyond the {} frames", frames.func.len()))?;
            depth += 1;
            if depth <= max_depth {
                node = tree.child(node, &func_name(funcs, func, strings)?);
            }
            placed[i] = Some((node, depth));
        }
        budget.spend_growth(&tree, &mut mark)?;
        let weight = samples.weight.as_ref().map_or(1.0, |w| w[row]);
        let value = match weighs {
            Weighs::Samples(interval_ns) => weight * interval_ns,
            Weighs::TracingMs => weight * 1e6,
            Weighs::Bytes => weight,
        };
        if !(0.0..1.8e19).contains(&value) {
            return Err(format!(
                "sample {row} weighs {weight}, not a count Kiln can add up (diff profiles are not read)"
            )
            .into());
        }
        let value = value.round() as u64;
        sum = sum.checked_add(value).ok_or_else(|| "the samples add up beyond 64 bits".to_string())?;
        tree.add_self(node, value);
        if let Some(times) = &times {
            timed.push((times[row], node, value));
        }
    }
    let (units, time_order) = match weighs {
        Weighs::Bytes => ("bytes", None),
        _ => ("nanoseconds", times.map(|_| time_order(timed))),
    };
    Ok(Some(Part { name: thread_name(thread), units: units.into(), tree, time_order }))
}

/// Function `func`'s name, with its file, line and column for JavaScript.
fn func_name(funcs: &FuncTable, func: u64, strings: &[String]) -> Result<String, String> {
    let row = usize::try_from(func).unwrap_or(usize::MAX);
    let name = cell(&funcs.name, "funcTable", "name", row)?;
    let string = |index: u64| {
        usize::try_from(index).ok().and_then(|i| strings.get(i)).ok_or_else(|| {
            format!("function {func}'s name or file is string {index}, beyond the {} strings", strings.len())
        })
    };
    let name = string(name)?;
    let file = match funcs.file_name.get(row).copied().flatten() {
        Some(file) if funcs.is_js.get(row).copied().unwrap_or(false) => string(file)?,
        _ => return Ok(name.clone()),
    };
    let at = |column: &[Option<u64>]| column.get(row).copied().flatten().map(|n| format!(":{n}")).unwrap_or_default();
    Ok(format!("{name} ({file}{}{})", at(&funcs.line_number), at(&funcs.column_number)))
}

/// Samples at their times (ms), in time order from the first.
fn time_order(mut times: Vec<(f64, NodeId, u64)>) -> TimeOrder {
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let origin = times.first().map_or(0.0, |&(t, _, _)| t);
    let mut order = TimeOrder::default();
    for (time, node, weight) in times {
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
        set.parts.iter().map(|p| format!("# {} ({})\n{}", p.name, p.units, folded::print(&p.tree.to_flat()))).collect()
    }

    /// A thread of stacks main → work (JS) and main → idle; `samples` as given.
    fn thread(name: &str, samples: &str) -> String {
        format!(
            r#"{{"name": "{name}", "processName": "Web Content", "pid": "7", "tid": 8,
            "samples": {samples},
            "stackTable": {{"length": 3, "prefix": [null, 0, 0], "frame": [0, 1, 2], "category": [0, 0, 0]}},
            "frameTable": {{"length": 3, "func": [0, 1, 2], "address": [-1, -1, -1], "line": [null, 9, null]}},
            "funcTable": {{"length": 3, "name": [0, 1, 2], "isJS": [false, true, false],
                "fileName": [null, 3, null], "lineNumber": [null, 9, null], "columnNumber": [null, 1, null]}}}}"#
        )
    }

    fn profile(interval: &str, strings: &str, threads: &[String]) -> String {
        format!(
            r#"{{"meta": {{"interval": {interval}, "preprocessedProfileVersion": 53, "product": "Firefox"}},
            "libs": [], "shared": {{"stringArray": {strings}}}, "threads": [{}]}}"#,
            threads.join(",")
        )
    }

    const STRINGS: &str = r#"["main", "work", "idle", "file:///a.js"]"#;

    #[test]
    fn threads_weigh_their_samples_by_the_weight_type() {
        let sampled = thread(
            "GeckoMain",
            r#"{"length": 4, "stack": [1, 2, null, 1], "time": [10.0, 12.0, 13.0, 14.0], "weight": null, "weightType": "samples"}"#,
        );
        let traced = thread(
            "DOM Worker",
            r#"{"length": 2, "stack": [1, 0], "timeDeltas": [5.0, 2.5], "weight": [2, 0.5], "weightType": "tracing-ms"}"#,
        );
        let file = profile("2", STRINGS, &[sampled, traced]);
        assert!(looks_like(file.as_bytes()));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.split, Split::Threads);
        assert_eq!(
            folded_of(&set),
            "# Web Content GeckoMain (pid 7, tid 8) (nanoseconds)\nmain;idle 2000000\nmain;work (file:///a.js:9:1) 4000000\n\
             # Web Content DOM Worker (pid 7, tid 8) (nanoseconds)\nmain 500000\nmain;work (file:///a.js:9:1) 2000000\n"
        );
        // Times from the first sample, each lasting its weight.
        let order = set.parts[0].time_order.as_ref().unwrap();
        let seen: Vec<(u64, u64)> = order.samples.iter().map(|s| (s.start, s.weight)).collect();
        assert_eq!(seen, [(0, 2_000_000), (2_000_000, 2_000_000), (4_000_000, 2_000_000)]);
        let order = set.parts[1].time_order.as_ref().unwrap();
        assert_eq!(order.samples.iter().map(|s| s.start).collect::<Vec<_>>(), [0, 2_500_000]);
        assert_eq!(parse(file.as_bytes(), 1).unwrap().parts[0].tree.node_count(), 2, "cut to main");
    }

    #[test]
    fn older_versions_keep_strings_in_the_thread_and_bytes_do_not_merge_with_time() {
        let with_strings = |samples: &str, key: &str| {
            thread("T", samples).replacen("\"samples\"", &format!("\"{key}\": {STRINGS}, \"samples\""), 1)
        };
        let old = format!(
            r#"{{"meta": {{"interval": 1, "preprocessedProfileVersion": 30}}, "threads": [{}, {}]}}"#,
            with_strings(r#"{"stack": [1], "time": [0], "weightType": "samples"}"#, "stringArray"),
            with_strings(r#"{"stack": [2, 2], "weight": [100, 28], "weightType": "bytes"}"#, "stringTable"),
        );
        let set = parse(old.as_bytes(), 64).unwrap();
        assert_eq!(set.split, Split::EventTypes);
        let units: Vec<&str> = set.parts.iter().map(|p| p.units.as_str()).collect();
        assert_eq!(units, ["nanoseconds", "bytes"]);
        assert_eq!(set.parts[1].tree.total(), 128);
        assert!(set.parts[1].time_order.is_none());
    }

    #[test]
    fn hostile_files_are_refused_naming_the_format_and_what_is_wrong() {
        let ok = thread("T", r#"{"stack": [1], "time": [0.0], "weightType": "samples"}"#);
        let with = |from: &str, to: &str| profile("1", STRINGS, &[ok.replace(from, to)]);
        let cases = [
            (profile("1", STRINGS, std::slice::from_ref(&ok))[..90].to_string(), "not a processed Firefox profile"),
            (with(r#""stack": [1]"#, r#""stack": [7]"#), "sample 0 is of stack 7, beyond the 3 stacks"),
            (with("[null, 0, 0]", "[null, 2, 0]"), "stack 1's prefix 2 is not before it"),
            (with(r#""frame": [0, 1, 2]"#, r#""frame": [0, 9, 2]"#), "stack 1 is of frame 9, beyond the 3 frames"),
            (with(r#""func": [0, 1, 2]"#, r#""func": [0, 5, 2]"#), "funcTable.name has no row 5"),
            (with(r#""fileName": [null, 3, null]"#, r#""fileName": [null, 30, null]"#), "string 30, beyond the 4"),
            (with(r#""prefix": [null, 0, 0]"#, r#""prefix": [null]"#), "stackTable.prefix has no row 1"),
            (with(r#""stack": [1]"#, r#""stack": [-1]"#), "not a processed Firefox profile"),
            (with(r#""weightType": "samples""#, r#""weightType": "joules""#), "weightType `joules`"),
            (with(r#""time": [0.0]"#, r#""time": [0.0], "weight": [-3]"#), "weighs -3"),
            (with(r#""time": [0.0]"#, r#""time": [0.0], "weight": [1, 2]"#), "1 stacks but 2 weights"),
            (profile("0", STRINGS, std::slice::from_ref(&ok)), "meta.interval 0 is not a sampling interval"),
            (profile("1", "null", std::slice::from_ref(&ok)), "no strings"),
        ];
        for (text, needle) in cases {
            let err = parse(text.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("firefox_processed: "), "{err}");
            assert!(err.reason.contains(needle), "{needle}: {err}");
        }
        let many = format!(r#"{{"stack": [{}], "weightType": "samples"}}"#, vec!["1"; 5000].join(","));
        let big = profile("1", STRINGS, &[thread("T", &many)]);
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
            samples in proptest::collection::vec((prop_oneof![Just(None), (0u64..9).prop_map(Some)], 0u32..4), 0..10),
            funcs in proptest::collection::vec(0u64..6, 0..5),
        ) {
            let cell = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
            let join = |v: Vec<String>| v.join(",");
            let thread = format!(
                r#"{{"name": "T", "samples": {{"stack": [{}], "weight": [{}], "time": [{}], "weightType": "samples"}},
                "stackTable": {{"prefix": [{}], "frame": [{}]}},
                "frameTable": {{"func": [0, 1, 2, 3]}},
                "funcTable": {{"name": [{}], "isJS": [true, false], "fileName": [4, null]}}}}"#,
                join(samples.iter().map(|(s, _)| cell(*s)).collect()),
                join(samples.iter().map(|(_, w)| w.to_string()).collect()),
                join((0..samples.len()).map(|i| (i * 3 % 7).to_string()).collect()),
                join(stacks.iter().map(|(p, _)| cell(*p)).collect()),
                join(stacks.iter().map(|(_, f)| f.to_string()).collect()),
                join(funcs.iter().map(u64::to_string).collect()),
            );
            if let Ok(set) = parse(profile("1", r#"["a", "b", "c", "d", "e"]"#, &[thread]).as_bytes(), 3) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                    let order = part.time_order.as_ref().unwrap();
                    prop_assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
                }
            }
        }
    }
}
