//! OTLP profiles on Kiln's listener: the HTTP side of [`crate::ingest::otlp`].
//!
//! - gRPC `ProfilesService/Export`: tonic's generated service (from `opentelemetry-proto`),
//!   mounted on the router like any route, so h2c, auth, the in-flight budget and the heavy lane
//!   apply to it as to every upload. gzip is accepted, and messages may be as large as Kiln's
//!   decompressed-body limit (tonic's default is 4 MiB; the eBPF profiler sends more for a busy
//!   host).
//! - OTLP/HTTP `POST /v1development/profiles`: protobuf or OTLP/JSON, gzipped or not; 415 for
//!   other content types.
//!
//! Both answer an `ExportProfilesServiceResponse` whose `partial_success` counts the profiles
//! refused on their own; a request that cannot be decoded, or whose dictionary is broken, is
//! refused whole (400, gRPC `INVALID_ARGUMENT`) and nothing of it is stored. Tenants come from
//! `X-Scope-OrgID` (gRPC metadata included), tokens as on every ingest path.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use prost_otlp::Message;
use serde_json::json;
use tonic::codec::CompressionEncoding;

use super::ingest::{body_rejection, sink};
use super::{AppError, AppState, Tenant};
use crate::ingest::otlp::{self, Codec, Decoded, ExportProfilesServiceRequest, ExportProfilesServiceResponse};
use crate::work::UploadHold;

/// The gRPC service, ready to mount on the router.
pub fn grpc_service(state: AppState) -> ProfilesServiceServer<GrpcExport> {
    let limit = state.limits.max_decompressed_bytes;
    ProfilesServiceServer::new(GrpcExport { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

/// `ProfilesService` over Kiln's state.
pub struct GrpcExport {
    state: AppState,
}

#[tonic::async_trait]
impl ProfilesService for GrpcExport {
    async fn export(
        &self,
        request: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        let state = &self.state;
        let (metadata, extensions, request) = request.into_parts();
        // The decoded message's size, walked once: what is counted, held and granted.
        let size = request.encoded_len() as u64;
        state.metrics.ingest_bytes.fetch_add(size, Ordering::Relaxed);
        let hold = extensions.get::<UploadHold>().cloned();
        let result = async {
            // tonic decompressed the message; the in-flight budget holds what it came to.
            let compressed = metadata.get("grpc-encoding").is_some_and(|e| e != "identity");
            if hold.as_ref().is_some_and(|h| compressed && !h.cover_decompressed(size)) {
                return Err(AppError::Unavailable {
                    message: "the server is busy decoding other uploads: this request decompresses to more than the \
                              in-flight budget has left (--max-inflight-bytes, KILN_MAX_INFLIGHT_BYTES)"
                        .into(),
                    retry_after: super::lane::RETRY_AFTER_BUDGET_SECS,
                });
            }
            let tenant = Tenant::from_headers(&metadata.into_headers())?;
            let mut budget = state.limits.budget().holding(hold);
            // What tonic decoded is granted as the HTTP path grants the bytes it reads.
            budget.decode.grant(size);
            Ok::<_, AppError>(otlp::export(sink(state), &tenant.0, &request, &state.otlp, budget).await?)
        }
        .await;
        count(state, &result);
        match result {
            Ok(decoded) => Ok(tonic::Response::new(response(&decoded))),
            Err(e) => Err(grpc_status(e)),
        }
    }
}

fn count(state: &AppState, result: &Result<Decoded, AppError>) {
    match result {
        Ok(_) => state.metrics.ingest_uploads.fetch_add(1, Ordering::Relaxed),
        Err(_) => state.metrics.ingest_errors.fetch_add(1, Ordering::Relaxed),
    };
}

fn response(decoded: &Decoded) -> ExportProfilesServiceResponse {
    ExportProfilesServiceResponse { partial_success: decoded.partial_success() }
}

/// The gRPC code of an HTTP status, as OTLP clients read it: `INVALID_ARGUMENT` is not
/// retried, `UNAVAILABLE` and `RESOURCE_EXHAUSTED` are.
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        status if status.is_client_error() => tonic::Code::InvalidArgument,
        _ => tonic::Code::Internal,
    }
}

/// What a client is told of an error (the server's own failures only in the log).
fn client_message(e: &AppError) -> String {
    match e {
        AppError::Internal(detail) => {
            tracing::error!(%detail, "OTLP export failed");
            "internal error; see the server log".to_string()
        }
        other => other.to_string(),
    }
}

fn grpc_status(e: AppError) -> tonic::Status {
    tonic::Status::new(grpc_code(e.status()), client_message(&e))
}

/// Whether a request speaks gRPC.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/grpc"))
}

