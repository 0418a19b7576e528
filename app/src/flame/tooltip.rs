//! What the pointer and the keyboard point at: the hovered frame's outline, the tooltip by the
//! pointer (or by the keyboard's selection), and the selection in words.

use kiln_model::NodeId;
use kiln_model::navigate::frame_rect;
use kiln_model::page_data::share;
use leptos::prelude::*;

use super::state::{FlameView, Loaded, ROW_HEIGHT};
use crate::format::{format_value, percent};
use crate::sync_hydrate::IntoAnySync;

/// The frame under the pointer, outlined by an element over the canvas rather than on it:
/// moving the pointer from frame to frame then costs no redraw.
#[component]
pub fn HoverOutline(
    flame: FlameView,
    /// The canvas's CSS width.
    canvas_width: RwSignal<f64>,
) -> impl IntoView {
    let FlameView { data, focus, hover, bottom_up, .. } = flame;
    let hovered = Memo::new(move |_| hover.with(|h| h.and_then(|h| h.node)));
    move || {
        let node = hovered.get()?;
        let width = canvas_width.get();
        let style = data.with(|d| {
            let d = d.as_ref()?;
            let rect = frame_rect(&d.tree, &d.geometry, focus.get(), width, node)?;
            let row = if bottom_up { d.geometry.max_depth - rect.depth } else { rect.depth };
            Some(format!(
                "left: {:.2}px; top: {}px; width: {:.2}px; height: {}px",
                rect.x,
                f64::from(row) * ROW_HEIGHT,
                (rect.width - 0.5).max(1.0),
                ROW_HEIGHT - 1.0
            ))
        })?;
        Some(view! { <div class="flame-hover" style=style></div> })
    }
}

/// The hovered frame's details by the pointer; else the keyboard's selection's, by its frame.
#[component]
pub fn Tooltip(flame: FlameView, canvas_ref: NodeRef<leptos::html::Canvas>) -> impl IntoView {
    let FlameView { data, focus, hover, keyboard, bottom_up, .. } = flame;
    move || {
        let d = data.get()?;
        let (node, x, y) = match hover.get() {
            Some(h) => (h.node, h.x + 14.0, h.y + 14.0),
            None if keyboard.get() => {
                let node = flame.visible_selection()?;
                let width = f64::from(canvas_ref.get()?.client_width().max(1));
                let rect = frame_rect(&d.tree, &d.geometry, focus.get(), width, node)?;
                let row = if bottom_up { d.geometry.max_depth - rect.depth } else { rect.depth };
                // Below the frame, kept clear of the right edge.
                (Some(node), rect.x.min(width - 320.0).max(0.0), f64::from(row + 1) * ROW_HEIGHT + 4.0)
            }
            None => return None,
        };
        let style = format!("left: {x}px; top: {y}px");
        let body = match node {
            Some(node) => {
                let (name, rows) = details(&d, node);
                view! {
                    <div class="tip-name">{name}</div>
                    {rows.into_iter().map(|row| view! { <div class="tip-row">{row}</div> }).collect_view()}
                }
                .into_any_sync()
            }
            None => {
                view! { <div class="tip-name">"Many small frames: click their parent to zoom in"</div> }.into_any_sync()
            }
        };
        Some(view! { <div class="flame-tooltip" role="tooltip" style=style>{body}</div> })
    }
}

/// The selection in words, for everyone and for screen readers (a live region).
#[component]
pub fn SelectionText(flame: FlameView) -> impl IntoView {
    let text = move || {
        let node = flame.visible_selection()?;
        let d = flame.data.get()?;
        let (name, rows) = details(&d, node);
        Some(format!("Selected {name}: {}", rows.join(", ")))
    };
    view! { <p class="flame-selected" aria-live="polite">{text}</p> }
}

/// A frame's name and the lines describing it: its total and self (or, in a comparison, both
/// sides and the change).
fn details(d: &Loaded, node: NodeId) -> (String, Vec<String>) {
    let name = d.tree.name_of(node).to_string();
    let units = &d.units;
    let rows = match &d.diff {
        Some(sides) => {
            let (l, r) = (sides.left[node as usize], sides.right[node as usize]);
            let (ls, rs) = (share(l, sides.left_ticks), share(r, sides.right_ticks));
            vec![
                format!("before {} ({ls:.2}%)", format_value(l, units)),
                format!("after {} ({rs:.2}%)", format_value(r, units)),
                format!("change {:+.2} points of the profile", rs - ls),
            ]
        }
        None => {
            let total = d.tree.total();
            let (t, s) = (d.tree.total[node as usize], d.tree.self_value[node as usize]);
            let parent_total = d.tree.total[d.tree.parent[node as usize] as usize];
            vec![
                format!(
                    "total {} ({} of all, {} of parent)",
                    format_value(t, units),
                    percent(t, total),
                    percent(t, parent_total),
                ),
                format!("self {} ({})", format_value(s, units), percent(s, total)),
            ]
        }
    };
    (name, rows)
}
