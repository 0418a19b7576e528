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

mod draw;

use std::sync::Arc;

use kiln_model::layout::{FrameRect, Geometry, frame_color, hit_test, parent_focus};
use kiln_model::navigate::{self, frame_rect, in_view};
use kiln_model::palette::ColourMode;
use kiln_model::search::{lowercase_names, matched_total_preorder};
use kiln_model::{FlatTree, NodeId, ROOT};
use leptos::prelude::*;

use crate::format::{format_value, percent};
use crate::paint::after_paint;
use crate::search::NameSearch;
use crate::sync_hydrate::IntoAnySync;
use crate::theme::use_theme;
use draw::Look;

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
    /// Frame names lowercased once, for searching.
    pub lowercase_names: Vec<String>,
    /// The largest self value of any frame: the top of the heat scale.
    pub max_self: u64,
    /// Each name's colour, computed once: hashing a name's package on every redraw was a
    /// visible part of a redraw's time.
    pub colours: Vec<(u16, u8, u8)>,
}

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
        let lowercase_names = lowercase_names(&tree);
        let max_self = tree.self_value.iter().copied().max().unwrap_or(0);
        let colours = tree.names.iter().map(|n| frame_color(n)).collect();
        Loaded { tree, geometry, units, diff: None, lowercase_names, max_self, colours }
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
        let geometry = Geometry::new(&tree);
        let lowercase_names = lowercase_names(&tree);
        let max_self = tree.self_value.iter().copied().max().unwrap_or(0);
        let colours = tree.names.iter().map(|n| frame_color(n)).collect();
        Loaded { tree, geometry, units, diff: Some(sides), lowercase_names, max_self, colours }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pointer {
    node: Option<NodeId>,
    x: f64,
    y: f64,
}

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
    /// The zoom to open with, as a frame path (`main;render`), when the data arrives.
    #[prop(optional, into)]
    zoom: Option<Signal<String>>,
    /// Told the frame path of every new zoom (empty for the root), to keep it in the URL.
    #[prop(optional, into)]
    on_zoom: Option<Callback<String>>,
    /// What the canvas shows, for assistive technology.
    #[prop(default = "Flamegraph; the table lists the same functions")]
    label: &'static str,
) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let focus = RwSignal::new(ROOT);
    let hover = RwSignal::<Option<Pointer>>::new(None);
    let menu = RwSignal::<Option<Pointer>>::new(None);
    // The frame the keyboard moves (a click selects too); its tooltip stays up only while the
    // keyboard drives, so that a click does not leave one behind.
    let selected = RwSignal::<Option<NodeId>>::new(None);
    let keyboard = RwSignal::new(false);
    // The canvas's CSS width, kept by a ResizeObserver (0 until its first report): reading
    // `clientWidth` on every redraw forced a synchronous layout of the whole page, which
    // cost more than the drawing itself once the table had been changed in the same turn.
    let canvas_width = RwSignal::new(0.0f64);
    let rects = StoredValue::new(Vec::<FrameRect>::new());
    let theme = use_theme();
    let colour = colour.unwrap_or_else(|| Signal::stored(ColourMode::Package));

    // A new tree opens at the requested zoom when it has that path, else unzoomed.
    Effect::new(move |_| {
        let start = data.with(|d| {
            let path = zoom.map(|z| z.get_untracked()).unwrap_or_default();
            d.as_ref().and_then(|d| find_path(d, &path)).unwrap_or(ROOT)
        });
        focus.set(start);
        menu.set(None);
        selected.set(None);
    });
    if let Some(report) = on_zoom {
        Effect::new(move |previous: Option<NodeId>| {
            let now = focus.get();
            if previous.is_some_and(|p| p != now)
                && let Some(d) = data.get_untracked()
            {
                let path: Vec<&str> = d.tree.path_to(now).into_iter().map(|n| d.tree.name_of(n)).collect();
                let path = path.join(";");
                // Reported once the zoomed frame is on screen: what the report sets off (the
                // URL rewrite, links updated across the page) is not needed for that frame.
                after_paint(move || {
                    report.try_run(path);
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

    // Per-name match flags, recomputed only when the tree or the search changes.
    let parsed_search = Memo::new(move |_| NameSearch::parse(&search.get()));
    let matches = Memo::new(move |_| {
        parsed_search.with(|s| {
            data.with(|d| {
                d.as_ref()
                    .filter(|_| s.is_on())
                    .map(|d| s.flags(&d.tree.names, &d.lowercase_names))
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

    let max_row = move || data.with(|d| d.as_ref().map_or(0, |d| d.geometry.max_depth));
    Effect::new(move |_| {
        let (Some(d), Some(canvas)) = (data.get(), canvas_ref.get()) else {
            return;
        };
        let look = Look { bottom_up, colour: colour.get(), theme: theme.get() };
        let width = canvas_width.get();
        let drawn = matches.with(|m| draw::draw(&canvas, width, &d, focus.get(), selected.get(), m.as_deref(), look));
        rects.set_value(drawn);
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
    let zoom_into = move |node: NodeId| {
        focus.set(node);
        selected.set(Some(node));
    };
    let on_click = move |ev: leptos::ev::MouseEvent| {
        menu.set(None);
        keyboard.set(false);
        if let Some(node) = frame_at(ev.offset_x() as f64, ev.offset_y() as f64).and_then(|r| r.node) {
            zoom_into(node);
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

    let breadcrumb = move || {
        let d = data.get()?;
        let path = d.tree.path_to(focus.get());
        let mut crumbs = vec![(ROOT, "all".to_string())];
        crumbs.extend(path.into_iter().map(|n| (n, d.tree.name_of(n).to_string())));
        Some(
            crumbs
                .into_iter()
                .map(|(node, name)| {
                    let current = node == focus.get_untracked();
                    view! {
                        <li>
                            <button
                                type="button"
                                class:current=current
                                aria-current=current.then_some("true")
                                on:click=move |_| focus.set(node)
                            >
                                {name}
                            </button>
                        </li>
                    }
                })
                .collect_view(),
        )
    };

    // The selection while it is in view (zooming elsewhere through the breadcrumb can leave
    // it out of the picture).
    let visible_selection = move || {
        let node = selected.get()?;
        data.with(|d| d.as_ref().is_some_and(|d| in_view(&d.geometry, focus.get(), node))).then_some(node)
    };

    // The frame under the pointer, outlined by an element over the canvas rather than on it:
    // moving the pointer from frame to frame then costs no redraw.
    let hovered = Memo::new(move |_| hover.with(|h| h.and_then(|h| h.node)));
    let hover_outline = move || {
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
    };

    // The hovered frame's details by the pointer; else the keyboard's selection's, by its frame.
    let tooltip = move || {
        let d = data.get()?;
        let (node, x, y) = match hover.get() {
            Some(h) => (h.node, h.x + 14.0, h.y + 14.0),
            None if keyboard.get() => {
                let node = visible_selection()?;
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
    };
    // The selection in words, for everyone and for screen readers (a live region).
    let selection_text = move || {
        let node = visible_selection()?;
        let d = data.get()?;
        let (name, rows) = details(&d, node);
        Some(format!("Selected {name}: {}", rows.join(", ")))
    };

    let context_menu = move || {
        let m = menu.get()?;
        let node = m.node?;
        let name = data.with(|d| d.as_ref().map(|d| d.tree.name_of(node).to_string()))?;
        let style = format!("left: {}px; top: {}px", m.x + 4.0, m.y + 4.0);
        let copied = name.clone();
        let sandwich = sandwich_href.map(|href| {
            let href = href.run(name.clone());
            view! {
                <a role="menuitem" href=href>
                    "Sandwich view"
                </a>
            }
        });
        let collapse = on_collapse.map(|collapse| {
            let name = name.clone();
            view! {
                <button
                    type="button"
                    role="menuitem"
                    title="Merge this function's direct recursive calls into one frame"
                    on:click=move |_| {
                        menu.set(None);
                        collapse.run(name.clone());
                    }
                >
                    "Collapse recursion"
                </button>
            }
        });
        Some(view! {
            <div class="flame-menu" role="menu" style=style>
                <button
                    type="button"
                    role="menuitem"
                    on:click=move |_| {
                        zoom_into(node);
                        menu.set(None);
                    }
                >
                    "Focus"
                </button>
                {sandwich}
                {collapse}
                <button
                    type="button"
                    role="menuitem"
                    on:click=move |_| {
                        copy_text(&copied);
                        menu.set(None);
                    }
                >
                    "Copy name"
                </button>
            </div>
        })
    };

    // Escape closes the menu, then walks the zoom back up one level.
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() != "Escape" {
            return;
        }
        if menu.get_untracked().is_some() {
            menu.set(None);
        } else if let Some(d) = data.get_untracked() {
            focus.update(|f| *f = parent_focus(&d.tree, *f));
        }
    };
    // The canvas's own keys: moving the selection and zooming.
    let on_canvas_key = move |ev: leptos::ev::KeyboardEvent| {
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
                    zoom_into(node);
                    keyboard.set(true);
                }
            }
            "-" => focus.update(|f| *f = parent_focus(tree, *f)),
            _ => return,
        }
        // Arrows would scroll the page, Enter would activate nothing useful.
        ev.prevent_default();
    };

    view! {
        <div class="flamegraph" on:keydown=on_key>
            <nav class="breadcrumb" aria-label="Zoom path">
                <ol>{breadcrumb}</ol>
            </nav>
            <p class="flame-matched" aria-live="polite">{matched}</p>
            <p class="flame-selected" aria-live="polite">{selection_text}</p>
            <div class="flame-canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    class="flame-canvas"
                    tabindex="0"
                    aria-label=label
                    aria-keyshortcuts="ArrowUp ArrowDown ArrowLeft ArrowRight Enter = - Escape"
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
                    on:keydown=on_canvas_key
                    on:blur=move |_| keyboard.set(false)
                ></canvas>
                {hover_outline}
                {tooltip}
                {context_menu}
            </div>
        </div>
    }
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

/// `part` as a percentage of `whole`.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Puts `text` on the clipboard (best effort: browsers refuse outside secure contexts).
fn copy_text(text: &str) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(text);
    }
}
