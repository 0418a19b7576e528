//! GHC's JSON profiles, as a Haskell program built with `-prof` writes them when run with
//! `+RTS -pj`: a table of `cost_centres` (`id`, `label`, `module`, `src_loc`) and the `profile`,
//! one tree of cost-centre stacks nested in JSON, each node a cost centre `id` with the `ticks`
//! and the bytes (`alloc`) spent in it. Read into two profiles: time, the ticks times the
//! file's `tick_interval` (µs) in nanoseconds, and allocation in bytes.
//!
//! Frames are named `Module.label` as inferno names the cost centres of GHC's text `.prof`
//! files (the `ghcprof` format), so a program's text and JSON profiles read alike. The tree is
//! read with [`crate::nested_tree`], without recursion, however deep the stacks nest.

use std::collections::HashMap;

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::Failure;
use crate::json_events::Event;
use crate::nested_tree::{self, NestedTree, Place};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "ghcprof_json";

/// True when `bytes` are a JSON object that starts like GHC's `-pj` output: the program, its
/// tick interval and its cost centres.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(65536)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    crate::speedscope::looks_like_json(bytes)
        && has(b"\"program\"")
        && has(b"\"tick_interval\"")
        && has(b"\"cost_centres\"")
}

/// Reads a GHC JSON profile. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let file = read_file(bytes, budget).map_err(|e| e.named(NAME))?;
    let (time, alloc) = build(&file, max_depth, budget).map_err(|e| e.named(NAME))?;
    let parts = [("time", "nanoseconds", time), ("alloc", "bytes", alloc)]
        .into_iter()
        .filter(|(_, _, tree)| !tree.is_empty())
        .map(|(name, units, tree)| Part { name: name.into(), units: units.into(), tree, time_order: None })
        .collect();
    Ok(ProfileSet { split: Split::EventTypes, parts })
}

/// A cost centre.
#[derive(Default)]
struct CostCentre {
    label: String,
    module: String,
}

/// One node of the profile's tree, in file order (a parent before its children).
#[derive(Default)]
struct Node {
    parent: Option<usize>,
    cost_centre: u64,
    ticks: u64,
    alloc: u64,
}

#[derive(Default)]
struct File {
    tick_interval_us: Option<u64>,
    cost_centres: HashMap<u64, CostCentre>,
    nodes: Vec<Node>,
}

/// The format's own containers: the `cost_centres` list and one cost centre in it.
#[derive(Clone, Copy)]
enum CostCentres {
    List,
    Centre,
}

/// The file as it is read: a cost centre's fields are held until its object ends (its `id`
/// may come after its label).
#[derive(Default)]
struct Reading {
    file: File,
    centre: (Option<u64>, CostCentre),
}

impl NestedTree for Reading {
    type Own = CostCentres;
    const WHAT: &'static str = "a GHC profile";
    const ROOT: &'static str = "profile";

    fn node(&mut self, parent: Option<usize>) {
        self.file.nodes.push(Node { parent, ..Node::default() });
    }

    fn open(
        &mut self,
        within: Place<CostCentres>,
        key: Option<&str>,
        is_object: bool,
        budget: &mut DecodeBudget,
    ) -> Result<Option<CostCentres>, Failure> {
        Ok(match (within, key, is_object) {
            (Place::Document, Some("cost_centres"), false) => Some(CostCentres::List),
            (Place::Own(CostCentres::List), None, true) => {
                budget.spend_frames(1)?;
                self.centre = (None, CostCentre::default());
                Some(CostCentres::Centre)
            }
            _ => None,
        })
    }

    fn close(&mut self, own: CostCentres) -> Result<(), Failure> {
        if let CostCentres::Centre = own {
            let id = self.centre.0.ok_or_else(|| "a cost centre has no `id`".to_string())?;
            self.file.cost_centres.insert(id, std::mem::take(&mut self.centre.1));
        }
        Ok(())
    }

