//! The top table: every function with self and total, sortable, filtered by the search; a
//! function's name leads to its sandwich view.

use kiln_model::page_data::QuerySummary;
use kiln_model::top::TopRow;
use leptos::prelude::*;

use super::state::ExploreState;
use crate::format::{format_value, percent};
use crate::paint::after_paint;
use crate::search::NameSearch;

/// Rows on one page of the table. The server sends up to 2000; rendering them all (or even
/// 300) delayed the flamegraph's first paint, and the first rows are the ones read. Further
/// pages are a button away, and the search filters all of them.
const PAGE_ROWS: usize = 100;

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
    // Which page is shown; back to the first whenever the search or the order changes.
    let page = RwSignal::new(0usize);
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
    Effect::new(move |first: Option<()>| {
        matching.track();
        if first.is_some() {
            page.set(0);
        }
    });
    let pages = move || matching.with(|m| m.len().div_ceil(PAGE_ROWS));
    let visible = move || {
        let start = page.get() * PAGE_ROWS;
        matching.with(|m| m.iter().skip(start).take(PAGE_ROWS).cloned().collect::<Vec<_>>())
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
    // In a box of its own: below the graph, out of the window's first screen, the browser
    // then skips laying the rows out before the first paint (`content-visibility` in the
    // stylesheet; a table cannot take it itself).
    view! {
        <div class="functions">
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
            (pages() > 1)
                .then(|| {
                    let shown = move || {
                        let count = matching.with(Vec::len);
                        let start = page.get() * PAGE_ROWS;
                        format!("Rows {}–{} of {count}", start + 1, (start + PAGE_ROWS).min(count))
                    };
                    let at_last = move || page.get() + 1 >= pages();
                    view! {
                        <nav class="table-pages" aria-label="Table pages">
                            <button
                                type="button"
                                disabled=move || page.get() == 0
                                on:click=move |_| page.update(|p| *p = p.saturating_sub(1))
                            >
                                "← Previous"
                            </button>
                            <span class="note" aria-live="polite">{shown}</span>
                            <button
                                type="button"
                                disabled=at_last
                                on:click=move |_| page.update(|p| *p = (*p + 1).min(pages().saturating_sub(1)))
                            >
                                "Next →"
                            </button>
                        </nav>
                    }
                })
        }}
        {note.map(|n| view! { <p class="note">{n}</p> })}
        </div>
    }
}
