//! Optional shared-secret auth: one token for uploads, one for everything that reads.
//!
//! Agents authenticate two ways and both are accepted: `Authorization: Bearer <token>`, and
//! Basic auth with the token as the password and any user name (how Pyroscope agents and
//! Grafana data sources send credentials). Health and metrics stay open so that probes and
//! scrapers need no secret.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

/// Which tokens the server requires; `None` leaves that side open.
#[derive(Clone, Default)]
pub struct Auth {
    /// Required by the ingest endpoints.
    pub ingest_token: Option<String>,
    /// Required by every other endpoint except health and metrics.
    pub query_token: Option<String>,
}

impl std::fmt::Debug for Auth {
    // Tokens stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ingest_token", &self.ingest_token.as_ref().map(|_| "<set>"))
            .field("query_token", &self.query_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Paths that write profiles.
const INGEST_PATHS: &[&str] = &[
    "/ingest",
    "/pyroscope/ingest",
    "/push.v1.PusherService/Push",
    crate::ingest::otlp::HTTP_PATH,
    crate::ingest::otlp::GRPC_EXPORT_PATH,
];

/// Paths that never need a token: liveness, readiness and the Prometheus scrape.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

impl Auth {
    /// Empty tokens count as unset, so `KILN_INGEST_TOKEN=` does not lock everyone out.
    pub fn new(ingest_token: Option<String>, query_token: Option<String>) -> Auth {
        Auth {
            ingest_token: ingest_token.filter(|t| !t.is_empty()),
            query_token: query_token.filter(|t| !t.is_empty()),
        }
    }

    /// The token `path` needs, if any.
    fn required_for(&self, path: &str) -> Option<&str> {
        if OPEN_PATHS.contains(&path) {
            None
        } else if INGEST_PATHS.contains(&path) {
            self.ingest_token.as_deref()
        } else {
            self.query_token.as_deref()
        }
    }
}

/// The middleware: passes requests that carry the token their path needs, answers 401 to others.
pub async fn require_token(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let Some(expected) = auth.required_for(request.uri().path()) else {
        return next.run(request).await;
    };
    let refusal = match presented_token(request.headers()) {
        Some(token) if same_bytes(token.as_bytes(), expected.as_bytes()) => return next.run(request).await,
        Some(_) => unauthorized("invalid token"),
        None => unauthorized(
            "missing credentials: send `Authorization: Bearer <token>` or Basic auth with the token as password",
        ),
    };
    // gRPC clients (OTLP exporters) read a gRPC status, not a JSON body.
    if super::otlp::is_grpc(request.headers()) { super::otlp::as_grpc_status(refusal).await } else { refusal }
}

/// The token in `Authorization`: a Bearer token, or a Basic password.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_user, password) = decoded.split_once(':')?;
        Some(password.to_string())
    } else {
        None
    }
}

/// Equality that takes as long for a near miss as for a wild guess: the length is compared
/// first (it is not secret), then every byte is looked at whatever the earlier ones were.
fn same_bytes(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    let difference = presented.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

fn unauthorized(message: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response();
    let headers = response.headers_mut();
    headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kiln\""));
    headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"kiln\", charset=\"UTF-8\""));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_password_are_read() {
        assert_eq!(presented_token(&headers("Bearer s3cret")).as_deref(), Some("s3cret"));
        assert_eq!(presented_token(&headers("bearer  s3cret ")).as_deref(), Some("s3cret"));
        // "agent:s3cret"
        assert_eq!(presented_token(&headers("Basic YWdlbnQ6czNjcmV0")).as_deref(), Some("s3cret"));
        // ":s3cret", no user name
        assert_eq!(presented_token(&headers("Basic OnMzY3JldA==")).as_deref(), Some("s3cret"));
        assert_eq!(presented_token(&headers("Basic !!!")), None);
        assert_eq!(presented_token(&headers("Digest x")), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abd", b"abc"));
        assert!(!same_bytes(b"xbc", b"abc"));
        assert!(!same_bytes(b"ab", b"abc"));
        assert!(!same_bytes(b"", b"abc"));
    }

    #[test]
    fn paths_map_to_tokens() {
        let auth = Auth::new(Some("in".into()), Some("out".into()));
        assert_eq!(auth.required_for("/ingest"), Some("in"));
        assert_eq!(auth.required_for("/push.v1.PusherService/Push"), Some("in"));
        assert_eq!(auth.required_for("/v1development/profiles"), Some("in"));
        assert_eq!(
            auth.required_for("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"),
            Some("in")
        );
        assert_eq!(auth.required_for("/render"), Some("out"));
        assert_eq!(auth.required_for("/"), Some("out"));
        assert_eq!(auth.required_for("/metrics"), None);
        assert_eq!(Auth::new(Some(String::new()), None).required_for("/ingest"), None);
    }
}
