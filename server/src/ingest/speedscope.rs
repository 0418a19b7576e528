//! speedscope JSON files (`format=speedscope`, or a `Content-Type: application/json` body with
//! no `format`), read by [`kiln_model::speedscope`].
//!
//! Units come from the file: time units are stored as `nanoseconds`, `bytes` as `bytes`;
//! `none` takes the `units` parameter (default `samples`). When the name carries no profile
//! type, the type follows from those units as for any upload. A file with several differently
//! named profiles (one per thread, as py-spy and rbspy write them) becomes one series per
//! profile with the label `thread_name` set to the profile's name (a profile with no name goes
//! to the series without the label); a label of that name in `name` wins. A file with one
//! profile name is one series.

use axum::http::HeaderMap;
use kiln_model::speedscope::{self, Speedscope};
use serde_json::json;

use super::{IngestError, IngestLimits, IngestParams, RequestBudget, series_from_name};
use crate::storage::{ProfileMeta, Upload};

/// The series label that tells a file's profiles apart.
pub const PROFILE_LABEL: &str = "thread_name";

/// The format of a body with no `format`: JSON is speedscope, anything else folded text.
pub fn default_format(headers: &HeaderMap) -> &'static str {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") { "speedscope" } else { "folded" }
}

/// Reads the file within the request's decode budget, or says what is wrong with it.
pub fn read(body: &[u8], limits: &IngestLimits, budget: &mut RequestBudget) -> Result<Speedscope, IngestError> {
    speedscope::parse_budgeted(body, limits.max_stack_depth, &mut budget.decode).map_err(|e| match e.exhausted {
        Some(exhausted) => IngestError::OverBudget(exhausted),
        None => {
            IngestError::malformed_with(format!("speedscope: {e}"), json!({ "profile": e.profile, "reason": e.reason }))
        }
    })
}

/// The uploads of one speedscope file sent to `/ingest`.
pub fn uploads(
    body: &[u8],
    params: &IngestParams,
    meta: &ProfileMeta,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
) -> Result<Vec<Upload>, IngestError> {
    let file = read(body, limits, budget)?;
    let mut meta = meta.clone();
    if file.units != speedscope::SAMPLES && file.units != meta.units {
        // The name was validated with the parameter's units; only the type may change.
        let name = params.name.as_deref().unwrap_or_default();
        let series = series_from_name(name, file.units, meta.aggregation, limits)?;
        meta.series.app = series.app;
        meta.series.profile_type = series.profile_type;
        meta.units = file.units.to_string();
    }
    let split = file.profiles.len() > 1 && !meta.series.labels.contains_key(PROFILE_LABEL);
    if split && meta.series.labels.len() >= limits.max_labels {
        return Err(IngestError::malformed_with(
            format!("more than {} labels with `{PROFILE_LABEL}`", limits.max_labels),
            json!({ "parameter": "name" }),
        ));
    }
    let mut uploads = Vec::new();
    for (index, profile) in file.profiles.iter().enumerate() {
        if profile.tree.is_empty() {
            continue;
        }
        let mut meta = meta.clone();
        // A profile without a name is the series without the label.
        if split && !profile.name.is_empty() {
            if profile.name.len() > limits.max_label_bytes {
                return Err(IngestError::malformed_with(
                    format!("speedscope: profile {index}: its name is longer than {} bytes", limits.max_label_bytes),
                    json!({ "profile": index }),
                ));
            }
            meta.series.labels.insert(PROFILE_LABEL.to_string(), profile.name.clone());
        }
        uploads.push(Upload { meta, tree: profile.tree.to_flat() });
    }
    Ok(uploads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn params(name: &str, units: Option<&str>) -> IngestParams {
        IngestParams { name: Some(name.into()), units: units.map(String::from), ..IngestParams::default() }
    }

    fn uploads_of(file: &str, name: &str, units: Option<&str>) -> Result<Vec<Upload>, IngestError> {
        let params = params(name, units);
        let limits = IngestLimits::default();
        let meta = params.to_meta(&limits, 1_700_000_000)?;
        uploads(file.as_bytes(), &params, &meta, &limits, &mut limits.budget())
    }

    const TWO_THREADS: &str = r#"{"shared": {"frames": [{"name": "main"}, {"name": "work"}]}, "profiles": [
        {"type": "sampled", "name": "MainThread", "unit": "milliseconds", "startValue": 0, "endValue": 3,
         "samples": [[0, 1], [0]], "weights": [2, 1]},
        {"type": "sampled", "name": "worker-1", "unit": "milliseconds", "startValue": 0, "endValue": 1,
         "samples": [[1]], "weights": [1]}]}"#;

    #[test]
    fn profiles_become_thread_series_in_the_files_unit() {
        let got = uploads_of(TWO_THREADS, "py{env=dev}", None).unwrap();
        assert_eq!(got.len(), 2);
        for u in &got {
            assert_eq!((u.meta.series.app.as_str(), u.meta.series.profile_type.as_str()), ("py", "nanoseconds"));
            assert_eq!(u.meta.units, "nanoseconds");
            assert_eq!(u.meta.series.labels["env"], "dev");
        }
        assert_eq!(got[0].meta.series.labels[PROFILE_LABEL], "MainThread");
        assert_eq!(got[0].tree.total(), 3_000_000);
        assert_eq!(got[1].meta.series.labels[PROFILE_LABEL], "worker-1");
        // A type in the name stays; a thread label in the name keeps everything in one series.
        let typed = uploads_of(TWO_THREADS, "py.cpu{thread_name=all}", None).unwrap();
        assert!(typed.iter().all(|u| u.meta.series.profile_type == "cpu"));
        assert!(typed.iter().all(|u| u.meta.series.labels[PROFILE_LABEL] == "all"));
    }

    #[test]
    fn an_unnamed_profile_is_the_series_without_the_label() {
        let file = TWO_THREADS.replace(r#""name": "MainThread", "#, "");
        let got = uploads_of(&file, "py", None).unwrap();
        assert_eq!(got.len(), 2);
        assert!(!got[0].meta.series.labels.contains_key(PROFILE_LABEL));
        assert_eq!(got[1].meta.series.labels[PROFILE_LABEL], "worker-1");
    }

    #[test]
    fn unitless_files_take_the_units_parameter() {
        let file = TWO_THREADS.replace("milliseconds", "none");
        let got = uploads_of(&file, "rb", Some("objects")).unwrap();
        assert_eq!(
            (got[0].meta.units.as_str(), got[0].meta.series.profile_type.as_str()),
            ("objects", "alloc_objects")
        );
        let got = uploads_of(&file, "rb", None).unwrap();
        assert_eq!((got[0].meta.units.as_str(), got[0].meta.series.profile_type.as_str()), ("samples", "cpu"));
    }

    #[test]
    fn json_bodies_default_to_speedscope() {
        let mut headers = HeaderMap::new();
        assert_eq!(default_format(&headers), "folded");
        headers.insert(header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().unwrap());
        assert_eq!(default_format(&headers), "speedscope");
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(default_format(&headers), "folded");
    }
}
