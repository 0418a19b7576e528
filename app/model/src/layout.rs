//! Flame layout: where each frame of a [`FlatTree`] goes for a given zoom and canvas width,
//! hit testing, and frame colours. Pure arithmetic, so it is tested natively and runs in wasm.
//!
//! Frames are drawn top-down (root on the first row), as Pyroscope does. Only frames at least
//! one pixel wide are visited: a narrower frame ends the descent, and neighbouring narrow frames
//! on a row are drawn as one aggregate block, so the picture keeps its weight without visiting
//! a million nodes. Nothing is dropped from the data: zooming into the parent shows them.

use crate::tree::{FlatTree, NodeId, ROOT};

/// Per-node geometry in sample units, computed once per tree.
#[derive(Debug, Clone, Default)]
pub struct Geometry {
    /// Row of each node (the root is row 0).
    pub depth: Vec<u32>,
    /// Left edge of each node, in samples from the left of the root.
    pub x: Vec<u64>,
    /// One past the last node of each node's subtree (preorder makes a subtree contiguous).
    pub subtree_end: Vec<u32>,
    /// Deepest row.
    pub max_depth: u32,
}

impl Geometry {
    /// Lays out `tree` in sample units.
    pub fn new(tree: &FlatTree) -> Geometry {
        let n = tree.len();
        let mut depth = vec![0u32; n];
        let mut x = vec![0u64; n];
        let mut next_child_x = vec![0u64; n];
        let mut max_depth = 0;
        for i in 1..n {
            let p = tree.parent[i] as usize;
            depth[i] = depth[p] + 1;
            max_depth = max_depth.max(depth[i]);
            x[i] = next_child_x[p].max(x[p]);
            next_child_x[p] = x[i] + tree.total[i];
            next_child_x[i] = x[i];
        }
        let mut subtree_end: Vec<u32> = (1..=n as u32).collect();
        for i in (1..n).rev() {
            let p = tree.parent[i] as usize;
            subtree_end[p] = subtree_end[p].max(subtree_end[i]);
        }
        Geometry { depth, x, subtree_end, max_depth }
    }
}

/// One rectangle to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRect {
    /// The frame, or `None` for an aggregate of frames each narrower than a pixel.
    pub node: Option<NodeId>,
    /// Left edge in pixels.
    pub x: f64,
    /// Width in pixels.
    pub width: f64,
    /// Row.
    pub depth: u32,
}

/// The frames to draw when `focus` fills `width_px` pixels.
///
/// Ancestors of the focus span the whole width; frames outside the focus's range are skipped
/// with their subtrees.
pub fn visible_frames(tree: &FlatTree, geometry: &Geometry, focus: NodeId, width_px: f64) -> Vec<FrameRect> {
    let mut out = Vec::new();
    if tree.is_empty() || tree.total[focus as usize] == 0 || width_px <= 0.0 {
        return out;
    }
    let view_start = geometry.x[focus as usize];
    let view_len = tree.total[focus as usize];
    let view_end = view_start + view_len;
    let scale = width_px / view_len as f64;
    // One pending aggregate per row: narrow neighbours join it until a wide frame or a gap.
    let mut pending: Vec<Option<FrameRect>> = vec![None; geometry.max_depth as usize + 1];
    let mut i = 0usize;
    while i < tree.len() {
        let start = geometry.x[i];
        let end = start + tree.total[i];
        if end <= view_start || start >= view_end || tree.total[i] == 0 {
            i = geometry.subtree_end[i] as usize;
            continue;
        }
        let left = (start.max(view_start) - view_start) as f64 * scale;
        let right = (end.min(view_end) - view_start) as f64 * scale;
        let depth = geometry.depth[i];
        let slot = &mut pending[depth as usize];
        if right - left < 1.0 {
            match slot {
                Some(run) if left - (run.x + run.width) < 0.5 => run.width = right - run.x,
                _ => {
                    if let Some(run) = slot.take() {
                        out.push(run);
                    }
                    *slot = Some(FrameRect { node: None, x: left, width: right - left, depth });
                }
            }
            i = geometry.subtree_end[i] as usize;
            continue;
        }
        if let Some(run) = slot.take() {
            out.push(run);
        }
        out.push(FrameRect { node: Some(i as NodeId), x: left, width: right - left, depth });
        i += 1;
    }
    out.extend(pending.into_iter().flatten());
    out
}

