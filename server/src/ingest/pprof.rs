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
//! **Cost.** The profile is read straight from its bytes, in two passes and without copying:
//! the first indexes strings, functions and locations, the second walks the samples. Samples
//! are grouped by (label set, location ids): a stack shared by a thousand samples is expanded
//! and inserted once, and only its values are added per sample. Names stay string-table
//! indexes until a tree interns them, once per series. Frames walked and nodes made are spent
//! from the request's [`kiln_model::budget::DecodeBudget`]; a profile that would expand beyond it is refused.
//!
//! **Series.** String labels of a sample (`label` with `str` set) are series labels; with the
//! labels the upload already names, they split one profile into several series. A label the
//! upload names explicitly wins over a sample label of the same name.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;

use kiln_model::budget::NAME_BYTES_PER_NODE;
use kiln_model::{FlatTree, NodeId, ROOT, SeededMap, children_column};
use serde::Deserialize;

use super::{IngestError, IngestLimits, RequestBudget, body};
use crate::storage::{Aggregation, ProfileMeta, SeriesKey, Upload};

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

fn bad(message: impl Into<String>) -> IngestError {
    IngestError::malformed(message)
}

fn malformed(what: impl Display) -> IngestError {
    IngestError::malformed(format!("body is not a pprof profile: {what}"))
}

/// What can be wrong with protobuf bytes themselves. Small and `Copy`, so that the field
/// reader's hot paths return in registers; it becomes a [`IngestError`] where it surfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireError {
    TruncatedVarint,
    LongVarint,
    PastEnd,
    FieldZero,
    WireType(u64),
    NotInteger,
    NotMessage,
    TooManyLines,
}

impl From<WireError> for IngestError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TruncatedVarint => malformed("truncated varint"),
            WireError::LongVarint => malformed("a varint is longer than 10 bytes"),
            WireError::PastEnd => malformed("a field runs past the end of its message (truncated?)"),
            WireError::FieldZero => malformed("field number 0"),
            WireError::WireType(other) => malformed(format_args!("wire type {other} (groups are not pprof)")),
            WireError::NotInteger => malformed("an integer field has another wire type"),
            WireError::NotMessage => malformed("a message field has another wire type"),
            WireError::TooManyLines => malformed("too many lines"),
        }
    }
}

/// One field of a protobuf message.
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value: no pprof field Kiln reads is one.
    Fixed,
}

impl<'a> Field<'a> {
    #[inline]
    fn int(self) -> Result<i64, WireError> {
        match self {
            // int64 fields carry two's complement in the varint.
            Field::Varint(v) => Ok(v as i64),
            _ => Err(WireError::NotInteger),
        }
    }

    #[inline]
    fn bytes(self) -> Result<&'a [u8], WireError> {
        match self {
            Field::Bytes(b) => Ok(b),
            _ => Err(WireError::NotMessage),
        }
    }

    /// Appends a repeated integer field's values, packed or not.
    #[inline]
    fn push_varints(self, out: &mut Vec<u64>) -> Result<(), WireError> {
        match self {
            Field::Varint(v) => out.push(v),
            Field::Bytes(packed) => {
                let mut reader = Fields::new(packed);
                while !reader.is_done() {
                    out.push(reader.varint()?);
                }
            }
            Field::Fixed => return Err(WireError::NotInteger),
        }
        Ok(())
    }
}

/// Appends `value` as a protobuf varint.
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The fields of one protobuf message, in order, borrowed from its bytes.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, at: 0 }
    }

    #[inline]
    fn is_done(&self) -> bool {
        self.at >= self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Most varints in a pprof (ids, lengths, keys, small values) are one byte.
        match self.buf.get(self.at) {
            Some(&byte) if byte < 0x80 => {
                self.at += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    #[cold]
    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let &byte = self.buf.get(self.at).ok_or(WireError::TruncatedVarint)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::LongVarint)
    }

    #[inline]
    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|&end| end <= self.buf.len())
            .ok_or(WireError::PastEnd)?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// The next field's number and value. Always inlined: it runs for every field of every
    /// sample, and as a call it cost a third of decoding (register saves and an unpredictable
    /// jump table per field).
    #[inline(always)]
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, WireError> {
        if self.is_done() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed
            }
            2 => {
                let len = self.varint()?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed
            }
            other => return Err(WireError::WireType(other)),
        };
        Ok(Some((number, field)))
    }
}

