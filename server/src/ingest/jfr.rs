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
use kiln_model::jfr::Recording;
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
    uploads_of(&read, snapshot, params, meta, limits)
}

/// The uploads of a recording already read.
fn uploads_of(
    read: &Recording,
    snapshot: Option<&LabelsSnapshot>,
    params: &IngestParams,
    meta: &ProfileMeta,
    limits: &IngestLimits,
) -> Result<Vec<Upload>, IngestError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::jfr::{KINDS, Profile};

    #[test]
    fn contexts_become_labels_and_contexts_alike_are_one_series() {
        let limits = IngestLimits::default();
        let params: IngestParams = serde_json::from_value(json!({
            "name": "shop.cpu{env=prod,region=eu}", "format": "jfr", "spyName": "javaspy", "sampleRate": "100",
        }))
        .unwrap();
        let meta = params.to_meta(&limits, 1_700_000_000).unwrap();
        let tree = |stack: &str, n: u64| {
            let mut t = CallTree::new();
            t.add_stack(stack.split(';'), n);
            t
        };
        let cpu = KINDS.iter().find(|k| k.profile_type == "cpu").copied().unwrap();
        let bytes = KINDS.iter().find(|k| k.profile_type == "alloc_sample_bytes").copied().unwrap();
        let contexts = |pairs: &[(i64, &str, u64)]| pairs.iter().map(|&(c, s, n)| (c, tree(s, n))).collect();
        let recording = Recording {
            profiles: vec![
                Profile {
                    kind: cpu,
                    contexts: contexts(&[(0, "a;b", 1), (5, "a;c", 2), (6, "a;d", 3), (9, "a;e", 4)]),
                },
                Profile { kind: bytes, contexts: contexts(&[(5, "x", 100)]) },
            ],
        };
        let s = |v: &str| v.to_string();
        let snapshot = LabelsSnapshot {
            // Contexts 5 and 6 differ only by their span's profile_id; context 6 also tries to
            // override the request's `env`, and names an internal label.
            contexts: HashMap::from([
                (5, Context { labels: HashMap::from([(1, 2), (3, 4)]) }),
                (6, Context { labels: HashMap::from([(1, 2), (3, 5), (6, 7), (8, 9)]) }),
            ]),
            strings: HashMap::from([
                (1, s("endpoint")),
                (2, s("/checkout")),
                (3, s("profile_id")),
                (4, s("span-1")),
                (5, s("span-2")),
                (6, s("env")),
                (7, s("dev")),
                (8, s("__secret")),
                (9, s("x")),
            ]),
        };
        let uploads = uploads_of(&recording, Some(&snapshot), &params, &meta, &limits).unwrap();
        // App, type, units, labels, total.
        type Stored = (String, String, String, Vec<(String, String)>, u64);
        let got: Vec<Stored> = uploads
            .iter()
            .map(|u| {
                let k = &u.meta.series;
                (
                    k.app.clone(),
                    k.profile_type.clone(),
                    u.meta.units.clone(),
                    k.labels.clone().into_iter().collect(),
                    u.tree.total(),
                )
            })
            .collect();
        let base = vec![(s("env"), s("prod")), (s("region"), s("eu"))];
        let with_endpoint = vec![(s("endpoint"), s("/checkout")), (s("env"), s("prod")), (s("region"), s("eu"))];
        assert_eq!(
            got,
            [
                // Contexts 5 and 6; context 0 and the unknown context 9 have the request's
                // labels only.
                (s("shop"), s("cpu"), s("samples"), with_endpoint.clone(), 5),
                (s("shop"), s("cpu"), s("samples"), base, 5),
                (s("shop"), s("alloc_sample_bytes"), s("bytes"), with_endpoint, 100),
            ]
        );
        assert!(uploads.iter().all(|u| u.meta.spy_name == "javaspy"));

        let long = LabelsSnapshot {
            contexts: HashMap::from([(5, Context { labels: HashMap::from([(1, 2)]) })]),
            strings: HashMap::from([(1, s("k")), (2, "v".repeat(limits.max_label_bytes + 1))]),
        };
        let err = uploads_of(&recording, Some(&long), &params, &meta, &limits).unwrap_err();
        assert!(err.to_string().contains("context label `k` is longer than"), "{err}");
    }
}