    fn value(&mut self, within: Place<CostCentres>, key: Option<&str>, value: Event) -> Result<(), Failure> {
        let centre = &mut self.centre;
        match (within, key, value) {
            (Place::Document, Some("tick_interval"), Event::Number(n)) => {
                self.file.tick_interval_us = Some(count(n, "`tick_interval`")?);
            }
            (Place::Own(CostCentres::Centre), Some("id"), Event::Number(n)) => centre.0 = Some(count(n, "an `id`")?),
            (Place::Own(CostCentres::Centre), Some("label"), Event::String(text)) => centre.1.label = text.into_owned(),
            (Place::Own(CostCentres::Centre), Some("module"), Event::String(text)) => {
                centre.1.module = text.into_owned()
            }
            (Place::Node(node), Some(field @ ("id" | "ticks" | "alloc")), Event::Number(n)) => {
                let value = count(n, &format!("a node's `{field}`"))?;
                let node = &mut self.file.nodes[node];
                match field {
                    "id" => node.cost_centre = value,
                    "ticks" => node.ticks = value,
                    _ => node.alloc = value,
                }
            }
            (Place::Node(_), Some(field @ ("id" | "ticks" | "alloc")), _) => {
                return Err(format!("a node's `{field}` is not a number").into());
            }
            _ => {}
        }
        Ok(())
    }
}

fn read_file(bytes: &[u8], budget: &mut DecodeBudget) -> Result<File, Failure> {
    let mut reading = Reading::default();
    nested_tree::read(bytes, &mut reading, budget)?;
    Ok(reading.file)
}

/// A count as GHC writes them: a whole number from 0 to 2^64 - 1.
fn count(text: &str, what: &str) -> Result<u64, String> {
    text.parse::<u64>().map_err(|_| format!("{what} is not a whole number from 0 to 2^64 - 1: {text}"))
}

