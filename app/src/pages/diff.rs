//! The comparison page: two queries or two ranges, one diff flamegraph (red grew, green
//! shrank, by share of each side), the functions that changed most, and both sides side by side
//! with their own timelines.

use std::sync::Arc;

use kiln_model::page_data::{Comparison, TimelineData, share};
use leptos::prelude::*;

use crate::data::{DataRequest, page_data};
use crate::fetch;
use crate::flame::{FlameGraph, Loaded};
use crate::format::{encode_query_value, format_value};
use crate::location::{QueryMap, use_query_map};
use crate::pages::explore::timeline::Timeline;
use crate::search::{NameSearch, SearchBox};
use crate::sync_hydrate::IntoAnySync;

/// The two sides, as the URL carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffState {
    /// Baseline query, `from`, `until`.
    pub left: (String, String, String),
    /// Comparison query, `from`, `until`.
    pub right: (String, String, String),
}

impl DiffState {
    fn from_params(p: &QueryMap) -> Self {
        let get = |k: &str, default: &str| p.get(k).filter(|v| !v.is_empty()).unwrap_or_else(|| default.into());
        let left_query = get("leftQuery", &p.get("query").unwrap_or_default());
        DiffState {
            right: (get("rightQuery", &left_query), get("rightFrom", "now-1h"), get("rightUntil", "now")),
            left: (left_query, get("leftFrom", "now-2h"), get("leftUntil", "now-1h")),
        }
    }

    fn ready(&self) -> bool {
        !self.left.0.is_empty() && !self.right.0.is_empty()
    }
}

/// Compares two queries function by function, with each side's timeline (one merge per
/// side serves both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRequest(pub DiffState);

impl DataRequest for DiffRequest {
    type Answer = Comparison;
    const NAME: &'static str = "diff";

    fn to_query(&self) -> String {
        let DiffState { left, right } = &self.0;
        [
            ("leftQuery", &left.0),
            ("leftFrom", &left.1),
            ("leftUntil", &left.2),
            ("rightQuery", &right.0),
            ("rightFrom", &right.1),
            ("rightUntil", &right.2),
        ]
        .map(|(key, value)| format!("{key}={}", encode_query_value(value)))
        .join("&")
    }

    fn from_query(q: &QueryMap) -> Self {
        DiffRequest(DiffState::from_params(q))
    }

    #[cfg(feature = "ssr")]
    fn answer(&self, source: &crate::source::TenantSource) -> Result<Comparison, String> {
        use std::collections::HashMap;

        use kiln_model::page_data::DiffRow;
        let DiffState { left, right } = &self.0;
        let left = source.merged(&left.0, &left.1, &left.2).map_err(|e| format!("left: {e}"))?;
        let right = source.merged(&right.0, &right.1, &right.2).map_err(|e| format!("right: {e}"))?;
        let mut by_name: HashMap<String, DiffRow> = HashMap::new();
        for (row, is_right) in kiln_model::top::top_table(&left.tree)
            .into_iter()
            .map(|r| (r, false))
            .chain(kiln_model::top::top_table(&right.tree).into_iter().map(|r| (r, true)))
        {
            let entry = by_name.entry(row.name.clone()).or_insert(DiffRow { name: row.name, left: 0, right: 0 });
            if is_right {
                entry.right = row.total;
            } else {
                entry.left = row.total;
            }
        }
        let mut table = Comparison {
            left_ticks: left.tree.total(),
            right_ticks: right.tree.total(),
            units: right.units,
            rows: by_name.into_values().collect(),
            left_timeline: left.timeline,
            right_timeline: right.timeline,
        };
        let mut rows = std::mem::take(&mut table.rows);
        rows.sort_by(|a, b| b.change(&table).abs().total_cmp(&a.change(&table).abs()).then(a.name.cmp(&b.name)));
        rows.truncate(500);
        table.rows = rows;
        Ok(table)
    }
}

