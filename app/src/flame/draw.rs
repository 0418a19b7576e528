//! Drawing laid-out frames on the canvas.

use std::cell::RefCell;
use std::ops::Range;

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
    let resized = canvas.width() != pixel_width || canvas.height() != pixel_height;
    if canvas.width() != pixel_width {
        canvas.set_width(pixel_width);
    }
    if canvas.height() != pixel_height {
        canvas.set_height(pixel_height);
        let _ = canvas.set_attribute("style", &format!("height: {height}px"));
    }
    let ctx = context(canvas)?;
    // Resizing resets the context's state; otherwise it is as the last redraw left it
    // (setting the font parses it: a third of a millisecond a redraw).
    if resized || canvas.get_attribute(DRAWN).is_none() {
        let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
        ctx.set_font(FONT);
        ctx.set_text_baseline("middle");
    }
    let char_width = ctx.measure_text("0").map(|m| m.width()).unwrap_or(7.0).max(1.0);
    Some(Surface { ctx, ratio, width, char_width, pixels: (pixel_width, pixel_height) })
}

/// Fills the rows `drawn` (of `rows`) with the background and every rect on them (`top` its
/// row's top in CSS pixels, `colour` its colour before the theme) as one image, and hands the
/// canvas those rows alone; see `kiln_model::raster`.
pub fn raster(
    surface: &Surface,
    rows: u32,
    drawn: Range<u32>,
    rects: &[FrameRect],
    top: &dyn Fn(&FrameRect) -> f64,
    colour: &dyn Fn(&FrameRect) -> (u16, u8, u8),
    theme: Theme,
) {
    let drawn = drawn.start.min(rows)..drawn.end.min(rows);
    if drawn.is_empty() {
        return;
    }
    let ratio = surface.ratio;
    let (pixel_width, pixel_height) = surface.pixels;
    let line = |css_y: f64| ((css_y * ratio).round() as u32).min(pixel_height);
    // A row's first line; after the last row, the image's end.
    let row_line = |row: u32| if row >= rows { pixel_height } else { line(f64::from(row) * ROW_HEIGHT) };
    let background = theme.canvas().background;
    let full_width = f64::from(pixel_width);
    PIXMAP.with_borrow_mut(|pixmap| {
        // Not filled as a whole: every line of the drawn rows is written below, and only
        // those go to the canvas.
        pixmap.resize(pixel_width, pixel_height);
        for row in drawn.clone() {
            pixmap.fill_line(row_line(row), 0.0, full_width, background);
        }
        // A redraw uses few distinct colours: each is converted once, remembered in a small
        // direct-mapped table keyed by the packed colour.
        let mut converted = [(u32::MAX, [0u8; 3]); 64];
        for rect in rects {
            let y = top(rect);
            if !drawn.contains(&((y / ROW_HEIGHT) as u32)) {
                continue;
            }
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
            pixmap.fill_line(line(y), x, right, rgb);
        }
        // Each row's first line, copied down over the row; its last line (with any the
        // rounding leaves before the next row) is the gap between rows.
        for row in drawn.clone() {
            let gap = line(f64::from(row) * ROW_HEIGHT + ROW_HEIGHT - 1.0);
            pixmap.copy_line_down(row_line(row), gap);
            let next = row_line(row + 1);
            if gap < next {
                pixmap.fill_line(gap, 0.0, full_width, background);
                pixmap.copy_line_down(gap, next);
            }
        }
        let (from, to) = (row_line(drawn.start), row_line(drawn.end));
        if let Ok(image) =
            ImageData::new_with_u8_clamped_array_and_sh(Clamped(pixmap.data()), pixmap.width(), pixmap.height())
        {
            let _ = surface.ctx.put_image_data_with_dirty_x_and_dirty_y_and_dirty_width_and_dirty_height(
                &image,
                0.0,
                0.0,
                0.0,
                f64::from(from),
                full_width,
                f64::from(to - from),
            );
        }
    });
}

/// Whether `rect` lies on one of the rows `drawn`.
fn on_rows(drawn: &Range<u32>, top: &dyn Fn(&FrameRect) -> f64, rect: &FrameRect) -> bool {
    drawn.contains(&((top(rect) / ROW_HEIGHT) as u32))
}

/// Writes each frame's name on it, cut to fit, on the rows `drawn`.
pub fn labels(
    surface: &Surface,
    tree: &FlatTree,
    rects: &[FrameRect],
    drawn: &Range<u32>,
    top: &dyn Fn(&FrameRect) -> f64,
    theme: Theme,
) {
    surface.ctx.set_fill_style_str(theme.canvas().text);
    for rect in rects.iter().filter(|r| on_rows(drawn, top, r)) {
        let Some(node) = rect.node else { continue };
        if let Some(label) = fit_label(tree.name_of(node), rect.width - 2.0 * TEXT_PAD, surface.char_width) {
            let _ = surface.ctx.fill_text(&label, rect.x + TEXT_PAD, top(rect) + ROW_HEIGHT / 2.0);
        }
    }
}

