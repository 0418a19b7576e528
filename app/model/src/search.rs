//! Search: which frames match a needle, and how many samples the matches hold.

use crate::tree::FlatTree;

/// For every name of `tree`, whether it contains `needle` (case-insensitive). An empty needle
/// matches nothing: no search is running.
pub fn name_matches(tree: &FlatTree, needle: &str) -> Vec<bool> {
    LowercaseNames::new(tree.names.iter().map(String::as_str)).matches(needle)
}

/// Every name of a tree lowercased, computed once per tree so that each keystroke of a search
/// only compares, and kept in one buffer so that a search is one pass over all of them: a
/// searcher run over each of 48k short names (a million-stack profile's) cost twice the scan.
#[derive(Debug, Clone, Default)]
pub struct LowercaseNames {
    /// The names, each followed by a newline; a newline within a name becomes a space (no
    /// needle typed in a search box holds one), so that no match spans two names.
    text: String,
    /// Where each name starts in `text`, then the end of `text`.
    starts: Vec<usize>,
}

impl LowercaseNames {
    /// Lowercases `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut lower = LowercaseNames { text: String::new(), starts: vec![0] };
        for name in names {
            // `str::to_lowercase`, as the needle is lowered (a final sigma lowers apart).
            let name = name.to_lowercase();
            if name.contains('\n') {
                lower.text.push_str(&name.replace('\n', " "));
            } else {
                lower.text.push_str(&name);
            }
            lower.text.push('\n');
            lower.starts.push(lower.text.len());
        }
        lower
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// True for no names at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For every name, whether it contains `needle` (case-insensitive, spaces around it
    /// ignored). An empty needle, or one spanning lines, matches nothing.
    pub fn matches(&self, needle: &str) -> Vec<bool> {
        let mut found = vec![false; self.len()];
        let needle = needle.trim().to_lowercase();
        if needle.is_empty() || needle.contains('\n') {
            return found;
        }
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let text = self.text.as_bytes();
        let mut at = 0;
        while let Some(offset) = finder.find(&text[at..]) {
            // The name holding the match: the last one starting at or before it. The search
            // then goes on from the next name, as this one is decided.
            let name = self.starts.partition_point(|&start| start <= at + offset) - 1;
            found[name] = true;
            at = self.starts[name + 1];
        }
        found
    }
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

    #[test]
    fn names_match_alone() {
        let names = LowercaseNames::new(["Main", "parse\nline", "", "ab", "b"]);
        assert_eq!(names.matches("b"), [false, false, false, true, true]);
        // Never across the end of one name and the start of the next.
        assert_eq!(names.matches("ba"), [false; 5]);
        assert_eq!(names.matches("e l"), [false, true, false, false, false]);
        assert_eq!(names.matches("line\n"), [false, true, false, false, false], "the needle is trimmed");
        assert_eq!(names.matches("e\nl"), [false; 5]);
        assert_eq!(names.matches("MAIN"), [true, false, false, false, false]);
        assert_eq!(LowercaseNames::new([]).matches("a"), Vec::<bool>::new());
    }

    proptest::proptest! {
        /// One pass over the joined names finds what a search of each name finds.
        #[test]
        fn joined_names_match_like_each_name(
            names in proptest::collection::vec("[aAbB:ẞİΣ\n ]{0,6}", 0..30),
            needle in "[aAbB:ẞİΣ ]{0,3}",
        ) {
            let joined = LowercaseNames::new(names.iter().map(String::as_str)).matches(&needle);
            let wanted = needle.trim().to_lowercase();
            let each: Vec<bool> = names
                .iter()
                .map(|name| !wanted.is_empty() && name.to_lowercase().replace('\n', " ").contains(&wanted))
                .collect();
            proptest::prop_assert_eq!(joined, each);
        }

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
