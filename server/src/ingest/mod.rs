//! Ingest: turn what agents and tools send into [`Upload`]s for the store.
//!
//! `POST /ingest` (Pyroscope's legacy API, also at `/pyroscope/ingest`) reads its series from the
//! `name` parameter and its samples from the body in the format `format` names. Each wire format
//! has its own module; all of them end in a [`kiln_model::CallTree`]. A `multipart/form-data`
//! body (the Go agent) carries a pprof in its `profile` part; `format` is then absent or `pprof`.
//!
//! `POST /push.v1.PusherService/Push` ([`push`]) is the Connect endpoint newer agents use.
//!
//! One request is one [`crate::storage::Store::append_once`]: all its series are stored or
//! none, in the tenant `X-Scope-OrgID` names. A request with an `Idempotency-Key` header is
//! stored once: a retry with the same key within the dedupe window answers 200 and changes
//! nothing (push requests use each sample's `ID` the same way).

mod body;
mod collapse;
mod error;
mod multipart;
mod params;
pub mod pprof;
pub mod push;
mod series_limit;
pub mod speedscope;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use kiln_model::budget::DecodeBudget;
use kiln_model::folded::{self, LineFormat, ParseLimits};
use serde_json::json;
use std::sync::atomic::Ordering;

use crate::api::{AppError, AppState, Tenant, idempotency_key};
use crate::storage::{KeyedUploads, Upload};
use crate::timespec::IngestWindow;
use crate::work::UploadHold;

pub use error::DecodeError;
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
    /// The times an upload may be stamped with.
    pub window: IngestWindow,
    /// Active series per tenant (see [`crate::storage::Store::series_beyond_limit`]); uploads
    /// of new series beyond it are refused, the tenant's other series keep being stored.
    pub max_series_per_tenant: usize,
    /// Decode budget: stack frames walked per KiB of (decompressed) body.
    pub frames_per_kib: u64,
    /// Decode budget: call-tree nodes made per KiB of body (each 64 bytes of a frame name kept
    /// in a tree count as a node).
    pub nodes_per_kib: u64,
    /// Decode budget: every request gets this many KiB's worth on top of its size, so that
    /// small bodies are never refused for it.
    pub decode_floor_kib: u64,
}

impl IngestLimits {
    /// A fresh budget for one request.
    pub fn budget(&self) -> RequestBudget {
        RequestBudget {
            decode: DecodeBudget::new(self.frames_per_kib, self.nodes_per_kib, self.decode_floor_kib),
            decompressed_left: self.max_decompressed_bytes,
            max_decompressed: self.max_decompressed_bytes,
            hold: None,
        }
    }
}

impl RequestBudget {
    /// Holds what the request decompresses in `hold`, the request's place in the in-flight
    /// byte budget (none outside an upload route: tests, the fuzz targets).
    pub fn holding(mut self, hold: Option<UploadHold>) -> RequestBudget {
        self.hold = hold;
        self
    }
}

/// What one request may still cost while it is decoded: bytes out of gzip (for all its
/// profiles together: 413 beyond), and frames and nodes (422 beyond).
#[derive(Debug, Clone)]
pub struct RequestBudget {
    /// Frames and nodes, granted per KiB as bytes are decoded.
    pub decode: DecodeBudget,
    decompressed_left: usize,
    max_decompressed: usize,
    /// The request's in-flight bytes, grown as gzipped profiles inside it are decompressed.
    hold: Option<UploadHold>,
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
            window: IngestWindow::default(),
            // Pyroscope's and Mimir's kind of per-tenant default: far above one fleet's
            // applications × types × label sets, far below what exhausts memory.
            max_series_per_tenant: 10_000,
            // Real profiles walk at most a few hundred frames and make at most a few hundred
            // nodes per KiB of pprof (fewer in folded text); these leave several times that.
            frames_per_kib: 4096,
            nodes_per_kib: 1024,
            decode_floor_kib: 256,
        }
    }
}

