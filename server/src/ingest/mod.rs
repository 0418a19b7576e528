//! Ingest: turn what agents and tools send into [`Upload`]s for the store.
//!
//! `POST /ingest` (Pyroscope's legacy API, also at `/pyroscope/ingest`) reads its series from the
//! `name` parameter and its samples from the body in the format `format` names. Each wire format
//! has its own module; all of them end in a [`kiln_model::CallTree`]. A `multipart/form-data`
//! body (the Go agent) carries a pprof in its `profile` part; `format` is then absent or `pprof`.
//! The Java agent's multipart body (`format=jfr`) carries a JFR recording in its `jfr` part and
//! its context labels in `labels` ([`jfr`]).
//!
//! `POST /push.v1.PusherService/Push` ([`push`]) is the Connect endpoint newer agents use.
//!
//! One request is one [`crate::storage::Store::append_once`]: all its series are stored or
//! none, in the tenant `X-Scope-OrgID` names. A request with an `Idempotency-Key` header is
//! stored once: a retry with the same key within the dedupe window answers 200 and changes
//! nothing (push requests use each sample's `ID` the same way).
//!
//! The HTTP handlers for both endpoints are in the api layer (`api/ingest.rs`, `api/push.rs`):
//! they read the tenant and the key from headers, call [`ingest()`] or [`push::push`], and map
//! an [`IngestError`] to its status.

mod body;
mod collapse;
mod error;
pub mod jfr;
mod multipart;
pub mod open;
pub mod otlp;
mod params;
pub mod pprof;
pub mod profile_set;
pub mod push;
mod series_limit;
pub mod speedscope;

use axum::http::{HeaderMap, header};
use kiln_model::budget::DecodeBudget;
use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::formats::{self, Collapser, Decoder, Detection, Format, Parser};
use serde_json::json;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::storage::{KeyedUploads, Store, Upload};
use crate::timespec::IngestWindow;
use crate::work::UploadHold;

pub(crate) use body::GZIP_MAGIC;
pub use error::IngestError;
pub use params::{IngestParams, series_from_name};

/// Limits on what one upload may cost.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Request body, as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Request body of `/api/collapse` (the Open page's files), as sent: it parses and stores
    /// nothing, so it may take a file larger than an upload, raw rather than gzipped by the
    /// browser. Never below `max_body_bytes` ([`IngestLimits::collapse_body_bytes`]).
    pub max_collapse_body_bytes: usize,
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
    /// What `/api/collapse` takes, as sent: its own limit, or the uploads' when that is larger
    /// (raising `--max-body-bytes` never lowers what the Open page opens).
    pub fn collapse_body_bytes(&self) -> usize {
        self.max_collapse_body_bytes.max(self.max_body_bytes)
    }

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
            // A 100 MB Chrome trace, raw, with room to spare; the decompressed limit bounds
            // what a gzipped one may inflate to alike.
            max_collapse_body_bytes: 256 << 20,
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

/// Where a request's uploads go, and what they may cost: the store, the counters `/metrics`
/// shows, and the limits. The HTTP handlers (api/ingest.rs, api/push.rs) build it from their
/// state.
#[derive(Clone, Copy)]
pub struct Sink<'a> {
    /// Where uploads are appended.
    pub store: &'a Store,
    /// Counts retried uploads that were already stored.
    pub metrics: &'a Metrics,
    /// What one upload may cost.
    pub limits: &'a IngestLimits,
}

/// Longest accepted idempotency key (the `Idempotency-Key` header, a push sample's `ID`).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// An idempotency key scoped to a tenant and to one protocol, so that neither two tenants nor an
/// `/ingest` key and a push id can collide.
pub fn scoped_key(tenant: &str, protocol: &str, key: &str) -> String {
    format!("{tenant}/{protocol}/{key}")
}

