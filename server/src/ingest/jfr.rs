//! Java Flight Recorder uploads (`/ingest?format=jfr`), as the Java Pyroscope agent sends them:
//! the recording as the body (gzipped or not), or a `multipart/form-data` body with the
//! recording in its `jfr` part and async-profiler's context labels in its `labels` part (a
//! protobuf `LabelsSnapshot`, gzipped or not), the way Pyroscope reads them
//! (`pkg/og/convert/jfr`).
//!
//! Each profile of the recording ([`kiln_model::jfr::KINDS`]: `cpu`, `alloc_in_new_tlab_bytes`,
//! `lock_duration`, …) is its own series of the application `name` names, typed and united as
//! the model says (a type in `name`, such as the agent's `.cpu`, is replaced). Samples taken
//! under an async-profiler context get that context's labels on top of the request's (the
//! request's win a clash; `profile_id`, one per span, and `__`-prefixed names are dropped, as
//! Pyroscope keeps them out of its series too).

use std::collections::{BTreeMap, HashMap};

use kiln_model::CallTree;
use prost::Message;
use serde_json::json;

use super::{IngestError, IngestLimits, IngestParams, RequestBudget, body, series_from_name};
use crate::storage::{ProfileMeta, SeriesKey, Upload};

/// async-profiler's context labels, as pyroscope-java sends them: `io.pyroscope.labels.pb`'s
/// `LabelsSnapshot` (Pyroscope's `jfr_labels.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct LabelsSnapshot {
    /// Context id → its labels.
    #[prost(map = "int64, message", tag = "1")]
    pub contexts: HashMap<i64, Context>,
    /// String id → string, for label names and values.
    #[prost(map = "int64, string", tag = "2")]
    pub strings: HashMap<i64, String>,
}

/// One context's labels, as string ids.
#[derive(Clone, PartialEq, Message)]
pub struct Context {
    /// Name id → value id.
    #[prost(map = "int64, int64", tag = "1")]
    pub labels: HashMap<i64, i64>,
}

/// The per-span label Pyroscope stores apart; one series per span would exhaust the series
/// limit, so Kiln drops it.
const PROFILE_ID_LABEL: &str = "profile_id";

/// A part of a multipart upload, gzipped or not, as plain bytes.
pub fn part_bytes(data: &[u8], budget: &mut RequestBudget) -> Result<Vec<u8>, IngestError> {
    if data.starts_with(&body::GZIP_MAGIC) {
        body::gunzip(data, budget)
    } else {
        budget.decode.grant(data.len() as u64);
        Ok(data.to_vec())
    }
}

/// Reads the `labels` part.
pub fn labels_snapshot(data: &[u8], budget: &mut RequestBudget) -> Result<LabelsSnapshot, IngestError> {
    let data = part_bytes(data, budget)?;
    LabelsSnapshot::decode(&data[..]).map_err(|e| {
        IngestError::malformed_with(
            format!("the `labels` part is not a LabelsSnapshot protobuf: {e}"),
            json!({ "part": "labels" }),
        )
    })
}

/// The labels of `context` by name, or `None` for no context.
fn context_labels(
    snapshot: Option<&LabelsSnapshot>,
    context: i64,
    limits: &IngestLimits,
) -> Result<BTreeMap<String, String>, IngestError> {
    let mut labels = BTreeMap::new();
    let Some(found) = snapshot.and_then(|s| s.contexts.get(&context).map(|c| (s, c))) else {
        return Ok(labels);
    };
    let (snapshot, context_labels) = found;
    for (name, value) in &context_labels.labels {
        let (Some(name), Some(value)) = (snapshot.strings.get(name), snapshot.strings.get(value)) else {
            continue;
        };
        if name.is_empty() || name.starts_with("__") || name == PROFILE_ID_LABEL {
            continue;
        }
        if name.len() > limits.max_label_bytes || value.len() > limits.max_label_bytes {
            return Err(IngestError::malformed_with(
                format!(
                    "context label `{}` is longer than {} bytes",
                    name.chars().take(64).collect::<String>(),
                    limits.max_label_bytes
                ),
                json!({ "part": "labels" }),
            ));
        }
        labels.insert(name.clone(), value.clone());
    }
    Ok(labels)
}

/// The uploads of one recording: a series per profile and label set.
pub fn uploads(
    recording: &[u8],
    snapshot: Option<&LabelsSnapshot>,
    params: &IngestParams,
    meta: &ProfileMeta,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<Vec<Upload>, IngestError> {
    let read = kiln_model::jfr::read(recording, limits.max_stack_depth, &mut budget.decode).map_err(|e| {
        match e.exhausted {
            Some(exhausted) => IngestError::OverBudget(exhausted),
            None => IngestError::malformed_with(e.to_string(), json!({ "format": e.format, "reason": e.reason })),
        }
    })?;
    let name = params.name.as_deref().unwrap_or_default();
    let mut labels_of: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
    let mut uploads = Vec::new();
    for profile in &read.profiles {
        let kind = profile.kind;
        let app = series_from_name(name, kind.units, meta.aggregation, limits)?.app;
        // Contexts with the same labels are one series.
        let mut series: BTreeMap<BTreeMap<String, String>, CallTree> = BTreeMap::new();
        for (context, tree) in &profile.contexts {
            if !labels_of.contains_key(context) {
                let mut labels = meta.series.labels.clone();
                for (k, v) in context_labels(snapshot, *context, limits)? {
                    labels.entry(k).or_insert(v);
                }
                if labels.len() > limits.max_labels {
                    return Err(IngestError::malformed_with(
                        format!("more than {} labels with the context labels of the `labels` part", limits.max_labels),
                        json!({ "part": "labels" }),
                    ));
                }
                labels_of.insert(*context, labels);
            }
            let labels = labels_of[context].clone();
            series.entry(labels).or_default().merge_tree(tree);
        }
        for (labels, tree) in series {
            let mut meta = meta.clone();
            meta.series = SeriesKey::new(app.clone(), kind.profile_type.to_string(), labels);
            meta.units = kind.units.to_string();
            uploads.push(Upload { meta, tree: tree.to_flat() });
        }
    }
    Ok(uploads)
}
