//! Time order: the samples of a timed profile where they happened, and their flame chart.
//!
//! A flamegraph merges every sample of one stack into one frame, which hides *when* the time
//! was spent. Files with timestamps (V8 `.cpuprofile`s, Chrome traces, evented speedscope)
//! also keep their samples in time order: each a stack (a node of the part's call tree), a
//! start and a weight, in the part's unit. The flame chart lays them out with x as time, as
//! speedscope's "Time Order" and Firefox Profiler's stack chart do: on each row, consecutive
//! samples that share the frame at that depth (the same node, so the same path from the root)
//! and touch in time become one box.
//!
//! The chart draws through the same [`FrameRect`]s and hit testing as the flamegraph
//! ([`crate::layout`]); boxes narrower than a pixel merge into aggregate blocks, found by
//! binary search, so a redraw visits at most a few boxes per pixel per row however many
//! samples there are.

use crate::codec;
use crate::layout::FrameRect;
use crate::tree::{CallTree, FlatTree, NodeId, ROOT};

/// The most samples a time order keeps. Beyond it a parser stops recording (the folded tree
/// is still read whole) and the time order reports [`TimeOrder::overflowed`]: the view and
/// its transfer stay bounded (about 6 bytes a sample on the wire, 24 in memory).
pub const MAX_SAMPLES: usize = 2_000_000;

/// One stretch of time spent in one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The stack on CPU: a node of the tree the time order belongs to.
    pub stack: NodeId,
    /// When it started, in the profile's unit from the profile's start.
    pub start: u64,
    /// How long it lasted (its weight), in the profile's unit; never 0.
    pub weight: u64,
}

impl Sample {
    /// When it ended.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.weight)
    }
}

/// The samples of one profile in time order: sorted by start and not overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeOrder {
    /// The samples (stacks are nodes of the profile's [`CallTree`]).
    pub samples: Vec<Sample>,
    /// Set when the profile held more than [`MAX_SAMPLES`]: `samples` is then empty.
    pub overflowed: bool,
}

impl TimeOrder {
    /// Records `weight` of `stack` at `start`. Empty stretches are skipped; one that starts
    /// before the previous ended (equal timestamps in a trace) starts at its end instead, so
    /// the order never overlaps.
    pub fn push(&mut self, stack: NodeId, start: u64, weight: u64) {
        if weight == 0 || self.overflowed {
            return;
        }
        if self.samples.len() == MAX_SAMPLES {
            self.overflowed = true;
            self.samples = Vec::new();
            return;
        }
        let start = self.samples.last().map_or(start, |last| start.max(last.end()));
        self.samples.push(Sample { stack, start, weight });
    }

    /// The order's samples renamed into the flat tree `tree` was frozen to (`flat_of` from
    /// [`CallTree::to_flat_mapped`]).
    pub fn to_flat(&self, flat_of: &[NodeId]) -> Vec<Sample> {
        self.samples
            .iter()
            .filter_map(|s| {
                let stack = *flat_of.get(s.stack as usize)?;
                (stack != u32::MAX && stack != ROOT).then_some(Sample { stack, ..*s })
            })
            .collect()
    }
}

/// A time order ready to send and draw: its own frozen tree, and samples whose stacks are
/// nodes of that tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimedProfile {
    /// The profile's tree (the flamegraph of the same samples).
    pub tree: FlatTree,
    /// Unit of starts and weights (`nanoseconds`, `samples`, …).
    pub units: String,
    /// Which profile of its file it is (a thread), empty when unnamed.
    pub name: String,
    /// The samples in time order.
    pub samples: Vec<Sample>,
}

impl TimedProfile {
    /// Freezes `tree` and its time order.
    pub fn new(tree: &CallTree, order: &TimeOrder, units: &str) -> TimedProfile {
        let (flat, flat_of) = tree.to_flat_mapped();
        TimedProfile { samples: order.to_flat(&flat_of), tree: flat, units: units.to_string(), name: String::new() }
    }

