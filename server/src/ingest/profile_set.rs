//! Files the model's parsers read into several profiles ([`kiln_model::formats::Parser`]: V8
//! `.cpuprofile`, Chrome traces, callgrind), sent to `/ingest` with their `format` or with none
//! (they are recognised by their content).
//!
//! - Threads and processes (a trace's `pid`/`tid`s) are measured in one unit: as for speedscope,
//!   a file with several becomes one series per thread, labelled `thread_name`, unless the name
//!   already sets that label; a file with one is one series. Time is stored in nanoseconds;
//!   a profile counted in samples takes the `units` parameter.
//! - Event types (callgrind's `Ir`, `Dr`, …) are different quantities: each is its own series,
//!   whose profile type and unit are the event's name (a type in `name` is replaced by it).

use kiln_model::formats::Parser;
use kiln_model::profile_set::{ProfileSet, Split};
use serde_json::json;

use super::speedscope::PROFILE_LABEL;
use super::{IngestError, IngestLimits, IngestParams, RequestBudget, series_from_name};
use crate::storage::{ProfileMeta, Upload};

/// Reads the file within the request's decode budget, or says what is wrong with it (the
/// message starts with the format's name).
pub fn read(
    parser: Parser,
    body: &[u8],
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<ProfileSet, IngestError> {
    parser.parse(body, limits.max_stack_depth, &mut budget.decode).map_err(|e| match e.exhausted {
        Some(exhausted) => IngestError::OverBudget(exhausted),
        None => IngestError::malformed_with(e.to_string(), json!({ "format": e.format, "reason": e.reason })),
    })
}

/// The uploads of one file sent to `/ingest`.
pub fn uploads(
    parser: Parser,
    body: &[u8],
    params: &IngestParams,
    meta: &ProfileMeta,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<Vec<Upload>, IngestError> {
    let set = read(parser, body, limits, budget)?;
    let name = params.name.as_deref().unwrap_or_default();
    let split = set.split == Split::Threads && set.parts.len() > 1 && !meta.series.labels.contains_key(PROFILE_LABEL);
    if split && meta.series.labels.len() >= limits.max_labels {
        return Err(IngestError::malformed_with(
            format!("more than {} labels with `{PROFILE_LABEL}`", limits.max_labels),
            json!({ "parameter": "name" }),
        ));
    }
    let mut uploads = Vec::new();
    for part in &set.parts {
        let mut meta = meta.clone();
        match set.split {
            Split::Threads => {
                if part.units != kiln_model::speedscope::SAMPLES && part.units != meta.units {
                    // The name was validated with the parameter's units; only the type may change.
                    let series = series_from_name(name, &part.units, meta.aggregation, limits)?;
                    meta.series.app = series.app;
                    meta.series.profile_type = series.profile_type;
                    meta.units.clone_from(&part.units);
                }
                if split {
                    if part.name.len() > limits.max_label_bytes {
                        return Err(IngestError::malformed_with(
                            format!(
                                "thread name `{}…` is longer than {} bytes",
                                part.name.chars().take(32).collect::<String>(),
                                limits.max_label_bytes
                            ),
                            json!({ "profile": part.name.chars().take(64).collect::<String>() }),
                        ));
                    }
                    meta.series.labels.insert(PROFILE_LABEL.to_string(), part.name.clone());
                }
            }
            Split::EventTypes => {
                let series = series_from_name(name, &part.units, meta.aggregation, limits)?;
                meta.series.app = series.app;
                meta.series.profile_type.clone_from(&part.units);
                meta.units.clone_from(&part.units);
            }
        }
        uploads.push(Upload { meta, tree: part.tree.to_flat() });
    }
    Ok(uploads)
}
