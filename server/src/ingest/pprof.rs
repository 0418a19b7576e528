//! pprof (`perftools.profiles.Profile`, maybe gzipped) into [`Upload`]s.
//!
//! Read by `/ingest?format=pprof`, by the Go agent's multipart uploads and by the Connect push
//! endpoint, so every protocol names the same data the same way.
//!
//! **Profile types.** Each sample type of a profile is stored as its own series, under a Kiln
//! profile type chosen by this rule:
//!
//! 1. the sample type's name is looked up in the sample type table: the uploader's
//!    `sample_type_config` entries first, then [`default_config`]. A hit gives the Kiln type
//!    (`display-name`, else the name itself), the units and the aggregation;
//! 2. a name in neither table is stored under its own name with its pprof unit, summed;
//! 3. when several sample types land on the same Kiln type, the first one in the profile wins
//!    and the others are dropped (one series must not add samples to nanoseconds).
//!
//! The default table follows Pyroscope: `samples` (count) **and** `cpu` (nanoseconds) both
//! mean `cpu`, so a Go or pprof-rs CPU profile with `samples/count, cpu/nanoseconds` is stored
//! as `cpu` in samples, and pprof-rs 0.5's single `cpu/nanoseconds` as `cpu` in nanoseconds.
//! Either way `app.cpu` finds the CPU data.
//!
//! **Stacks.** A sample's location ids are leaf first; a location's lines are innermost first
//! (the last line is the caller the others were inlined into), so the root-first stack is the
//! whole leaf-first list reversed. A frame is its function's name, or the location's address
//! in hex when it has no lines. Stacks deeper than `max_stack_depth` lose their leaf end.
//!
//! **Series.** String labels of a sample (`label` with `str` set) are series labels; with the
//! labels the upload already names, they split one profile into several series. A label the
//! upload names explicitly wins over a sample label of the same name.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use serde::Deserialize;

use super::{IngestLimits, body};
use crate::api::AppError;
use crate::storage::{Aggregation, ProfileMeta, SeriesKey, Upload};
use kiln_model::CallTree;

/// `perftools.profiles.Profile`, the fields Kiln reads (prost skips the others).
#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    /// What each value of a sample measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Code locations, referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions, referenced by lines.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string, referenced by index; entry 0 is "". Bytes, not `string`, so that one
    /// badly encoded symbol does not cost the whole upload.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_table: Vec<Vec<u8>>,
    /// Start of the profile, Unix nanoseconds.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Length of the profile.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What `period` counts.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Distance between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
}

