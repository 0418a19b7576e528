//! The flamegraph: a tree laid out by `kiln-model` and drawn on a `<canvas>` through web-sys.
//! Click zooms, the breadcrumb walks back up, Escape goes up one level, hover shows a tooltip,
//! right-click opens a menu (focus, sandwich, collapse recursion, copy name).
//!
//! The canvas takes keyboard focus: the arrow keys move a selection across frames (up and down
//! as drawn, whichever way the graph grows), Enter or `+` zooms into the selected frame, `-`
//! zooms out. The selected frame is outlined, its details shown and announced.
//!
//! Everything here runs only in the browser (effects and event handlers); on the server the
//! component renders its empty canvas and controls, which hydration then brings to life.

mod breadcrumb;
mod draw;
mod keyboard;
mod menu;
mod state;
mod time_order;
mod tooltip;

use std::sync::Arc;

use kiln_model::layout::{FrameRect, hit_test};
use kiln_model::palette::ColourMode;
use kiln_model::search::matched_total_preorder;
use kiln_model::{NodeId, ROOT};
use leptos::prelude::*;

use crate::format::{format_value, percent};
use crate::paint::after_paint;
use crate::search::NameSearch;
use crate::theme::use_theme;
use breadcrumb::Breadcrumb;
use draw::{Look, Scene, View};
use keyboard::{on_canvas_key, on_escape};
use menu::ContextMenu;
pub use state::{DiffSides, Loaded, ROW_HEIGHT};
use state::{FlameView, Pointer};
pub use time_order::TimeOrderChart;
use tooltip::{HoverOutline, SelectionText, Tooltip};