/// A `ValueType` message: (type, unit) string indexes.
fn value_type(bytes: &[u8]) -> Result<(i64, i64), IngestError> {
    let (mut kind, mut unit) = (0, 0);
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        match number {
            1 => kind = field.int()?,
            2 => unit = field.int()?,
            _ => {}
        }
    }
    Ok((kind, unit))
}

/// Position of each id in its table: a vector when ids are dense (as every agent writes them:
/// 1, 2, 3, …), else a map.
enum IdIndex {
    Dense(Vec<u32>),
    Sparse(SeededMap<u64, u32>),
}

impl IdIndex {
    fn new(ids: &[u64]) -> Self {
        let max = ids.iter().copied().max().unwrap_or(0);
        if max <= (ids.len() as u64).saturating_mul(2).saturating_add(64) {
            let mut dense = vec![u32::MAX; max as usize + 1];
            for (i, &id) in ids.iter().enumerate() {
                dense[id as usize] = i as u32;
            }
            IdIndex::Dense(dense)
        } else {
            IdIndex::Sparse(ids.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect())
        }
    }

    #[inline]
    fn get(&self, id: u64) -> Option<usize> {
        let found = match self {
            IdIndex::Dense(dense) => usize::try_from(id).ok().and_then(|id| dense.get(id).copied()),
            IdIndex::Sparse(map) => map.get(&id).copied(),
        };
        found.filter(|&i| i != u32::MAX).map(|i| i as usize)
    }
}

/// Everything but the samples, read in the first pass.
#[derive(Default)]
struct Tables<'a> {
    strings: Vec<&'a [u8]>,
    sample_types: Vec<(i64, i64)>,
    period_type: Option<(i64, i64)>,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
    function_ids: Vec<u64>,
    function_names: Vec<i64>,
    location_ids: Vec<u64>,
    location_addresses: Vec<u64>,
    /// Each location's lines, as function ids in `line_functions`.
    location_lines: Vec<Range<u32>>,
    line_functions: Vec<u64>,
}

impl<'a> Tables<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, IngestError> {
        let mut tables = Tables::default();
        let mut fields = Fields::new(bytes);
        while let Some((number, field)) = fields.next_field()? {
            match number {
                1 => tables.sample_types.push(value_type(field.bytes()?)?),
                4 => tables.location(field.bytes()?)?,
                5 => tables.function(field.bytes()?)?,
                6 => tables.strings.push(field.bytes()?),
                9 => tables.time_nanos = field.int()?,
                10 => tables.duration_nanos = field.int()?,
                11 => tables.period_type = Some(value_type(field.bytes()?)?),
                12 => tables.period = field.int()?,
                _ => {}
            }
        }
        Ok(tables)
    }

    fn location(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        let (mut id, mut address) = (0, 0);
        let start = self.line_functions.len();
        let mut fields = Fields::new(bytes);
        while let Some((number, field)) = fields.next_field()? {
            match number {
                1 => id = field.int()? as u64,
                3 => address = field.int()? as u64,
                4 => {
                    let mut function = 0;
                    let mut line = Fields::new(field.bytes()?);
                    while let Some((number, field)) = line.next_field()? {
                        if number == 1 {
                            function = field.int()? as u64;
                        }
                    }
                    self.line_functions.push(function);
                }
                _ => {}
            }
        }
        let end = self.line_functions.len();
        let range = u32::try_from(start).and_then(|s| Ok(s..u32::try_from(end)?));
        self.location_lines.push(range.map_err(|_| WireError::TooManyLines)?);
        self.location_ids.push(id);
        self.location_addresses.push(address);
        Ok(())
    }

    fn function(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        let (mut id, mut name) = (0, 0);
        let mut fields = Fields::new(bytes);
        while let Some((number, field)) = fields.next_field()? {
            match number {
                1 => id = field.int()? as u64,
                2 => name = field.int()?,
                _ => {}
            }
        }
        self.function_ids.push(id);
        self.function_names.push(name);
        Ok(())
    }

    fn string(&self, index: i64) -> Result<&'a [u8], IngestError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.strings.get(i).copied())
            .ok_or_else(|| bad(format!("pprof string index {index} is outside the string table")))
    }

    fn text(&self, index: i64) -> Result<std::borrow::Cow<'a, str>, IngestError> {
        Ok(String::from_utf8_lossy(self.string(index)?))
    }
}

/// Frames by location: each location's frame names, innermost first, as string-table indexes
/// (or, past the table, entries of `addresses`: the names of locations without lines).
struct Frames {
    index: IdIndex,
    ranges: Vec<Range<u32>>,
    names: Vec<u32>,
    addresses: Vec<String>,
}

