//! Pyroscope's Connect query API, so that Grafana's Pyroscope data source, the Profiles
//! Drilldown app and Pyroscope's own UI read Kiln: `POST /querier.v1.QuerierService/<Method>`
//! and `POST /settings.v1.SettingsService/<Method>`, Connect unary in `application/proto` or
//! `application/json` (protojson), gzip both ways. `server/API.md` ("Grafana and Pyroscope
//! clients") lists the methods; `shared/specs/pyroscope-connect-api.md` has the wire facts.
//!
//! Tenancy and the query token are those of `/render`: the tenant from `X-Scope-OrgID`
//! ([`Tenant`]), the token checked by the router's `auth::require_token` for every path that is
//! not an upload. The methods run Kiln's own selection, merge and truncation
//! ([`crate::query`], [`kiln_model::truncate`]); only the encodings are new.

mod flamegraph;
mod json;
pub mod messages;
mod querier;
mod settings;

use std::future::Future;
use std::io::{Read, Write};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde_json::json;

use self::messages::{FromJson, ToJson};
use super::{AppError, AppState, Tenant};
use crate::work::Cancel;

/// The largest request message, compressed or not: query requests are a few hundred bytes,
/// settings values a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Answers at least this large are gzipped for clients that accept it.
const GZIP_RESPONSE_FROM: usize = 1024;

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400.
    InvalidArgument,
    /// 404.
    NotFound,
    /// 429.
    ResourceExhausted,
    /// 501.
    Unimplemented,
    /// 503.
    Unavailable,
    /// 504.
    DeadlineExceeded,
    /// 500.
    Internal,
}

