//! Pages answer with their document's start at once, before reading their data.
//!
//! A page reads its data while it renders (the explorer merges its query: over a second for a
//! million stacks), so a page rendered whole reaches the browser only after that, and the
//! browser starts loading the wasm, the script, the stylesheet and the explorer's tree only
//! then. Here the head's first part ([`kiln_app::document_start`]: nothing in it depends on the
//! data) goes first, and the page is rendered on the heavy lane meanwhile; what follows the
//! head marker in the rendered page goes after. The browser's tree fetch (preloaded by that
//! head) asks for the same merge, which the merge cache shares while it runs.
//!
//! The status is sent with the first part: a page is 200 whatever its data (a failed read is
//! shown in the page). A render that fails after that (a panic) ends the body with an error,
//! so the browser sees a cut connection rather than a page that looks whole.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt};
use kiln_app::HEAD_MARKER;
use leptos::prelude::LeptosOptions;

use crate::work::{self, Cancel};

/// Answers a page request: the document's start now, then the rest of what `render` renders
/// (on the heavy lane). `panics` counts a render's panic, as the panic layer counts a
/// handler's.
pub(super) async fn head_first<R, F>(
    request: Request<Body>,
    options: LeptosOptions,
    render: R,
    panics: Arc<AtomicU64>,
) -> Response<Body>
where
    R: FnOnce(Request<Body>) -> F,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (parts, body) = request.into_parts();
    let start = kiln_app::document_start(options, parts.clone());
    let cancel = parts.extensions.get::<Cancel>().cloned().unwrap_or_else(Cancel::never);
    let rendered = work::heavy().run_future(render(Request::from_parts(parts, body)));
    let rest = async move {
        // Once the first part is sent the request counts as answered; a browser that goes away
        // while the page renders drops this body, and so stops the page's work.
        let stop_if_dropped = cancel.on_drop();
        let outcome = AssertUnwindSafe(rendered).catch_unwind().await;
        stop_if_dropped.disarm();
        match outcome {
            Ok(response) => after_head_marker(response).await,
            Err(_) => {
                // Logged by the panic hook, with its location.
                panics.fetch_add(1, Ordering::Relaxed);
                failed("the page's rendering panicked")
            }
        }
    };
    let first = stream::once(async move { Ok::<_, BoxError>(Bytes::from(start)) });
    let mut response = Response::new(Body::from_stream(first.chain(stream::once(rest).flatten())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// The rendered page's body from just after the head marker on (its start was sent already).
async fn after_head_marker(response: Response<Body>) -> BoxStream<'static, Result<Bytes, BoxError>> {
    if response.status() != StatusCode::OK {
        // Nothing in a page sets its status today; if one does, it needs rendering whole.
        tracing::warn!(status = %response.status(), "a page rendered with a status sent as 200 already");
    }
    let mut chunks = response.into_body().into_data_stream();
    let mut seen = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(e) => return failed(e),
        }
        if let Some(at) = find(&seen, HEAD_MARKER.as_bytes()) {
            let after = Bytes::from(seen).slice(at + HEAD_MARKER.len()..);
            return stream::once(async move { Ok(after) }).chain(chunks.map(|c| c.map_err(BoxError::from))).boxed();
        }
    }
    failed("the rendered page has no head marker")
}

fn failed(error: impl Into<BoxError>) -> BoxStream<'static, Result<Bytes, BoxError>> {
    let error = error.into();
    tracing::error!(%error, "page cut short after its head");
    stream::once(async move { Err(error) }).boxed()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::Request;

    use super::*;

    fn options() -> LeptosOptions {
        LeptosOptions::builder().output_name("kiln").build()
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    /// Guards against a hang only: a test that fails waits no longer than this.
    const HANG: Duration = Duration::from_secs(60);

    async fn text(body: Body) -> String {
        let bytes = tokio::time::timeout(HANG, axum::body::to_bytes(body, usize::MAX)).await.unwrap().unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Each `nonce="…"` and `crossorigin="…"` value blanked: Leptos draws a nonce per render
    /// (and writes it in `crossorigin` too), so the two renders of one page differ there only.
    fn without_nonces(html: &str) -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some(at) =
            ["nonce=\"", "crossorigin=\""].iter().filter_map(|k| rest.find(k).map(|i| i + k.len())).min()
        {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            rest = &rest[rest.find('"').unwrap()..];
        }
        out.push_str(rest);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_document_start_is_sent_while_the_page_still_renders() {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let render = move |_request: Request<Body>| async move {
            held.await.unwrap();
            Response::new(Body::from(
                "<!DOCTYPE html><html><head><meta x><!--HEAD--><title>T</title></head><body>page</body></html>",
            ))
        };
        let panics = Arc::new(AtomicU64::new(0));
        let response = head_first(get("/explore?query=app.cpu"), options(), render, panics.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let mut body = response.into_body().into_data_stream();
        // The render is still held here: only the start can have been sent.
        let first = tokio::time::timeout(HANG, body.next()).await.unwrap().unwrap().unwrap();
        let first = std::str::from_utf8(&first).unwrap();
        assert!(first.starts_with("<!DOCTYPE html><html lang=\"en\"><head>"), "{first}");
        assert!(first.ends_with(HEAD_MARKER), "{first}");
        for wanted in [
            r#"<link rel="preload" href="/render?format=tree&amp;query=app.cpu&amp;from=now-1h&amp;until=now""#,
            r#"<link rel="preload" href="/pkg/kiln_bg.wasm""#,
            r#"<link rel="modulepreload" href="/pkg/kiln.js""#,
            r#"<link id="kiln" rel="stylesheet" href="/pkg/kiln.css">"#,
        ] {
            assert!(first.contains(wanted), "{wanted} in {first}");
        }
        release.send(()).unwrap();
        let rest = text(Body::from_stream(body)).await;
        assert_eq!(rest, "<title>T</title></head><body>page</body></html>");
        assert_eq!(panics.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_sent_in_two_parts_is_the_page_rendered_whole() {
        let _ = any_spawner::Executor::init_tokio();
        let shell_options = options();
        let render = leptos_axum::render_app_async_with_context(|| {}, move || kiln_app::shell(shell_options.clone()));
        let whole = text(render(get("/open")).await.into_body()).await;
        let sent = head_first(get("/open"), options(), render, Arc::default()).await;
        let sent = text(sent.into_body()).await;
        assert!(whole.contains(HEAD_MARKER) && whole.contains("</body></html>"), "{whole}");
        assert_eq!(without_nonces(&sent), without_nonces(&whole));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_render_that_panics_cuts_the_page_and_is_counted() {
        let render = |_request: Request<Body>| async move {
            if true {
                panic!("rendering failed");
            }
            Response::new(Body::empty())
        };
        let panics = Arc::new(AtomicU64::new(0));
        let response = head_first(get("/"), options(), render, panics.clone()).await;
        let mut body = response.into_body().into_data_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(first.ends_with(HEAD_MARKER.as_bytes()));
        assert!(tokio::time::timeout(HANG, body.next()).await.unwrap().unwrap().is_err());
        assert_eq!(panics.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_render_without_the_head_marker_ends_in_an_error() {
        let render =
            |_request: Request<Body>| async move { Response::new(Body::from("<html><body>no head</body></html>")) };
        let response = head_first(get("/"), options(), render, Arc::default()).await;
        let mut body = response.into_body().into_data_stream();
        body.next().await.unwrap().unwrap();
        assert!(tokio::time::timeout(HANG, body.next()).await.unwrap().unwrap().is_err());
    }
}
