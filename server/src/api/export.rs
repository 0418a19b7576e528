//! Export formats of `/render` and `/render-diff`: SVG flamegraphs (inferno), pprof and
//! speedscope.

use std::collections::HashMap;
use std::io::Write;

use inferno::flamegraph::{self, Direction, Palette};
use kiln_model::{FlatTree, folded};
use prost::Message;
use serde_json::{Value, json};

use super::AppError;
use crate::proto::{Function, Line, Location, Profile, Sample, ValueType};

/// Query parameters that shape an SVG flamegraph, shared by `/render` and `/render-diff`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SvgParams {
    title: Option<String>,
    inverted: Option<String>,
    reverse: Option<String>,
    colors: Option<String>,
    minwidth: Option<String>,
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, AppError> {
    match value {
        // `&inverted` alone means on.
        Some("" | "true" | "1") => Ok(true),
        None | Some("false" | "0") => Ok(false),
        Some(other) => Err(AppError::bad_request(format!("`{name}` must be true or false, not `{other}`"))),
    }
}

/// What `SvgParams` asks of inferno, checked.
#[derive(Debug)]
pub struct SvgOptions {
    title: Option<String>,
    inverted: bool,
    reverse: bool,
    colors: Option<Palette>,
    min_width: Option<f64>,
}

impl SvgParams {
    /// Checks every parameter; a bad one is a 400 naming it.
    pub fn options(&self) -> Result<SvgOptions, AppError> {
        let colors = match self.colors.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(name) => Some(name.parse::<Palette>().map_err(|_| {
                AppError::bad_request(format!(
                    "unknown `colors` `{name}`; supported: hot, mem, io, wakeup, java, js, perl, python, rust, red, \
                     green, blue, aqua, yellow, purple, orange"
                ))
            })?),
        };
        let min_width = match self.minwidth.as_deref().filter(|w| !w.is_empty()) {
            None => None,
            Some(w) => Some(w.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                AppError::bad_request(format!("`minwidth` must be a number of pixels ≥ 0, not `{w}`"))
            })?),
        };
        Ok(SvgOptions {
            title: self.title.clone().filter(|t| !t.is_empty()),
            inverted: flag("inverted", self.inverted.as_deref())?,
            reverse: flag("reverse", self.reverse.as_deref())?,
            colors,
            min_width,
        })
    }
}

/// Draws folded lines (`stack count`, or `stack before after` for a differential graph).
fn draw(lines: &str, options: &SvgOptions, default_title: &str, count_name: &str) -> Result<Vec<u8>, AppError> {
    // `Options` is non-exhaustive: start from the defaults and set fields.
    let mut inferno_options = flamegraph::Options::default();
    inferno_options.title = options.title.clone().unwrap_or_else(|| default_title.to_string());
    inferno_options.direction = if options.inverted { Direction::Inverted } else { Direction::Straight };
    inferno_options.reverse_stack_order = options.reverse;
    inferno_options.count_name = count_name.to_string();
    // The same query gives the same bytes (colours hashed from names, not random).
    inferno_options.hash = true;
    inferno_options.deterministic = true;
    if let Some(palette) = options.colors {
        inferno_options.colors = palette;
    }
    if let Some(width) = options.min_width {
        inferno_options.min_width = width;
    }
    let mut svg = Vec::new();
    let result = flamegraph::from_lines(&mut inferno_options, lines.lines(), &mut svg);
    match result {
        Ok(()) => Ok(svg),
        // Nothing in range: inferno has already written a well-formed SVG that says so, which
        // an <img> shows better than a JSON error.
        Err(_) if lines.trim().is_empty() => Ok(svg),
        Err(e) => Err(AppError::Internal(format!("flamegraph: {e}"))),
    }
}

/// A tree as an SVG flamegraph.
pub fn svg(tree: &FlatTree, options: &SvgOptions, title: &str, units: &str) -> Result<Vec<u8>, AppError> {
    draw(&folded::print(tree), options, title, units)
}

/// A comparison as inferno's differential flamegraph (shaped like the right side, coloured by
/// the change from the left).
pub fn svg_diff(
    left: &FlatTree,
    right: &FlatTree,
    options: &SvgOptions,
    title: &str,
    units: &str,
) -> Result<Vec<u8>, AppError> {
    let (before, after) = (folded::print(left), folded::print(right));
    let mut lines = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut lines,
    )
    .map_err(|e| AppError::Internal(format!("differential: {e}")))?;
    draw(&String::from_utf8_lossy(&lines), options, title, units)
}

