//! The per-connection service: hands requests to the router, tells [`ConnState`] when a
//! request starts and ends, enforces the whole-request deadline (503 past it, and a [`Cancel`]
//! in the request's extensions for the work it started) and advertises the idle limit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tower::ServiceExt;

use super::conn::ConnState;
use crate::work::Cancel;

/// The `Keep-Alive` value advertised for `idle_timeout`: five seconds less, so that clients
/// that honour it (Node's fetch keeps connections for the advertised time minus a margin)
/// always close an idle connection before Kiln does. `None` when that leaves under a second.
pub fn keep_alive_value(idle_timeout: Duration) -> Option<HeaderValue> {
    let seconds = idle_timeout.saturating_sub(Duration::from_secs(5)).as_secs();
    (seconds > 0)
        .then(|| HeaderValue::from_str(&format!("timeout={seconds}")).expect("digits are a valid header value"))
}

/// Serves one connection's requests with `router`.
#[derive(Clone)]
pub struct EdgeService {
    pub(crate) router: Router,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) keep_alive: Option<HeaderValue>,
    pub(crate) request_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for EdgeService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.conn.on_request(request.body().is_end_stream());
        // Created now, so that dropping the future (client gone) also ends the request.
        let response_guard = Tracked::new(self.conn.clone(), Ends::Response);
        let request_body_guard = Tracked::new(self.conn.clone(), Ends::RequestBody);
        let version = request.version();
        let mut request = request.map(|body| Body::new(request_body_guard.wrap(body)));
        // Handlers check it in long loops: past the deadline, or once this future is dropped
        // (the client went away), their work stops at the next check.
        let cancel = Cancel::after(self.request_timeout);
        request.extensions_mut().insert(cancel.clone());
        let router = self.router.clone();
        let keep_alive = self.keep_alive.clone();
        let request_timeout = self.request_timeout;
        let conn = self.conn.clone();
        Box::pin(async move {
            let cancel_on_drop = cancel.on_drop();
            let mut response = match tokio::time::timeout(request_timeout, router.oneshot(request)).await {
                Ok(Ok(response)) => {
                    cancel_on_drop.disarm();
                    response
                }
                Ok(Err(never)) => match never {},
                Err(_) => {
                    drop(cancel_on_drop);
                    tracing::debug!(timeout = ?request_timeout, "request deadline passed");
                    let mut response = timed_out(request_timeout);
                    // The request body may be half read: do not parse the rest as a request.
                    if version < Version::HTTP_2 {
                        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                conn.on_upgrade();
            }
            let closing = response
                .headers()
                .get(header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            // HTTP/2 forbids connection-specific headers; HTTP/1.0 keep-alive is left to hyper.
            if version == Version::HTTP_11
                && !closing
                && let Some(value) = keep_alive
            {
                response.headers_mut().insert(header::HeaderName::from_static("keep-alive"), value);
            }
            Ok(response.map(|body| Body::new(response_guard.wrap(body))))
        })
    }
}

/// The answer to a request still unanswered at the request timeout: the server was too slow,
/// so 503 with `Retry-After` (a 408 would blame the client), in the API's JSON error shape.
fn timed_out(request_timeout: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!(
            "the request took longer than {request_timeout:?} (--request-timeout, KILN_REQUEST_TIMEOUT) and was \
             stopped; narrow the query (a shorter range, fewer series) or retry later"
        )
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Seconds: long enough for the load that slowed this request to ease.
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// What finishing a tracked body ends.
#[derive(Debug, Clone, Copy)]
enum Ends {
    RequestBody,
    Response,
}

/// Reports the end of a request body or a response body to [`ConnState`] once, when it is
/// read to its end or dropped, whichever comes first.
struct Tracked {
    conn: Arc<ConnState>,
    ends: Ends,
    reported: bool,
}

impl Tracked {
    fn new(conn: Arc<ConnState>, ends: Ends) -> Self {
        Tracked { conn, ends, reported: false }
    }

    fn report(&mut self) {
        if !self.reported {
            self.reported = true;
            match self.ends {
                Ends::RequestBody => self.conn.on_request_body_done(),
                Ends::Response => self.conn.on_response_done(),
            }
        }
    }

    fn wrap<B>(self, body: B) -> TrackedBody<B> {
        TrackedBody { body, tracked: self }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.report();
    }
}

/// A body whose end is reported.
struct TrackedBody<B> {
    body: B,
    tracked: Tracked,
}

impl<B: HttpBody + Unpin> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.tracked.report(),
            Poll::Ready(Some(_)) if this.body.is_end_stream() => this.tracked.report(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