/// A flamegraph of `data`.
#[component]
pub fn FlameGraph(
    /// The tree to draw (`None` while loading or when there is nothing).
    #[prop(into)]
    data: Signal<Option<Arc<Loaded>>>,
    /// Frames containing this text are highlighted, the rest dimmed (empty: no search).
    #[prop(into)]
    search: Signal<String>,
    /// Root at the bottom (a flame graph) instead of the top (an icicle graph).
    #[prop(optional)]
    bottom_up: bool,
    /// What frame colours tell (package by default; comparisons always show the change).
    #[prop(optional, into)]
    colour: Option<Signal<ColourMode>>,
    /// Where the menu's "Sandwich" entry leads for a function name.
    #[prop(optional, into)]
    sandwich_href: Option<Callback<String, String>>,
    /// Told a function name when the menu's "Collapse recursion" is chosen (no entry without).
    #[prop(optional, into)]
    on_collapse: Option<Callback<String>>,
    /// The zoom to show, as a frame path (`main;render`): opened with when the data arrives,
    /// and followed when it changes (Back and Forward restoring an earlier zoom).
    #[prop(optional, into)]
    zoom: Option<Signal<String>>,
    /// Told the frame path of every zoom the user makes (empty for the root), to keep it in
    /// the URL and the history; not told the zooms `zoom` or new data set.
    #[prop(optional, into)]
    on_zoom: Option<Callback<String>>,
    /// What the canvas shows, for assistive technology.
    #[prop(default = "Flamegraph; the table lists the same functions")]
    label: &'static str,
    /// The function selected here or in a linked view (the time order): selecting a frame
    /// sets it, and every frame of it is outlined.
    #[prop(optional)]
    linked: Option<RwSignal<Option<String>>>,
) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let flame = FlameView {
        data,
        focus: RwSignal::new(ROOT),
        hover: RwSignal::new(None),
        menu: RwSignal::new(None),
        selected: RwSignal::new(None),
        keyboard: RwSignal::new(false),
        bottom_up,
    };
    let FlameView { focus, hover, menu, selected, keyboard, .. } = flame;
    // The canvas's CSS width, kept by a ResizeObserver (0 until its first report): reading
    // `clientWidth` on every redraw forced a synchronous layout of the whole page, which
    // cost more than the drawing itself once the table had been changed in the same turn.
    let canvas_width = RwSignal::new(0.0f64);
    let rects = StoredValue::new(Vec::<FrameRect>::new());
    let theme = use_theme();
    let colour = colour.unwrap_or_else(|| Signal::stored(ColourMode::Package));

    // Set while the focus changes to follow `zoom` or new data rather than the user, so that
    // the change is not reported back as a new zoom (a new history entry).
    let following = StoredValue::new(false);
    // A new tree opens at the requested zoom when it has that path, else unzoomed.
    Effect::new(move |_| {
        let start = data.with(|d| {
            let path = zoom.map(|z| z.get_untracked()).unwrap_or_default();
            d.as_ref().and_then(|d| find_path(d, &path)).unwrap_or(ROOT)
        });
        following.set_value(true);
        focus.set(start);
        menu.set(None);
        selected.set(None);
    });
    // A zoom set from outside (Back or Forward): the tree shown moves to it when it has that
    // path (the data effect above handles a tree that changes with it).
    if let Some(zoom) = zoom {
        Effect::new(move |first_done: Option<()>| {
            let path = zoom.get();
            if first_done.is_none() {
                return;
            }
            let node = data.with_untracked(|d| match d {
                Some(_) if path.is_empty() => Some(ROOT),
                Some(d) => find_path(d, &path),
                None => None,
            });
            if let Some(node) = node
                && node != focus.get_untracked()
            {
                following.set_value(true);
                focus.set(node);
                menu.set(None);
                selected.set(None);
            }
        });
    }
    if let Some(report) = on_zoom {
        Effect::new(move |previous: Option<NodeId>| {
            let now = focus.get();
            let followed = following.get_value();
            following.set_value(false);
            if !followed
                && previous.is_some_and(|p| p != now)
                && let Some(d) = data.get_untracked()
            {
                let path: Vec<&str> = d.tree.path_to(now).into_iter().map(|n| d.tree.name_of(n)).collect();
                let path = path.join(";");
                // Reported once the zoomed frame is on screen: what the report sets off (the
                // URL and history, links updated across the page) is not needed for that
                // frame. Not when another zoom came first (Back pressed twice quickly).
                after_paint(move || {
                    if focus.try_get_untracked() == Some(now) {
                        report.try_run(path);
                    }
                });
            }
            now
        });
    }

    Effect::new(move |_| {
        if let Some(canvas) = canvas_ref.get() {
            let observer = draw::observe_width(&canvas, canvas_width);
            on_cleanup(move || observer.with_value(|o| o.disconnect()));
        }
    });
    // Where the canvas is in the window, measured when the page has just been laid out, for
    // redraws to draw the rows in view first without asking for a layout.
    let view = StoredValue::new(None::<View>);
    for event in ["scroll", "resize"] {
        let handle = leptos::leptos_dom::helpers::window_event_listener_untyped(event, move |_| {
            if let Some(canvas) = canvas_ref.get_untracked() {
                view.try_set_value(View::measure(&canvas));
            }
        });
        on_cleanup(move || handle.remove());
    }

    // The names lowercased for searching, a while after a tree arrives rather than at the
    // first keystroke (at a million stacks, 48k names: 18 ms, three times a search's own).
    Effect::new(move |_| {
        if let Some(tree) = data.get() {
            let lowercase = move || {
                // Only for the tree still shown (a first paint's part is soon replaced).
                let shown = data.try_with_untracked(|d| d.as_ref().is_some_and(|d| Arc::ptr_eq(d, &tree)));
                if shown == Some(true) {
                    let _ = tree.lowercase_names();
                }
            };
            leptos::prelude::set_timeout(lowercase, std::time::Duration::from_millis(250));
        }
    });

    // Per-name match flags, recomputed only when the tree or the search changes.
    let parsed_search = Memo::new(move |_| NameSearch::parse(&search.get()));
    let matches = Memo::new(move |_| {
        parsed_search.with(|s| {
            data.with(|d| {
                d.as_ref()
                    .filter(|_| s.is_on())
                    .map(|d| s.flags(&d.tree.names, d.lowercase_names()))
                    .filter(|m| m.contains(&true))
            })
        })
    });
    // What the matches hold, summed over the whole tree: a walk over every node, so it runs
    // once the highlighted frames are on screen, as the table's filtering does.
    let matched_summary = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        matches.track();
        data.track();
        after_paint(move || {
            let summary = matches.try_with_untracked(|flags| {
                let d = data.get_untracked()?;
                let total = matched_total_preorder(&d.tree, &d.geometry.subtree_end, flags.as_ref()?);
                Some(format!(
                    "Matched {} of {} ({})",
                    format_value(total, &d.units),
                    format_value(d.tree.total(), &d.units),
                    percent(total, d.tree.total())
                ))
            });
            // `None`: the component is gone (the page changed) while this waited.
            if let Some(summary) = summary {
                matched_summary.try_set(summary);
            }
        });
    });
    let matched = move || match parsed_search.with(|s| s.error().map(str::to_string)) {
        Some(reason) => Some(format!("Not a valid regular expression: {reason}")),
        None => matched_summary.get(),
    };

    // A frame selected here names the linked function; the linked function's frames are
    // outlined.
    if let Some(linked) = linked {
        Effect::new(move |_| {
            let Some(node) = selected.get() else { return };
            let name = data.with_untracked(|d| d.as_ref().map(|d| d.tree.name_of(node).to_string()));
            if name.is_some() && linked.get_untracked() != name {
                linked.set(name);
            }
        });
    }
    // How many frames of the linked function are outlined (an attribute tests read).
    let outlined = RwSignal::new(String::from("0"));

    let max_row = move || data.with(|d| d.as_ref().map_or(0, |d| d.geometry.max_depth));
    Effect::new(move |_| {
        let (Some(d), Some(canvas)) = (data.get(), canvas_ref.get()) else {
            return;
        };
        let look = Look { bottom_up, colour: colour.get(), theme: theme.get() };
        let width = canvas_width.get();
        // The linked function's name id, looked up only while there is one.
        let linked_name = linked
            .and_then(|l| l.get())
            .and_then(|name| d.tree.names.iter().position(|n| *n == name))
            .map(|i| i as u32);
        let (focus, selected) = (focus.get(), selected.get());
        let drawn = matches.with(|m| {
            let scene = Scene { data: &d, focus, selected, linked: linked_name, matches: m.as_deref(), look };
            draw::draw(&canvas, width, &scene, view.get_value())
        });
        rects.set_value(drawn.rects);
        let count = drawn.linked.to_string();
        if outlined.with_untracked(|now| *now != count) {
            outlined.set(count);
        }
        // Once the frame is on screen: the rows out of view (nothing if the picture has
        // changed by then: its own redraw does the same), and where the canvas now is.
        after_paint(move || {
            if drawn.rest {
                matches.try_with_untracked(|m| {
                    let scene = Scene { data: &d, focus, selected, linked: linked_name, matches: m.as_deref(), look };
                    draw::draw_rest(&canvas, width, &scene);
                });
            }
            view.try_set_value(View::measure(&canvas));
        });
    });

    let frame_at = move |x: f64, y: f64| -> Option<FrameRect> {
        let row = (y / ROW_HEIGHT).floor();
        if row < 0.0 {
            return None;
        }
        let row = if bottom_up { i64::from(max_row()) - row as i64 } else { row as i64 };
        let row = u32::try_from(row).ok()?;
        rects.with_value(|r| hit_test(r, x, row))
    };
    let on_click = move |ev: leptos::ev::MouseEvent| {
        menu.set(None);
        keyboard.set(false);
        if let Some(node) = frame_at(ev.offset_x() as f64, ev.offset_y() as f64).and_then(|r| r.node) {
            flame.zoom_into(node);
        }
    };
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let (x, y) = (ev.offset_x() as f64, ev.offset_y() as f64);
        hover.set(frame_at(x, y).map(|r| Pointer { node: r.node, x, y }));
    };
    let on_menu = move |ev: leptos::ev::MouseEvent| {
        let (x, y) = (ev.offset_x() as f64, ev.offset_y() as f64);
        if let Some(node) = frame_at(x, y).and_then(|r| r.node) {
            ev.prevent_default();
            hover.set(None);
            menu.set(Some(Pointer { node: Some(node), x, y }));
        }
    };

    view! {
        <div class="flamegraph" on:keydown=on_escape(flame)>
            <Breadcrumb flame />
            <p class="flame-matched" aria-live="polite">{matched}</p>
            <SelectionText flame />
            <div class="flame-canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    class="flame-canvas"
                    tabindex="0"
                    aria-label=label
                    aria-keyshortcuts="ArrowUp ArrowDown ArrowLeft ArrowRight Enter = - Escape"
                    data-linked-frames=outlined
                    on:click=on_click
                    on:mousedown=|ev: leptos::ev::MouseEvent| {
                        // A double-click focuses the frame under the pointer with no handler
                        // of its own: its first click zooms there, the frame then spans its
                        // row, and the second click lands on it again. It should not also
                        // select or highlight anything, as some browsers do on a double-click
                        // (Chromium does not select on a canvas; Firefox highlights it).
                        if ev.detail() > 1 {
                            ev.prevent_default();
                        }
                    }
                    on:mousemove=on_move
                    on:mouseleave=move |_| hover.set(None)
                    on:contextmenu=on_menu
                    on:keydown=on_canvas_key(flame)
                    on:blur=move |_| keyboard.set(false)
                ></canvas>
                <HoverOutline flame canvas_width />
                <Tooltip flame canvas_ref />
                <ContextMenu flame sandwich_href on_collapse />
            </div>
        </div>
    }
}

