//! Drawing laid-out frames on the canvas.

use kiln_model::NodeId;
use kiln_model::layout::{FrameRect, diff_color, visible_frames};
use kiln_model::navigate::frame_rect;
use kiln_model::palette::{ColourMode, heat_color};
use leptos::prelude::{GetUntracked, LocalStorage, RwSignal, Set, StoredValue};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ResizeObserver, ResizeObserverEntry};

use super::{Loaded, ROW_HEIGHT};
use crate::theme::Theme;

const FONT: &str = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
const TEXT_PAD: f64 = 3.0;
/// Search hits stand out in a hue no frame colour uses.
const SEARCH_MATCH: (u16, u8, u8) = (285, 70, 62);

/// How the frames look: orientation, what colours tell, and the theme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Root at the bottom (a flame graph) instead of the top (an icicle graph).
    pub bottom_up: bool,
    /// Package colours or the self-value heat scale (comparisons always show the change).
    pub colour: ColourMode,
    /// Light or dark: the background, the text and the frame colours follow it.
    pub theme: Theme,
}

/// The frames the pointer and the keyboard point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marked {
    /// Under the pointer: drawn highlighted.
    pub hovered: Option<NodeId>,
    /// The keyboard's selection: drawn outlined.
    pub selected: Option<NodeId>,
}

/// A ResizeObserver and its callback, which must live as long as the observation.
pub struct WidthObserver {
    observer: Option<ResizeObserver>,
    _callback: Closure<dyn FnMut(js_sys::Array)>,
}

impl WidthObserver {
    /// Stops the observation (before the callback is dropped with the owner).
    pub fn disconnect(&self) {
        if let Some(observer) = &self.observer {
            observer.disconnect();
        }
    }
}

/// Keeps `width` equal to the canvas's CSS width. The browser reports sizes after its own
/// layout, so unlike `clientWidth` this never forces one; it also sees width changes that no
/// window resize announces (a scrollbar appearing when the page grows).
pub fn observe_width(canvas: &HtmlCanvasElement, width: RwSignal<f64>) -> StoredValue<WidthObserver, LocalStorage> {
    let callback = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
        if let Some(entry) = entries.iter().last().and_then(|e| e.dyn_into::<ResizeObserverEntry>().ok()) {
            let w = entry.content_rect().width();
            if w != width.get_untracked() {
                width.set(w);
            }
        }
    });
    let observer = ResizeObserver::new(callback.as_ref().unchecked_ref()).ok();
    if let Some(observer) = &observer {
        observer.observe(canvas);
    }
    StoredValue::new_local(WidthObserver { observer, _callback: callback })
}

