//! The keys: Escape anywhere in the graph closes the menu, then zooms out a level; on the
//! canvas the arrows move a selection across frames (up and down as drawn, whichever way the
//! graph grows), Enter or `+` zooms into the selected frame, `-` zooms out.

use kiln_model::layout::parent_focus;
use kiln_model::navigate::{self, in_view};
use leptos::ev::KeyboardEvent;
use leptos::prelude::*;

use super::state::FlameView;

/// Escape closes the menu, then walks the zoom back up one level.
pub fn on_escape(flame: FlameView) -> impl Fn(KeyboardEvent) + Copy + 'static {
    let FlameView { data, focus, menu, .. } = flame;
    move |ev| {
        if ev.key() != "Escape" {
            return;
        }
        if menu.get_untracked().is_some() {
            menu.set(None);
        } else if let Some(d) = data.get_untracked() {
            focus.update(|f| *f = parent_focus(&d.tree, *f));
        }
    }
}

/// The canvas's own keys: moving the selection and zooming.
pub fn on_canvas_key(flame: FlameView) -> impl Fn(KeyboardEvent) + Copy + 'static {
    let FlameView { data, focus, hover, selected, keyboard, bottom_up, .. } = flame;
    move |ev| {
        let Some(d) = data.get_untracked() else { return };
        let (tree, geometry, zoomed) = (&d.tree, &d.geometry, focus.get_untracked());
        let current = selected.get_untracked().filter(|&n| in_view(geometry, zoomed, n));
        let key = ev.key();
        match key.as_str() {
            "ArrowUp" | "ArrowDown" | "ArrowLeft" | "ArrowRight" => {
                // The first press selects the zoomed frame: a start that is always in view.
                let next = match current {
                    None => Some(zoomed),
                    Some(node) => {
                        // Up is towards the root in an icicle (root on top), away from it in a
                        // flame graph (root at the bottom).
                        let towards_root = (key == "ArrowUp") != bottom_up;
                        match key.as_str() {
                            "ArrowLeft" => navigate::previous_on_row(tree, geometry, zoomed, node),
                            "ArrowRight" => navigate::next_on_row(tree, geometry, zoomed, node),
                            _ if towards_root => navigate::parent(tree, node),
                            _ => navigate::child(tree, geometry, zoomed, node),
                        }
                    }
                };
                if let Some(next) = next {
                    selected.set(Some(next));
                }
                hover.set(None);
                keyboard.set(true);
            }
            "Enter" | "+" | "=" => {
                if let Some(node) = current {
                    flame.zoom_into(node);
                    keyboard.set(true);
                }
            }
            "-" => focus.update(|f| *f = parent_focus(tree, *f)),
            _ => return,
        }
        // Arrows would scroll the page, Enter would activate nothing useful.
        ev.prevent_default();
    }
}
