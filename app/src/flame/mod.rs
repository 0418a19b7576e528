//! The flamegraph: fetched as a binary tree, laid out by `kiln-model`, drawn on a `<canvas>`
//! through web-sys. Click zooms, the breadcrumb walks back up, hover shows a tooltip.
//!
//! Everything here runs only in the browser (effects and event handlers); on the server the
//! component renders its empty canvas and controls, which hydration then brings to life.

mod draw;
mod fetch;

use std::sync::Arc;

use kiln_model::layout::{FrameRect, Geometry, hit_test, parent_focus};
use kiln_model::search::{matched_total, name_matches};
use kiln_model::{FlatTree, NodeId, ROOT};
use leptos::prelude::*;

use crate::format::{group_digits, percent};

/// Height of one row of frames, in CSS pixels.
pub const ROW_HEIGHT: f64 = 18.0;

/// A tree ready to draw: the data and its geometry, computed once per fetch.
pub struct Loaded {
    /// The merged tree.
    pub tree: FlatTree,
    /// Per-node positions in sample units.
    pub geometry: Geometry,
}

impl Loaded {
    fn new(tree: FlatTree) -> Self {
        let geometry = Geometry::new(&tree);
        Loaded { tree, geometry }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Hover {
    node: Option<NodeId>,
    x: f64,
    y: f64,
}

/// The flamegraph of `query`.
#[component]
pub fn FlameGraph(
    /// The query whose merged tree is drawn.
    #[prop(into)]
    query: Signal<String>,
    /// Frames containing this text are highlighted, the rest dimmed (empty: no search).
    #[prop(into)]
    search: Signal<String>,
) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let loaded = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let status = RwSignal::new(String::from("Loading flamegraph…"));
    let focus = RwSignal::new(ROOT);
    let hover = RwSignal::<Option<Hover>>::new(None);
    let resized = RwSignal::new(0u32);
    let rects = StoredValue::new(Vec::<FrameRect>::new());

    Effect::new(move |_| {
        let query = query.get();
        status.set("Loading flamegraph…".into());
        leptos::task::spawn_local(async move {
            match fetch::tree(&query).await {
                Ok(tree) if tree.total() == 0 => {
                    loaded.set(None);
                    status.set("No samples for this query.".into());
                }
                Ok(tree) => {
                    focus.set(ROOT);
                    loaded.set(Some(Arc::new(Loaded::new(tree))));
                    status.set(String::new());
                }
                Err(e) => {
                    loaded.set(None);
                    status.set(format!("Could not load the flamegraph: {e}"));
                }
            }
        });
    });

    let resize_handle = window_event_listener(leptos::ev::resize, move |_| resized.update(|n| *n += 1));
    on_cleanup(move || resize_handle.remove());

    // Per-name match flags, recomputed only when the tree or the search changes.
    let matches = Memo::new(move |_| {
        let needle = search.get();
        loaded.with(|data| data.as_ref().map(|d| name_matches(&d.tree, &needle)).filter(|m| m.contains(&true)))
    });
    let matched = move || {
        let flags = matches.get()?;
        let data = loaded.get()?;
        let total = matched_total(&data.tree, &flags);
        Some(format!(
            "Matched {} of {} samples ({})",
            group_digits(total),
            group_digits(data.tree.total()),
            percent(total, data.tree.total())
        ))
    };

    Effect::new(move |_| {
        resized.track();
        let (Some(data), Some(canvas)) = (loaded.get(), canvas_ref.get()) else {
            return;
        };
        let hovered = hover.get().and_then(|h| h.node);
        let drawn = matches.with(|m| draw::draw(&canvas, &data, focus.get(), hovered, m.as_deref()));
        rects.set_value(drawn);
    });

    let frame_at = move |x: f64, y: f64| -> Option<FrameRect> {
        let row = (y / ROW_HEIGHT).floor();
        if row < 0.0 {
            return None;
        }
        rects.with_value(|r| hit_test(r, x, row as u32))
    };
    let on_click = move |ev: leptos::ev::MouseEvent| {
        if let Some(node) = frame_at(ev.offset_x() as f64, ev.offset_y() as f64).and_then(|r| r.node) {
            focus.set(node);
        }
    };
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let (x, y) = (ev.offset_x() as f64, ev.offset_y() as f64);
        let next = frame_at(x, y).map(|r| Hover { node: r.node, x, y });
        if next.map(|h| h.node) != hover.get_untracked().map(|h| h.node) || next.is_some() {
            hover.set(next);
        }
    };

    let breadcrumb = move || {
        let data = loaded.get()?;
        let path = data.tree.path_to(focus.get());
        let mut crumbs = vec![(ROOT, "all".to_string())];
        crumbs.extend(path.into_iter().map(|n| (n, data.tree.name_of(n).to_string())));
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
        let data = loaded.get()?;
        let total = data.tree.total();
        let style = format!("left: {}px; top: {}px", h.x + 14.0, h.y + 14.0);
        let body = match h.node {
            Some(node) => {
                let (t, s) = (data.tree.total[node as usize], data.tree.self_value[node as usize]);
                let parent_total = data.tree.total[data.tree.parent[node as usize] as usize];
                view! {
                    <div class="tip-name">{data.tree.name_of(node).to_string()}</div>
                    <div class="tip-row">{format!("total {} samples ({} of all, {} of parent)", group_digits(t), percent(t, total), percent(t, parent_total))}</div>
                    <div class="tip-row">{format!("self {} samples ({})", group_digits(s), percent(s, total))}</div>
                }
                .into_any()
            }
            None => view! { <div class="tip-name">"Many small frames: click their parent to zoom in"</div> }.into_any(),
        };
        Some(view! { <div class="flame-tooltip" role="tooltip" style=style>{body}</div> })
    };

    // Escape walks the zoom back up one level.
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape"
            && let Some(data) = loaded.get_untracked()
        {
            focus.update(|f| *f = parent_focus(&data.tree, *f));
        }
    };

    view! {
        <div class="flamegraph" on:keydown=on_key>
            <nav class="breadcrumb" aria-label="Zoom path">
                <ol>{breadcrumb}</ol>
            </nav>
            <p class="flame-status" aria-live="polite">{move || status.get()}</p>
            <p class="flame-matched" aria-live="polite">{matched}</p>
            <div class="flame-canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    class="flame-canvas"
                    tabindex="0"
                    aria-label="Flamegraph; the table below lists the same functions"
                    on:click=on_click
                    on:mousemove=on_move
                    on:mouseleave=move |_| hover.set(None)
                ></canvas>
                {tooltip}
            </div>
        </div>
    }
}
