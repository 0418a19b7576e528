//! Search: which frames match a needle, and how many samples the matches hold.

use crate::tree::FlatTree;

/// For every name of `tree`, whether it contains `needle` (case-insensitive). An empty needle
/// matches nothing: no search is running.
pub fn name_matches(tree: &FlatTree, needle: &str) -> Vec<bool> {
    matches_in(&lowercase_names(tree), needle)
}

/// Every name of `tree` lowercased, computed once per tree so that each keystroke of a search
/// only compares.
pub fn lowercase_names(tree: &FlatTree) -> Vec<String> {
    tree.names.iter().map(|name| name.to_lowercase()).collect()
}

/// [`name_matches`] over names already lowercased by [`lowercase_names`].
pub fn matches_in(lowercase: &[String], needle: &str) -> Vec<bool> {
    let needle = needle.trim().to_lowercase();
    if needle.is_empty() {
        return vec![false; lowercase.len()];
    }
    // One searcher for every name: `str::contains` prepared the needle again for each of them.
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    lowercase.iter().map(|name| finder.find(name.as_bytes()).is_some()).collect()
}

/// Samples under matching frames, each sample counted once even when a match calls another
/// match (recursion, or two matching functions on one stack).
pub fn matched_total(tree: &FlatTree, matches: &[bool]) -> u64 {
    let mut under_match = vec![false; tree.len()];
    let mut total = 0;
    for i in 1..tree.len() {
        let parent_covered = under_match[tree.parent[i] as usize];
        let is_match = matches[tree.name[i] as usize];
        if is_match && !parent_covered {
            total += tree.total[i];
        }
        under_match[i] = parent_covered || is_match;
    }
    total
}

/// [`matched_total`] for a tree in preorder, given each node's subtree end (as
/// [`crate::layout::Geometry::subtree_end`] holds it): a match counts its whole subtree and
/// the walk skips past it, so a search that matches near the root visits few nodes and nothing
/// is allocated.
pub fn matched_total_preorder(tree: &FlatTree, subtree_end: &[u32], matches: &[bool]) -> u64 {
    let mut total = 0;
    let mut i = 1;
    while i < tree.len() {
        if matches[tree.name[i] as usize] {
            total += tree.total[i];
            i = subtree_end[i] as usize;
        } else {
            i += 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;

    #[test]
    fn nested_matches_count_once() {
        let mut t = CallTree::new();
        t.add_stack(["main", "parseA", "parseB"], 5);
        t.add_stack(["main", "draw"], 3);
        t.add_stack(["other", "Parse"], 2);
        let t = t.to_flat();
        let m = name_matches(&t, "PARSE");
        assert_eq!(matched_total(&t, &m), 7);
        assert_eq!(matched_total(&t, &name_matches(&t, "  ")), 0);
        assert_eq!(matched_total(&t, &name_matches(&t, "main")), 8);
    }

    proptest::proptest! {
        /// Skipping matched subtrees gives the same total as marking every node under a match.
        #[test]
        fn preorder_walk_agrees(
            stacks in proptest::collection::vec(
                (proptest::collection::vec(0u8..5, 1..6), 1u64..50), 1..40),
            wanted in proptest::collection::vec(proptest::bool::ANY, 5),
        ) {
            let mut t = CallTree::new();
            for (frames, value) in &stacks {
                t.add_stack(frames.iter().map(|f| ["a", "b", "c", "d", "e"][*f as usize]), *value);
            }
            let t = t.to_flat();
            let g = crate::layout::Geometry::new(&t);
            // The root's name is none of a–e and never matches.
            let flags: Vec<bool> = t
                .names
                .iter()
                .map(|n| n.bytes().next().is_some_and(|b| (b'a'..=b'e').contains(&b) && wanted[usize::from(b - b'a')]))
                .collect();
            proptest::prop_assert_eq!(matched_total_preorder(&t, &g.subtree_end, &flags), matched_total(&t, &flags));
        }
    }
}
