//! What can go wrong decoding a body, one variant per class of answer: the api layer maps each
//! to its status (api/error.rs), so decoders never speak HTTP.

use kiln_model::budget::Exhausted;
use serde_json::Value;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is malformed (bad gzip, protobuf, JSON, a dangling index): 400.
    #[error("{message}")]
    Malformed {
        /// What is wrong.
        message: String,
        /// Where (line, part, profile), when known.
        detail: Option<Value>,
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
}

impl DecodeError {
    /// A 400 with just a message.
    pub fn malformed(message: impl Into<String>) -> Self {
        DecodeError::Malformed { message: message.into(), detail: None }
    }

    /// A 400 with a structured detail.
    pub fn malformed_with(message: impl Into<String>, detail: Value) -> Self {
        DecodeError::Malformed { message: message.into(), detail: Some(detail) }
    }
}

impl From<Exhausted> for DecodeError {
    fn from(e: Exhausted) -> Self {
        DecodeError::OverBudget(e)
    }
}
