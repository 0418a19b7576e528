//! One error type for every HTTP endpoint: a status and a JSON body, decided in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What went wrong, as the client needs to hear it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (a parameter, a line, a field): 400.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// Where (line, parameter), when known.
        detail: Option<Value>,
    },
    /// Nothing by that name (a page-data request no page makes): 404.
    #[error("{0}")]
    NotFound(String),
    /// A body or decompressed body over a limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// A content type or encoding Kiln does not read: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but unusable (e.g. a profile with no samples of any known type): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The server cannot take this now but will later (low on disk): 503 with `Retry-After`
    /// (seconds).
    #[error("{message}")]
    Unavailable {
        /// What is wrong and what to do.
        message: String,
        /// Seconds the client should wait before retrying.
        retry_after: u64,
    },
    /// Something on the server's side (storage): 500, details only in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A 400 with just a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest { message: message.into(), detail: None }
    }

    /// A 400 with a structured detail.
    pub fn bad_request_with(message: impl Into<String>, detail: Value) -> Self {
        AppError::BadRequest { message: message.into(), detail: Some(detail) }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::storage::StorageError> for AppError {
    fn from(e: crate::storage::StorageError) -> Self {
        match e {
            // Transient: published blocks free log segments, and the operator may free space.
            // 503 with Retry-After rather than 507: clients (and `kiln upload`) treat it as
            // "try again later", which is what it is.
            low @ crate::storage::StorageError::LowDisk { .. } => {
                AppError::Unavailable { message: low.to_string(), retry_after: 60 }
            }
            // Cluster mode: the shared log did not take the upload, so nothing was stored;
            // the log's client reconnects by itself.
            log @ crate::storage::StorageError::Log(_) => {
                AppError::Unavailable { message: log.to_string(), retry_after: 5 }
            }
            crate::storage::StorageError::TooLarge(message) => AppError::TooLarge(message),
            e => AppError::Internal(e.to_string()),
        }
    }
}

impl From<crate::query::MergeError> for AppError {
    fn from(e: crate::query::MergeError) -> Self {
        match e {
            crate::query::MergeError::Storage(e) => e.into(),
            crate::query::MergeError::TooLarge(e) => e.into(),
            crate::query::MergeError::Cancelled(e) => e.into(),
        }
    }
}

/// A query over a limit is well-formed but not served as asked: 422, saying how to narrow it.
impl From<crate::query::TooLarge> for AppError {
    fn from(e: crate::query::TooLarge) -> Self {
        AppError::Unprocessable(e.0)
    }
}

impl From<crate::ingest::IngestError> for AppError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError;
        use kiln_model::budget::Exhausted;
        match e {
            IngestError::Malformed { message, detail } => AppError::BadRequest { message, detail },
            IngestError::Refused { message, detail } => AppError::BadRequest { message, detail: Some(detail) },
            IngestError::Unprocessable(message) => AppError::Unprocessable(message),
            IngestError::Storage(e) => e.into(),
            IngestError::TooLarge(message) => AppError::TooLarge(message),
            IngestError::UnsupportedEncoding(message) => AppError::UnsupportedMediaType(message),
            IngestError::OverBudget(exhausted) => {
                let flag = match exhausted {
                    Exhausted::Frames { .. } => "--max-frames-per-kib, KILN_MAX_FRAMES_PER_KIB",
                    Exhausted::Nodes { .. } => "--max-nodes-per-kib, KILN_MAX_NODES_PER_KIB",
                };
                AppError::Unprocessable(format!(
                    "{exhausted}: refused; the limit is set by {flag} (and --decode-floor-kib, KILN_DECODE_FLOOR_KIB)"
                ))
            }
            IngestError::Busy(message) => {
                AppError::Unavailable { message, retry_after: super::lane::RETRY_AFTER_BUDGET_SECS }
            }
            e @ IngestError::OutputTooLarge { .. } => AppError::Unprocessable(format!(
                "{e}: refused; the limit is set by --max-decompressed-bytes, KILN_MAX_DECOMPRESSED_BYTES"
            )),
        }
    }
}

/// Seconds a client is asked to wait after a request that ran out of time.
const RETRY_AFTER_TIMEOUT_SECS: u64 = 5;

impl From<crate::work::Cancelled> for AppError {
    fn from(_: crate::work::Cancelled) -> Self {
        AppError::Unavailable {
            message: "the request ran out of time (--request-timeout, KILN_REQUEST_TIMEOUT) and its work was \
                      stopped; narrow the query (a shorter range, fewer series) or retry later"
                .into(),
            retry_after: RETRY_AFTER_TIMEOUT_SECS,
        }
    }
}

impl From<crate::query::QueryError> for AppError {
    fn from(e: crate::query::QueryError) -> Self {
        AppError::bad_request(e.0)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                json!({ "error": "internal error; see the server log" })
            }
            AppError::BadRequest { message, detail } => json!({ "error": message, "detail": detail }),
            other => json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if let AppError::Unavailable { retry_after, .. } = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*retry_after));
        }
        response
    }
}
