//! Where each request's work runs, and the in-flight byte budget of uploads.
//!
//! Queries and pages run their handler on the heavy lane ([`crate::work::heavy`]): merging
//! and encoding never hold an async worker, so `/healthz` and small uploads answer while
//! heavy queries run. Uploads are read here first: their bytes, and what they decompress to as
//! far as the body tells, are held in the in-flight budget while the handler runs (503 with
//! `Retry-After` beyond it); bodies under [`INLINE_BODY_BYTES`] are decoded inline, larger
//! ones on the heavy lane.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppError, AppState};
use crate::ingest::GZIP_MAGIC;
use crate::work::{self, Cancel, INLINE_BODY_BYTES, InflightBudget, UploadHold};

/// Seconds an upload refused for the in-flight budget is asked to wait: decoding takes
/// milliseconds, so the budget frees up quickly.
pub(super) const RETRY_AFTER_BUDGET_SECS: u64 = 2;

/// Runs the handler on the heavy lane.
pub async fn heavy(request: Request, next: Next) -> Response {
    work::heavy().run_future(next.run(request)).await
}

/// The body limit an upload route reads within, and the setting that names it in a 413.
#[derive(Clone, Copy)]
struct BodyLimit {
    bytes: usize,
    setting: &'static str,
}

/// What `/ingest` and the other uploads may send (`--max-body-bytes`).
pub const UPLOAD_LIMIT_SETTING: &str = "--max-body-bytes, KILN_MAX_BODY_BYTES";
/// What `/api/collapse` may be sent (`--max-collapse-body-bytes`).
pub const COLLAPSE_LIMIT_SETTING: &str =
    "--max-collapse-body-bytes, KILN_MAX_COLLAPSE_BODY_BYTES, or --max-body-bytes when larger";

/// Reads an upload's body, holds its bytes in the in-flight budget while the handler runs,
/// and runs the handler inline or on the heavy lane by the body's size.
pub async fn upload(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = BodyLimit { bytes: state.limits.max_body_bytes, setting: UPLOAD_LIMIT_SETTING };
    read_upload(state, limit, request, next).await
}

/// [`upload`] for `/api/collapse`, within its own body limit: the Open page's files, parsed
/// and never stored. Held in the same in-flight budget and run on the same heavy lane, so
/// what a big file costs stays bounded as any upload's does.
pub async fn collapse_upload(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = BodyLimit { bytes: state.limits.collapse_body_bytes(), setting: COLLAPSE_LIMIT_SETTING };
    read_upload(state, limit, request, next).await
}

async fn read_upload(state: AppState, limit: BodyLimit, request: Request, next: Next) -> Response {
    let limits = state.limits;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.bytes as u64) {
        // The handler refuses it without reading it, in its endpoint's own error shape.
        return next.run(request).await;
    }
    // What the client says it sends is held before reading it, so that many large bodies
    // arriving at once stay inside the budget too, not only their decoding.
    let Some(mut reservation) = state.inflight.try_reserve(declared.unwrap_or(0)) else {
        let refusal = over_budget(&state.inflight).into_response();
        discard_body(request.into_body(), limit.bytes).await;
        return refusal;
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit.bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return unreadable_body(e, limit).into_response(),
    };
    let decompressed = decompressed_estimate(&bytes, limits.max_decompressed_bytes) as u64;
    let held = (bytes.len() as u64).saturating_add(decompressed);
    if !reservation.try_grow(held.saturating_sub(declared.unwrap_or(0))) {
        return over_budget(&state.inflight).into_response();
    }
    let inline = bytes.len() < INLINE_BODY_BYTES;
    // The decoder holds what it finds inside the body (gzipped profiles in a push or a
    // multipart part) in the same reservation, beyond the estimate held here.
    // Only an outer gzip layer's estimate stands for decompressed output; a plain body's copy
    // is held too, but the decoder's gunzips start counting from nothing.
    let prepaid = if bytes.starts_with(&GZIP_MAGIC) { decompressed } else { 0 };
    let hold = UploadHold::new(reservation, prepaid);
    parts.extensions.insert(hold.clone());
    let request = Request::from_parts(parts, Body::from(bytes));
    let run = async move {
        let response = next.run(request).await;
        drop(hold);
        response
    };
    if inline { run.await } else { work::heavy().run_future(run).await }
}