impl Frames {
    fn new(tables: &Tables) -> Result<Self, IngestError> {
        let functions = IdIndex::new(&tables.function_ids);
        // Every function's name is checked, used or not, as a pprof reader would.
        let function_names: Vec<u32> = tables
            .function_names
            .iter()
            .map(|&name| {
                tables.string(name)?;
                Ok(name as u32)
            })
            .collect::<Result<_, IngestError>>()?;
        let string_count = u32::try_from(tables.strings.len()).map_err(|_| malformed("too many strings"))?;
        let mut frames = Frames {
            index: IdIndex::new(&tables.location_ids),
            ranges: Vec::with_capacity(tables.location_ids.len()),
            names: Vec::with_capacity(tables.line_functions.len()),
            addresses: Vec::new(),
        };
        for (lines, &address) in tables.location_lines.iter().zip(&tables.location_addresses) {
            let start = frames.names.len() as u32;
            if lines.is_empty() {
                frames.names.push(string_count + frames.addresses.len() as u32);
                frames.addresses.push(format!("{address:#x}"));
            }
            for &function in &tables.line_functions[lines.start as usize..lines.end as usize] {
                let found = functions.get(function).map(|f| function_names[f]);
                let name = found.ok_or_else(|| bad(format!("pprof line refers to missing function {function}")))?;
                frames.names.push(name);
            }
            frames.ranges.push(start..frames.names.len() as u32);
        }
        Ok(frames)
    }

    /// The frame names of location `id`, innermost first.
    #[inline]
    fn of(&self, id: u64) -> Result<&[u32], IngestError> {
        let location =
            self.index.get(id).ok_or_else(|| bad(format!("pprof sample refers to missing location {id}")))?;
        let range = &self.ranges[location];
        Ok(&self.names[range.start as usize..range.end as usize])
    }

    fn name<'t>(&'t self, tables: &Tables<'t>, name: u32) -> &'t [u8] {
        match tables.strings.get(name as usize) {
            Some(&s) => s,
            None => self.addresses[name as usize - tables.strings.len()].as_bytes(),
        }
    }
}

/// The frame names of one upload, each turned into text once and shared by every series and
/// sample type: a frame name index (see [`Frames`]) → the id of its text. Text id 0 is the
/// root's name, as in a [`kiln_model::CallTree`].
struct Names<'t> {
    texts: Vec<Cow<'t, str>>,
    ids: SeededMap<Cow<'t, str>, u32>,
    /// Text id of each frame name index, `u32::MAX` until met.
    of_frame: Vec<u32>,
}

impl<'t> Names<'t> {
    fn new(frame_names: usize) -> Self {
        let root = Cow::Borrowed(kiln_model::ROOT_NAME);
        let mut ids = SeededMap::default();
        ids.insert(root.clone(), 0);
        Names { texts: vec![root], ids, of_frame: vec![u32::MAX; frame_names] }
    }

    /// The text id of frame name `name`. Invalid UTF-8 is replaced, so two byte strings that
    /// read the same share an id (and a node).
    #[inline]
    fn id(&mut self, name: u32, frames: &'t Frames, tables: &Tables<'t>) -> u32 {
        let slot = &mut self.of_frame[name as usize];
        if *slot != u32::MAX {
            return *slot;
        }
        let text = String::from_utf8_lossy(frames.name(tables, name));
        let next = self.texts.len() as u32;
        let id = *self.ids.entry(text.clone()).or_insert(next);
        if id == next {
            self.texts.push(text);
        }
        *slot = id;
        id
    }
}

/// A node of a series' stack tree.
#[derive(Clone, Copy)]
struct StackNode {
    name: u32,
    parent: u32,
    first_child: u32,
    first_child_name: u32,
}

/// One series (one label set) while its samples are read: one stack tree for all its sample
/// types, whose nodes get a value per type at the end.
struct Series {
    labels: BTreeMap<String, String>,
    /// Node 0 is the root; a node comes after its parent.
    nodes: Vec<StackNode>,
    /// Children past each node's first one, by (parent, text id).
    children: SeededMap<u64, u32>,
    totals: Vec<u64>,
    /// Which text ids the series' stacks use, and their bytes: each of its trees stores them.
    name_used: Vec<bool>,
    name_bytes: usize,
}

impl Series {
    fn new(labels: BTreeMap<String, String>, kinds: usize) -> Self {
        let root = StackNode { name: 0, parent: 0, first_child: 0, first_child_name: 0 };
        let name_bytes = kiln_model::ROOT_NAME.len();
        Series {
            labels,
            nodes: vec![root],
            children: SeededMap::default(),
            totals: vec![0; kinds],
            name_used: vec![true],
            name_bytes,
        }
    }