/// The time and allocation trees of the file's nodes.
fn build(file: &File, max_depth: usize, budget: &mut DecodeBudget) -> Result<(CallTree, CallTree), Failure> {
    let tick_ns = file
        .tick_interval_us
        .ok_or_else(|| "there is no `tick_interval`".to_string())?
        .checked_mul(1000)
        .ok_or_else(|| "the `tick_interval` is beyond 64 bits of nanoseconds".to_string())?;
    let (mut time, mut alloc) = (CallTree::new(), CallTree::new());
    let (mut time_mark, mut alloc_mark) = (TreeSize::of(&time), TreeSize::of(&alloc));
    // (time node, alloc node, depth) of each node; parents come first in file order.
    let mut placed: Vec<(NodeId, NodeId, usize)> = Vec::with_capacity(file.nodes.len());
    let (mut time_total, mut alloc_total) = (0u64, 0u64);
    for (i, node) in file.nodes.iter().enumerate() {
        let (above_time, above_alloc, depth) = match node.parent {
            Some(parent) => {
                let (t, a, depth) = placed[parent];
                (t, a, depth + 1)
            }
            None => (ROOT, ROOT, 1),
        };
        let (here_time, here_alloc) = if depth > max_depth {
            (above_time, above_alloc)
        } else {
            let centre = file
                .cost_centres
                .get(&node.cost_centre)
                .ok_or_else(|| format!("node {i} is of cost centre {}, which is not listed", node.cost_centre))?;
            let name = format!("{}.{}", centre.module, centre.label);
            (time.child(above_time, &name), alloc.child(above_alloc, &name))
        };
        budget.spend_growth(&time, &mut time_mark)?;
        budget.spend_growth(&alloc, &mut alloc_mark)?;
        let beyond = || format!("the time adds up beyond 64 bits of nanoseconds (at node {i})");
        let spent = node.ticks.checked_mul(tick_ns).ok_or_else(beyond)?;
        time_total = time_total.checked_add(spent).ok_or_else(beyond)?;
        alloc_total = alloc_total
            .checked_add(node.alloc)
            .ok_or_else(|| format!("the allocations add up beyond 2^64 bytes (at node {i})"))?;
        time.add_self(here_time, spent);
        alloc.add_self(here_alloc, node.alloc);
        placed.push((here_time, here_alloc, depth));
    }
    Ok((time, alloc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    const CENTRES: &str = r#""program": "p", "tick_interval": 1000, "cost_centres": [
        {"id": 1, "label": "MAIN", "module": "MAIN", "src_loc": "<built-in>", "is_caf": false},
        {"id": 2, "label": "main", "module": "Main", "src_loc": "a.hs:3:1", "is_caf": false},
        {"id": 3, "label": "fib", "module": "Main", "src_loc": "a.hs:5:1", "is_caf": false}]"#;

    fn file(profile: &str) -> String {
        format!(r#"{{{CENTRES}, "profile": {profile}}}"#)
    }

    fn node(id: u64, ticks: u64, alloc: u64, children: &[String]) -> String {
        format!(
            r#"{{"id": {id}, "entries": 1, "alloc": {alloc}, "ticks": {ticks}, "children": [{}]}}"#,
            children.join(",")
        )
    }

    #[test]
    fn ticks_become_time_and_allocations_bytes_per_stack() {
        let profile = node(1, 0, 8, &[node(2, 2, 100, &[node(3, 5, 4000, &[])])]);
        let text = file(&profile);
        assert!(looks_like(text.as_bytes()));
        let set = parse(text.as_bytes(), 64).unwrap();
        assert_eq!(set.split, Split::EventTypes);
        let printed: Vec<(String, String, String)> =
            set.parts.iter().map(|p| (p.name.clone(), p.units.clone(), folded::print(&p.tree.to_flat()))).collect();
        assert_eq!(
            printed,
            [
                (
                    "time".into(),
                    "nanoseconds".into(),
                    "MAIN.MAIN;Main.main 2000000\nMAIN.MAIN;Main.main;Main.fib 5000000\n".into()
                ),
                (
                    "alloc".into(),
                    "bytes".into(),
                    "MAIN.MAIN 8\nMAIN.MAIN;Main.main 100\nMAIN.MAIN;Main.main;Main.fib 4000\n".into()
                ),
            ]
        );
        let shallow = parse(text.as_bytes(), 2).unwrap();
        assert_eq!(folded::print(&shallow.parts[0].tree.to_flat()), "MAIN.MAIN;Main.main 7000000\n");
    }

    #[test]
    fn broken_profiles_name_the_format_and_what_is_wrong() {
        for (text, says) in [
            (format!(r#"{{{CENTRES}}}"#), "no `profile`"),
            (file(&node(9, 1, 1, &[])), "cost centre 9"),
            (file(r#"{"id": 1, "ticks": -1, "children": []}"#), "not a whole number"),
            (file(r#"{"id": 1, "ticks": "x", "children": []}"#), "not a number"),
            (file(r#"{"id": 1, "ticks": 1, "children": [7]}"#), "not a node"),
            (file(r#"{"id": 1, "ticks": 18446744073709551615, "children": []}"#), "beyond 64 bits"),
            (
                r#"{"program": "p", "cost_centres": [], "profile": {"id": 1, "children": []}}"#.to_string(),
                "no `tick_interval`",
            ),
            (file(&node(1, 1, 1, &[])).replace("]}}", "]"), "ends early"),
        ] {
            let e = parse(text.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn deep_stacks_read_without_recursion_and_many_nodes_stop_at_the_budget() {
        let depth = 20_000;
        let text = file(&format!(
            "{}{}",
            r#"{"id": 3, "ticks": 1, "alloc": 1, "children": ["#.repeat(depth),
            "]}".repeat(depth)
        ));
        let set = parse(text.as_bytes(), 100).unwrap();
        assert_eq!(set.parts[0].tree.total(), depth as u64 * 1_000_000);
        let wide = file(&node(1, 0, 0, &vec![node(3, 1, 1, &[]); 5000]));
        let e = parse_budgeted(wide.as_bytes(), 64, &mut DecodeBudget::new(1000, u64::MAX, 1)).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }
    }
}
