//! speedscope's JSON file format (<https://www.speedscope.app/file-format-schema.json>) read
//! into call trees.
//!
//! A file holds shared frames and one or more profiles (typically one per thread):
//! - `"sampled"`: `samples` are stacks of frame indexes, root first, each weighed by the
//!   `weights` entry at the same position;
//! - `"evented"`: `O`pen and `C`lose events at increasing times; the time between two events
//!   is self time of the stack open in between.
//!
//! Frames are named by their `name` alone (as Kiln names pprof functions), so two frames with
//! one name in different files are one frame here. Time units become nanoseconds, `bytes`
//! stays bytes and `none` is samples. Every profile of a file is read; profiles with one name
//! merge. Anything malformed (bad JSON, an index out of range, a negative weight, events that
//! close what is not open or go back in time) is an error naming what and where.
//!
//! Each frame name is hashed once per profile (frames are then known by index), so a long name
//! repeated in millions of samples or events costs what its index costs; with a
//! [`DecodeBudget`], frames walked and nodes made are bounded by the file's size.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use crate::budget::{DecodeBudget, Exhausted, TreeSize};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// Kiln's unit for samples counted without one (speedscope's `none`).
pub const SAMPLES: &str = "samples";

/// What is wrong with a speedscope file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Index of the profile at fault, if one is.
    pub profile: Option<usize>,
    /// What is wrong.
    pub reason: String,
    /// Set when the file is well-formed but expands beyond the decode budget.
    pub exhausted: Option<Exhausted>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.profile {
            Some(p) => write!(f, "profile {p}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for Error {}

/// One profile of a file, as a tree.
#[derive(Debug, Clone)]
pub struct NamedTree {
    /// The profile's `name` (often a thread), empty when it has none.
    pub name: String,
    /// Its samples.
    pub tree: CallTree,
    /// Its samples in time order, for an evented profile (stacks are nodes of `tree`); not
    /// kept when profiles of one name merge.
    pub time_order: Option<TimeOrder>,
}

/// A speedscope file read into trees, one per distinct profile name, in file order.
#[derive(Debug, Clone)]
pub struct Speedscope {
    /// Kiln's unit for every value: `nanoseconds`, `bytes` or `samples`.
    pub units: &'static str,
    /// The profiles; profiles that share a name are merged into one entry.
    pub profiles: Vec<NamedTree>,
}

impl Speedscope {
    /// Every profile merged into one tree.
    pub fn merged(&self) -> CallTree {
        let mut profiles = self.profiles.iter();
        let Some(first) = profiles.next() else {
            return CallTree::new();
        };
        let mut tree = first.tree.clone();
        for p in profiles {
            tree.merge_flat(&p.tree.to_flat());
        }
        tree
    }
}

#[derive(Deserialize)]
struct File {
    shared: Shared,
    profiles: Vec<Profile>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    name: String,
}

/// Both profile kinds in one struct: an internally tagged enum would make serde buffer the
/// whole profile before reading it.
#[derive(Deserialize)]
struct Profile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    unit: String,
    #[serde(rename = "startValue", default)]
    start_value: f64,
    #[serde(rename = "endValue", default)]
    end_value: f64,
    samples: Option<Stacks>,
    weights: Option<Vec<f64>>,
    events: Option<Vec<Event>>,
}

/// `samples`, read into two flat arrays: a `Vec` per sample would make a file of short
/// samples (`[3],` is 4 bytes) take 8 times its size in memory.
#[derive(Default)]
struct Stacks {
    /// Every sample's frame indexes, one after the other.
    frames: Vec<u32>,
    /// Where each sample ends in `frames`.
    ends: Vec<usize>,
}

impl Stacks {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u32]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(start, end)| &self.frames[start..end])
    }
}

impl<'de> Deserialize<'de> for Stacks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(StacksVisitor)
    }
}

struct StacksVisitor;

impl<'de> Visitor<'de> for StacksVisitor {
    type Value = Stacks;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of samples (arrays of frame indexes)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stacks, A::Error> {
        let mut stacks = Stacks::default();
        while seq.next_element_seed(Stack(&mut stacks.frames))?.is_some() {
            stacks.ends.push(stacks.frames.len());
        }
        Ok(stacks)
    }
}

/// One sample, appended to the flat array.
struct Stack<'a>(&'a mut Vec<u32>);

