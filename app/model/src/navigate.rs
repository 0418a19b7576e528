//! Moving a selection across a flamegraph's frames with the keyboard: to the parent, to a child,
//! to the neighbouring frame on the same row; and where the selected frame is on the canvas.
//!
//! Moves work on the tree and its [`Geometry`], not on drawn rectangles, so they land on real
//! frames (a frame too narrow to be drawn alone can still be selected, then zoomed into). Only
//! frames in view are reachable: the zoomed frame, its ancestors and its descendants.

use crate::layout::{FrameRect, Geometry};
use crate::tree::{FlatTree, NodeId, ROOT};

/// True when `ancestor` is a strict ancestor of `node` (preorder keeps a subtree contiguous).
fn is_strict_ancestor(geometry: &Geometry, ancestor: NodeId, node: NodeId) -> bool {
    ancestor < node && node < geometry.subtree_end[ancestor as usize]
}

/// True when `node` is drawn while `focus` is zoomed: `focus` itself, an ancestor or a
/// descendant of it. Ids beyond the tree (kept from a previous tree) are never in view.
pub fn in_view(geometry: &Geometry, focus: NodeId, node: NodeId) -> bool {
    let len = geometry.subtree_end.len();
    if focus as usize >= len || node as usize >= len {
        return false;
    }
    node == focus || is_strict_ancestor(geometry, node, focus) || is_strict_ancestor(geometry, focus, node)
}

/// The frame above `node` in the call tree (`None` for the root).
pub fn parent(tree: &FlatTree, node: NodeId) -> Option<NodeId> {
    (node != ROOT).then(|| tree.parent[node as usize])
}

/// The frame a "down the call tree" move reaches from `node`: on the way to the zoomed `focus`
/// when `node` is one of its ancestors (other children are out of view), else the widest child
/// (the leftmost of equals). `None` for a leaf.
pub fn child(tree: &FlatTree, geometry: &Geometry, focus: NodeId, node: NodeId) -> Option<NodeId> {
    if is_strict_ancestor(geometry, node, focus) {
        return tree.path_to(focus).into_iter().find(|&n| tree.parent[n as usize] == node);
    }
    let mut best: Option<NodeId> = None;
    let mut i = node as usize + 1;
    let end = geometry.subtree_end[node as usize] as usize;
    while i < end {
        if tree.total[i] > 0 && best.is_none_or(|b| tree.total[i] > tree.total[b as usize]) {
            best = Some(i as NodeId);
        }
        // Children only: skip each child's own subtree.
        i = geometry.subtree_end[i] as usize;
    }
    best
}

/// The frame right of `node` on its row, within the zoomed `focus` (`None` at the right edge,
/// or for the focus and its ancestors, which are alone on their rows).
pub fn next_on_row(tree: &FlatTree, geometry: &Geometry, focus: NodeId, node: NodeId) -> Option<NodeId> {
    if !is_strict_ancestor(geometry, focus, node) {
        return None;
    }
    let depth = geometry.depth[node as usize];
    let end = geometry.subtree_end[focus as usize] as usize;
    // After `node`'s subtree come its siblings, then its ancestors' later siblings, whose
    // descendants at `depth` are the cousins further right: descend into those, skip the rest.
    let mut i = geometry.subtree_end[node as usize] as usize;
    while i < end {
        if tree.total[i] == 0 {
            i = geometry.subtree_end[i] as usize;
        } else if geometry.depth[i] == depth {
            return Some(i as NodeId);
        } else {
            i += 1;
        }
    }
    None
}

/// The frame left of `node` on its row, within the zoomed `focus` (see [`next_on_row`]).
pub fn previous_on_row(tree: &FlatTree, geometry: &Geometry, focus: NodeId, node: NodeId) -> Option<NodeId> {
    if !is_strict_ancestor(geometry, focus, node) {
        return None;
    }
    let depth = geometry.depth[node as usize];
    // Preorder visits a row left to right: the last frame of the row before `node` is its
    // left neighbour.
    (focus as usize + 1..node as usize)
        .rev()
        .find(|&i| geometry.depth[i] == depth && tree.total[i] > 0)
        .map(|i| i as NodeId)
}

