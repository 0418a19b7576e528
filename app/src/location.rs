//! The page's address, without a client-side router.
//!
//! Every page is its own document: the server renders it for its path, the browser hydrates
//! it, and a link to another page loads that page. Within a page the view state lives in the
//! query string, so links and controls that only change the query (a preset range, a view, a
//! label filter) rewrite the URL with `history.pushState` and the page reacts to the new query
//! without a reload. Back and forward do the same through `popstate`.
//!
//! State a page keeps in signals of its own (the explorer's zoom and search) is written with
//! [`push_url`] (one history entry per change) or [`replace_url`] (the same entry, as typing
//! goes on), and read back by [`on_history_move`] when Back or Forward lands on an entry.

use leptos::prelude::*;

use crate::format::decode_query_value;

/// A query string's parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryMap(Vec<(String, String)>);

impl QueryMap {
    /// Parses `a=1&b=x%20y` (a leading `?` is skipped; `+` is a space).
    pub fn parse(search: &str) -> Self {
        let search = search.strip_prefix('?').unwrap_or(search);
        QueryMap(
            search
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode_query_value(key), decode_query_value(value))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

/// The current query, as context.
#[derive(Clone, Copy)]
struct PageQuery(RwSignal<QueryMap>);

/// Sets up the page's address for the pages below; returns the path to render.
///
/// On the server it is the request's; in the browser, the document's.
pub fn provide_location() -> String {
    #[cfg(feature = "ssr")]
    let (path, search) = {
        let uri = use_context::<http::request::Parts>().map(|parts| parts.uri);
        let path = uri.as_ref().map(|u| u.path().to_string()).unwrap_or_else(|| "/".into());
        (path, uri.and_then(|u| u.query().map(String::from)).unwrap_or_default())
    };
    #[cfg(not(feature = "ssr"))]
    let (path, search) = {
        let location = window().location();
        (location.pathname().unwrap_or_default(), location.search().unwrap_or_default())
    };
    let query = RwSignal::new(QueryMap::parse(&search));
    provide_context(PageQuery(query));
    #[cfg(not(feature = "ssr"))]
    follow_links_within_the_page(query);
    path
}

/// The current query string's parameters.
pub fn use_query_map() -> ReadSignal<QueryMap> {
    expect_context::<PageQuery>().0.read_only()
}

/// Goes to `href`: within the page when only its query differs (a new history entry, no
/// reload), else by loading it.
pub fn navigate(href: &str) {
    let query = expect_context::<PageQuery>().0;
    if !push_within_page(query, href) {
        let _ = window().location().set_href(href);
    }
}

/// Rewrites the address as `href` in place: no history entry, and nothing reacts (the page
/// already shows this state; it keeps search, zoom and the like linkable).
pub fn replace_url(href: &str) {
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(href));
    }
}

/// Adds `href` as a new history entry, in place like [`replace_url`]: nothing reacts (the page
/// already shows this state), and Back returns to the entry before it.
pub fn push_url(href: &str) {
    if let Ok(history) = window().history() {
        let _ = history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(href));
    }
}

/// Runs `restore` with the query of the entry Back or Forward lands on, for as long as the
/// calling component lives: how a page brings back the state it wrote with [`push_url`] and
/// [`replace_url`] rather than through the query (which changes only when links navigate).
pub fn on_history_move(restore: impl Fn(QueryMap) + 'static) {
    let handle = window_event_listener(leptos::ev::popstate, move |_| {
        restore(QueryMap::parse(&window().location().search().unwrap_or_default()));
    });
    on_cleanup(move || handle.remove());
}

/// Pushes `href` and updates the query, if `href` is this page with another query.
fn push_within_page(query: RwSignal<QueryMap>, href: &str) -> bool {
    let window = window();
    let location = window.location();
    let Ok(url) = location.href().and_then(|base| web_sys::Url::new_with_base(href, &base)) else {
        return false;
    };
    if Ok(url.origin()) != location.origin() || Ok(url.pathname()) != location.pathname() {
        return false;
    }
    // A link to a fragment of the same view is the browser's to scroll to.
    if !url.hash().is_empty() && Ok(url.search()) == location.search() {
        return false;
    }
    let Ok(history) = window.history() else { return false };
    if history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url.href())).is_err() {
        return false;
    }
    query.set(QueryMap::parse(&url.search()));
    true
}

/// Plain clicks on links to this page with another query become [`push_within_page`]; the
/// history buttons restore the query they go back to.
#[cfg(not(feature = "ssr"))]
fn follow_links_within_the_page(query: RwSignal<QueryMap>) {
    use wasm_bindgen::JsCast;
    // Both listeners live as long as the document.
    let _ = window_event_listener(leptos::ev::click, move |ev| {
        if ev.default_prevented()
            || ev.button() != 0
            || ev.ctrl_key()
            || ev.meta_key()
            || ev.shift_key()
            || ev.alt_key()
        {
            return;
        }
        let anchor = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.closest("a[href]").ok().flatten());
        let Some(anchor) = anchor else { return };
        // Downloads and links meant for another window stay the browser's.
        if anchor.has_attribute("download") || anchor.get_attribute("target").is_some_and(|t| t != "_self") {
            return;
        }
        if let Some(href) = anchor.get_attribute("href")
            && push_within_page(query, &href)
        {
            ev.prevent_default();
        }
    });
    let _ = window_event_listener(leptos::ev::popstate, move |_| {
        query.set(QueryMap::parse(&window().location().search().unwrap_or_default()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_like_the_browser() {
        let q = QueryMap::parse("?query=app.cpu%7Benv%3D%22a+b%22%7D&from=now-1h&empty=&flag&from=later");
        assert_eq!(q.get("query").as_deref(), Some("app.cpu{env=\"a b\"}"));
        assert_eq!(q.get("from").as_deref(), Some("now-1h"), "the first value wins");
        assert_eq!(q.get("empty").as_deref(), Some(""));
        assert_eq!(q.get("flag").as_deref(), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(QueryMap::parse(""), QueryMap::default());
    }
}
