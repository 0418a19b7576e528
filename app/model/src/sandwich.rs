//! Sandwich view: for one function, who calls it (callers, drawn inverted) and what it calls
//! (callees), each as its own tree rooted at the function.
//!
//! Only outermost occurrences count (a recursive call inside the function is already part of
//! its callees), so both trees' totals equal the function's total in the top table.

use crate::tree::{CallTree, FlatTree, ROOT};

fn outermost_occurrences(tree: &FlatTree, name: &str) -> Vec<usize> {
    let Some(id) = tree.names.iter().position(|n| n == name) else {
        return Vec::new();
    };
    let mut inside = vec![false; tree.len()];
    let mut found = Vec::new();
    for i in 1..tree.len() {
        let parent_inside = inside[tree.parent[i] as usize];
        let is_it = tree.name[i] as usize == id;
        if is_it && !parent_inside {
            found.push(i);
        }
        inside[i] = parent_inside || is_it;
    }
    found
}

/// Everything `name` calls, merged over every place it is called from.
pub fn callees(tree: &FlatTree, name: &str) -> FlatTree {
    let mut out = CallTree::new();
    let starts = outermost_occurrences(tree, name);
    if starts.is_empty() {
        return out.to_flat();
    }
    let top = out.child(ROOT, name);
    let mut mapped = vec![ROOT; tree.len()];
    for start in starts {
        mapped[start] = top;
        out.add_self(top, tree.self_value[start]);
        // Preorder: the subtree is the run of nodes after `start` deeper than it.
        let mut j = start + 1;
        while j < tree.len() && is_descendant(tree, j, start) {
            let node = out.child(mapped[tree.parent[j] as usize], tree.name_of(j as u32));
            mapped[j] = node;
            out.add_self(node, tree.self_value[j]);
            j += 1;
        }
    }
    out.to_flat()
}

fn is_descendant(tree: &FlatTree, mut node: usize, ancestor: usize) -> bool {
    while node > ancestor {
        node = tree.parent[node] as usize;
    }
    node == ancestor
}

/// Who calls `name`: a tree rooted at `name` whose children are its callers, then their
/// callers, up to the stack roots.
pub fn callers(tree: &FlatTree, name: &str) -> FlatTree {
    let mut out = CallTree::new();
    for start in outermost_occurrences(tree, name) {
        let mut node = out.child(ROOT, name);
        let mut up = tree.parent[start] as usize;
        while up != ROOT as usize {
            node = out.child(node, tree.name_of(up as u32));
            up = tree.parent[up] as usize;
        }
        out.add_self(node, tree.total[start]);
    }
    out.to_flat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;

    fn tree(text: &str) -> FlatTree {
        folded::parse(text.as_bytes(), folded::LineFormat::Counted, folded::ParseLimits::default()).unwrap().to_flat()
    }

    #[test]
    fn callers_and_callees_of_a_shared_function() {
        let t = tree("main;a;work;io 3\nmain;b;work 2\nmain;work;work;cpu 4\nmain;idle 1\n");
        let down = callees(&t, "work");
        assert_eq!(folded::print(&down), "work 2\nwork;io 3\nwork;work;cpu 4\n");
        assert_eq!(down.total(), 9);
        let up = callers(&t, "work");
        assert_eq!(folded::print(&up), "work;a;main 3\nwork;b;main 2\nwork;main 4\n");
        assert_eq!(up.total(), 9);
        assert_eq!(callees(&t, "missing").total(), 0);
    }
}
