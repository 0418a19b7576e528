//! The flamegraph: a tree laid out by `kiln-model` and drawn on a `<canvas>` through web-sys.
//! Click zooms, the breadcrumb walks back up, Escape goes up one level, hover shows a tooltip,
//! right-click opens a menu (focus, sandwich, copy name).
//!
//! Everything here runs only in the browser (effects and event handlers); on the server the
//! component renders its empty canvas and controls, which hydration then brings to life.

mod draw;
pub mod fetch;

use std::sync::Arc;
use std::time::Duration;

use kiln_model::layout::{FrameRect, Geometry, frame_color, hit_test, parent_focus};
use kiln_model::search::{lowercase_names, matched_total, matches_in};
use kiln_model::{FlatTree, NodeId, ROOT};
use leptos::prelude::*;

use crate::format::{format_value, percent};

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
        let colours = tree.names.iter().map(|n| frame_color(n)).collect();
        Loaded { tree, geometry, units, diff: None, lowercase_names, colours }
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
        let colours = tree.names.iter().map(|n| frame_color(n)).collect();
        Loaded { tree, geometry, units, diff: Some(sides), lowercase_names, colours }
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
    /// Where the menu's "Sandwich" entry leads for a function name.
    #[prop(optional, into)]
    sandwich_href: Option<Callback<String, String>>,
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
    // The canvas's CSS width, kept by a ResizeObserver (0 until its first report): reading
    // `clientWidth` on every redraw forced a synchronous layout of the whole page, which
    // cost more than the drawing itself once the table had been changed in the same turn.
    let canvas_width = RwSignal::new(0.0f64);
    let rects = StoredValue::new(Vec::<FrameRect>::new());

    // A new tree opens at the requested zoom when it has that path, else unzoomed.
    Effect::new(move |_| {
        let start = data.with(|d| {
            let path = zoom.map(|z| z.get_untracked()).unwrap_or_default();
            d.as_ref().and_then(|d| find_path(d, &path)).unwrap_or(ROOT)
        });
        focus.set(start);
        menu.set(None);
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
                request_animation_frame(move || {
                    set_timeout(
                        move || {
                            report.try_run(path);
                        },
                        Duration::ZERO,
                    )
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
    let matches = Memo::new(move |_| {
        let needle = search.get();
        data.with(|d| d.as_ref().map(|d| matches_in(&d.lowercase_names, &needle)).filter(|m| m.contains(&true)))
    });
    let matched = move || {
        let flags = matches.get()?;
        let d = data.get()?;
        let total = matched_total(&d.tree, &flags);
        Some(format!(
            "Matched {} of {} ({})",
            format_value(total, &d.units),
            format_value(d.tree.total(), &d.units),
            percent(total, d.tree.total())
        ))
    };

    let max_row = move || data.with(|d| d.as_ref().map_or(0, |d| d.geometry.max_depth));
    Effect::new(move |_| {
        let (Some(d), Some(canvas)) = (data.get(), canvas_ref.get()) else {
            return;
        };
        let hovered = hover.get().and_then(|h| h.node);
        let width = canvas_width.get();
        let drawn = matches.with(|m| draw::draw(&canvas, width, &d, focus.get(), hovered, m.as_deref(), bottom_up));
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
    let on_click = move |ev: leptos::ev::MouseEvent| {
        menu.set(None);
        if let Some(node) = frame_at(ev.offset_x() as f64, ev.offset_y() as f64).and_then(|r| r.node) {
            focus.set(node);
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

    let tooltip = move || {
        let h = hover.get()?;
        let d = data.get()?;
        let total = d.tree.total();
        let style = format!("left: {}px; top: {}px", h.x + 14.0, h.y + 14.0);
        let body = match h.node {
            Some(node) if d.diff.is_some() => {
                let sides = d.diff.as_ref().expect("checked");
                let (l, r) = (sides.left[node as usize], sides.right[node as usize]);
                let (ls, rs) = (share(l, sides.left_ticks), share(r, sides.right_ticks));
                view! {
                    <div class="tip-name">{d.tree.name_of(node).to_string()}</div>
                    <div class="tip-row">{format!("before {} ({ls:.2}%)", format_value(l, &d.units))}</div>
                    <div class="tip-row">{format!("after {} ({rs:.2}%)", format_value(r, &d.units))}</div>
                    <div class="tip-row">{format!("change {:+.2} points of the profile", rs - ls)}</div>
                }
                .into_any()
            }
            Some(node) => {
                let (t, s) = (d.tree.total[node as usize], d.tree.self_value[node as usize]);
                let parent_total = d.tree.total[d.tree.parent[node as usize] as usize];
                let units = &d.units;
                view! {
                    <div class="tip-name">{d.tree.name_of(node).to_string()}</div>
                    <div class="tip-row">
                        {format!(
                            "total {} ({} of all, {} of parent)",
                            format_value(t, units),
                            percent(t, total),
                            percent(t, parent_total),
                        )}
                    </div>
                    <div class="tip-row">{format!("self {} ({})", format_value(s, units), percent(s, total))}</div>
                }
                .into_any()
            }
            None => view! { <div class="tip-name">"Many small frames: click their parent to zoom in"</div> }.into_any(),
        };
        Some(view! { <div class="flame-tooltip" role="tooltip" style=style>{body}</div> })
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
        Some(view! {
            <div class="flame-menu" role="menu" style=style>
                <button
                    type="button"
                    role="menuitem"
                    on:click=move |_| {
                        focus.set(node);
                        menu.set(None);
                    }
                >
                    "Focus"
                </button>
                {sandwich}
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

    view! {
        <div class="flamegraph" on:keydown=on_key>
            <nav class="breadcrumb" aria-label="Zoom path">
                <ol>{breadcrumb}</ol>
            </nav>
            <p class="flame-matched" aria-live="polite">{matched}</p>
            <div class="flame-canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    class="flame-canvas"
                    tabindex="0"
                    aria-label=label
                    on:click=on_click
                    on:mousemove=on_move
                    on:mouseleave=move |_| hover.set(None)
                    on:contextmenu=on_menu
                ></canvas>
                {tooltip}
                {context_menu}
            </div>
        </div>
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
