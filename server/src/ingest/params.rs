//! `/ingest` query parameters and the naming model: `name=app.type{k=v}` → a series.

use std::collections::BTreeMap;

use kiln_model::selector::{MatchOp, Selector};
use serde::Deserialize;
use serde_json::json;

use super::{IngestError, IngestLimits};
use crate::storage::{Aggregation, ProfileMeta, SeriesKey};
use crate::timespec;

/// The query string of `/ingest`, as Pyroscope agents send it.
#[derive(Debug, Default, Deserialize)]
pub struct IngestParams {
    /// `app.type{k=v,…}`.
    pub name: Option<String>,
    /// Start of the window (Unix s/ms/µs/ns or `now-…`).
    pub from: Option<String>,
    /// End of the window.
    pub until: Option<String>,
    /// Body format.
    pub format: Option<String>,
    /// Samples per second.
    #[serde(rename = "sampleRate")]
    pub sample_rate: Option<String>,
    /// Agent name.
    #[serde(rename = "spyName")]
    pub spy_name: Option<String>,
    /// Sample unit.
    pub units: Option<String>,
    /// `sum` or `average`.
    #[serde(rename = "aggregationType")]
    pub aggregation_type: Option<String>,
}

fn param_error(parameter: &str, message: String) -> IngestError {
    IngestError::malformed_with(message, json!({ "parameter": parameter }))
}

impl IngestParams {
    /// Validates the parameters into the upload's metadata.
    pub fn to_meta(&self, limits: &IngestLimits, now: i64) -> Result<ProfileMeta, IngestError> {
        let name = self
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| param_error("name", "missing `name` (e.g. `name=myapp.cpu{env=prod}`)".into()))?;
        let units = self.units.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "samples".into());
        let aggregation = match self.aggregation_type.as_deref() {
            None | Some("") | Some("sum") => Aggregation::Sum,
            Some("average") | Some("avg") => Aggregation::Average,
            Some(other) => {
                return Err(param_error(
                    "aggregationType",
                    format!("aggregationType `{other}` must be `sum` or `average`"),
                ));
            }
        };
        let series = series_from_name(name, &units, aggregation, limits)?;
        let time = |p: &str, v: &Option<String>| -> Result<Option<i64>, IngestError> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| timespec::parse(s, now))
                .transpose()
                .map_err(|e| param_error(p, format!("`{p}`: {e}")))
        };
        let until = time("until", &self.until)?.unwrap_or(now);
        let from = time("from", &self.from)?.unwrap_or(until);
        for (param, value) in [("until", until), ("from", from)] {
            limits.window.check(value, now).map_err(|reason| param_error(param, format!("`{param}`: {reason}")))?;
        }
        if from > until {
            return Err(param_error("from", format!("`from` ({from}) is after `until` ({until})")));
        }
        let sample_rate = match self.sample_rate.as_deref().filter(|s| !s.is_empty()) {
            None => 100,
            Some(s) => s.parse::<u32>().ok().filter(|&r| r > 0).ok_or_else(|| {
                param_error("sampleRate", format!("sampleRate `{s}` must be a positive whole number"))
            })?,
        };
        Ok(ProfileMeta {
            series,
            from,
            until,
            units,
            sample_rate,
            spy_name: self.spy_name.clone().unwrap_or_default(),
            aggregation,
        })
    }
}

/// The series a name designates. A name ending in a known profile type (`myapp.cpu`) carries
/// its type; otherwise the whole name is the application and the type follows from the units.
pub fn series_from_name(
    name: &str,
    units: &str,
    aggregation: Aggregation,
    limits: &IngestLimits,
) -> Result<SeriesKey, IngestError> {
    let selector = Selector::parse(name).map_err(|e| param_error("name", format!("name `{name}`: {e}")))?;
    if !selector.is_exact() {
        return Err(param_error("name", format!("name `{name}`: labels must be `key=value`")));
    }
    if selector.matchers.len() > limits.max_labels {
        return Err(param_error("name", format!("more than {} labels", limits.max_labels)));
    }
    let mut labels = BTreeMap::new();
    for m in selector.matchers {
        debug_assert_eq!(m.op, MatchOp::Eq);
        if m.name.len() > limits.max_label_bytes || m.value.len() > limits.max_label_bytes {
            return Err(param_error(
                "name",
                format!("label `{}` is longer than {} bytes", m.name, limits.max_label_bytes),
            ));
        }
        labels.insert(m.name, m.value);
    }
    let profile_type = selector.profile_type.unwrap_or_else(|| type_from_units(units, aggregation));
    let app = strip_repeated_type(selector.app, &profile_type);
    Ok(SeriesKey::new(app, profile_type, labels))
}

