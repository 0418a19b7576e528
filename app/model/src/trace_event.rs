//! Chrome's Trace Event format (<https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU>):
//! what Chrome's performance panel, `chrome://tracing`, Perfetto's JSON export and many tracers
//! write. A JSON array of events, or an object with them in `traceEvents`.
//!
//! Read per thread (`pid`, `tid`), in nanoseconds (`ts` and `dur` are microseconds):
//! - `B`/`E` and `X` (complete) events are spans: the time a span is open and no span inside it
//!   is, is self time of the stack of open spans. An `E` with nothing open (a trace started
//!   inside a span) is skipped; spans still open at the end run until the thread's last time; a
//!   span that outlives its parent is cut at the parent's end.
//! - `Profile` and `ProfileChunk` events carry V8 CPU-profile samples (nodes, samples,
//!   `timeDeltas`), read as a `.cpuprofile` ([`crate::cpuprofile`]) is, one profile per id.
//! - A `CpuProfile` event (Chrome DevTools' older performance-panel export) carries a whole V8
//!   profile in `args.data.cpuProfile`, one profile per event.
//!
//! Thread and process names come from `thread_name`/`process_name` metadata events. A file cut
//! short (Chrome writes the array incrementally: no closing `]`, a trailing comma) is read up
//! to its last whole event.
//!
//! The file is read in one pass, each event handed to the reader as it is parsed (a 100 MB
//! trace peaks at 150 MB with the file, against 1.2 GB as a list of events): names borrowed
//! from the file, `args` kept as raw JSON and read only for the events above that need them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::budget::{DecodeBudget, TreeSize};
use crate::cpuprofile::{self, Node};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::time_order::TimeOrder;
use crate::tree::{CallTree, NodeId, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "chrome_trace";

/// One event as read, its strings borrowed from the file where they have no escapes. `args`
/// stays raw JSON, read only for the few events that need it (metadata names, CPU profiles):
/// a span's arguments cost nothing but skipping them.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(default, borrow)]
    ph: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    pid: Key<'a>,
    #[serde(default, borrow)]
    tid: Key<'a>,
    ts: Option<f64>,
    dur: Option<f64>,
    #[serde(default, borrow)]
    id: Key<'a>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

/// A `pid`, `tid` or `id` as text, whatever JSON it is written as (numbers and strings alike:
/// `1` and `"1"` are the same thread), a string borrowed from the file.
#[derive(Default, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As a JSON number prints (`1.5`, `2.0`).
        Ok(Key(Cow::Owned(serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()))))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(if v { "true" } else { "false" })))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Key::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Key::default())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Key(Cow::Owned(value.to_string())))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Key(Cow::Owned(value.to_string())))
    }
}

/// The arguments Kiln reads: a metadata event's `name`, a CPU profile's `data`.
#[derive(Deserialize)]
struct Args<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// `args.data` of `Profile`, `ProfileChunk` and `CpuProfile` events.
#[derive(Deserialize)]
struct ProfileData<'a> {
    #[serde(rename = "startTime", default, borrow)]
    start_time: Option<&'a RawValue>,
    #[serde(rename = "cpuProfile", default, borrow)]
    cpu_profile: Option<&'a RawValue>,
    #[serde(rename = "timeDeltas", default, borrow)]
    time_deltas: Option<&'a RawValue>,
}

/// `args.data.cpuProfile` of a `ProfileChunk`: its nodes and samples, added to the profile's.
#[derive(Deserialize)]
struct ChunkProfile<'a> {
    #[serde(default, borrow)]
    nodes: Option<&'a RawValue>,
    #[serde(default, borrow)]
    samples: Option<&'a RawValue>,
}

/// `raw` as a `T`, or `None` when it is not one (arguments of another shape are not Kiln's).
fn lenient<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// True when `bytes` look like a trace: an array of objects with a `ph`, or an object with
/// `traceEvents`, within the first 4 KiB.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => memchr::memmem::find(head, b"\"ph\"").is_some(),
        Some(b'{') => memchr::memmem::find(head, b"\"traceEvents\"").is_some(),
        _ => false,
    }
}