/// The wire formats `/ingest` reads, as users spell them in `format=`.
pub const FORMATS: &[&str] = &[
    "folded",
    "collapsed",
    "lines",
    "pprof",
    "perf_script",
    "dtrace",
    "sample",
    "vtune",
    "vsprof",
    "ghcprof",
    "guess",
    "speedscope",
];

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
    let store = |uploads: Vec<Upload>| store(state, tenant, key.clone(), uploads);
    let limits = state.limits;
    let meta = params.to_meta(&limits, crate::timespec::now_unix())?;
    let mut budget = limits.budget().holding(hold);
    let body = body::decode(&body, headers, &mut budget)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(boundary) = multipart::boundary(content_type) {
        if !matches!(params.format.as_deref(), None | Some("") | Some("pprof")) {
            return Err(AppError::bad_request_with(
                "a multipart/form-data body carries pprof; drop `format` or set it to `pprof`",
                json!({ "parameter": "format" }),
            ));
        }
        let parts = multipart::parse(&body, &boundary)?;
        let profile = parts
            .iter()
            .find(|p| p.name == "profile")
            .ok_or_else(|| AppError::bad_request("multipart body has no `profile` part"))?;
        let config = match parts.iter().find(|p| p.name == "sample_type_config") {
            Some(part) => sample_type_config(part.data, &mut budget)?,
            None => pprof::SampleTypeConfigs::new(),
        };
        let uploads = pprof_uploads(profile.data, &params, &meta, &config, &limits, &mut budget)?;
        return store(uploads).await;
    }
    let format = params.format.as_deref().unwrap_or_else(|| speedscope::default_format(headers));
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    let tree = match format {
        "folded" | "collapsed" => parse_folded(&body, LineFormat::Counted, parse_limits)?,
        "lines" => parse_folded(&body, LineFormat::Lines, parse_limits)?,
        "pprof" => {
            let config = pprof::SampleTypeConfigs::new();
            let uploads = pprof_uploads(&body, &params, &meta, &config, &limits, &mut budget)?;
            return store(uploads).await;
        }
        "speedscope" => return store(speedscope::uploads(&body, &params, &meta, &limits, &mut budget)?).await,
        raw if collapse::is_raw_format(raw) => {
            let collapsed = collapse::collapse(raw, &body, limits.max_decompressed_bytes)?;
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
    store(vec![Upload { meta, tree: tree.to_flat() }]).await
}

/// Reads a profile file of any supported format into one tree without storing anything: the
/// viewer's "open a file" path for formats the browser does not parse itself. `auto` reads JSON
/// as speedscope and otherwise tries folded text, then pprof, then inferno's format guess. A
/// pprof with several sample types gives its first (in Kiln's type order: CPU before the rest);
/// a speedscope file gives all its profiles merged. Returns the tree and its unit.
pub fn read_profile(
    body: &[u8],
    headers: &HeaderMap,
    format: &str,
    limits: &IngestLimits,
) -> Result<(kiln_model::FlatTree, String), AppError> {
    let mut budget = limits.budget();
    let body = body::decode(body, headers, &mut budget)?;
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    // The first profile type's tree, or None for a pprof with no samples.
    type Found = Option<(kiln_model::FlatTree, String)>;
    let from_pprof = |bytes: &[u8], budget: &mut RequestBudget| -> Result<Found, DecodeError> {
        let config = pprof::SampleTypeConfigs::new();
        let labels = std::collections::BTreeMap::new();
        let dest = pprof::Destination {
            app: "file",
            labels: &labels,
            range: None,
            sample_rate: None,
            spy_name: "",
            config: &config,
        };
        let uploads = pprof::uploads(bytes, &dest, limits, budget, crate::timespec::now_unix())?;
        let Some(first) =
            uploads.iter().map(|u| u.meta.series.profile_type.clone()).min_by_key(|t| (t != "cpu", t.clone()))
        else {
            return Ok(None);
        };
        let mut tree = kiln_model::CallTree::new();
        let mut units = String::from("samples");
        for upload in uploads.iter().filter(|u| u.meta.series.profile_type == first) {
            tree.merge_flat(&upload.tree);
            units.clone_from(&upload.meta.units);
        }
        Ok(Some((tree.to_flat(), units)))
    };
    let no_samples = || AppError::Unprocessable("the pprof holds no samples".into());
    let from_speedscope =
        |bytes: &[u8], budget: &mut RequestBudget| -> Result<(kiln_model::FlatTree, String), AppError> {
            let file = speedscope::read(bytes, limits, budget)?;
            Ok((file.merged().to_flat(), file.units.to_string()))
        };
    let samples = |tree: kiln_model::CallTree| (tree.to_flat(), "samples".to_string());
    let collapse_text = |format: &str, body: &[u8]| collapse::collapse(format, body, limits.max_decompressed_bytes);
    match format {
        "folded" | "collapsed" => Ok(samples(parse_folded(&body, LineFormat::Counted, parse_limits)?)),
        "lines" => Ok(samples(parse_folded(&body, LineFormat::Lines, parse_limits)?)),
        "pprof" => from_pprof(&body, &mut budget)?.ok_or_else(no_samples),
        "speedscope" => from_speedscope(&body, &mut budget),
        "auto" => {
            if kiln_model::speedscope::looks_like_json(&body) {
                return from_speedscope(&body, &mut budget);
            }
            if let Ok(tree) = folded::parse(&body, LineFormat::Counted, parse_limits)
                && !tree.is_empty()
            {
                return Ok(samples(tree));
            }
            // A pprof that is well-formed but over a limit says so; anything else may be text.
            match from_pprof(&body, &mut budget) {
                Ok(Some(found)) => return Ok(found),
                Err(e @ (DecodeError::OverBudget(_) | DecodeError::TooLarge(_))) => return Err(e.into()),
                Ok(None) | Err(_) => {}
            }
            let collapsed = collapse_text("guess", &body)?;
            let tree = parse_folded(&collapsed, LineFormat::Counted, parse_limits)?;
            if tree.is_empty() {
                return Err(AppError::Unprocessable(
                    "could not recognise the file: expected folded stacks, pprof, speedscope JSON, or perf/DTrace/sample/VTune output"
                        .into(),
                ));
            }
            Ok(samples(tree))
        }
        raw if collapse::is_raw_format(raw) => {
            Ok(samples(parse_folded(&collapse_text(raw, &body)?, LineFormat::Counted, parse_limits)?))
        }
        other => Err(AppError::bad_request_with(
            format!("unknown format `{other}`; supported: auto, pprof, {}", FORMATS.join(", ")),
            json!({ "parameter": "format" }),
        )),
    }
}

/// Appends the uploads of one request in one go, in the request's tenant, once per key.
async fn store(
    state: &AppState,
    tenant: &Tenant,
    key: Option<String>,
    mut uploads: Vec<Upload>,
) -> Result<StatusCode, AppError> {
    check_upload_times(&uploads, &state.limits.window, crate::timespec::now_unix())?;
    for upload in &mut uploads {
        upload.meta.series.tenant.clone_from(&tenant.0);
    }
    let mut groups = vec![KeyedUploads { key, uploads }];
    let refused = series_limit::admit(&state.store, &tenant.0, state.limits.max_series_per_tenant, &mut groups);
    // An empty list (a profile with no samples) is a success with nothing to keep.
    let appended = state.store.append_once(groups).await?;
    if appended.duplicates > 0 {
        state.metrics.ingest_duplicates.fetch_add(appended.duplicates as u64, Ordering::Relaxed);
        tracing::debug!(tenant = %tenant.0, "a retried upload was already stored");
    }
    refused.map_or(Ok(StatusCode::OK), Err)
}

/// Refuses uploads stamped outside the ingest window. `/ingest`'s `from`/`until` were checked
/// with the parameters; what is left are the times a profile carries itself (pprof's
/// `time_nanos` and `duration_nanos`), checked here for every path that stores.
pub(crate) fn check_upload_times(uploads: &[Upload], window: &IngestWindow, now: i64) -> Result<(), AppError> {
    for upload in uploads {
        for time in [upload.meta.from, upload.meta.until] {
            window.check(time, now).map_err(|reason| {
                AppError::bad_request_with(
                    format!("the profile's time (`time_nanos`/`duration_nanos`): {reason}"),
                    json!({ "field": "time_nanos" }),
                )
            })?;
        }
    }
    Ok(())
}

/// A pprof sent to `/ingest`: the name gives the application (its type suffix, if any, is
/// dropped: the sample types say what the data is) and labels; the query string's range and
/// rate win over the profile's when given.
fn pprof_uploads(
    raw: &[u8],
    params: &IngestParams,
    meta: &crate::storage::ProfileMeta,
    config: &pprof::SampleTypeConfigs,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<Vec<Upload>, DecodeError> {
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let dest = pprof::Destination {
        app: &meta.series.app,
        labels: &meta.series.labels,
        range: (given(&params.from) || given(&params.until)).then_some((meta.from, meta.until)),
        sample_rate: given(&params.sample_rate).then_some(meta.sample_rate),
        spy_name: &meta.spy_name,
        config,
    };
    pprof::uploads(raw, &dest, limits, budget, crate::timespec::now_unix())
}

fn sample_type_config(data: &[u8], budget: &mut RequestBudget) -> Result<pprof::SampleTypeConfigs, DecodeError> {
    let data = if data.starts_with(&body::GZIP_MAGIC) { body::gunzip(data, budget)? } else { data.to_vec() };
    serde_json::from_slice(&data).map_err(|e| {
        DecodeError::malformed_with(
            format!("sample_type_config is not valid: {e}"),
            json!({ "part": "sample_type_config" }),
        )
    })
}

fn parse_folded(body: &[u8], format: LineFormat, limits: ParseLimits) -> Result<kiln_model::CallTree, DecodeError> {
    folded::parse(body, format, limits).map_err(|e| {
        DecodeError::malformed_with(format!("folded stacks, {e}"), json!({ "line": e.line, "reason": e.reason }))
    })
}