    /// One column per part, for stored profiles that keep no times within an upload but do
    /// keep each upload apart: `parts` are the uploads in time order, each its stacks as
    /// (node of `tree`, value). Each column is as wide as its part's total and holds that
    /// part's flamegraph (stacks in the tree's preorder, so consecutive stacks sharing a
    /// frame make one box), so the chart reads as the timeline does: a spike is a wide column.
    pub fn columns(tree: &CallTree, parts: &[Vec<(NodeId, u64)>], units: &str) -> TimedProfile {
        let (flat, flat_of) = tree.to_flat_mapped();
        let mut samples = Vec::new();
        let mut column: Vec<(NodeId, u64)> = Vec::new();
        let mut start = 0u64;
        for part in parts {
            column.clear();
            column.extend(part.iter().filter_map(|&(node, weight)| {
                let stack = *flat_of.get(node as usize)?;
                (stack != u32::MAX && stack != ROOT && weight > 0).then_some((stack, weight))
            }));
            // The flat tree is in preorder: sorting by node lays the column out as a flamegraph.
            column.sort_unstable_by_key(|&(stack, _)| stack);
            for &(stack, weight) in &column {
                samples.push(Sample { stack, start, weight });
                start = start.saturating_add(weight);
            }
        }
        TimedProfile { tree: flat, units: units.to_string(), name: String::new(), samples }
    }

    /// When the last sample ends.
    pub fn end(&self) -> u64 {
        self.samples.last().map_or(0, Sample::end)
    }
}

/// First bytes of an encoded [`TimedProfile`].
pub const MAGIC: &[u8; 8] = b"KILNTIME";
/// The version [`encode`] writes and [`decode`] reads.
pub const VERSION: u16 = 1;
/// The media type the server answers with.
pub const CONTENT_TYPE: &str = "application/vnd.kiln.time-order.v1";

