//! The top table: every function with self and total, sortable, filtered by the search; a
//! function's name leads to its sandwich view.

use kiln_model::top::TopRow;
use leptos::prelude::*;

use super::{ExploreState, QuerySummary};
use crate::format::{format_value, percent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    SelfValue,
    Total,
}

/// The table of `summary`'s functions.
#[component]
pub fn TopTableView(
    summary: QuerySummary,
    search: RwSignal<String>,
    #[prop(into)] state: Signal<ExploreState>,
) -> impl IntoView {
    let QuerySummary { total, units, rows, functions, .. } = summary;
    let sort = RwSignal::new((SortBy::Total, true));
    let note = (functions > rows.len()).then(|| format!("Showing the top {} of {} functions.", rows.len(), functions));
    let header = move |label: &'static str, by: SortBy, class: &'static str| {
        let aria = move || match sort.get() {
            (b, true) if b == by => "descending",
            (b, false) if b == by => "ascending",
            _ => "none",
        };
        view! {
            <th scope="col" class=class aria-sort=aria>
                <button
                    type="button"
                    on:click=move |_| sort.update(|(b, desc)| if *b == by { *desc = !*desc } else { *b = by; *desc = by != SortBy::Name; })
                >
                    {label}
                </button>
            </th>
        }
    };
    // Rows are keyed by name: a keystroke in the search or a new sort only moves, removes or
    // inserts rows, it never rebuilds the ones that stay.
    let visible = move || {
        let needle = search.get().trim().to_lowercase();
        let mut shown: Vec<_> =
            rows.iter().filter(|r| needle.is_empty() || r.name.to_lowercase().contains(&needle)).cloned().collect();
        let (by, desc) = sort.get();
        shown.sort_by(|a, b| {
            let order = match by {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::SelfValue => a.self_value.cmp(&b.self_value).then(a.name.cmp(&b.name)),
                SortBy::Total => a.total.cmp(&b.total).then(b.self_value.cmp(&a.self_value)),
            };
            if desc { order.reverse() } else { order }
        });
        shown
    };
    let row_view = move |row: TopRow| {
        let href = state
            .get_untracked()
            .with(|s| {
                s.view = "sandwich".into();
                s.function = row.name.clone();
            })
            .href();
        view! {
            <tr>
                <td class="name">
                    <a href=href title="Sandwich view: callers and callees">{row.name}</a>
                </td>
                <td class="num self" title=percent(row.self_value, total)>
                    {format_value(row.self_value, &units)}
                </td>
                <td class="num total" title=percent(row.total, total)>
                    {format_value(row.total, &units)}
                </td>
            </tr>
        }
    };
    view! {
        <table class="top-table">
            <caption>"Functions (click a column to sort, a name for its sandwich view)"</caption>
            <thead>
                <tr>
                    {header("Function", SortBy::Name, "")}
                    {header("Self", SortBy::SelfValue, "num")}
                    {header("Total", SortBy::Total, "num")}
                </tr>
            </thead>
            <tbody>
                <For each=visible key=|row| row.name.clone() children=row_view />
            </tbody>
        </table>
        {note.map(|n| view! { <p class="note">{n}</p> })}
    }
}
