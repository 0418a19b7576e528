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
//!
//! The tree's fetch starts from the page's head ([`head_script`]), before the wasm loads, and
//! at the root's zoom asks only for the frames a graph as wide as the window shows (the
//! server's `visibleWidth`; `FlatTree::visible_part` draws the same picture): at a million
//! stacks that is a few thousand nodes of 1.7 million, 2 MB instead of 42 to fetch and decode
//! before the first paint. The explorer fetches the whole tree once it has hydrated.

use std::cell::RefCell;
use std::sync::Arc;

use crate::flame::Loaded;

use super::ExploreState;

/// The tree drawn before hydration.
pub struct Drawn {
    /// The whole tree's URL ([`crate::fetch::tree_url`]), whichever part was fetched.
    url: String,
    /// What was drawn.
    pub tree: Arc<Loaded>,
    /// False when only the frames visible at the root's zoom were sent: the explorer then
    /// fetches the whole tree before a zoom or a search needs it.
    pub whole: bool,
}

thread_local! {
    static DRAWN: RefCell<Option<Drawn>> = const { RefCell::new(None) };
}

/// The tree drawn before hydration, if it is `url`'s (once: the explorer adopts it).
pub fn take(url: &str) -> Option<Drawn> {
    DRAWN.with_borrow_mut(|drawn| drawn.take().filter(|drawn| drawn.url == url))
}

/// Whether the browser entry draws this view before hydrating: the graph as the URL alone
/// describes it.
fn painted_before_hydration(state: &ExploreState) -> bool {
    state.view == "flame"
        && !state.query.is_empty()
        && state.search.is_empty()
        && state.collapse.is_empty()
        && state.selected.is_empty()
}

/// Whether the frames visible at the root's zoom draw this view's first picture: not when
/// zoomed in, nor with colours by self value (whose scale is the largest self value of all).
fn drawn_from_visible_part(state: &ExploreState) -> bool {
    state.zoom.is_empty()
        && kiln_model::palette::ColourMode::parse(&state.colour) == kiln_model::palette::ColourMode::Package
}

/// The global the head's script leaves the tree's fetch in: `{width, response}`, `width` 0
/// for the whole tree.
const FIRST_TREE: &str = "kilnFirstTree";

/// The inline script of the page's head that starts fetching the tree this view is first
/// painted with, if it is painted before hydration; `None` otherwise (the page then preloads
/// the whole tree with a link).
pub fn head_script(state: &ExploreState) -> Option<String> {
    if !painted_before_hydration(state) {
        return None;
    }
    // Percent-encoded throughout: nothing in it ends a JavaScript string or the script.
    let url = crate::fetch::tree_url(&state.query, &state.from, &state.until);
    Some(if drawn_from_visible_part(state) {
        // The layout's widths are CSS pixels, and the graph is never wider than the window.
        format!(
            "(function(){{var w=Math.ceil(innerWidth);window.{FIRST_TREE}={{width:w,response:fetch(\"{url}&visibleWidth=\"+w)}}}})();"
        )
    } else {
        format!("window.{FIRST_TREE}={{width:0,response:fetch(\"{url}\")}};")
    })
}

/// Draws the flamegraph of an explorer page before it hydrates (see the module's docs); does
/// nothing on other pages and views. Whether it drew.
#[cfg(feature = "hydrate")]
pub async fn paint_before_hydration() -> bool {
    use kiln_model::palette::ColourMode;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

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
    if !painted_before_hydration(&state) {
        return false;
    }
    let canvas = document.query_selector("canvas.flame-canvas").ok().flatten();
    let Some(canvas) = canvas.and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok()) else { return false };
    let get = |object: &wasm_bindgen::JsValue, key: &str| js_sys::Reflect::get(object, &key.into()).ok();
    let Some(first_tree) = get(&window, FIRST_TREE).filter(|f| f.is_object()) else { return false };
    let width = get(&first_tree, "width").and_then(|w| w.as_f64()).unwrap_or(0.0);
    let Some(response) = get(&first_tree, "response").and_then(|r| r.dyn_into::<js_sys::Promise>().ok()) else {
        return false;
    };
    let Ok(response) = JsFuture::from(response).await.and_then(|r| r.dyn_into::<web_sys::Response>()) else {
        return false;
    };
    let Ok(fetched) = fetch::read_tree_answer(response).await else { return false };
    // A part drawn wider than it was cut for would miss frames (a window that grew meanwhile).
    if fetched.tree.total() == 0 || (!fetched.whole && f64::from(canvas.client_width()) > width) {
        return false;
    }
    let loaded = Arc::new(Loaded::new(fetched.tree, fetched.units));
    crate::flame::draw_unattached(
        &canvas,
        loaded.clone(),
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
    DRAWN.with_borrow_mut(|drawn| *drawn = Some(Drawn { url, tree: loaded, whole: fetched.whole }));
    true
}