/// Reads a trace. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// A file cut short, closed: trailing whitespace and commas dropped and the array closed.
/// (Only such a file needs it: an array that does not end in `]` never parses as it is.)
fn closed(bytes: &[u8]) -> Option<Vec<u8>> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'[' {
        return None;
    }
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace() && *b != b',')?;
    if bytes[end] == b']' {
        return None;
    }
    let mut fixed = bytes[..=end].to_vec();
    fixed.push(b']');
    Some(fixed)
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
///
/// One pass over the file: each event is read into the threads' spans (or a CPU profile) as
/// soon as it is parsed, never into a list of the whole file's events, and told apart as an
/// array or an object by the first byte (an untagged enum would buffer the whole file as a
/// generic tree before trying each shape).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let fixed = closed(bytes);
    let input = fixed.as_deref().unwrap_or(bytes);
    let mut reader = Reader::new(budget);
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let read = match input.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Traced(&mut reader).deserialize(&mut deserializer),
        _ => Events(&mut reader).deserialize(&mut deserializer),
    }
    .and_then(|()| deserializer.end());
    if let Some(failed) = reader.failed.take() {
        return Err(failed);
    }
    read.map_err(|e| FormatError::new(NAME, format!("not a trace (an array of events, or `traceEvents`): {e}")))?;
    reader.finish(max_depth)
}

/// A trace as an object: its events are `traceEvents`, any other field is skipped unread.
struct Traced<'r, 'a, 'b>(&'r mut Reader<'a, 'b>);

impl<'de, 'r, 'b> DeserializeSeed<'de> for Traced<'r, 'de, 'b> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'r, 'b> Visitor<'de> for Traced<'r, 'de, 'b> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `traceEvents`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            if field != "traceEvents" {
                map.next_value::<IgnoredAny>()?;
            } else if seen {
                return Err(de::Error::duplicate_field("traceEvents"));
            } else {
                map.next_value_seed(Events(&mut *self.0))?;
                seen = true;
            }
        }
        if seen { Ok(()) } else { Err(de::Error::missing_field("traceEvents")) }
    }
}

/// The array of events, each read as it is parsed.
struct Events<'r, 'a, 'b>(&'r mut Reader<'a, 'b>);

impl<'de, 'r, 'b> DeserializeSeed<'de> for Events<'r, 'de, 'b> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 'r, 'b> Visitor<'de> for Events<'r, 'de, 'b> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of trace events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(event) = seq.next_element::<Event<'de>>()? {
            if let Err(failed) = self.0.take(event) {
                // Stops the parse; the reader's error is the one reported.
                self.0.failed = Some(failed);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// A thread's key: `pid` and `tid` as written.
type ThreadKey<'a> = (Key<'a>, Key<'a>);

/// `ts` in nanoseconds, checked.
fn nanos(micros: f64, i: usize) -> Result<i64, FormatError> {
    let ns = (micros * 1000.0).round();
    if !ns.is_finite() || ns.abs() >= 9.2e18 {
        return Err(FormatError::new(
            NAME,
            format!("event {i}: time {micros} µs is not a number or beyond 64 bits of nanoseconds"),
        ));
    }
    Ok(ns as i64)
}

/// A span: its start and end in ns, its name, its position in the file.
struct Span<'a> {
    start: i64,
    end: i64,
    name: Cow<'a, str>,
    order: usize,
}

#[derive(Default)]
struct Thread<'a> {
    spans: Vec<Span<'a>>,
    /// Open `B` events: start, name, order.
    open: Vec<(i64, Cow<'a, str>, usize)>,
    last: i64,
}

/// A V8 profile spread over `Profile` and `ProfileChunk` events.
struct Chunks {
    pid: String,
    tid: String,
    start_time: Option<i64>,
    nodes: Vec<Node>,
    samples: Vec<u64>,
    deltas: Vec<i64>,
}

/// What the events read so far make: each thread's spans, names, CPU profiles.
struct Reader<'a, 'b> {
    budget: &'b mut DecodeBudget,
    /// Events read so far (the next one's index).
    count: usize,
    threads: HashMap<ThreadKey<'a>, Thread<'a>>,
    thread_names: HashMap<(String, String), String>,
    process_names: HashMap<String, String>,
    /// Profiles of `Profile`/`ProfileChunk` events, by id, in file order.
    profiles: Vec<(String, Chunks)>,
    /// Whole profiles of `CpuProfile` events (Chrome's older performance-panel export): pid,
    /// tid and the profile.
    whole: Vec<(String, String, cpuprofile::File)>,
    /// Why reading stopped, when an event was wrong rather than the JSON.
    failed: Option<FormatError>,
}

impl<'a, 'b> Reader<'a, 'b> {
    fn new(budget: &'b mut DecodeBudget) -> Self {
        Reader {
            budget,
            count: 0,
            threads: HashMap::new(),
            thread_names: HashMap::new(),
            process_names: HashMap::new(),
            profiles: Vec::new(),
            whole: Vec::new(),
            failed: None,
        }
    }

