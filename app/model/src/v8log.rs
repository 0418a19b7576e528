//! V8 tick logs as `node --prof-process --preprocess isolate-….log` writes them: JSON with the
//! `code` entries V8 logged (JavaScript functions, builtins, the binary's C++ symbols, shared
//! libraries) and the `ticks` of the sampler, each a time in microseconds, a VM state and a stack
//! `s` of (code index, offset) pairs, leaf first (index -1: an address no code entry covers,
//! given in the offset). Read into a call tree in nanoseconds, with its time order.
//!
//! A tick weighs the time to the next tick; the last one the interval before it. JavaScript
//! entries are named like `.cpuprofile` frames ([`crate::cpuprofile`]): their function, or
//! `(anonymous) url:line`; other entries by their name as logged. A tick without a stack (the VM
//! idle, in GC, or in code it cannot walk) is drawn as its state, `(GC)`, `(IDLE)`, ….

use serde::Deserialize;

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::Failure;
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "v8_prof";

/// The part of the preprocessed log Kiln reads (the raw log's reader, [`crate::v8_isolate_log`],
/// resolves its ticks into the same).
#[derive(Deserialize, Default)]
pub(crate) struct File {
    pub(crate) code: Vec<Code>,
    pub(crate) ticks: Vec<Tick>,
}

/// A code entry: its name as logged and its type (`JS`, `CODE`, `CPP`, `SHARED_LIB`).
#[derive(Deserialize)]
pub(crate) struct Code {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
}

/// A tick: its time in µs, the VM state, and its stack of (code index or -1, offset or
/// address) pairs, leaf first.
#[derive(Deserialize)]
pub(crate) struct Tick {
    pub(crate) tm: i64,
    #[serde(default)]
    pub(crate) vm: i64,
    #[serde(default)]
    pub(crate) s: Vec<i64>,
}

/// True when `bytes` are a JSON object starting with V8's `code` entries (each with a logged
/// `type`).
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    let first_key = head.iter().position(|&b| b == b'"').map(|at| &head[at..]);
    crate::speedscope::looks_like_json(bytes)
        && first_key.is_some_and(|key| key.starts_with(b"\"code\""))
        && ["SHARED_LIB", "CPP", "JS", "CODE"].iter().any(|kind| {
            has(format!("\"type\": \"{kind}\"").as_bytes()) || has(format!("\"type\":\"{kind}\"").as_bytes())
        })
}

/// Reads a preprocessed V8 tick log. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::new(NAME, format!("not a preprocessed V8 tick log: {e}")))?;
    profile_set(&file, NAME, max_depth, budget)
}

/// The ticks of `file` as one profile, `main`; errors name `format`.
pub(crate) fn profile_set(
    file: &File,
    format: &'static str,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<ProfileSet, FormatError> {
    let (tree, order) = read(file, max_depth, budget).map_err(|e| e.named(format))?;
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: "main".into(), units: "nanoseconds".into(), tree, time_order: Some(order) }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// How V8 names its VM states (`StateTag`), for ticks without a stack.
fn state_name(vm: i64) -> String {
    let name = match vm {
        0 => "JS",
        1 => "GC",
        2 => "PARSER",
        3 => "BYTECODE_COMPILER",
        4 => "COMPILER",
        5 => "OTHER",
        6 => "EXTERNAL",
        7 => "ATOMICS_WAIT",
        8 => "IDLE",
        9 => "LOGGING",
        _ => return format!("(VM state {vm})"),
    };
    format!("({name})")
}

/// A code entry's frame name.
fn code_name(code: &Code) -> String {
    if code.kind != "JS" {
        return code.name.clone();
    }
    // `function url:line:column`, the function empty when anonymous.
    let (function, location) = code.name.rsplit_once(' ').unwrap_or((code.name.as_str(), ""));
    if !function.trim().is_empty() {
        return function.trim().to_string();
    }
    // V8's location here counts lines from 1; `(anonymous) url:line` as in CPU profiles.
    let without_column = location.rsplit_once(':').map_or(location, |(rest, _)| rest);
    if without_column.is_empty() { "(anonymous)".to_string() } else { format!("(anonymous) {without_column}") }
}

