//! Ruby stackprof profiles as JSON (`StackProf.run(mode:, raw: true)` written with
//! `JSON.generate`, or `stackprof --json` / `StackProf::Report#print_json`), read into one call
//! tree.
//!
//! The file has `frames`, an object from a frame's id (as a string) to its `name`, `file` and
//! `line`, and `raw`, the stacks one after the other: a stack's height, that many frame ids from
//! the root to the leaf, then how many samples had that stack. The `mode` gives the unit:
//! `cpu` and `wall` samples each weigh `interval` microseconds (in `wall` mode the
//! `raw_timestamp_deltas`, one per sample, when the file has them), `object` samples are
//! allocations, counted. Garbage collection is its own stacks, as stackprof records it
//! (`(garbage collection);(marking)`).
//!
//! Anything malformed (a frame id with no frame, a stack running past the end of `raw`, counts
//! or times beyond 64 bits, an unknown mode) is an error naming the format and what is wrong.

use std::collections::HashMap;

use serde::Deserialize;

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "stackprof";

/// Kiln's unit for object-mode profiles: allocations counted.
pub const OBJECTS: &str = "objects";

#[derive(Deserialize)]
struct File {
    mode: String,
    #[serde(default)]
    interval: Option<u64>,
    frames: HashMap<String, Frame>,
    raw: Option<Vec<u64>>,
    #[serde(default)]
    raw_timestamp_deltas: Option<Vec<u64>>,
}

#[derive(Deserialize)]
struct Frame {
    name: String,
}

/// True when `bytes` are a JSON object that starts like a stackprof dump: its `mode`,
/// `interval` and `frames` come before the frames themselves.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    crate::speedscope::looks_like_json(bytes)
        && [&b"\"mode\""[..], b"\"interval\"", b"\"frames\""]
            .iter()
            .all(|key| memchr::memmem::find(head, key).is_some())
}

