//! The top table: every function with self and total, sortable, filtered by the search; a
//! function's name leads to its sandwich view.

use kiln_model::page_data::QuerySummary;
use kiln_model::top::TopRow;
use leptos::prelude::*;

use super::state::ExploreState;
use crate::format::{format_value, percent};
use crate::paint::after_paint;
use crate::search::NameSearch;

/// Rows shown until "Show all" is pressed: inserting and laying out the server's 2000 rows
/// took longer than a frame, and the first few hundred are the ones read.
const SHOWN_ROWS: usize = 300;

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
    let show_all = RwSignal::new(false);
    // The table follows the search one paint later than the flamegraph: a keystroke repaints
    // the canvas in the next frame, and the rows (the slower change) follow once that frame
    // is on screen. Keystrokes typed in between collapse into one update.
    let filter = RwSignal::new(search.get_untracked());
    Effect::new(move |_| {
        search.track();
        // `try_`: the table may be gone by then (the page changed).
        after_paint(move || {
            if let Some(latest) = search.try_get_untracked()
                && filter.try_with_untracked(|f| *f != latest) == Some(true)
            {
                filter.set(latest);
            }
        });
    });
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
    let matching = Memo::new(move |_| {
        let search = filter.with(|f| NameSearch::parse(f));
        let mut shown: Vec<TopRow> = search.filter(&rows, |r| &r.name).into_iter().cloned().collect();
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
    });
    let hidden = move || if show_all.get() { 0 } else { matching.with(|m| m.len().saturating_sub(SHOWN_ROWS)) };
    let visible = move || {
        let limit = if show_all.get() { usize::MAX } else { SHOWN_ROWS };
        matching.with(|m| m.iter().take(limit).cloned().collect::<Vec<_>>())
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
        {move || {
            let hidden = hidden();
            (hidden > 0)
                .then(|| {
                    view! {
                        <p class="note">
                            {format!("{hidden} more functions not listed. ")}
                            <button type="button" on:click=move |_| show_all.set(true)>
                                "Show all"
                            </button>
                        </p>
                    }
                })
        }}
        {note.map(|n| view! { <p class="note">{n}</p> })}
    }
}