impl Code {
    fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unimplemented => "unimplemented",
            Code::Unavailable => "unavailable",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status the Connect protocol gives the code.
    fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A Connect error: `{"code": "...", "message": "..."}` with the code's HTTP status.
#[derive(Debug)]
pub struct ConnectError {
    code: Code,
    message: String,
    /// Connect answers an unsupported content type with 415 rather than the code's status.
    status: Option<StatusCode>,
}

impl ConnectError {
    /// An error with `code`.
    pub fn new(code: Code, message: impl Into<String>) -> ConnectError {
        ConnectError { code, message: message.into(), status: None }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> ConnectError {
        ConnectError::new(Code::InvalidArgument, message)
    }

    /// `unimplemented`.
    pub fn unimplemented(message: impl Into<String>) -> ConnectError {
        ConnectError::new(Code::Unimplemented, message)
    }
}

impl From<AppError> for ConnectError {
    fn from(e: AppError) -> Self {
        let code = match &e {
            AppError::BadRequest { .. } | AppError::UnsupportedMediaType(_) => Code::InvalidArgument,
            AppError::NotFound(_) => Code::NotFound,
            // Over a limit (body size, query cost): narrowing the request is what helps.
            AppError::TooLarge(_) | AppError::Unprocessable(_) => Code::ResourceExhausted,
            AppError::Unavailable { .. } => Code::Unavailable,
            AppError::Internal(detail) => {
                tracing::error!(%detail, "connect request failed");
                return ConnectError::new(Code::Internal, "internal error; see the server log");
            }
        };
        let message = match &e {
            AppError::BadRequest { message, .. } => message.clone(),
            other => other.to_string(),
        };
        ConnectError::new(code, message)
    }
}

impl From<crate::query::MergeError> for ConnectError {
    fn from(e: crate::query::MergeError) -> Self {
        match e {
            crate::query::MergeError::Cancelled(_) => ConnectError::new(
                Code::DeadlineExceeded,
                "the request ran out of time (its Connect-Timeout-Ms, or --request-timeout); narrow the query",
            ),
            other => AppError::from(other).into(),
        }
    }
}

impl From<crate::query::QueryError> for ConnectError {
    fn from(e: crate::query::QueryError) -> Self {
        ConnectError::invalid(e.0)
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(self.code.status());
        (status, axum::Json(json!({ "code": self.code.name(), "message": self.message }))).into_response()
    }
}

/// How a call's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Proto,
    Json,
}

/// One unary call: its request message's bytes (gzip removed) and how to answer.
struct Call {
    encoding: Encoding,
    body: Vec<u8>,
    gzip_response: bool,
}

impl Call {
    fn read(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Call, ConnectError> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let encoding = match media.as_str() {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => Encoding::Proto,
            "application/json" => Encoding::Json,
            other => {
                return Err(ConnectError {
                    code: Code::Unimplemented,
                    message: format!(
                        "Content-Type `{other}` is not served; Connect unary calls send application/proto or \
                         application/json (streaming is not supported)"
                    ),
                    status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                });
            }
        };
        let body = body.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) => ConnectError::new(
                Code::ResourceExhausted,
                format!("request body is larger than allowed (--max-body-bytes): {e}"),
            ),
            other => ConnectError::invalid(format!("request body could not be read: {other}")),
        })?;
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(too_large());
        }
        let content_encoding =
            headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
        let body = match content_encoding.to_ascii_lowercase().as_str() {
            "" | "identity" => body.to_vec(),
            "gzip" => gunzip(&body)?,
            other => {
                return Err(ConnectError::unimplemented(format!(
                    "Content-Encoding `{other}` is not supported; send gzip or identity"
                )));
            }
        };
        let gzip_response = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.split(';').next().is_some_and(|name| name.trim().eq_ignore_ascii_case("gzip")));
        Ok(Call { encoding, body, gzip_response })
    }

    fn decode<T: Message + Default + FromJson>(&self) -> Result<T, ConnectError> {
        match self.encoding {
            Encoding::Proto => T::decode(self.body.as_slice())
                .map_err(|e| ConnectError::invalid(format!("request is not a valid message: {e}"))),
            Encoding::Json => {
                // An empty body is the empty message; serde_json refuses nesting past 128 levels.
                let value = if self.body.iter().all(u8::is_ascii_whitespace) {
                    serde_json::Value::Object(Default::default())
                } else {
                    serde_json::from_slice(&self.body)
                        .map_err(|e| ConnectError::invalid(format!("request is not valid JSON: {e}")))?
                };
                T::from_json(&value).map_err(ConnectError::invalid)
            }
        }
    }

    fn respond<T: Message + ToJson>(&self, message: &T) -> Response {
        let (content_type, body) = match self.encoding {
            Encoding::Proto => ("application/proto", message.encode_to_vec()),
            Encoding::Json => ("application/json", serde_json::to_vec(&message.to_json()).unwrap_or_default()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let body = if self.gzip_response && body.len() >= GZIP_RESPONSE_FROM {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match gz.write_all(&body).and_then(|()| gz.finish()) {
                Ok(zipped) => {
                    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    zipped
                }
                Err(_) => body,
            }
        } else {
            body
        };
        (StatusCode::OK, headers, body).into_response()
    }

    async fn unary<Req, Resp, F, Fut>(&self, handler: F) -> Result<Response, ConnectError>
    where
        Req: Message + Default + FromJson,
        Resp: Message + ToJson,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, ConnectError>>,
    {
        let request = self.decode::<Req>()?;
        let response = handler(request).await?;
        Ok(self.respond(&response))
    }
}

fn too_large() -> ConnectError {
    ConnectError::new(Code::ResourceExhausted, format!("request message is larger than {MAX_MESSAGE_BYTES} bytes"))
}

/// A gzipped request message, at most [`MAX_MESSAGE_BYTES`] once decompressed.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, ConnectError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ConnectError::invalid(format!("request body is not valid gzip: {e}")))?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

/// The request's deadline, sooner when the client says so in `Connect-Timeout-Ms` (at most
/// 10 digits, as the Connect protocol allows).
fn client_deadline(headers: &HeaderMap, cancel: Cancel) -> Result<Cancel, ConnectError> {
    let Some(value) = headers.get("connect-timeout-ms") else { return Ok(cancel) };
    let text = value.to_str().unwrap_or("").trim();
    let millis = text
        .parse::<u64>()
        .ok()
        .filter(|_| (1..=10).contains(&text.len()))
        .ok_or_else(|| ConnectError::invalid(format!("Connect-Timeout-Ms `{text}` is not 1 to 10 digits")))?;
    Ok(cancel.within(std::time::Duration::from_millis(millis)))
}

/// `POST /querier.v1.QuerierService/{method}`.
pub async fn querier(
    State(state): State<AppState>,
    Path(method): Path<String>,
    cancel: Cancel,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let call = Call::read(&headers, body)?;
        let tenant = Tenant::from_headers(&headers)?;
        let cancel = client_deadline(&headers, cancel)?;
        let q = querier::Querier { state: &state, tenant: &tenant.0, cancel: &cancel };
        match method.as_str() {
            "ProfileTypes" => call.unary(|r| async { q.profile_types(r) }).await,
            "LabelNames" => call.unary(|r| async { q.label_names(r) }).await,
            "LabelValues" => call.unary(|r| async { q.label_values(r) }).await,
            "Series" => call.unary(|r| async { q.series(r) }).await,
            "SelectMergeStacktraces" => call.unary(|r| q.select_merge_stacktraces(r)).await,
            "SelectMergeSpanProfile" => call.unary(|r| async { q.select_merge_span_profile(r) }).await,
            "SelectMergeProfile" => call.unary(|r| q.select_merge_profile(r)).await,
            "SelectSeries" => call.unary(|r| q.select_series(r)).await,
            "Diff" => call.unary(|r| q.diff(r)).await,
            "GetProfileStats" => call.unary(|r| async { q.profile_stats(r) }).await,
            "AnalyzeQuery" => call.unary(|r| async { q.analyze_query(r) }).await,
            "SelectHeatmap" => Err(ConnectError::unimplemented("SelectHeatmap is not served by Kiln")),
            other => {
                Err(ConnectError::new(Code::NotFound, format!("querier.v1.QuerierService has no method `{other}`")))
            }
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /settings.v1.SettingsService/{method}`.
pub async fn settings(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let call = Call::read(&headers, body)?;
        let tenant = Tenant::from_headers(&headers)?;
        let store = &state.store;
        match method.as_str() {
            "Get" => call.unary(|r| settings::get(store, &tenant.0, r)).await,
            "Set" => call.unary(|r| settings::set(store, &tenant.0, r)).await,
            "Delete" => call.unary(|r| settings::delete(store, &tenant.0, r)).await,
            other => {
                Err(ConnectError::new(Code::NotFound, format!("settings.v1.SettingsService has no method `{other}`")))
            }
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Services of Pyroscope Kiln does not serve (`adhocprofiles.v1`, `vcs.v1`): `unimplemented`.
pub async fn unimplemented_service(Path(method): Path<String>) -> Response {
    ConnectError::unimplemented(format!("`{method}`: this Pyroscope service is not served by Kiln")).into_response()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::messages::*;
    use super::*;

    fn call(encoding: Encoding, body: &[u8]) -> Call {
        Call { encoding, body: body.to_vec(), gzip_response: false }
    }

    /// Every request message, decoded from `body`: an answer or an error, never a panic.
    fn decode_all(encoding: Encoding, body: &[u8]) {
        let call = call(encoding, body);
        let _ = call.decode::<ProfileTypesRequest>();
        let _ = call.decode::<LabelNamesRequest>();
        let _ = call.decode::<LabelValuesRequest>();
        let _ = call.decode::<SeriesRequest>();
        let _ = call.decode::<SelectMergeStacktracesRequest>();
        let _ = call.decode::<SelectMergeSpanProfileRequest>();
        let _ = call.decode::<SelectMergeProfileRequest>();
        let _ = call.decode::<SelectSeriesRequest>();
        let _ = call.decode::<DiffRequest>();
        let _ = call.decode::<AnalyzeQueryRequest>();
        let _ = call.decode::<Empty>();
        let _ = call.decode::<SettingMessage>();
        let _ = call.decode::<DeleteSettingsRequest>();
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(Encoding::Proto, &body);
            decode_all(Encoding::Json, &body);
        }

        #[test]
        fn arbitrary_json_fields_never_panic(
            name in prop_oneof![Just("start"), Just("maxNodes"), Just("step"), Just("format"), Just("left"), Just("matchers"), Just("setting"), Just("aggregation")],
            value in prop_oneof![
                Just("1e400".to_string()), Just("-0".to_string()), Just("\"NaN\"".to_string()), Just("[1,\"x\",null]".to_string()),
                Just("{\"callSite\":[{\"name\":3}]}".to_string()), any::<i64>().prop_map(|v| v.to_string()), any::<f64>().prop_map(|v| format!("{v:?}")),
                "[a-z\"{}:]{0,12}",
            ],
        ) {
            decode_all(Encoding::Json, format!("{{\"{name}\":{value}}}").as_bytes());
        }
    }

    #[test]
    fn protojson_reads_numbers_strings_and_both_names() {
        let json = |text: &str| call(Encoding::Json, text.as_bytes());
        let r: SelectMergeStacktracesRequest = json(
            r#"{"profile_typeID":"a:b:c:d:e","labelSelector":"{}","start":"1000","end":2e3,"maxNodes":"16384","format":"PROFILE_FORMAT_PPROF"}"#,
        )
        .decode()
        .unwrap();
        assert_eq!(
            (r.profile_type_id.as_str(), r.start, r.end, r.max_nodes, r.format),
            ("a:b:c:d:e", 1000, 2000, Some(16384), 4)
        );
        let series: SelectSeriesRequest = json(r#"{"step":"15","aggregation":1,"limit":null}"#).decode().unwrap();
        assert_eq!((series.step, series.aggregation, series.limit), (15.0, Some(1), None));
        for bad in [
            r#"{"start":1.5}"#,
            r#"{"start":"x"}"#,
            r#"{"start":true}"#,
            "[]",
            r#"{"step":"Infinity"}"#,
            r#"{"format":"TREE"}"#,
        ] {
            let error = json(bad)
                .decode::<SelectSeriesRequest>()
                .and_then(|_| json(bad).decode::<SelectMergeStacktracesRequest>());
            assert!(error.is_err(), "{bad}");
        }
        assert!(json("").decode::<Empty>().is_ok(), "an empty body is the empty message");
    }

    #[test]
    fn answers_are_protojson_with_int64_strings_and_defaults_left_out() {
        let graph = FlameGraph {
            names: vec!["total".into()],
            levels: vec![Level { values: vec![0, 7, 0, 0] }],
            total: 7,
            max_self: 0,
        };
        assert_eq!(
            graph.to_json(),
            json!({"names": ["total"], "levels": [{"values": ["0", "7", "0", "0"]}], "total": "7"})
        );
        assert_eq!(GetProfileStatsResponse::default().to_json(), json!({}));
        let error = ConnectError::from(AppError::Internal("disk on fire".into())).into_response();
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
