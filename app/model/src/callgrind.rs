//! callgrind's profile format (<https://valgrind.org/docs/manual/cl-format.html>), as
//! `valgrind --tool=callgrind` and other tools (KCachegrind's converters, php's xdebug) write it.
//!
//! A callgrind file is a call graph, not stacks: the cost each function spends itself (its cost
//! lines) and the inclusive cost of each call from one function to another (a `calls=` line and
//! the cost line after it, attributed to the callee). Kiln unfolds the graph into a tree from the
//! functions nobody calls: a function's inclusive cost is split among its callers in proportion
//! to what each call cost, and within each caller, into its self cost and its calls, so that
//! every node's total is exactly what its parent's call to it cost. A call back into a function
//! already on the path is counted as self time of the caller (callgrind's inclusive costs
//! already hold the recursion). Each event type (`events: Ir Dr …`) is one profile, in that
//! event's unit.
//!
//! Name compression (`fn=(12) name`, later `fn=(12)`) is understood for files, functions and
//! objects; positions (`positions: instr line`) may be absolute, relative (`+3`, `-2`) or
//! repeated (`*`). Anything malformed (a cost that is not a whole number below 2^64, a
//! compressed name never defined, `calls=` without `cfn=`, costs that overflow) is an error
//! naming the line.

use std::collections::HashMap;

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "callgrind";

/// Call paths unfolded per event type at most, whatever the budget: a call graph's paths grow
/// exponentially with its depth.
pub const MAX_PATHS: u64 = 4_000_000;

/// True when `bytes` start like a callgrind file: the `# callgrind format` line, or an
/// `events:` line among the header lines before the first cost.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    for line in head.split(|&b| b == b'\n').map(trim).filter(|l| !l.is_empty()).take(64) {
        if line.starts_with(b"# callgrind format") || line.starts_with(b"events:") {
            return true;
        }
        let header = line.starts_with(b"#")
            || line.iter().position(|&b| b == b':').is_some_and(|colon| {
                colon > 0 && line[..colon].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            });
        if !header {
            return false;
        }
    }
    false
}

