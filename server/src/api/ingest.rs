//! `POST /ingest` (also at `/pyroscope/ingest`): the HTTP side of [`crate::ingest`]. The
//! handler reads the tenant, the idempotency key and the query string, counts the request for
//! `/metrics`, and answers what [`ingest::ingest`] decoded and stored, or its error's status.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};

use super::{AppError, AppState, Tenant, idempotency_key};
use crate::ingest::{self, IngestParams, Sink};
use crate::work::UploadHold;

/// What ingest needs of the state: the store, the counters and the limits.
pub(super) fn sink(state: &AppState) -> Sink<'_> {
    Sink { store: &state.store, metrics: &state.metrics, limits: &state.limits }
}

/// `POST /ingest`.
pub async fn ingest(
    State(state): State<AppState>,
    tenant: Tenant,
    params: Result<Query<IngestParams>, QueryRejection>,
    hold: Option<Extension<UploadHold>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let body = body.map_err(body_rejection)?;
    state.metrics.ingest_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let result = ingest_inner(&state, &tenant, params, hold.map(|Extension(h)| h), &headers, body).await;
    match &result {
        Ok(_) => state.metrics.ingest_uploads.fetch_add(1, Ordering::Relaxed),
        Err(_) => state.metrics.ingest_errors.fetch_add(1, Ordering::Relaxed),
    };
    result
}

/// A body that could not be read, in Kiln's error shape: over `--max-body-bytes` is 413.
pub fn body_rejection(e: BytesRejection) -> AppError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(format!(
            "the request body is larger than the limit (--max-body-bytes, KILN_MAX_BODY_BYTES): {}",
            e.body_text()
        )),
        _ => AppError::bad_request(e.body_text()),
    }
}

async fn ingest_inner(
    state: &AppState,
    tenant: &Tenant,
    params: Result<Query<IngestParams>, QueryRejection>,
    hold: Option<UploadHold>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    let Query(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let key = idempotency_key(headers)?.map(|k| tenant.scoped_key("ingest", &k));
    ingest::ingest(sink(state), &tenant.0, key, &params, hold, headers, &body).await?;
    Ok(StatusCode::OK)
}
