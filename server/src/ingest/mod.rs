//! Ingest: turn what agents and tools send into [`Upload`]s for the store.
//!
//! `POST /ingest` (Pyroscope's legacy API, also at `/pyroscope/ingest`) reads its series from the
//! `name` parameter and its samples from the body in the format `format` names. Each wire format
//! has its own module; all of them end in a [`kiln_model::CallTree`].

mod body;
mod collapse;
mod params;

use axum::body::Bytes;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{HeaderMap, StatusCode};
use kiln_model::folded::{self, LineFormat, ParseLimits};
use serde_json::json;
use std::sync::atomic::Ordering;

use crate::api::{AppError, AppState};
use crate::storage::Upload;

pub use params::{IngestParams, series_from_name};

/// Limits on what one upload may cost.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Request body, as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Body after decompression: a gzip bomb gets a 413, not an OOM.
    pub max_decompressed_bytes: usize,
    /// Frames kept per stack (deeper stacks lose their leaf end).
    pub max_stack_depth: usize,
    /// Longest accepted folded line.
    pub max_line_bytes: usize,
    /// Labels per series.
    pub max_labels: usize,
    /// Length of a label name or value.
    pub max_label_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_stack_depth: 1024,
            max_line_bytes: 4 << 20,
            max_labels: 64,
            max_label_bytes: 1024,
        }
    }
}

/// The wire formats `/ingest` reads, as users spell them in `format=`.
pub const FORMATS: &[&str] =
    &["folded", "collapsed", "lines", "perf_script", "dtrace", "sample", "vtune", "vsprof", "ghcprof", "guess"];

/// `POST /ingest`.
pub async fn ingest(
    State(state): State<AppState>,
    params: Result<Query<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    state.metrics.ingest_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let result = ingest_inner(&state, params, &headers, body).await;
    match &result {
        Ok(_) => state.metrics.ingest_uploads.fetch_add(1, Ordering::Relaxed),
        Err(_) => state.metrics.ingest_errors.fetch_add(1, Ordering::Relaxed),
    };
    result
}

async fn ingest_inner(
    state: &AppState,
    params: Result<Query<IngestParams>, QueryRejection>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    let Query(params) = params.map_err(|e| AppError::bad_request(format!("bad query string: {e}")))?;
    let limits = state.limits;
    let meta = params.to_meta(&limits, crate::timespec::now_unix())?;
    let body = body::decode(&body, headers, &limits)?;
    let format = params.format.as_deref().unwrap_or("folded");
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    let tree = match format {
        "folded" | "collapsed" => parse_folded(&body, LineFormat::Counted, parse_limits)?,
        "lines" => parse_folded(&body, LineFormat::Lines, parse_limits)?,
        raw if collapse::is_raw_format(raw) => {
            let collapsed = collapse::collapse(raw, &body)?;
            parse_folded(&collapsed, LineFormat::Counted, parse_limits)?
        }
        other => {
            return Err(AppError::bad_request_with(
                format!("unknown format `{other}`; supported: {}", FORMATS.join(", ")),
                json!({ "parameter": "format", "supported": FORMATS }),
            ));
        }
    };
    if tree.is_empty() {
        // Agents send empty profiles when nothing ran; that is a success with nothing to keep.
        return Ok(StatusCode::OK);
    }
    state.store.append(vec![Upload { meta, tree: tree.to_flat() }]).await?;
    Ok(StatusCode::OK)
}

fn parse_folded(body: &[u8], format: LineFormat, limits: ParseLimits) -> Result<kiln_model::CallTree, AppError> {
    folded::parse(body, format, limits).map_err(|e| {
        AppError::bad_request_with(format!("folded stacks, {e}"), json!({ "line": e.line, "reason": e.reason }))
    })
}