impl<'de> DeserializeSeed<'de> for Stack<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Stack<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sample: an array of frame indexes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(index) = seq.next_element::<u32>()? {
            self.0.push(index);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Event {
    /// `O` or `C`: a `char`, not a `String` allocated per event.
    #[serde(rename = "type")]
    kind: char,
    at: f64,
    frame: u32,
}

/// Kiln's unit and the factor from speedscope's.
fn unit(name: &str) -> Option<(&'static str, f64)> {
    Some(match name {
        "nanoseconds" => ("nanoseconds", 1.0),
        "microseconds" => ("nanoseconds", 1e3),
        "milliseconds" => ("nanoseconds", 1e6),
        "seconds" => ("nanoseconds", 1e9),
        "bytes" => ("bytes", 1.0),
        "none" => (SAMPLES, 1.0),
        _ => return None,
    })
}

/// True when `bytes` look like JSON (an object), whitespace aside: cheap to tell from folded
/// text, pprof and raw profiler output before parsing.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Reads a speedscope file. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Speedscope, Error> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<Speedscope, Error> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| Error {
        profile: None,
        reason: format!("not a speedscope file: {e}"),
        exhausted: None,
    })?;
    let frames = &file.shared.frames;
    let mut units: Option<&'static str> = None;
    let mut profiles: Vec<NamedTree> = Vec::new();
    // Name id of each frame in the profile being read, valid when stamped with its index + 1:
    // one table for the whole file, never cleared.
    let mut name_ids: Vec<(u32, u32)> = vec![(0, 0); frames.len()];
    for (index, profile) in file.profiles.iter().enumerate() {
        let fail = |reason: String| Error { profile: Some(index), reason, exhausted: None };
        let (kiln_unit, factor) = unit(&profile.unit).ok_or_else(|| {
            fail(format!(
                "unknown unit `{}`; speedscope's are none, nanoseconds, microseconds, milliseconds, seconds, bytes",
                profile.unit
            ))
        })?;
        match units {
            None => units = Some(kiln_unit),
            Some(u) if u != kiln_unit => {
                return Err(fail(format!("unit `{}` does not mix with the other profiles' ({u})", profile.unit)));
            }
            Some(_) => {}
        }
        let tree = CallTree::new();
        let mut reader = Reader {
            frames,
            max_depth,
            factor,
            stamp: index as u32 + 1,
            name_ids: &mut name_ids,
            mark: TreeSize::of(&tree),
            tree,
            budget,
            order: None,
        };
        match profile.kind.as_str() {
            "sampled" => reader.sampled(profile),
            "evented" => reader.evented(profile),
            other => {
                Err(Failure::Malformed(format!("unknown profile type `{other}`; expected `sampled` or `evented`")))
            }
        }
        .map_err(|f| match f {
            Failure::Malformed(reason) => fail(reason),
            Failure::Exhausted(e) => Error { profile: Some(index), reason: e.to_string(), exhausted: Some(e) },
        })?;
        let (tree, time_order) = (reader.tree, reader.order);
        match profiles.iter_mut().find(|p| p.name == profile.name) {
            Some(same) => {
                same.tree.merge_flat(&tree.to_flat());
                // The merged tree's nodes are not the ones the orders name.
                same.time_order = None;
            }
            None => profiles.push(NamedTree { name: profile.name.clone(), tree, time_order }),
        }
    }
    Ok(Speedscope { units: units.unwrap_or(SAMPLES), profiles })
}

/// Why a profile could not be read.
enum Failure {
    Malformed(String),
    Exhausted(Exhausted),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Malformed(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Failure::Malformed(reason.to_string())
    }
}

impl From<Exhausted> for Failure {
    fn from(e: Exhausted) -> Self {
        Failure::Exhausted(e)
    }
}

/// Reads one profile into its tree.
struct Reader<'a> {
    frames: &'a [Frame],
    max_depth: usize,
    factor: f64,
    stamp: u32,
    name_ids: &'a mut [(u32, u32)],
    tree: CallTree,
    mark: TreeSize,
    budget: &'a mut DecodeBudget,
    /// The evented profile's self time in time order.
    order: Option<TimeOrder>,
}