    /// The child of `parent` named `name`, made if missing. Most nodes of a call chain have
    /// one child, found without hashing.
    #[inline]
    fn child(&mut self, parent: u32, name: u32) -> u32 {
        let next = self.nodes.len() as u32;
        let p = &mut self.nodes[parent as usize];
        if p.first_child == 0 {
            p.first_child = next;
            p.first_child_name = name;
        } else if p.first_child_name == name {
            return p.first_child;
        } else {
            match self.children.entry(u64::from(parent) << 32 | u64::from(name)) {
                std::collections::hash_map::Entry::Occupied(found) => return *found.get(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(next);
                }
            }
        }
        self.nodes.push(StackNode { name, parent, first_child: 0, first_child_name: 0 });
        next
    }

    /// Notes that the series uses text `id`, counting its bytes the first time.
    #[inline]
    fn use_name(&mut self, id: u32, names: &Names) {
        let id = id as usize;
        if id >= self.name_used.len() {
            self.name_used.resize(names.texts.len().max(id + 1), false);
        }
        if !std::mem::replace(&mut self.name_used[id], true) {
            self.name_bytes += names.texts[id].len();
        }
    }

    /// Each node's children in name order, in one column: `order[first[n]..first[n + 1]]`.
    /// Shared by the series' trees, since names do not depend on the sample type.
    fn children_in_name_order(&self, names: &Names) -> (Vec<u32>, Vec<u32>) {
        let count = self.nodes.len();
        let (first, mut order) = children_column(count, |node| self.nodes[node].parent);
        for node in 0..count {
            let kids = &mut order[first[node] as usize..first[node + 1] as usize];
            if kids.len() > 1 {
                kids.sort_unstable_by(|&a, &b| {
                    names.texts[self.nodes[a as usize].name as usize]
                        .cmp(&names.texts[self.nodes[b as usize].name as usize])
                });
            }
        }
        (first, order)
    }

    /// The tree of one sample type, from each node's own value: preorder, siblings in name
    /// order, nodes without samples left out (what [`kiln_model::CallTree::to_flat`] makes).
    fn flat_tree(&self, self_values: &[u64], children: &(Vec<u32>, Vec<u32>), names: &Names) -> FlatTree {
        let (first, order) = children;
        let mut totals = self_values.to_vec();
        // Children come after their parents: one backward pass sums every subtree.
        for node in (1..self.nodes.len()).rev() {
            let parent = self.nodes[node].parent as usize;
            totals[parent] = totals[parent].saturating_add(totals[node]);
        }
        let mut name_remap = vec![u32::MAX; names.texts.len()];
        let mut flat = FlatTree::default();
        let mut stack: Vec<(u32, NodeId)> = vec![(0, ROOT)];
        while let Some((node, flat_parent)) = stack.pop() {
            if node != 0 && totals[node as usize] == 0 {
                continue;
            }
            let name = self.nodes[node as usize].name;
            let remapped = &mut name_remap[name as usize];
            if *remapped == u32::MAX {
                *remapped = flat.names.len() as u32;
                flat.names.push(names.texts[name as usize].to_string());
            }
            let flat_index = flat.len() as NodeId;
            flat.name.push(*remapped);
            flat.parent.push(flat_parent);
            flat.total.push(totals[node as usize]);
            flat.self_value.push(self_values[node as usize]);
            let kids = &order[first[node as usize] as usize..first[node as usize + 1] as usize];
            stack.extend(kids.iter().rev().map(|&kid| (kid, flat_index)));
        }
        flat
    }
}

