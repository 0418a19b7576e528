//! Comparing two trees: the union of their paths, each node carrying both sides' values.
//!
//! A path present on one side only is kept with zeros on the other, so each side's totals and
//! self values add up exactly as in its own tree; this is what Pyroscope's *double*
//! flamebearer and the differential flamegraph draw.

use std::collections::HashMap;

use crate::tree::{FlatTree, NodeId, ROOT, ROOT_NAME};

/// Two trees merged by path, in preorder columns like [`FlatTree`] (siblings in name order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffTree {
    /// Frame names, indexed by [`DiffTree::name`]; `names[0]` is the root's.
    pub names: Vec<String>,
    /// Name index of each node.
    pub name: Vec<u32>,
    /// Parent of each node (the root is its own parent).
    pub parent: Vec<NodeId>,
    /// Left side: samples in each node and its descendants.
    pub left_total: Vec<u64>,
    /// Left side: samples in each node itself.
    pub left_self: Vec<u64>,
    /// Right side: samples in each node and its descendants.
    pub right_total: Vec<u64>,
    /// Right side: samples in each node itself.
    pub right_self: Vec<u64>,
}

impl DiffTree {
    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.name.len()
    }

    /// True for a tree with no nodes.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// Total samples on the left.
    pub fn left_ticks(&self) -> u64 {
        self.left_total.first().copied().unwrap_or(0)
    }

    /// Total samples on the right.
    pub fn right_ticks(&self) -> u64 {
        self.right_total.first().copied().unwrap_or(0)
    }

    /// The frame name of `node`.
    pub fn name_of(&self, node: NodeId) -> &str {
        &self.names[self.name[node as usize] as usize]
    }

    /// One side as a plain tree (nodes with no samples on that side left out).
    pub fn side(&self, right: bool) -> FlatTree {
        let (total, self_value) =
            if right { (&self.right_total, &self.right_self) } else { (&self.left_total, &self.left_self) };
        let mut tree = crate::CallTree::new();
        let mut path: Vec<&str> = Vec::new();
        let mut depth = vec![0usize; self.len()];
        for i in 1..self.len() {
            depth[i] = depth[self.parent[i] as usize] + 1;
            path.truncate(depth[i] - 1);
            path.push(self.name_of(i as NodeId));
            if total[i] > 0 {
                tree.add_stack(path.iter().copied(), self_value[i]);
            }
        }
        tree.to_flat()
    }
}

/// The union of `left` and `right` by path.
pub fn diff(left: &FlatTree, right: &FlatTree) -> DiffTree {
    struct Node {
        name: u32,
        parent: NodeId,
        values: [u64; 4],
    }
    let mut names: Vec<String> = vec![ROOT_NAME.to_string()];
    let mut name_ids: HashMap<String, u32> = HashMap::from([(ROOT_NAME.to_string(), 0)]);
    let mut nodes = vec![Node { name: 0, parent: ROOT, values: [0; 4] }];
    let mut children: HashMap<(NodeId, u32), NodeId> = HashMap::new();
    for (side, tree) in [left, right].into_iter().enumerate() {
        let name_map: Vec<u32> = tree
            .names
            .iter()
            .map(|n| {
                *name_ids.entry(n.clone()).or_insert_with(|| {
                    names.push(n.clone());
                    (names.len() - 1) as u32
                })
            })
            .collect();
        let mut mapped: Vec<NodeId> = Vec::with_capacity(tree.len());
        for i in 0..tree.len() {
            let here = if i == 0 {
                ROOT
            } else {
                let parent = mapped[tree.parent[i] as usize];
                let name = name_map[tree.name[i] as usize];
                let next = nodes.len() as NodeId;
                *children.entry((parent, name)).or_insert_with(|| {
                    nodes.push(Node { name, parent, values: [0; 4] });
                    next
                })
            };
            mapped.push(here);
            let values = &mut nodes[here as usize].values;
            values[side * 2] += tree.total[i];
            values[side * 2 + 1] += tree.self_value[i];
        }
    }

    // Preorder with siblings in name order, as FlatTree has them.
    let mut kids: Vec<Vec<NodeId>> = (0..nodes.len()).map(|_| Vec::new()).collect();
    for (i, n) in nodes.iter().enumerate().skip(1) {
        kids[n.parent as usize].push(i as NodeId);
    }
    for list in &mut kids {
        list.sort_by(|a, b| names[nodes[*a as usize].name as usize].cmp(&names[nodes[*b as usize].name as usize]));
    }
    let mut out = DiffTree::default();
    let mut name_remap: Vec<u32> = vec![u32::MAX; names.len()];
    let mut stack: Vec<(NodeId, NodeId)> = vec![(ROOT, ROOT)];
    while let Some((node, parent)) = stack.pop() {
        let n = &nodes[node as usize];
        let remapped = &mut name_remap[n.name as usize];
        if *remapped == u32::MAX {
            *remapped = out.names.len() as u32;
            out.names.push(names[n.name as usize].clone());
        }
        let here = out.len() as NodeId;
        out.name.push(*remapped);
        out.parent.push(parent);
        out.left_total.push(n.values[0]);
        out.left_self.push(n.values[1]);
        out.right_total.push(n.values[2]);
        out.right_self.push(n.values[3]);
        for &child in kids[node as usize].iter().rev() {
            stack.push((child, here));
        }
    }
    out
}

