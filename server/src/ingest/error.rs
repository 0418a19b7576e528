//! What can go wrong ingesting a request, one variant per class of answer: the api layer maps
//! each to its status (api/error.rs), so ingest never speaks HTTP.

use kiln_model::budget::Exhausted;
use serde_json::Value;

use crate::storage::StorageError;

/// Why a request could not be decoded or stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request is malformed (a parameter, bad gzip, protobuf, JSON, a dangling index): 400.
    #[error("{message}")]
    Malformed {
        /// What is wrong.
        message: String,
        /// Where (parameter, line, part, profile), when known.
        detail: Option<Value>,
    },
    /// Well-formed, but refused by a per-tenant limit that retrying cannot lift (the active
    /// series limit): 400, so that agents do not retry it. The series that fit were stored.
    #[error("{message}")]
    Refused {
        /// What was refused and what to do.
        message: String,
        /// Which limit, and how much it refused.
        detail: Value,
    },
    /// More bytes than a limit allows, as sent or decompressed: 413.
    #[error("{0}")]
    TooLarge(String),
    /// A content encoding Kiln does not read: 415.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// Well-formed, but it expands to more frames or nodes than its decode budget: 422.
    #[error("{0}")]
    OverBudget(Exhausted),
    /// What the request decompresses to does not fit the in-flight byte budget beside other
    /// requests: 503 with `Retry-After`, like a body refused before it is read.
    #[error("{0}")]
    Busy(String),
    /// Well-formed, but what it decodes to is larger than `limit` bytes (collapsed text): 422.
    #[error("the collapsed profile is larger than {limit} bytes")]
    OutputTooLarge {
        /// The limit, the decompressed-body limit.
        limit: usize,
    },
    /// Well-formed but unusable (a pprof with no samples, a file of no known format): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// Storing what was decoded failed (low disk, I/O).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IngestError {
    /// A 400 with just a message.
    pub fn malformed(message: impl Into<String>) -> Self {
        IngestError::Malformed { message: message.into(), detail: None }
    }

    /// A 400 with a structured detail.
    pub fn malformed_with(message: impl Into<String>, detail: Value) -> Self {
        IngestError::Malformed { message: message.into(), detail: Some(detail) }
    }
}

impl From<Exhausted> for IngestError {
    fn from(e: Exhausted) -> Self {
        IngestError::OverBudget(e)
    }
}