    /// Reads one event.
    fn take(&mut self, event: Event<'a>) -> Result<(), FormatError> {
        let i = self.count;
        self.count += 1;
        self.budget.spend_frames(1).map_err(|e| FormatError::exhausted(NAME, e))?;
        let Event { ph, name, pid, tid, ts, dur, id, args } = event;
        match &*ph {
            // Whatever its phase: Chrome wrote it as an instant event.
            _ if name == "CpuProfile" => {
                let data = lenient::<Args>(args).and_then(|a| lenient::<ProfileData>(a.data));
                if let Some(profile) = data.and_then(|d| d.cpu_profile) {
                    let file: cpuprofile::File = serde_json::from_str(profile.get())
                        .map_err(|e| FormatError::new(NAME, format!("event {i} (`CpuProfile`): `cpuProfile`: {e}")))?;
                    self.whole.push((pid.0.into_owned(), tid.0.into_owned(), file));
                }
            }
            "M" => {
                let label = lenient::<Args>(args).and_then(|a| a.name).unwrap_or_default().into_owned();
                match &*name {
                    "thread_name" => {
                        self.thread_names.insert((pid.0.into_owned(), tid.0.into_owned()), label);
                    }
                    "process_name" => {
                        self.process_names.insert(pid.0.into_owned(), label);
                    }
                    _ => {}
                }
            }
            "B" | "E" | "X" => {
                let at =
                    nanos(ts.ok_or_else(|| FormatError::new(NAME, format!("event {i} (`{ph}`) has no `ts`")))?, i)?;
                let thread = self.threads.entry((pid, tid)).or_default();
                match &*ph {
                    "B" => thread.open.push((at, name, i)),
                    "E" => {
                        // An end with nothing open began before the trace did.
                        if let Some((start, name, order)) = thread.open.pop() {
                            thread.spans.push(Span { start, end: at.max(start), name, order });
                        }
                    }
                    _ => {
                        let dur = dur.unwrap_or(0.0);
                        if dur.is_nan() || dur < 0.0 {
                            return Err(FormatError::new(
                                NAME,
                                format!("event {i} (`X`) has a negative or invalid `dur` ({dur})"),
                            ));
                        }
                        let end = nanos(ts.unwrap_or_default() + dur, i)?;
                        thread.spans.push(Span { start: at, end: end.max(at), name, order: i });
                        thread.last = thread.last.max(end);
                    }
                }
                thread.last = thread.last.max(at);
            }
            "P" | "I" | "i" if name == "Profile" || name == "ProfileChunk" => {
                let pid = pid.0.into_owned();
                let id = id.0.into_owned();
                let found = match self.profiles.iter().position(|(p, c)| *p == id && c.pid == pid) {
                    Some(found) => found,
                    None => {
                        self.profiles.push((
                            id,
                            Chunks {
                                pid,
                                tid: tid.0.to_string(),
                                start_time: None,
                                nodes: Vec::new(),
                                samples: Vec::new(),
                                deltas: Vec::new(),
                            },
                        ));
                        self.profiles.len() - 1
                    }
                };
                let chunks = &mut self.profiles[found].1;
                let data = lenient::<Args>(args).and_then(|a| lenient::<ProfileData>(a.data));
                if name == "Profile" {
                    chunks.tid = tid.0.into_owned();
                    chunks.start_time = data.and_then(|d| lenient::<i64>(d.start_time));
                    return Ok(());
                }
                let Some(data) = data else { return Ok(()) };
                let bad = |what: &str, e: serde_json::Error| {
                    FormatError::new(NAME, format!("event {i} (`{name}`): {what}: {e}"))
                };
                if let Some(profile) = lenient::<ChunkProfile>(data.cpu_profile) {
                    if let Some(nodes) = profile.nodes {
                        let nodes: Vec<Node> =
                            serde_json::from_str(nodes.get()).map_err(|e| bad("`cpuProfile.nodes`", e))?;
                        chunks.nodes.extend(nodes);
                    }
                    if let Some(samples) = profile.samples {
                        let samples: Vec<u64> =
                            serde_json::from_str(samples.get()).map_err(|e| bad("`cpuProfile.samples`", e))?;
                        chunks.samples.extend(samples);
                    }
                }
                if let Some(deltas) = data.time_deltas {
                    let deltas: Vec<i64> = serde_json::from_str(deltas.get()).map_err(|e| bad("`timeDeltas`", e))?;
                    chunks.deltas.extend(deltas);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The profiles of the events read: one per thread with spans, one per CPU profile.
    fn finish(self, max_depth: usize) -> Result<ProfileSet, FormatError> {
        let Reader { budget, threads, thread_names, process_names, profiles, whole, .. } = self;
        let thread_label = |pid: &str, tid: &str| {
            let process = process_names.get(pid).map_or_else(|| format!("pid {pid}"), |n| format!("{n} (pid {pid})"));
            match thread_names.get(&(pid.to_string(), tid.to_string())) {
                Some(name) => format!("{process} {name} (tid {tid})"),
                None => format!("{process} tid {tid}"),
            }
        };
        // Threads in the order of their ids as text.
        let threads: BTreeMap<_, _> = threads.into_iter().collect();
        let mut parts = Vec::new();
        for ((pid, tid), mut thread) in threads {
            let (tree, order) = spans_tree(&mut thread, max_depth, budget)?;
            if !tree.is_empty() {
                parts.push(Part {
                    name: thread_label(&pid.0, &tid.0),
                    units: "nanoseconds".into(),
                    tree,
                    time_order: Some(order),
                });
            }
        }
        let chunked = profiles.into_iter().map(|(id, chunks)| {
            let file = cpuprofile::File {
                nodes: chunks.nodes,
                start_time: chunks.start_time,
                end_time: None,
                samples: Some(chunks.samples),
                time_deltas: Some(chunks.deltas),
            };
            (id, chunks.pid, chunks.tid, file)
        });
        let whole = whole.into_iter().enumerate().map(|(n, (pid, tid, file))| (format!("#{}", n + 1), pid, tid, file));
        for (id, pid, tid, file) in chunked.chain(whole) {
            let (tree, units, time_order) = cpuprofile::read(&file, max_depth, budget)
                .map_err(|f| f.named(NAME))
                .map_err(|e| FormatError { reason: format!("CPU profile {id}: {}", e.reason), ..e })?;
            if !tree.is_empty() {
                parts.push(Part {
                    name: format!("CPU profile, {}", thread_label(&pid, &tid)),
                    units: units.into(),
                    tree,
                    time_order,
                });
            }
        }
        Ok(ProfileSet { split: Split::Threads, parts })
    }
}

/// One thread's spans into a tree of self time, and the same self time in time order (from the
/// thread's first span).
fn spans_tree(
    thread: &mut Thread,
    max_depth: usize,
    budget: &mut DecodeBudget,
) -> Result<(CallTree, TimeOrder), FormatError> {
    let exhausted = |e| FormatError::exhausted(NAME, e);
    // Spans still open end with the thread's last time.
    while let Some((start, name, order)) = thread.open.pop() {
        thread.spans.push(Span { start, end: thread.last.max(start), name, order });
    }
    // Outer spans first: by start, the longer first, then in file order.
    thread.spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.order.cmp(&b.order)));
    let mut tree = CallTree::new();
    let mut mark = TreeSize::of(&tree);
    let mut open: Vec<(i64, NodeId)> = Vec::new();
    let mut last = i64::MIN;
    let elapsed = |from: i64, to: i64| u64::try_from(i128::from(to) - i128::from(from)).unwrap_or(0);
    let origin = thread.spans.first().map_or(0, |s| s.start);
    let mut order = TimeOrder::default();
    let mut add_self = |tree: &mut CallTree, node: NodeId, from: i64, to: i64| {
        tree.add_self(node, elapsed(from, to));
        order.push(node, elapsed(origin, from), elapsed(from, to));
    };
    for span in &thread.spans {
        while let Some(&(end, node)) = open.last() {
            if end > span.start {
                break;
            }
            add_self(&mut tree, node, last, end);
            last = end;
            open.pop();
        }
        if let Some(&(_, node)) = open.last() {
            add_self(&mut tree, node, last, span.start);
        }
        last = span.start;
        let (end, parent) = open.last().map_or((span.end, ROOT), |&(end, node)| (span.end.min(end), node));
        budget.spend_frames(1).map_err(exhausted)?;
        let node = if open.len() < max_depth { tree.child(parent, &span.name) } else { parent };
        budget.spend_growth(&tree, &mut mark).map_err(exhausted)?;
        open.push((end, node));
    }
    while let Some((end, node)) = open.pop() {
        add_self(&mut tree, node, last, end);
        last = end;
    }
    Ok((tree, order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> Vec<(String, String)> {
        set.parts.iter().map(|p| (p.name.clone(), folded::print(&p.tree.to_flat()))).collect()
    }

    #[test]
    fn spans_give_self_time_per_thread() {
        // Thread 1: main [0, 10) with work [2, 7) (as B/E) holding io [3, 5) (as X); thread 2: one X.
        let trace = r#"[
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "Main"}},
            {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "app"}},
            {"ph": "X", "name": "main", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
            {"ph": "B", "name": "work", "pid": 1, "tid": 1, "ts": 2},
            {"ph": "X", "name": "io", "pid": 1, "tid": 1, "ts": 3, "dur": 2},
            {"ph": "E", "pid": 1, "tid": 1, "ts": 7},
            {"ph": "X", "name": "gc", "pid": 1, "tid": "2", "ts": 1, "dur": 0.5},
            {"ph": "E", "pid": 1, "tid": "2", "ts": 9}
        ]"#;
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(
            folded_of(&set),
            [
                ("app (pid 1) Main (tid 1)".to_string(), "main 5000\nmain;work 3000\nmain;work;io 2000\n".to_string()),
                ("app (pid 1) tid 2".to_string(), "gc 500\n".to_string()),
            ]
        );
        let (merged, units) = set.merged().unwrap();
        assert_eq!((merged.total(), units), (10_500, "nanoseconds"));
        // The same events under `traceEvents`, cut short with a trailing comma.
        let object = format!(r#"{{"traceEvents": {trace}}}"#);
        assert_eq!(folded_of(&parse(object.as_bytes(), 64).unwrap()), folded_of(&set));
        let cut = &trace[..trace.rfind(']').unwrap()];
        let cut = format!("{},\n", cut.trim_end());
        assert_eq!(folded_of(&parse(cut.as_bytes(), 64).unwrap()), folded_of(&set));
    }

    #[test]
    fn open_spans_run_to_the_threads_last_time_and_children_end_with_parents() {
        let trace = r#"[{"ph": "B", "name": "a", "pid": 1, "tid": 1, "ts": 0},
            {"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 1, "dur": 1},
            {"ph": "X", "name": "c", "pid": 1, "tid": 1, "ts": 2, "dur": 100},
            {"ph": "X", "name": "d", "pid": 1, "tid": 1, "ts": 50, "dur": 1},
            {"ph": "B", "name": "e", "pid": 1, "tid": 1, "ts": 100},
            {"ph": "X", "name": "f", "pid": 1, "tid": 1, "ts": 100, "dur": 200}]"#;
        // a runs to the last time (300); e and f start inside c and are cut at its end (102).
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 300_000);
        let printed = folded::print(&set.parts[0].tree.to_flat());
        assert!(printed.contains("a;c;d 1000\n"), "{printed}");
    }

    #[test]
    fn profile_chunks_are_cpu_profiles() {
        let trace = r#"{"traceEvents": [
            {"ph": "P", "name": "Profile", "id": "0x1", "pid": 7, "tid": 8, "ts": 0, "args": {"data": {"startTime": 100}}},
            {"ph": "P", "name": "ProfileChunk", "id": "0x1", "pid": 7, "tid": 9, "ts": 5, "args": {"data": {
                "cpuProfile": {"nodes": [{"id": 1, "callFrame": {"functionName": "(root)"}},
                                          {"id": 2, "callFrame": {"functionName": "main"}, "parent": 1}],
                               "samples": [2, 2]},
                "timeDeltas": [0, 10]}}},
            {"ph": "P", "name": "ProfileChunk", "id": "0x1", "pid": 7, "tid": 9, "ts": 6, "args": {"data": {
                "cpuProfile": {"nodes": [{"id": 3, "callFrame": {"functionName": "work"}, "parent": 2}], "samples": [3, 1]},
                "timeDeltas": [10, 5]}}}]}"#;
        let set = parse(trace.as_bytes(), 64).unwrap();
        // main 0-10 and 10-20, work 20-25, the last sample (root) weighs nothing.
        assert_eq!(
            folded_of(&set),
            [("CPU profile, pid 7 tid 8".to_string(), "main 20000\nmain;work 5000\n".to_string())]
        );
    }

