//! `perf script` output with timestamps, read per thread in time order.
//!
//! The flamegraph of a `perf script` file is inferno's collapse (the server's `perf_script`
//! format); this reader keeps what that drops, each sample's time, for the time-order view.
//! A sample is a header line (`comm pid/tid [cpu] seconds.fraction: [period] event:`) and its
//! stack, one frame a line, leaf first (`\taddr symbol+offset (dso)`), up to a blank line.
//! Frames are named as inferno names them: the symbol without its offset (nor a C++ argument
//! list, nor a JVM class's `L`), `[dso]` for an unknown symbol, and the command as the root
//! frame, so that a function selected in one view is found in the other.
//!
//! The Open page's thread picker reads the other way round: inferno's collapse with the thread
//! in its root frame, split by [`threads_of_collapsed`] into one part per thread in inferno's
//! values (samples, or the events' periods), which add up to the file's flamegraph. Both
//! readers name a thread alike ([`thread_name`]) and list threads in the same (name) order.
//!
//! perf samples at a rate, not continuously: a sample lasts until the thread's next one, but
//! no longer than the thread's typical interval (the median gap between its samples), so a
//! thread that sleeps shows a gap rather than one long sample. Its last sample lasts the
//! typical interval (1 ms for a thread sampled once). Values are nanoseconds.

use std::collections::{BTreeMap, HashMap};

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, FlatTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "perf_script";

/// A thread sampled once lasts this long, in nanoseconds.
const LONE_SAMPLE_NS: u64 = 1_000_000;

/// A thread's name as perf prints it, `comm pid/tid` (or `comm tid` when perf prints no pid),
/// with the command as inferno writes it in the root frame (spaces as `_`), so that the
/// threads of [`parse_budgeted`] and of [`threads_of_collapsed`] have the same names.
pub fn thread_name(command: &str, ids: &str) -> String {
    format!("{} {}", command.replace(' ', "_"), ids.strip_prefix("?/").unwrap_or(ids))
}

/// The header of a sample: the thread's command and ids (`pid/tid`) and the time in
/// nanoseconds, or `None` when `line` is not a header with a time.
fn header(line: &str) -> Option<(&str, &str, u64)> {
    if line.is_empty() || line.starts_with(char::is_whitespace) || line.starts_with('#') {
        return None;
    }
    // The time is the first token of digits, one `.` and digits ending in `:`.
    let mut offset = 0;
    for token in line.split(' ') {
        let start = offset;
        offset += token.len() + 1;
        let Some(time) = token.strip_suffix(':').and_then(nanos) else { continue };
        let before = line[..start].trim_end();
        // Drop a `[cpu]` column; what is left is the command and its pid/tid.
        let thread = match before.rsplit_once(' ') {
            Some((rest, cpu)) if cpu.starts_with('[') && cpu.ends_with(']') => rest.trim_end(),
            _ => before,
        };
        let (command, ids) = thread.rsplit_once(' ').map_or((thread, ""), |(command, ids)| (command.trim_end(), ids));
        return (!thread.is_empty()).then_some((command, ids, time));
    }
    None
}

/// `seconds.fraction` as nanoseconds, exactly.
fn nanos(text: &str) -> Option<u64> {
    let (seconds, fraction) = text.split_once('.')?;
    if seconds.is_empty() || fraction.is_empty() || fraction.len() > 9 {
        return None;
    }
    if !seconds.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = seconds.parse().ok()?;
    let part: u64 = fraction.parse().ok()?;
    whole.checked_mul(1_000_000_000)?.checked_add(part * 10u64.pow(9 - fraction.len() as u32))
}

/// A frame's name from its stack line (`addr symbol+offset (dso)`), as inferno names it.
fn frame_name(line: &str) -> String {
    let line = line.trim();
    let rest = line.split_once(char::is_whitespace).map_or("", |(_, rest)| rest.trim_start());
    let (symbol, dso) = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
        _ => (rest, ""),
    };
    let symbol = match symbol.rfind("+0x") {
        Some(i) => &symbol[..i],
        None => symbol,
    };
    if symbol.is_empty() || symbol == "[unknown]" {
        let file = dso.rsplit('/').next().unwrap_or(dso);
        return if file.is_empty() || file == "[unknown]" { "[unknown]".to_string() } else { format!("[{file}]") };
    }
    // As inferno tidies names: a C++ argument list goes (not an anonymous namespace), and a
    // JVM class name loses its `L` (`Lorg/pkg/Class` → `org/pkg/Class`).
    let symbol = match symbol.find('(') {
        Some(i) if !symbol[i..].starts_with("(anonymous namespace)") && i > 0 => &symbol[..i],
        _ => symbol,
    };
    let java = symbol.strip_prefix('L').filter(|rest| {
        let package = rest.split('/').next().unwrap_or("");
        rest.contains('/') && package.bytes().all(|b| b.is_ascii_lowercase())
    });
    // `;` separates frames in folded stacks: inferno writes it as `:`.
    java.unwrap_or(symbol).replace(';', ":")
}

