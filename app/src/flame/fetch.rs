//! Fetching a query's tree in the compact binary format (no JSON parse on the way).

use kiln_model::{FlatTree, codec};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::format::encode_query_value;

/// Response header carrying the tree's sample unit (the binary format holds numbers only).
pub const UNITS_HEADER: &str = "x-kiln-units";

fn js_error(value: wasm_bindgen::JsValue) -> String {
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Fetches and decodes the merged tree of `query` over `[from, until)`, with its unit.
pub async fn tree(query: &str, from: &str, until: &str) -> Result<(FlatTree, String), String> {
    let window = web_sys::window().ok_or("no window")?;
    let url = format!(
        "/render?format=tree&query={}&from={}&until={}",
        encode_query_value(query),
        encode_query_value(from),
        encode_query_value(until)
    );
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(&url)).await.map_err(js_error)?.dyn_into().map_err(js_error)?;
    if !response.ok() {
        let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
        return Err(text.as_string().unwrap_or_else(|| format!("HTTP {}", response.status())));
    }
    let units = response.headers().get(UNITS_HEADER).ok().flatten().unwrap_or_else(|| "samples".into());
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    Ok((codec::decode(&bytes).map_err(|e| e.to_string())?, units))
}
