//! Pyroscope's *flamebearer* encoding of a tree, so existing clients (and Grafana's Pyroscope
//! data source) read Kiln's `/render` answers.
//!
//! Each level (row) lists its nodes left to right, four integers each:
//! `[x, total, self, name index]`, where `x` is the gap since the end of the previous node on
//! the same row (delta encoding). `names[0]` is `"total"`, the root.
//!
//! The *double* format (comparisons, [`encode_double`]) has seven integers per node:
//! `[xL, totalL, selfL, xR, totalR, selfR, name index]`, each side's `x` delta-encoded on its own
//! axis as above; a node missing on one side has zeros there.

use serde::Serialize;

use crate::diff::DiffTree;
use crate::tree::FlatTree;

/// The flamebearer object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flamebearer {
    /// Frame names; `names[0]` is the root's.
    pub names: Vec<String>,
    /// Rows of `[x delta, total, self, name]` quadruples.
    pub levels: Vec<Vec<u64>>,
    /// The root's total.
    pub num_ticks: u64,
    /// The largest self value of any node.
    pub max_self: u64,
}

/// Encodes `tree` (children already in name order, as [`FlatTree`] keeps them).
pub fn encode(tree: &FlatTree) -> Flamebearer {
    let mut levels: Vec<Vec<u64>> = Vec::new();
    let mut row_end: Vec<u64> = Vec::new();
    let mut x = vec![0u64; tree.len()];
    let mut next_child_x = vec![0u64; tree.len()];
    let mut depth = vec![0usize; tree.len()];
    let mut max_self = 0;
    for i in 0..tree.len() {
        if i > 0 {
            let p = tree.parent[i] as usize;
            depth[i] = depth[p] + 1;
            x[i] = next_child_x[p];
            next_child_x[p] += tree.total[i];
        }
        next_child_x[i] = x[i];
        let d = depth[i];
        if levels.len() <= d {
            levels.push(Vec::new());
            row_end.push(0);
        }
        levels[d].extend_from_slice(&[x[i] - row_end[d], tree.total[i], tree.self_value[i], u64::from(tree.name[i])]);
        row_end[d] = x[i] + tree.total[i];
        max_self = max_self.max(tree.self_value[i]);
    }
    Flamebearer { names: tree.names.clone(), levels, num_ticks: tree.total(), max_self }
}

/// Encodes a comparison in the double format. `num_ticks` is both sides' totals added up and
/// `max_self` the largest self value on either side, as Pyroscope reports them.
pub fn encode_double(tree: &DiffTree) -> Flamebearer {
    let n = tree.len();
    let mut levels: Vec<Vec<u64>> = Vec::new();
    // Per side: the node's x, the next free x among its children, the end of each row so far.
    let mut x = vec![[0u64; 2]; n];
    let mut next_child_x = vec![[0u64; 2]; n];
    let mut row_end: Vec<[u64; 2]> = Vec::new();
    let mut depth = vec![0usize; n];
    let mut max_self = 0;
    for i in 0..n {
        let totals = [tree.left_total[i], tree.right_total[i]];
        if i > 0 {
            let p = tree.parent[i] as usize;
            depth[i] = depth[p] + 1;
            for side in 0..2 {
                x[i][side] = next_child_x[p][side];
                next_child_x[p][side] += totals[side];
            }
        }
        next_child_x[i] = x[i];
        let d = depth[i];
        if levels.len() <= d {
            levels.push(Vec::new());
            row_end.push([0, 0]);
        }
        levels[d].extend_from_slice(&[
            x[i][0] - row_end[d][0],
            totals[0],
            tree.left_self[i],
            x[i][1] - row_end[d][1],
            totals[1],
            tree.right_self[i],
            u64::from(tree.name[i]),
        ]);
        row_end[d] = [x[i][0] + totals[0], x[i][1] + totals[1]];
        max_self = max_self.max(tree.left_self[i]).max(tree.right_self[i]);
    }
    Flamebearer { names: tree.names.clone(), levels, num_ticks: tree.left_ticks() + tree.right_ticks(), max_self }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;

    #[test]
    fn matches_pyroscopes_example() {
        let mut t = CallTree::new();
        t.add_stack(["a", "b"], 1);
        t.add_stack(["a", "c"], 2);
        let fb = encode(&t.to_flat());
        assert_eq!(fb.names, ["total", "a", "b", "c"]);
        assert_eq!(fb.levels, vec![vec![0, 3, 0, 0], vec![0, 3, 0, 1], vec![0, 1, 1, 2, 0, 2, 2, 3]]);
        assert_eq!((fb.num_ticks, fb.max_self), (3, 2));
    }

    #[test]
    fn gaps_on_a_row_are_delta_encoded() {
        let mut t = CallTree::new();
        t.add_stack(["a", "x"], 2);
        t.add_stack(["a"], 3);
        t.add_stack(["b", "y"], 4);
        let fb = encode(&t.to_flat());
        // Row 2: x starts at 0 (width 2); y starts at 5, three after x's end.
        assert_eq!(fb.names, ["total", "a", "x", "b", "y"]);
        assert_eq!(fb.levels[2], vec![0, 2, 2, 2, 3, 4, 4, 4]);
    }

    #[test]
    fn double_format_encodes_each_side_on_its_own_axis() {
        let mut left = CallTree::new();
        left.add_stack(["a", "b"], 1);
        left.add_stack(["a", "c"], 2);
        let mut right = CallTree::new();
        right.add_stack(["a", "c"], 5);
        right.add_stack(["d"], 1);
        let fb = encode_double(&crate::diff::diff(&left.to_flat(), &right.to_flat()));
        assert_eq!(fb.names, ["total", "a", "b", "c", "d"]);
        assert_eq!(
            fb.levels,
            vec![
                vec![0, 3, 0, 0, 6, 0, 0],
                // d is empty on the left, right after a (x = 3, gap 0); on the right at x = 5.
                vec![0, 3, 0, 0, 5, 0, 1, 0, 0, 0, 0, 1, 1, 4],
                vec![0, 1, 1, 0, 0, 0, 2, 0, 2, 2, 0, 5, 5, 3],
            ]
        );
        assert_eq!((fb.num_ticks, fb.max_self), (9, 5));
    }
}
