//! The explorer: one query over a time range: timeline, filters, the flamegraph (or icicle, or
//! sandwich) and the top table. The URL holds the whole view, so a link reproduces it.

mod controls;
pub mod first_paint;
mod state;
mod table;
pub mod timeline;

use std::sync::Arc;

use kiln_model::page_data::QuerySummary;
use kiln_model::palette::ColourMode;
use kiln_model::recursion::{collapse_list, collapse_path, collapse_recursion};
use kiln_model::sandwich;
use leptos::prelude::*;

use crate::data::{DataRequest, page_data};
use crate::fetch;
use crate::flame::{FlameGraph, Loaded, TimeOrderChart};
use crate::format::{encode_query_value, format_value};
use crate::location::{QueryMap, use_query_map};
use crate::search::SearchBox;
use crate::sync_hydrate::IntoAnySync;
use controls::{Exports, LabelFilter, TimeRange, ViewSwitch};
pub use controls::{LabelNamesRequest, LabelValuesRequest};
pub use state::{DEFAULT_FROM, DEFAULT_UNTIL, ExploreState};
use table::TopTableView;
use timeline::Timeline;

/// The summary of `query` over `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRequest {
    /// `app.type{matchers}`.
    pub query: String,
    /// Start of the range.
    pub from: String,
    /// End of the range.
    pub until: String,
}

impl DataRequest for SummaryRequest {
    type Answer = QuerySummary;
    const NAME: &'static str = "summary";

    fn to_query(&self) -> String {
        format!(
            "query={}&from={}&until={}",
            encode_query_value(&self.query),
            encode_query_value(&self.from),
            encode_query_value(&self.until)
        )
    }

    fn from_query(q: &QueryMap) -> Self {
        let state = ExploreState::from_params(q);
        SummaryRequest { query: state.query, from: state.from, until: state.until }
    }

    #[cfg(feature = "ssr")]
    fn answer(&self, source: &crate::source::TenantSource) -> Result<QuerySummary, String> {
        // Rows the server sends for the table; the flamegraph always has everything.
        const TOP_ROWS: usize = 2000;
        let merged = source.merged(&self.query, &self.from, &self.until)?;
        let mut rows = kiln_model::top::top_table(&merged.tree);
        let functions = rows.len();
        rows.truncate(TOP_ROWS);
        Ok(QuerySummary { total: merged.tree.total(), units: merged.units, rows, functions, timeline: merged.timeline })
    }
}

/// How the page's head starts fetching the tree the explorer at the request's address shows
/// first, so that the fetch starts as soon as the browser reads the head, while the wasm loads,
/// instead of after hydration. The server merged the query while rendering this page, and
/// answers the fetch from its merge cache.
pub enum TreePreload {
    /// A view painted before hydration: the inline script that starts its fetch
    /// ([`first_paint::head_script`]).
    Script(String),
    /// Any other view: a preload link, whose answer the explorer's own fetch takes (same URL,
    /// mode and credentials).
    Link(String),
}

/// See [`TreePreload`]; `None` on other pages.
#[cfg(feature = "ssr")]
pub fn tree_preload() -> Option<TreePreload> {
    let parts = use_context::<http::request::Parts>()?;
    (parts.uri.path() == "/explore").then(|| {
        let state = ExploreState::from_params(&QueryMap::parse(parts.uri.query().unwrap_or("")));
        first_paint::head_script(&state).map_or_else(
            || TreePreload::Link(fetch::tree_url(&state.query, &state.from, &state.until)),
            TreePreload::Script,
        )
    })
}