/// Encodes a timed profile:
///
/// ```text
/// magic     8 bytes  "KILNTIME"
/// version   u16      1
/// reserved  u16      0
/// tree      u32 byte length, then the tree in the binary tree format (crate::codec)
/// units     u32 byte length, UTF-8 bytes
/// name      u32 byte length, UTF-8 bytes
/// samples   u32      number of samples
/// samples × (stack, gap since the previous sample's end, weight), each an unsigned LEB128
/// ```
///
/// Integers little-endian. Samples of a sampled profile touch, so the gap is a single 0 byte
/// and a sample costs about 6 bytes.
pub fn encode(profile: &TimedProfile) -> Vec<u8> {
    let tree = codec::encode(&profile.tree);
    let mut out = Vec::with_capacity(24 + tree.len() + profile.units.len() + profile.samples.len() * 6);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(tree.len() as u32).to_le_bytes());
    out.extend_from_slice(&tree);
    for text in [&profile.units, &profile.name] {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&(profile.samples.len() as u32).to_le_bytes());
    let mut previous_end = 0u64;
    for sample in &profile.samples {
        write_varint(&mut out, u64::from(sample.stack));
        write_varint(&mut out, sample.start.saturating_sub(previous_end));
        write_varint(&mut out, sample.weight);
        previous_end = sample.start.max(previous_end).saturating_add(sample.weight);
    }
    out
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes what [`encode`] wrote, refusing anything that is not a valid timed profile: a
/// stack that is not a node of the tree, a zero weight, times beyond 64 bits, more than
/// [`MAX_SAMPLES`] samples, bytes left over.
pub fn decode(bytes: &[u8]) -> Result<TimedProfile, codec::DecodeError> {
    let bad = |what: &str| codec::DecodeError(format!("time order: {what}"));
    if bytes.len() < 12 {
        return Err(bad("truncated"));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("not a time order"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(bad(&format!("version {version}, expected {VERSION}")));
    }
    let read_u32 = |rest: &mut &[u8]| -> Result<usize, codec::DecodeError> {
        if rest.len() < 4 {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(4);
        *rest = tail;
        Ok(u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize)
    };
    let mut rest = &bytes[12..];
    let tree_len = read_u32(&mut rest)?;
    if rest.len() < tree_len {
        return Err(bad("truncated"));
    }
    let tree = codec::decode(&rest[..tree_len])?;
    rest = &rest[tree_len..];
    let text = |rest: &mut &[u8]| -> Result<String, codec::DecodeError> {
        let len = read_u32(rest)?;
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| bad("text that is not UTF-8"))?.to_string();
        *rest = &rest[len..];
        Ok(text)
    };
    let units = text(&mut rest)?;
    let name = text(&mut rest)?;
    let count = read_u32(&mut rest)?;
    if count > MAX_SAMPLES {
        return Err(bad(&format!("{count} samples, more than {MAX_SAMPLES}")));
    }
    // Each sample takes at least three bytes: a count beyond that is a lie, not an allocation.
    if count > rest.len() / 3 {
        return Err(bad("truncated"));
    }
    let mut samples = Vec::with_capacity(count);
    let mut previous_end = 0u64;
    for _ in 0..count {
        let stack = read_varint(&mut rest).ok_or_else(|| bad("truncated sample"))?;
        let gap = read_varint(&mut rest).ok_or_else(|| bad("truncated sample"))?;
        let weight = read_varint(&mut rest).ok_or_else(|| bad("truncated sample"))?;
        let stack = u32::try_from(stack).ok().filter(|&s| (s as usize) < tree.len() && s != ROOT);
        let stack = stack.ok_or_else(|| bad("a sample's stack is not a node of the tree"))?;
        if weight == 0 {
            return Err(bad("a sample weighs nothing"));
        }
        let start = previous_end.checked_add(gap).ok_or_else(|| bad("times beyond 64 bits"))?;
        previous_end = start.checked_add(weight).ok_or_else(|| bad("times beyond 64 bits"))?;
        samples.push(Sample { stack, start, weight });
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last sample"));
    }
    Ok(TimedProfile { tree, units, name, samples })
}

fn read_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One box of the chart: a frame from `start` to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartBox {
    /// The frame (a node of the tree, so its name and path).
    pub node: NodeId,
    /// When it starts, in the profile's unit.
    pub start: u64,
    /// When it ends.
    pub end: u64,
}

/// The flame chart of a timed profile: per row (row 0 holds the frames under the root), its
/// boxes in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlameChart {
    /// Boxes of each row, sorted by start, not overlapping.
    pub rows: Vec<Vec<ChartBox>>,
    /// When the last box ends.
    pub end: u64,
}

impl FlameChart {
    /// Lays out `samples` (stacks are nodes of `tree`).
    pub fn new(tree: &FlatTree, samples: &[Sample]) -> FlameChart {
        let depths = tree.depths();
        let mut rows: Vec<Vec<ChartBox>> = Vec::new();
        let mut path: Vec<NodeId> = Vec::new();
        let mut end = 0;
        for sample in samples {
            path.clear();
            let mut node = sample.stack;
            while node != ROOT && (node as usize) < tree.len() {
                path.push(node);
                node = tree.parent[node as usize];
            }
            end = end.max(sample.end());
            for &node in path.iter().rev() {
                let row = depths[node as usize] as usize - 1;
                if rows.len() <= row {
                    rows.resize_with(row + 1, Vec::new);
                }
                match rows[row].last_mut() {
                    Some(last) if last.node == node && last.end == sample.start => last.end = sample.end(),
                    _ => rows[row].push(ChartBox { node, start: sample.start, end: sample.end() }),
                }
            }
        }
        FlameChart { rows, end }
    }

    /// Number of rows.
    pub fn height(&self) -> u32 {
        self.rows.len() as u32
    }

