//! Safari's timeline recordings: what Web Inspector's Timelines tab exports ("Export", a
//! `.json` recording), `{"version": 1, "recording": {…}}`. Its JavaScript samples are
//! `recording.sampleStackTraces`, each a `timestamp` (seconds) and `stackFrames` leaf first
//! (`name`, `url`, `line`, `column`), and `recording.sampleDurations`, how long each sample
//! stands for (seconds). The rest of the recording (network, layout, rendering records) is not
//! read.
//!
//! Read into one profile, the recording's `displayName`, in nanoseconds, with its time order.
//! Frames are named as V8 profiles' are ([`crate::cpuprofile`]): the function, or
//! `(anonymous) url:line` for a function without a name.

use serde::Deserialize;

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "safari";

#[derive(Deserialize)]
struct File {
    recording: Recording,
}

#[derive(Deserialize)]
struct Recording {
    #[serde(rename = "displayName", default)]
    display_name: String,
    #[serde(rename = "sampleStackTraces", default)]
    samples: Vec<Sample>,
    #[serde(rename = "sampleDurations", default)]
    durations: Vec<f64>,
}

#[derive(Deserialize)]
struct Sample {
    timestamp: f64,
    #[serde(rename = "stackFrames", default)]
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    line: Option<u64>,
}

/// True when `bytes` are a JSON object starting like a Safari recording: `recording` with its
/// `instrumentTypes` or samples.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let has = |key: &[u8]| memchr::memmem::find(head, key).is_some();
    crate::speedscope::looks_like_json(bytes)
        && has(b"\"recording\"")
        && (has(b"\"instrumentTypes\"") || has(b"\"sampleStackTraces\""))
}

/// Reads a Safari timeline recording. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// A frame's name: its function, or where an anonymous one is.
fn frame_name(frame: &Frame) -> String {
    match (frame.name.as_str(), frame.url.as_str(), frame.line) {
        ("", "", _) => "(anonymous)".into(),
        ("", url, Some(line)) => format!("(anonymous) {url}:{line}"),
        ("", url, None) => format!("(anonymous) {url}"),
        (name, _, _) => name.into(),
    }
}