/// Reads a stackprof JSON file. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let fail = |reason: String| FormatError::new(NAME, reason);
    let file: File = serde_json::from_slice(bytes).map_err(|e| fail(format!("not a stackprof JSON file: {e}")))?;
    let (units, micros) = match file.mode.as_str() {
        "cpu" | "wall" => ("nanoseconds", true),
        "object" => (OBJECTS, false),
        other => return Err(fail(format!("unknown mode `{other}`; stackprof's are cpu, wall and object"))),
    };
    let interval = file.interval.unwrap_or(1);
    let raw = file
        .raw
        .as_deref()
        .ok_or_else(|| fail("no `raw` stacks: record with `raw: true` (StackProf.run(mode: …, raw: true))".into()))?;
    let deltas = file.raw_timestamp_deltas.as_deref().filter(|_| file.mode == "wall");
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    // Frame names by id, looked up once each.
    let mut names: HashMap<u64, &str> = HashMap::with_capacity(file.frames.len());
    for (id, frame) in &file.frames {
        let id = id.parse::<u64>().map_err(|_| fail(format!("frame id `{id}` is not a number")))?;
        names.insert(id, &frame.name);
    }
    let mut at = 0usize;
    let mut sample = 0usize;
    let mut sum = 0u64;
    let mut stack: Vec<u64> = Vec::new();
    // Wall mode's samples in time order: each stack entry lasts its samples' deltas, one after
    // the other from the first.
    let mut order = deltas.map(|_| TimeOrder::default());
    let mut clock = 0u64;
    while at < raw.len() {
        let start = at;
        let height = usize::try_from(raw[at]).unwrap_or(usize::MAX);
        if height > raw.len() - at - 1 {
            return Err(fail(format!("the stack at raw[{start}] has {} frames, more than `raw` has left", raw[at])));
        }
        stack.clear();
        stack.extend_from_slice(&raw[at + 1..at + 1 + height]);
        at += 1 + height;
        let count = *raw.get(at).ok_or_else(|| fail(format!("the stack at raw[{start}] has no sample count")))?;
        at += 1;
        let weight = match deltas {
            Some(deltas) => {
                let n = usize::try_from(count).unwrap_or(usize::MAX);
                let end = sample.checked_add(n).filter(|&end| end <= deltas.len()).ok_or_else(|| {
                    fail(format!(
                        "{} samples but {} raw_timestamp_deltas",
                        sample as u128 + u128::from(count),
                        deltas.len()
                    ))
                })?;
                let micros = deltas[sample..end].iter().try_fold(0u64, |a, &d| a.checked_add(d));
                sample = end;
                micros.and_then(|m| m.checked_mul(1000))
            }
            None if micros => count.checked_mul(interval).and_then(|m| m.checked_mul(1000)),
            None => Some(count),
        }
        .ok_or_else(|| fail(format!("the samples of the stack at raw[{start}] are beyond 64 bits")))?;
        budget.spend_frames(stack.len() as u64 + 1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let mut node: NodeId = ROOT;
        for &id in stack.iter().take(max_depth) {
            let name = names
                .get(&id)
                .ok_or_else(|| fail(format!("the stack at raw[{start}] names frame {id}, which is not in `frames`")))?;
            node = tree.child(node, name);
        }
        budget.spend_growth(&tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
        sum = sum.checked_add(weight).ok_or_else(|| fail("the samples add up beyond 64 bits".into()))?;
        tree.add_self(node, weight);
        if let Some(order) = &mut order {
            order.push(node, clock, weight);
            clock = clock.saturating_add(weight);
        }
    }
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: file.mode.clone(), units: units.into(), tree, time_order: order }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| folded::print(&p.tree.to_flat())).collect()
    }

    const FRAMES: &str = r#""frames": {
        "1": {"name": "<main>", "file": "a.rb", "line": 1},
        "2": {"name": "Object#work", "file": "a.rb", "line": 3},
        "3": {"name": "(garbage collection)"}}"#;

    fn file(mode: &str, raw: &str, extra: &str) -> String {
        format!(r#"{{"version": 1.2, "mode": "{mode}", "interval": 1000, {FRAMES}, "raw": {raw}{extra}}}"#)
    }

    #[test]
    fn stacks_weigh_their_samples_in_the_modes_unit() {
        // <main> twice, <main>;work three times, then a garbage collection.
        let raw = "[1, 1, 2, 2, 1, 2, 3, 1, 3, 1]";
        let cpu = parse(file("cpu", raw, "").as_bytes(), 64).unwrap();
        assert_eq!(cpu.parts[0].units, "nanoseconds");
        assert_eq!(folded_of(&cpu), "(garbage collection) 1000000\n<main> 2000000\n<main>;Object#work 3000000\n");
        let objects = parse(file("object", raw, "").as_bytes(), 64).unwrap();
        assert_eq!(objects.parts[0].units, "objects");
        assert_eq!(objects.parts[0].tree.total(), 6);
        // Wall time from each sample's delta, in µs, when the file has them.
        let wall = parse(file("wall", raw, r#", "raw_timestamp_deltas": [1, 2, 10, 20, 30, 100]"#).as_bytes(), 64);
        let wall = wall.unwrap();
        assert_eq!(folded_of(&wall), "(garbage collection) 100000\n<main> 3000\n<main>;Object#work 60000\n");
        // and in time order: <main> from 0, work from 3 µs, the collection from 63 µs.
        let order = wall.parts[0].time_order.as_ref().unwrap();
        let spans: Vec<(u64, u64)> = order.samples.iter().map(|s| (s.start, s.weight)).collect();
        assert_eq!(spans, [(0, 3000), (3000, 60000), (63000, 100000)]);
        assert!(cpu.parts[0].time_order.is_none(), "cpu mode counts samples, it does not time them");
        let shallow = parse(file("cpu", raw, "").as_bytes(), 1).unwrap();
        assert_eq!(folded_of(&shallow), "(garbage collection) 1000000\n<main> 5000000\n");
        assert!(looks_like(file("cpu", raw, "").as_bytes()));
        assert!(!looks_like(br#"{"shared": {"frames": []}, "profiles": []}"#));
    }

    #[test]
    fn hostile_files_are_refused_naming_the_format_and_what_is_wrong() {
        let deep = format!("[100000, {}1]", "2, ".repeat(100_000));
        let cases = [
            (file("cpu", "[1, 1, 2", "")[..40].to_string(), "not a stackprof JSON file"),
            (file("cpu", "[2, 1, 9, 1]", ""), "names frame 9, which is not in `frames`"),
            (file("cpu", "[5, 1, 2]", ""), "more than `raw` has left"),
            (file("cpu", "[18446744073709551615, 1]", ""), "more than `raw` has left"),
            (file("cpu", "[1, 1]", ""), "has no sample count"),
            (file("cpu", "[1, 1, 18446744073709551615]", ""), "beyond 64 bits"),
            (file("object", "[1, 1, 18446744073709551615, 1, 2, 1]", ""), "add up beyond 64 bits"),
            (file("wall", "[1, 1, 3]", r#", "raw_timestamp_deltas": [1]"#), "3 samples but 1 raw_timestamp_deltas"),
            (file("heap", "[]", ""), "unknown mode `heap`"),
            (file("cpu", "[1, 1, -1]", ""), "not a stackprof JSON file"),
            (file("cpu", "[1, 1, 1]", "").replace("\"raw\": [1, 1, 1]", "\"raw\": null"), "no `raw` stacks"),
            (file("cpu", &deep, "").replace(r#""2": {"#, r#""x": {"#), "not a number"),
        ];
        for (text, needle) in cases {
            let err = parse(text.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("stackprof: "), "{err}");
            assert!(err.reason.contains(needle), "{needle}: {err}");
        }
        // A stack 100 000 frames high is cut at the depth limit; within a small budget it is
        // refused as too costly.
        let set = parse(file("cpu", &deep, "").as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.node_count(), 65, "the root and 64 frames");
        let err = parse_budgeted(file("cpu", &deep, "").as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_raw_arrays_never_panic(
            raw in proptest::collection::vec(prop_oneof![0u64..5, Just(u64::MAX)], 0..40),
            deltas in proptest::collection::vec(0u64..1000, 0..20),
            mode in prop_oneof![Just("cpu"), Just("wall"), Just("object")],
        ) {
            let raw: Vec<String> = raw.iter().map(u64::to_string).collect();
            let deltas: Vec<String> = deltas.iter().map(u64::to_string).collect();
            let text = file(mode, &format!("[{}]", raw.join(",")), &format!(r#", "raw_timestamp_deltas": [{}]"#, deltas.join(",")));
            if let Ok(set) = parse(text.as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