/// Sizes the canvas to `css_width` (its box's width; 0 when not yet known, then read from the
/// element) and its rows (sharp on high-DPI screens), draws every visible frame and returns
/// the rectangles for hit testing.
pub fn draw(
    canvas: &HtmlCanvasElement,
    css_width: f64,
    data: &Loaded,
    focus: NodeId,
    marked: Marked,
    matches: Option<&[bool]>,
    look: Look,
) -> Vec<FrameRect> {
    let Marked { hovered, selected } = marked;
    let Look { bottom_up, colour, theme } = look;
    let palette = theme.canvas();
    let window = web_sys::window().expect("a window");
    let ratio = window.device_pixel_ratio().max(1.0);
    let width = if css_width > 0.0 { css_width.round().max(1.0) } else { f64::from(canvas.client_width().max(1)) };
    let height = f64::from(data.geometry.max_depth + 1) * ROW_HEIGHT;
    // Resizing a canvas reallocates and clears it, and a style write forces layout: only do
    // either when the size really changed.
    let (pixel_width, pixel_height) = ((width * ratio) as u32, (height * ratio) as u32);
    if canvas.width() != pixel_width {
        canvas.set_width(pixel_width);
    }
    if canvas.height() != pixel_height {
        canvas.set_height(pixel_height);
        let _ = canvas.set_attribute("style", &format!("height: {height}px"));
    }
    let Some(ctx) = canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        return Vec::new();
    };
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    // A filled background, not a transparent one: the theme shows in PNG exports too.
    ctx.set_fill_style_str(palette.background);
    ctx.fill_rect(0.0, 0.0, width, height);
    ctx.set_font(FONT);
    ctx.set_text_baseline("middle");
    let char_width = ctx.measure_text("0").map(|m| m.width()).unwrap_or(7.0).max(1.0);

    let rects = visible_frames(&data.tree, &data.geometry, focus, width);
    let focus_depth = data.geometry.depth[focus as usize];
    let max_depth = data.geometry.max_depth;
    let y_of = |rect: &FrameRect| f64::from(if bottom_up { max_depth - rect.depth } else { rect.depth }) * ROW_HEIGHT;

    // Fill by colour: each distinct colour crosses into JS once per redraw, not once per frame
    // (a colour string per rectangle was the largest cost of a redraw).
    let mut by_colour: Vec<(u32, usize)> = rects
        .iter()
        .enumerate()
        .map(|(i, rect)| {
            let (hue, sat, light) = theme.frame(match rect.node {
                None => AGGREGATE,
                Some(node) => colour_of(data, node, matches, rect.depth < focus_depth, colour),
            });
            ((u32::from(hue) << 16) | (u32::from(sat) << 8) | u32::from(light), i)
        })
        .collect();
    by_colour.sort_unstable();
    let mut current = u32::MAX;
    for &(key, i) in &by_colour {
        if key != current {
            current = key;
            ctx.set_fill_style_str(&format!("hsl({} {}% {}%)", key >> 16, (key >> 8) & 0xff, key & 0xff));
        }
        let rect = &rects[i];
        let inset = if rect.node.is_some() { 0.5 } else { 0.0 };
        ctx.fill_rect(rect.x, y_of(rect), (rect.width - inset).max(0.5), ROW_HEIGHT - 1.0);
    }

    ctx.set_fill_style_str(palette.text);
    for rect in &rects {
        let Some(node) = rect.node else { continue };
        if let Some(label) = fit_label(data.tree.name_of(node), rect.width - 2.0 * TEXT_PAD, char_width) {
            let _ = ctx.fill_text(&label, rect.x + TEXT_PAD, y_of(rect) + ROW_HEIGHT / 2.0);
        }
    }
    if let Some(rect) = hovered.and_then(|h| rects.iter().find(|r| r.node == Some(h))) {
        ctx.set_stroke_style_str(palette.hover);
        ctx.stroke_rect(rect.x + 0.5, y_of(rect) + 0.5, (rect.width - 1.5).max(0.5), ROW_HEIGHT - 2.0);
    }
    // The selection may be narrower than a pixel (inside an aggregate): outline it anyway.
    if let Some(rect) = selected.and_then(|s| frame_rect(&data.tree, &data.geometry, focus, width, s)) {
        ctx.set_stroke_style_str(palette.selection);
        ctx.set_line_width(2.0);
        ctx.stroke_rect(rect.x + 1.0, y_of(&rect) + 1.0, (rect.width - 2.0).max(1.0), ROW_HEIGHT - 3.0);
        ctx.set_line_width(1.0);
    }
    rects
}

/// Blocks of frames each narrower than a pixel.
const AGGREGATE: (u16, u8, u8) = (36, 14, 82);

fn colour_of(
    data: &Loaded,
    node: NodeId,
    matches: Option<&[bool]>,
    is_ancestor: bool,
    mode: ColourMode,
) -> (u16, u8, u8) {
    let name = data.tree.name[node as usize] as usize;
    let base = || match mode {
        ColourMode::Package => data.colours[name],
        ColourMode::SelfValue => heat_color(data.tree.self_value[node as usize], data.max_self),
    };
    let (hue, sat, light) = match matches.map(|m| m[name]) {
        Some(true) => SEARCH_MATCH,
        None if data.diff.is_some() => {
            let sides = data.diff.as_ref().expect("checked");
            let i = node as usize;
            diff_color(sides.left[i], sides.left_ticks, sides.right[i], sides.right_ticks)
        }
        Some(false) => {
            let (hue, _, _) = base();
            (hue, 10, 85)
        }
        None => base(),
    };
    // Ancestors of the zoomed frame are context, not content: draw them faded.
    let light = if is_ancestor { light.saturating_add(20).min(92) } else { light };
    (hue, sat, light)
}

/// The name cut to fit `room` pixels with an ellipsis, or nothing when not even two
/// characters fit.
fn fit_label(name: &str, room: f64, char_width: f64) -> Option<String> {
    let fits = (room / char_width).floor() as usize;
    if fits < 2 {
        return None;
    }
    let count = name.chars().count();
    if count <= fits {
        return Some(name.to_string());
    }
    let mut cut: String = name.chars().take(fits - 1).collect();
    cut.push('…');
    Some(cut)
}