/// `POST /ingest`'s body, decoded as `params` and `headers` say and stored in `tenant`, once per
/// `key` (already scoped, see [`scoped_key`]).
pub async fn ingest(
    sink: Sink<'_>,
    tenant: &str,
    key: Option<String>,
    params: &IngestParams,
    hold: Option<UploadHold>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), IngestError> {
    let store = |uploads: Vec<Upload>| store(sink, tenant, key.clone(), uploads);
    let limits = *sink.limits;
    let meta = params.to_meta(&limits, crate::timespec::now_unix())?;
    let mut budget = limits.budget().holding(hold);
    let body = body::decode(body, headers, &mut budget)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(boundary) = multipart::boundary(content_type) {
        let named_jfr =
            params.format.as_deref().and_then(formats::find).is_some_and(|f| f.name == kiln_model::jfr::NAME);
        if !named_jfr && !matches!(params.format.as_deref(), None | Some("") | Some("auto") | Some("pprof")) {
            return Err(IngestError::malformed_with(
                "a multipart/form-data body carries pprof (or, with `format=jfr`, a JFR recording and its labels); \
                 drop `format` or set it to `pprof` or `jfr`",
                json!({ "parameter": "format" }),
            ));
        }
        let parts = multipart::parse(body.into(), &boundary).await?;
        if named_jfr || parts.iter().any(|p| p.name == "jfr") {
            // The Java agent: the recording in `jfr`, its context labels in `labels`.
            let recording = parts
                .iter()
                .find(|p| p.name == "jfr")
                .ok_or_else(|| IngestError::malformed("multipart body has no `jfr` part"))?;
            let snapshot = match parts.iter().find(|p| p.name == "labels" && !p.data.is_empty()) {
                Some(part) => Some(jfr::labels_snapshot(&part.data, &mut budget)?),
                None => None,
            };
            let recording = jfr::part_bytes(&recording.data, &mut budget)?;
            return store(jfr::uploads(&recording, snapshot.as_ref(), params, &meta, &limits, &mut budget)?).await;
        }
        let profile = parts
            .iter()
            .find(|p| p.name == "profile")
            .ok_or_else(|| IngestError::malformed("multipart body has no `profile` part"))?;
        let config = match parts.iter().find(|p| p.name == "sample_type_config") {
            Some(part) => sample_type_config(&part.data, &mut budget)?,
            None => pprof::SampleTypeConfigs::new(),
        };
        let uploads = pprof_uploads(&profile.data, params, &meta, &config, &limits, &mut budget)?;
        return store(uploads).await;
    }
    let body = body::utf8_text(body)?;
    let format = match params.format.as_deref() {
        None | Some("auto") => detect_format(&body, headers),
        Some(format) => format,
    };
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    let Some(found) = formats::find(format) else {
        let supported = formats::spellings();
        return Err(IngestError::malformed_with(
            format!("unknown format `{format}`; supported: {}", supported.join(", ")),
            json!({ "parameter": "format", "supported": supported }),
        ));
    };
    let tree = match found.decoder {
        Decoder::Folded(line_format) => parse_folded(&body, line_format, parse_limits)?,
        Decoder::Pprof => {
            let config = pprof::SampleTypeConfigs::new();
            let uploads = pprof_uploads(&body, params, &meta, &config, &limits, &mut budget)?;
            return store(uploads).await;
        }
        Decoder::Speedscope => return store(speedscope::uploads(&body, params, &meta, &limits, &mut budget)?).await,
        Decoder::Parser(Parser::Jfr) => {
            return store(jfr::uploads(&body, None, params, &meta, &limits, &mut budget)?).await;
        }
        Decoder::Parser(parser) => {
            return store(profile_set::uploads(parser, &body, params, &meta, &limits, &mut budget)?).await;
        }
        Decoder::Collapse(collapser) => {
            let collapsed = collapse::collapse(collapser, found.name, &body, limits.max_decompressed_bytes)?;
            if collapsed.is_empty() && collapser == Collapser::Guess && !body.trim_ascii().is_empty() {
                return Err(IngestError::malformed_with(
                    format!(
                        "could not recognise the body's format (tried {}, vsprof and GHC .prof); name it with \
                         `format=`",
                        formats::shown_names().join(", ")
                    ),
                    json!({ "parameter": "format", "supported": formats::spellings() }),
                ));
            }
            parse_folded(&collapsed, LineFormat::Counted, parse_limits)?
        }
    };
    if tree.is_empty() {
        // Agents send empty profiles when nothing ran; that is a success with nothing to keep.
        return Ok(());
    }
    store(vec![Upload { meta, tree: tree.to_flat() }]).await
}

/// The format of an upload that names none (or `auto`), from its content: a format told apart
/// by its start (V8 `.cpuprofile`, Chrome traces, callgrind…); JSON (by content type or first
/// byte) as speedscope; folded text when its first stack line ends in a count, as every folded
/// line does; pprof's protobuf; anything else is left to inferno's guess, which knows perf script,
/// DTrace, `sample`, VTune, vsprof and GHC's `.prof` by their first lines. So `kiln upload` and
/// `curl --data-binary @file` need no `format` for any of them.
pub fn detect_format(body: &[u8], headers: &HeaderMap) -> &'static str {
    if let Some(format) = formats::sniff(body) {
        return format.name;
    }
    if speedscope::default_format(headers) == "speedscope" || kiln_model::speedscope::looks_like_json(body) {
        return "speedscope";
    }
    if looks_like_folded(body) {
        return "folded";
    }
    if looks_like_pprof(body) {
        return "pprof";
    }
    "guess"
}