/// `/explore?query=…&from=…&until=…`.
#[component]
pub fn ExplorePage() -> impl IntoView {
    let params = use_query_map();
    let state = Memo::new(move |_| ExploreState::from_params(&params.read()));
    let range = Memo::new(move |_| state.with(|s| (s.query.clone(), s.from.clone(), s.until.clone())));
    let summary = page_data(move || {
        let (query, from, until) = range.get();
        Some(SummaryRequest { query, from, until })
    });
    let search = RwSignal::new(state.get_untracked().search);

    // The flamegraph's data comes as the compact binary tree, fetched by the browser (the
    // page's head starts the first fetch: [`tree_preload`]).
    let loaded = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let status = RwSignal::new(String::from("Loading flamegraph…"));
    Effect::new(move |_| {
        let (query, from, until) = range.get();
        match first_paint::take(&fetch::tree_url(&query, &from, &until)) {
            Some(drawn) => {
                loaded.set(Some(drawn.tree));
                status.set(String::new());
                if drawn.whole {
                    return;
                }
                // Only the frames of the first picture were sent: the whole tree replaces
                // them (the same picture at this zoom) before a zoom or a search needs it.
            }
            None => status.set("Loading flamegraph…".into()),
        }
        leptos::task::spawn_local(async move {
            let answer = fetch::tree(&query, &from, &until).await;
            // A range changed meanwhile has its own fetch.
            if range.with_untracked(|current| *current != (query, from, until)) {
                return;
            }
            match answer {
                Ok((tree, _)) if tree.total() == 0 => {
                    loaded.set(None);
                    status.set("No samples for this query and time range.".into());
                }
                Ok((tree, units)) => {
                    loaded.set(Some(Arc::new(Loaded::new(tree, units))));
                    status.set(String::new());
                }
                Err(e) => {
                    loaded.set(None);
                    status.set(format!("Could not load the flamegraph: {e}"));
                }
            }
        });
    });

    // Search, zoom, colours and collapsed recursion live in the URL, so that a copied link
    // reproduces the view, without navigating: a zoom, a collapse and a searched word each
    // push a history entry (Back undoes it, as in Firefox Profiler); the rest of a word as it
    // is typed, and colours, rewrite the current one.
    let zoom = RwSignal::new(state.get_untracked().zoom);
    let colour = RwSignal::new(state.get_untracked().colour);
    let collapse = RwSignal::new(state.get_untracked().collapse);
    // The function selected in the flamegraph or the time order, outlined in both (the view
    // switch's links carry it from one to the other).
    let linked = RwSignal::new(Some(state.get_untracked().selected).filter(|f| !f.is_empty()));
    let current = Signal::derive(move || {
        state.get().with(|s| {
            s.search = search.get();
            s.zoom = zoom.get();
            s.colour = colour.get();
            s.collapse = collapse.get();
            s.selected = linked.get().unwrap_or_default();
        })
    });
    let rewrite_url = move || {
        // `try_`: a deferred rewrite may run after the page has changed.
        if let Some(href) = current.try_get_untracked().map(|s| s.href()) {
            crate::location::replace_url(&href);
        }
    };
    let push_url = move || {
        if let Some(href) = current.try_get_untracked().map(|s| s.href()) {
            crate::location::push_url(&href);
        }
    };
    let on_zoom = Callback::new(move |path: String| {
        // The zoom shown already (the graph followed a collapse to it) is no new entry.
        if zoom.get_untracked() != path {
            zoom.set(path);
            push_url();
        }
    });
    let after_typing = Callback::new(move |starts_edit: bool| if starts_edit { push_url() } else { rewrite_url() });
    // A selection rewrites the current entry: Back does not walk through selections.
    Effect::new(move |first_done: Option<()>| {
        linked.track();
        if first_done.is_some() {
            rewrite_url();
        }
    });
    // Back and Forward bring back the entry's view: the range and the view follow the query;
    // these follow here.
    crate::location::on_history_move(move |params| {
        let s = ExploreState::from_params(&params);
        for (signal, value) in [(search, s.search), (zoom, s.zoom), (colour, s.colour), (collapse, s.collapse)] {
            if signal.get_untracked() != value {
                signal.set(value);
            }
        }
        let selected = Some(s.selected).filter(|f| !f.is_empty());
        if linked.get_untracked() != selected {
            linked.set(selected);
        }
    });
    let on_colour = move |ev: leptos::ev::Event| {
        colour.set(event_target_value(&ev));
        rewrite_url();
    };
    let colour_mode = Signal::derive(move || ColourMode::parse(&colour.get()));

    // What the graphs draw: the fetched tree with the chosen functions' recursion collapsed.
    let shown = RwSignal::<Option<Arc<Loaded>>>::new(None);
    Effect::new(move |_| {
        let names = collapse.get();
        let next = loaded.get().map(|tree| {
            let chosen = collapse_list(&names);
            if chosen.is_empty() {
                return tree;
            }
            let collapsed = collapse_recursion(&tree.tree, |name| chosen.contains(&name));
            Arc::new(Loaded::new(collapsed, tree.units.clone()))
        });
        shown.set(next);
    });
    let on_collapse = Callback::new(move |function: String| {
        let mut chosen: Vec<String> = collapse_list(&collapse.get_untracked()).into_iter().map(String::from).collect();
        if chosen.contains(&function) {
            return;
        }
        chosen.push(function);
        // The zoomed frame is still there once collapsed, under a shorter path.
        let path = zoom.get_untracked();
        let frames = path.split(';').filter(|f| !f.is_empty());
        zoom.set(collapse_path(frames, |name| chosen.iter().any(|c| c == name)).join(";"));
        collapse.set(chosen.join(";"));
        push_url();
    });
    let collapsed_chips = move || {
        let names = collapse.get();
        collapse_list(&names)
            .into_iter()
            .map(|name| {
                let aria = format!("Expand recursion of {name}");
                let text = format!("{name}: recursion collapsed ×");
                let name = name.to_string();
                let expand = move |_| {
                    let rest: Vec<String> = collapse_list(&collapse.get_untracked())
                        .into_iter()
                        .filter(|n| *n != name)
                        .map(String::from)
                        .collect();
                    collapse.set(rest.join(";"));
                    push_url();
                };
                view! {
                    <button type="button" class="chip" aria-label=aria title="Expand this recursion again" on:click=expand>
                        {text}
                    </button>
                }
            })
            .collect_view()
    };
    let sandwich_href = Callback::new(move |function: String| {
        current
            .get_untracked()
            .with(|s| {
                s.view = "sandwich".into();
                s.function = function;
            })
            .href()
    });

    // Only what changes the graphs' kind: the graphs stay (and keep their zoom) while Back and
    // Forward move the query between zooms and searches.
    let layout = Memo::new(move |_| state.with(|s| (s.view.clone(), s.orient.clone(), s.function.clone())));
    let body = move || {
        let (view, orient, function) = layout.get();
        match view.as_str() {
            "table" => ().into_any_sync(),
            "sandwich" => view! { <SandwichView loaded=shown function search colour=colour_mode /> }.into_any_sync(),
            "time" => view! { <TimeOrderView range search linked /> }.into_any_sync(),
            _ => view! {
                <FlameGraph
                    data=shown
                    search
                    bottom_up=orient == "flame"
                    colour=colour_mode
                    sandwich_href
                    on_collapse
                    zoom
                    on_zoom
                    linked
                />
            }
            .into_any_sync(),
        }
    };

    view! {
        <section class="explore">
            <h1 class="query">{move || state.with(|s| s.query.clone())}</h1>
            <div class="toolbar">
                <TimeRange state=current />
                <ViewSwitch state=current />
                <SearchBox search after_typing id="search" placeholder="function, or /regex/  ( / )" />
            </div>
            <LabelFilter state=current />
            <div class="flame-options">
                <label class="colour-mode">
                    <span>"Colour"</span>
                    <select aria-label="Colour frames" prop:value=move || colour.get() on:change=on_colour>
                        <option value="package" selected=move || colour.get() != "self">
                            "by package"
                        </option>
                        <option value="self" selected=move || colour.get() == "self">
                            "by self value"
                        </option>
                    </select>
                </label>
                {collapsed_chips}
            </div>
            {move || match summary.get() {
                None => view! { <p class="loading">"Loading…"</p> }.into_any_sync(),
                Some(Ok(summary)) => {
                    view! {
                        <Timeline data=summary.timeline.clone() state=current />
                        <p class="summary">{format!("{} in total", format_value(summary.total, &summary.units))}</p>
                    }
                        .into_any_sync()
                }
                Some(Err(e)) => view! { <p class="error">{e}</p> }.into_any_sync(),
            }}
            <p class="flame-status" aria-live="polite">{move || status.get()}</p>
            {body}
            <Exports state=current />
            {move || summary.get().and_then(Result::ok).map(|summary| view! { <TopTableView summary search state=current /> })}
            <KeyboardHelp />
        </section>
    }
}

