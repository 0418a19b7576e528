//! `maxNodes`: cutting a tree down to its largest nodes without losing samples.
//!
//! The `max_nodes` nodes with the largest totals are kept (the root always is). Because a
//! child's total never exceeds its parent's, and ties go to the earlier node in preorder (the
//! parent), the kept set always contains every ancestor of a kept node. Under each kept parent,
//! the children that did not make the cut are merged into one leaf named [`OTHER`] whose total
//! is the sum of theirs, so every total on the way up is unchanged.

use crate::tree::{FlatTree, NodeId, ROOT};

/// The name of the node that stands for a parent's dropped children.
pub const OTHER: &str = "other";

/// Which nodes survive a cut to `max_nodes`: the largest `weights` (ties to the earlier node),
/// and always the root. Weights must not grow from a parent to its children, so that the kept
/// set holds every ancestor of a kept node.
pub(crate) fn keep_largest(weights: &[u64], max_nodes: usize) -> Vec<bool> {
    let n = weights.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| weights[b].cmp(&weights[a]).then(a.cmp(&b)));
    let mut keep = vec![false; n];
    for &i in order.iter().take(max_nodes.max(1)) {
        keep[i] = true;
    }
    if let Some(root) = keep.first_mut() {
        *root = true;
    }
    keep
}

/// The tree with at most `max_nodes` of its own nodes plus one [`OTHER`] per parent that lost
/// children. `max_nodes` of 0 or 1 keeps just the root (with everything in one `other`).
pub fn max_nodes(tree: &FlatTree, max_nodes: usize) -> FlatTree {
    let n = tree.len();
    if n <= max_nodes.max(1) {
        return tree.clone();
    }
    let keep = keep_largest(&tree.total, max_nodes);

    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 1..n {
        children[tree.parent[i] as usize].push(i);
    }

    let mut out = FlatTree::default();
    let mut name_remap: Vec<u32> = vec![u32::MAX; tree.names.len()];
    let mut other_name: Option<u32> = None;
    enum Step {
        Node(usize, NodeId),
        Other(NodeId, u64),
    }
    let mut stack = vec![Step::Node(ROOT as usize, ROOT)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Node(i, parent) => {
                let here = out.len() as NodeId;
                let old_name = tree.name[i] as usize;
                if name_remap[old_name] == u32::MAX {
                    name_remap[old_name] = out.names.len() as u32;
                    out.names.push(tree.names[old_name].clone());
                }
                out.name.push(name_remap[old_name]);
                out.parent.push(parent);
                out.total.push(tree.total[i]);
                out.self_value.push(tree.self_value[i]);
                // Pushed first so it pops last: `other` comes after its kept siblings.
                let dropped: u64 = children[i].iter().filter(|&&c| !keep[c]).map(|&c| tree.total[c]).sum();
                if dropped > 0 {
                    stack.push(Step::Other(here, dropped));
                }
                for &c in children[i].iter().rev().filter(|&&c| keep[c]) {
                    stack.push(Step::Node(c, here));
                }
            }
            Step::Other(parent, total) => {
                let name = *other_name.get_or_insert_with(|| {
                    out.names.push(OTHER.to_string());
                    (out.names.len() - 1) as u32
                });
                out.name.push(name);
                out.parent.push(parent);
                out.total.push(total);
                out.self_value.push(total);
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
    fn small_children_merge_into_other() {
        let t = tree(&[(&["a", "big"], 10), (&["a", "s1"], 1), (&["a", "s2"], 2), (&["b"], 1)]);
        let cut = max_nodes(&t, 3);
        cut.validate().unwrap();
        let folded = crate::folded::print(&cut);
        assert_eq!(folded, "a;big 10\na;other 3\nother 1\n");
        assert_eq!(cut.total(), t.total());
    }

    #[test]
    fn a_tree_within_the_limit_is_unchanged() {
        let t = tree(&[(&["a", "b"], 1), (&["a", "c"], 2)]);
        assert_eq!(max_nodes(&t, 4), t);
        assert_eq!(max_nodes(&t, 100), t);
        let root_only = max_nodes(&t, 0);
        assert_eq!(crate::folded::print(&root_only), "other 3\n");
    }

    fn stacks_strategy() -> impl Strategy<Value = Vec<(Vec<String>, u64)>> {
        let frame = prop::sample::select(vec!["main", "a", "b", "c", "d", "e"]).prop_map(String::from);
        prop::collection::vec((prop::collection::vec(frame, 1..7), 1u64..500), 0..60)
    }

    proptest! {
        #[test]
        fn totals_are_conserved_and_nodes_bounded(stacks in stacks_strategy(), limit in 0usize..40) {
            let mut t = CallTree::new();
            for (frames, v) in &stacks {
                t.add_stack(frames.iter().map(String::as_str), *v);
            }
            let full = t.to_flat();
            let cut = max_nodes(&full, limit);
            prop_assert!(cut.validate().is_ok(), "{:?}", cut.validate());
            prop_assert_eq!(cut.total(), full.total());
            let others = (0..cut.len()).filter(|&i| cut.name_of(i as NodeId) == OTHER).count();
            let own = cut.len() - others;
            prop_assert!(own <= limit.max(1), "{} nodes for a limit of {}", own, limit);
            // Every stack's samples are still there, under `other` where it was cut.
            let self_sum: u64 = cut.self_value.iter().sum();
            prop_assert_eq!(self_sum, full.total());
        }
    }
}