/// The frames among `rects` of the function named `name` (a name id of `tree`).
fn frames_of<'a>(tree: &'a FlatTree, rects: &'a [FrameRect], name: u32) -> impl Iterator<Item = &'a FrameRect> {
    rects.iter().filter(move |r| r.node.is_some_and(|n| tree.name[n as usize] == name))
}

/// Outlines, dashed, every frame on the rows `drawn` of the function named `name` (a name id
/// of `tree`): the function selected in the other view. Returns how many frames of it there
/// are on every row.
pub fn outline_function(
    surface: &Surface,
    tree: &FlatTree,
    rects: &[FrameRect],
    name: Option<u32>,
    drawn: &Range<u32>,
    top: &dyn Fn(&FrameRect) -> f64,
    theme: Theme,
) -> usize {
    let Some(name) = name else { return 0 };
    let ctx = &surface.ctx;
    ctx.set_stroke_style_str(theme.canvas().selection);
    ctx.set_line_width(1.5);
    let dash = js_sys::Array::of2(&4.0.into(), &2.0.into());
    let _ = ctx.set_line_dash(&dash);
    let mut linked = 0;
    for rect in frames_of(tree, rects, name) {
        if on_rows(drawn, top, rect) {
            ctx.stroke_rect(rect.x + 1.0, top(rect) + 1.0, (rect.width - 2.0).max(1.0), ROW_HEIGHT - 3.0);
        }
        linked += 1;
    }
    let _ = ctx.set_line_dash(&js_sys::Array::new());
    ctx.set_line_width(1.0);
    linked
}

/// What one picture of the flamegraph shows.
#[derive(Clone, Copy)]
pub struct Scene<'a> {
    pub data: &'a Loaded,
    /// The zoomed frame.
    pub focus: NodeId,
    pub selected: Option<NodeId>,
    /// The function selected in a linked view (a name id): its frames are outlined.
    pub linked: Option<u32>,
    /// Per name id, whether the search matches it (`None`: no search).
    pub matches: Option<&'a [bool]>,
    pub look: Look,
}

impl<'a> Scene<'a> {
    /// `data` zoomed to `focus`, with no selection, search or linked function.
    pub fn plain(data: &'a Loaded, focus: NodeId, look: Look) -> Self {
        Scene { data, focus, selected: None, linked: None, matches: None, look }
    }
}

/// What [`draw`] did.
pub struct Drawn {
    /// The frames laid out, for hit testing.
    pub rects: Vec<FrameRect>,
    /// How many frames of the linked function there are.
    pub linked: usize,
    /// Whether rows were left for [`draw_rest`].
    pub rest: bool,
}

/// Sizes the canvas to `css_width` and its rows, lays the frames out and draws the rows in
/// and near the window (`view`, measured now when `None`): the frame after an input waits
/// for those alone. [`draw_rest`] draws
/// the others once that frame is on screen (a million-stack graph is a canvas taller than the
/// window, most of its rows below the fold).
pub fn draw(canvas: &HtmlCanvasElement, css_width: f64, scene: &Scene, view: Option<View>) -> Drawn {
    let rows = scene.data.geometry.max_depth + 1;
    let Some(surface) = surface(canvas, css_width, rows) else {
        return Drawn { rects: Vec::new(), linked: 0, rest: false };
    };
    let rects = scene.data.visible_frames(scene.focus, surface.width);
    let linked = scene.linked.map_or(0, |name| frames_of(&scene.data.tree, &rects, name).count());
    let picture = picture(scene, &surface);
    let band = view.or_else(|| View::measure(canvas)).map_or(0..rows, |view| view.rows(rows));
    // The same picture is not drawn twice (the graph drawn before hydration, then by the
    // hydrated component; a width first read from the element, then reported by the observer).
    let drawn = match drawn_rows(canvas, &picture) {
        Some(drawn) if drawn.start <= band.start && band.end <= drawn.end => drawn,
        _ => {
            paint(&surface, scene, &rects, rows, band.clone());
            set_drawn_rows(canvas, &picture, &band);
            band
        }
    };
    Drawn { rects, linked, rest: drawn != (0..rows) }
}

