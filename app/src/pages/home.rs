//! The home page: every application Kiln has data for, and how to send it some.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::format::encode_query_value;

/// One application on the home page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// Application name.
    pub name: String,
    /// Profile types seen for it (`cpu`, `alloc_space`, …).
    pub profile_types: Vec<String>,
    /// Label names seen on its series.
    pub label_names: Vec<String>,
    /// Unix seconds of the newest upload.
    pub last_seen: i64,
    /// Number of uploads stored.
    pub uploads: u64,
}

/// Lists the applications with stored profiles.
#[server]
pub async fn list_apps() -> Result<Vec<AppSummary>, ServerFnError> {
    Ok(crate::source::source()?.apps())
}

/// `/`: the applications, or the instructions to get the first one.
#[component]
pub fn HomePage() -> impl IntoView {
    let apps = Resource::new(|| (), |_| list_apps());
    view! {
        <section class="home">
            <h1>"Applications"</h1>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match apps.await {
                        Ok(apps) if apps.is_empty() => view! { <EmptyState /> }.into_any(),
                        Ok(apps) => view! { <AppList apps /> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn AppList(apps: Vec<AppSummary>) -> impl IntoView {
    view! {
        <ul class="app-list">
            {apps
                .into_iter()
                .map(|app| {
                    let href = format!("/explore?query={}", encode_query_value(&app.name));
                    let types = app.profile_types.join(", ");
                    let labels = app.label_names.join(", ");
                    view! {
                        <li class="app">
                            <a class="app-name" href=href>{app.name.clone()}</a>
                            <span class="app-types">{types}</span>
                            <span class="app-labels">{labels}</span>
                            <span class="app-uploads">{format!("{} uploads", app.uploads)}</span>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

#[component]
fn EmptyState() -> impl IntoView {
    view! {
        <div class="empty">
            <p>"No profiles yet. Send some:"</p>
            <pre>
                "curl --data-binary @stacks.folded 'http://127.0.0.1:4040/ingest?name=myapp.cpu{env=dev}'"
            </pre>
            <p>"or point a Pyroscope agent at " <code>"http://<this host>:4040"</code> "."</p>
        </div>
    }
}
