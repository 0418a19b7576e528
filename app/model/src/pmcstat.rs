//! FreeBSD `pmcstat -G` call graphs (hwpmc's sampled callchains, `pmcstat -R samples.pmc -G
//! out.txt`), as pmcstat(8) writes them: for each event a header `@ event [N samples]`, then
//! for each function where samples landed a line `percent%  [count]  function @ module`, its
//! callers below it, each indented one space more than its callee, with the share of the
//! callee's samples that came through it. The tree is inverted: a line's callers partition
//! (some of) its samples, and the samples no listed caller accounts for stop at the line
//! (their callchain ends there). `@ module` is written where the module changes.
//!
//! Read into one profile per event, in samples, each stack from the outermost caller to the
//! function the samples landed in.

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "pmcstat";

/// The event a section header names (`@ inst_retired.any [35705 samples]`).
fn header(line: &str) -> Option<&str> {
    let rest = line.trim_end().strip_prefix("@ ")?;
    let (event, count) = rest.rsplit_once(" [")?;
    let count = count.strip_suffix(" samples]")?;
    count.bytes().all(|b| b.is_ascii_digit()).then_some(event.trim())
}

/// True when the first line is a section header.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let first = head.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty()).unwrap_or_default();
    std::str::from_utf8(first).ok().and_then(|line| header(line.trim_end_matches('\r'))).is_some()
}

/// Reads a call graph. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// One line of a section: its indentation, sample count and function.
fn entry(line: &str) -> Option<(usize, u64, &str)> {
    let name_start = line.len() - line.trim_start().len();
    let mut rest = line.trim_start();
    let percent_end = rest.find('%')?;
    rest[..percent_end].parse::<f64>().ok()?;
    rest = rest[percent_end + 1..].trim_start().strip_prefix('[')?;
    let close = rest.find(']')?;
    let count = rest[..close].parse().ok()?;
    let function = rest[close + 1..].trim();
    let function = function.split_once(" @ ").map_or(function, |(name, _module)| name.trim_end());
    (!function.is_empty()).then_some((name_start, count, function))
}

/// The stacks of one section: every line's count less its callers', from the outermost caller.
struct Section<'a> {
    event: &'a str,
    tree: CallTree,
    /// The open lines, the sampled function first: (name, count, callers' counts so far).
    open: Vec<(&'a str, u64, u64)>,
}