/// True when the file starts as `perf script` output does, with times or without: a sample
/// header naming the thread's ids (`comm [pid/]tid … event:`), then an indented frame line that
/// starts with an address. Folded stacks, whose lines are never indented, do not.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64 << 10)];
    let text = std::str::from_utf8(head).unwrap_or_else(|e| {
        // Cut inside a character: the valid part (always valid UTF-8).
        std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
    });
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let (Some(header), Some(frame)) = (lines.next(), lines.next()) else { return false };
    let is_ids = |word: &str| {
        let (pid, tid) = word.split_once('/').unwrap_or(("0", word));
        [pid, tid].iter().all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    };
    let words: Vec<&str> = header.split_whitespace().collect();
    !header.starts_with(char::is_whitespace)
        && words.iter().skip(1).any(|w| is_ids(w))
        && words.iter().any(|w| w.ends_with(':'))
        && frame.starts_with(char::is_whitespace)
        && frame.split_whitespace().next().is_some_and(|address| address.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// True when the first sample header (within the first 64 KiB) carries a time: cheap enough
/// to run on every file the Open page reads.
pub fn looks_like_timed(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64 << 10)];
    let Ok(text) = std::str::from_utf8(head).or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()])) else {
        return false;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    // A header with a time, then a frame line.
    matches!((lines.next().map(header), lines.next()), (Some(Some(_)), Some(frame)) if frame.starts_with(char::is_whitespace))
}

/// One thread's samples as read: (time, stack node), in file order.
#[derive(Default)]
struct Thread {
    tree: CallTree,
    samples: Vec<(u64, NodeId)>,
}