fn trim(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

/// Reads a callgrind file. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// The call graph of one file, every cost a vector with one entry per event type.
#[derive(Default)]
struct Graph {
    events: Vec<String>,
    names: Vec<String>,
    by_key: HashMap<String, usize>,
    self_cost: Vec<Vec<u64>>,
    /// Calls from each function: callee and inclusive cost.
    calls: Vec<Vec<(usize, Vec<u64>)>>,
    called: Vec<bool>,
}

impl Graph {
    /// The function known by `key` (its compressed id, or its name), shown as `name`.
    fn function(&mut self, key: String, name: &str) -> usize {
        if let Some(&f) = self.by_key.get(&key) {
            return f;
        }
        let f = self.names.len();
        self.names.push(name.to_string());
        self.by_key.insert(key, f);
        self.self_cost.push(vec![0; self.events.len()]);
        self.calls.push(Vec::new());
        self.called.push(false);
        f
    }
}

/// Adds `costs` into `into`, checked.
fn add(into: &mut [u64], costs: &[u64], line: usize) -> Result<(), FormatError> {
    for (sum, &c) in into.iter_mut().zip(costs) {
        *sum = sum
            .checked_add(c)
            .ok_or_else(|| FormatError::new(NAME, format!("line {line}: costs add up beyond 2^64")))?;
    }
    Ok(())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|e| FormatError::new(NAME, format!("not UTF-8 text: {e}")))?;
    let mut graph = Graph::default();
    let mut positions = 1usize;
    // Compressed names per kind: functions, and files/objects (only checked, not used).
    let mut fn_names: HashMap<String, String> = HashMap::new();
    let mut other_names: HashMap<(u8, String), String> = HashMap::new();
    let mut current: Option<usize> = None;
    let mut callee: Option<usize> = None;
    // Set by `calls=`: the next cost line is the call's inclusive cost.
    let mut pending_call: Option<usize> = None;
    let mut costs: Vec<u64> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let n = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        let fail = |reason: String| FormatError::new(NAME, format!("line {n}: {reason}"));
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.as_bytes()[0];
        if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'*') {
            if graph.events.is_empty() {
                return Err(fail("a cost line before the `events:` line".into()));
            }
            let mut fields = line.split_ascii_whitespace();
            for p in 0..positions {
                let field = fields.next().ok_or_else(|| fail(format!("expected {positions} positions, found {p}")))?;
                let ok = field == "*"
                    || field.strip_prefix(['+', '-']).unwrap_or(field).strip_prefix("0x").map_or_else(
                        || field.strip_prefix(['+', '-']).unwrap_or(field).bytes().all(|b| b.is_ascii_digit()),
                        |hex| hex.bytes().all(|b| b.is_ascii_hexdigit()),
                    );
                if !ok {
                    return Err(fail(format!("position `{field}` is not a number, `+n`, `-n` or `*`")));
                }
            }
            costs.clear();
            for field in fields {
                let cost: u64 =
                    field.parse().map_err(|_| fail(format!("cost `{field}` is not a whole number below 2^64")))?;
                costs.push(cost);
            }
            if costs.len() > graph.events.len() {
                return Err(fail(format!("{} costs for {} event types", costs.len(), graph.events.len())));
            }
            costs.resize(graph.events.len(), 0);
            budget.spend_frames(1).map_err(|e| FormatError::exhausted(NAME, e))?;
            let caller = current.ok_or_else(|| fail("a cost line before any `fn=`".into()))?;
            match pending_call.take() {
                Some(to) => {
                    let edges = &mut graph.calls[caller];
                    match edges.iter_mut().find(|(g, _)| *g == to) {
                        Some((_, sum)) => add(sum, &costs, n)?,
                        None => edges.push((to, costs.clone())),
                    }
                    graph.called[to] = true;
                }
                None => add(&mut graph.self_cost[caller], &costs, n)?,
            }
            continue;
        }
        if pending_call.is_some() {
            return Err(fail("a `calls=` line must be followed by its cost line".into()));
        }
        if let Some((key, value)) = line.split_once('=') {
            let name_of = |value: &str,
                           table: &mut dyn FnMut(&str, Option<&str>) -> Option<String>|
             -> Result<String, FormatError> {
                // `(id) name` defines, `(id)` refers back, a bare name is itself.
                match value.strip_prefix('(').and_then(|v| v.split_once(')')) {
                    Some((id, rest)) => {
                        let rest = rest.trim();
                        table(id, (!rest.is_empty()).then_some(rest))
                            .ok_or_else(|| fail(format!("compressed name ({id}) is used before it is defined")))
                    }
                    None => Ok(value.trim().to_string()),
                }
            };
            match key {
                "fn" | "cfn" => {
                    let mut compressed = None;
                    let name = name_of(value, &mut |id, def| {
                        compressed = Some(id.to_string());
                        match def {
                            Some(def) => {
                                fn_names.insert(id.to_string(), def.to_string());
                                Some(def.to_string())
                            }
                            None => fn_names.get(id).cloned(),
                        }
                    })?;
                    // callgrind gives each function of each object and file its own id: two
                    // `(below main)` of two files are two functions (shown under one name).
                    let f = graph.function(compressed.map_or_else(|| name.clone(), |id| format!("({id})")), &name);
                    if key == "fn" {
                        current = Some(f);
                    } else {
                        callee = Some(f);
                    }
                }
                "fl" | "fi" | "fe" | "cfi" | "cfl" | "ob" | "cob" => {
                    let kind = if key.ends_with('b') { b'o' } else { b'f' };
                    name_of(value, &mut |id, def| match def {
                        Some(def) => {
                            other_names.insert((kind, id.to_string()), def.to_string());
                            Some(def.to_string())
                        }
                        None => other_names.get(&(kind, id.to_string())).cloned(),
                    })?;
                }
                "calls" => {
                    let count = value.split_ascii_whitespace().next().unwrap_or_default();
                    count
                        .parse::<u64>()
                        .map_err(|_| fail(format!("call count `{count}` is not a whole number below 2^64")))?;
                    pending_call =
                        Some(callee.take().ok_or_else(|| fail("`calls=` without a `cfn=` before it".into()))?);
                }
                "jump" | "jcnd" => {}
                _ => return Err(fail(format!("unknown line `{key}=`"))),
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "events" => {
                    if !graph.names.is_empty() {
                        return Err(fail("`events:` after the first function".into()));
                    }
                    graph.events = value.split_ascii_whitespace().map(str::to_string).collect();
                    if graph.events.is_empty() {
                        return Err(fail("`events:` names no event type".into()));
                    }
                }
                "positions" => {
                    positions = value.split_ascii_whitespace().count();
                    if positions == 0 || value.split_ascii_whitespace().any(|p| !matches!(p, "line" | "instr" | "addr"))
                    {
                        return Err(fail(format!("`positions:{value}`: expected `line`, `instr` or both")));
                    }
                }
                _ => {}
            }
            continue;
        }
        return Err(fail(format!(
            "`{}` is neither a header, a `key=` line nor a cost line",
            line.chars().take(40).collect::<String>()
        )));
    }
    if pending_call.is_some() {
        return Err(FormatError::new(NAME, "the file ends after a `calls=` line, before its cost"));
    }
    if graph.events.is_empty() {
        return Err(FormatError::new(NAME, "no `events:` line"));
    }
    let mut parts = Vec::new();
    for (event, name) in graph.events.iter().enumerate() {
        let tree = unfold(&graph, event, max_depth, budget)?;
        if !tree.is_empty() {
            parts.push(Part { name: name.clone(), units: name.clone(), tree, time_order: None });
        }
    }
    Ok(ProfileSet { split: Split::EventTypes, parts })
}

