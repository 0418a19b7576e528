//! Instruments' "deep copy" of a call tree (macOS: select the call tree, Edit ▸ Deep Copy, or
//! ⇧⌘C), pasted into a file: tab-separated text, a header row naming the columns, then one row
//! per call-tree node in preorder. The `Symbol Name` column (`Symbol Names` in newer
//! Instruments) is the function, indented one space per level below the first row's; the
//! weight column is the node's total, with its share of the whole: `Weight` or `Running
//! Time` (`4.93 s  100.0%`, `846.00 ms`, `1234.0ms`) for time, `Bytes Used` (`1.50 MB
//! 12.3%`) for allocations. Other columns (`Self Weight`, `Source Path`, …) are not needed.
//!
//! A node's own value is its total less its children's, never below zero (the copy rounds
//! each total to what it shows, so children can add up to a little more than their parent,
//! which then keeps nothing of its own). Time is read in nanoseconds, allocations
//! in bytes (Instruments' KB are 1024 bytes).

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "instruments";

/// The weight columns Kiln reads, and whether they are time (else bytes).
const WEIGHTS: [(&str, bool); 3] = [("Weight", true), ("Running Time", true), ("Bytes Used", false)];

/// True when the first line is a deep copy's header: tab-separated, with the symbol column
/// and a weight column.
pub fn looks_like(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty()).unwrap_or_default();
    let cells: Vec<&[u8]> = first.trim_ascii_end().split(|&b| b == b'\t').map(<[u8]>::trim_ascii).collect();
    cells.len() >= 2
        && cells.iter().any(|c| *c == b"Symbol Name" || *c == b"Symbol Names")
        && cells.iter().any(|c| WEIGHTS.iter().any(|(name, _)| *c == name.as_bytes()))
}

