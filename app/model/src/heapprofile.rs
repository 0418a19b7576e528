//! V8 sampling heap profiles: the `.heapprofile` files `node --heap-prof` and Chrome DevTools'
//! "Allocation sampling" write
//! (<https://chromedevtools.github.io/devtools-protocol/tot/HeapProfiler/#type-SamplingHeapProfile>),
//! read into a call tree in bytes.
//!
//! A profile is one tree nested in JSON: `head` is V8's `(root)` node, each node a `callFrame`,
//! its `selfSize` (bytes of the sampled allocations made there) and its `children`; `samples`
//! list the sampled allocations themselves and are not needed for the tree. The nesting is as
//! deep as the program's stacks, so the file is read with [`crate::nested_tree`] (no recursion)
//! rather than serde. Frames are named as in CPU profiles ([`crate::cpuprofile`]).

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::{Failure, frame_name};
use crate::json_events::Event;
use crate::nested_tree::{self, NestedTree, Place, whole};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "heapprofile";

/// True when `bytes` are a JSON object whose start has V8's `head` node with a `callFrame`
/// and a `selfSize`.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    crate::speedscope::looks_like_json(bytes) && has(b"\"head\"") && has(b"\"callFrame\"") && has(b"\"selfSize\"")
}

/// Reads a `.heapprofile`. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let nodes = read_nodes(bytes, budget).map_err(|e| e.named(NAME))?;
    let tree = build(&nodes, max_depth, budget).map_err(|e| e.named(NAME))?;
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name: "heap".into(), units: "bytes".into(), tree, time_order: None }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

/// One node of the profile's tree, in the file's order (a parent before its children).
#[derive(Default)]
struct Node {
    parent: Option<usize>,
    function_name: String,
    url: String,
    line_number: i64,
    self_size: u64,
}

/// A node's `callFrame`: the only container of the format's own (its node's index).
#[derive(Clone, Copy)]
struct CallFrame(usize);

impl NestedTree for Vec<Node> {
    type Own = CallFrame;
    const WHAT: &'static str = "a heap profile";
    const ROOT: &'static str = "head";

    fn node(&mut self, parent: Option<usize>) {
        self.push(Node { parent, ..Node::default() });
    }

    fn open(
        &mut self,
        within: Place<CallFrame>,
        key: Option<&str>,
        is_object: bool,
        _: &mut DecodeBudget,
    ) -> Result<Option<CallFrame>, Failure> {
        Ok(match (within, key, is_object) {
            (Place::Node(node), Some("callFrame"), true) => Some(CallFrame(node)),
            _ => None,
        })
    }

    fn value(&mut self, within: Place<CallFrame>, key: Option<&str>, value: Event) -> Result<(), Failure> {
        match (within, key) {
            (Place::Own(CallFrame(node)), Some(field)) => {
                let node = &mut self[node];
                match (field, value) {
                    ("functionName", Event::String(text)) => node.function_name = text.into_owned(),
                    ("url", Event::String(text)) => node.url = text.into_owned(),
                    ("lineNumber", Event::Number(n)) => node.line_number = whole(n, "a `lineNumber`")?,
                    _ => {}
                }
            }
            (Place::Node(node), Some("selfSize")) => {
                let Event::Number(n) = value else {
                    return Err("a node's `selfSize` is not a number".to_string().into());
                };
                self[node].self_size = match n.parse::<u64>() {
                    Ok(size) => size,
                    Err(_) => {
                        let size = whole(n, "a `selfSize`")?;
                        u64::try_from(size).map_err(|_| format!("a node's `selfSize` is negative ({size})"))?
                    }
                };
            }
            _ => {}
        }
        Ok(())
    }
}

/// The nodes of the document's tree, in document order.
fn read_nodes(bytes: &[u8], budget: &mut DecodeBudget) -> Result<Vec<Node>, Failure> {
    let mut nodes = Vec::new();
    nested_tree::read(bytes, &mut nodes, budget)?;
    Ok(nodes)
}

