//! Java Flight Recorder recordings (`.jfr`), as OpenJDK (`java -XX:StartFlightRecording`,
//! `jcmd JFR.dump`) and async-profiler (inside the Java Pyroscope agent) write them.
//!
//! A recording is one or more chunks, each self-contained: a 68-byte header (`FLR\0`, version,
//! sizes and offsets, big-endian), then events, each `size` and `type id` followed by its
//! fields. Event type 0 is the chunk's metadata (every type's name and fields, as a tree of
//! elements over a string table), type 1 a checkpoint (constant pools: stack traces, methods,
//! classes, symbols, threads, … keyed by id, referenced from events and from each other).
//! Integers are LEB128-compressed when the header's feature bit 0 says so (a `long` takes at
//! most 9 bytes, the 9th whole), big-endian otherwise; strings carry their encoding (null,
//! empty, constant-pool reference, UTF-8, UTF-16 chars, Latin-1).
//!
//! Events become profiles the way Pyroscope's JFR ingest maps them (grafana/jfr-parser's
//! `pprof` package), each its own profile:
//!
//! | event | profiles (units) |
//! |---|---|
//! | `jdk.ExecutionSample` | `cpu` (samples), unless the thread was sleeping; also `wall` when async-profiler ran in wall-clock mode (`event=wall`) |
//! | `profiler.WallClockSample` (async-profiler) | `wall` (samples) |
//! | `jdk.NativeMethodSample` | `native` (samples) |
//! | `jdk.ObjectAllocationInNewTLAB` | `alloc_in_new_tlab_objects` (objects), `alloc_in_new_tlab_bytes` (bytes: the TLAB's size) |
//! | `jdk.ObjectAllocationOutsideTLAB` | `alloc_outside_tlab_objects`, `alloc_outside_tlab_bytes` |
//! | `jdk.ObjectAllocationSample` | `alloc_sample_objects`, `alloc_sample_bytes` (its weight) |
//! | `jdk.JavaMonitorEnter` | `lock_count` (lock_samples), `lock_duration` (lock_nanoseconds) |
//! | `jdk.ThreadPark` | `block_count`, `block_duration` (Pyroscope's `block` profiles) |
//!
//! Frames are named as Pyroscope names them: the class's name as the JVM writes it (`java/lang/
//! Thread`) and the method's, joined by a dot (`java/lang/Thread.run`; a class with no name, as
//! async-profiler gives native frames, leaves the method's name alone); stacks are root first.
//! Events without a stack trace are left out, as Pyroscope does. async-profiler's `contextId`
//! (the agent's labels) is kept per profile, so that the server can store each context under
//! its labels.
//!
//! The reader trusts nothing: every count and length is checked against the bytes left before
//! anything is allocated, the values made are at most one per byte of the file (a count of
//! empty objects cannot expand; the pools kept in memory are those of stacks, methods, classes,
//! symbols and strings, at most 32 bytes of values per byte read, and a real OpenJDK recording
//! makes one value per 6 bytes), types nesting inline are cut at [`MAX_NESTING`] levels and chains of
//! constant-pool references at [`MAX_REFERENCE_HOPS`], so a cyclic pool ends in an error naming
//! it, not a loop.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use crate::budget::{DecodeBudget, TreeSize};
use crate::profile_set::{FormatError, Part, ProfileSet, Split};
use crate::tree::{CallTree, ROOT};

/// This format's name in the table of formats.
pub const NAME: &str = "jfr";

/// The first bytes of every chunk.
pub const MAGIC: &[u8; 4] = b"FLR\0";

/// Types nested inline (a field of a type that is not in a constant pool) at most.
pub const MAX_NESTING: usize = 16;

/// Constant-pool references followed in a row at most (a reference to a reference…).
pub const MAX_REFERENCE_HOPS: usize = 8;

const HEADER_LEN: usize = 68;
/// The constant pools profiles are made from.
const KEPT_POOLS: &[&str] = &[
    "jdk.types.StackTrace",
    "jdk.types.Method",
    "java.lang.Class",
    "jdk.types.Symbol",
    "java.lang.String",
    "jdk.types.ThreadState",
];
const METADATA_TYPE: u64 = 0;
const CHECKPOINT_TYPE: u64 = 1;
/// Metadata elements nest this deep at most (OpenJDK's: root, metadata, class, field,
/// annotation).
const MAX_ELEMENT_DEPTH: usize = 16;

/// True when `bytes` start like a recording: the chunk magic.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// What one kind of event becomes: the profiles it adds to and what each event weighs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    One,
    /// A field in bytes or a count.
    Field(&'static str),
    /// A duration field in ticks, stored in nanoseconds.
    Ticks(&'static str),
}

/// One profile of a recording: a Kiln profile type, its unit and where its values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Kiln's profile type (also the part's name).
    pub profile_type: &'static str,
    /// Kiln's unit.
    pub units: &'static str,
    /// The JFR event it is read from.
    pub event: &'static str,
    weight: Weight,
}

const fn kind(profile_type: &'static str, units: &'static str, event: &'static str, weight: Weight) -> Kind {
    Kind { profile_type, units, event, weight }
}

/// Every profile a recording can give, in the order they are listed.
pub const KINDS: &[Kind] = &[
    kind("cpu", "samples", "jdk.ExecutionSample", Weight::One),
    kind("wall", "samples", "profiler.WallClockSample", Weight::Field("samples")),
    kind("native", "samples", "jdk.NativeMethodSample", Weight::One),
    kind("alloc_in_new_tlab_objects", "objects", "jdk.ObjectAllocationInNewTLAB", Weight::One),
    kind("alloc_in_new_tlab_bytes", "bytes", "jdk.ObjectAllocationInNewTLAB", Weight::Field("tlabSize")),
    kind("alloc_outside_tlab_objects", "objects", "jdk.ObjectAllocationOutsideTLAB", Weight::One),
    kind("alloc_outside_tlab_bytes", "bytes", "jdk.ObjectAllocationOutsideTLAB", Weight::Field("allocationSize")),
    kind("alloc_sample_objects", "objects", "jdk.ObjectAllocationSample", Weight::One),
    kind("alloc_sample_bytes", "bytes", "jdk.ObjectAllocationSample", Weight::Field("weight")),
    kind("lock_count", "lock_samples", "jdk.JavaMonitorEnter", Weight::One),
    kind("lock_duration", "lock_nanoseconds", "jdk.JavaMonitorEnter", Weight::Ticks("duration")),
    kind("block_count", "lock_samples", "jdk.ThreadPark", Weight::One),
    kind("block_duration", "lock_nanoseconds", "jdk.ThreadPark", Weight::Ticks("duration")),
];