/// `/diff?leftQuery=&leftFrom=&leftUntil=&rightQuery=&rightFrom=&rightUntil=`.
#[component]
pub fn DiffPage() -> impl IntoView {
    let params = use_query_map();
    let state = Memo::new(move |_| DiffState::from_params(&params.read()));
    let table = page_data(move || state.with(|s| s.ready().then(|| DiffRequest(s.clone()))));
    let timeline = move |pick: fn(&Comparison) -> &TimelineData| {
        table.with(|t| t.as_ref()?.as_ref().ok().map(|t| view! { <Timeline data=pick(t).clone() /> }))
    };

    let compared = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let left = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let right = RwSignal::<Option<Arc<Loaded>>>::new(None);
    let status = RwSignal::new(String::new());
    Effect::new(move |_| {
        let s = state.get();
        if !s.ready() {
            return;
        }
        status.set("Loading…".into());
        leptos::task::spawn_local(async move {
            let l = fetch::tree(&s.left.0, &s.left.1, &s.left.2).await;
            let r = fetch::tree(&s.right.0, &s.right.1, &s.right.2).await;
            match (l, r) {
                (Ok((l, units)), Ok((r, _))) => {
                    compared.set(Some(Arc::new(Loaded::compare(&l, &r, units.clone()))));
                    left.set(Some(Arc::new(Loaded::new(l, units.clone()))));
                    right.set(Some(Arc::new(Loaded::new(r, units))));
                    status.set(String::new());
                }
                (Err(e), _) => status.set(format!("Baseline: {e}")),
                (_, Err(e)) => status.set(format!("Comparison: {e}")),
            }
        });
    });
    // The search is the page's own state, kept in the URL like the sides are (a link
    // reproduces it); the form's submission starts a new comparison without it.
    let search = RwSignal::new(params.read_untracked().get("search").unwrap_or_default());

    view! {
        <section class="diff">
            <h1>"Compare"</h1>
            <DiffForm state />
            <p class="flame-status" aria-live="polite">{move || status.get()}</p>
            <Show when=move || state.with(DiffState::ready)>
                <p class="legend">
                    <span class="swatch grew"></span>
                    "grew"
                    <span class="swatch shrank"></span>
                    "shrank (share of each side's total)"
                </p>
                <SearchBox search after_typing=move |_starts_edit: bool| keep_search_in_url(search) />
                <FlameGraph data=compared search label="Comparison flamegraph; the table lists the changes" />
                {move || match table.get() {
                    Some(Ok(table)) => view! { <ComparisonTable table search /> }.into_any_sync(),
                    None => ().into_any_sync(),
                    Some(Err(e)) => view! { <p class="error">{e}</p> }.into_any_sync(),
                }}
                <div class="side-by-side">
                    <div>
                        <h2>"Baseline"</h2>
                        {move || timeline(|t| &t.left_timeline)}
                        <FlameGraph data=left search label="Baseline flamegraph" />
                    </div>
                    <div>
                        <h2>"Comparison"</h2>
                        {move || timeline(|t| &t.right_timeline)}
                        <FlameGraph data=right search label="Comparison side flamegraph" />
                    </div>
                </div>
            </Show>
        </section>
    }
}

/// The two sides' queries and ranges, submitted as a plain GET form (works before hydration).
#[component]
fn DiffForm(state: Memo<DiffState>) -> impl IntoView {
    let field = move |name: &'static str, label: &'static str, pick: fn(&DiffState) -> String| {
        view! {
            <label>
                <span>{label}</span>
                <input name=name prop:value=move || state.with(pick) />
            </label>
        }
    };
    view! {
        <form class="diff-form" method="get" action="/diff">
            <fieldset>
                <legend>"Baseline"</legend>
                {field("leftQuery", "query", |s| s.left.0.clone())}
                {field("leftFrom", "from", |s| s.left.1.clone())}
                {field("leftUntil", "until", |s| s.left.2.clone())}
            </fieldset>
            <fieldset>
                <legend>"Comparison"</legend>
                {field("rightQuery", "query", |s| s.right.0.clone())}
                {field("rightFrom", "from", |s| s.right.1.clone())}
                {field("rightUntil", "until", |s| s.right.2.clone())}
            </fieldset>
            <button type="submit">"Compare"</button>
        </form>
    }
}

/// Writes the search into the page's URL in place (no navigation, no history entry).
fn keep_search_in_url(search: RwSignal<String>) {
    // `try_`: the page may have changed while this waited for the paint.
    let Some(text) = search.try_get_untracked() else { return };
    let Some(window) = web_sys::window() else { return };
    let Ok(url) = window.location().href().and_then(|href| web_sys::Url::new(&href)) else { return };
    if text.is_empty() {
        url.search_params().delete("search");
    } else {
        url.search_params().set("search", &text);
    }
    crate::location::replace_url(&url.href());
}

#[component]
fn ComparisonTable(table: Comparison, search: RwSignal<String>) -> impl IntoView {
    let table = Arc::new(table);
    let rows = move || {
        let filter = search.with(|s| NameSearch::parse(s));
        filter
            .filter(&table.rows, |r| &r.name)
            .into_iter()
            .map(|row| {
                let change = row.change(&table);
                let class = if change > 0.005 {
                    "grew"
                } else if change < -0.005 {
                    "shrank"
                } else {
                    "same"
                };
                view! {
                    <tr class=class>
                        <td class="name">{row.name.clone()}</td>
                        <td class="num">{format!("{} ({:.2}%)", format_value(row.left, &table.units), share(row.left, table.left_ticks))}</td>
                        <td class="num">{format!("{} ({:.2}%)", format_value(row.right, &table.units), share(row.right, table.right_ticks))}</td>
                        <td class="num change">{format!("{change:+.2}")}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <table class="top-table diff-table">
            <caption>"Functions by change in share of the profile (percentage points)"</caption>
            <thead>
                <tr>
                    <th scope="col">"Function"</th>
                    <th scope="col" class="num">"Baseline"</th>
                    <th scope="col" class="num">"Comparison"</th>
                    <th scope="col" class="num">"Change"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
