//! Fetching a query's tree in the compact binary format (no JSON parse on the way).

use kiln_model::{FlatTree, codec};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::format::encode_query_value;

fn js_error(value: wasm_bindgen::JsValue) -> String {
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Fetches and decodes the merged tree of `query`.
pub async fn tree(query: &str) -> Result<FlatTree, String> {
    let window = web_sys::window().ok_or("no window")?;
    let url = format!("/render?format=tree&query={}", encode_query_value(query));
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(&url)).await.map_err(js_error)?.dyn_into().map_err(js_error)?;
    if !response.ok() {
        let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
        return Err(text.as_string().unwrap_or_else(|| format!("HTTP {}", response.status())));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    codec::decode(&bytes).map_err(|e| e.to_string())
}
