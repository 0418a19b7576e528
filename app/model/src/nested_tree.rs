//! Documents that nest one call tree in JSON, node inside node (V8's heap profiles and the
//! older `.cpuprofile`, GHC's JSON profiles), walked without recursion over
//! [`crate::json_events`]: the nesting is as deep as the profiled program's stacks.
//!
//! The walk is the same for every such format: the document is an object, the tree's root is
//! the object under one key, and each node holds its children in an array under `children`.
//! A format says what its root key is, what becomes of a new node, and reads the values (and
//! any containers of its own) it is handed.

use crate::budget::DecodeBudget;
use crate::cpuprofile::Failure;
use crate::json_events::{Event, Reader};

/// Where a value of the document lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place<Own> {
    /// Directly in the document's object.
    Document,
    /// In a node's object (the root, or an element of a node's `children`): its index.
    Node(usize),
    /// In a node's `children`.
    Children(usize),
    /// In a container the format keeps for itself ([`NestedTree::open`]).
    Own(Own),
    /// Anywhere else: read past.
    Other,
}

/// A format of one nested tree.
pub(crate) trait NestedTree {
    /// The format's own containers (a node's `callFrame`, the document's `samples`).
    type Own: Copy;
    /// The document, for messages: "a heap profile".
    const WHAT: &'static str;
    /// The key, in the document's object, of the tree's root node.
    const ROOT: &'static str;

    /// A new node: its parent's index, `None` for the root. Nodes are numbered from 0 in the
    /// order this is called (the document's: a parent before its children).
    fn node(&mut self, parent: Option<usize>);

    /// A container opened `within` a place under `key` (`None` in an array), which is not one
    /// of the tree's: the format's own, or `None` to read past it. What the format keeps of
    /// it spends `budget` as nodes do.
    fn open(
        &mut self,
        within: Place<Self::Own>,
        key: Option<&str>,
        is_object: bool,
        budget: &mut DecodeBudget,
    ) -> Result<Option<Self::Own>, Failure> {
        let _ = (within, key, is_object, budget);
        Ok(None)
    }

    /// One of the format's own containers ends.
    fn close(&mut self, own: Self::Own) -> Result<(), Failure> {
        let _ = own;
        Ok(())
    }

    /// A value that is not a container, `within` a place under `key` (`None` in an array).
    /// Never called for the elements of `children`, which must be nodes.
    fn value(&mut self, within: Place<Self::Own>, key: Option<&str>, value: Event) -> Result<(), Failure>;
}

/// Walks `bytes` into `format`, spending one frame of `budget` per node.
pub(crate) fn read<T: NestedTree>(bytes: &[u8], format: &mut T, budget: &mut DecodeBudget) -> Result<(), Failure> {
    let mut reader = Reader::new(bytes);
    let mut open: Vec<Place<T::Own>> = Vec::new();
    let mut key: Option<String> = None;
    let mut nodes = 0usize;
    let mut seen_root = false;
    let children_hold = || "a node's `children` holds a value that is not a node".to_string();
    while let Some(event) = reader.next_event().map_err(|e| format!("not {}: {e}", T::WHAT))? {
        let within = open.last().copied();
        let key_here = key.take();
        match event {
            Event::Key(name) => key = Some(name.into_owned()),
            Event::ObjectStart | Event::ArrayStart => {
                let is_object = event == Event::ObjectStart;
                let place = match (within, key_here.as_deref(), is_object) {
                    (None, _, true) => Place::Document,
                    (None, _, false) => return Err(format!("{} is a JSON object, not an array", T::WHAT).into()),
                    (Some(Place::Document), Some(root), true) if root == T::ROOT && !seen_root => {
                        seen_root = true;
                        budget.spend_frames(1)?;
                        format.node(None);
                        nodes += 1;
                        Place::Node(nodes - 1)
                    }
                    (Some(Place::Children(parent)), None, true) => {
                        budget.spend_frames(1)?;
                        format.node(Some(parent));
                        nodes += 1;
                        Place::Node(nodes - 1)
                    }
                    (Some(Place::Children(_)), None, false) => return Err(children_hold().into()),
                    (Some(Place::Node(node)), Some("children"), false) => Place::Children(node),
                    (Some(place), key, _) => {
                        format.open(place, key, is_object, budget)?.map_or(Place::Other, Place::Own)
                    }
                };
                open.push(place);
            }
            Event::ObjectEnd | Event::ArrayEnd => {
                if let Some(Place::Own(own)) = open.pop() {
                    format.close(own)?;
                }
            }
            value => match within {
                Some(Place::Children(_)) => return Err(children_hold().into()),
                Some(place) => format.value(place, key_here.as_deref(), value)?,
                None => return Err(format!("{} is a JSON object, not a single value", T::WHAT).into()),
            },
        }
    }
    if !seen_root {
        return Err(format!("there is no `{}` node", T::ROOT).into());
    }
    Ok(())
}

