//! `POST /api/collapse?format=auto|pprof|speedscope|perf_script|…`: a profile file in, its tree out in
//! the compact binary format. Stores nothing: it is how the viewer opens local files whose
//! format the browser does not parse itself. The formats are those of
//! [`kiln_model::formats::FORMATS`], as for `/ingest`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use kiln_model::codec;
use serde::Deserialize;

use super::{AppError, AppState};
use crate::ingest;

/// `?format=`.
#[derive(Debug, Deserialize)]
pub struct CollapseParams {
    format: Option<String>,
}

/// Reads the body as `format` (default `auto`) and answers the tree, unit in `x-kiln-units`.
pub async fn collapse(
    State(state): State<AppState>,
    Query(params): Query<CollapseParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(super::ingest::body_rejection)?;
    let format = params.format.filter(|f| !f.is_empty()).unwrap_or_else(|| "auto".into());
    let limits = state.limits;
    let (tree, units) = tokio::task::spawn_blocking(move || ingest::read_profile(&body, &headers, &format, &limits))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok((
        [(header::CONTENT_TYPE, codec::CONTENT_TYPE.to_string()), (HeaderName::from_static("x-kiln-units"), units)],
        codec::encode(&tree),
    )
        .into_response())
}
