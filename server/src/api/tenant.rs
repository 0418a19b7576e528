//! The request's tenant and idempotency key, read from headers in one place.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use kiln_model::tenant::{TENANT_HEADER, tenant_from_header};
use serde_json::json;

use super::AppError;
use crate::ingest::MAX_IDEMPOTENCY_KEY_LEN;

/// The tenant named by `X-Scope-OrgID` (the default tenant without it); an invalid id is a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

impl Tenant {
    /// Reads the tenant from request headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<Tenant, AppError> {
        tenant_from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
            .map(Tenant)
            .map_err(|e| AppError::bad_request_with(e, json!({ "header": "X-Scope-OrgID" })))
    }

    /// An idempotency key scoped to this tenant and to one protocol, so that neither two
    /// tenants nor an `/ingest` key and a push id can collide.
    pub fn scoped_key(&self, protocol: &str, key: &str) -> String {
        crate::ingest::scoped_key(&self.0, protocol, key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Tenant::from_headers(&parts.headers)
    }
}

/// The `Idempotency-Key` header, if sent: printable ASCII, at most 256 bytes.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |why: &str| {
        AppError::bad_request_with(format!("Idempotency-Key {why}"), json!({ "header": "Idempotency-Key" }))
    };
    let text = value.to_str().map_err(|_| bad("must be printable ASCII"))?.trim();
    // Structured-field strings arrive quoted (`"abc"`); the key is what is inside.
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if text.is_empty() {
        return Err(bad("is empty"));
    }
    if text.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(bad(&format!("is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes")));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be printable ASCII without spaces"));
    }
    Ok(Some(text.to_string()))
}