/// A JSON number as a whole number within 64 bits, as V8 and GHC write counts, sizes and lines
/// (`1e3` is accepted), or why not.
pub(crate) fn whole(text: &str, what: &str) -> Result<i64, String> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    match text.parse::<f64>() {
        Ok(n) if n.fract() == 0.0 && n.abs() < 9.0e18 => Ok(n as i64),
        _ => Err(format!("{what} is not a whole number within 64 bits: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format of nodes with a `name`, and a document-level `tags` array of its own.
    #[derive(Default)]
    struct Names {
        parents: Vec<Option<usize>>,
        names: Vec<String>,
        tags: Vec<String>,
        tags_closed: usize,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Tags;

    impl NestedTree for Names {
        type Own = Tags;
        const WHAT: &'static str = "a test tree";
        const ROOT: &'static str = "root";
        fn node(&mut self, parent: Option<usize>) {
            self.parents.push(parent);
            self.names.push(String::new());
        }
        fn open(
            &mut self,
            within: Place<Tags>,
            key: Option<&str>,
            is_object: bool,
            _: &mut DecodeBudget,
        ) -> Result<Option<Tags>, Failure> {
            Ok((within == Place::Document && key == Some("tags") && !is_object).then_some(Tags))
        }
        fn close(&mut self, _: Tags) -> Result<(), Failure> {
            self.tags_closed += 1;
            Ok(())
        }
        fn value(&mut self, within: Place<Tags>, key: Option<&str>, value: Event) -> Result<(), Failure> {
            match (within, key, value) {
                (Place::Node(n), Some("name"), Event::String(s)) => self.names[n] = s.into_owned(),
                (Place::Own(Tags), None, Event::String(s)) => self.tags.push(s.into_owned()),
                _ => {}
            }
            Ok(())
        }
    }

    fn walk(text: &str) -> Result<Names, String> {
        let mut names = Names::default();
        match read(text.as_bytes(), &mut names, &mut DecodeBudget::unlimited()) {
            Ok(()) => Ok(names),
            Err(Failure::Malformed(reason)) => Err(reason),
            Err(Failure::Exhausted(e)) => Err(format!("exhausted: {e:?}")),
        }
    }

    #[test]
    fn nodes_come_in_document_order_with_their_parents() {
        let text = r#"{"tags": ["a", "b"], "root": {"name": "r", "other": {"children": [{"name": "no"}]},
            "children": [{"name": "x", "children": [{"name": "y"}]}, {"children": [], "name": "z"}]}}"#;
        let names = walk(text).unwrap();
        assert_eq!(names.names, ["r", "x", "y", "z"]);
        assert_eq!(names.parents, [None, Some(0), Some(1), Some(0)]);
        assert_eq!((names.tags, names.tags_closed), (vec!["a".to_string(), "b".to_string()], 1));
    }

    #[test]
    fn only_the_first_root_is_the_tree() {
        let names = walk(r#"{"root": {"name": "a"}, "root": {"name": "b"}}"#).unwrap();
        assert_eq!(names.names, ["a"]);
    }

    #[test]
    fn what_is_not_such_a_tree_is_an_error() {
        for (text, says) in [
            ("[]", "is a JSON object, not an array"),
            ("3", "not a single value"),
            (r#"{"other": {}}"#, "there is no `root` node"),
            (r#"{"root": {"children": [3]}}"#, "holds a value that is not a node"),
            (r#"{"root": {"children": [[]]}}"#, "holds a value that is not a node"),
            (r#"{"root": {"children": [{}"#, "not a test tree"),
        ] {
            let reason = walk(text).err().unwrap_or_else(|| panic!("{text} was read"));
            assert!(reason.contains(says), "{text}: {reason}");
        }
    }

    #[test]
    fn each_node_spends_the_budget() {
        let text = r#"{"root": {"children": [{}, {}, {}]}}"#;
        // Three frames for four nodes.
        let mut budget = DecodeBudget::new(3, u64::MAX, 1);
        let result = read(text.as_bytes(), &mut Names::default(), &mut budget);
        assert!(matches!(result, Err(Failure::Exhausted(_))));
    }

    #[test]
    fn nesting_far_beyond_recursive_readers_limits_is_walked() {
        let depth = 100_000;
        let text = format!(r#"{{"root": {}{}}}"#, r#"{"children": ["#.repeat(depth), "]}".repeat(depth));
        // The innermost node has no closing array to hold: the last `{"children": [` opens an
        // empty list, so there are `depth` nodes.
        assert_eq!(walk(&text).unwrap().parents.len(), depth);
    }

    #[test]
    fn whole_numbers_as_written() {
        assert_eq!(whole("12", "n"), Ok(12));
        assert_eq!(whole("-3", "n"), Ok(-3));
        assert_eq!(whole("1e3", "n"), Ok(1000));
        assert!(whole("1.5", "n").is_err());
        assert!(whole("1e30", "n").unwrap_err().contains("within 64 bits"));
    }
}