/// Seconds as nanoseconds, when they are a time a profile can hold.
fn nanos(seconds: f64) -> Option<u64> {
    let nanos = (seconds * 1e9).round();
    (nanos.is_finite() && (0.0..1.8e19).contains(&nanos)).then_some(nanos as u64)
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let error = |reason: String| FormatError::new(NAME, reason);
    let file: File =
        serde_json::from_slice(bytes).map_err(|e| error(format!("not a Safari timeline recording: {e}")))?;
    let recording = file.recording;
    if recording.durations.len() != recording.samples.len() {
        return Err(error(format!(
            "recording.sampleStackTraces has {} samples but sampleDurations {} durations",
            recording.samples.len(),
            recording.durations.len()
        )));
    }
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let mut timed: Vec<(f64, NodeId, u64)> = Vec::with_capacity(recording.samples.len());
    let mut sum = 0u64;
    for (index, (sample, &duration)) in recording.samples.iter().zip(&recording.durations).enumerate() {
        let weight = nanos(duration)
            .ok_or_else(|| error(format!("sample {index} lasts {duration} s, not a duration Kiln can add up")))?;
        if !sample.timestamp.is_finite() {
            return Err(error(format!("sample {index}'s timestamp is not a number")));
        }
        budget.spend_frames(sample.frames.len() as u64 + 1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let mut node = ROOT;
        for frame in sample.frames.iter().rev().take(max_depth) {
            node = tree.child(node, &frame_name(frame));
        }
        budget.spend_growth(&tree, &mut mark).map_err(|e| FormatError::exhausted(NAME, e))?;
        if node == ROOT {
            continue; // A sample without a stack: nothing ran.
        }
        sum =
            sum.checked_add(weight).ok_or_else(|| error("the samples add up beyond 64 bits of nanoseconds".into()))?;
        tree.add_self(node, weight);
        timed.push((sample.timestamp, node, weight));
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let origin = timed.first().map_or(0.0, |t| t.0);
    let mut order = TimeOrder::default();
    for (time, node, weight) in timed {
        order.push(node, nanos(time - origin).unwrap_or(u64::MAX), weight);
    }
    let name = if recording.display_name.is_empty() { "recording".to_string() } else { recording.display_name };
    let parts = if tree.is_empty() {
        Vec::new()
    } else {
        vec![Part { name, units: "nanoseconds".into(), tree, time_order: Some(order) }]
    };
    Ok(ProfileSet { split: Split::Threads, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn recording(samples: &str, durations: &str) -> String {
        format!(
            r#"{{"version": 1, "recording": {{"displayName": "Timeline Recording 1", "startTime": 4.1, "endTime": 6.7,
            "instrumentTypes": ["timeline-record-type-script"], "records": [], "markers": [],
            "sampleStackTraces": {samples}, "sampleDurations": {durations}}}, "overview": {{}}}}"#
        )
    }

    const FRAMES: &str = r#"[{"sourceID": "8", "name": "gamma", "line": 20, "column": 15, "url": "file:///s.js"},
        {"sourceID": "8", "name": "", "line": 14, "column": 15, "url": "file:///s.js"},
        {"sourceID": "8", "name": "(program)", "line": 1, "column": 1, "url": "file:///s.js"}]"#;

    #[test]
    fn samples_weigh_their_durations_and_keep_their_times() {
        let samples = format!(
            r#"[{{"timestamp": 4.5, "stackFrames": {FRAMES}}}, {{"timestamp": 4.502, "stackFrames": []}},
                {{"timestamp": 4.501, "stackFrames": [{{"name": "alpha", "url": "", "line": 1}}]}}]"#
        );
        let file = recording(&samples, "[0.001, 0.001, 0.0005]");
        assert!(looks_like(file.as_bytes()));
        let set = parse(file.as_bytes(), 64).unwrap();
        assert_eq!((set.parts[0].name.as_str(), set.parts[0].units.as_str()), ("Timeline Recording 1", "nanoseconds"));
        assert_eq!(
            folded::print(&set.parts[0].tree.to_flat()),
            "(program);(anonymous) file:///s.js:14;gamma 1000000\nalpha 500000\n"
        );
        let order = set.parts[0].time_order.as_ref().unwrap();
        let seen: Vec<(u64, u64)> = order.samples.iter().map(|s| (s.start, s.weight)).collect();
        assert_eq!(seen, [(0, 1_000_000), (1_000_000, 500_000)]);
        assert_eq!(parse(file.as_bytes(), 1).unwrap().parts[0].tree.node_count(), 3, "cut to their roots");
    }

    #[test]
    fn broken_recordings_name_the_format_and_what_is_wrong() {
        let one = format!(r#"[{{"timestamp": 1, "stackFrames": {FRAMES}}}]"#);
        for (file, says) in [
            (recording(&one, "[0.001, 0.002]"), "1 samples but sampleDurations 2 durations"),
            (recording(&one, "[-1]"), "sample 0 lasts -1 s"),
            (recording(&one, "[1e300]"), "sample 0 lasts"),
            (recording(r#"[{"timestamp": "soon"}]"#, "[1]"), "not a Safari timeline recording"),
            (recording(&one, "[1]")[..60].to_string(), "not a Safari timeline recording"),
        ] {
            let e = parse(file.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{says}: {e}");
        }
        let many = format!("[{}]", vec![format!(r#"{{"timestamp": 1, "stackFrames": {FRAMES}}}"#); 2000].join(","));
        let file = recording(&many, &format!("[{}]", vec!["0.001"; 2000].join(",")));
        let e = parse_budgeted(file.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_samples_never_panic(samples in proptest::collection::vec((-5.0f64..5.0, 0usize..4, -1.0f64..1.0), 0..20)) {
            let names = ["a", "", "b", "c"];
            let traces: Vec<String> = samples
                .iter()
                .map(|(time, depth, _)| {
                    let frames: Vec<String> =
                        (0..*depth).map(|i| format!(r#"{{"name": "{}", "url": "u", "line": {i}}}"#, names[i])).collect();
                    format!(r#"{{"timestamp": {time}, "stackFrames": [{}]}}"#, frames.join(","))
                })
                .collect();
            let durations: Vec<String> = samples.iter().map(|(_, _, d)| d.to_string()).collect();
            let file = recording(&format!("[{}]", traces.join(",")), &format!("[{}]", durations.join(",")));
            if let Ok(set) = parse(file.as_bytes(), 2) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                    let order = part.time_order.as_ref().unwrap();
                    prop_assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
                }
            }
        }
    }
}