    #[test]
    fn a_cpu_profile_event_is_a_whole_profile() {
        // Chrome's older performance-panel export: the profile in one `CpuProfile` event.
        let trace = r#"[{"ph": "M", "name": "thread_name", "pid": 3, "tid": 4, "args": {"name": "Main"}},
            {"ph": "I", "name": "CpuProfile", "pid": 3, "tid": 4, "ts": 9, "args": {"data": {"cpuProfile": {
                "nodes": [{"id": 1, "callFrame": {"functionName": "(root)"}, "children": [2]},
                          {"id": 2, "callFrame": {"functionName": "main"}, "children": [3]},
                          {"id": 3, "callFrame": {"functionName": "work"}}],
                "startTime": 100, "endTime": 130, "samples": [2, 3, 3], "timeDeltas": [0, 10, 5]}}}}]"#;
        let set = parse(trace.as_bytes(), 64).unwrap();
        // main 100-110, work 110-115 and 115-130.
        assert_eq!(
            folded_of(&set),
            [("CPU profile, pid 3 Main (tid 4)".to_string(), "main 10000\nmain;work 20000\n".to_string())]
        );
    }

    #[test]
    fn broken_traces_name_the_format_and_what_is_wrong() {
        let cases = [
            (r#"[{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0, "dur": -1}]"#, "negative or invalid `dur`"),
            (r#"[{"ph": "B", "name": "a", "pid": 1, "tid": 1}]"#, "has no `ts`"),
            (r#"[{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 1e300, "dur": 1}]"#, "beyond 64 bits"),
            (r#"{"traceEvents": [{"ph": "X", "name": "a", "ts": 0, "dur": 1}"#, "not a trace"),
            (r#"[{"ph": "X", "name": "a", "ts": 0, "du"#, "not a trace"),
            (r#"[{"ph": 7}]"#, "not a trace"),
            (
                r#"[{"ph": "P", "name": "ProfileChunk", "id": 1, "args": {"data": {"cpuProfile": {"nodes": 5}}}}]"#,
                "`cpuProfile.nodes`",
            ),
            (
                r#"[{"ph": "P", "name": "ProfileChunk", "id": 1, "args": {"data": {"cpuProfile": {"nodes": [], "samples": [4]}, "timeDeltas": [1]}}}]"#,
                "CPU profile 1: sample 0 is of node 4",
            ),
            (r#"[{"ph": "I", "name": "CpuProfile", "args": {"data": {"cpuProfile": {"nodes": 5}}}}]"#, "`cpuProfile`"),
            (
                r#"[{"ph": "I", "name": "CpuProfile", "args": {"data": {"cpuProfile": {"nodes": [], "samples": [4], "timeDeltas": [1]}}}}]"#,
                "CPU profile #1: sample 0 is of node 4",
            ),
        ];
        for (trace, needle) in cases {
            let err = parse(trace.as_bytes(), 64).unwrap_err();
            assert!(err.to_string().starts_with("chrome_trace: "), "{err}");
            assert!(err.reason.contains(needle), "{trace}: {err}");
        }
    }

    #[test]
    fn deep_and_many_spans_stay_within_bounds() {
        // 50 000 nested spans: no recursion, depth cut at 64, every nanosecond kept.
        let n = 50_000;
        let events: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"ph": "X", "name": "f{i}", "pid": 1, "tid": 1, "ts": {i}, "dur": {}}}"#, 2 * (n - i)))
            .collect();
        let trace = format!("[{}]", events.join(","));
        let set = parse(trace.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 2 * n as u64 * 1000);
        assert_eq!(set.parts[0].tree.node_count(), 65);
        let err = parse_budgeted(trace.as_bytes(), 64, &mut DecodeBudget::new(1, 1, 1)).unwrap_err();
        assert!(err.exhausted.is_some(), "{err}");
    }

    #[test]
    fn deep_args_and_ids_neither_recurse_nor_cost_a_tree() {
        // `args` are skipped unread, however deep; an id nested past JSON readers' limit is
        // refused, naming the format, never a stack overflow.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let trace = format!(r#"[{{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0, "dur": 1, "args": {deep}}}]"#);
        assert_eq!(parse(trace.as_bytes(), 64).unwrap().parts[0].tree.total(), 1000);
        let trace = format!(r#"[{{"ph": "X", "name": "a", "pid": {deep}, "tid": 1, "ts": 0, "dur": 1}}]"#);
        let err = parse(trace.as_bytes(), 64).unwrap_err();
        assert!(err.to_string().starts_with("chrome_trace: not a trace"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_spans_never_panic(
            spans in proptest::collection::vec((0u8..4, 0u8..3, -5.0f64..50.0, -1.0f64..30.0), 0..16),
        ) {
            let phases = ["B", "E", "X", "I"];
            let events: Vec<String> = spans
                .iter()
                .map(|&(ph, tid, ts, dur)| {
                    format!(r#"{{"ph": "{}", "name": "f{tid}", "pid": 1, "tid": {tid}, "ts": {ts}, "dur": {dur}}}"#, phases[ph as usize])
                })
                .collect();
            if let Ok(set) = parse(format!("[{}", events.join(",")).as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                }
            }
        }
    }
}