/// Reads `bytes` within `budget`; stacks deeper than `max_depth` lose their leaf end. One
/// part per thread, in thread order, each with its time order.
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|e| FormatError::new(NAME, format!("not UTF-8 text: {e}")))?;
    let exhausted = |e| FormatError::exhausted(NAME, e);
    let mut threads: BTreeMap<String, Thread> = BTreeMap::new();
    let mut lines = text.lines().enumerate().peekable();
    let mut frames: Vec<String> = Vec::new();
    while let Some((number, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((command, ids, time)) = header(line) else {
            return Err(FormatError::new(
                NAME,
                format!(
                    "line {}: expected a sample header with a time (`comm pid [cpu] seconds.fraction: …`)",
                    number + 1
                ),
            ));
        };
        frames.clear();
        while let Some((_, frame)) = lines.next_if(|(_, l)| !l.trim().is_empty() && l.starts_with(char::is_whitespace))
        {
            frames.push(frame_name(frame));
        }
        budget.spend_frames(frames.len() as u64 + 1).map_err(exhausted)?;
        let thread = threads.entry(thread_name(command, ids)).or_default();
        let mut mark = TreeSize::of(&thread.tree);
        let mut node = thread.tree.child(ROOT, &command.replace(' ', "_"));
        for name in frames.iter().rev().take(max_depth.saturating_sub(1)) {
            node = thread.tree.child(node, name);
        }
        budget.spend_growth(&thread.tree, &mut mark).map_err(exhausted)?;
        thread.samples.push((time, node));
    }
    let mut parts = Vec::new();
    for (key, mut thread) in threads {
        thread.samples.sort_by_key(|&(time, _)| time);
        let mut gaps: Vec<u64> = thread.samples.windows(2).map(|w| w[1].0 - w[0].0).filter(|&g| g > 0).collect();
        gaps.sort_unstable();
        let typical = gaps.get(gaps.len() / 2).copied().unwrap_or(LONE_SAMPLE_NS);
        let origin = thread.samples.first().map_or(0, |&(time, _)| time);
        let mut order = TimeOrder::default();
        for (i, &(time, node)) in thread.samples.iter().enumerate() {
            let weight = thread.samples.get(i + 1).map_or(typical, |&(next, _)| (next - time).min(typical));
            thread.tree.add_self(node, weight);
            order.push(node, time - origin, weight);
        }
        if !thread.tree.is_empty() {
            parts.push(Part { name: key, units: "nanoseconds".into(), tree: thread.tree, time_order: Some(order) });
        }
    }
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// Splits inferno's collapse of a `perf script` file made with the thread in each stack's root
/// frame (`comm-pid/tid`, inferno's `include_tid`) into one part per thread, in name order,
/// named by [`thread_name`], whose root frame is the command alone as inferno's default
/// collapse writes it: the parts add up to that collapse, node for node, in its values (`units`:
/// samples, or the events' periods when perf printed them).
pub fn threads_of_collapsed(collapsed: &FlatTree, units: &str) -> ProfileSet {
    let mut trees: Vec<(String, CallTree)> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // Each node's thread (index in `trees`) and node in that thread's tree.
    let mut mapped: Vec<(usize, NodeId)> = Vec::with_capacity(collapsed.len());
    for i in 0..collapsed.len() {
        if i == 0 {
            mapped.push((usize::MAX, ROOT));
            continue;
        }
        let name = &collapsed.names[collapsed.name[i] as usize];
        let parent = collapsed.parent[i] as usize;
        let (thread, node) = if let Some(&(thread, above)) = mapped.get(parent).filter(|_| parent != 0) {
            (thread, trees[thread].1.child(above, name))
        } else {
            // `comm-pid/tid`: the ids hold no `-`, the command may.
            let (command, thread) = match name.rsplit_once('-') {
                Some((command, ids))
                    if !ids.is_empty() && ids.bytes().all(|b| b.is_ascii_digit() || b == b'/' || b == b'?') =>
                {
                    (command, thread_name(command, ids))
                }
                _ => (name.as_str(), name.clone()),
            };
            let thread = *by_name.entry(thread).or_insert_with_key(|thread| {
                trees.push((thread.clone(), CallTree::new()));
                trees.len() - 1
            });
            (thread, trees[thread].1.child(ROOT, command))
        };
        trees[thread].1.add_self(node, collapsed.self_value[i]);
        mapped.push((thread, node));
    }
    trees.sort_by(|a, b| a.0.cmp(&b.0));
    let parts = trees
        .into_iter()
        .filter(|(_, tree)| !tree.is_empty())
        .map(|(name, tree)| Part { name, units: units.to_string(), tree, time_order: None })
        .collect();
    ProfileSet { split: Split::Threads, parts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use crate::time_order::TimedProfile;
    use proptest::prelude::*;

    const SCRIPT: &str = "# a comment\n\
java 100/101 [000] 10.000000: 1 cycles: \n\
\tffff a::work+0x10 (/lib/libjvm.so)\n\
\tffff main (/bin/java)\n\
\n\
java 100/101 [001] 10.001000: cycles: \n\
\tffff [unknown] (/tmp/perf-100.map)\n\
\tffff main (/bin/java)\n\
\n\
java 100/102 [000] 10.000500: cycles: \n\
\tffff idle (/bin/java)\n\
\n\
java 100/101 [000] 10.005000: cycles: \n\
\tffff a::work+0x22 (/lib/libjvm.so)\n\
\tffff main (/bin/java)\n";

    #[test]
    fn samples_are_read_per_thread_in_time_order() {
        assert!(looks_like(SCRIPT.as_bytes()));
        assert!(looks_like(b"perf   977/977   [000] 7628263.042515: cycles: \n\tffffffff8104f45a native ([k])\n"));
        assert!(looks_like(b"java 25607 cycles:\n\t7f01 main (/bin/java)\n"));
        assert!(!looks_like(b"main;work 3\nmain;idle 1\n"));
        assert!(!looks_like(b"a 12 b;c: 5\nx;y 3\n"));
        assert!(looks_like_timed(SCRIPT.as_bytes()));
        assert!(!looks_like_timed(b"main;work 3\n"));
        assert!(!looks_like_timed(b"java 100 cycles:\n\tffff main (/bin/java)\n"));
        let set = parse_budgeted(SCRIPT.as_bytes(), 64, &mut DecodeBudget::unlimited()).unwrap();
        let names: Vec<&str> = set.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["java 100/101", "java 100/102"]);
        // Gaps of 1 ms and 4 ms: the typical interval is the median, 4 ms; the second sample
        // lasts until the third, capped at it; the last lasts it.
        let main = &set.parts[0];
        let timed = TimedProfile::new(&main.tree, main.time_order.as_ref().unwrap(), &main.units);
        let seen: Vec<(String, u64, u64)> = timed
            .samples
            .iter()
            .map(|s| {
                let path: Vec<&str> = timed.tree.path_to(s.stack).iter().map(|&n| timed.tree.name_of(n)).collect();
                (path.join(";"), s.start, s.weight)
            })
            .collect();
        let expect = [
            ("java;main;a::work", 0, 1_000_000),
            ("java;main;[perf-100.map]", 1_000_000, 4_000_000),
            ("java;main;a::work", 5_000_000, 4_000_000),
        ];
        assert_eq!(seen, expect.map(|(p, s, w)| (p.to_string(), s, w)));
        assert_eq!(folded::print(&timed.tree), "java;main;[perf-100.map] 4000000\njava;main;a::work 5000000\n");
        assert_eq!(set.parts[1].tree.total(), LONE_SAMPLE_NS);
    }

    #[test]
    fn inferno_collapse_by_thread_splits_into_threads_that_add_up_to_the_whole() {
        // What inferno's perf collapse writes with `include_tid` (command spaces as `_`; `?`
        // for a pid perf did not print), values in samples.
        let by_thread = "java-100/101;main;a::work 2\n\
java-100/101;main;[perf-100.map] 1\n\
java-100/102;idle 1\n\
V8_WorkerThread-?/25607;run 3\n\
my-tool-7/8;main 4\n";
        let tree = folded::parse(by_thread.as_bytes(), folded::LineFormat::Counted, folded::ParseLimits::default())
            .unwrap()
            .to_flat();
        let set = threads_of_collapsed(&tree, "samples");
        assert_eq!(set.split, Split::Threads);
        let seen: Vec<(&str, String, &str)> =
            set.parts.iter().map(|p| (p.name.as_str(), folded::print(&p.tree.to_flat()), p.units.as_str())).collect();
        let expect = [
            ("V8_WorkerThread 25607", "V8_WorkerThread;run 3\n"),
            ("java 100/101", "java;main;[perf-100.map] 1\njava;main;a::work 2\n"),
            ("java 100/102", "java;idle 1\n"),
            ("my-tool 7/8", "my-tool;main 4\n"),
        ];
        assert_eq!(seen, expect.map(|(n, f)| (n, f.to_string(), "samples")));
        // Merged, the threads are inferno's default collapse (the command alone at the root).
        let mut merged = CallTree::new();
        for part in &set.parts {
            merged.merge_tree(&part.tree);
        }
        assert_eq!(
            folded::print(&merged.to_flat()),
            "V8_WorkerThread;run 3\njava;idle 1\njava;main;[perf-100.map] 1\njava;main;a::work 2\nmy-tool;main 4\n"
        );
        // The reader of times names the same threads the same way, in the same order.
        let script = SCRIPT.replace("java 100/102", "V8 WorkerThread 25607");
        let timed = parse_budgeted(script.as_bytes(), 64, &mut DecodeBudget::unlimited()).unwrap();
        let names: Vec<&str> = timed.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["V8_WorkerThread 25607", "java 100/101"]);
        assert_eq!(folded::print(&timed.parts[0].tree.to_flat()), format!("V8_WorkerThread;idle {LONE_SAMPLE_NS}\n"));
    }

    #[test]
    fn a_line_that_is_not_a_sample_is_an_error_naming_it() {
        let err = parse_budgeted(b"java 100 cycles:\n", 64, &mut DecodeBudget::unlimited()).unwrap_err();
        assert!(err.to_string().starts_with("perf_script: line 1: expected a sample header"), "{err}");
        assert_eq!(nanos("1.5"), Some(1_500_000_000));
        assert_eq!(nanos("184694.229089"), Some(184_694_229_089_000));
        assert_eq!(nanos("1."), None);
        assert_eq!(nanos("99999999999999999999.1"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[a-z0-9 .:/\\[\\]\t\n+x()]{0,300}") {
            if let Ok(set) = parse_budgeted(text.as_bytes(), 8, &mut DecodeBudget::unlimited()) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                    let order = part.time_order.as_ref().unwrap();
                    prop_assert!(order.samples.windows(2).all(|w| w[0].end() <= w[1].start));
                }
            }
            let _ = looks_like_timed(text.as_bytes());
            let _ = looks_like(text.as_bytes());
        }

        #[test]
        fn any_collapse_splits_into_threads_that_add_up(text in "([a-z?/0-9-]{1,8}(;[a-z]{1,3}){0,3} [0-9]{1,3}\n){0,12}") {
            if let Ok(tree) = folded::parse(text.as_bytes(), folded::LineFormat::Counted, folded::ParseLimits::default()) {
                let set = threads_of_collapsed(&tree.to_flat(), "samples");
                let total: u64 = set.parts.iter().map(|p| p.tree.total()).sum();
                prop_assert_eq!(total, tree.total());
                prop_assert!(set.parts.windows(2).all(|w| w[0].name < w[1].name));
            }
        }
    }
}