/// Draws `data` on `canvas` as a [`FlameGraph`] with no selection, search or linked function
/// first draws it, zoomed to the frame path `zoom` (the root when the tree has no such path):
/// for a picture before the component exists (the page's first paint, before hydration).
pub fn draw_unattached(
    canvas: &web_sys::HtmlCanvasElement,
    data: Arc<Loaded>,
    zoom: &str,
    bottom_up: bool,
    colour: ColourMode,
    theme: crate::theme::Theme,
) {
    let focus = find_path(&data, zoom).unwrap_or(ROOT);
    let look = Look { bottom_up, colour, theme };
    if draw::draw(canvas, 0.0, &Scene::plain(&data, focus, look), None).rest {
        let canvas = canvas.clone();
        after_paint(move || draw::draw_rest(&canvas, 0.0, &Scene::plain(&data, focus, look)));
    }
}

/// The node at a `;`-separated frame path from the root, if the tree has it.
fn find_path(data: &Loaded, path: &str) -> Option<NodeId> {
    if path.is_empty() {
        return None;
    }
    let mut node = ROOT as usize;
    for name in path.split(';') {
        let end = data.geometry.subtree_end[node] as usize;
        node = (node + 1..end)
            .find(|&i| data.tree.parent[i] as usize == node && data.tree.name_of(i as NodeId) == name)?;
    }
    Some(node as NodeId)
}