impl Reader<'_> {
    fn frame_error(&self, index: u32) -> String {
        format!("frame index {index} is out of range (the file has {} frames)", self.frames.len())
    }

    /// The tree's name id of frame `index`, its name hashed only the first time.
    #[inline]
    fn name_id(&mut self, index: u32) -> Result<u32, String> {
        let slot = self.name_ids.get_mut(index as usize).ok_or_else(|| {
            format!("frame index {index} is out of range (the file has {} frames)", self.frames.len())
        })?;
        if slot.0 != self.stamp {
            *slot = (self.stamp, self.tree.intern(&self.frames[index as usize].name));
        }
        Ok(slot.1)
    }

    /// The child of `parent` for frame `index`, with what it costs spent.
    #[inline]
    fn child(&mut self, parent: NodeId, index: u32) -> Result<NodeId, Failure> {
        let name = self.name_id(index)?;
        let child = self.tree.child_by_name_id(parent, name);
        self.budget.spend_growth(&self.tree, &mut self.mark)?;
        Ok(child)
    }

    /// `value` in Kiln's unit, checked.
    fn scaled(&self, value: f64, what: impl Fn() -> String) -> Result<u64, String> {
        if value.is_nan() || value < 0.0 {
            return Err(format!("{} is negative or not a number ({value})", what()));
        }
        let scaled = (value * self.factor).round();
        // u64::MAX as f64 rounds up to 2^64, which does not fit: compare with `<`.
        if !scaled.is_finite() || scaled >= u64::MAX as f64 {
            return Err(format!("{} is too large ({value})", what()));
        }
        Ok(scaled as u64)
    }

    fn sampled(&mut self, profile: &Profile) -> Result<(), Failure> {
        let samples = profile.samples.as_ref().ok_or("a sampled profile needs `samples`")?;
        let weights = profile.weights.as_deref();
        if let Some(w) = weights
            && w.len() != samples.len()
        {
            return Err(format!("{} samples but {} weights", samples.len(), w.len()).into());
        }
        for (i, stack) in samples.iter().enumerate() {
            let value = match weights {
                Some(w) => self.scaled(w[i], || format!("weight {i}"))?,
                None => 1,
            };
            let kept = &stack[..stack.len().min(self.max_depth)];
            self.budget.spend_frames(kept.len() as u64)?;
            let mut node = ROOT;
            for &frame in kept {
                node = self.child(node, frame).map_err(|f| match f {
                    Failure::Malformed(e) => Failure::Malformed(format!("sample {i}: {e}")),
                    other => other,
                })?;
            }
            // Deeper frames are dropped but must still exist.
            if let Some(&frame) = stack[kept.len()..].iter().find(|&&f| f as usize >= self.frames.len()) {
                return Err(format!("sample {i}: {}", self.frame_error(frame)).into());
            }
            self.tree.add_self(node, value);
        }
        Ok(())
    }

    fn evented(&mut self, profile: &Profile) -> Result<(), Failure> {
        let events = profile.events.as_deref().ok_or("an evented profile needs `events`")?;
        let start = events.first().map_or(profile.start_value, |e| e.at.min(profile.start_value));
        // Times are taken from the start before scaling, and self time is the difference of
        // scaled times: rounding never adds up along the profile.
        let time = |reader: &Self, at: f64, i: usize| reader.scaled(at - start, || format!("event {i}: `at`"));
        // Open frames and their nodes; beyond max_depth a frame keeps its parent's node.
        let mut open: Vec<(u32, NodeId)> = Vec::new();
        let mut last = 0u64;
        let mut order = TimeOrder::default();
        for (i, event) in events.iter().enumerate() {
            let now = time(self, event.at, i)?;
            if now < last {
                return Err(format!("event {i}: `at` {} is earlier than the event before it", event.at).into());
            }
            if let Some(&(_, node)) = open.last() {
                self.tree.add_self(node, now - last);
                order.push(node, last, now - last);
            }
            last = now;
            if event.frame as usize >= self.frames.len() {
                return Err(format!("event {i}: {}", self.frame_error(event.frame)).into());
            }
            match event.kind {
                'O' => {
                    let parent = open.last().map_or(ROOT, |&(_, n)| n);
                    let node = if open.len() < self.max_depth {
                        self.budget.spend_frames(1)?;
                        self.child(parent, event.frame)?
                    } else {
                        parent
                    };
                    open.push((event.frame, node));
                }
                'C' => match open.pop() {
                    Some((frame, _)) if frame == event.frame => {}
                    Some((frame, _)) => {
                        let name = &self.frames[event.frame as usize].name;
                        return Err(format!(
                            "event {i} closes frame {} (`{name}`) but frame {frame} is the one open",
                            event.frame
                        )
                        .into());
                    }
                    None => return Err(format!("event {i} closes frame {} but no frame is open", event.frame).into()),
                },
                other => return Err(format!("event {i}: unknown event type `{other}`; expected `O` or `C`").into()),
            }
        }
        // Frames still open at the end run until endValue.
        if let Some(&(_, node)) = open.last() {
            let end = time(self, profile.end_value.max(start), events.len())?;
            if end > last {
                self.tree.add_self(node, end - last);
                order.push(node, last, end - last);
            }
        }
        self.order = Some(order);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;

    fn folded_of(tree: &CallTree) -> String {
        folded::print(&tree.to_flat())
    }

    fn read(json: &str) -> Result<Speedscope, Error> {
        parse(json.as_bytes(), 1024)
    }

    const FRAMES: &str =
        r#""shared": {"frames": [{"name": "main", "file": "a.py", "line": 1}, {"name": "work"}, {"name": "io"}]}"#;

    #[test]
    fn sampled_stacks_are_root_first_and_weighted() {
        let file = format!(
            r#"{{"$schema": "https://www.speedscope.app/file-format-schema.json", {FRAMES},
                "profiles": [{{"type": "sampled", "name": "t", "unit": "milliseconds", "startValue": 0,
                "endValue": 4, "samples": [[0, 1], [0, 1, 2], [0, 1]], "weights": [1, 2.5, 0.5]}}],
                "activeProfileIndex": 0, "exporter": "test", "name": "x"}}"#
        );
        let s = read(&file).unwrap();
        assert_eq!(s.units, "nanoseconds");
        assert_eq!(s.profiles.len(), 1);
        assert_eq!(folded_of(&s.merged()), "main;work 1500000\nmain;work;io 2500000\n");
    }

    #[test]
    fn evented_profiles_give_self_time_between_events() {
        // main [0, 10): work [2, 7) which calls io [3, 5); main alone 0-2 and 7-10.
        let file = format!(
            r#"{{{FRAMES}, "profiles": [{{"type": "evented", "name": "t", "unit": "none", "startValue": 0,
                "endValue": 10, "events": [
                {{"type": "O", "at": 0, "frame": 0}}, {{"type": "O", "at": 2, "frame": 1}},
                {{"type": "O", "at": 3, "frame": 2}}, {{"type": "C", "at": 5, "frame": 2}},
                {{"type": "C", "at": 7, "frame": 1}}, {{"type": "C", "at": 10, "frame": 0}}]}}]}}"#
        );
        let s = read(&file).unwrap();
        assert_eq!(s.units, "samples");
        assert_eq!(folded_of(&s.merged()), "main 5\nmain;work 3\nmain;work;io 2\n");
        // Unclosed frames run to endValue; depth is truncated at the leaf end.
        let unclosed = file.replace(r#", {"type": "C", "at": 10, "frame": 0}"#, "");
        assert_eq!(folded_of(&read(&unclosed).unwrap().merged()), "main 5\nmain;work 3\nmain;work;io 2\n");
        let shallow = parse(file.as_bytes(), 1).unwrap();
        assert_eq!(folded_of(&shallow.merged()), "main 10\n");
        // The same self time in time order: main, work, io, work, main.
        let profile = &s.profiles[0];
        let flat = profile.tree.to_flat_mapped();
        let order = profile.time_order.as_ref().unwrap().to_flat(&flat.1);
        let path = |node: NodeId| flat.0.path_to(node).iter().map(|&n| flat.0.name_of(n)).collect::<Vec<_>>().join(";");
        let seen: Vec<(String, u64, u64)> = order.iter().map(|s| (path(s.stack), s.start, s.weight)).collect();
        let expect = [("main", 0, 2), ("main;work", 2, 1), ("main;work;io", 3, 2), ("main;work", 5, 2), ("main", 7, 3)];
        assert_eq!(seen, expect.map(|(p, s, w)| (p.to_string(), s, w)));
    }

    #[test]
    fn sampled_profiles_and_merged_names_keep_no_time_order() {
        let sampled = format!(
            r#"{{{FRAMES}, "profiles": [{{"type": "sampled", "name": "t", "unit": "none", "startValue": 0,
                "endValue": 1, "samples": [[0]], "weights": [1]}}]}}"#
        );
        assert!(read(&sampled).unwrap().profiles[0].time_order.is_none());
        let evented = r#"{"type": "evented", "name": "t", "unit": "none", "startValue": 0, "endValue": 1,
            "events": [{"type": "O", "at": 0, "frame": 0}, {"type": "C", "at": 1, "frame": 0}]}"#;
        let twice = format!(r#"{{{FRAMES}, "profiles": [{evented}, {evented}]}}"#);
        assert!(read(&twice).unwrap().profiles[0].time_order.is_none());
        let once = format!(r#"{{{FRAMES}, "profiles": [{evented}]}}"#);
        assert_eq!(read(&once).unwrap().profiles[0].time_order.as_ref().unwrap().samples.len(), 1);
    }

    #[test]
    fn profiles_keep_their_names_and_same_names_merge() {
        let file = format!(
            r#"{{{FRAMES}, "profiles": [
                {{"type": "sampled", "name": "a", "unit": "seconds", "startValue": 0, "endValue": 1, "samples": [[0]], "weights": [1]}},
                {{"type": "evented", "name": "b", "unit": "microseconds", "startValue": 0, "endValue": 3,
                  "events": [{{"type": "O", "at": 1, "frame": 1}}, {{"type": "C", "at": 3, "frame": 1}}]}},
                {{"type": "sampled", "name": "a", "unit": "nanoseconds", "startValue": 0, "endValue": 1, "samples": [[0, 2]], "weights": [7]}}]}}"#
        );
        let s = read(&file).unwrap();
        let names: Vec<&str> = s.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(folded_of(&s.profiles[0].tree), "main 1000000000\nmain;io 7\n");
        assert_eq!(folded_of(&s.profiles[1].tree), "work 2000\n");
        assert_eq!(s.merged().total(), 1_000_002_007);
    }

    #[test]
    fn malformed_files_say_what_and_where() {
        let sampled = |samples: &str, weights: &str| {
            format!(
                r#"{{{FRAMES}, "profiles": [{{"type": "sampled", "name": "t", "unit": "none", "startValue": 0,
                    "endValue": 1, "samples": {samples}, "weights": {weights}}}]}}"#
            )
        };
        let evented = |events: &str| {
            format!(
                r#"{{{FRAMES}, "profiles": [{{"type": "evented", "name": "t", "unit": "none", "startValue": 0,
                    "endValue": 1, "events": {events}}}]}}"#
            )
        };
        let cases: Vec<(String, Option<usize>, &str)> = vec![
            ("{".into(), None, "not a speedscope file"),
            ("[]".into(), None, "not a speedscope file"),
            (sampled("[[0, 3]]", "[1]"), Some(0), "sample 0: frame index 3 is out of range"),
            (sampled("[[0], [-1]]", "[1, 1]"), None, "not a speedscope file"),
            (sampled("[[0], [1]]", "[1, -2]"), Some(0), "weight 1 is negative"),
            (sampled("[[0], [1]]", "[1]"), Some(0), "2 samples but 1 weights"),
            (sampled("[[0]]", "[1e300]"), Some(0), "too large"),
            (sampled("[[0]]", "[NaN]"), None, "not a speedscope file"),
            (
                evented(r#"[{"type": "O", "at": 0, "frame": 0}, {"type": "C", "at": 1, "frame": 1}]"#),
                Some(0),
                "closes frame 1",
            ),
            (evented(r#"[{"type": "C", "at": 0, "frame": 0}]"#), Some(0), "no frame is open"),
            (
                evented(r#"[{"type": "O", "at": 5, "frame": 0}, {"type": "C", "at": 4, "frame": 0}]"#),
                Some(0),
                "earlier",
            ),
            (evented(r#"[{"type": "X", "at": 0, "frame": 0}]"#), Some(0), "unknown event type"),
            (evented(r#"[{"type": "O", "at": 0, "frame": 9}]"#), Some(0), "out of range"),
            (sampled("[[0]]", "[1]").replace(r#""unit": "none""#, r#""unit": "parsecs""#), Some(0), "unknown unit"),
            (
                sampled("[[0]]", "[1]").replace(r#""type": "sampled""#, r#""type": "spans""#),
                Some(0),
                "unknown profile type",
            ),
        ];
        for (file, profile, needle) in cases {
            let err = read(&file).unwrap_err();
            assert_eq!(err.profile, profile, "{file}: {err}");
            assert!(err.to_string().contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn units_must_agree_across_profiles() {
        let file = format!(
            r#"{{{FRAMES}, "profiles": [
                {{"type": "sampled", "name": "a", "unit": "bytes", "startValue": 0, "endValue": 1, "samples": [[0]], "weights": [1]}},
                {{"type": "sampled", "name": "b", "unit": "seconds", "startValue": 0, "endValue": 1, "samples": [[0]], "weights": [1]}}]}}"#
        );
        let err = read(&file).unwrap_err();
        assert_eq!(err.profile, Some(1));
        assert!(err.reason.contains("does not mix"), "{err}");
    }

    #[test]
    fn json_is_told_apart_from_other_formats() {
        assert!(looks_like_json(b"  \n{\"shared\": 1}"));
        assert!(!looks_like_json(b"main;a 1"));
        assert!(!looks_like_json(b"\x1f\x8b"));
    }
}