/// `maxNodes` for a comparison: nodes are ranked by the larger of their two totals (so a frame
/// that is big on either side stays), and each parent's dropped children merge into one
/// [`OTHER`](crate::truncate::OTHER) leaf per side, conserving both sides' totals.
pub fn max_nodes(tree: &DiffTree, max_nodes: usize) -> DiffTree {
    let n = tree.len();
    if n <= max_nodes.max(1) {
        return tree.clone();
    }
    let weights: Vec<u64> = (0..n).map(|i| tree.left_total[i].max(tree.right_total[i])).collect();
    let keep = crate::truncate::keep_largest(&weights, max_nodes);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 1..n {
        children[tree.parent[i] as usize].push(i);
    }
    let mut out = DiffTree::default();
    let mut name_remap: Vec<u32> = vec![u32::MAX; tree.names.len()];
    let mut other_name: Option<u32> = None;
    enum Step {
        Node(usize, NodeId),
        Other(NodeId, u64, u64),
    }
    let mut stack = vec![Step::Node(0, ROOT)];
    while let Some(step) = stack.pop() {
        let here = out.len() as NodeId;
        match step {
            Step::Node(i, parent) => {
                let old_name = tree.name[i] as usize;
                if name_remap[old_name] == u32::MAX {
                    name_remap[old_name] = out.names.len() as u32;
                    out.names.push(tree.names[old_name].clone());
                }
                out.name.push(name_remap[old_name]);
                out.parent.push(parent);
                out.left_total.push(tree.left_total[i]);
                out.left_self.push(tree.left_self[i]);
                out.right_total.push(tree.right_total[i]);
                out.right_self.push(tree.right_self[i]);
                let dropped = children[i].iter().filter(|&&c| !keep[c]);
                let left: u64 = dropped.clone().map(|&c| tree.left_total[c]).sum();
                let right: u64 = dropped.map(|&c| tree.right_total[c]).sum();
                // Pushed first so it pops last: `other` comes after its kept siblings.
                if left > 0 || right > 0 {
                    stack.push(Step::Other(here, left, right));
                }
                for &c in children[i].iter().rev().filter(|&&c| keep[c]) {
                    stack.push(Step::Node(c, here));
                }
            }
            Step::Other(parent, left, right) => {
                let name = *other_name.get_or_insert_with(|| {
                    out.names.push(crate::truncate::OTHER.to_string());
                    (out.names.len() - 1) as u32
                });
                out.name.push(name);
                out.parent.push(parent);
                out.left_total.push(left);
                out.left_self.push(left);
                out.right_total.push(right);
                out.right_self.push(right);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;
    use proptest::prelude::*;

    fn tree(stacks: &[(&[&str], u64)]) -> FlatTree {
        let mut t = CallTree::new();
        for (frames, v) in stacks {
            t.add_stack(frames.iter().copied(), *v);
        }
        t.to_flat()
    }

    #[test]
    fn union_keeps_both_sides() {
        let left = tree(&[(&["a", "b"], 1), (&["a", "c"], 2)]);
        let right = tree(&[(&["a", "c"], 5), (&["d"], 1)]);
        let d = diff(&left, &right);
        let rows: Vec<(String, [u64; 4])> = (0..d.len())
            .map(|i| {
                (
                    d.name_of(i as NodeId).to_string(),
                    [d.left_total[i], d.left_self[i], d.right_total[i], d.right_self[i]],
                )
            })
            .collect();
        let expected: Vec<(String, [u64; 4])> = vec![
            ("total".into(), [3, 0, 6, 0]),
            ("a".into(), [3, 0, 5, 0]),
            ("b".into(), [1, 1, 0, 0]),
            ("c".into(), [2, 2, 5, 5]),
            ("d".into(), [0, 0, 1, 1]),
        ];
        assert_eq!(rows, expected);
        assert_eq!((d.left_ticks(), d.right_ticks()), (3, 6));
    }

    #[test]
    fn diff_of_empty_trees_is_just_a_root() {
        let d = diff(&FlatTree::default(), &CallTree::new().to_flat());
        assert_eq!(d.len(), 1);
        assert_eq!(d.names, ["total"]);
    }

    fn stacks_strategy() -> impl Strategy<Value = Vec<(Vec<String>, u64)>> {
        let frame = prop::sample::select(vec!["main", "a", "b", "c"]).prop_map(String::from);
        prop::collection::vec((prop::collection::vec(frame, 1..6), 1u64..100), 0..30)
    }

    fn build(stacks: &[(Vec<String>, u64)]) -> FlatTree {
        let mut t = CallTree::new();
        for (frames, v) in stacks {
            t.add_stack(frames.iter().map(String::as_str), *v);
        }
        t.to_flat()
    }

    proptest! {
        #[test]
        fn each_side_comes_back_unchanged(left in stacks_strategy(), right in stacks_strategy()) {
            let (l, r) = (build(&left), build(&right));
            let d = diff(&l, &r);
            prop_assert_eq!(d.side(false), l);
            prop_assert_eq!(d.side(true), r);
        }

        #[test]
        fn max_nodes_conserves_both_sides(left in stacks_strategy(), right in stacks_strategy(), limit in 0usize..20) {
            let (l, r) = (build(&left), build(&right));
            let d = diff(&l, &r);
            let cut = max_nodes(&d, limit);
            prop_assert_eq!((cut.left_ticks(), cut.right_ticks()), (d.left_ticks(), d.right_ticks()));
            let own = (0..cut.len()).filter(|&i| cut.name_of(i as NodeId) != crate::truncate::OTHER).count();
            prop_assert!(own <= limit.max(1));
            prop_assert!(cut.side(false).validate().is_ok() && cut.side(true).validate().is_ok());
            prop_assert_eq!(cut.side(false).total(), l.total());
            prop_assert_eq!(cut.left_self.iter().sum::<u64>(), l.total());
            prop_assert_eq!(cut.right_self.iter().sum::<u64>(), r.total());
        }
    }
}
