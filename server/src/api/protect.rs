//! What every response carries, and what a panic becomes.
//!
//! - Every response: `X-Content-Type-Options: nosniff`, so no browser reads a folded export or
//!   an error as HTML.
//! - Pages (HTML): `Content-Security-Policy: frame-ancestors 'none'` and `X-Frame-Options:
//!   DENY`, so no other site frames Kiln.
//! - SVG (flamegraph exports): `Content-Security-Policy: sandbox allow-scripts`. inferno's SVG
//!   carries script (zoom, search); the sandbox runs it in an origin of its own, with no access
//!   to Kiln's, no forms, popups or navigation of the page around it.
//! - A panic in a handler is answered 500 with the JSON error every other failure has, and
//!   counted; the panic hook ([`log_panics`]) logs it once, with its location.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// Adds the headers every response carries, and those of pages and SVG.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    response
}

fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "text/html" => {
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        "image/svg+xml" => {
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox allow-scripts"));
        }
        _ => {}
    }
}

/// Answers a handler's panic with a 500 and counts it in `panics`.
pub fn catch_panics(panics: Arc<AtomicU64>) -> CatchPanicLayer<PanicResponse> {
    CatchPanicLayer::custom(PanicResponse(panics))
}

/// The answer to a panic; see [`catch_panics`].
#[derive(Debug, Clone)]
pub struct PanicResponse(Arc<AtomicU64>);

impl ResponseForPanic for PanicResponse {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, _panic: Box<dyn Any + Send + 'static>) -> axum::http::Response<Body> {
        // Not logged here: the panic hook already did, with the location this payload lacks.
        self.0.fetch_add(1, Ordering::Relaxed);
        (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "internal error; see the server log" })))
            .into_response()
    }
}

/// Logs every panic once through `tracing`, with its location (and a backtrace when
/// `RUST_BACKTRACE` asks for one), instead of the default hook's line on stderr.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(%location, %backtrace, "panic: {message}");
        } else {
            tracing::error!(%location, "panic: {message}");
        }
    }));
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::middleware;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> StatusCode {
        panic!("a handler bug")
    }

    /// The app's layers, in the app's order, around routes that panic.
    fn app(panics: Arc<AtomicU64>) -> Router {
        Router::new()
            .route("/boom", get(boom))
            .route("/boom-heavy", get(boom).layer(middleware::from_fn(crate::api::lane::heavy)))
            .route("/svg", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], "<svg/>") }))
            .route("/page", get(|| async { axum::response::Html("<p>hi</p>") }))
            .layer(catch_panics(panics))
            .layer(middleware::from_fn(security_headers))
    }

    async fn get_path(app: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
        let response = app.clone().oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (parts.status, parts.headers, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_a_counted_json_500_with_the_usual_headers() {
        let panics = Arc::new(AtomicU64::new(0));
        let app = app(panics.clone());
        for path in ["/boom", "/boom-heavy"] {
            let (status, headers, body) = get_path(&app, path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(json["error"], "internal error; see the server log");
            assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        }
        assert_eq!(panics.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn pages_and_svg_get_their_own_policies() {
        let app = app(Arc::new(AtomicU64::new(0)));
        let (_, headers, _) = get_path(&app, "/page").await;
        assert_eq!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap(), "frame-ancestors 'none'");
        assert_eq!(headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        let (_, headers, _) = get_path(&app, "/svg").await;
        assert_eq!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap(), "sandbox allow-scripts");
        assert!(headers.get(header::X_FRAME_OPTIONS).is_none());
        assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    }
}
