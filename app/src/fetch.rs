//! Requests from the browser: a query's tree in the compact binary format (no JSON parse on
//! the way), page data as text, uploads.

use kiln_model::time_order::{self, TimedProfile};
use kiln_model::{FlatTree, codec};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::format::encode_query_value;

/// Response header carrying the tree's sample unit (the binary format holds numbers only).
pub const UNITS_HEADER: &str = "x-kiln-units";

fn js_error(value: wasm_bindgen::JsValue) -> String {
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Where [`tree`] fetches a query's tree from; the explorer's page preloads the same URL.
pub fn tree_url(query: &str, from: &str, until: &str) -> String {
    format!(
        "/render?format=tree&query={}&from={}&until={}",
        encode_query_value(query),
        encode_query_value(from),
        encode_query_value(until)
    )
}

/// Posts `body` (a `Blob`, e.g. a picked file, which the browser sends from disk without
/// reading it into the page) to `url`.
async fn post_blob(url: &str, body: &web_sys::Blob) -> Result<web_sys::Response, String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(body);
    JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(js_error)?.dyn_into().map_err(js_error)
}

// The browser's `CompressionStream` (web-sys has it only behind `web_sys_unstable_apis`): its
// constructor is all that is needed, as the stream is itself the readable/writable pair that
// `pipeThrough` takes.
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = CompressionStream)]
    type CompressionStream;
    #[wasm_bindgen(constructor, js_class = "CompressionStream", catch)]
    fn new(format: &str) -> Result<CompressionStream, wasm_bindgen::JsValue>;
}

/// `body` gzipped by the browser (`CompressionStream`), streamed: never whole in the page, only
/// the compressed result.
pub async fn gzipped(body: &web_sys::Blob) -> Result<web_sys::Blob, String> {
    let gzip = CompressionStream::new("gzip").map_err(js_error)?;
    let stream = body.stream().pipe_through(gzip.unchecked_ref());
    let response = web_sys::Response::new_with_opt_readable_stream(Some(&stream)).map_err(js_error)?;
    JsFuture::from(response.blob().map_err(js_error)?).await.map_err(js_error)?.dyn_into().map_err(js_error)
}

/// One profile of a file of several, as `/api/collapse` lists them in `x-kiln-parts`.
#[derive(Debug, Clone)]
pub struct PartInfo {
    /// The thread, process or event type.
    pub name: String,
    /// Its unit.
    pub units: String,
    /// Its total (a JSON number: exact up to 2^53, which is enough to show).
    pub total: f64,
    /// Whether it has samples in time order.
    pub timed: bool,
}

/// What `/api/collapse` answers: the tree, its unit, and for a file of several profiles their
/// list and which one the tree is (`all` or an index).
pub struct Collapsed {
    /// The tree and its unit.
    pub tree: (FlatTree, String),
    /// The file's profiles, empty for a file of one.
    pub parts: Vec<PartInfo>,
    /// Which of them the tree is.
    pub part: String,
}

/// Posts `body` to `url` (the `/api/collapse` endpoint) and decodes the tree it answers with
/// the list of the file's profiles (read with the browser's own JSON parser).
pub async fn post_for_tree(url: &str, body: &web_sys::Blob) -> Result<Collapsed, String> {
    collapsed_of(post_blob(url, body).await?).await
}

/// [`post_for_tree`], unless the server does not take `body` as it is: `None` when it answers
/// 413 (over its body limit), or when the request fails before any answer (a server may refuse
/// a body by its announced size and close the connection while the browser still sends it), so
/// that the caller may send it smaller.
pub async fn post_for_tree_if_taken(url: &str, body: &web_sys::Blob) -> Result<Option<Collapsed>, String> {
    let Ok(response) = post_blob(url, body).await else { return Ok(None) };
    if response.status() == 413 {
        return Ok(None);
    }
    collapsed_of(response).await.map(Some)
}

/// The tree `/api/collapse` answered, with the list of the file's profiles.
async fn collapsed_of(response: web_sys::Response) -> Result<Collapsed, String> {
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let part = header("x-kiln-part").unwrap_or_default();
    let listed = header("x-kiln-parts").and_then(|text| js_sys::JSON::parse(&text).ok());
    let field = |item: &wasm_bindgen::JsValue, name: &str| js_sys::Reflect::get(item, &name.into()).ok();
    let list = listed.map(|list| js_sys::Array::from(&list)).unwrap_or_default();
    let parts = list
        .iter()
        .map(|item| PartInfo {
            name: field(&item, "name").and_then(|v| v.as_string()).unwrap_or_default(),
            units: field(&item, "units").and_then(|v| v.as_string()).unwrap_or_default(),
            total: field(&item, "total").and_then(|v| v.as_f64()).unwrap_or_default(),
            timed: field(&item, "timed").is_some_and(|v| v.is_truthy()),
        })
        .collect();
    Ok(Collapsed { tree: read_tree(response).await?, parts, part })
}