impl Section<'_> {
    /// Closes the open lines down to `level`, each adding the samples that stop at it.
    fn close_to(&mut self, level: usize, max_depth: usize) {
        while self.open.len() > level {
            let (_, count, callers) = *self.open.last().expect("open");
            let own = count.saturating_sub(callers);
            if own > 0 {
                let mut node = ROOT;
                for (name, _, _) in self.open.iter().rev().take(max_depth) {
                    node = self.tree.child(node, name);
                }
                self.tree.add_self(node, own);
            }
            self.open.pop();
        }
    }
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let error = |reason: String| FormatError::new(NAME, reason);
    let text = std::str::from_utf8(bytes).map_err(|e| error(format!("not UTF-8 text: {e}")))?;
    let mut sections: Vec<Section> = Vec::new();
    let mut base = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| error(format!("line {}: {reason}", number + 1));
        if let Some(event) = header(line) {
            if let Some(section) = sections.last_mut() {
                section.close_to(0, max_depth);
            }
            sections.push(Section { event, tree: CallTree::new(), open: Vec::new() });
            continue;
        }
        let section = sections.last_mut().ok_or_else(|| at("a call graph starts with `@ event [N samples]`".into()))?;
        let (indent, count, function) = entry(line)
            .ok_or_else(|| at(format!("expected `percent%  [samples]  function`, not `{}`", line.trim())))?;
        if section.open.is_empty() {
            base = indent;
        }
        let level = indent.checked_sub(base).filter(|&l| l <= section.open.len()).ok_or_else(|| {
            at(format!("`{function}` is indented {indent} spaces, not a caller of the line above it"))
        })?;
        let mut mark = TreeSize::of(&section.tree);
        section.close_to(level, max_depth);
        budget.spend_frames(level as u64 + 1).map_err(|e| FormatError::exhausted(NAME, e))?;
        budget.spend_growth(&section.tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
        if let Some((callee, callee_count, callers)) = section.open.last_mut() {
            *callers = callers.saturating_add(count);
            if *callers > *callee_count {
                return Err(at(format!("`{callee}`'s callers have {callers} samples, more than its {callee_count}")));
            }
        }
        section.open.push((function, count, 0));
    }
    let mut parts = Vec::new();
    for mut section in sections {
        let mut mark = TreeSize::of(&section.tree);
        section.close_to(0, max_depth);
        budget.spend_growth(&section.tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
        if !section.tree.is_empty() {
            parts.push(Part {
                name: section.event.to_string(),
                units: "samples".into(),
                tree: section.tree,
                time_order: None,
            });
        }
    }
    Ok(ProfileSet { split: Split::EventTypes, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| format!("# {}\n{}", p.name, folded::print(&p.tree.to_flat()))).collect()
    }

    const GRAPH: &str = concat!(
        "@ cpu_clk_unhalted.thread_p [30 samples]\r\n",
        "\r\n",
        "60.00%  [18]     memcpy @ /lib/libc.so.7\r\n",
        " 66.67%  [12]      copy_block @ /usr/bin/app\r\n",
        "  100.0%  [12]       main\r\n",
        " 22.22%  [4]      main\r\n",
        "40.00%  [12]     main\r\n",
        "\r\n",
        "@ inst_retired.any [5 samples]\r\n",
        "100.0%  [5]     main @ /usr/bin/app\r\n",
    );

    #[test]
    fn callers_partition_their_callees_samples_and_the_rest_stop_there() {
        assert!(looks_like(GRAPH.as_bytes()));
        let set = parse(GRAPH.as_bytes(), 64).unwrap();
        assert_eq!(set.split, Split::EventTypes);
        // memcpy's 18: 12 from copy_block (from main), 4 from main, 2 with no caller listed.
        assert_eq!(
            folded_of(&set),
            "# cpu_clk_unhalted.thread_p\nmain 12\nmain;copy_block;memcpy 12\nmain;memcpy 4\nmemcpy 2\n\
             # inst_retired.any\nmain 5\n"
        );
        assert_eq!(set.parts[0].tree.total(), 30, "the header's count");
        assert_eq!(parse(GRAPH.as_bytes(), 1).unwrap().parts[0].tree.total(), 30);
    }

    #[test]
    fn broken_graphs_name_the_format_the_line_and_what_is_wrong() {
        for (graph, says) in [
            ("50.0%  [3]  f\n", "line 1: a call graph starts with `@ event [N samples]`"),
            ("@ e [3 samples]\n100.0%  [3]  f\n   100.0%  [3]  g\n", "line 3: `g` is indented 3 spaces"),
            (
                "@ e [3 samples]\n100.0%  [3]  f\n 100.0%  [4]  g\n",
                "line 3: `f`'s callers have 4 samples, more than its 3",
            ),
            ("@ e [3 samples]\n100.0%  [x]  f\n", "line 2: expected `percent%  [samples]  function`"),
            ("@ e [3 samples]\n100.0%  [3]  f\n 50.0%  [2]  g\n 50.0%  [2]  h\n", "line 4: `f`'s callers have 4"),
        ] {
            let e = parse(graph.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{graph:?}: {e}");
        }
        assert!(!looks_like(b"main;work 3\n") && !looks_like(b"@ e [3]\n"));
        let many: String = (0..5000).map(|_| "100.0%  [1]  f\n").collect();
        let e = parse_budgeted(format!("@ e [1 samples]\n{many}").as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1))
            .unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_graphs_never_panic(rows in proptest::collection::vec((0usize..5, 0u64..50), 0..30)) {
            let body: String =
                rows.iter().map(|(indent, count)| format!("{}50.0%  [{count}]  f{indent}\n", " ".repeat(*indent))).collect();
            if let Ok(set) = parse(format!("@ e [9 samples]\n{body}").as_bytes(), 3) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