/// The rectangle under a point (`x` in pixels, `row` counted from the top), if any.
pub fn hit_test(rects: &[FrameRect], x: f64, row: u32) -> Option<FrameRect> {
    rects.iter().copied().find(|r| r.depth == row && x >= r.x && x < r.x + r.width.max(1.0))
}

/// The package or module a frame belongs to, which frames of one colour share: `a::b::c` →
/// `a::b`, `org/pkg/Class.method` → `org/pkg`, `file.py:12 - func` → `file.py`.
pub fn package_of(name: &str) -> &str {
    // Byte windows rather than `str` patterns: a two-byte or three-byte needle in a name of a
    // few dozen bytes needs no searcher, and building one per name was most of the cost of
    // colouring a tree's names.
    fn cut(name: &str, at: Option<usize>) -> &str {
        at.map_or(name, |i| &name[..i])
    }
    let name = cut(name, name.as_bytes().windows(3).position(|w| w == b" - "));
    if let Some((file, _)) = name.split_once(':').filter(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit())) {
        return file;
    }
    let name = cut(name, name.find('('));
    if let Some(i) = name.as_bytes().windows(2).rposition(|w| w == b"::") {
        return &name[..i];
    }
    if let Some(i) = name.rfind('/') {
        return &name[..i];
    }
    if let Some(i) = name.rfind('.').filter(|&i| i > 0) {
        return &name[..i];
    }
    name
}