/// Posts a file to `url` and decodes the time order it answers (the
/// `/api/collapse/time-order` endpoint).
pub async fn post_for_time_order(url: &str, body: &web_sys::Blob) -> Result<TimedProfile, String> {
    read_time_order(post_blob(url, body).await?).await
}

/// A stored query's uploads in time order, one column each (`/render/time-order`).
pub async fn time_order(query: &str, from: &str, until: &str) -> Result<TimedProfile, String> {
    let window = web_sys::window().ok_or("no window")?;
    let url = format!(
        "/render/time-order?query={}&from={}&until={}",
        encode_query_value(query),
        encode_query_value(from),
        encode_query_value(until)
    );
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(&url)).await.map_err(js_error)?.dyn_into().map_err(js_error)?;
    read_time_order(response).await
}

async fn read_time_order(response: web_sys::Response) -> Result<TimedProfile, String> {
    if !response.ok() {
        return Err(error_text(&response).await);
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    time_order::decode(&bytes).map_err(|e| e.to_string())
}

/// Gets `url` as text; `Ok` for a 2xx, else the server's message.
pub async fn get_text(url: &str) -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(url)).await.map_err(js_error)?.dyn_into().map_err(js_error)?;
    if !response.ok() {
        return Err(error_text(&response).await);
    }
    let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
    text.as_string().ok_or_else(|| "the answer is not text".into())
}

/// Posts `body` (text) to `url` gzipped ([`gzipped`]; Kiln's body decoding inflates it);
/// `Ok` for a 2xx, else the server's message.
pub async fn post_text_gzipped(url: &str, body: &str) -> Result<(), String> {
    let text = web_sys::Blob::new_with_str_sequence(&js_sys::Array::of1(&body.into())).map_err(js_error)?;
    let response = post_blob(url, &gzipped(&text).await?).await?;
    if response.ok() { Ok(()) } else { Err(error_text(&response).await) }
}

/// The message of a failed request: the `error` field of Kiln's JSON errors (read with the
/// browser's own JSON parser), else the body as it is.
async fn error_text(response: &web_sys::Response) -> String {
    let body = match response.text() {
        Ok(promise) => JsFuture::from(promise).await.ok().and_then(|t| t.as_string()),
        Err(_) => None,
    };
    let Some(body) = body else { return format!("HTTP {}", response.status()) };
    js_sys::JSON::parse(&body)
        .ok()
        .and_then(|json| js_sys::Reflect::get(&json, &"error".into()).ok())
        .and_then(|error| error.as_string())
        .unwrap_or(body)
}

/// Response header saying whether a tree is whole or only the frames a width shows.
const PART_HEADER: &str = "x-kiln-tree-part";

/// A tree as the server sent it.
pub struct FetchedTree {
    /// The tree, or its visible part.
    pub tree: FlatTree,
    /// The sample unit.
    pub units: String,
    /// False for only the frames visible at the root's zoom (`visibleWidth`).
    pub whole: bool,
}

async fn read_tree(response: web_sys::Response) -> Result<(FlatTree, String), String> {
    read_tree_answer(response).await.map(|fetched| (fetched.tree, fetched.units))
}

/// Reads and decodes a tree answer.
pub async fn read_tree_answer(response: web_sys::Response) -> Result<FetchedTree, String> {
    if !response.ok() {
        return Err(error_text(&response).await);
    }
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let units = header(UNITS_HEADER).unwrap_or_else(|| "samples".into());
    let whole = header(PART_HEADER).as_deref() != Some("visible");
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    Ok(FetchedTree { tree: codec::decode(&bytes).map_err(|e| e.to_string())?, units, whole })
}

/// Fetches and decodes the merged tree of `query` over `[from, until)`, with its unit.
pub async fn tree(query: &str, from: &str, until: &str) -> Result<(FlatTree, String), String> {
    let window = web_sys::window().ok_or("no window")?;
    let url = tree_url(query, from, until);
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(&url)).await.map_err(js_error)?.dyn_into().map_err(js_error)?;
    read_tree(response).await
}
