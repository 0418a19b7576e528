//! Drawing laid-out frames on the canvas.

use std::cell::RefCell;

use kiln_model::layout::{FrameRect, diff_color};
use kiln_model::navigate::frame_rect;
use kiln_model::palette::{ColourMode, heat_color};
use kiln_model::raster::{Pixmap, hsl_to_rgb};
use kiln_model::{FlatTree, NodeId};
use leptos::prelude::{GetUntracked, LocalStorage, RwSignal, Set, StoredValue};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{
    CanvasRenderingContext2d, ContextAttributes2d, HtmlCanvasElement, ImageData, ResizeObserver, ResizeObserverEntry,
};

use super::state::{Loaded, ROW_HEIGHT};
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

/// A canvas sized for a redraw: its context set up, and the measures every redraw uses.
pub struct Surface {
    /// The 2D context, scaled so that drawing is in CSS pixels.
    pub ctx: CanvasRenderingContext2d,
    /// Device pixels per CSS pixel.
    pub ratio: f64,
    /// Width in CSS pixels.
    pub width: f64,
    /// One character's width in the label font.
    pub char_width: f64,
    /// The canvas's size in device pixels.
    pub pixels: (u32, u32),
}

/// Sizes `canvas` to `css_width` (its box's width; 0 when not yet known, then read from the
/// element) by `rows` rows, sharp on high-DPI screens.
pub fn surface(canvas: &HtmlCanvasElement, css_width: f64, rows: u32) -> Option<Surface> {
    let window = web_sys::window().expect("a window");
    let ratio = window.device_pixel_ratio().max(1.0);
    let width = if css_width > 0.0 { css_width.round().max(1.0) } else { f64::from(canvas.client_width().max(1)) };
    let height = f64::from(rows.max(1)) * ROW_HEIGHT;
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
    let ctx = context(canvas)?;
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.set_font(FONT);
    ctx.set_text_baseline("middle");
    let char_width = ctx.measure_text("0").map(|m| m.width()).unwrap_or(7.0).max(1.0);
    Some(Surface { ctx, ratio, width, char_width, pixels: (pixel_width, pixel_height) })
}

/// Fills the background and every rect (`top` its row's top in CSS pixels, `colour` its
/// colour before the theme) as one image on `rows` rows; see `kiln_model::raster`.
pub fn raster(
    surface: &Surface,
    rows: u32,
    rects: &[FrameRect],
    top: &dyn Fn(&FrameRect) -> f64,
    colour: &dyn Fn(&FrameRect) -> (u16, u8, u8),
    theme: Theme,
) {
    let ratio = surface.ratio;
    let (pixel_width, pixel_height) = surface.pixels;
    let row_top = |css_y: f64| (css_y * ratio).round() as u32;
    PIXMAP.with_borrow_mut(|pixmap| {
        // The background is filled, not transparent: the theme shows in PNG exports too.
        pixmap.reset(pixel_width, pixel_height, theme.canvas().background);
        // A redraw uses few distinct colours: each is converted once, remembered in a small
        // direct-mapped table keyed by the packed colour.
        let mut converted = [(u32::MAX, [0u8; 3]); 64];
        for rect in rects {
            let (hue, sat, light) = theme.frame(colour(rect));
            let key = (u32::from(hue) << 16) | (u32::from(sat) << 8) | u32::from(light);
            let slot = &mut converted[(key.wrapping_mul(0x9E37_79B1) >> 26) as usize];
            if slot.0 != key {
                *slot = (key, hsl_to_rgb((hue, sat, light)));
            }
            let rgb = slot.1;
            // A frame leaves a gap on its right, so that neighbours stay apart.
            let inset = if rect.node.is_some() { 0.5 } else { 0.0 };
            let x = rect.x * ratio;
            let right = x + (rect.width - inset).max(0.5) * ratio;
            pixmap.fill_line(row_top(top(rect)), x, right, rgb);
        }
        // Each row's first line, copied down over the row (one line of the row height is the
        // gap between rows).
        for row in 0..rows {
            let top = f64::from(row) * ROW_HEIGHT;
            pixmap.copy_line_down(row_top(top), row_top(top + ROW_HEIGHT - 1.0));
        }
        if let Ok(image) =
            ImageData::new_with_u8_clamped_array_and_sh(Clamped(pixmap.data()), pixmap.width(), pixmap.height())
        {
            let _ = surface.ctx.put_image_data(&image, 0.0, 0.0);
        }
    });
}

/// Writes each frame's name on it, cut to fit.
pub fn labels(surface: &Surface, tree: &FlatTree, rects: &[FrameRect], top: &dyn Fn(&FrameRect) -> f64, theme: Theme) {
    surface.ctx.set_fill_style_str(theme.canvas().text);
    for rect in rects {
        let Some(node) = rect.node else { continue };
        if let Some(label) = fit_label(tree.name_of(node), rect.width - 2.0 * TEXT_PAD, surface.char_width) {
            let _ = surface.ctx.fill_text(&label, rect.x + TEXT_PAD, top(rect) + ROW_HEIGHT / 2.0);
        }
    }
}

