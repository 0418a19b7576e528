//! The zoom path above the graph: one button per frame from the root to the zoomed one.

use kiln_model::ROOT;
use leptos::prelude::*;

use super::state::FlameView;

/// `all`, then each frame down to the zoomed one; a click zooms back out to that frame.
#[component]
pub fn Breadcrumb(flame: FlameView) -> impl IntoView {
    let FlameView { data, focus, .. } = flame;
    let crumbs = move || {
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
    view! {
        <nav class="breadcrumb" aria-label="Zoom path">
            <ol>{crumbs}</ol>
        </nav>
    }
}
