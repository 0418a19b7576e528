//! The explorer's flamegraph painted before the page hydrates.
//!
//! Hydration walks the whole server-rendered page (toolbar, timeline, table) and took about as
//! long as decoding and drawing the tree; the graph used to wait for it, since its fetch
//! started from an effect of the hydrated page. Now the browser entry first takes the tree the
//! page's head preloaded, decodes it, draws it on the server-rendered canvas, and only then
//! hydrates the page, whose explorer adopts the drawn tree ([`take`]) instead of fetching it
//! again. Nothing here changes what hydration finds: the canvas's size and pixels are no part
//! of the rendered view, and the status line's text node keeps its place with empty text,
//! which the explorer then sets as its status too.
//!
//! Only the views drawn from the URL alone are painted early: the graph (icicle or flame, any
//! zoom and colours), without a search, collapsed recursion or a selection, which need the
//! page's parts. Any failure leaves the page as it was: it hydrates and loads the tree itself.

use std::cell::RefCell;
use std::sync::Arc;

use crate::flame::Loaded;

thread_local! {
    /// The tree drawn before hydration, and the URL it was fetched from.
    static DRAWN: RefCell<Option<(String, Arc<Loaded>)>> = const { RefCell::new(None) };
}

/// The tree drawn before hydration, if it was fetched from `url` (once: the explorer adopts it).
pub fn take(url: &str) -> Option<Arc<Loaded>> {
    DRAWN.with_borrow_mut(|drawn| match drawn.take() {
        Some((drawn_url, tree)) if drawn_url == url => Some(tree),
        _ => None,
    })
}

/// Draws the flamegraph of an explorer page before it hydrates (see the module's docs); does
/// nothing on other pages and views. Whether it drew.
#[cfg(feature = "hydrate")]
pub async fn paint_before_hydration() -> bool {
    use kiln_model::palette::ColourMode;
    use wasm_bindgen::JsCast;

    use super::ExploreState;
    use crate::fetch;
    use crate::location::QueryMap;

    let Some(window) = web_sys::window() else { return false };
    let Some(document) = window.document() else { return false };
    let location = window.location();
    if location.pathname().ok().as_deref() != Some("/explore") {
        return false;
    }
    let query = location.search().unwrap_or_default();
    let state = ExploreState::from_params(&QueryMap::parse(query.trim_start_matches('?')));
    let drawn_from_url_alone = state.view == "flame"
        && !state.query.is_empty()
        && state.search.is_empty()
        && state.collapse.is_empty()
        && state.selected.is_empty();
    if !drawn_from_url_alone {
        return false;
    }
    let canvas = document.query_selector("canvas.flame-canvas").ok().flatten();
    let Some(canvas) = canvas.and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok()) else { return false };
    let Ok((tree, units)) = fetch::tree(&state.query, &state.from, &state.until).await else { return false };
    if tree.total() == 0 {
        return false;
    }
    let loaded = Arc::new(Loaded::new(tree, units));
    crate::flame::draw_unattached(
        &canvas,
        &loaded,
        &state.zoom,
        state.orient == "flame",
        ColourMode::parse(&state.colour),
        crate::theme::current(),
    );
    // "Loading flamegraph…" no more: the text node stays (hydration finds it), empty.
    let status = document.query_selector(".flame-status").ok().flatten().and_then(|p| p.first_child());
    if let Some(text) = status.and_then(|node| node.dyn_into::<web_sys::Text>().ok()) {
        text.set_data("");
    }
    let url = fetch::tree_url(&state.query, &state.from, &state.until);
    DRAWN.with_borrow_mut(|drawn| *drawn = Some((url, loaded)));
    true
}