/// `agenttest.cpu.cpu` is the application `agenttest`: the Rust agent 0.5 with the folded
/// encoding appends its backend's type to the configured name, which by Pyroscope's convention
/// already ends in the type (`agenttest.cpu`), while the same agent sending pprof keeps the
/// name as configured. Pyroscope 1.x reads the last dot segment as the type and the rest as the
/// service, so both encodings land in one service there; Kiln also drops the type that the
/// name carries, so it drops the repeated one too, and `query=agenttest.cpu` finds either.
fn strip_repeated_type(app: String, profile_type: &str) -> String {
    match app.strip_suffix(profile_type).and_then(|a| a.strip_suffix('.')) {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => app,
    }
}

/// Pyroscope's convention for names without a type: in-use memory is averaged, allocations
/// summed.
fn type_from_units(units: &str, aggregation: Aggregation) -> String {
    match (units, aggregation) {
        ("samples", _) => "cpu",
        ("objects", Aggregation::Average) => "inuse_objects",
        ("objects", Aggregation::Sum) => "alloc_objects",
        ("bytes", Aggregation::Average) => "inuse_space",
        ("bytes", Aggregation::Sum) => "alloc_space",
        ("goroutines", _) => "goroutines",
        ("lock_samples", _) => "mutex_count",
        ("lock_nanoseconds", _) => "mutex_duration",
        (other, _) => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timespec::IngestWindow;

    fn params(query: &str) -> IngestParams {
        serde_json::from_value(serde_json::Value::Object(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
        ))
        .unwrap()
    }

    fn meta(query: &str) -> Result<ProfileMeta, IngestError> {
        let params = params(query);
        // Small round times read better here; the window has its own test.
        let limits =
            IngestLimits { window: IngestWindow { oldest: 0, max_future_secs: 86_400 }, ..IngestLimits::default() };
        params.to_meta(&limits, 1_000)
    }

    #[test]
    fn times_outside_the_window_name_their_parameter() {
        let limits = IngestLimits::default();
        let now = 1_700_000_000;
        for (query, parameter) in [
            ("name=a&from=946684799&until=1700000000", "from"),
            ("name=a&until=1700090000", "until"),
            ("name=a&until=5", "until"),
            ("name=a&from=now-9223372036854775307", "from"),
        ] {
            match params(query).to_meta(&limits, now) {
                Err(IngestError::Malformed { detail: Some(d), .. }) => assert_eq!(d["parameter"], parameter, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_split_into_app_type_and_labels() {
        let m = meta("name=myapp.cpu{env=prod}&from=900&until=1000").unwrap();
        assert_eq!((m.series.app.as_str(), m.series.profile_type.as_str()), ("myapp", "cpu"));
        assert_eq!(m.series.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!((m.from, m.until, m.sample_rate), (900, 1000, 100));
        let dotted = meta("name=my.app&units=bytes&aggregationType=average").unwrap();
        assert_eq!((dotted.series.app.as_str(), dotted.series.profile_type.as_str()), ("my.app", "inuse_space"));
        assert_eq!((dotted.from, dotted.until), (1000, 1000));
    }

    #[test]
    fn a_type_repeated_by_the_agent_is_dropped_once_more() {
        let folded = meta("name=agenttest.cpu.cpu{env=test}&format=folded").unwrap();
        let pprof = meta("name=agenttest.cpu&format=pprof").unwrap();
        assert_eq!((folded.series.app.as_str(), folded.series.profile_type.as_str()), ("agenttest", "cpu"));
        assert_eq!((pprof.series.app.as_str(), pprof.series.profile_type.as_str()), ("agenttest", "cpu"));
        // Only the same type twice: a different inner segment is part of the application.
        let other = meta("name=my.wall.cpu").unwrap();
        assert_eq!((other.series.app.as_str(), other.series.profile_type.as_str()), ("my.wall", "cpu"));
        // A name that is nothing but the type stays an application name.
        let bare = meta("name=cpu.cpu").unwrap();
        assert_eq!((bare.series.app.as_str(), bare.series.profile_type.as_str()), ("cpu", "cpu"));
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (query, parameter) in [
            ("from=1", "name"),
            ("name=a{b=c}}{", "name"),
            ("name=a&from=later", "from"),
            ("name=a&from=2000&until=1000", "from"),
            ("name=a&sampleRate=-5", "sampleRate"),
            ("name=a&aggregationType=max", "aggregationType"),
            ("name=a{x=~y}", "name"),
        ] {
            match meta(query) {
                Err(IngestError::Malformed { detail: Some(d), .. }) => assert_eq!(d["parameter"], parameter, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