/// Outlines every frame of the function named `name` (a name id of `tree`), dashed: the
/// function selected in the other view. Returns how many it outlined.
pub fn outline_function(
    surface: &Surface,
    tree: &FlatTree,
    rects: &[FrameRect],
    name: Option<u32>,
    top: &dyn Fn(&FrameRect) -> f64,
    theme: Theme,
) -> usize {
    let Some(name) = name else { return 0 };
    let ctx = &surface.ctx;
    ctx.set_stroke_style_str(theme.canvas().selection);
    ctx.set_line_width(1.5);
    let dash = js_sys::Array::of2(&4.0.into(), &2.0.into());
    let _ = ctx.set_line_dash(&dash);
    let mut outlined = 0;
    for rect in rects {
        if rect.node.is_some_and(|n| tree.name[n as usize] == name) {
            ctx.stroke_rect(rect.x + 1.0, top(rect) + 1.0, (rect.width - 2.0).max(1.0), ROW_HEIGHT - 3.0);
            outlined += 1;
        }
    }
    let _ = ctx.set_line_dash(&js_sys::Array::new());
    ctx.set_line_width(1.0);
    outlined
}

/// Sizes the canvas to `css_width` and its rows, draws every visible frame and returns the
/// rectangles for hit testing, and how many frames of the `linked` function (a name id) it
/// outlined.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    canvas: &HtmlCanvasElement,
    css_width: f64,
    data: &Loaded,
    focus: NodeId,
    selected: Option<NodeId>,
    linked: Option<u32>,
    matches: Option<&[bool]>,
    look: Look,
) -> (Vec<FrameRect>, usize) {
    let Look { bottom_up, colour, theme } = look;
    let max_depth = data.geometry.max_depth;
    let Some(surface) = surface(canvas, css_width, max_depth + 1) else {
        return (Vec::new(), 0);
    };
    let width = surface.width;
    let rects = data.visible_frames(focus, width);
    // What the picture shows, kept on the canvas: the same picture is not drawn twice (the
    // graph drawn before hydration, then by the hydrated component; a width first read from
    // the element, then reported by the observer). Trees and match flags are told apart by
    // address: a new one is made while the one drawn is still held, so never at its address.
    let picture = format!(
        "{:p} {focus} {selected:?} {linked:?} {:?} {look:?} {:?}",
        std::ptr::from_ref(data),
        matches.map(|m| (m.as_ptr(), m.len())),
        surface.pixels
    );
    if canvas.get_attribute(DRAWN).is_some_and(|drawn| drawn == picture) {
        let outlined = linked.map_or(0, |name| {
            rects.iter().filter(|r| r.node.is_some_and(|n| data.tree.name[n as usize] == name)).count()
        });
        return (rects, outlined);
    }
    let _ = canvas.set_attribute(DRAWN, &picture);
    let focus_depth = data.geometry.depth[focus as usize];
    let y_of = |rect: &FrameRect| f64::from(if bottom_up { max_depth - rect.depth } else { rect.depth }) * ROW_HEIGHT;
    let colour_of_rect = |rect: &FrameRect| match rect.node {
        None => AGGREGATE,
        Some(node) => colour_of(data, node, matches, rect.depth < focus_depth, colour),
    };
    raster(&surface, max_depth + 1, &rects, &y_of, &colour_of_rect, theme);
    labels(&surface, &data.tree, &rects, &y_of, theme);
    let outlined = outline_function(&surface, &data.tree, &rects, linked, &y_of, theme);
    // The selection may be narrower than a pixel (inside an aggregate): outline it anyway.
    if let Some(rect) = selected.and_then(|s| frame_rect(&data.tree, &data.geometry, focus, width, s)) {
        let ctx = &surface.ctx;
        ctx.set_stroke_style_str(theme.canvas().selection);
        ctx.set_line_width(2.0);
        ctx.stroke_rect(rect.x + 1.0, y_of(&rect) + 1.0, (rect.width - 2.0).max(1.0), ROW_HEIGHT - 3.0);
        ctx.set_line_width(1.0);
    }
    (rects, outlined)
}

/// The canvas attribute naming the picture it shows (see [`draw`]).
const DRAWN: &str = "data-picture";

/// The canvas's 2D context, opaque: every redraw fills the background first, and an opaque
/// canvas is composited without blending. Only the first `getContext` call's options count,
/// and this is the first.
fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    let options = ContextAttributes2d::new();
    options.set_alpha(false);
    canvas.get_context_with_context_options("2d", &options).ok().flatten()?.dyn_into().ok()
}

thread_local! {
    /// The frames' image, kept between redraws so that its buffer is allocated once.
    static PIXMAP: RefCell<Pixmap> = RefCell::new(Pixmap::default());
}

/// Blocks of frames each narrower than a pixel.
pub const AGGREGATE: (u16, u8, u8) = (36, 14, 82);

pub fn colour_of(
    data: &Loaded,
    node: NodeId,
    matches: Option<&[bool]>,
    is_ancestor: bool,
    mode: ColourMode,
) -> (u16, u8, u8) {
    let name = data.tree.name[node as usize] as usize;
    let base = || match mode {
        ColourMode::Package => data.colour(name),
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
