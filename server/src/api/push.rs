//! `POST /push.v1.PusherService/Push`: the HTTP side of [`crate::ingest::push`]. The handler
//! picks the codec from `Content-Type`, reads the tenant, counts the request for `/metrics`, and
//! answers errors in the Connect shape `{"code": "...", "message": "..."}`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ingest::{body_rejection, sink};
use super::{AppError, AppState, Tenant};
use crate::ingest::push::{self, Codec};
use crate::work::UploadHold;

/// An [`AppError`] answered in the Connect error shape.
#[derive(Debug)]
pub struct ConnectError(pub AppError);

impl From<AppError> for ConnectError {
    fn from(e: AppError) -> Self {
        ConnectError(e)
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "resource_exhausted",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::INTERNAL_SERVER_ERROR => "internal",
            _ => "invalid_argument",
        };
        let message = match &self.0 {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "push failed");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(json!({ "code": code, "message": message }))).into_response();
        if let AppError::Unavailable { retry_after, .. } = &self.0 {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*retry_after));
        }
        response
    }
}

/// `POST /push.v1.PusherService/Push`.
pub async fn push(
    State(state): State<AppState>,
    hold: Option<Extension<UploadHold>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ConnectError> {
    if let Ok(body) = &body {
        state.metrics.ingest_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    }
    let result = push_inner(&state, hold.map(|Extension(h)| h), &headers, body).await;
    match &result {
        Ok(_) => state.metrics.ingest_uploads.fetch_add(1, Ordering::Relaxed),
        Err(_) => state.metrics.ingest_errors.fetch_add(1, Ordering::Relaxed),
    };
    let codec = result?;
    Ok(match codec {
        Codec::Proto => ([(header::CONTENT_TYPE, "application/proto")], Bytes::new()).into_response(),
        Codec::Json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
    })
}

async fn push_inner(
    state: &AppState,
    hold: Option<UploadHold>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Codec, AppError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let codec = match media.as_str() {
        "application/proto" => Codec::Proto,
        "application/json" => Codec::Json,
        _ => {
            return Err(AppError::UnsupportedMediaType(format!(
                "Content-Type `{content_type}` is not supported; send application/proto or application/json"
            )));
        }
    };
    let body = body.map_err(body_rejection)?;
    let tenant = Tenant::from_headers(headers)?;
    push::push(sink(state), &tenant.0, codec, hold, headers, &body).await?;
    Ok(codec)
}
