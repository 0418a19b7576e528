//! The web UI's files under `/pkg/` (wasm, JS, CSS, icons) and `/favicon.ico`: the copy built into the binary by
//! `server/build.rs`, or a directory on disk for UI work (`--site-root`).
//!
//! The names are fixed (`kiln.js`, `kiln_bg.wasm`), so browsers may keep a copy but must ask
//! again (`Cache-Control: no-cache`); the content-hash `ETag` makes that a 304 while the binary
//! is the same.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::AppState;

/// Where `/pkg/` is served from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Site {
    /// The files embedded at build time: the binary needs nothing beside it.
    #[default]
    Embedded,
    /// `DIR/pkg/…` read on each request (`--site-root DIR`): a rebuilt site shows on reload.
    Dir(PathBuf),
}

/// One embedded file: its path under `pkg/`, its bytes, a gzip copy when the build had one.
pub(super) struct EmbeddedFile {
    name: &'static str,
    body: &'static [u8],
    gzip: Option<&'static [u8]>,
    etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/site_files.rs"));

/// The embedded file at `name` (a path under `pkg/`), for tests and the start-up log.
pub fn embedded(name: &str) -> Option<&'static [u8]> {
    EMBEDDED.iter().find(|file| file.name == name).map(|file| file.body)
}

/// The number of embedded files and their total size in bytes.
pub fn embedded_size() -> (usize, usize) {
    (EMBEDDED.len(), EMBEDDED.iter().map(|file| file.body.len()).sum())
}

/// `GET /pkg/{*name}`.
pub async fn asset(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Response {
    match &state.site {
        Site::Embedded => serve_embedded(&name, request.headers()),
        Site::Dir(root) => {
            // ServeDir maps the request path under `root` (refusing `..`), with the
            // precompressed copies `make site` writes.
            let files = ServeDir::new(root).precompressed_gzip().precompressed_br();
            match files.oneshot(request).await {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            }
        }
    }
}

/// `GET /favicon.ico`: the icon clients ask for at the root without reading the page (the
/// pages link `/pkg/favicon.svg`, and this one beside it), from the same files as `/pkg/`.
pub async fn favicon(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    parts.uri = Uri::from_static("/pkg/favicon.ico");
    asset(State(state), Path("favicon.ico".into()), Request::from_parts(parts, body)).await
}

fn serve_embedded(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = EMBEDDED.iter().find(|file| file.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let etag = HeaderValue::from_static(file.etag);
    let mut response = if if_none_match(headers, file.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match file.gzip.filter(|_| accepts_gzip(headers)) {
            Some(gzip) => ([(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))], gzip).into_response(),
            None => file.body.into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if file.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("wasm") => "application/wasm",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// `If-None-Match` names `etag` (or `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        },
    )
}

/// `Accept-Encoding` allows gzip: listed (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| {
                param.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap())).collect()
    }

    #[test]
    fn the_built_site_is_embedded() {
        for name in ["kiln.js", "kiln_bg.wasm", "kiln.css", "favicon.svg", "favicon.ico"] {
            assert!(embedded(name).is_some_and(|body| !body.is_empty()), "{name} is embedded");
        }
        assert_eq!(embedded("kiln_bg.wasm").map(|b| &b[..4]), Some(&b"\0asm"[..]));
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "gzip, deflate, br")])));
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "br;q=1.0, GZIP;q=0.5")])));
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "*")])));
        assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "br, identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn etags_match_exactly_weakly_or_by_star() {
        let etag = "\"abc-1\"";
        assert!(if_none_match(&headers(&[(header::IF_NONE_MATCH, "\"abc-1\"")]), etag));
        assert!(if_none_match(&headers(&[(header::IF_NONE_MATCH, "\"x\", W/\"abc-1\"")]), etag));
        assert!(if_none_match(&headers(&[(header::IF_NONE_MATCH, "*")]), etag));
        assert!(!if_none_match(&headers(&[(header::IF_NONE_MATCH, "\"abc-2\"")]), etag));
        assert!(!if_none_match(&HeaderMap::new(), etag));
    }

    #[test]
    fn embedded_files_carry_type_tag_and_cache_policy() {
        let plain = serve_embedded("kiln_bg.wasm", &HeaderMap::new());
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let etag = plain.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = serve_embedded("kiln_bg.wasm", &headers(&[(header::IF_NONE_MATCH, &etag)]));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve_embedded("kiln.js", &HeaderMap::new()).headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            serve_embedded("kiln.css", &HeaderMap::new()).headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(serve_embedded("favicon.svg", &HeaderMap::new()).headers()[header::CONTENT_TYPE], "image/svg+xml");
        assert_eq!(serve_embedded("favicon.ico", &HeaderMap::new()).headers()[header::CONTENT_TYPE], "image/x-icon");
        assert_eq!(serve_embedded("nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