/// Decodes `raw` (pprof, gzipped or not) into one upload per (sample type, label set), within
/// the request's `budget`.
pub fn uploads(
    raw: &[u8],
    dest: &Destination,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
    now: i64,
) -> Result<Vec<Upload>, IngestError> {
    let unzipped;
    let bytes = if raw.starts_with(&body::GZIP_MAGIC) {
        unzipped = body::gunzip(raw, budget)?;
        &unzipped[..]
    } else {
        raw
    };
    let tables = Tables::read(bytes)?;
    let kinds = sample_kinds(&tables, dest.config)?;
    let frames = Frames::new(&tables)?;
    let kind_count = kinds.len();
    let mut names = Names::new(tables.strings.len() + frames.addresses.len());

    let mut series: Vec<Series> = Vec::new();
    let mut label_sets: SeededMap<Box<[(u64, u64)]>, u32> = SeededMap::default();
    // Groups of samples with one label set and one stack. The key is the series id, then the
    // location ids as the sample's varint bytes: a stack seen before is found without decoding
    // its ids (a wall profile repeats a few dozen stacks in thousands of samples), and a stack
    // like the sample's before (nearly every sample of a wall profile, one per tick) without
    // hashing. A stack written two ways (packed or not) makes two groups with the same leaf,
    // which is harmless.
    let mut groups: SeededMap<Box<[u8]>, u32> = SeededMap::default();
    let mut group_series: Vec<u32> = Vec::new();
    let mut group_leaves: Vec<u32> = Vec::new();
    // Per group and kind: the sum of the group's values.
    let mut group_values: Vec<u64> = Vec::new();
    // Buffers reused by every sample: no allocation per sample.
    let mut key: Vec<u8> = Vec::new();
    let mut previous_key: Vec<u8> = Vec::new();
    let mut previous_group = 0usize;
    let mut location_ids: Vec<u64> = Vec::new();
    let mut values: Vec<u64> = Vec::new();
    let mut labels: Vec<(u64, u64)> = Vec::new();
    // The label set of the sample before: most samples share it, and skip the lookup.
    let mut previous_labels: Vec<(u64, u64)> = Vec::new();
    let mut previous_series: Option<u32> = None;

    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        if number != 2 {
            continue;
        }
        key.clear();
        key.extend_from_slice(&[0; 4]);
        values.clear();
        labels.clear();
        let mut sample = Fields::new(field.bytes()?);
        while let Some((number, field)) = sample.next_field()? {
            match number {
                1 => match field {
                    Field::Bytes(packed) => key.extend_from_slice(packed),
                    Field::Varint(id) => push_varint(&mut key, id),
                    Field::Fixed => return Err(WireError::NotInteger.into()),
                },
                2 => field.push_varints(&mut values)?,
                3 => {
                    let (mut name, mut text) = (0, 0);
                    let mut label = Fields::new(field.bytes()?);
                    while let Some((number, field)) = label.next_field()? {
                        match number {
                            1 => name = field.int()? as u64,
                            2 => text = field.int()? as u64,
                            _ => {}
                        }
                    }
                    if text != 0 {
                        labels.push((name, text));
                    }
                }
                _ => {}
            }
        }
        if values.len() != tables.sample_types.len() {
            return Err(bad(format!(
                "pprof sample has {} values for {} sample types",
                values.len(),
                tables.sample_types.len()
            )));
        }

        // The label set: the first value of each label name counts (a stable sort keeps it).
        if labels.len() > 1 {
            labels.sort_by_key(|&(name, _)| name);
            labels.dedup_by_key(|&mut (name, _)| name);
        }
        let series_id = match previous_series {
            Some(id) if previous_labels == labels => id,
            _ => {
                let id = match label_sets.get(&labels[..]) {
                    Some(&id) => id,
                    None => {
                        let named = series_labels(&tables, dest, &labels, limits)?;
                        // Two label sets may name the same labels (a string-table entry
                        // twice): one series then.
                        let id = match series.iter().position(|s| s.labels == named) {
                            Some(same) => same as u32,
                            None => {
                                series.push(Series::new(named, kind_count));
                                series.len() as u32 - 1
                            }
                        };
                        // A series costs its labels and a tree per kind (about five nodes' memory each).
                        budget.decode.spend_nodes((1 + labels.len() + 5 * kind_count) as u64)?;
                        label_sets.insert(labels.as_slice().into(), id);
                        id
                    }
                };
                previous_labels.clone_from(&labels);
                previous_series = Some(id);
                id
            }
        };

        key[..4].copy_from_slice(&series_id.to_le_bytes());
        let group = if key == previous_key {
            previous_group
        } else {
            match groups.get(&key[..]) {
                Some(&group) => group as usize,
                None => {
                    let group = group_series.len();
                    let s = &mut series[series_id as usize];
                    let (nodes_before, name_units_before) = (s.nodes.len(), s.name_bytes / NAME_BYTES_PER_NODE);
                    // Root first: location ids are leaf first, a location's lines innermost first.
                    location_ids.clear();
                    let mut ids = Fields::new(&key[4..]);
                    while !ids.is_done() {
                        location_ids.push(ids.varint()?);
                    }
                    let (mut node, mut depth) = (0, 0);
                    'walk: for &id in location_ids.iter().rev() {
                        for &name in frames.of(id)?.iter().rev() {
                            if depth == limits.max_stack_depth {
                                break 'walk;
                            }
                            let text = names.id(name, &frames, &tables);
                            s.use_name(text, &names);
                            node = s.child(node, text);
                            depth += 1;
                        }
                    }
                    // Every sample type's tree holds the new nodes and names.
                    let grown =
                        (s.nodes.len() - nodes_before + s.name_bytes / NAME_BYTES_PER_NODE - name_units_before) as u64;
                    budget.decode.spend_frames((depth * kind_count) as u64)?;
                    budget.decode.spend_nodes(grown * kind_count as u64)?;
                    // The group itself (its key and values) is memory too.
                    budget.decode.spend_nodes(1 + location_ids.len() as u64 / 8)?;
                    groups.insert(key.as_slice().into(), group as u32);
                    group_series.push(series_id);
                    group_leaves.push(node);
                    group_values.resize(group_values.len() + kind_count, 0);
                    group
                }
            }
        };
        previous_group = group;
        std::mem::swap(&mut key, &mut previous_key);

        let s = &mut series[series_id as usize];
        for (k, kind) in kinds.iter().enumerate() {
            let value = values[kind.index] as i64;
            if value < 0 {
                return Err(bad(format!("pprof sample has a negative {} value ({value})", kind.profile_type)));
            }
            if value == 0 {
                continue;
            }
            // A total that overflows means the values are nonsense.
            s.totals[k] = s.totals[k]
                .checked_add(value as u64)
                .ok_or_else(|| bad(format!("pprof {} values add up beyond 2^64", kind.profile_type)))?;
            // At most the series' total: cannot overflow.
            group_values[group * kind_count + k] += value as u64;
        }
    }

    // Each node's own value per kind, node-major; groups sharing a leaf (a stack cut at the
    // depth limit, or written two ways) add up, within the series' checked total.
    let mut self_values: Vec<Vec<u64>> = series.iter().map(|s| vec![0; s.nodes.len() * kind_count]).collect();
    for (group, (&series_id, &leaf)) in group_series.iter().zip(&group_leaves).enumerate() {
        let own = &mut self_values[series_id as usize][leaf as usize * kind_count..][..kind_count];
        for (k, value) in own.iter_mut().enumerate() {
            *value += group_values[group * kind_count + k];
        }
    }

    let (from, until) = dest.range.unwrap_or_else(|| profile_range(&tables, now));
    let sample_rate = dest.sample_rate.unwrap_or_else(|| sample_rate(&tables));
    let mut out: Vec<(usize, Upload)> = Vec::new();
    for (s, own) in series.into_iter().zip(self_values) {
        let kinds_with_samples: Vec<usize> = (0..kind_count).filter(|&k| s.totals[k] > 0).collect();
        if kinds_with_samples.is_empty() {
            continue;
        }
        let children = s.children_in_name_order(&names);
        let mut column = vec![0u64; s.nodes.len()];
        for k in kinds_with_samples {
            for (node, value) in column.iter_mut().enumerate() {
                *value = own[node * kind_count + k];
            }
            let kind = &kinds[k];
            let meta = ProfileMeta {
                series: SeriesKey::new(dest.app, kind.profile_type.clone(), s.labels.clone()),
                from,
                until,
                units: kind.units.clone(),
                sample_rate,
                spy_name: dest.spy_name.to_string(),
                aggregation: kind.aggregation,
            };
            out.push((kind.index, Upload { meta, tree: s.flat_tree(&column, &children, &names) }));
        }
    }
    out.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.meta.series.labels.cmp(&y.meta.series.labels)));
    Ok(out.into_iter().map(|(_, upload)| upload).collect())
}