/// Reads a deep copy. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// A weight as the copy writes it (`4.93 s  100.0%`) in nanoseconds (time) or bytes.
fn weight(cell: &str, time: bool) -> Option<u64> {
    let cell = cell.trim();
    let number_end = cell.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(cell.len());
    let number: f64 = cell[..number_end].replace(',', "").parse().ok()?;
    let rest = cell[number_end..].trim_start();
    let unit = &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())];
    let scale = match (time, unit) {
        (true, "ns") => 1.0,
        (true, "µs" | "us") => 1e3,
        (true, "ms") => 1e6,
        (true, "s") => 1e9,
        (true, "min") => 60e9,
        (true, "h") => 3600e9,
        (false, "Bytes" | "bytes" | "B") => 1.0,
        (false, "KB") => 1024.0,
        (false, "MB") => 1024.0 * 1024.0,
        (false, "GB") => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value = (number * scale).round();
    (value.is_finite() && (0.0..1.8e19).contains(&value)).then_some(value as u64)
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let error = |reason: String| FormatError::new(NAME, reason);
    let text = std::str::from_utf8(bytes).map_err(|e| error(format!("not UTF-8 text: {e}")))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| error("no header row".into()))?;
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let symbol = columns
        .iter()
        .position(|c| *c == "Symbol Name" || *c == "Symbol Names")
        .ok_or_else(|| error("the header row has no `Symbol Name` column".into()))?;
    let (weight_column, (weight_name, time)) = columns
        .iter()
        .enumerate()
        .find_map(|(i, c)| WEIGHTS.iter().find(|(name, _)| name == c).map(|w| (i, *w)))
        .ok_or_else(|| error("the header row has no `Weight`, `Running Time` or `Bytes Used` column".into()))?;

    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    // The open nodes, root first: (node, its total, its children's totals so far).
    let mut open: Vec<(NodeId, u64, u64)> = Vec::new();
    let mut base: Option<usize> = None;
    let close = |tree: &mut CallTree, (node, total, children): (NodeId, u64, u64)| {
        tree.add_self(node, total.saturating_sub(children));
    };
    let mut sum = 0u64;
    for (number, line) in lines {
        let cells: Vec<&str> = line.split('\t').collect();
        let name_cell = cells.get(symbol).copied().unwrap_or_default().trim_end();
        let name = name_cell.trim_start();
        if name.is_empty() {
            return Err(error(format!("line {}: no symbol in column {}", number + 1, symbol + 1)));
        }
        let indent = name_cell.len() - name.len();
        let base = *base.get_or_insert(indent);
        let level = indent.checked_sub(base).ok_or_else(|| {
            error(format!("line {}: `{name}` is indented less than the first row, the tree's root level", number + 1))
        })?;
        if level > open.len() {
            return Err(error(format!(
                "line {}: `{name}` is indented {level} levels, under a row {} deep",
                number + 1,
                open.len()
            )));
        }
        let cell = cells.get(weight_column).copied().unwrap_or_default();
        let value = weight(cell, time).ok_or_else(|| {
            error(format!("line {}: the {weight_name} `{}` is not a number with a unit", number + 1, cell.trim()))
        })?;
        while open.len() > level {
            let node = open.pop().expect("deeper than level");
            close(&mut tree, node);
        }
        budget.spend_frames(1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let parent = match open.last_mut() {
            Some((node, _, children)) => {
                *children = children.saturating_add(value);
                *node
            }
            None => {
                sum = sum.checked_add(value).ok_or_else(|| error("the roots add up beyond 64 bits".into()))?;
                ROOT
            }
        };
        // Past the depth limit a row's value stays with its ancestor at the limit.
        let node = if open.len() < max_depth { tree.child(parent, name) } else { parent };
        budget.spend_growth(&tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
        open.push((node, value, 0));
    }
    while let Some(node) = open.pop() {
        close(&mut tree, node);
    }
    let units = if time { "nanoseconds" } else { "bytes" };
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: weight_name.to_string(), units: units.into(), tree, time_order: None }]
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

    #[test]
    fn totals_less_their_children_are_each_nodes_own() {
        let copy = "Weight\tSelf Weight\tSymbol Name\r\n\
            4.93 s  100.0%\t0 s\t   start\r\n\
            4.93 s  99.9%\t0 s\t    main\r\n\
            2.45 s   49.7%\t846.00 ms\t     delta()\r\n\
            797.00 ms   16.2%\t786.00 ms\t      alpha()\r\n\
            1.00 ms   0.0%\t1.00 ms\t       _malloc_zone_malloc\r\n\
            1.00 ms   0.0%\t1.00 ms\t     gamma()\r\n\
            2.1ms   0.0%\t2.1ms\t   dyld4::start(dyld4::KernelArgs*)\r\n";
        assert!(looks_like(copy.as_bytes()));
        let set = parse(copy.as_bytes(), 64).unwrap();
        assert_eq!((set.parts[0].name.as_str(), set.parts[0].units.as_str()), ("Weight", "nanoseconds"));
        assert_eq!(
            folded_of(&set),
            "dyld4::start(dyld4::KernelArgs*) 2100000\n\
             start;main 2479000000\n\
             start;main;delta() 1653000000\n\
             start;main;delta();alpha() 796000000\n\
             start;main;delta();alpha();_malloc_zone_malloc 1000000\n\
             start;main;gamma() 1000000\n"
        );
        assert_eq!(set.parts[0].tree.total(), 4_932_100_000, "the roots' totals as the copy shows them");
        let shallow = parse(copy.as_bytes(), 2).unwrap();
        assert_eq!(shallow.parts[0].tree.total(), 4_932_100_000);
        assert_eq!(folded_of(&shallow).lines().count(), 2);
    }

    #[test]
    fn allocations_are_bytes() {
        let copy = "Bytes Used\tCount\tSymbol Name\n1.50 MB  100.0%\t3\tmain\n1.00 KB  0.1%\t1\t malloc\n";
        let set = parse(copy.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "bytes");
        assert_eq!(folded_of(&set), "main 1571840\nmain;malloc 1024\n");
    }

    #[test]
    fn broken_copies_name_the_format_the_line_and_what_is_wrong() {
        for (copy, says) in [
            (
                "Weight\tSymbol Name\n1 s\tmain\n   2 ms\t   deep\n",
                "line 3: `deep` is indented 3 levels, under a row 1 deep",
            ),
            ("Weight\tSymbol Name\n1 s\t main\n1 s\tless\n", "line 3: `less` is indented less than the first row"),
            ("Weight\tSymbol Name\nsoon\tmain\n", "line 2: the Weight `soon` is not a number with a unit"),
            ("Weight\tSymbol Name\n1 parsec\tmain\n", "the Weight `1 parsec`"),
            ("Weight\tSymbol Name\n1 s\t\n", "line 2: no symbol in column 2"),
            ("Weight\tSource\n", "no `Symbol Name` column"),
            ("Self\tSymbol Name\n", "no `Weight`, `Running Time` or `Bytes Used` column"),
            ("Bytes Used\tSymbol Name\n3 ms\tmain\n", "the Bytes Used `3 ms`"),
        ] {
            let e = parse(copy.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{copy:?}: {e}");
        }
        assert!(!looks_like(b"main;work 3\n") && !looks_like(b"Weight Symbol Name\n"));
        let many: String = (0..5000).map(|_| "1 ms\tf\n").collect();
        let e = parse_budgeted(format!("Weight\tSymbol Name\n{many}").as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1))
            .unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_trees_never_panic(rows in proptest::collection::vec((0usize..6, 0u32..5000, 0usize..3), 0..30)) {
            let units = ["ms", "s", "µs"];
            let body: String = rows
                .iter()
                .map(|(indent, value, unit)| format!("{value}.00 {}  1.0%\t{}f{indent}\n", units[*unit], " ".repeat(*indent)))
                .collect();
            if let Ok(set) = parse(format!("Weight\tSymbol Name\n{body}").as_bytes(), 3) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