    /// The frames to draw when the time from `view.start` to `view.end` fills `width_px`
    /// pixels, as the flamegraph's [`crate::layout::visible_frames`] gives them: one rect per
    /// box at least a pixel wide, narrower neighbours joined into aggregate blocks
    /// (`node: None`).
    pub fn visible(&self, view: TimeView, width_px: f64) -> Vec<FrameRect> {
        let mut out = Vec::new();
        let span = view.end - view.start;
        if span <= 0.0 || width_px <= 0.0 {
            return out;
        }
        let scale = width_px / span;
        let time_at = |px: f64| view.start + px / scale;
        for (depth, row) in self.rows.iter().enumerate() {
            let depth = depth as u32;
            let mut i = row.partition_point(|b| (b.end as f64) <= view.start);
            let mut run: Option<FrameRect> = None;
            while let Some(b) = row.get(i) {
                if b.start as f64 >= view.end {
                    break;
                }
                let left = ((b.start as f64 - view.start) * scale).max(0.0);
                let right = ((b.end as f64 - view.start) * scale).min(width_px);
                if right - left >= 1.0 {
                    out.extend(run.take());
                    out.push(FrameRect { node: Some(b.node), x: left, width: right - left, depth });
                    i += 1;
                    continue;
                }
                // A narrow box: it joins the block before it when that ends within half a
                // pixel, and every box that starts within this pixel joins with it without
                // being visited one by one.
                let block = match run.take() {
                    Some(r) if left - (r.x + r.width) < 0.5 => r,
                    other => {
                        out.extend(other);
                        FrameRect { node: None, x: left, width: 0.0, depth }
                    }
                };
                let pixel_end = time_at(left.floor() + 1.0);
                let next = i + 1 + row[i + 1..].partition_point(|b| (b.start as f64) < pixel_end);
                let last_end = ((row[next - 1].end as f64 - view.start) * scale).min(width_px);
                run = Some(FrameRect { width: last_end.max(right) - block.x, ..block });
                i = next;
            }
            out.extend(run);
        }
        out
    }

    /// The box of row `row` at time `at`, if any.
    pub fn box_at(&self, row: u32, at: f64) -> Option<ChartBox> {
        let row = self.rows.get(row as usize)?;
        let i = row.partition_point(|b| (b.end as f64) <= at);
        row.get(i).copied().filter(|b| b.start as f64 <= at)
    }
}

/// The time a chart's canvas shows, in the profile's unit (fractional, for smooth zooming).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeView {
    /// Time at the left edge.
    pub start: f64,
    /// Time at the right edge.
    pub end: f64,
}

impl TimeView {
    /// The narrowest view: zooming stops at this many units across the canvas.
    pub const MIN_SPAN: f64 = 10.0;

    /// The whole of a chart ending at `end`.
    pub fn whole(end: u64) -> TimeView {
        TimeView { start: 0.0, end: (end as f64).max(Self::MIN_SPAN) }
    }

    /// Zoomed by `factor` (below 1 zooms in) about the point `anchor` of the way across
    /// (0 the left edge, 1 the right), kept within `[0, end]`.
    pub fn zoomed(self, anchor: f64, factor: f64, end: u64) -> TimeView {
        let anchor = anchor.clamp(0.0, 1.0);
        let span = self.end - self.start;
        let at = self.start + span * anchor;
        let total = (end as f64).max(Self::MIN_SPAN);
        let new_span = (span * factor).clamp(Self::MIN_SPAN.min(total), total);
        TimeView { start: at - new_span * anchor, end: at - new_span * anchor + new_span }.within(total)
    }

    /// Moved by `fraction` of its span (positive moves later), kept within `[0, end]`.
    pub fn panned(self, fraction: f64, end: u64) -> TimeView {
        let shift = (self.end - self.start) * fraction;
        TimeView { start: self.start + shift, end: self.end + shift }.within((end as f64).max(Self::MIN_SPAN))
    }

    /// The view of box `b`, with a margin of a tenth on each side.
    pub fn around(b: ChartBox, end: u64) -> TimeView {
        let margin = (b.end - b.start) as f64 / 10.0;
        let view = TimeView { start: b.start as f64 - margin, end: b.end as f64 + margin };
        let span = (view.end - view.start).max(Self::MIN_SPAN);
        TimeView { end: view.start + span, ..view }.within((end as f64).max(Self::MIN_SPAN))
    }

