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
    lowercase.iter().map(|name| name.contains(&needle)).collect()
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
}
