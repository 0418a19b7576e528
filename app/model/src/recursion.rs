//! Collapsing recursion: a function that calls itself directly (`parse;parse;parse;token`)
//! stacks one frame per call, pushing everything it calls far down the graph. Collapsing merges
//! each run of consecutive frames of a function into one frame (`parse;token`), as the
//! "collapse recursion" of flamegraph tools does.
//!
//! Only direct recursion is merged: `a;b;a;c` stays as it is, because the frames between the
//! two calls are part of the story (who re-entered `a`). The caller chooses which functions
//! collapse: every function, or a set of them (the viewer collapses the ones the user picks).
//!
//! Samples are never lost or moved between functions: every self sample stays on a frame of
//! the same function, so the profile's total, each function's self value and each function's
//! top-table total (which counts a stack once per function) are unchanged.

use crate::tree::{CallTree, FlatTree, NodeId, ROOT};

/// The functions named in a `collapse` list, `;`-separated like a stack (`parse;walk`), as the
/// viewer keeps them in its URL and `/render` takes them.
pub fn collapse_list(value: &str) -> Vec<&str> {
    value.split(';').filter(|name| !name.is_empty()).collect()
}

/// `tree` with each run of consecutive frames of a function for which `collapses` is true
/// merged into its outermost frame. The root never merges with a frame of the same name.
pub fn collapse_recursion(tree: &FlatTree, collapses: impl Fn(&str) -> bool) -> FlatTree {
    let mut out = CallTree::new();
    if tree.is_empty() {
        return out.to_flat();
    }
    // The predicate is asked once per name, not once per node.
    let merges: Vec<bool> = tree.names.iter().map(|name| collapses(name)).collect();
    // Where each input node went in the output tree.
    let mut mapped: Vec<NodeId> = vec![ROOT; tree.len()];
    for i in 1..tree.len() {
        let parent = tree.parent[i] as usize;
        let name = tree.name[i];
        let repeats_parent = parent != ROOT as usize && tree.name[parent] == name && merges[name as usize];
        let here = if repeats_parent { mapped[parent] } else { out.child(mapped[parent], tree.name_of(i as NodeId)) };
        mapped[i] = here;
        out.add_self(here, tree.self_value[i]);
    }
    // A root with self samples (a tree built by hand) keeps them.
    out.add_self(ROOT, tree.self_value[ROOT as usize]);
    out.to_flat()
}

/// `frames` (a stack or a zoom path, root first) with the same runs merged as
/// [`collapse_recursion`] merges: the path of the same frame in the collapsed tree.
pub fn collapse_path<'a>(frames: impl IntoIterator<Item = &'a str>, collapses: impl Fn(&str) -> bool) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for frame in frames {
        if out.last() == Some(&frame) && collapses(frame) {
            continue;
        }
        out.push(frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use crate::top::top_table;
    use proptest::prelude::*;

    fn tree(text: &str) -> FlatTree {
        folded::parse(text.as_bytes(), folded::LineFormat::Counted, folded::ParseLimits::default()).unwrap().to_flat()
    }

    #[test]
    fn runs_of_a_chosen_function_merge_into_one_frame() {
        let t = tree("main;f;f;f;g 2\nmain;f;f 3\nmain;f;h;f;f 4\nmain;g;g 1\n");
        let only_f = collapse_recursion(&t, |name| name == "f");
        assert_eq!(folded::print(&only_f), "main;f 3\nmain;f;g 2\nmain;f;h;f 4\nmain;g;g 1\n");
        only_f.validate().unwrap();
        let every = collapse_recursion(&t, |_| true);
        assert_eq!(folded::print(&every), "main;f 3\nmain;f;g 2\nmain;f;h;f 4\nmain;g 1\n");
        assert_eq!(every.total(), t.total());
    }

    #[test]
    fn nothing_chosen_changes_nothing() {
        let t = tree("main;f;f 3\nmain;g 1\n");
        assert_eq!(collapse_recursion(&t, |_| false), t);
    }

    #[test]
    fn the_root_never_merges_with_a_frame_named_like_it() {
        let t = tree("total;total;x 2\n");
        assert_eq!(folded::print(&collapse_recursion(&t, |_| true)), "total;x 2\n");
        assert!(collapse_recursion(&FlatTree::default(), |_| true).validate().is_ok());
    }

    #[test]
    fn zoom_paths_collapse_like_the_tree() {
        let f = |name: &str| name == "f";
        assert_eq!(collapse_path("main;f;f;f;g;g".split(';'), f), ["main", "f", "g", "g"]);
        assert_eq!(collapse_path("f;h;f".split(';'), f), ["f", "h", "f"]);
        assert!(collapse_path(std::iter::empty(), f).is_empty());
    }

    fn stacks() -> impl Strategy<Value = Vec<(Vec<&'static str>, u64)>> {
        // Few names and deep stacks: plenty of runs, direct and indirect.
        let frame = prop::sample::select(vec!["a", "b", "c"]);
        prop::collection::vec((prop::collection::vec(frame, 1..10), 1u64..1000), 0..30)
    }

    fn build(stacks: &[(Vec<&str>, u64)]) -> FlatTree {
        let mut t = CallTree::new();
        for (frames, value) in stacks {
            t.add_stack(frames.iter().copied(), *value);
        }
        t.to_flat()
    }

    proptest! {
        #[test]
        fn collapsing_conserves_samples_and_leaves_no_repeats(stacks in stacks(), chosen in prop::sample::subsequence(vec!["a", "b", "c"], 0..=3)) {
            let t = build(&stacks);
            let collapses = |name: &str| chosen.contains(&name);
            let c = collapse_recursion(&t, collapses);
            prop_assert!(c.validate().is_ok());
            prop_assert_eq!(c.total(), t.total());
            prop_assert_eq!(c.self_value.iter().sum::<u64>(), t.self_value.iter().sum::<u64>());
            for i in 1..c.len() {
                let parent = c.parent[i];
                prop_assert!(parent == ROOT || c.name[i] != c.name[parent as usize] || !collapses(c.name_of(i as NodeId)),
                    "{} repeats its parent", c.name_of(i as NodeId));
            }
            // Each function keeps its self and (stack-counted) total samples.
            let mut before = top_table(&t);
            let mut after = top_table(&c);
            before.sort_by(|x, y| x.name.cmp(&y.name));
            after.sort_by(|x, y| x.name.cmp(&y.name));
            prop_assert_eq!(after, before);
            // The tree is what collapsing each stack on its own gives.
            let by_stack: Vec<(Vec<&str>, u64)> =
                stacks.iter().map(|(frames, v)| (collapse_path(frames.iter().copied(), collapses), *v)).collect();
            prop_assert_eq!(c, build(&by_stack));
        }
    }
}
