//! The home page: every application Kiln has data for, and how to send it some.

use kiln_model::page_data::{AppSummary, Home};
use kiln_model::selector::Selector;
use leptos::prelude::*;

use crate::data::{DataRequest, page_data};
use crate::format::{encode_query_value, format_unix_time};
use crate::search::NameSearch;
use crate::sync_hydrate::IntoAnySync;

/// The applications with stored profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeRequest;

impl DataRequest for HomeRequest {
    type Answer = Home;
    const NAME: &'static str = "home";

    fn to_query(&self) -> String {
        String::new()
    }

    fn from_query(_: &crate::location::QueryMap) -> Self {
        HomeRequest
    }

    #[cfg(feature = "ssr")]
    fn answer(&self, source: &crate::source::TenantSource) -> Result<Home, String> {
        Ok(Home { apps: source.apps(), address: source.address().to_string() })
    }
}

/// `/`: the applications, or the instructions to get the first one.
#[component]
pub fn HomePage() -> impl IntoView {
    let home = page_data(|| Some(HomeRequest));
    let filter = RwSignal::new(String::new());
    view! {
        <section class="home">
            <div class="home-head">
                <h1>"Applications"</h1>
                <input
                    type="search"
                    class="app-filter"
                    placeholder="filter applications"
                    aria-label="Filter applications"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))
                />
            </div>
            {move || match home.get() {
                None => view! { <p class="loading">"Loading…"</p> }.into_any_sync(),
                Some(Ok(home)) if home.apps.is_empty() => view! { <EmptyState address=home.address /> }.into_any_sync(),
                Some(Ok(home)) => view! { <AppList apps=home.apps filter /> }.into_any_sync(),
                Some(Err(e)) => view! { <p class="error">{e}</p> }.into_any_sync(),
            }}
        </section>
    }
}

#[component]
fn AppList(apps: Vec<AppSummary>, filter: RwSignal<String>) -> impl IntoView {
    let rows = move || {
        let search = filter.with(|f| NameSearch::parse(f));
        search
            .filter(&apps, |app| &app.name)
            .into_iter()
            .map(|app| {
                let href = explore_href(&app.name, None);
                let types = app
                    .profile_types
                    .iter()
                    .map(|ty| {
                        let href = explore_href(&app.name, Some(ty));
                        view! { <a class="app-type" href=href>{ty.clone()}</a> }
                    })
                    .collect_view();
                let labels = app.label_names.join(", ");
                view! {
                    <li class="app">
                        <a class="app-name" href=href>{app.name.clone()}</a>
                        <span class="app-types">{types}</span>
                        <span class="app-labels">{labels}</span>
                        <span class="app-seen" title="newest upload">{format_unix_time(app.last_seen)}</span>
                        <span class="app-uploads">{format!("{} uploads", app.uploads)}</span>
                    </li>
                }
            })
            .collect_view()
    };
    view! { <ul class="app-list">{rows}</ul> }
}

/// The explorer on one application (and type): the name written as a selector (quoted when it
/// has characters the bare form cannot carry, e.g. a push `service_name` with a space and a
/// brace), then escaped for the URL.
fn explore_href(app: &str, profile_type: Option<&str>) -> String {
    let selector =
        Selector { app: app.to_string(), profile_type: profile_type.map(String::from), matchers: Vec::new() };
    format!("/explore?query={}", encode_query_value(&selector.to_string()))
}

#[component]
fn EmptyState(address: String) -> impl IntoView {
    let curl = format!("curl --data-binary @stacks.folded '{address}/ingest?name=myapp.cpu{{env=dev}}'");
    let perf = format!("perf script | curl --data-binary @- '{address}/ingest?name=myapp&format=perf_script'");
    let upload = format!("kiln upload --server {address} --app myapp --type cpu stacks.folded");
    view! {
        <div class="empty">
            <p>"No profiles yet. Point a Pyroscope agent (Go, Python, Ruby, Node, Rust, Java) at "
                <code>{address.clone()}</code>
                " as its server address, or send some by hand:"
            </p>
            <pre>{curl}</pre>
            <pre>{perf}</pre>
            <pre>{upload}</pre>
            <p>"Or " <a href="/open">"open a profile file"</a> " without storing it."</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::decode_query_value;

    #[test]
    fn links_reach_every_application_name() {
        for (app, ty) in [("web", None), ("web", Some("cpu")), ("my app {x}", Some("cpu")), ("a\"b.cpu", None)] {
            let href = explore_href(app, ty);
            let query = decode_query_value(href.strip_prefix("/explore?query=").unwrap());
            let parsed = Selector::parse_query(&query).unwrap();
            assert_eq!((parsed.app.as_str(), parsed.profile_type.as_deref()), (app, ty), "{href}");
        }
    }
}
