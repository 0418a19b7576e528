//! The explorer: one query's merged flamegraph and its top table.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::flame::FlameGraph;
use crate::format::{group_digits, percent};
use kiln_model::top::TopRow;

/// The top table of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTable {
    /// Samples in the whole profile.
    pub total: u64,
    /// Functions, largest total first (the biggest 2000).
    pub rows: Vec<TopRow>,
    /// Number of functions before the cut.
    pub functions: usize,
}

/// The top table for `query`.
#[server]
pub async fn top_functions(query: String) -> Result<TopTable, ServerFnError> {
    let tree = crate::source::source()?.0.merged_tree(&query).map_err(ServerFnError::new)?;
    let mut rows = kiln_model::top::top_table(&tree);
    // Rows the server sends for the table; the flamegraph always has everything.
    const TOP_ROWS: usize = 2000;
    let functions = rows.len();
    rows.truncate(TOP_ROWS);
    Ok(TopTable { total: tree.total(), rows, functions })
}

/// `/explore?query=APP`: the flamegraph above, the table below.
#[component]
pub fn ExplorePage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| params.read().get("query").unwrap_or_default());
    let table = Resource::new(move || query.get(), top_functions);
    let search = RwSignal::new(String::new());
    view! {
        <section class="explore">
            <h1 class="query">{move || query.get()}</h1>
            <div class="toolbar">
                <label class="search">
                    <span>"Search"</span>
                    <input
                        type="search"
                        placeholder="function name"
                        aria-label="Search functions"
                        prop:value=move || search.get()
                        on:input=move |ev| search.set(event_target_value(&ev))
                    />
                </label>
            </div>
            <FlameGraph query search />
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match table.await {
                        Ok(table) => view! { <TopTableView table search /> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn TopTableView(table: TopTable, search: RwSignal<String>) -> impl IntoView {
    let total = table.total;
    let rows = table.rows;
    let note = (table.functions > rows.len())
        .then(|| format!("Showing the top {} of {} functions.", rows.len(), table.functions));
    view! {
        <p class="summary">{format!("{} samples in total", group_digits(total))}</p>
        <table class="top-table">
            <caption>"Functions by total samples"</caption>
            <thead>
                <tr>
                    <th scope="col">"Function"</th>
                    <th scope="col" class="num">"Self"</th>
                    <th scope="col" class="num">"Total"</th>
                </tr>
            </thead>
            <tbody>
                {move || {
                    let needle = search.get().trim().to_lowercase();
                    rows.iter()
                    .filter(|row| needle.is_empty() || row.name.to_lowercase().contains(&needle))
                    .cloned()
                    .map(|row| {
                        view! {
                            <tr>
                                <td class="name">{row.name}</td>
                                <td class="num self" title=percent(row.self_value, total)>
                                    {group_digits(row.self_value)}
                                </td>
                                <td class="num total" title=percent(row.total, total)>
                                    {group_digits(row.total)}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()
                }}
            </tbody>
        </table>
        {note.map(|n| view! { <p class="note">{n}</p> })}
    }
}