/// What a pprof export says about its samples.
#[derive(Debug)]
pub struct PprofMeta<'a> {
    /// Kiln's profile type (the pprof sample type).
    pub profile_type: &'a str,
    /// The series' units (the pprof sample unit).
    pub units: &'a str,
    /// Samples per second, for CPU profiles counted in samples.
    pub sample_rate: u32,
    /// Unix seconds of the range's start, when the range was given.
    pub from: Option<i64>,
    /// Unix seconds of the range's end, when the range was given.
    pub until: Option<i64>,
}

/// A tree as a gzipped pprof profile ([`pprof_profile`]).
pub fn pprof(tree: &FlatTree, meta: &PprofMeta) -> Result<Vec<u8>, AppError> {
    let profile = pprof_profile(tree, meta);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())
        .and_then(|()| gz.finish())
        .map_err(|e| AppError::Internal(format!("gzip: {e}")))
}

/// A tree as a pprof profile: one sample per stack with self samples, one location and one
/// function per distinct frame name.
pub fn pprof_profile(tree: &FlatTree, meta: &PprofMeta) -> Profile {
    let mut strings: Vec<Vec<u8>> = vec![Vec::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str, strings: &mut Vec<Vec<u8>>| -> i64 {
        *string_ids.entry(s.to_string()).or_insert_with(|| {
            strings.push(s.as_bytes().to_vec());
            (strings.len() - 1) as i64
        })
    };
    let sample_type =
        ValueType { r#type: intern(meta.profile_type, &mut strings), unit: intern(meta.units, &mut strings) };
    let (period_type, period) = if meta.profile_type == "cpu" && meta.units == "samples" && meta.sample_rate > 0 {
        let cpu = intern("cpu", &mut strings);
        (
            ValueType { r#type: cpu, unit: intern("nanoseconds", &mut strings) },
            1_000_000_000 / i64::from(meta.sample_rate),
        )
    } else {
        (sample_type.clone(), 1)
    };

    // Location id = function id = 1 + the tree's name index; only names that appear are kept.
    let mut location_of_name: Vec<u64> = vec![0; tree.names.len()];
    let mut locations = Vec::new();
    let mut functions = Vec::new();
    let mut samples = Vec::new();
    let depths = tree.depths();
    let mut path: Vec<u64> = Vec::new();
    for i in 1..tree.len() {
        let name = tree.name[i] as usize;
        if location_of_name[name] == 0 {
            let id = locations.len() as u64 + 1;
            location_of_name[name] = id;
            let name_id = intern(&tree.names[name], &mut strings);
            functions.push(Function { id, name: name_id });
            locations.push(Location { id, address: 0, line: vec![Line { function_id: id, line: 0 }] });
        }
        path.truncate(depths[i] as usize - 1);
        path.push(location_of_name[name]);
        if tree.self_value[i] > 0 {
            samples.push(Sample {
                location_id: path.iter().rev().copied().collect(),
                value: vec![i64::try_from(tree.self_value[i]).unwrap_or(i64::MAX)],
                label: Vec::new(),
            });
        }
    }
    let time_nanos = meta.from.map_or(0, |s| s.saturating_mul(1_000_000_000));
    let duration_nanos = match (meta.from, meta.until) {
        (Some(from), Some(until)) => until.saturating_sub(from).saturating_mul(1_000_000_000),
        _ => 0,
    };
    Profile {
        sample_type: vec![sample_type],
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos,
        duration_nanos,
        period_type: Some(period_type),
        period,
    }
}

/// speedscope's unit for a series' units (`none` when it has no such unit).
fn speedscope_unit(units: &str) -> &'static str {
    match units {
        "nanoseconds" => "nanoseconds",
        "microseconds" => "microseconds",
        "milliseconds" => "milliseconds",
        "seconds" => "seconds",
        "bytes" => "bytes",
        _ => "none",
    }
}

/// A tree as a speedscope file with one "sampled" profile: one sample per stack, weighted by
/// its self value; frame indexes are the tree's name indexes.
pub fn speedscope(tree: &FlatTree, name: &str, units: &str) -> Value {
    let depths = tree.depths();
    let mut path: Vec<u32> = Vec::new();
    let mut stacks: Vec<Vec<u32>> = Vec::new();
    let mut weights: Vec<u64> = Vec::new();
    for i in 1..tree.len() {
        path.truncate(depths[i] as usize - 1);
        path.push(tree.name[i]);
        if tree.self_value[i] > 0 {
            stacks.push(path.clone());
            weights.push(tree.self_value[i]);
        }
    }
    let frames: Vec<Value> = tree.names.iter().map(|n| json!({ "name": n })).collect();
    json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "exporter": "kiln",
        "name": name,
        "activeProfileIndex": 0,
        "shared": { "frames": frames },
        "profiles": [{
            "type": "sampled",
            "name": name,
            "unit": speedscope_unit(units),
            "startValue": 0,
            "endValue": tree.total(),
            "samples": stacks,
            "weights": weights,
        }],
    })
}