/// A (type, unit) pair of string-table indexes.
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    /// `cpu`, `alloc_space`, …
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// `nanoseconds`, `bytes`, …
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One stack with one value per sample type.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One per `Profile::sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels (string or numeric).
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample label.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Name (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index), 0 for numeric labels.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
}

/// A code location: an address with its (possibly inlined) lines.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Innermost first; the last line is the caller the others were inlined into.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// A source line in a location.
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    /// The function it belongs to.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function.
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable name (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
}

/// How one sample type is stored: the Go agent's `sample_type_config` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SampleTypeConfig {
    /// Units to record instead of the pprof unit.
    pub units: Option<String>,
    /// `sum` or `average`.
    pub aggregation: Option<String>,
    /// The Kiln profile type to store it under.
    #[serde(rename = "display-name")]
    pub display_name: Option<String>,
}

/// Sample type name → how to store it.
pub type SampleTypeConfigs = BTreeMap<String, SampleTypeConfig>;

/// Pyroscope's defaults: what a sample type means when the uploader says nothing.
pub fn default_config(name: &str) -> Option<SampleTypeConfig> {
    let entry = |units: &str, aggregation: &str, display: Option<&str>| SampleTypeConfig {
        units: Some(units.into()),
        aggregation: Some(aggregation.into()),
        display_name: display.map(Into::into),
    };
    Some(match name {
        "samples" => entry("samples", "sum", Some("cpu")),
        "cpu" => entry("nanoseconds", "sum", Some("cpu")),
        "inuse_objects" => entry("objects", "average", None),
        "inuse_space" => entry("bytes", "average", None),
        "alloc_objects" => entry("objects", "sum", None),
        "alloc_space" => entry("bytes", "sum", None),
        "goroutine" | "goroutines" => entry("goroutines", "average", Some("goroutines")),
        "contentions" => entry("lock_samples", "sum", Some("mutex_count")),
        "delay" => entry("lock_nanoseconds", "sum", Some("mutex_duration")),
        _ => return None,
    })
}

/// Where a profile's series go and what the upload already says about them.
#[derive(Debug, Clone)]
pub struct Destination<'a> {
    /// Application.
    pub app: &'a str,
    /// Labels every series gets.
    pub labels: &'a BTreeMap<String, String>,
    /// Time range (Unix s) when the request gives one; else the profile's own.
    pub range: Option<(i64, i64)>,
    /// Samples per second when the request gives it; else derived from the period.
    pub sample_rate: Option<u32>,
    /// The agent.
    pub spy_name: &'a str,
    /// The uploader's sample type table (applied before the defaults).
    pub config: &'a SampleTypeConfigs,
}

fn bad(message: impl Into<String>) -> AppError {
    AppError::bad_request(message)
}

/// Decodes `raw` (pprof, gzipped or not) into one upload per (sample type, label set).
pub fn uploads(raw: &[u8], dest: &Destination, limits: &IngestLimits, now: i64) -> Result<Vec<Upload>, AppError> {
    let unzipped;
    let bytes = if raw.starts_with(&body::GZIP_MAGIC) {
        unzipped = body::gunzip(raw, limits.max_decompressed_bytes)?;
        &unzipped[..]
    } else {
        raw
    };
    let profile = Profile::decode(bytes).map_err(|e| bad(format!("body is not a pprof profile: {e}")))?;
    let strings: Vec<String> = profile.string_table.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let string = |i: i64| -> Result<&str, AppError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .map(String::as_str)
            .ok_or_else(|| bad(format!("pprof string index {i} is outside the string table")))
    };

    let kinds = sample_kinds(&profile, dest.config, &string)?;
    let functions: HashMap<u64, &str> =
        profile.function.iter().map(|f| Ok((f.id, string(f.name)?))).collect::<Result<_, AppError>>()?;
    // Frames of each location, innermost first, so that a sample's frames are a concatenation.
    let mut locations: HashMap<u64, Vec<String>> = HashMap::with_capacity(profile.location.len());
    for loc in &profile.location {
        let frames = if loc.line.is_empty() {
            vec![format!("{:#x}", loc.address)]
        } else {
            loc.line
                .iter()
                .map(|line| {
                    functions
                        .get(&line.function_id)
                        .map(|name| name.to_string())
                        .ok_or_else(|| bad(format!("pprof line refers to missing function {}", line.function_id)))
                })
                .collect::<Result<_, _>>()?
        };
        locations.insert(loc.id, frames);
    }

    let mut trees: BTreeMap<(usize, BTreeMap<String, String>), (CallTree, u64)> = BTreeMap::new();
    let mut stack: Vec<&str> = Vec::new();
    for sample in &profile.sample {
        if sample.value.len() != profile.sample_type.len() {
            return Err(bad(format!(
                "pprof sample has {} values for {} sample types",
                sample.value.len(),
                profile.sample_type.len()
            )));
        }
        let mut labels = dest.labels.clone();
        for label in sample.label.iter().filter(|l| l.str != 0) {
            let (key, value) = (string(label.key)?, string(label.str)?);
            if key.len() > limits.max_label_bytes || value.len() > limits.max_label_bytes {
                return Err(bad(format!("pprof label `{key}` is longer than {} bytes", limits.max_label_bytes)));
            }
            labels.entry(key.to_string()).or_insert_with(|| value.to_string());
        }
        if labels.len() > limits.max_labels {
            return Err(bad(format!("a pprof sample has more than {} labels", limits.max_labels)));
        }
        stack.clear();
        for id in &sample.location_id {
            let frames =
                locations.get(id).ok_or_else(|| bad(format!("pprof sample refers to missing location {id}")))?;
            stack.extend(frames.iter().map(String::as_str));
        }
        stack.reverse();
        stack.truncate(limits.max_stack_depth);
        for kind in &kinds {
            let value = sample.value[kind.index];
            if value < 0 {
                return Err(bad(format!("pprof sample has a negative {} value ({value})", kind.profile_type)));
            }
            if value == 0 {
                continue;
            }
            let (tree, total) = trees.entry((kind.index, labels.clone())).or_insert_with(|| (CallTree::new(), 0));
            // The tree saturates; a total that overflows means the values are nonsense.
            *total = total
                .checked_add(value as u64)
                .ok_or_else(|| bad(format!("pprof {} values add up beyond 2^64", kind.profile_type)))?;
            tree.add_stack(stack.iter().copied(), value as u64);
        }
    }

    let (from, until) = dest.range.unwrap_or_else(|| profile_range(&profile, now));
    let sample_rate = dest.sample_rate.unwrap_or_else(|| sample_rate(&profile, &string));
    let by_index: HashMap<usize, &SampleKind> = kinds.iter().map(|k| (k.index, k)).collect();
    Ok(trees
        .into_iter()
        .map(|((index, labels), (tree, _))| {
            let kind = by_index[&index];
            Upload {
                meta: ProfileMeta {
                    series: SeriesKey::new(dest.app, kind.profile_type.clone(), labels),
                    from,
                    until,
                    units: kind.units.clone(),
                    sample_rate,
                    spy_name: dest.spy_name.to_string(),
                    aggregation: kind.aggregation,
                },
                tree: tree.to_flat(),
            }
        })
        .collect())
}

/// A sample type that will be stored, and how.
#[derive(Debug)]
struct SampleKind {
    index: usize,
    profile_type: String,
    units: String,
    aggregation: Aggregation,
}

fn sample_kinds<'s>(
    profile: &Profile,
    config: &SampleTypeConfigs,
    string: &impl Fn(i64) -> Result<&'s str, AppError>,
) -> Result<Vec<SampleKind>, AppError> {
    let mut kinds: Vec<SampleKind> = Vec::new();
    for (index, st) in profile.sample_type.iter().enumerate() {
        let (name, unit) = (string(st.r#type)?, string(st.unit)?);
        if name.is_empty() {
            return Err(bad(format!("pprof sample type {index} has no name")));
        }
        let entry = config.get(name).cloned().or_else(|| default_config(name)).unwrap_or_default();
        let aggregation = match entry.aggregation.as_deref() {
            None | Some("") | Some("sum") => Aggregation::Sum,
            Some("average") | Some("avg") => Aggregation::Average,
            Some(other) => {
                return Err(bad(format!("sample_type_config: aggregation `{other}` must be `sum` or `average`")));
            }
        };
        let profile_type = entry.display_name.filter(|d| !d.is_empty()).unwrap_or_else(|| name.to_string());
        if kinds.iter().any(|k| k.profile_type == profile_type) {
            continue;
        }
        let units = entry.units.filter(|u| !u.is_empty()).unwrap_or_else(|| unit.to_string());
        kinds.push(SampleKind { index, profile_type, units, aggregation });
    }
    Ok(kinds)
}

/// The profile's own time range in Unix seconds, or `now` when it has none.
fn profile_range(profile: &Profile, now: i64) -> (i64, i64) {
    if profile.time_nanos <= 0 {
        return (now, now);
    }
    let from = profile.time_nanos / 1_000_000_000;
    let until = profile.time_nanos.saturating_add(profile.duration_nanos.max(0)) / 1_000_000_000;
    (from, until.max(from))
}

/// Samples per second from a nanosecond period (what CPU profilers record), else 100.
fn sample_rate<'s>(profile: &Profile, string: &impl Fn(i64) -> Result<&'s str, AppError>) -> u32 {
    let nanoseconds = profile.period_type.as_ref().and_then(|p| string(p.unit).ok()) == Some("nanoseconds");
    if nanoseconds && profile.period > 0 {
        u32::try_from(1_000_000_000 / profile.period).unwrap_or(u32::MAX).max(1)
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaf-first function names, one value per sample type, string labels.
    type TestSample<'a> = (&'a [&'a str], &'a [i64], &'a [(&'a str, &'a str)]);

    /// Builds a pprof with one location and function per frame.
    fn profile(types: &[(&str, &str)], stacks: &[TestSample]) -> Vec<u8> {
        let mut strings: Vec<String> = vec![String::new()];
        let mut intern = |s: &str| -> i64 {
            if let Some(i) = strings.iter().position(|x| x == s) {
                return i as i64;
            }
            strings.push(s.to_string());
            strings.len() as i64 - 1
        };
        let sample_type = types.iter().map(|(t, u)| ValueType { r#type: intern(t), unit: intern(u) }).collect();
        let mut function = Vec::new();
        let mut location = Vec::new();
        let mut sample = Vec::new();
        for (frames, values, labels) in stacks {
            let mut ids = Vec::new();
            for frame in *frames {
                let id = location.len() as u64 + 1;
                function.push(Function { id, name: intern(frame) });
                location.push(Location { id, address: 0, line: vec![Line { function_id: id, line: 1 }] });
                ids.push(id);
            }
            let label = labels.iter().map(|(k, v)| Label { key: intern(k), str: intern(v), num: 0 }).collect();
            sample.push(Sample { location_id: ids, value: values.to_vec(), label });
        }
        Profile {
            sample_type,
            sample,
            location,
            function,
            string_table: strings.into_iter().map(String::into_bytes).collect(),
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
            period_type: None,
            period: 0,
        }
        .encode_to_vec()
    }

    fn decode(raw: &[u8], config: &SampleTypeConfigs) -> Result<Vec<Upload>, AppError> {
        let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let dest = Destination { app: "app", labels: &labels, range: None, sample_rate: None, spy_name: "t", config };
        uploads(raw, &dest, &IngestLimits { max_stack_depth: 3, ..IngestLimits::default() }, 5)
    }

    fn folded(upload: &Upload) -> Vec<String> {
        upload.tree.stacks().iter().map(|(frames, v)| format!("{} {v}", frames.join(";"))).collect()
    }

    #[test]
    fn stacks_are_reversed_and_sample_types_become_profile_types() {
        let raw = profile(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            &[(&["leaf", "main"], &[2, 20], &[]), (&["main"], &[1, 10], &[("region", "eu")])],
        );
        let got = decode(&raw, &SampleTypeConfigs::new()).unwrap();
        // `cpu/nanoseconds` lands on the same Kiln type as `samples/count`, which came first.
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|u| u.meta.series.profile_type == "cpu" && u.meta.units == "samples"));
        assert_eq!((got[0].meta.from, got[0].meta.until), (1_700_000_000, 1_700_000_010));
        assert_eq!(got[0].meta.series.labels.len(), 1);
        assert_eq!(folded(&got[0]), ["main;leaf 2"]);
        assert_eq!(got[1].meta.series.labels.get("region").map(String::as_str), Some("eu"));
        assert_eq!(folded(&got[1]), ["main 1"]);
    }

    #[test]
    fn inlined_lines_expand_innermost_last_and_depth_is_capped() {
        let mut p = Profile::decode(&profile(&[("cpu", "nanoseconds")], &[(&["a"], &[5], &[])])[..]).unwrap();
        let first = p.string_table.len() as i64;
        p.string_table.extend([b"inlined".to_vec(), b"caller".to_vec(), b"root".to_vec()]);
        p.function.extend([
            Function { id: 7, name: first },
            Function { id: 8, name: first + 1 },
            Function { id: 9, name: first + 2 },
        ]);
        p.location[0].line = vec![Line { function_id: 7, line: 1 }, Line { function_id: 8, line: 2 }];
        p.location.push(Location { id: 2, address: 0x10, line: vec![] });
        p.location.push(Location { id: 3, address: 0, line: vec![Line { function_id: 9, line: 1 }] });
        p.sample[0].location_id = vec![1, 2, 3];
        let got = decode(&p.encode_to_vec(), &SampleTypeConfigs::new()).unwrap();
        // root;0x10;caller;inlined, cut to three frames at the leaf end.
        assert_eq!(folded(&got[0]), ["root;0x10;caller 5"]);
    }

    #[test]
    fn sample_type_config_renames_and_averages() {
        let raw = profile(&[("space", "bytes")], &[(&["main"], &[64], &[])]);
        let config = SampleTypeConfigs::from([(
            "space".to_string(),
            SampleTypeConfig {
                units: Some("bytes".into()),
                aggregation: Some("average".into()),
                display_name: Some("inuse_space".into()),
            },
        )]);
        let got = decode(&raw, &config).unwrap();
        assert_eq!(got[0].meta.series.profile_type, "inuse_space");
        assert_eq!(got[0].meta.aggregation, Aggregation::Average);
        let plain = decode(&raw, &SampleTypeConfigs::new()).unwrap();
        assert_eq!((plain[0].meta.series.profile_type.as_str(), plain[0].meta.units.as_str()), ("space", "bytes"));
    }

    #[test]
    fn bad_profiles_are_refused() {
        let none = SampleTypeConfigs::new();
        assert!(decode(b"\x0a\xff\xff", &none).is_err());
        let negative = profile(&[("cpu", "nanoseconds")], &[(&["a"], &[-1], &[])]);
        assert!(decode(&negative, &none).is_err());
        let huge = profile(
            &[("cpu", "nanoseconds")],
            &[(&["a"], &[i64::MAX], &[]), (&["b"], &[i64::MAX], &[]), (&["c"], &[i64::MAX], &[])],
        );
        assert!(decode(&huge, &none).is_err());
        let short = profile(&[("cpu", "nanoseconds"), ("samples", "count")], &[(&["a"], &[1], &[])]);
        assert!(decode(&short, &none).is_err());
        let mut dangling = Profile::decode(&profile(&[("cpu", "nanoseconds")], &[(&["a"], &[1], &[])])[..]).unwrap();
        dangling.sample[0].location_id = vec![99];
        assert!(decode(&dangling.encode_to_vec(), &none).is_err());
    }
}
