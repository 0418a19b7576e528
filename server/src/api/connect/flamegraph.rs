//! The `FlameGraph` level encoding Grafana draws, and its 7-tuple diff form.
//!
//! `levels[d]` lists the nodes at depth `d` left to right, four numbers each:
//! `[x_offset, total, self, name_index]`. A node's absolute start is its `x_offset` plus the end
//! (start + total) of the previous node on its level, 0 at the level's start. As in Pyroscope,
//! a node's children are laid out from `parent_start + parent_self`: self time on the left.
//! Grafana rebuilds the tree by giving each node to the first node of the level above whose
//! range contains it, so children must sit inside their parent's range, which this layout
//! guarantees. `names[0]` is the root, `total`; level 0 is the root alone, at offset 0.

use kiln_model::diff::DiffTree;
use kiln_model::{FlatTree, ROOT_NAME};

use super::messages::{FlameGraph, FlameGraphDiff, Level};

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Names with the root's first and called `total`, and each node's index into them.
fn names_with_total_first(names: &[String], root_name: u32) -> (Vec<String>, Vec<i64>) {
    let mut out = vec![ROOT_NAME.to_string()];
    let mut index = vec![0i64; names.len()];
    for (i, name) in names.iter().enumerate() {
        if i as u32 == root_name {
            continue;
        }
        index[i] = out.len() as i64;
        out.push(name.clone());
    }
    (out, index)
}

/// The levels of per-side (total, self) columns: for each node, per side, its absolute start;
/// then each level's tuples written with per-side offsets. `sides` holds (total, self) per side.
fn layout(parent: &[u32], sides: &[(&[u64], &[u64])]) -> (Vec<usize>, Vec<Vec<u64>>) {
    let n = parent.len();
    let mut depth = vec![0usize; n];
    let mut start = vec![vec![0u64; n]; sides.len()];
    let mut next_child = vec![vec![0u64; n]; sides.len()];
    for i in 0..n {
        for (s, (total, self_value)) in sides.iter().enumerate() {
            if i > 0 {
                let p = parent[i] as usize;
                start[s][i] = next_child[s][p];
                next_child[s][p] = next_child[s][p].saturating_add(total[i]);
            }
            next_child[s][i] = start[s][i].saturating_add(self_value[i]);
        }
        if i > 0 {
            depth[i] = depth[parent[i] as usize] + 1;
        }
    }
    (depth, start)
}

/// A tree as Grafana's `FlameGraph`.
pub fn encode(tree: &FlatTree) -> FlameGraph {
    if tree.is_empty() {
        return FlameGraph {
            names: vec![ROOT_NAME.into()],
            levels: vec![Level { values: vec![0, 0, 0, 0] }],
            total: 0,
            max_self: 0,
        };
    }
    let (names, name_index) = names_with_total_first(&tree.names, tree.name[0]);
    let (depth, start) = layout(&tree.parent, &[(&tree.total, &tree.self_value)]);
    let mut levels: Vec<Level> = Vec::new();
    let mut level_end: Vec<u64> = Vec::new();
    let mut max_self = 0;
    // Preorder visits each level's nodes left to right.
    for i in 0..tree.len() {
        let d = depth[i];
        if levels.len() <= d {
            levels.push(Level { values: Vec::new() });
            level_end.push(0);
        }
        let x = start[0][i];
        levels[d].values.extend_from_slice(&[
            int(x - level_end[d]),
            int(tree.total[i]),
            int(tree.self_value[i]),
            name_index[tree.name[i] as usize],
        ]);
        level_end[d] = x + tree.total[i];
        max_self = max_self.max(tree.self_value[i]);
    }
    FlameGraph { names, levels, total: int(tree.total[0]), max_self: int(max_self) }
}

/// A comparison as Grafana's `FlameGraphDiff`: 7-tuples
/// `[l_offset, l_total, l_self, r_offset, r_total, r_self, name_index]`, each side laid out on
/// its own axis as in [`encode`], both in the one shape of the union of paths.
pub fn encode_diff(tree: &DiffTree) -> FlameGraphDiff {
    if tree.is_empty() {
        return FlameGraphDiff {
            names: vec![ROOT_NAME.into()],
            levels: vec![Level { values: vec![0; 7] }],
            total: 0,
            max_self: 0,
            left_ticks: 0,
            right_ticks: 0,
        };
    }
    let (names, name_index) = names_with_total_first(&tree.names, tree.name[0]);
    let sides: [(&[u64], &[u64]); 2] = [(&tree.left_total, &tree.left_self), (&tree.right_total, &tree.right_self)];
    let (depth, start) = layout(&tree.parent, &sides);
    let mut levels: Vec<Level> = Vec::new();
    let mut level_end: Vec<[u64; 2]> = Vec::new();
    let mut max_self = 0;
    for i in 0..tree.len() {
        let d = depth[i];
        if levels.len() <= d {
            levels.push(Level { values: Vec::new() });
            level_end.push([0, 0]);
        }
        let mut tuple = [0i64; 7];
        for (s, (total, self_value)) in sides.iter().enumerate() {
            let x = start[s][i];
            tuple[s * 3] = int(x - level_end[d][s]);
            tuple[s * 3 + 1] = int(total[i]);
            tuple[s * 3 + 2] = int(self_value[i]);
            level_end[d][s] = x + total[i];
            max_self = max_self.max(self_value[i]);
        }
        tuple[6] = name_index[tree.name[i] as usize];
        levels[d].values.extend_from_slice(&tuple);
    }
    let (left_ticks, right_ticks) = (tree.left_ticks(), tree.right_ticks());
    FlameGraphDiff {
        names,
        levels,
        total: int(left_ticks.saturating_add(right_ticks)),
        max_self: int(max_self),
        left_ticks: int(left_ticks),
        right_ticks: int(right_ticks),
    }
}

#[cfg(test)]
mod tests {
    use kiln_model::CallTree;
    use prost::Message;

    use super::*;
    use crate::api::connect::messages::SelectMergeStacktracesResponse;

    #[test]
    fn the_spec_example_has_its_exact_bytes() {
        let mut tree = CallTree::new();
        tree.add_stack(["main"], 100);
        let graph = encode(&tree.to_flat());
        let response = SelectMergeStacktracesResponse { flamegraph: Some(graph), pprof: None };
        let expected = [
            0x0a, 0x21, 0x0a, 0x05, 0x74, 0x6f, 0x74, 0x61, 0x6c, 0x0a, 0x04, 0x6d, 0x61, 0x69, 0x6e, 0x12, 0x06, 0x0a,
            0x04, 0x00, 0x64, 0x00, 0x00, 0x12, 0x06, 0x0a, 0x04, 0x00, 0x64, 0x64, 0x01, 0x18, 0x64, 0x20, 0x64,
        ];
        assert_eq!(response.encode_to_vec(), expected);
    }

    #[test]
    fn children_start_after_their_parents_self() {
        let mut tree = CallTree::new();
        tree.add_stack(["a"], 3);
        tree.add_stack(["a", "b"], 5);
        tree.add_stack(["c", "d"], 2);
        let graph = encode(&tree.to_flat());
        let name = |s: &str| graph.names.iter().position(|n| n == s).unwrap() as i64;
        assert_eq!(graph.levels[0].values, [0, 10, 0, 0]);
        assert_eq!(graph.levels[1].values, [0, 8, 3, name("a"), 0, 2, 0, name("c")]);
        // `b` starts at a's start + a's self = 3; `d` at c's start (8), right after `b` (3 + 5).
        assert_eq!(graph.levels[2].values, [3, 5, 5, name("b"), 0, 2, 2, name("d")]);
    }
}