/// Inclusive cost of every function for `event`: its self cost and its calls.
fn inclusive(graph: &Graph, f: usize, event: usize) -> u128 {
    u128::from(graph.self_cost[f][event]) + graph.calls[f].iter().map(|(_, c)| u128::from(c[event])).sum::<u128>()
}

/// The call graph as a tree for one event type.
fn unfold(graph: &Graph, event: usize, max_depth: usize, budget: &mut DecodeBudget) -> Result<CallTree, FormatError> {
    let exhausted = |e| FormatError::exhausted(NAME, e);
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let mut paths = 0u64;
    // Work: function, value its node gets, parent node, depth, functions on the path.
    let mut work: Vec<(usize, u64, NodeId, usize, Vec<usize>)> = Vec::new();
    let roots: Vec<usize> = (0..graph.names.len()).filter(|&f| !graph.called[f]).collect();
    for &f in roots.iter().rev() {
        let value = u64::try_from(inclusive(graph, f, event)).map_err(|_| {
            FormatError::new(NAME, format!("the inclusive cost of `{}` is beyond 2^64", graph.names[f]))
        })?;
        work.push((f, value, ROOT, 0, Vec::new()));
    }
    while let Some((f, value, parent, depth, mut path)) = work.pop() {
        if value == 0 {
            continue;
        }
        paths += 1;
        if paths > MAX_PATHS {
            return Err(FormatError::new(
                NAME,
                format!("the call graph unfolds into more than {MAX_PATHS} call paths"),
            ));
        }
        budget.spend_frames(1).map_err(exhausted)?;
        let node = if depth < max_depth { tree.child(parent, &graph.names[f]) } else { parent };
        budget.spend_growth(&tree, &mut mark).map_err(exhausted)?;
        let whole = inclusive(graph, f, event).max(1);
        path.push(f);
        let mut given = 0u64;
        for (g, cost) in &graph.calls[f] {
            // This node's share of the call: value × call cost / inclusive, never above value.
            let share = (u128::from(value) * u128::from(cost[event]) / whole) as u64;
            if share == 0 || path.contains(g) {
                continue;
            }
            given += share;
            work.push((*g, share, node, depth + 1, path.clone()));
        }
        tree.add_self(node, value.saturating_sub(given));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> Vec<(String, String)> {
        set.parts.iter().map(|p| (p.name.clone(), folded::print(&p.tree.to_flat()))).collect()
    }

    /// Written by hand from the format's documentation: main calls work twice (once through
    /// helper), work calls itself.
    const FILE: &str = "# callgrind format
version: 1
creator: hand
positions: line
events: Ir Dr

fl=(1) a.c
fn=(1) main
10 5 1
cfn=(2) work
calls=1 20
11 100 10
cfn=(3) helper
calls=1 30
12 60 6

fn=(3)
30 10 1
cfi=(1)
cfn=(2)
calls=2 20
+1 50 5

fn=(2)
20 120 14
cfn=(2)
calls=1 20
* 30 1
";

    #[test]
    fn calls_give_the_callee_its_inclusive_cost_and_each_event_is_a_profile() {
        let set = parse(FILE.as_bytes(), 64).unwrap();
        assert_eq!(set.split, Split::EventTypes);
        // work costs 150 Ir inclusive (120 self, 30 in its recursive call): main's 100 and
        // helper's 50 are split 120:30 into self time and the recursive call, counted as self.
        assert_eq!(
            folded_of(&set),
            [
                ("Ir".to_string(), "main 5\nmain;helper 10\nmain;helper;work 50\nmain;work 100\n".to_string()),
                ("Dr".to_string(), "main 1\nmain;helper 1\nmain;helper;work 5\nmain;work 10\n".to_string()),
            ]
        );
        assert_eq!(set.parts[0].units, "Ir");
        assert_eq!(set.merged().unwrap().0.total(), 165);
        assert_eq!(set.parts[1].tree.total(), 17);
    }

    #[test]
    fn shared_callees_split_their_cost_among_callers() {
        let file = "events: Ir\nfn=a\n1 10\ncfn=c\ncalls=1 1\n1 30\nfn=b\n1 10\ncfn=c\ncalls=1 1\n1 10\nfn=c\n1 20\ncfn=d\ncalls=1 1\n1 20\nfn=d\n1 20\n";
        let set = parse(file.as_bytes(), 64).unwrap();
        // c costs 40 inclusive, half in d: a's 30 is 15 + 15, b's 10 is 5 + 5.
        assert_eq!(folded_of(&set)[0].1, "a 10\na;c 15\na;c;d 15\nb 10\nb;c 5\nb;c;d 5\n");
    }

    #[test]
    fn broken_files_name_the_format_and_the_line() {
        let cases = [
            ("events: Ir\nfn=a\n1 x\n", "line 3: cost `x` is not a whole number"),
            ("events: Ir\nfn=a\n1 18446744073709551616\n", "line 3: cost"),
            ("events: Ir\nfn=a\n1 18446744073709551615\n2 1\n", "line 4: costs add up beyond 2^64"),
            ("events: Ir\nfn=(4)\n", "line 2: compressed name (4) is used before it is defined"),
            ("events: Ir\nfn=a\ncalls=1 2\n1 1\n", "line 3: `calls=` without a `cfn=`"),
            ("events: Ir\nfn=a\ncfn=b\ncalls=1 2\nfn=c\n", "line 5: a `calls=` line must be followed by its cost line"),
            ("events: Ir\nfn=a\ncfn=b\ncalls=1 2\n", "ends after a `calls=` line"),
            ("events: Ir\n1 1\n", "line 2: a cost line before any `fn=`"),
            ("version: 1\nfn=a\n1 1\n", "line 3: a cost line before the `events:` line"),
            ("events: Ir\nfn=a\n1 1 2\n", "line 3: 2 costs for 1 event types"),
            ("events: Ir\nfn=a\nx1 1\n", "line 3: `x1 1` is neither"),
            ("events: Ir\npositions: column\n", "line 2: `positions: column`"),
            ("events:\n", "line 1: `events:` names no event type"),
            ("version: 1\n", "no `events:` line"),
            ("events: Ir\nbogus=1\n", "unknown line `bogus=`"),
        ];
        for (file, needle) in cases {
            let err = parse(file.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("callgrind: "), "{err}");
            assert!(err.reason.contains(needle), "{file:?}: {err}");
        }
        let err = parse(b"events: Ir\xff\n", 64).unwrap_err();
        assert!(err.to_string().starts_with("callgrind: not UTF-8"), "{err}");
    }

    #[test]
    fn deep_and_exponential_graphs_stay_within_bounds() {
        // A chain of 10 000 calls: no recursion, depth cut at 64, every cost kept.
        let mut file = String::from("events: Ir\n");
        let n = 10_000;
        for i in 0..n {
            file.push_str(&format!("fn=f{i}\n1 1\ncfn=f{}\ncalls=1 1\n1 {}\n", i + 1, n - i));
        }
        file.push_str(&format!("fn=f{n}\n1 1\n"));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), n as u64 + 1);
        assert_eq!(set.parts[0].tree.node_count(), 65);
        // Each of 40 layers calls both functions of the next: 2^40 paths, refused by name.
        let mut diamond = String::from("events: Ir\n");
        for i in 0..40 {
            for side in ["a", "b"] {
                diamond.push_str(&format!(
                    "fn={side}{i}\n1 1\ncfn=a{}\ncalls=1 1\n1 1000000000\ncfn=b{}\ncalls=1 1\n1 1000000000\n",
                    i + 1,
                    i + 1
                ));
            }
        }
        diamond.push_str("fn=a40\n1 1000000000\nfn=b40\n1 1000000000\nfn=main\n1 1\ncfn=a0\ncalls=1 1\n1 1000000000\n");
        let err = parse(diamond.as_bytes(), 64).unwrap_err();
        assert!(err.reason.contains("call paths"), "{err}");
        let err = parse_budgeted(diamond.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_call_graphs_never_panic(
            calls in proptest::collection::vec((0u8..6, 0u8..6, 0u64..1000), 0..16),
            selfs in proptest::collection::vec(0u64..1000, 6),
        ) {
            let mut file = String::from("events: Ir\n");
            for f in 0..6u8 {
                file.push_str(&format!("fn=f{f}\n1 {}\n", selfs[f as usize]));
                for &(_, to, cost) in calls.iter().filter(|c| c.0 == f) {
                    file.push_str(&format!("cfn=f{to}\ncalls=1 1\n1 {cost}\n"));
                }
            }
            if let Ok(set) = parse(file.as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
