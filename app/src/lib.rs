//! Kiln's web app: server-rendered pages that hydrate into a WebAssembly flamegraph viewer.
//!
//! Pages live in [`pages`], each with the data requests it makes ([`data`]): answered while the
//! server renders the page, fetched by the browser after. Each page is its own document
//! ([`location`]): no client-side router. The flamegraph (canvas drawing through web-sys,
//! layout from `kiln-model`) lives in [`flame`]. Server-only code sits behind the `ssr`
//! feature; the hydrate entry behind `hydrate`.

// The explorer's view type nests deeper than the compiler's default limit.
#![recursion_limit = "256"]

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};

pub mod data;
pub mod fetch;
pub mod flame;
pub mod format;
pub mod location;
pub mod pages;
pub mod paint;
pub mod search;
#[cfg(feature = "ssr")]
pub mod source;
pub mod sync_hydrate;
pub mod theme;

use sync_hydrate::IntoAnySync;

pub use kiln_model as model;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // Only the server renders the shell (the browser hydrates `App`), so this is no hydration
    // data and costs the wasm nothing.
    #[cfg(feature = "ssr")]
    let preload = pages::explore::tree_preload();
    #[cfg(not(feature = "ssr"))]
    let preload: Option<pages::explore::TreePreload> = None;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                // Linked on every page (the "not found" page too), so no browser asks for a
                // missing icon; `/favicon.ico` is there for clients that ask without reading.
                <link rel="icon" href="/pkg/favicon.svg" type="image/svg+xml" />
                <link rel="icon" href="/favicon.ico" sizes="32x32" />
                <AutoReload options=options.clone() />
                {preload.map(|preload| match preload {
                    pages::explore::TreePreload::Link(href) => {
                        view! { <link rel="preload" href=href r#as="fetch" crossorigin="anonymous" /> }.into_any_sync()
                    }
                    pages::explore::TreePreload::Script(script) => {
                        view! { <script inner_html=script></script> }.into_any_sync()
                    }
                })}
                <HydrationScripts options />
                <MetaTags />
                <script inner_html=theme::THEME_SCRIPT></script>
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The paths with a page; the server renders these (anything else is a 404 with the
/// "not found" page).
pub const PAGE_PATHS: [&str; 4] = ["/", "/explore", "/diff", "/open"];

/// The app: a header and the page of the current path.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    theme::provide_theme();
    let page = match location::provide_location().as_str() {
        "/" => view! { <pages::home::HomePage /> }.into_any_sync(),
        "/explore" => view! { <pages::explore::ExplorePage /> }.into_any_sync(),
        "/diff" => view! { <pages::diff::DiffPage /> }.into_any_sync(),
        "/open" => view! { <pages::open::OpenPage /> }.into_any_sync(),
        _ => view! { <p class="empty">"Page not found."</p> }.into_any_sync(),
    };
    view! {
        <Stylesheet id="kiln" href="/pkg/kiln.css" />
        <Title text="Kiln" />
        <header class="topbar">
            <a class="brand" href="/">"Kiln"</a>
            <span class="tagline">"continuous profiling"</span>
            <nav class="site-nav" aria-label="Site">
                <a href="/">"Applications"</a>
                <a href="/diff">"Compare"</a>
                <a href="/open">"Open a file"</a>
            </nav>
            <theme::ThemeToggle />
        </header>
        <main>{page}</main>
    }
}

/// The browser entry: attaches the wasm app to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // An explorer's flamegraph is painted first, then the page hydrates: the graph is what
    // its reader waits for, and hydration would delay it by as long as it takes.
    wasm_bindgen_futures::spawn_local(async {
        let mount = || {
            leptos::mount::hydrate_body(App);
            // Said on the page once the controls are live: an input used before this (a file
            // picked while the wasm still loads) has no handler yet, and browser tests wait
            // for it.
            if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
                let _ = body.set_attribute("data-hydrated", "");
            }
        };
        // Hydrating in the same task would keep the drawn graph off the screen until it ends.
        if pages::explore::first_paint::paint_before_hydration().await {
            paint::after_paint(mount);
        } else {
            mount();
        }
    });
}