const CPU: usize = 0;
const WALL: usize = 1;

/// One profile read from a recording, its samples split by async-profiler context (0: none).
#[derive(Debug, Clone)]
pub struct Profile {
    /// What it is.
    pub kind: Kind,
    /// Samples per context id, none empty.
    pub contexts: BTreeMap<i64, CallTree>,
}

impl Profile {
    /// Every context merged.
    pub fn merged(&self) -> CallTree {
        let mut contexts = self.contexts.values();
        let mut tree = contexts.next().cloned().unwrap_or_default();
        for other in contexts {
            tree.merge_tree(other);
        }
        tree
    }
}

/// The profiles of a recording, in [`KINDS`] order, none empty.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The profiles.
    pub profiles: Vec<Profile>,
}

/// Reads a recording. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget`: one part per profile, its contexts merged.
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let recording = read(bytes, max_depth, budget)?;
    let parts = recording
        .profiles
        .iter()
        .map(|p| Part {
            name: p.kind.profile_type.to_string(),
            units: p.kind.units.to_string(),
            tree: p.merged(),
            time_order: None,
        })
        .collect();
    Ok(ProfileSet { split: Split::EventTypes, parts })
}

/// Reads every chunk of a recording into its profiles, within `budget`.
pub fn read(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<Recording, FormatError> {
    if !looks_like(bytes) {
        return Err(FormatError::new(NAME, "the file does not start with `FLR\\0`"));
    }
    let mut trees: Vec<BTreeMap<i64, CallTree>> = vec![BTreeMap::new(); KINDS.len()];
    let mut sink = Sink { trees: &mut trees, max_depth, budget, values_left: bytes.len().saturating_add(4096) };
    let mut start = 0usize;
    let mut index = 0usize;
    while start < bytes.len() {
        index += 1;
        let end = read_chunk(bytes, start, &mut sink).map_err(|e| e.into_format_error(index))?;
        start = end;
    }
    let profiles = KINDS
        .iter()
        .zip(trees)
        .filter_map(|(kind, mut contexts)| {
            contexts.retain(|_, tree| !tree.is_empty());
            (!contexts.is_empty()).then_some(Profile { kind: *kind, contexts })
        })
        .collect();
    Ok(Recording { profiles })
}

/// What went wrong, before it names the chunk.
enum ReadError {
    Malformed { at: usize, reason: String },
    Exhausted(crate::budget::Exhausted),
}

impl ReadError {
    fn into_format_error(self, chunk: usize) -> FormatError {
        match self {
            ReadError::Malformed { at, reason } => {
                FormatError::new(NAME, format!("chunk {chunk}, byte {at}: {reason}"))
            }
            ReadError::Exhausted(e) => FormatError::exhausted(NAME, e),
        }
    }
}

type Result<T, E = ReadError> = std::result::Result<T, E>;

/// Where a recording's samples go.
struct Sink<'t, 'b> {
    trees: &'t mut Vec<BTreeMap<i64, CallTree>>,
    max_depth: usize,
    budget: &'b mut DecodeBudget,
    /// Values (numbers, strings, objects, array elements) the file may still make: one per
    /// byte, so that arrays of zero-byte objects cannot expand without bound.
    values_left: usize,
}

/// A cursor over one chunk's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    compressed: bool,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(ReadError::Malformed { at: self.pos, reason: reason.into() })
    }

    fn left(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.left() {
            return self.fail(format!("{n} bytes announced, {} left (truncated?)", self.left()));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A `long`: LEB128 of at most 9 bytes (the 9th gives its 8 bits whole), or 8 bytes.
    fn long(&mut self) -> Result<u64> {
        if !self.compressed {
            return Ok(u64::from_be_bytes(self.fixed()?));
        }
        let mut value = 0u64;
        for shift in (0..56).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Ok(value | u64::from(self.u8()?) << 56)
    }

    /// An `int`: compressed like a long but within 32 bits.
    fn int(&mut self) -> Result<u32> {
        if !self.compressed {
            return Ok(u32::from_be_bytes(self.fixed()?));
        }
        let at = self.pos;
        let value = self.long()?;
        u32::try_from(value)
            .map_err(|_| ReadError::Malformed { at, reason: format!("the int {value} overflows 32 bits") })
    }

    fn short(&mut self) -> Result<u16> {
        if !self.compressed {
            return Ok(u16::from_be_bytes(self.fixed()?));
        }
        let at = self.pos;
        let value = self.long()?;
        u16::try_from(value)
            .map_err(|_| ReadError::Malformed { at, reason: format!("the short {value} overflows 16 bits") })
    }

    /// A count of things each at least `min_bytes` long, checked against the bytes left.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.int()? as usize;
        if n.saturating_mul(min_bytes) > self.left() {
            return Err(ReadError::Malformed {
                at,
                reason: format!("{n} {what} announced, more than the {} bytes left can hold", self.left()),
            });
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<Text> {
        let at = self.pos;
        Ok(match self.u8()? {
            0 => Text::Null,
            1 => Text::Inline(String::new()),
            2 => Text::Pool(self.long()?),
            3 => {
                let n = self.count("UTF-8 bytes", 1)?;
                Text::Inline(String::from_utf8_lossy(self.take(n)?).into_owned())
            }
            4 => {
                let n = self.count("UTF-16 chars", 1)?;
                let mut units = Vec::with_capacity(n);
                for _ in 0..n {
                    units.push(self.short()?);
                }
                Text::Inline(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
            }
            5 => {
                let n = self.count("Latin-1 bytes", 1)?;
                Text::Inline(self.take(n)?.iter().map(|&b| char::from(b)).collect())
            }
            other => return Err(ReadError::Malformed { at, reason: format!("unknown string encoding {other}") }),
        })
    }
}

/// A string as read: its text, or a reference into the `java.lang.String` pool.
#[derive(Debug, Clone)]
enum Text {
    Null,
    Inline(String),
    Pool(u64),
}

/// A value read by its type's layout.
#[derive(Debug, Clone)]
enum Value {
    /// Every integral type, booleans and chars.
    Int(i64),
    Float,
    Text(Text),
    /// A constant-pool reference: the field's type and the key.
    Ref(u64, u64),
    /// Fields in the type's order.
    Object(Vec<Value>),
    Array(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Boolean,
    Byte,
    Char,
    Short,
    Int,
    Long,
    Float,
    Double,
    String,
    /// A type with fields.
    None,
}

#[derive(Debug)]
struct Field {
    name: String,
    class: u64,
    pooled: bool,
    array: bool,
}

#[derive(Debug)]
struct Class {
    name: String,
    primitive: Primitive,
    fields: Vec<Field>,
}

impl Class {
    fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// One chunk's types and constant pools.
struct Chunk {
    classes: HashMap<u64, Class>,
    pools: HashMap<(u64, u64), Value>,
    ticks_per_second: u64,
    /// Set when references were followed [`MAX_REFERENCE_HOPS`] times in a row: a loop.
    looped: Cell<bool>,
}

/// Reads the chunk at `start` into `sink`; returns where the next chunk starts.
fn read_chunk(bytes: &[u8], start: usize, sink: &mut Sink<'_, '_>) -> Result<usize> {
    let malformed = |at: usize, reason: String| ReadError::Malformed { at, reason };
    let header = bytes.get(start..start + HEADER_LEN).ok_or_else(|| {
        malformed(start, format!("a chunk header is {HEADER_LEN} bytes, {} left", bytes.len() - start))
    })?;
    if !header.starts_with(MAGIC) {
        return Err(malformed(start, "a chunk does not start with `FLR\\0`".into()));
    }
    let be = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let major = u16::from_be_bytes([header[4], header[5]]);
    if !(1..=2).contains(&major) {
        return Err(malformed(start + 4, format!("format version {major} (Kiln reads 1 and 2)")));
    }
    let size = be(8);
    let left = (bytes.len() - start) as u64;
    if size < HEADER_LEN as u64 || size > left {
        return Err(malformed(start + 8, format!("chunk size {size}, but {left} bytes are left (truncated?)")));
    }
    let end = start + size as usize;
    let offset = |at: usize, what: &str| -> Result<usize> {
        let value = be(at);
        if value < HEADER_LEN as u64 || value >= size {
            return Err(malformed(start + at, format!("{what} offset {value} is outside the chunk ({size} bytes)")));
        }
        Ok(start + value as usize)
    };
    let metadata_at = offset(24, "metadata")?;
    let ticks_per_second = be(56);
    // Version 2 (OpenJDK 11 and later) always compresses; async-profiler sets feature bit 0 too.
    let compressed = u32::from_be_bytes([header[64], header[65], header[66], header[67]]) & 1 == 1 || major >= 2;
    let mut reader = Reader { bytes, pos: metadata_at, end, compressed };
    let classes = read_metadata(&mut reader, sink)?;
    let mut chunk = Chunk { classes, pools: HashMap::new(), ticks_per_second, looped: Cell::new(false) };

    // Constant pools first (they may follow the events that use them), then the events.
    let mut events: Vec<(usize, usize, u64)> = Vec::new();
    let mut pos = start + HEADER_LEN;
    while pos < end {
        let mut reader = Reader { bytes, pos, end, compressed };
        let event_size = reader.int()? as usize;
        if event_size == 0 || event_size > end - pos {
            return Err(malformed(
                pos,
                format!("event size {event_size}, but {} bytes are left in the chunk", end - pos),
            ));
        }
        reader.end = pos + event_size;
        let type_id = reader.long()?;
        match type_id {
            METADATA_TYPE => {}
            CHECKPOINT_TYPE => read_checkpoint(&mut reader, &mut chunk, sink)?,
            // Only the events profiles (and the wall-clock setting) are made from are kept.
            _ => match chunk.classes.get(&type_id) {
                None => return Err(malformed(pos, format!("event of unknown type {type_id}"))),
                Some(class) if class.name == "jdk.ActiveSetting" || KINDS.iter().any(|k| k.event == class.name) => {
                    events.push((reader.pos, pos + event_size, type_id));
                }
                Some(_) => {}
            },
        }
        pos += event_size;
    }
    let wall_mode = events.iter().any(|&(at, end, type_id)| {
        chunk.classes.get(&type_id).is_some_and(|c| c.name == "jdk.ActiveSetting")
            && active_setting(bytes, at, end, compressed, type_id, &chunk, sink)
                .is_some_and(|(n, v)| n == "event" && v == "wall")
    });
    let mut frames_cache: HashMap<u64, Option<Vec<String>>> = HashMap::new();
    for (at, event_end, type_id) in events {
        let Some(class) = chunk.classes.get(&type_id) else {
            return Err(malformed(at, format!("event of unknown type {type_id}")));
        };
        let kinds: Vec<usize> = (0..KINDS.len()).filter(|&k| KINDS[k].event == class.name).collect();
        if kinds.is_empty() {
            continue;
        }
        let mut reader = Reader { bytes, pos: at, end: event_end, compressed };
        let event = read_value(&mut reader, &chunk.classes, type_id, 0, &mut sink.values_left)?;
        add_event(&chunk, type_id, &event, &kinds, wall_mode, &mut frames_cache, sink).map_err(
            |reason| match reason {
                ReadError::Malformed { reason, .. } => malformed(at, reason),
                other => other,
            },
        )?;
    }
    Ok(end)
}

/// The `name` and `value` of a `jdk.ActiveSetting` event.
fn active_setting(
    bytes: &[u8],
    at: usize,
    end: usize,
    compressed: bool,
    type_id: u64,
    chunk: &Chunk,
    sink: &mut Sink<'_, '_>,
) -> Option<(String, String)> {
    let mut reader = Reader { bytes, pos: at, end, compressed };
    let event = read_value(&mut reader, &chunk.classes, type_id, 0, &mut sink.values_left).ok()?;
    let name = chunk.text(chunk.field(&event, type_id, "name")?)?;
    let value = chunk.text(chunk.field(&event, type_id, "value")?)?;
    Some((name, value))
}

fn add_event(
    chunk: &Chunk,
    type_id: u64,
    event: &Value,
    kinds: &[usize],
    wall_mode: bool,
    frames_cache: &mut HashMap<u64, Option<Vec<String>>>,
    sink: &mut Sink<'_, '_>,
) -> Result<()> {
    let bad = |reason: String| ReadError::Malformed { at: 0, reason };
    let Some((Value::Ref(_, trace_key), trace_class)) = chunk.field(event, type_id, "stackTrace") else {
        return Ok(());
    };
    if !frames_cache.contains_key(trace_key) {
        let frames = chunk.frames(&Value::Ref(trace_class, *trace_key), trace_class).map_err(bad)?;
        frames_cache.insert(*trace_key, frames);
    }
    if chunk.looped.get() {
        return Err(bad(format!(
            "constant-pool references run in a loop (more than {MAX_REFERENCE_HOPS} in a row) in stack trace {trace_key}"
        )));
    }
    let Some(frames) = frames_cache.get(trace_key).and_then(Option::as_ref) else { return Ok(()) };
    let context = match chunk.field(event, type_id, "contextId") {
        Some((Value::Int(id), _)) => *id,
        _ => 0,
    };
    let mut targets: Vec<(usize, u64)> = Vec::new();
    for &k in kinds {
        let value = match KINDS[k].weight {
            Weight::One => 1,
            Weight::Field(name) => match chunk.field(event, type_id, name) {
                Some((Value::Int(v), _)) => u64::try_from(*v).unwrap_or(0),
                _ => return Err(bad(format!("{} has no whole-number field `{name}`", KINDS[k].event))),
            },
            Weight::Ticks(name) => match chunk.field(event, type_id, name) {
                Some((Value::Int(v), _)) => {
                    if chunk.ticks_per_second == 0 {
                        return Err(bad("the chunk header gives 0 ticks per second".into()));
                    }
                    let nanos =
                        u128::from(u64::try_from(*v).unwrap_or(0)) * 1_000_000_000 / u128::from(chunk.ticks_per_second);
                    u64::try_from(nanos).unwrap_or(u64::MAX)
                }
                _ => return Err(bad(format!("{} has no duration field `{name}`", KINDS[k].event))),
            },
        };
        if k == CPU {
            // async-profiler's wall-clock mode samples every thread: the sleeping ones are not
            // on a CPU, and every sample is wall time.
            let sleeping = chunk
                .field(event, type_id, "state")
                .and_then(|(state, class)| chunk.field(state, class, "name"))
                .and_then(|name| chunk.text(name))
                .is_some_and(|name| name == "STATE_SLEEPING");
            if !sleeping {
                targets.push((CPU, value));
            }
            if wall_mode {
                targets.push((WALL, value));
            }
            continue;
        }
        targets.push((k, value));
    }
    let depth = frames.len().min(sink.max_depth);
    for (k, value) in targets {
        if value == 0 {
            continue;
        }
        sink.budget.spend_frames(depth as u64).map_err(ReadError::Exhausted)?;
        let tree = sink.trees[k].entry(context).or_default();
        let mut mark = TreeSize::of(tree);
        let mut node = ROOT;
        for frame in &frames[..depth] {
            node = tree.child(node, frame);
        }
        tree.add_self(node, value);
        sink.budget.spend_growth(tree, &mut mark).map_err(ReadError::Exhausted)?;
    }
    Ok(())
}

impl Chunk {
    /// `value` itself, or what the reference leads to, with its type; `None` for a key the
    /// pools lack (JFR writes such keys for "no value").
    fn resolve<'v>(&'v self, mut value: &'v Value, mut class: u64) -> Option<(&'v Value, u64)> {
        for _ in 0..MAX_REFERENCE_HOPS {
            match value {
                Value::Ref(to, key) => {
                    class = *to;
                    value = self.pools.get(&(*to, *key))?;
                }
                _ => return Some((value, class)),
            }
        }
        self.looped.set(true);
        None
    }

    /// Field `name` of an object of type `class` (or of what a reference to one leads to).
    fn field<'v>(&'v self, value: &'v Value, class: u64, name: &str) -> Option<(&'v Value, u64)> {
        let (value, class) = self.resolve(value, class)?;
        let Value::Object(fields) = value else { return None };
        let type_ = self.classes.get(&class)?;
        let index = type_.field(name)?;
        Some((fields.get(index)?, type_.fields[index].class))
    }

    /// The text of a string, a reference to one, or a symbol (`jdk.types.Symbol`'s `string`).
    fn text(&self, (value, class): (&Value, u64)) -> Option<String> {
        let mut current = (value, class);
        for _ in 0..MAX_REFERENCE_HOPS {
            let (value, class) = self.resolve(current.0, current.1)?;
            match value {
                Value::Text(Text::Inline(s)) => return Some(s.clone()),
                Value::Text(Text::Null) => return None,
                Value::Text(Text::Pool(key)) => {
                    current = (self.pools.get(&(class, *key))?, class);
                }
                Value::Object(_) => current = self.field(value, class, "string")?,
                _ => return None,
            }
        }
        self.looped.set(true);
        None
    }

    /// A stack trace's frames, root first (`None` when the pools lack it).
    fn frames(&self, trace: &Value, class: u64) -> Result<Option<Vec<String>>, String> {
        let Some((Value::Array(frames), frame_class)) = self.field(trace, class, "frames") else {
            return Ok(None);
        };
        let mut names = Vec::with_capacity(frames.len());
        for frame in frames.iter().rev() {
            let method = self.field(frame, frame_class, "method");
            let name = method.and_then(|(m, mc)| {
                let method_name = self.text(self.field(m, mc, "name")?);
                let class_name = self.field(m, mc, "type").and_then(|(c, cc)| self.text(self.field(c, cc, "name")?));
                match (class_name, method_name) {
                    // async-profiler's native frames have a class with no name.
                    (Some(c), Some(m)) if !c.is_empty() => Some(format!("{c}.{m}")),
                    (_, Some(m)) => Some(m),
                    _ => None,
                }
            });
            names.push(name.unwrap_or_else(|| "unknown".to_string()));
        }
        Ok(Some(names))
    }
}

/// Spends one value of the file's allowance.
fn spend_value(values_left: &mut usize, reader: &Reader<'_>) -> Result<()> {
    if *values_left == 0 {
        return reader.fail("the recording declares more values than its bytes can hold");
    }
    *values_left -= 1;
    Ok(())
}

/// A value of type `class_id`, laid out by its fields.
fn read_value(
    reader: &mut Reader<'_>,
    classes: &HashMap<u64, Class>,
    class_id: u64,
    depth: usize,
    values_left: &mut usize,
) -> Result<Value> {
    spend_value(values_left, reader)?;
    let Some(class) = classes.get(&class_id) else {
        return reader.fail(format!("a value of unknown type {class_id}"));
    };
    Ok(match class.primitive {
        Primitive::Boolean | Primitive::Byte => Value::Int(i64::from(reader.u8()? as i8)),
        Primitive::Char | Primitive::Short => Value::Int(i64::from(reader.short()?)),
        Primitive::Int => Value::Int(i64::from(reader.int()? as i32)),
        Primitive::Long => Value::Int(reader.long()? as i64),
        Primitive::Float => {
            reader.take(4)?;
            Value::Float
        }
        Primitive::Double => {
            reader.take(8)?;
            Value::Float
        }
        Primitive::String => Value::Text(reader.string()?),
        Primitive::None => {
            if depth >= MAX_NESTING {
                return reader.fail(format!(
                    "types nest inline deeper than {MAX_NESTING} levels at `{}` (a type containing itself?)",
                    class.name
                ));
            }
            let mut fields = Vec::with_capacity(class.fields.len());
            for field in &class.fields {
                let value = if field.array {
                    let n = reader.count("array elements", 0)?;
                    if n > *values_left {
                        return reader.fail(format!("{n} array elements announced, more than the file can hold"));
                    }
                    let mut items = Vec::with_capacity(n.min(reader.left()));
                    for _ in 0..n {
                        items.push(read_field(reader, classes, field, depth, values_left)?);
                    }
                    Value::Array(items)
                } else {
                    read_field(reader, classes, field, depth, values_left)?
                };
                fields.push(value);
            }
            Value::Object(fields)
        }
    })
}

fn read_field(
    reader: &mut Reader<'_>,
    classes: &HashMap<u64, Class>,
    field: &Field,
    depth: usize,
    values_left: &mut usize,
) -> Result<Value> {
    if field.pooled {
        spend_value(values_left, reader)?;
        return Ok(Value::Ref(field.class, reader.long()?));
    }
    read_value(reader, classes, field.class, depth + 1, values_left)
}

/// A checkpoint event's constant pools, after its size and type.
fn read_checkpoint(reader: &mut Reader<'_>, chunk: &mut Chunk, sink: &mut Sink<'_, '_>) -> Result<()> {
    reader.long()?; // start time
    reader.long()?; // duration
    reader.long()?; // delta to the previous checkpoint (every event is visited anyway)
    reader.u8()?; // checkpoint kind (flush, chunk header, statics, thread)
    let pools = reader.count("constant pools", 2)?;
    for _ in 0..pools {
        let class = reader.long()?;
        if !chunk.classes.contains_key(&class) {
            return reader.fail(format!("a constant pool of unknown type {class}"));
        }
        // Only the pools stacks and settings are read from are kept (threads, class loaders,
        // modules… are read past): what a recording holds in memory is mostly its stacks.
        let kept = chunk.classes.get(&class).is_some_and(|c| KEPT_POOLS.contains(&c.name.as_str()));
        let entries = reader.count("constants", 1)?;
        for _ in 0..entries {
            let key = reader.long()?;
            let value = read_value(reader, &chunk.classes, class, 0, &mut sink.values_left)?;
            if kept {
                chunk.pools.insert((class, key), value);
            }
        }
    }
    Ok(())
}

/// One element of the metadata tree: its name, attributes and children (string indexes).
struct Element {
    name: usize,
    attributes: Vec<(usize, usize)>,
    children: Vec<Element>,
}

fn read_element(reader: &mut Reader<'_>, strings: usize, depth: usize) -> Result<Element> {
    if depth >= MAX_ELEMENT_DEPTH {
        return reader.fail(format!("metadata elements nest deeper than {MAX_ELEMENT_DEPTH} levels"));
    }
    let index = |reader: &mut Reader<'_>| -> Result<usize> {
        let i = reader.int()? as usize;
        if i >= strings {
            return reader.fail(format!("metadata string {i} of {strings}"));
        }
        Ok(i)
    };
    let name = index(reader)?;
    let count = reader.count("attributes", 2)?;
    let mut attributes = Vec::with_capacity(count);
    for _ in 0..count {
        attributes.push((index(reader)?, index(reader)?));
    }
    let count = reader.count("child elements", 3)?;
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        children.push(read_element(reader, strings, depth + 1)?);
    }
    Ok(Element { name, attributes, children })
}

/// The metadata event at the reader's position: every type of the chunk.
fn read_metadata(reader: &mut Reader<'_>, sink: &mut Sink<'_, '_>) -> Result<HashMap<u64, Class>> {
    let start = reader.pos;
    let size = reader.int()? as usize;
    if size == 0 || size > reader.end - start {
        return reader.fail(format!("metadata size {size}, but {} bytes are left in the chunk", reader.end - start));
    }
    reader.end = start + size;
    let type_id = reader.long()?;
    if type_id != METADATA_TYPE {
        return reader.fail(format!("the metadata offset leads to an event of type {type_id}"));
    }
    reader.long()?; // start time
    reader.long()?; // duration
    reader.long()?; // metadata id
    let count = reader.count("metadata strings", 1)?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        spend_value(&mut sink.values_left, reader)?;
        strings.push(match reader.string()? {
            Text::Inline(s) => s,
            Text::Null => String::new(),
            Text::Pool(_) => return reader.fail("a metadata string refers to a constant pool"),
        });
    }
    let root = read_element(reader, strings.len(), 0)?;
    let attribute = |e: &Element, name: &str| {
        e.attributes.iter().find(|(k, _)| strings[*k] == name).map(|(_, v)| strings[*v].as_str())
    };
    let mut classes = HashMap::new();
    for metadata in root.children.iter().filter(|e| strings[e.name] == "metadata") {
        for element in metadata.children.iter().filter(|e| strings[e.name] == "class") {
            let id = attribute(element, "id").and_then(|v| v.parse::<u64>().ok());
            let (Some(id), Some(name)) = (id, attribute(element, "name")) else {
                return reader.fail("a metadata class without a numeric `id` or a `name`");
            };
            let mut fields = Vec::new();
            for field in element.children.iter().filter(|e| strings[e.name] == "field") {
                let class = attribute(field, "class").and_then(|v| v.parse::<u64>().ok());
                let (Some(class), Some(field_name)) = (class, attribute(field, "name")) else {
                    return reader.fail(format!("a field of `{name}` without a numeric `class` or a `name`"));
                };
                fields.push(Field {
                    name: field_name.to_string(),
                    class,
                    pooled: attribute(field, "constantPool") == Some("true"),
                    array: attribute(field, "dimension").is_some_and(|d| d != "0"),
                });
            }
            let primitive = match name {
                "boolean" => Primitive::Boolean,
                "byte" => Primitive::Byte,
                "char" => Primitive::Char,
                "short" => Primitive::Short,
                "int" => Primitive::Int,
                "long" => Primitive::Long,
                "float" => Primitive::Float,
                "double" => Primitive::Double,
                "java.lang.String" => Primitive::String,
                _ => Primitive::None,
            };
            classes.insert(id, Class { name: name.to_string(), primitive, fields });
        }
    }
    if classes.is_empty() {
        return reader.fail("the metadata declares no types");
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A recording written by hand, field by field, the way OpenJDK lays one out.
    pub(super) struct Writer {
        strings: Vec<String>,
    }

    /// LEB128 as JFR writes it.
    pub(super) fn leb(mut value: u64, out: &mut Vec<u8>) {
        for _ in 0..8 {
            if value < 0x80 {
                out.push(value as u8);
                return;
            }
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn utf8(s: &str, out: &mut Vec<u8>) {
        out.push(3);
        leb(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }

    impl Writer {
        fn index(&mut self, s: &str) -> u64 {
            if let Some(i) = self.strings.iter().position(|x| x == s) {
                return i as u64;
            }
            self.strings.push(s.to_string());
            (self.strings.len() - 1) as u64
        }

        /// An element with attributes and children, already encoded.
        fn element(&mut self, name: &str, attributes: &[(&str, &str)], children: &[Vec<u8>]) -> Vec<u8> {
            let mut out = Vec::new();
            leb(self.index(name), &mut out);
            leb(attributes.len() as u64, &mut out);
            for (k, v) in attributes {
                leb(self.index(k), &mut out);
                leb(self.index(v), &mut out);
            }
            leb(children.len() as u64, &mut out);
            for child in children {
                out.extend_from_slice(child);
            }
            out
        }
    }

    /// An event: its size (as a fixed 4-byte LEB128, as OpenJDK pads it), type and body.
    fn event(type_id: u64, body: &[u8]) -> Vec<u8> {
        let mut inner = Vec::new();
        leb(type_id, &mut inner);
        inner.extend_from_slice(body);
        let size = inner.len() + 4;
        let mut out = vec![
            (size as u8 & 0x7f) | 0x80,
            ((size >> 7) as u8 & 0x7f) | 0x80,
            ((size >> 14) as u8 & 0x7f) | 0x80,
            (size >> 21) as u8 & 0x7f,
        ];
        out.extend_from_slice(&inner);
        out
    }

    /// The types a stack needs and one execution sample type (ids 20…), with `frames` as
    /// `StackFrame[]` in `jdk.types.StackTrace`.
    pub(super) fn metadata(extra_classes: &[Vec<u8>], w: &mut Writer) -> Vec<u8> {
        let field = |w: &mut Writer, name: &str, class: &str, pool: bool, array: bool| {
            let mut attrs = vec![("name", name), ("class", class)];
            if pool {
                attrs.push(("constantPool", "true"));
            }
            if array {
                attrs.push(("dimension", "1"));
            }
            w.element("field", &attrs, &[])
        };
        let mut classes = vec![
            w.element("class", &[("id", "4"), ("name", "int")], &[]),
            w.element("class", &[("id", "5"), ("name", "long")], &[]),
            w.element("class", &[("id", "6"), ("name", "boolean")], &[]),
            w.element("class", &[("id", "10"), ("name", "java.lang.String")], &[]),
        ];
        let symbol = vec![field(w, "string", "10", false, false)];
        classes.push(w.element("class", &[("id", "21"), ("name", "jdk.types.Symbol")], &symbol));
        let class = vec![field(w, "name", "21", true, false)];
        classes.push(w.element("class", &[("id", "22"), ("name", "java.lang.Class")], &class));
        let method = vec![field(w, "type", "22", true, false), field(w, "name", "21", true, false)];
        classes.push(w.element("class", &[("id", "23"), ("name", "jdk.types.Method")], &method));
        let frame = vec![field(w, "method", "23", true, false), field(w, "lineNumber", "4", false, false)];
        classes.push(w.element("class", &[("id", "24"), ("name", "jdk.types.StackFrame")], &frame));
        let trace = vec![field(w, "truncated", "6", false, false), field(w, "frames", "24", false, true)];
        classes.push(w.element("class", &[("id", "25"), ("name", "jdk.types.StackTrace")], &trace));
        let sample = vec![field(w, "startTime", "5", false, false), field(w, "stackTrace", "25", true, false)];
        classes.push(w.element("class", &[("id", "30"), ("name", "jdk.ExecutionSample")], &sample));
        let enter = vec![
            field(w, "startTime", "5", false, false),
            field(w, "duration", "5", false, false),
            field(w, "stackTrace", "25", true, false),
        ];
        classes.push(w.element("class", &[("id", "31"), ("name", "jdk.JavaMonitorEnter")], &enter));
        classes.extend_from_slice(extra_classes);
        let metadata = w.element("metadata", &[], &classes);
        let region = w.element("region", &[], &[]);
        let root = w.element("root", &[], &[metadata, region]);
        let mut body = Vec::new();
        leb(0, &mut body);
        leb(0, &mut body);
        leb(1, &mut body);
        leb(w.strings.len() as u64, &mut body);
        for s in &w.strings.clone() {
            utf8(s, &mut body);
        }
        body.extend_from_slice(&root);
        event(METADATA_TYPE, &body)
    }

    /// Pools: symbols 1 `Main`, 2 `main`, 3 `work`; class 1 `Main`; methods 1 `Main.main`,
    /// 2 `Main.work`; stack 1 main → work, stack 2 main.
    pub(super) fn pools() -> Vec<u8> {
        let mut body = Vec::new();
        for v in [0, 0, 0] {
            leb(v, &mut body);
        }
        body.push(1);
        leb(4, &mut body); // four pools
        leb(21, &mut body);
        leb(3, &mut body);
        for (key, s) in [(1, "Main"), (2, "main"), (3, "work")] {
            leb(key, &mut body);
            utf8(s, &mut body);
        }
        leb(22, &mut body);
        leb(1, &mut body);
        leb(1, &mut body);
        leb(1, &mut body);
        leb(23, &mut body);
        leb(2, &mut body);
        for (key, name) in [(1, 2), (2, 3)] {
            leb(key, &mut body);
            leb(1, &mut body);
            leb(name, &mut body);
        }
        leb(25, &mut body);
        leb(2, &mut body);
        for (key, methods) in [(1u64, &[2u64, 1][..]), (2, &[1][..])] {
            leb(key, &mut body);
            body.push(0);
            leb(methods.len() as u64, &mut body);
            for &m in methods {
                leb(m, &mut body);
                leb(7, &mut body);
            }
        }
        event(CHECKPOINT_TYPE, &body)
    }

    pub(super) fn sample(stack: u64) -> Vec<u8> {
        let mut body = Vec::new();
        leb(100, &mut body);
        leb(stack, &mut body);
        event(30, &body)
    }

    /// A chunk of `events` (metadata and pools included by the caller), with its header.
    pub(super) fn chunk(events: &[Vec<u8>], metadata_index: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let mut metadata_offset = 0;
        for (i, e) in events.iter().enumerate() {
            if i == metadata_index {
                metadata_offset = HEADER_LEN + body.len();
            }
            body.extend_from_slice(e);
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&((HEADER_LEN + body.len()) as u64).to_be_bytes());
        out.extend_from_slice(&(HEADER_LEN as u64).to_be_bytes()); // constant pool offset
        out.extend_from_slice(&(metadata_offset as u64).to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes()); // start nanos
        out.extend_from_slice(&0u64.to_be_bytes()); // duration
        out.extend_from_slice(&0u64.to_be_bytes()); // start ticks
        out.extend_from_slice(&1_000_000_000u64.to_be_bytes()); // ticks per second
        out.extend_from_slice(&1u32.to_be_bytes()); // compressed integers
        out.extend_from_slice(&body);
        out
    }

    pub(super) fn small_recording() -> Vec<u8> {
        let mut w = Writer { strings: Vec::new() };
        let metadata = metadata(&[], &mut w);
        let mut enter = Vec::new();
        for v in [5, 2_500, 2] {
            leb(v, &mut enter);
        }
        chunk(&[pools(), sample(1), sample(1), sample(2), sample(99), event(31, &enter), metadata], 6)
    }

    fn folded_of(set: &ProfileSet) -> Vec<(String, String, String)> {
        set.parts.iter().map(|p| (p.name.clone(), p.units.clone(), crate::folded::print(&p.tree.to_flat()))).collect()
    }

    #[test]
    fn samples_and_lock_events_become_profiles_with_root_first_stacks() {
        let bytes = small_recording();
        assert!(looks_like(&bytes));
        let set = parse(&bytes, 64).unwrap();
        assert_eq!(set.split, Split::EventTypes);
        // Stack 99 is not in the pools: left out, as an event without a stack trace.
        assert_eq!(
            folded_of(&set),
            [
                ("cpu".into(), "samples".into(), "Main.main 1\nMain.main;Main.work 2\n".into()),
                ("lock_count".into(), "lock_samples".into(), "Main.main 1\n".into()),
                ("lock_duration".into(), "lock_nanoseconds".into(), "Main.main 2500\n".into()),
            ]
        );
        // Two chunks read like one recording of both.
        let twice = [bytes.clone(), bytes.clone()].concat();
        let set = parse(&twice, 64).unwrap();
        assert_eq!(set.parts[0].tree.total(), 6);
        // A depth of 1 keeps the root end.
        assert_eq!(crate::folded::print(&parse(&bytes, 1).unwrap().parts[0].tree.to_flat()), "Main.main 3\n");
    }

    #[test]
    fn broken_recordings_are_errors_naming_the_format_and_the_place() {
        let bytes = small_recording();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (bytes[..40].to_vec(), "chunk header is 68 bytes"),
            (bytes[..bytes.len() - 10].to_vec(), "truncated?"),
            ([&bytes[..], b"FLR"].concat(), "chunk 2"),
            ([&bytes[..], &[0u8; 80]].concat(), "does not start with `FLR\\0`"),
        ];
        for (file, needle) in cases {
            let err = parse(&file, 64).unwrap_err();
            assert!(err.to_string().starts_with("jfr: "), "{err}");
            assert!(err.reason.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn async_profiler_contexts_are_kept_apart() {
        // An allocation sample type with async-profiler's `contextId`: contexts 0 and 7.
        let mut w = Writer { strings: Vec::new() };
        let fields = [
            w.element("field", &[("name", "startTime"), ("class", "5")], &[]),
            w.element("field", &[("name", "stackTrace"), ("class", "25"), ("constantPool", "true")], &[]),
            w.element("field", &[("name", "weight"), ("class", "5")], &[]),
            w.element("field", &[("name", "contextId"), ("class", "5")], &[]),
        ];
        let class = w.element("class", &[("id", "32"), ("name", "jdk.ObjectAllocationSample")], &fields);
        let meta = metadata(&[class], &mut w);
        let allocation = |stack: u64, weight: u64, context: u64| {
            let mut body = Vec::new();
            for v in [1, stack, weight, context] {
                leb(v, &mut body);
            }
            event(32, &body)
        };
        let file = chunk(&[pools(), allocation(1, 100, 0), allocation(1, 50, 7), allocation(2, 8, 7), meta], 4);
        let recording = read(&file, 64, &mut DecodeBudget::unlimited()).unwrap();
        let kinds: Vec<&str> = recording.profiles.iter().map(|p| p.kind.profile_type).collect();
        assert_eq!(kinds, ["alloc_sample_objects", "alloc_sample_bytes"]);
        let bytes = &recording.profiles[1];
        let folded: Vec<(i64, String)> =
            bytes.contexts.iter().map(|(c, t)| (*c, crate::folded::print(&t.to_flat()))).collect();
        assert_eq!(
            folded,
            [(0, "Main.main;Main.work 100\n".into()), (7, "Main.main 8\nMain.main;Main.work 50\n".into())]
        );
        assert_eq!(bytes.merged().total(), 158);
    }

    #[test]
    fn wall_clock_mode_samples_every_thread_and_cpu_leaves_the_sleeping_out() {
        // async-profiler's `event=wall` setting, and samples whose thread state says whether
        // the thread ran.
        let mut w = Writer { strings: Vec::new() };
        let state_name = w.element("field", &[("name", "name"), ("class", "10")], &[]);
        let state = w.element("class", &[("id", "26"), ("name", "jdk.types.ThreadState")], &[state_name]);
        let sample_fields = [
            w.element("field", &[("name", "startTime"), ("class", "5")], &[]),
            w.element("field", &[("name", "stackTrace"), ("class", "25"), ("constantPool", "true")], &[]),
            w.element("field", &[("name", "state"), ("class", "26"), ("constantPool", "true")], &[]),
        ];
        let sample = w.element("class", &[("id", "33"), ("name", "jdk.ExecutionSample")], &sample_fields);
        let setting_fields = [
            w.element("field", &[("name", "id"), ("class", "5")], &[]),
            w.element("field", &[("name", "name"), ("class", "10")], &[]),
            w.element("field", &[("name", "value"), ("class", "10")], &[]),
        ];
        let setting = w.element("class", &[("id", "34"), ("name", "jdk.ActiveSetting")], &setting_fields);
        let meta = metadata(&[state, sample, setting], &mut w);
        let mut states = Vec::new();
        for v in [0, 0, 0] {
            leb(v, &mut states);
        }
        states.push(1);
        leb(1, &mut states);
        leb(26, &mut states);
        leb(2, &mut states);
        for (key, name) in [(1, "STATE_RUNNABLE"), (2, "STATE_SLEEPING")] {
            leb(key, &mut states);
            utf8(name, &mut states);
        }
        let mut wall = Vec::new();
        leb(1, &mut wall);
        utf8("event", &mut wall);
        utf8("wall", &mut wall);
        let sampled = |stack: u64, state: u64| {
            let mut body = Vec::new();
            for v in [1, stack, state] {
                leb(v, &mut body);
            }
            event(33, &body)
        };
        let events = [pools(), event(CHECKPOINT_TYPE, &states), sampled(1, 1), sampled(2, 2), event(34, &wall), meta];
        let set = parse(&chunk(&events, 5), 64).unwrap();
        assert_eq!(
            folded_of(&set),
            [
                ("cpu".into(), "samples".into(), "Main.main;Main.work 1\n".into()),
                ("wall".into(), "samples".into(), "Main.main 1\nMain.main;Main.work 1\n".into()),
            ]
        );
    }

    /// A checkpoint event of one pool of `class` with one entry, key 1, whose value is `value`.
    fn pool_of(class: u64, value: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for v in [0, 0, 0] {
            leb(v, &mut body);
        }
        body.push(1);
        leb(1, &mut body);
        leb(class, &mut body);
        leb(1, &mut body);
        leb(1, &mut body);
        body.extend_from_slice(value);
        event(CHECKPOINT_TYPE, &body)
    }

    /// Hostile recordings, each with what its error must say. The server's tests post the same
    /// bytes (`tests/data/formats/hostile-jfr/`, rewritten by `BLESS=1`).
    fn hostile_recordings() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let mut w = Writer { strings: Vec::new() };
        let meta = metadata(&[], &mut w);
        let mut files = Vec::new();

        // A pool announcing 2^31 constants.
        let mut huge_pool = Vec::new();
        for v in [0, 0, 0] {
            leb(v, &mut huge_pool);
        }
        huge_pool.push(1);
        leb(1, &mut huge_pool);
        leb(21, &mut huge_pool);
        leb(1 << 31, &mut huge_pool);
        let file = chunk(&[event(CHECKPOINT_TYPE, &huge_pool), meta.clone()], 1);
        files.push(("huge-count", file, "2147483648 constants announced"));

        // A string of 2^32 - 1 bytes.
        let mut long_string = vec![3];
        leb(u64::from(u32::MAX), &mut long_string);
        let file = chunk(&[pool_of(21, &long_string), meta.clone()], 1);
        files.push(("huge-string", file, "4294967295 UTF-8 bytes announced"));

        // An event size of 5 LEB128 bytes beyond 32 bits, and one of 0 bytes.
        let file = chunk(&[vec![0xff, 0xff, 0xff, 0xff, 0x7f], meta.clone()], 1);
        files.push(("overflowing-leb128", file, "the int 34359738367 overflows 32 bits"));
        let mut file = small_recording();
        file[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0x80, 0x80, 0x80, 0x00]);
        files.push(("zero-size-event", file, "event size 0"));

        // A type holding itself inline, and an array of a million empty objects in 3 bytes.
        let mut w = Writer { strings: Vec::new() };
        let nested = w.element("field", &[("name", "again"), ("class", "40")], &[]);
        let looped = w.element("class", &[("id", "40"), ("name", "Loop")], &[nested]);
        let empty = w.element("class", &[("id", "41"), ("name", "Empty")], &[]);
        let many = w.element("field", &[("name", "many"), ("class", "41"), ("dimension", "1")], &[]);
        let holder = w.element("class", &[("id", "42"), ("name", "Holder")], &[many]);
        let nesting = metadata(&[looped, empty, holder], &mut w);
        let file = chunk(&[pool_of(40, &[]), nesting.clone()], 1);
        files.push(("self-nesting-type", file, "nest inline deeper than 16"));
        let mut million = Vec::new();
        leb(1_000_000, &mut million);
        let file = chunk(&[pool_of(42, &million), nesting], 1);
        files.push(("million-empty-objects", file, "1000000 array elements announced"));

        // Symbol 1's string refers to the String pool's entry 1, which refers to itself.
        let mut body = Vec::new();
        for v in [0, 0, 0] {
            leb(v, &mut body);
        }
        body.push(1);
        leb(4, &mut body);
        for (class, value) in [(10u64, &[1u8, 2, 1][..]), (21, &[1, 2, 1]), (23, &[1, 7, 1]), (25, &[1, 0, 1, 1, 3])] {
            leb(class, &mut body);
            leb(1, &mut body);
            body.extend_from_slice(value);
        }
        let file = chunk(&[event(CHECKPOINT_TYPE, &body), sample(1), meta], 2);
        files.push(("cyclic-pool", file, "constant-pool references run in a loop"));
        files
    }

    #[test]
    fn hostile_counts_lengths_nesting_and_loops_are_refused_before_allocating() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats/hostile-jfr");
        for (name, bytes, needle) in hostile_recordings() {
            let err = parse(&bytes, 64).unwrap_err();
            assert!(err.to_string().starts_with("jfr: chunk 1, byte "), "{name}: {err}");
            assert!(err.reason.contains(needle), "{name}: {err}");
            let path = dir.join(format!("{name}.jfr"));
            if std::env::var_os("BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            assert_eq!(std::fs::read(&path).ok(), Some(bytes), "{} is stale; BLESS=1 rewrites it", path.display());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = parse(&with_magic, 16);
        }

        #[test]
        fn corrupted_recordings_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = small_recording();
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let _ = parse(&bytes, 16);
            let _ = parse(&bytes[..cut % bytes.len()], 16);
        }
    }
}