/// Callers of a function above (root at the bottom, growing up), its callees below.
#[component]
fn SandwichView(
    loaded: RwSignal<Option<Arc<Loaded>>>,
    function: String,
    search: RwSignal<String>,
    colour: Signal<ColourMode>,
) -> impl IntoView {
    let name = function.clone();
    let callers = Signal::derive({
        let name = name.clone();
        move || {
            loaded
                .with(|d| d.as_ref().map(|d| Arc::new(Loaded::new(sandwich::callers(&d.tree, &name), d.units.clone()))))
        }
    });
    let callees = Signal::derive(move || {
        loaded.with(|d| d.as_ref().map(|d| Arc::new(Loaded::new(sandwich::callees(&d.tree, &name), d.units.clone()))))
    });
    view! {
        <div class="sandwich">
            <h2>"Callers of " <code>{function.clone()}</code></h2>
            <FlameGraph data=callers search bottom_up=true colour label="Callers of the selected function" />
            <h2>"Callees of " <code>{function}</code></h2>
            <FlameGraph data=callees search colour label="Callees of the selected function" />
        </div>
    }
}

/// The range's uploads in time order, one column each as wide as its total (the timeline's
/// columns, each opened into its flamegraph), so that a spike in the timeline can be looked
/// at upload by upload.
#[component]
fn TimeOrderView(
    range: Memo<(String, String, String)>,
    search: RwSignal<String>,
    linked: RwSignal<Option<String>>,
) -> impl IntoView {
    let timed = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let status = RwSignal::new(String::new());
    Effect::new(move |_| {
        let (query, from, until) = range.get();
        status.set("Loading the time order…".into());
        leptos::task::spawn_local(async move {
            match fetch::time_order(&query, &from, &until).await {
                Ok(profile) if profile.samples.is_empty() => {
                    timed.set(None);
                    status.set("No uploads in this range.".into());
                }
                Ok(profile) => {
                    timed.set(Some(Arc::new(Loaded::timed(profile))));
                    status.set(String::new());
                }
                Err(e) => {
                    timed.set(None);
                    status.set(format!("No time order: {e}"));
                }
            }
        });
    });
    view! {
        <p class="time-order-status" aria-live="polite">{status}</p>
        <TimeOrderChart data=timed search linked />
    }
}