/// The labels of a series: the upload's, then the sample's string labels (checked).
fn series_labels(
    tables: &Tables,
    dest: &Destination,
    pairs: &[(u64, u64)],
    limits: &IngestLimits,
) -> Result<BTreeMap<String, String>, IngestError> {
    let mut labels = dest.labels.clone();
    for &(name, text) in pairs {
        let (key, value) = (tables.text(name as i64)?, tables.text(text as i64)?);
        if key.len() > limits.max_label_bytes || value.len() > limits.max_label_bytes {
            let key: String = key.chars().take(64).collect();
            return Err(bad(format!("pprof label `{key}` is longer than {} bytes", limits.max_label_bytes)));
        }
        labels.entry(key.into_owned()).or_insert_with(|| value.into_owned());
    }
    if labels.len() > limits.max_labels {
        return Err(bad(format!("a pprof sample has more than {} labels", limits.max_labels)));
    }
    Ok(labels)
}

/// A sample type that will be stored, and how.
#[derive(Debug)]
struct SampleKind {
    index: usize,
    profile_type: String,
    units: String,
    aggregation: Aggregation,
}

fn sample_kinds(tables: &Tables, config: &SampleTypeConfigs) -> Result<Vec<SampleKind>, IngestError> {
    let mut kinds: Vec<SampleKind> = Vec::new();
    for (index, &(kind, unit)) in tables.sample_types.iter().enumerate() {
        let (name, unit) = (tables.text(kind)?, tables.text(unit)?);
        if name.is_empty() {
            return Err(bad(format!("pprof sample type {index} has no name")));
        }
        let entry = config.get(name.as_ref()).cloned().or_else(|| default_config(&name)).unwrap_or_default();
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
fn profile_range(tables: &Tables, now: i64) -> (i64, i64) {
    if tables.time_nanos <= 0 {
        return (now, now);
    }
    let from = tables.time_nanos / 1_000_000_000;
    let until = tables.time_nanos.saturating_add(tables.duration_nanos.max(0)) / 1_000_000_000;
    (from, until.max(from))
}

/// Samples per second from a nanosecond period (what CPU profilers record), else 100.
fn sample_rate(tables: &Tables) -> u32 {
    let unit = tables.period_type.and_then(|(_, unit)| tables.string(unit).ok());
    if unit == Some(b"nanoseconds".as_slice()) && tables.period > 0 {
        u32::try_from(1_000_000_000 / tables.period).unwrap_or(u32::MAX).max(1)
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Function, Label, Line, Location, Profile, Sample, ValueType};
    use kiln_model::budget::Exhausted;
    use prost::Message;

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

    fn decode(raw: &[u8], config: &SampleTypeConfigs) -> Result<Vec<Upload>, IngestError> {
        let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let dest = Destination { app: "app", labels: &labels, range: None, sample_rate: None, spy_name: "t", config };
        let limits = IngestLimits { max_stack_depth: 3, ..IngestLimits::default() };
        uploads(raw, &dest, &limits, &mut limits.budget(), 5)
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

    /// A decoded tree with its profile type and labels.
    type TypedTree = (String, Vec<(String, String)>, kiln_model::FlatTree);

    proptest::proptest! {
        /// The decoder builds its trees straight from a stack tree shared by the sample types:
        /// they must be exactly what a `CallTree` per (label set, type) converted by `to_flat`
        /// gives, names that only differ after decoding (`total`, the root's name) included.
        #[test]
        fn trees_match_a_call_tree_per_series_and_type(
            samples in proptest::collection::vec(
                (
                    proptest::collection::vec(0usize..6, 0..6),
                    (0i64..4, 0i64..1000),
                    0usize..3,
                ),
                1..40,
            )
        ) {
            const NAMES: [&str; 6] = ["main", "total", "b", "é", "a", "ab"];
            const LABELS: [&[(&str, &str)]; 3] = [&[], &[("region", "eu")], &[("region", "us")]];
            let frames: Vec<Vec<&str>> = samples.iter().map(|(f, _, _)| f.iter().map(|&i| NAMES[i]).collect()).collect();
            let values: Vec<[i64; 2]> = samples.iter().map(|(_, (a, b), _)| [*a, *b]).collect();
            let stacks: Vec<TestSample> = samples
                .iter()
                .enumerate()
                .map(|(i, (_, _, l))| (&frames[i][..], &values[i][..], LABELS[*l]))
                .collect();
            let raw = profile(&[("alloc_objects", "count"), ("alloc_space", "bytes")], &stacks);
            let got = decode(&raw, &SampleTypeConfigs::new()).unwrap();

            let mut want: BTreeMap<(usize, Vec<(String, String)>), kiln_model::CallTree> = BTreeMap::new();
            for (leaf_first, values, labels) in &stacks {
                let root_first: Vec<&str> = leaf_first.iter().rev().take(3).copied().collect();
                for (k, &value) in values.iter().enumerate() {
                    let mut key: Vec<(String, String)> = vec![("env".into(), "prod".into())];
                    key.extend(labels.iter().map(|(a, b)| (a.to_string(), b.to_string())));
                    key.sort();
                    want.entry((k, key)).or_default().add_stack(root_first.iter().copied(), value as u64);
                }
            }
            let want: Vec<TypedTree> = want
                .into_iter()
                .filter(|(_, tree)| tree.total() > 0)
                .map(|((k, labels), tree)| (["alloc_objects", "alloc_space"][k].to_string(), labels, tree.to_flat()))
                .collect();
            let got: Vec<TypedTree> = got
                .into_iter()
                .map(|u| (u.meta.series.profile_type, u.meta.series.labels.into_iter().collect(), u.tree))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn samples_sharing_a_stack_are_grouped_and_their_values_add_up() {
        let mut stacks: Vec<TestSample> = Vec::new();
        for i in 0..1000 {
            let labels: &[(&str, &str)] = if i % 2 == 0 { &[("region", "eu")] } else { &[] };
            stacks.push((&["leaf", "main"], &[1], labels));
        }
        let mut p = Profile::decode(&profile(&[("cpu", "nanoseconds")], &stacks)[..]).unwrap();
        // Every sample on the first sample's locations, one of them unpacked on the wire.
        let first = p.sample[0].location_id.clone();
        for sample in &mut p.sample {
            sample.location_id.clone_from(&first);
        }
        let mut raw = p.encode_to_vec();
        // Field 2 (sample): location ids 1 then 2 unpacked (field 1, varint), value 5 unpacked.
        raw.extend_from_slice(&[0x12, 6, 0x08, 1, 0x08, 2, 0x10, 5]);
        let got = decode(&raw, &SampleTypeConfigs::new()).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(folded(&got[0]), ["main;leaf 505"]);
        assert_eq!(got[1].meta.series.labels.get("region").map(String::as_str), Some("eu"));
        assert_eq!(folded(&got[1]), ["main;leaf 500"]);
    }

    #[test]
    fn a_long_name_inlined_many_times_is_interned_once_and_cut_root_first() {
        let mut p = Profile::decode(&profile(&[("cpu", "nanoseconds")], &[(&["a"], &[5], &[])])[..]).unwrap();
        let name = p.function[0].name as usize;
        p.string_table[name] = vec![b'n'; 1 << 20];
        p.location[0].line = vec![Line { function_id: 1, line: 1 }; 20_000];
        let got = decode(&p.encode_to_vec(), &SampleTypeConfigs::new()).unwrap();
        assert_eq!(got[0].tree.len(), 4, "three frames under the root");
        assert_eq!(got[0].tree.names.len(), 2, "the name once");
    }

    #[test]
    fn expansion_beyond_the_budget_is_refused() {
        // One location of 1000 inlined frames, referenced by 2000 samples that differ at the
        // leaf: every sample walks 1000 frames (and the depth limit is large).
        let mut stacks: Vec<(Vec<u64>, i64)> = Vec::new();
        let mut p = Profile::decode(&profile(&[("cpu", "nanoseconds")], &[(&["a"], &[1], &[])])[..]).unwrap();
        p.location[0].line = vec![Line { function_id: 1, line: 1 }; 1000];
        for i in 0..2000u64 {
            p.location.push(Location { id: 2 + i, address: i, line: vec![] });
            stacks.push((vec![2 + i, 1], 1));
        }
        p.sample =
            stacks.into_iter().map(|(ids, v)| Sample { location_id: ids, value: vec![v], label: vec![] }).collect();
        let raw = p.encode_to_vec();
        let labels = BTreeMap::new();
        let none = SampleTypeConfigs::new();
        let dest =
            Destination { app: "a", labels: &labels, range: None, sample_rate: None, spy_name: "", config: &none };
        let limits = IngestLimits { frames_per_kib: 64, decode_floor_kib: 16, ..IngestLimits::default() };
        let refused = uploads(&raw, &dest, &limits, &mut limits.budget(), 0);
        assert!(matches!(refused, Err(IngestError::OverBudget(Exhausted::Frames { .. }))), "{refused:?}");
        let enough = IngestLimits { frames_per_kib: 1 << 20, ..limits };
        assert_eq!(uploads(&raw, &dest, &enough, &mut enough.budget(), 0).unwrap()[0].tree.total(), 2000);
    }

    #[test]
    fn real_agent_profiles_fit_the_budget_without_its_floor() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/agents/rust-v05/bodies");
        let limits = IngestLimits { decode_floor_kib: 0, ..IngestLimits::default() };
        let labels = BTreeMap::new();
        let none = SampleTypeConfigs::new();
        let dest =
            Destination { app: "a", labels: &labels, range: None, sample_rate: None, spy_name: "", config: &none };
        let mut read = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            let got = uploads(&raw, &dest, &limits, &mut limits.budget(), 0).unwrap();
            assert!(got.iter().all(|u| u.tree.total() > 0));
            read += 1;
        }
        assert!(read > 0);
    }
}