/// Where `node` is drawn when `focus` fills `width_px` pixels (`None` when out of view). Unlike
/// the rectangles of [`crate::layout::visible_frames`], a frame narrower than a pixel gets its
/// own (narrow) rectangle, so that a selected frame can be outlined wherever it is.
pub fn frame_rect(
    tree: &FlatTree,
    geometry: &Geometry,
    focus: NodeId,
    width_px: f64,
    node: NodeId,
) -> Option<FrameRect> {
    if !in_view(geometry, focus, node) || tree.total[focus as usize] == 0 {
        return None;
    }
    let view_len = tree.total[focus as usize];
    let view_start = geometry.x[focus as usize];
    let view_end = view_start + view_len;
    let scale = width_px / view_len as f64;
    let (start, end) = (geometry.x[node as usize], geometry.x[node as usize] + tree.total[node as usize]);
    let left = (start.max(view_start) - view_start) as f64 * scale;
    let right = (end.min(view_end) - view_start) as f64 * scale;
    Some(FrameRect { node: Some(node), x: left, width: right - left, depth: geometry.depth[node as usize] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;
    use proptest::prelude::*;

    /// ```text
    /// total
    /// main                                 other
    /// a            b                        x
    /// a1  a2       b1
    /// ```
    fn tree() -> (FlatTree, Geometry) {
        let mut t = CallTree::new();
        t.add_stack(["main", "a", "a1"], 2);
        t.add_stack(["main", "a", "a2"], 3);
        t.add_stack(["main", "b", "b1"], 4);
        t.add_stack(["main", "b"], 2);
        t.add_stack(["other", "x"], 1);
        let t = t.to_flat();
        let g = Geometry::new(&t);
        (t, g)
    }

    fn id(t: &FlatTree, name: &str) -> NodeId {
        (0..t.len() as NodeId).find(|&n| t.name_of(n) == name).unwrap()
    }

    #[test]
    fn up_and_down_follow_the_call_tree() {
        let (t, g) = tree();
        let n = |name| id(&t, name);
        assert_eq!(parent(&t, n("a2")), Some(n("a")));
        assert_eq!(parent(&t, n("main")), Some(ROOT));
        assert_eq!(parent(&t, ROOT), None);
        assert_eq!(child(&t, &g, ROOT, ROOT), Some(n("main")), "widest child");
        assert_eq!(child(&t, &g, ROOT, n("main")), Some(n("b")));
        assert_eq!(child(&t, &g, ROOT, n("a")), Some(n("a2")));
        assert_eq!(child(&t, &g, ROOT, n("b1")), None, "a leaf");
        // Zoomed into a: from the root, down leads towards a, not to the wider b.
        assert_eq!(child(&t, &g, n("a"), n("main")), Some(n("a")));
        assert_eq!(child(&t, &g, n("a"), ROOT), Some(n("main")));
    }

    #[test]
    fn left_and_right_cross_cousins_but_stay_in_view() {
        let (t, g) = tree();
        let n = |name| id(&t, name);
        assert_eq!(next_on_row(&t, &g, ROOT, n("a2")), Some(n("b1")), "a cousin");
        assert_eq!(next_on_row(&t, &g, ROOT, n("b")), Some(n("x")));
        assert_eq!(next_on_row(&t, &g, ROOT, n("x")), None, "right edge");
        assert_eq!(previous_on_row(&t, &g, ROOT, n("b1")), Some(n("a2")));
        assert_eq!(previous_on_row(&t, &g, ROOT, n("x")), Some(n("b")));
        assert_eq!(previous_on_row(&t, &g, ROOT, n("a1")), None, "left edge");
        assert_eq!(previous_on_row(&t, &g, ROOT, n("other")), Some(n("main")));
        // Zoomed into main: other is out of view, main alone on its row.
        assert_eq!(next_on_row(&t, &g, n("main"), n("b")), None);
        assert_eq!(next_on_row(&t, &g, n("main"), n("a")), Some(n("b")));
        assert_eq!(next_on_row(&t, &g, n("main"), n("main")), None);
        assert_eq!(previous_on_row(&t, &g, n("main"), ROOT), None);
    }

    #[test]
    fn selected_frames_have_a_rectangle_while_in_view() {
        let (t, g) = tree();
        let n = |name| id(&t, name);
        // Total 12: main 11 fills 0..1100 of 1200 pixels, b after a's 5 samples.
        let b = frame_rect(&t, &g, ROOT, 1200.0, n("b")).unwrap();
        assert_eq!((b.x, b.width, b.depth), (500.0, 600.0, 2));
        let zoomed = frame_rect(&t, &g, n("b"), 1200.0, n("b1")).unwrap();
        assert_eq!((zoomed.x, zoomed.width), (0.0, 800.0));
        let ancestor = frame_rect(&t, &g, n("b"), 1200.0, ROOT).unwrap();
        assert_eq!((ancestor.x, ancestor.width), (0.0, 1200.0));
        assert_eq!(frame_rect(&t, &g, n("b"), 1200.0, n("a")), None);
        assert!(in_view(&g, n("b"), n("main")) && !in_view(&g, n("b"), n("x")));
        assert!(!in_view(&g, ROOT, t.len() as NodeId), "an id from a larger tree");
        assert_eq!(frame_rect(&t, &g, ROOT, 1200.0, 99), None);
    }

    proptest! {
        #[test]
        fn rows_are_walked_left_to_right_without_gaps(stacks in prop::collection::vec((prop::collection::vec(0u8..4, 1..6), 1u64..50), 1..30)) {
            let mut t = CallTree::new();
            for (frames, v) in &stacks {
                let names: Vec<String> = frames.iter().map(|f| format!("f{f}")).collect();
                t.add_stack(names.iter().map(String::as_str), *v);
            }
            let t = t.to_flat();
            let g = Geometry::new(&t);
            for focus in 0..t.len() as NodeId {
                for depth in g.depth[focus as usize] + 1..=g.max_depth {
                    // Every frame of the row below the focus, in x order.
                    let mut row: Vec<NodeId> = (0..t.len() as NodeId)
                        .filter(|&i| g.depth[i as usize] == depth && is_strict_ancestor(&g, focus, i))
                        .collect();
                    row.sort_by_key(|&i| g.x[i as usize]);
                    let Some(&first) = row.first() else { continue };
                    let mut walked = vec![first];
                    while let Some(next) = next_on_row(&t, &g, focus, *walked.last().unwrap()) {
                        prop_assert_eq!(previous_on_row(&t, &g, focus, next), walked.last().copied());
                        walked.push(next);
                    }
                    prop_assert_eq!(&walked, &row);
                }
                if let Some(c) = child(&t, &g, focus, focus) {
                    prop_assert_eq!(parent(&t, c), Some(focus));
                }
            }
        }
    }
}