/// A warm colour for a frame, stable for its package, as `(hue, saturation%, lightness%)`.
pub fn frame_color(name: &str) -> (u16, u8, u8) {
    if name.starts_with('[') {
        return (0, 0, 70);
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in package_of(name).bytes() {
        hash = (hash ^ b as u32).wrapping_mul(0x0100_0193);
    }
    let hue = (hash % 50) as u16; // red through orange to yellow
    let lightness = 55 + (hash >> 8) % 15;
    (hue, 80, lightness as u8)
}

/// The colour of a frame in a comparison, as `(hue, saturation%, lightness%)`: red when its
/// share of the profile grew from `left` to `right`, green when it shrank, grey when equal.
/// Shares are normalized by each side's total, so a busier right side does not paint
/// everything red.
pub fn diff_color(left: u64, left_ticks: u64, right: u64, right_ticks: u64) -> (u16, u8, u8) {
    let share = |v: u64, t: u64| if t == 0 { 0.0 } else { v as f64 / t as f64 };
    let (l, r) = (share(left, left_ticks), share(right, right_ticks));
    let larger = l.max(r);
    if larger == 0.0 {
        return (0, 0, 85);
    }
    let change = (r - l) / larger; // -1 (gone) ..= 1 (new)
    if change.abs() < 0.02 {
        return (0, 0, 82);
    }
    let hue = if change > 0.0 { 0 } else { 130 };
    let lightness = 88.0 - 40.0 * change.abs();
    (hue, 75, lightness.round() as u8)
}

/// The focus one level up from `focus` (the root stays the root).
pub fn parent_focus(tree: &FlatTree, focus: NodeId) -> NodeId {
    if focus == ROOT { ROOT } else { tree.parent[focus as usize] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;
    use proptest::prelude::*;

    fn tree() -> FlatTree {
        let mut t = CallTree::new();
        t.add_stack(["a", "b"], 1);
        t.add_stack(["a", "c"], 2);
        t.add_stack(["d"], 1);
        t.to_flat()
    }

    #[test]
    fn geometry_places_children_left_to_right() {
        let t = tree();
        let g = Geometry::new(&t);
        let names: Vec<_> = (0..t.len()).map(|i| (t.name_of(i as u32), g.x[i], g.depth[i])).collect();
        assert_eq!(names, [("total", 0, 0), ("a", 0, 1), ("b", 0, 2), ("c", 1, 2), ("d", 3, 1)]);
        assert_eq!(g.subtree_end, [5, 4, 3, 4, 5]);
    }

    #[test]
    fn zoom_fills_width_and_hides_outside_frames() {
        let t = tree();
        let g = Geometry::new(&t);
        let a = 1;
        let rects = visible_frames(&t, &g, a, 300.0);
        let named: Vec<_> = rects.iter().map(|r| (t.name_of(r.node.unwrap()), r.x, r.width)).collect();
        assert_eq!(named, [("total", 0.0, 300.0), ("a", 0.0, 300.0), ("b", 0.0, 100.0), ("c", 100.0, 200.0)]);
        let hit = hit_test(&rects, 150.0, 2).unwrap();
        assert_eq!(t.name_of(hit.node.unwrap()), "c");
        assert!(hit_test(&rects, 150.0, 3).is_none());
    }

    #[test]
    fn narrow_frames_aggregate_instead_of_vanishing() {
        let mut t = CallTree::new();
        t.add_stack(["big"], 10_000);
        for i in 0..100 {
            t.add_stack(["small", &format!("f{i}")], 1);
        }
        let t = t.to_flat();
        let g = Geometry::new(&t);
        let rects = visible_frames(&t, &g, ROOT, 1000.0);
        let row2: Vec<_> = rects.iter().filter(|r| r.depth == 2).collect();
        assert_eq!(row2.len(), 1, "the 100 narrow frames become one block");
        assert!(row2[0].node.is_none());
        assert!(rects.len() < 10);
        let small = (0..t.len()).find(|&i| t.name_of(i as u32) == "small").unwrap() as u32;
        let zoomed = visible_frames(&t, &g, small, 1000.0);
        assert_eq!(zoomed.iter().filter(|r| r.depth == 2 && r.node.is_some()).count(), 100);
    }

    #[test]
    fn diff_colours_follow_normalized_shares() {
        assert_eq!(diff_color(10, 100, 20, 200), (0, 0, 82), "same share on a busier side is unchanged");
        let (hue, _, grew) = diff_color(10, 100, 40, 100);
        assert_eq!(hue, 0);
        let (hue, _, shrank) = diff_color(40, 100, 10, 100);
        assert_eq!(hue, 130);
        assert_eq!(grew, shrank, "symmetric intensity");
        assert_eq!(diff_color(0, 100, 5, 100), (0, 75, 48), "new frames are full red");
        assert_eq!(diff_color(0, 0, 0, 0), (0, 0, 85));
    }

    #[test]
    fn packages() {
        assert_eq!(package_of("std::io::Write::write"), "std::io::Write");
        assert_eq!(package_of("org/mozilla/javascript/Foo.bar"), "org/mozilla/javascript");
        assert_eq!(package_of("workload.rs:7 - crate::burn_fibonacci"), "workload.rs");
        assert_eq!(frame_color("std::a"), frame_color("std::b"));
    }

    proptest! {
        #[test]
        fn visible_rows_never_overflow_the_width(stacks in prop::collection::vec((prop::collection::vec(0u8..5, 1..6), 1u64..500), 1..50), width in 10.0f64..2000.0) {
            let mut t = CallTree::new();
            for (frames, v) in &stacks {
                let names: Vec<String> = frames.iter().map(|f| format!("f{f}")).collect();
                t.add_stack(names.iter().map(String::as_str), *v);
            }
            let t = t.to_flat();
            let g = Geometry::new(&t);
            for focus in 0..t.len() as u32 {
                let rects = visible_frames(&t, &g, focus, width);
                let mut per_row = std::collections::HashMap::<u32, f64>::new();
                for r in &rects {
                    prop_assert!(r.x >= -1e-6 && r.x + r.width <= width + 1e-6);
                    *per_row.entry(r.depth).or_default() += r.width;
                }
                for w in per_row.values() {
                    prop_assert!(*w <= width + 1e-6);
                }
            }
        }
    }
}