/// Draws the rows [`draw`] left out, if the canvas still shows `scene`'s picture.
pub fn draw_rest(canvas: &HtmlCanvasElement, css_width: f64, scene: &Scene) {
    let rows = scene.data.geometry.max_depth + 1;
    let Some(surface) = surface(canvas, css_width, rows) else { return };
    let picture = picture(scene, &surface);
    let Some(drawn) = drawn_rows(canvas, &picture) else { return };
    if drawn == (0..rows) {
        return;
    }
    let rects = scene.data.visible_frames(scene.focus, surface.width);
    paint(&surface, scene, &rects, rows, 0..drawn.start);
    paint(&surface, scene, &rects, rows, drawn.end..rows);
    set_drawn_rows(canvas, &picture, &(0..rows));
}

/// Everything on the rows `drawn`: frames, labels, the linked function's outlines and the
/// selection.
fn paint(surface: &Surface, scene: &Scene, rects: &[FrameRect], rows: u32, drawn: Range<u32>) {
    if drawn.is_empty() {
        return;
    }
    let Scene { data, focus, selected, linked, matches, look: Look { bottom_up, colour, theme } } = *scene;
    let max_depth = data.geometry.max_depth;
    let focus_depth = data.geometry.depth[focus as usize];
    let y_of = |rect: &FrameRect| f64::from(if bottom_up { max_depth - rect.depth } else { rect.depth }) * ROW_HEIGHT;
    let colour_of_rect = |rect: &FrameRect| match rect.node {
        None => AGGREGATE,
        Some(node) => colour_of(data, node, matches, rect.depth < focus_depth, colour),
    };
    raster(surface, rows, drawn.clone(), rects, &y_of, &colour_of_rect, theme);
    labels(surface, &data.tree, rects, &drawn, &y_of, theme);
    outline_function(surface, &data.tree, rects, linked, &drawn, &y_of, theme);
    // The selection may be narrower than a pixel (inside an aggregate): outline it anyway.
    if let Some(rect) = selected.and_then(|s| frame_rect(&data.tree, &data.geometry, focus, surface.width, s))
        && on_rows(&drawn, &y_of, &rect)
    {
        let ctx = &surface.ctx;
        ctx.set_stroke_style_str(theme.canvas().selection);
        ctx.set_line_width(2.0);
        ctx.stroke_rect(rect.x + 1.0, y_of(&rect) + 1.0, (rect.width - 2.0).max(1.0), ROW_HEIGHT - 3.0);
        ctx.set_line_width(1.0);
    }
}

/// Names what `scene` looks like on `surface`. Trees and match flags are told apart by
/// address: a new one is made while the one drawn is still held, so never at its address.
fn picture(scene: &Scene, surface: &Surface) -> String {
    format!(
        "{:p} {} {:?} {:?} {:?} {:?} {:?}",
        std::ptr::from_ref(scene.data),
        scene.focus,
        scene.selected,
        scene.linked,
        scene.look,
        scene.matches.map(|m| (m.as_ptr(), m.len())),
        surface.pixels
    )
}

/// Where a canvas is in the window.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// The canvas's top, in CSS pixels from the window's top (negative when scrolled past).
    pub top: f64,
    /// The window's height.
    pub height: f64,
}

impl View {
    /// Measured now. This costs a layout when one is pending (after a zoom has changed the
    /// breadcrumb, nearly a millisecond at a million stacks), so redraws use a view measured
    /// when the page has just been laid out: on scrolling, and after a frame.
    pub fn measure(canvas: &HtmlCanvasElement) -> Option<View> {
        let height = web_sys::window()?.inner_height().ok()?.as_f64()?;
        (height > 0.0).then(|| View { top: canvas.get_bounding_client_rect().top(), height })
    }

    /// The rows of `rows` in the window, and half a window above and below it: a view
    /// measured a little earlier (the page may have moved since) still covers the window.
    fn rows(self, rows: u32) -> Range<u32> {
        let margin = self.height / 2.0;
        let first = ((-self.top - margin) / ROW_HEIGHT).floor().max(0.0) as u32;
        let end = ((self.height - self.top + margin) / ROW_HEIGHT).ceil().max(0.0) as u32;
        first.min(rows)..end.min(rows)
    }
}

/// The rows of `picture` the canvas shows, if it shows that picture.
fn drawn_rows(canvas: &HtmlCanvasElement, picture: &str) -> Option<Range<u32>> {
    let drawn = canvas.get_attribute(DRAWN)?;
    let (shown, rows) = drawn.rsplit_once(" rows ")?;
    let (first, end) = rows.split_once("..")?;
    (shown == picture).then_some(first.parse().ok()?..end.parse().ok()?)
}

fn set_drawn_rows(canvas: &HtmlCanvasElement, picture: &str, rows: &Range<u32>) {
    let _ = canvas.set_attribute(DRAWN, &format!("{picture} rows {}..{}", rows.start, rows.end));
}

/// The canvas attribute naming the picture it shows and which of its rows (see [`draw`]).
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