/// `/` focuses the search, `?` shows the keys (the flamegraph's own keys are listed too).
#[component]
fn KeyboardHelp() -> impl IntoView {
    let open = RwSignal::new(false);
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        let typing =
            ev.target().and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlInputElement>(t).ok()).is_some();
        if typing {
            return;
        }
        match ev.key().as_str() {
            "/" => {
                ev.prevent_default();
                if let Some(input) = document()
                    .get_element_by_id("search")
                    .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok())
                {
                    let _ = input.focus();
                }
            }
            "?" => open.update(|o| *o = !*o),
            "Escape" => open.set(false),
            _ => {}
        }
    });
    on_cleanup(move || handle.remove());
    view! {
        <Show when=move || open.get()>
            <div class="help" role="dialog" aria-label="Keyboard shortcuts">
                <h2>"Keyboard"</h2>
                <dl>
                    <dt>"/"</dt>
                    <dd>"search: text matches any part of a name; /pattern/ is a regular expression"</dd>
                    <dt>"click"</dt>
                    <dd>"select and zoom into a frame"</dd>
                    <dt>"Tab"</dt>
                    <dd>"focus the flamegraph for the keys below"</dd>
                    <dt>"↑ ↓"</dt>
                    <dd>"select the caller or the widest callee (as drawn: up is up)"</dd>
                    <dt>"← →"</dt>
                    <dd>"select the previous or next frame on the row"</dd>
                    <dt>"Enter, +, double-click"</dt>
                    <dd>"zoom into the selected frame"</dd>
                    <dt>"-"</dt>
                    <dd>"zoom out one level"</dd>
                    <dt>"Escape"</dt>
                    <dd>"zoom out one level (canvas focused), close this"</dd>
                    <dt>"right-click"</dt>
                    <dd>"focus, sandwich, collapse recursion, copy name"</dd>
                    <dt>"?"</dt>
                    <dd>"show or hide this help"</dd>
                </dl>
                <button type="button" on:click=move |_| open.set(false)>
                    "Close"
                </button>
            </div>
        </Show>
    }
}
