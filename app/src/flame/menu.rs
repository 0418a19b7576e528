//! The context menu a right-click opens on a frame: focus, sandwich, collapse recursion, copy
//! the name.

use leptos::prelude::*;

use super::state::FlameView;

/// The menu where it was opened (none while closed).
#[component]
pub fn ContextMenu(
    flame: FlameView,
    /// Where the "Sandwich" entry leads for a function name (no entry without).
    sandwich_href: Option<Callback<String, String>>,
    /// Told a function name when "Collapse recursion" is chosen (no entry without).
    on_collapse: Option<Callback<String>>,
) -> impl IntoView {
    let FlameView { data, menu, .. } = flame;
    move || {
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
                        flame.zoom_into(node);
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
    }
}

/// Puts `text` on the clipboard (best effort: browsers refuse outside secure contexts).
fn copy_text(text: &str) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(text);
    }
}