/// The ticks of `file` into a tree in nanoseconds, and their time order.
pub(crate) fn read(file: &File, max_depth: usize, budget: &mut DecodeBudget) -> Result<(CallTree, TimeOrder), Failure> {
    let names: Vec<String> = file.code.iter().map(code_name).collect();
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    // Ticks in time order: their weights are the gaps between them.
    let mut order_of_ticks: Vec<usize> = (0..file.ticks.len()).collect();
    order_of_ticks.sort_by_key(|&i| file.ticks[i].tm);
    let origin = order_of_ticks.first().map_or(0, |&i| file.ticks[i].tm);
    let mut order = TimeOrder::default();
    let mut total = 0u64;
    let mut last_gap = 1000i128;
    let nanos = |micros: i128, what: &dyn Fn() -> String| -> Result<u64, String> {
        micros
            .checked_mul(1000)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("{} ({micros} µs) is negative or beyond 64 bits of nanoseconds", what()))
    };
    for (k, &i) in order_of_ticks.iter().enumerate() {
        let tick = &file.ticks[i];
        if !tick.s.len().is_multiple_of(2) {
            return Err(format!("tick {i}'s stack `s` has an odd length ({})", tick.s.len()).into());
        }
        let gap = match order_of_ticks.get(k + 1) {
            Some(&next) => i128::from(file.ticks[next].tm) - i128::from(tick.tm),
            None => last_gap,
        };
        last_gap = gap;
        let weight = nanos(gap, &|| format!("the gap after tick {i}"))?;
        budget.spend_frames(1 + tick.s.len() as u64 / 2)?;
        let mut node = ROOT;
        let mut depth = 0;
        let mut push = |tree: &mut CallTree, name: &str| {
            if depth < max_depth {
                node = tree.child(node, name);
                depth += 1;
            }
        };
        if tick.s.is_empty() {
            push(&mut tree, &state_name(tick.vm));
        }
        for pair in tick.s.chunks_exact(2).rev() {
            let (index, offset) = (pair[0], pair[1]);
            if index < 0 {
                push(&mut tree, &format!("{offset:#x}"));
                continue;
            }
            let name = usize::try_from(index).ok().and_then(|index| names.get(index)).ok_or_else(|| {
                format!("tick {i} names code entry {index}, but there are {} code entries", names.len())
            })?;
            push(&mut tree, name);
        }
        if tick.vm == 1 && !tick.s.is_empty() {
            push(&mut tree, "(garbage collector)");
        }
        budget.spend_growth(&tree, &mut mark)?;
        total =
            total.checked_add(weight).ok_or_else(|| "the ticks add up beyond 64 bits of nanoseconds".to_string())?;
        tree.add_self(node, weight);
        let at = nanos(i128::from(tick.tm) - i128::from(origin), &|| format!("the time of tick {i}"))?;
        order.push(node, at, weight);
    }
    Ok((tree, order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    const CODE: &str = r#""code": [
        {"name": "/usr/lib/libc.so.6", "type": "SHARED_LIB"},
        {"name": "main /tmp/a.js:3:14", "type": "JS", "kind": "Unopt", "func": 0},
        {"name": "fib /tmp/a.js:1:13", "type": "JS", "kind": "Opt", "func": 1},
        {"name": " /tmp/a.js:1:1", "type": "JS", "kind": "Unopt"},
        {"name": "ArrayPrototypePush", "type": "CODE", "kind": "Builtin"}]"#;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| folded::print(&p.tree.to_flat())).collect()
    }

    #[test]
    fn ticks_weigh_the_gap_to_the_next_tick_and_stacks_read_leaf_first() {
        // Ticks at 100, 130, 110 and 150 µs (out of order), the last weighing the gap before it.
        let file = format!(
            r#"{{{CODE}, "ticks": [
                {{"tm": 100, "vm": 0, "s": [2, 10, 1, 4, 3, 0]}},
                {{"tm": 130, "vm": 8, "s": []}},
                {{"tm": 110, "vm": 1, "s": [1, 4, 3, 0]}},
                {{"tm": 150, "vm": 0, "s": [-1, 4096, 4, 0, 1, 4]}}],
            "functions": [], "scripts": []}}"#
        );
        assert!(looks_like(file.as_bytes()));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "nanoseconds");
        assert_eq!(
            folded_of(&set),
            "(IDLE) 20000\n(anonymous) /tmp/a.js:1;main;(garbage collector) 20000\n(anonymous) /tmp/a.js:1;main;fib 10000\nmain;ArrayPrototypePush;0x1000 20000\n"
        );
        let order = set.parts[0].time_order.as_ref().unwrap();
        let starts: Vec<u64> = order.samples.iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 10_000, 30_000, 50_000]);
        assert_eq!(folded_of(&parse(file.as_bytes(), 1).unwrap()).lines().count(), 3, "cut to their root frame");
    }

    #[test]
    fn broken_logs_name_the_format_and_what_is_wrong() {
        for (ticks, says) in [
            (r#"[{"tm": 1, "s": [9, 0]}]"#, "code entry 9"),
            (r#"[{"tm": 1, "s": [1]}]"#, "odd length"),
            (r#"[{"tm": -9223372036854775808, "s": []}, {"tm": 9223372036854775807, "s": []}]"#, "beyond 64 bits"),
            (r#"[{"tm": "soon", "s": []}]"#, "not a preprocessed V8 tick log"),
        ] {
            let file = format!(r#"{{{CODE}, "ticks": {ticks}}}"#);
            let e = parse(file.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{ticks}: {e}");
        }
    }

    #[test]
    fn many_ticks_stop_at_the_budget() {
        let ticks: Vec<String> = (0..5000).map(|i| format!(r#"{{"tm": {i}, "s": [1, 0]}}"#)).collect();
        let file = format!(r#"{{{CODE}, "ticks": [{}]}}"#, ticks.join(","));
        let e = parse_budgeted(file.as_bytes(), 64, &mut DecodeBudget::new(1000, u64::MAX, 1)).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_ticks_never_panic_and_keep_their_time(
            ticks in proptest::collection::vec((0i64..1_000_000, 0i64..10, proptest::collection::vec(-1i64..6, 0..8)), 1..40)
        ) {
            let ticks: Vec<String> = ticks
                .iter()
                .map(|(tm, vm, s)| {
                    let s: Vec<String> = s.iter().flat_map(|&i| [i.to_string(), "7".to_string()]).collect();
                    format!(r#"{{"tm": {tm}, "vm": {vm}, "s": [{}]}}"#, s.join(","))
                })
                .collect();
            let file = format!(r#"{{{CODE}, "ticks": [{}]}}"#, ticks.join(","));
            match parse(file.as_bytes(), 4) {
                Ok(set) => {
                    // The time order covers the tree's time, tick by tick.
                    for part in &set.parts {
                        let order = part.time_order.as_ref().unwrap();
                        prop_assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
                    }
                }
                Err(e) => prop_assert!(e.reason.contains("code entry"), "{}", e),
            }
        }
    }
}