/// What a body decompresses to, as far as it tells without decompressing: a gzip stream ends
/// with its (last member's) uncompressed size, exact for what agents send; at most the
/// decompression limit, which holds whatever the trailer claims. Other bodies are copied once
/// by the decoders.
fn decompressed_estimate(body: &[u8], max_decompressed: usize) -> usize {
    // Header (10 bytes) and trailer (8 bytes): anything shorter is not a whole gzip stream.
    const GZIP_MIN_LEN: usize = 18;
    if !body.starts_with(&GZIP_MAGIC) || body.len() < GZIP_MIN_LEN {
        return body.len();
    }
    let trailer: [u8; 4] = body[body.len() - 4..].try_into().expect("four bytes");
    let announced = u32::from_le_bytes(trailer) as usize;
    announced.max(body.len()).min(max_decompressed.max(body.len()))
}

/// How long a refused upload's body is read and thrown away before the refusal is sent.
const DISCARD_BODY_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a refused upload's body (up to `max_bytes`, for at most [`DISCARD_BODY_TIME`]) and
/// throws it away, holding nothing, so that the client, still sending, reads the refusal: a
/// connection closed on unread bytes is reset, and the client sees a broken pipe instead of
/// the 503 and its `Retry-After` (the lingering close web servers do for the same reason).
async fn discard_body(body: Body, max_bytes: usize) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0usize;
    let drain = async {
        while read <= max_bytes {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_BODY_TIME, drain).await;
}

fn unreadable_body(e: axum::Error, limit: BodyLimit) -> AppError {
    let e = e.into_inner();
    if e.is::<http_body_util::LengthLimitError>() {
        return AppError::TooLarge(format!(
            "the request body is larger than {} bytes ({})",
            limit.bytes, limit.setting
        ));
    }
    AppError::bad_request(format!("the request body could not be read: {e}"))
}

fn over_budget(budget: &InflightBudget) -> AppError {
    tracing::warn!(
        in_flight = budget.in_flight(),
        limit = budget.limit(),
        "in-flight byte budget full; upload refused"
    );
    AppError::Unavailable {
        message: format!(
            "the server is busy decoding other uploads ({} bytes in flight, budget {} bytes: --max-inflight-bytes, \
             KILN_MAX_INFLIGHT_BYTES); retry after {RETRY_AFTER_BUDGET_SECS} s",
            budget.in_flight(),
            budget.limit()
        ),
        retry_after: RETRY_AFTER_BUDGET_SECS,
    }
}

/// A handler's [`Cancel`]: the one the edge put in the request (the request's deadline, and
/// cancelled when the client goes away), or one that never fires for requests that did not
/// come through the edge (tests with `oneshot`).
impl<S: Send + Sync> FromRequestParts<S> for Cancel {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Cancel>().cloned().unwrap_or_else(Cancel::never))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    #[test]
    fn gzip_bodies_are_counted_at_their_announced_size_within_the_limit() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&[b'a'; 100_000]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 1000);
        assert_eq!(decompressed_estimate(&gz, 1 << 20), 100_000);
        assert_eq!(decompressed_estimate(&gz, 50_000), 50_000, "never more than the decompression limit");
        assert_eq!(decompressed_estimate(b"main;work 1\n", 1 << 20), 12);
        let mut liar = gz.clone();
        let n = liar.len();
        liar[n - 4..].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decompressed_estimate(&liar, 1 << 20), liar.len(), "at least the body itself");
    }
}