/// The call tree of the nodes: V8's `(root)` head is the tree's root.
fn build(nodes: &[Node], max_depth: usize, budget: &mut DecodeBudget) -> Result<CallTree, Failure> {
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    // (tree node, depth) of each node; parents come first in document order.
    let mut placed: Vec<(NodeId, usize)> = Vec::with_capacity(nodes.len());
    let mut total = 0u64;
    for (i, node) in nodes.iter().enumerate() {
        let is_root = node.parent.is_none() && node.function_name == "(root)";
        let (above, depth) = match node.parent {
            Some(parent) => {
                let (above, depth) = placed[parent];
                (above, depth + 1)
            }
            None => (ROOT, usize::from(!is_root)),
        };
        let here = if is_root || depth > max_depth {
            above
        } else {
            tree.child(above, &frame_name(&node.function_name, &node.url, node.line_number))
        };
        budget.spend_growth(&tree, &mut mark)?;
        total = total
            .checked_add(node.self_size)
            .ok_or_else(|| format!("the sizes add up beyond 2^64 bytes (at node {i})"))?;
        tree.add_self(here, node.self_size);
        placed.push((here, depth));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| folded::print(&p.tree.to_flat())).collect()
    }

    fn node(name: &str, size: u64, children: &[String]) -> String {
        format!(
            r#"{{"callFrame":{{"functionName":"{name}","scriptId":"1","url":"file:///a.js","lineNumber":4,"columnNumber":2}},"selfSize":{size},"id":1,"children":[{}]}}"#,
            children.join(",")
        )
    }

    #[test]
    fn self_sizes_become_bytes_under_their_stacks() {
        let leaf = node("makeRow", 4096, &[]);
        let anonymous = node("", 100, &[]);
        let build_table = node("buildTable", 0, &[leaf, anonymous]);
        let file = format!(
            r#"{{"head":{},"samples":[{{"size":4096,"nodeId":3,"ordinal":1}}]}}"#,
            node("(root)", 0, &[build_table])
        );
        assert!(looks_like(file.as_bytes()));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "bytes");
        assert_eq!(folded_of(&set), "buildTable;(anonymous) file:///a.js:5 100\nbuildTable;makeRow 4096\n");
        assert_eq!(folded_of(&parse(file.as_bytes(), 1).unwrap()), "buildTable 4196\n");
    }

    #[test]
    fn stacks_far_deeper_than_json_readers_nest_are_read() {
        let depth = 20_000;
        let mut file = String::from(r#"{"head":"#);
        for i in 0..depth {
            file.push_str(&format!(r#"{{"callFrame":{{"functionName":"f{}"}},"selfSize":1,"children":["#, i % 7));
        }
        for _ in 0..depth {
            file.push_str("]}");
        }
        file.push('}');
        let set = parse(file.as_bytes(), 50_000).unwrap();
        let tree = set.parts[0].tree.to_flat();
        assert_eq!(tree.total[0], depth as u64);
        let cut = parse(file.as_bytes(), 100).unwrap();
        assert_eq!(cut.parts[0].tree.to_flat().total[0], depth as u64, "cut stacks keep their bytes");
    }

    #[test]
    fn broken_profiles_name_the_format_and_what_is_wrong() {
        for (file, says) in [
            (r#"{"samples":[]}"#, "no `head`"),
            (r#"{"head":{"callFrame":{},"selfSize":-5,"children":[]}}"#, "negative"),
            (r#"{"head":{"callFrame":{},"selfSize":"big","children":[]}}"#, "not a number"),
            (r#"{"head":{"callFrame":{},"selfSize":1e300,"children":[]}}"#, "64 bits"),
            (r#"{"head":{"callFrame":{},"selfSize":1,"children":[3]}}"#, "not a node"),
            (r#"{"head":{"callFrame":{},"selfSize":1,"children":[{"#, "ends early"),
            (r#"[1]"#, "not an array"),
            (
                r#"{"head":{"callFrame":{},"selfSize":18446744073709551615,"children":[{"callFrame":{},"selfSize":1,"children":[]}]}}"#,
                "beyond 2^64",
            ),
        ] {
            let e = parse(file.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{file}: {e}");
        }
    }

    #[test]
    fn many_nodes_stop_at_the_budget() {
        let kids: Vec<String> = (0..5000).map(|i| node(&format!("f{i}"), 1, &[])).collect();
        let file = format!(r#"{{"head":{}}}"#, node("(root)", 0, &kids));
        let mut budget = DecodeBudget::new(1000, u64::MAX, 1);
        let e = parse_budgeted(file.as_bytes(), 64, &mut budget).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_trees_keep_their_bytes(sizes in proptest::collection::vec((0u64..1 << 40, 0usize..4), 1..64)) {
            // Each node nests under the node `back` positions before it (or the root).
            let mut file = String::from(r#"{"head":{"callFrame":{"functionName":"(root)"},"selfSize":0,"children":["#);
            let mut open = 0;
            for (i, &(size, back)) in sizes.iter().enumerate() {
                let close = back.min(open);
                for _ in 0..close {
                    file.push_str("]}");
                }
                open -= close;
                if i > 0 && !file.ends_with('[') {
                    file.push(',');
                }
                file.push_str(&format!(r#"{{"callFrame":{{"functionName":"f{i}"}},"selfSize":{size},"children":["#));
                open += 1;
            }
            for _ in 0..open {
                file.push_str("]}");
            }
            file.push_str("]}}");
            let set = parse(file.as_bytes(), 8).unwrap();
            let total: u64 = sizes.iter().map(|&(s, _)| s).sum();
            let got = set.parts.first().map_or(0, |p| p.tree.to_flat().total[0]);
            prop_assert_eq!(got, total);
        }
    }
}
