//! Drawing laid-out frames on the canvas.

use kiln_model::NodeId;
use kiln_model::layout::{FrameRect, diff_color, frame_color, visible_frames};
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::{Loaded, ROW_HEIGHT};

const FONT: &str = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
const TEXT_PAD: f64 = 3.0;
/// Search hits stand out in a hue no frame colour uses.
const SEARCH_MATCH: (u16, u8, u8) = (285, 70, 62);

/// Sizes the canvas to its box (sharp on high-DPI screens), draws every visible frame and
/// returns the rectangles for hit testing.
pub fn draw(
    canvas: &HtmlCanvasElement,
    data: &Loaded,
    focus: NodeId,
    hovered: Option<NodeId>,
    matches: Option<&[bool]>,
    bottom_up: bool,
) -> Vec<FrameRect> {
    let window = web_sys::window().expect("a window");
    let ratio = window.device_pixel_ratio().max(1.0);
    let width = f64::from(canvas.client_width().max(1));
    let height = f64::from(data.geometry.max_depth + 1) * ROW_HEIGHT;
    canvas.set_width((width * ratio) as u32);
    canvas.set_height((height * ratio) as u32);
    let _ = canvas.set_attribute("style", &format!("height: {height}px"));
    let Some(ctx) = canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        return Vec::new();
    };
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.clear_rect(0.0, 0.0, width, height);
    ctx.set_font(FONT);
    ctx.set_text_baseline("middle");
    let char_width = ctx.measure_text("0").map(|m| m.width()).unwrap_or(7.0).max(1.0);

    let rects = visible_frames(&data.tree, &data.geometry, focus, width);
    let focus_depth = data.geometry.depth[focus as usize];
    let max_depth = data.geometry.max_depth;
    for rect in &rects {
        let row = if bottom_up { max_depth - rect.depth } else { rect.depth };
        let y = f64::from(row) * ROW_HEIGHT;
        let Some(node) = rect.node else {
            ctx.set_fill_style_str("#d8d2c8");
            ctx.fill_rect(rect.x, y, rect.width, ROW_HEIGHT - 1.0);
            continue;
        };
        let name = data.tree.name_of(node);
        let (hue, sat, light) = match matches.map(|m| m[data.tree.name[node as usize] as usize]) {
            Some(true) => SEARCH_MATCH,
            None if data.diff.is_some() => {
                let sides = data.diff.as_ref().expect("checked");
                let i = node as usize;
                diff_color(sides.left[i], sides.left_ticks, sides.right[i], sides.right_ticks)
            }
            Some(false) => {
                let (hue, _, _) = frame_color(name);
                (hue, 10, 85)
            }
            None => frame_color(name),
        };
        // Ancestors of the zoomed frame are context, not content: draw them faded.
        let light = if rect.depth < focus_depth { light.saturating_add(20).min(92) } else { light };
        ctx.set_fill_style_str(&format!("hsl({hue} {sat}% {light}%)"));
        ctx.fill_rect(rect.x, y, (rect.width - 0.5).max(0.5), ROW_HEIGHT - 1.0);
        if Some(node) == hovered {
            ctx.set_stroke_style_str("#222");
            ctx.stroke_rect(rect.x + 0.5, y + 0.5, (rect.width - 1.5).max(0.5), ROW_HEIGHT - 2.0);
        }
        if let Some(label) = fit_label(name, rect.width - 2.0 * TEXT_PAD, char_width) {
            ctx.set_fill_style_str("#1b1b1b");
            let _ = ctx.fill_text(&label, rect.x + TEXT_PAD, y + ROW_HEIGHT / 2.0);
        }
    }
    rects
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