/// The gRPC route's middleware: refusals made before tonic runs (the in-flight budget, body
/// limits) are answered as gRPC statuses, which gRPC clients read, instead of JSON bodies. A
/// body announced over `--max-body-bytes` is refused here: no extractor of tonic's would.
pub async fn grpc_refusals(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let limit = state.limits.max_body_bytes;
    if declared.is_some_and(|n| n > limit as u64) {
        let message = format!("the request body is larger than {limit} bytes (--max-body-bytes, KILN_MAX_BODY_BYTES)");
        return tonic::Status::resource_exhausted(message).into_http::<axum::body::Body>().into_response();
    }
    let response = next.run(request).await;
    as_grpc_status(response).await
}

/// A refusal in Kiln's JSON shape as a trailers-only gRPC answer with the same meaning (and
/// `Retry-After`); gRPC answers pass unchanged.
pub async fn as_grpc_status(response: Response) -> Response {
    let grpc = is_grpc(response.headers());
    if grpc || response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
    let mut answer = tonic::Status::new(grpc_code(parts.status), message).into_http::<axum::body::Body>();
    if let Some(retry_after) = parts.headers.get(header::RETRY_AFTER) {
        answer.headers_mut().insert(header::RETRY_AFTER, retry_after.clone());
    }
    answer.into_response()
}

/// `POST /v1development/profiles`.
pub async fn export_http(
    State(state): State<AppState>,
    hold: Option<Extension<UploadHold>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    if let Ok(body) = &body {
        state.metrics.ingest_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let codec = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Codec::Protobuf,
        "application/json" => Codec::Json,
        _ => {
            state.metrics.ingest_errors.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::UnsupportedMediaType(format!(
                "Content-Type `{content_type}` is not OTLP; send application/x-protobuf or application/json"
            )));
        }
    };
    let result = async {
        let body = body.map_err(body_rejection)?;
        let tenant = Tenant::from_headers(&headers)?;
        let mut budget = state.limits.budget().holding(hold.map(|Extension(h)| h));
        let request = otlp::read_http(&body, &headers, codec, &mut budget)?;
        Ok::<_, AppError>(otlp::export(sink(&state), &tenant.0, &request, &state.otlp, budget).await?)
    }
    .await;
    count(&state, &result);
    let answer = match result {
        Ok(decoded) => response(&decoded),
        Err(e) => return Ok(http_error(codec, e)),
    };
    Ok(match codec {
        Codec::Protobuf => ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec()).into_response(),
        Codec::Json => {
            let body = match &answer.partial_success {
                // OTLP/JSON writes int64 as a string.
                Some(partial) => json!({ "partialSuccess": {
                    "rejectedProfiles": partial.rejected_profiles.to_string(),
                    "errorMessage": partial.error_message,
                }}),
                None => json!({}),
            };
            ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    })
}

/// An OTLP/HTTP error: the status and `Retry-After` Kiln answers everywhere, with a
/// `google.rpc.Status` body in the request's encoding, as OTLP/HTTP clients read it (in JSON
/// beside Kiln's own `error` and `detail`).
fn http_error(codec: Codec, e: AppError) -> Response {
    let (status, code, message) = (e.status(), grpc_code(e.status()) as i32, client_message(&e));
    let mut response = match codec {
        Codec::Protobuf => {
            let mut body = Vec::new();
            prost_otlp::encoding::int32::encode(1, &code, &mut body);
            prost_otlp::encoding::string::encode(2, &message, &mut body);
            (status, [(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
        }
        Codec::Json => {
            let detail = match &e {
                AppError::BadRequest { detail, .. } => detail.clone(),
                _ => None,
            };
            let body = json!({ "code": code, "message": message, "error": message, "detail": detail });
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    };
    if let AppError::Unavailable { retry_after, .. } = &e {
        response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(*retry_after));
    }
    response
}
