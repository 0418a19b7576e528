//! What the flamegraph's parts share: the tree as loaded, and the signals of one graph's view.

use std::sync::{Arc, Mutex, OnceLock};

use kiln_model::layout::{FrameRect, Geometry, frame_color, visible_frames};
use kiln_model::navigate::in_view;
use kiln_model::search::LowercaseNames;
use kiln_model::time_order::{FlameChart, TimedProfile};
use kiln_model::{FlatTree, NodeId};
use leptos::prelude::*;

/// Height of one row of frames, in CSS pixels.
pub const ROW_HEIGHT: f64 = 18.0;

/// A tree ready to draw: the data, its geometry (computed once), and its sample unit.
pub struct Loaded {
    /// The merged tree (for a comparison: both sides added, so every frame of either shows).
    pub tree: FlatTree,
    /// Per-node positions in sample units.
    pub geometry: Geometry,
    /// Unit of the values (`samples`, `nanoseconds`, `bytes`, …).
    pub units: String,
    /// Per-side values when this is a comparison.
    pub diff: Option<DiffSides>,
    /// Frame names lowercased once, at the first search: not on the way to the first paint.
    lowercase_names: OnceLock<LowercaseNames>,
    /// The largest self value of any frame: the top of the heat scale.
    pub max_self: u64,
    /// Each name's colour, computed at its first draw and kept: hashing a name's package on
    /// every redraw was a visible part of a redraw's time, and hashing every name before the
    /// first one (most are never drawn at the root's zoom) a visible part of the first paint.
    colours: Vec<OnceLock<(u16, u8, u8)>>,
    /// For a profile opened in time order, its flame chart (boxes of `tree`'s nodes), how
    /// many samples it was laid out from, and which profile of the file it is.
    pub chart: Option<(FlameChart, usize, String)>,
    /// The frames of the last few layouts, with their focus and width, the newest last: a
    /// search, a hover or a selection changes colours only, and going back to a zoom just
    /// left (the breadcrumb, Back) finds its frames here. Laying out a million-node tree again
    /// was a third of such a redraw.
    layouts: Mutex<Vec<(NodeId, u64, Vec<FrameRect>)>>,
}

/// How many layouts a tree keeps (a few hundred kilobytes each at a million stacks).
const KEPT_LAYOUTS: usize = 4;

/// The two sides of a comparison, node by node (same indices as [`Loaded::tree`]).
pub struct DiffSides {
    /// Left (baseline) totals.
    pub left: Vec<u64>,
    /// Right (comparison) totals.
    pub right: Vec<u64>,
    /// Left side's total.
    pub left_ticks: u64,
    /// Right side's total.
    pub right_ticks: u64,
}

impl Loaded {
    /// Computes the geometry of `tree`.
    pub fn new(tree: FlatTree, units: String) -> Self {
        let geometry = Geometry::new(&tree);
        let max_self = tree.self_value.iter().copied().max().unwrap_or(0);
        let colours = tree.names.iter().map(|_| OnceLock::new()).collect();
        Loaded {
            tree,
            geometry,
            units,
            diff: None,
            lowercase_names: OnceLock::new(),
            max_self,
            colours,
            chart: None,
            layouts: Mutex::new(Vec::new()),
        }
    }

    /// The frames to draw when `focus` fills `width` CSS pixels
    /// ([`visible_frames`]), laid out again only when that focus and width are not among the
    /// last few.
    pub fn visible_frames(&self, focus: NodeId, width: f64) -> Vec<FrameRect> {
        let Ok(mut layouts) = self.layouts.lock() else {
            return visible_frames(&self.tree, &self.geometry, focus, width);
        };
        let key = (focus, width.to_bits());
        if let Some(at) = layouts.iter().position(|(f, w, _)| (*f, *w) == key) {
            let layout = layouts.remove(at);
            let rects = layout.2.clone();
            layouts.push(layout);
            return rects;
        }
        let rects = visible_frames(&self.tree, &self.geometry, focus, width);
        if layouts.len() == KEPT_LAYOUTS {
            layouts.remove(0);
        }
        layouts.push((focus, width.to_bits(), rects.clone()));
        rects
    }

    /// The frame names lowercased, for searching.
    pub fn lowercase_names(&self) -> &LowercaseNames {
        self.lowercase_names.get_or_init(|| LowercaseNames::new(self.tree.names.iter().map(String::as_str)))
    }

    /// The package colour of the name with id `name`.
    pub fn colour(&self, name: usize) -> (u16, u8, u8) {
        *self.colours[name].get_or_init(|| frame_color(&self.tree.names[name]))
    }

    /// A timed profile with its flame chart laid out.
    pub fn timed(profile: TimedProfile) -> Self {
        let chart = FlameChart::new(&profile.tree, &profile.samples);
        let samples = profile.samples.len();
        Loaded { chart: Some((chart, samples, profile.name)), ..Loaded::new(profile.tree, profile.units) }
    }

    /// A comparison of `left` and `right`, laid out on their sum.
    pub fn compare(left: &FlatTree, right: &FlatTree, units: String) -> Self {
        let d = kiln_model::diff::diff(left, right);
        let total: Vec<u64> = d.left_total.iter().zip(&d.right_total).map(|(l, r)| l + r).collect();
        let self_value: Vec<u64> = d.left_self.iter().zip(&d.right_self).map(|(l, r)| l + r).collect();
        let sides = DiffSides {
            left_ticks: d.left_ticks(),
            right_ticks: d.right_ticks(),
            left: d.left_total,
            right: d.right_total,
        };
        let tree = FlatTree { names: d.names, name: d.name, parent: d.parent, total, self_value };
        Loaded { diff: Some(sides), ..Loaded::new(tree, units) }
    }
}

/// A point on the canvas, in CSS pixels, and the frame there (`None` over frames too small to
/// draw one by one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pointer {
    /// The frame under the point.
    pub node: Option<NodeId>,
    /// Pixels from the canvas's left edge.
    pub x: f64,
    /// Pixels from the canvas's top edge.
    pub y: f64,
}

/// One flamegraph's view, shared by its parts (canvas, breadcrumb, tooltip, menu, keys).
/// Signals are cheap handles, so each part holds a copy.
#[derive(Clone, Copy)]
pub struct FlameView {
    /// The tree drawn (`None` while loading or when there is nothing).
    pub data: Signal<Option<Arc<Loaded>>>,
    /// The zoomed frame (the root when not zoomed).
    pub focus: RwSignal<NodeId>,
    /// The pointer over the canvas.
    pub hover: RwSignal<Option<Pointer>>,
    /// Where the context menu is open, on which frame.
    pub menu: RwSignal<Option<Pointer>>,
    /// The frame the keyboard moves (a click selects too).
    pub selected: RwSignal<Option<NodeId>>,
    /// Whether the keyboard drives: the selection's tooltip stays up only then, so that a click
    /// does not leave one behind.
    pub keyboard: RwSignal<bool>,
    /// Root at the bottom (a flame graph) instead of the top (an icicle graph).
    pub bottom_up: bool,
}

impl FlameView {
    /// Zooms into `node` and selects it.
    pub fn zoom_into(self, node: NodeId) {
        self.focus.set(node);
        self.selected.set(Some(node));
    }

    /// The selection while it is in view (zooming elsewhere through the breadcrumb can leave
    /// it out of the picture).
    pub fn visible_selection(self) -> Option<NodeId> {
        let node = self.selected.get()?;
        self.data.with(|d| d.as_ref().is_some_and(|d| in_view(&d.geometry, self.focus.get(), node))).then_some(node)
    }
}