    fn within(self, total: f64) -> TimeView {
        let span = (self.end - self.start).min(total);
        let start = self.start.clamp(0.0, total - span);
        TimeView { start, end: start + span }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A tree of `main;a`, `main;b` and `idle`, with samples given as (stack path, start, weight).
    fn profile(samples: &[(&[&str], u64, u64)]) -> TimedProfile {
        let mut tree = CallTree::new();
        let mut order = TimeOrder::default();
        for &(path, start, weight) in samples {
            let mut node = ROOT;
            for name in path {
                node = tree.child(node, name);
            }
            tree.add_self(node, weight);
            order.push(node, start, weight);
        }
        TimedProfile::new(&tree, &order, "nanoseconds")
    }

    fn named(p: &TimedProfile, chart: &FlameChart) -> Vec<Vec<(String, u64, u64)>> {
        chart
            .rows
            .iter()
            .map(|row| row.iter().map(|b| (p.tree.name_of(b.node).to_string(), b.start, b.end)).collect())
            .collect()
    }

    #[test]
    fn consecutive_equal_frames_merge_per_row() {
        let p = profile(&[
            (&["main", "a"], 0, 10),
            (&["main", "a"], 10, 5),
            (&["main", "b"], 15, 5),
            (&["idle"], 20, 10),
            (&["main", "a"], 30, 10),
            // A gap: the same stack again is a new box.
            (&["main", "a"], 50, 10),
        ]);
        let chart = FlameChart::new(&p.tree, &p.samples);
        let s = |n: &str, a, b| (n.to_string(), a, b);
        assert_eq!(
            named(&p, &chart),
            [
                vec![s("main", 0, 20), s("idle", 20, 30), s("main", 30, 40), s("main", 50, 60)],
                vec![s("a", 0, 15), s("b", 15, 20), s("a", 30, 40), s("a", 50, 60)],
            ]
        );
        assert_eq!(chart.end, 60);
        assert_eq!(chart.box_at(1, 17.0).map(|b| p.tree.name_of(b.node)), Some("b"));
        assert_eq!(chart.box_at(1, 45.0), None);
        assert_eq!(chart.box_at(5, 1.0), None);
    }

    #[test]
    fn columns_lay_each_part_out_as_its_flamegraph_one_after_another() {
        let mut tree = CallTree::new();
        let mut path = |frames: &[&str]| {
            let mut node = ROOT;
            for f in frames {
                node = tree.child(node, f);
            }
            node
        };
        let (a, b, idle) = (path(&["main", "a"]), path(&["main", "b"]), path(&["idle"]));
        let main = path(&["main"]);
        let parts = vec![vec![(b, 2), (idle, 1), (a, 3), (main, 1)], vec![], vec![(a, 4), (idle, 0)]];
        for part in &parts {
            for &(node, value) in part {
                tree.add_self(node, value);
            }
        }
        let p = TimedProfile::columns(&tree, &parts, "samples");
        assert_eq!(p.tree.total(), 11);
        assert_eq!(p.samples.iter().map(|s| s.weight).sum::<u64>(), 11);
        let chart = FlameChart::new(&p.tree, &p.samples);
        let s = |n: &str, a, b| (n.to_string(), a, b);
        // First column (7 wide): idle, then main over its self, a and b, in name order; the
        // empty part takes no room; the last column is a alone, and main's box runs on into it
        // because the stacks touch.
        assert_eq!(
            named(&p, &chart),
            [vec![s("idle", 0, 1), s("main", 1, 11)], vec![s("a", 2, 5), s("b", 5, 7), s("a", 7, 11)]]
        );
        assert_eq!(decode(&encode(&p)).unwrap(), p);
    }

    #[test]
    fn the_same_name_under_another_parent_is_another_frame() {
        let p = profile(&[(&["x", "f"], 0, 5), (&["y", "f"], 5, 5)]);
        let chart = FlameChart::new(&p.tree, &p.samples);
        assert_eq!(chart.rows[1].len(), 2, "f under x and f under y are two boxes");
    }

    #[test]
    fn visible_boxes_scale_to_the_view_and_narrow_ones_aggregate() {
        let mut samples: Vec<(&[&str], u64, u64)> = vec![(&["main", "c"], 0, 1000)];
        // 1000 alternating one-unit samples after it: each far narrower than a pixel.
        for i in 0..1000 {
            samples.push((if i % 2 == 0 { &["main", "a"] } else { &["main", "b"] }, 1000 + i, 1));
        }
        let p = profile(&samples);
        let chart = FlameChart::new(&p.tree, &p.samples);
        let whole = TimeView::whole(chart.end);
        let rects = chart.visible(whole, 200.0);
        let row1: Vec<_> = rects.iter().filter(|r| r.depth == 1).collect();
        assert_eq!(row1.len(), 2, "the wide box and one block: {row1:?}");
        assert_eq!(row1[0].node.map(|n| p.tree.name_of(n)), Some("c"));
        assert!((row1[0].width - 100.0).abs() < 1e-9);
        assert_eq!(row1[1].node, None);
        assert!((row1[1].x - 100.0).abs() < 1e-9 && (row1[1].width - 100.0).abs() < 1e-9, "{:?}", row1[1]);
        // Zoomed into ten units, the boxes show one by one, placed by time.
        let zoomed = chart.visible(TimeView { start: 1000.0, end: 1010.0 }, 100.0);
        let row1: Vec<_> = zoomed.iter().filter(|r| r.depth == 1).collect();
        assert_eq!(row1.len(), 10);
        assert!(row1.iter().all(|r| r.node.is_some()));
        assert_eq!(row1[3].x, 30.0);
        assert_eq!(row1[3].node.map(|n| p.tree.name_of(n)), Some("b"));
        let hit = crate::layout::hit_test(&zoomed, 35.0, 1).and_then(|r| r.node);
        assert_eq!(hit.map(|n| p.tree.name_of(n)), Some("b"));
    }

    #[test]
    fn views_zoom_about_the_pointer_and_stay_within_the_profile() {
        let view = TimeView::whole(1000);
        let zoomed = view.zoomed(0.25, 0.5, 1000);
        assert_eq!(zoomed, TimeView { start: 125.0, end: 625.0 });
        assert_eq!(zoomed.zoomed(0.25, 2.0, 1000), view);
        assert_eq!(zoomed.panned(-1.0, 1000), TimeView { start: 0.0, end: 500.0 });
        assert_eq!(zoomed.panned(0.5, 1000), TimeView { start: 375.0, end: 875.0 });
        assert_eq!(view.zoomed(0.5, 1e-9, 1000).end - view.zoomed(0.5, 1e-9, 1000).start, TimeView::MIN_SPAN);
        let b = ChartBox { node: 1, start: 100, end: 200 };
        assert_eq!(TimeView::around(b, 1000), TimeView { start: 90.0, end: 210.0 });
    }

    #[test]
    fn time_orders_record_without_overlap_and_stop_at_the_cap() {
        let mut order = TimeOrder::default();
        order.push(1, 0, 10);
        order.push(2, 5, 10);
        order.push(3, 20, 0);
        assert_eq!(
            order.samples,
            [Sample { stack: 1, start: 0, weight: 10 }, Sample { stack: 2, start: 10, weight: 10 }]
        );
        let mut big = TimeOrder::default();
        for i in 0..=MAX_SAMPLES as u64 {
            big.push(1, i, 1);
        }
        assert!(big.overflowed);
        assert!(big.samples.is_empty());
    }

    #[test]
    fn encoding_round_trips_compactly_and_refuses_bad_bytes() {
        let p = profile(&[
            (&["main", "a"], 0, 1_000_000),
            (&["main", "b"], 1_000_000, 1_000_000),
            (&["idle"], 3_000_000, 5),
        ]);
        let bytes = encode(&p);
        assert_eq!(decode(&bytes).unwrap(), p);
        let header = 12 + 4 + codec::encode(&p.tree).len() + 4 + "nanoseconds".len() + 4 + 4;
        // Stacks one byte each; gaps 0, 0 and 1 000 000 (one, one, three bytes); weights of a
        // million three bytes, of 5 one.
        assert_eq!(bytes.len() - header, 3 + (1 + 1 + 3) + (3 + 3 + 1));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut bad_stack = p.clone();
        bad_stack.samples[0].stack = 99;
        assert!(decode(&encode(&bad_stack)).unwrap_err().0.contains("not a node"));
        let mut zero = p.clone();
        zero.samples[2].weight = 0;
        assert!(decode(&encode(&zero)).unwrap_err().0.contains("weighs nothing"));
    }

    #[test]
    fn golden_encoding() {
        let p = profile(&[(&["main"], 0, 3), (&["main", "a"], 5, 200)]);
        let bytes = encode(&p);
        let samples = &bytes[bytes.len() - 7..];
        // main is node 1, a node 2: (1, 0, 3), (2, gap 2, 200 = 0xc8 0x01).
        assert_eq!(samples, [1, 0, 3, 2, 2, 0xc8, 0x01]);
        assert_eq!(&bytes[..12], b"KILNTIME\x01\x00\x00\x00");
    }

    fn arbitrary_profile() -> impl Strategy<Value = TimedProfile> {
        prop::collection::vec((prop::collection::vec(0u8..4, 1..5), 0u64..5, 1u64..50), 0..60).prop_map(|steps| {
            let mut tree = CallTree::new();
            let mut order = TimeOrder::default();
            let mut now = 0;
            for (frames, gap, weight) in steps {
                let mut node = ROOT;
                for f in frames {
                    node = tree.child(node, &format!("f{f}"));
                }
                now += gap;
                tree.add_self(node, weight);
                order.push(node, now, weight);
                now += weight;
            }
            TimedProfile::new(&tree, &order, "nanoseconds")
        })
    }

    proptest! {
        /// Every sample's time is covered on each row of its stack by a box of that row's
        /// frame; boxes of a row never overlap; each row's boxes sum to the time of the samples
        /// deep enough to reach it; and the samples' weights sum to the tree's total.
        #[test]
        fn the_chart_covers_each_sample_exactly(p in arbitrary_profile()) {
            let chart = FlameChart::new(&p.tree, &p.samples);
            prop_assert_eq!(p.samples.iter().map(|s| s.weight).sum::<u64>(), p.tree.total());
            let depths = p.tree.depths();
            for (r, row) in chart.rows.iter().enumerate() {
                for w in row.windows(2) {
                    prop_assert!(w[0].end <= w[1].start);
                }
                let boxed: u64 = row.iter().map(|b| b.end - b.start).sum();
                let reaching: u64 = p.samples.iter().filter(|s| depths[s.stack as usize] as usize > r).map(|s| s.weight).sum();
                prop_assert_eq!(boxed, reaching);
            }
            for s in &p.samples {
                let mut node = s.stack;
                while node != ROOT {
                    let row = depths[node as usize] - 1;
                    let b = chart.box_at(row, s.start as f64).unwrap();
                    prop_assert_eq!(b.node, node);
                    prop_assert!(b.start <= s.start && s.end() <= b.end);
                    node = p.tree.parent[node as usize];
                }
            }
            prop_assert_eq!(decode(&encode(&p)).unwrap(), p);
        }

        /// Visible rects stay inside the canvas and never overlap on a row, wherever the view.
        #[test]
        fn visible_rects_stay_in_the_canvas(p in arbitrary_profile(), a in 0.0f64..1.0, f in 0.001f64..1.0, width in 5.0f64..500.0) {
            let chart = FlameChart::new(&p.tree, &p.samples);
            let view = TimeView::whole(chart.end).zoomed(a, f, chart.end);
            let rects = chart.visible(view, width);
            for r in &rects {
                prop_assert!(r.x >= 0.0 && r.x + r.width <= width + 1e-6, "{:?}", r);
            }
            for row in 0..chart.height() {
                let mut on_row: Vec<_> = rects.iter().filter(|r| r.depth == row).collect();
                on_row.sort_by(|a, b| a.x.total_cmp(&b.x));
                for w in on_row.windows(2) {
                    prop_assert!(w[0].x + w[0].width <= w[1].x + 1e-6, "{:?}", w);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&[1, 0, 0, 0]);
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
            let _ = decode(&bytes);
        }
    }
}