/// True when the first line that is not blank ends in a count after a space (`a;b;c 12`), or
/// there is no such line (an empty profile is folded text with no stacks).
fn looks_like_folded(body: &[u8]) -> bool {
    let Some(line) = body.split(|&b| b == b'\n').take(64).map(<[u8]>::trim_ascii).find(|line| !line.is_empty()) else {
        return true;
    };
    match line.iter().rposition(|b| b.is_ascii_whitespace()) {
        Some(space) => {
            let count = &line[space + 1..];
            !count.is_empty() && count.iter().all(u8::is_ascii_digit) && !line[..space].trim_ascii().is_empty()
        }
        None => false,
    }
}

/// True for bytes that start like a pprof `Profile` message (field 1, `sample_type`, as every
/// encoder writes first) and are binary, not text.
fn looks_like_pprof(body: &[u8]) -> bool {
    body.first() == Some(&0x0a) && body.iter().take(4096).any(|&b| b < 0x09 || (0x0e..0x20).contains(&b))
}

/// Reads a profile file of any supported format into one tree without storing anything: the
/// viewer's "open a file" path for formats the browser does not parse itself. `auto` tries the
/// formats of [`formats::FORMATS`] that can be recognised, in its order: the formats told apart
/// by their start (V8 `.cpuprofile`, Chrome traces, callgrind), other JSON as speedscope, then
/// folded text, then pprof, then inferno's format guess. A
/// pprof with several sample types gives its first (in Kiln's type order: CPU before the rest);
/// a speedscope file or a trace gives all its profiles merged, a callgrind file its first event
/// type. Returns the tree and its unit.
pub fn read_profile(
    body: &[u8],
    headers: &HeaderMap,
    format: &str,
    limits: &IngestLimits,
) -> Result<(kiln_model::FlatTree, String), IngestError> {
    let mut budget = limits.budget();
    let body = body::utf8_text(body::decode(body, headers, &mut budget)?)?;
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    // The first profile type's tree, or None for a pprof with no samples.
    type Found = Option<(kiln_model::FlatTree, String)>;
    let from_pprof = |bytes: &[u8], budget: &mut RequestBudget| -> Result<Found, IngestError> {
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
    let no_samples = || IngestError::Unprocessable("the pprof holds no samples".into());
    let from_speedscope =
        |bytes: &[u8], budget: &mut RequestBudget| -> Result<(kiln_model::FlatTree, String), IngestError> {
            let file = speedscope::read(bytes, limits, budget)?;
            Ok((file.merged().to_flat(), file.units.to_string()))
        };
    let from_parser =
        |parser, bytes: &[u8], budget: &mut RequestBudget| -> Result<(kiln_model::FlatTree, String), IngestError> {
            let set = profile_set::read(parser, bytes, limits, budget)?;
            let (tree, units) =
                set.merged().ok_or_else(|| IngestError::Unprocessable("the file holds no samples".into()))?;
            Ok((tree.to_flat(), units.to_string()))
        };
    let samples = |tree: kiln_model::CallTree| (tree.to_flat(), "samples".to_string());
    let collapse_text = |format: &Format, collapser: Collapser, body: &[u8]| {
        collapse::collapse(collapser, format.name, body, limits.max_decompressed_bytes)
    };
    if format == "auto" {
        // Each format that can be recognised, in the table's order; the first that reads the
        // body wins.
        for candidate in formats::FORMATS.iter().filter(|f| f.detection != Detection::Named) {
            let found = match (candidate.detection, candidate.decoder) {
                (Detection::LooksLike, Decoder::Parser(parser)) => {
                    if !parser.looks_like(&body) {
                        continue;
                    }
                    Some(from_parser(parser, &body, &mut budget)?)
                }
                (Detection::LooksLikeJson, Decoder::Speedscope) => {
                    if !kiln_model::speedscope::looks_like_json(&body) {
                        continue;
                    }
                    Some(from_speedscope(&body, &mut budget)?)
                }
                (Detection::Decodes, Decoder::Folded(line_format)) => {
                    folded::parse(&body, line_format, parse_limits).ok().filter(|t| !t.is_empty()).map(samples)
                }
                // A pprof that is well-formed but over a limit says so; anything else may be text.
                (Detection::Decodes, Decoder::Pprof) => match from_pprof(&body, &mut budget) {
                    Ok(found) => found,
                    Err(e @ (IngestError::OverBudget(_) | IngestError::TooLarge(_))) => return Err(e),
                    Err(_) => None,
                },
                (Detection::Decodes, Decoder::Collapse(collapser)) => {
                    let tree =
                        parse_folded(&collapse_text(candidate, collapser, &body)?, LineFormat::Counted, parse_limits)?;
                    (!tree.is_empty()).then(|| samples(tree))
                }
                (detection, decoder) => unreachable!("no detection {detection:?} for {decoder:?}"),
            };
            if let Some(found) = found {
                return Ok(found);
            }
        }
        return Err(IngestError::Unprocessable(format!(
            "could not recognise the file: expected one of {}",
            formats::shown_names().join(", ")
        )));
    }
    let Some(found) = formats::find(format) else {
        return Err(IngestError::malformed_with(
            format!("unknown format `{format}`; supported: auto, {}", formats::spellings().join(", ")),
            json!({ "parameter": "format" }),
        ));
    };
    match found.decoder {
        Decoder::Folded(line_format) => Ok(samples(parse_folded(&body, line_format, parse_limits)?)),
        Decoder::Pprof => from_pprof(&body, &mut budget)?.ok_or_else(no_samples),
        Decoder::Speedscope => from_speedscope(&body, &mut budget),
        Decoder::Parser(parser) => from_parser(parser, &body, &mut budget),
        Decoder::Collapse(collapser) => {
            Ok(samples(parse_folded(&collapse_text(found, collapser, &body)?, LineFormat::Counted, parse_limits)?))
        }
    }
}

/// Appends the uploads of one request in one go, in the request's tenant, once per key.
async fn store(sink: Sink<'_>, tenant: &str, key: Option<String>, mut uploads: Vec<Upload>) -> Result<(), IngestError> {
    check_upload_times(&uploads, &sink.limits.window, crate::timespec::now_unix())?;
    for upload in &mut uploads {
        upload.meta.series.tenant = tenant.to_string();
    }
    store_groups(sink, tenant, vec![KeyedUploads { key, uploads }]).await
}

/// Appends the groups of one request (each stored once per its key) in one go, after taking
/// out the new series beyond the tenant's limit: those are refused once the rest is stored.
pub(crate) async fn store_groups(
    sink: Sink<'_>,
    tenant: &str,
    mut groups: Vec<KeyedUploads>,
) -> Result<(), IngestError> {
    let refused = series_limit::admit(sink.store, tenant, sink.limits.max_series_per_tenant, &mut groups);
    // An empty list (a profile with no samples) is a success with nothing to keep.
    let appended = sink.store.append_once(groups).await?;
    if appended.duplicates > 0 {
        sink.metrics.ingest_duplicates.fetch_add(appended.duplicates as u64, Ordering::Relaxed);
        tracing::debug!(tenant, "a retried upload was already stored");
    }
    refused.map_or(Ok(()), Err)
}

/// Refuses uploads stamped outside the ingest window. `/ingest`'s `from`/`until` were checked
/// with the parameters; what is left are the times a profile carries itself (pprof's
/// `time_nanos` and `duration_nanos`), checked here for every path that stores.
pub(crate) fn check_upload_times(uploads: &[Upload], window: &IngestWindow, now: i64) -> Result<(), IngestError> {
    for upload in uploads {
        for time in [upload.meta.from, upload.meta.until] {
            window.check(time, now).map_err(|reason| {
                IngestError::malformed_with(
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
) -> Result<Vec<Upload>, IngestError> {
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

fn sample_type_config(data: &[u8], budget: &mut RequestBudget) -> Result<pprof::SampleTypeConfigs, IngestError> {
    let data = if data.starts_with(&body::GZIP_MAGIC) { body::gunzip(data, budget)? } else { data.to_vec() };
    serde_json::from_slice(&data).map_err(|e| {
        IngestError::malformed_with(
            format!("sample_type_config is not valid: {e}"),
            json!({ "part": "sample_type_config" }),
        )
    })
}

fn parse_folded(body: &[u8], format: LineFormat, limits: ParseLimits) -> Result<kiln_model::CallTree, IngestError> {
    folded::parse(body, format, limits).map_err(|e| {
        IngestError::malformed_with(format!("folded stacks, {e}"), json!({ "line": e.line, "reason": e.reason }))
    })
}
