//! What decoding one upload may cost: a budget of frames walked and of tree nodes made, both
//! proportional to the bytes decoded, so that a small body cannot expand into a huge amount of
//! work or memory (a location with 20 000 inlined lines, a frame list of millions, one long
//! name copied into thousands of trees).
//!
//! The budget starts with a fixed allowance (`floor_kib` KiB's worth) and grows by so many
//! frames and nodes per KiB as bytes are decoded ([`DecodeBudget::grant`]). Decoders spend it
//! as they build trees; the first spend beyond it fails with [`Exhausted`].

use std::fmt;

use crate::tree::CallTree;

/// A frame name counts as one node per this many bytes in a tree: names are memory too.
pub const NAME_BYTES_PER_NODE: usize = 64;

/// Frames and nodes left to one decode.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    frames_per_kib: u64,
    nodes_per_kib: u64,
    frames: Allowance,
    nodes: Allowance,
}

#[derive(Debug, Clone, Copy)]
struct Allowance {
    granted: u64,
    spent: u64,
}

impl Allowance {
    fn spend(&mut self, n: u64) -> bool {
        self.spent = self.spent.saturating_add(n);
        self.spent <= self.granted
    }
}

/// Which allowance ran out, and how large it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// More stack frames walked than the budget allows.
    Frames {
        /// Frames the upload was allowed.
        limit: u64,
        /// The allowance per KiB of decoded body.
        per_kib: u64,
    },
    /// More tree nodes (names counted in) than the budget allows.
    Nodes {
        /// Nodes the upload was allowed.
        limit: u64,
        /// The allowance per KiB of decoded body.
        per_kib: u64,
    },
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::Frames { limit, per_kib } => write!(
                f,
                "the profile expands to more than {limit} stack frames ({per_kib} per KiB of body, plus a fixed allowance)"
            ),
            Exhausted::Nodes { limit, per_kib } => write!(
                f,
                "the profile expands to more than {limit} call-tree nodes ({per_kib} per KiB of body, plus a fixed allowance; every {NAME_BYTES_PER_NODE} bytes of a frame name count as a node)"
            ),
        }
    }
}

impl std::error::Error for Exhausted {}

impl DecodeBudget {
    /// `frames_per_kib` and `nodes_per_kib` per KiB decoded, starting with `floor_kib` KiB's.
    pub fn new(frames_per_kib: u64, nodes_per_kib: u64, floor_kib: u64) -> Self {
        let mut budget = DecodeBudget {
            frames_per_kib,
            nodes_per_kib,
            frames: Allowance { granted: 0, spent: 0 },
            nodes: Allowance { granted: 0, spent: 0 },
        };
        budget.grant(floor_kib.saturating_mul(1024));
        budget
    }

    /// No limit at all: for files the user opens in their own browser.
    pub fn unlimited() -> Self {
        DecodeBudget::new(u64::MAX, u64::MAX, u64::MAX)
    }

    /// Adds the allowance of `bytes` more decoded bytes.
    pub fn grant(&mut self, bytes: u64) {
        let kib = bytes.div_ceil(1024);
        self.frames.granted = self.frames.granted.saturating_add(kib.saturating_mul(self.frames_per_kib));
        self.nodes.granted = self.nodes.granted.saturating_add(kib.saturating_mul(self.nodes_per_kib));
    }

    /// Spends `n` frames walked.
    #[inline]
    pub fn spend_frames(&mut self, n: u64) -> Result<(), Exhausted> {
        if self.frames.spend(n) {
            Ok(())
        } else {
            Err(Exhausted::Frames { limit: self.frames.granted, per_kib: self.frames_per_kib })
        }
    }

    /// Spends `n` nodes made.
    #[inline]
    pub fn spend_nodes(&mut self, n: u64) -> Result<(), Exhausted> {
        if self.nodes.spend(n) {
            Ok(())
        } else {
            Err(Exhausted::Nodes { limit: self.nodes.granted, per_kib: self.nodes_per_kib })
        }
    }

    /// Spends what `tree` grew by since `mark` was taken, and moves `mark` to now.
    #[inline]
    pub fn spend_growth(&mut self, tree: &CallTree, mark: &mut TreeSize) -> Result<(), Exhausted> {
        let now = TreeSize::of(tree);
        let grown = now.0.saturating_sub(mark.0);
        *mark = now;
        self.spend_nodes(grown)
    }
}

/// A tree's size in budget nodes: its nodes plus its names' bytes over [`NAME_BYTES_PER_NODE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSize(u64);

impl TreeSize {
    /// The size of `tree` now.
    pub fn of(tree: &CallTree) -> TreeSize {
        TreeSize((tree.node_count() + tree.name_bytes() / NAME_BYTES_PER_NODE) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_grow_with_bytes_and_run_out() {
        let mut budget = DecodeBudget::new(10, 2, 1);
        budget.spend_frames(10).unwrap();
        assert_eq!(budget.spend_frames(1), Err(Exhausted::Frames { limit: 10, per_kib: 10 }));
        let mut budget = DecodeBudget::new(10, 2, 1);
        budget.grant(1025);
        budget.spend_frames(30).unwrap();
        budget.spend_nodes(6).unwrap();
        assert!(matches!(budget.spend_nodes(1), Err(Exhausted::Nodes { limit: 6, .. })));
        let mut unlimited = DecodeBudget::unlimited();
        unlimited.grant(u64::MAX);
        unlimited.spend_frames(u64::MAX).unwrap();
    }

    #[test]
    fn tree_growth_counts_nodes_and_name_bytes() {
        let mut budget = DecodeBudget::new(0, 1000, 1);
        let mut tree = CallTree::new();
        let mut mark = TreeSize::of(&tree);
        tree.add_stack(["a", "b"], 1);
        budget.spend_growth(&tree, &mut mark).unwrap();
        let long = "x".repeat(NAME_BYTES_PER_NODE * 2000);
        tree.add_stack([long.as_str()], 1);
        assert!(budget.spend_growth(&tree, &mut mark).is_err(), "a 128 KB name is 2000 nodes");
    }
}
