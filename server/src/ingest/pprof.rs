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

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Display;
use std::ops::Range;

use kiln_model::budget::TreeSize;
use kiln_model::{CallTree, NodeId, ROOT, SeededMap};
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

/// The trees of one series (one label set): one per stored sample type, all of which intern
/// the same names in the same order, so that a name id is the same in each.
struct Series {
    labels: BTreeMap<String, String>,
    trees: Vec<CallTree>,
    sizes: Vec<TreeSize>,
    totals: Vec<u64>,
    /// Tree name id of each frame name met so far.
    name_ids: SeededMap<u32, u32>,
}

impl Series {
    fn new(labels: BTreeMap<String, String>, kinds: usize) -> Self {
        let trees: Vec<CallTree> = (0..kinds).map(|_| CallTree::new()).collect();
        let sizes = trees.iter().map(TreeSize::of).collect();
        Series { labels, trees, sizes, totals: vec![0; kinds], name_ids: SeededMap::default() }
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

    let mut series: Vec<Series> = Vec::new();
    let mut label_sets: SeededMap<Box<[(u64, u64)]>, u32> = SeededMap::default();
    // Groups of samples with one label set and one stack. The key is the series id, then the
    // location ids as the sample's varint bytes: a stack seen before is found without decoding
    // its ids (a wall profile repeats a few dozen stacks in thousands of samples). A stack
    // written two ways (packed or not) makes two groups with the same leaf, which is harmless.
    let mut groups: SeededMap<Box<[u8]>, u32> = SeededMap::default();
    let mut group_series: Vec<u32> = Vec::new();
    // Per group and kind: the leaf node, and the sum of the group's values.
    let mut group_leaves: Vec<NodeId> = Vec::new();
    let mut group_values: Vec<u64> = Vec::new();
    // Buffers reused by every sample: no allocation per sample.
    let mut stack_bytes: Vec<u8> = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut location_ids: Vec<u64> = Vec::new();
    let mut values: Vec<u64> = Vec::new();
    let mut labels: Vec<(u64, u64)> = Vec::new();
    // The label set of the sample before: most samples share it, and skip the lookup.
    let mut previous_labels: Vec<(u64, u64)> = Vec::new();
    let mut previous_series: Option<u32> = None;
    let mut walk: Vec<NodeId> = Vec::with_capacity(kind_count);

    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        if number != 2 {
            continue;
        }
        stack_bytes.clear();
        values.clear();
        labels.clear();
        let mut sample = Fields::new(field.bytes()?);
        while let Some((number, field)) = sample.next_field()? {
            match number {
                1 => match field {
                    Field::Bytes(packed) => stack_bytes.extend_from_slice(packed),
                    Field::Varint(id) => push_varint(&mut stack_bytes, id),
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
        labels.sort_by_key(|&(name, _)| name);
        labels.dedup_by_key(|&mut (name, _)| name);
        let series_id = match previous_series {
            Some(id) if previous_labels == labels => id,
            _ => {
                let id = match label_sets.get(&labels[..]) {
                    Some(&id) => id,
                    None => {
                        let id = series.len() as u32;
                        series.push(Series::new(series_labels(&tables, dest, &labels, limits)?, kind_count));
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

        key.clear();
        key.extend_from_slice(&series_id.to_le_bytes());
        key.extend_from_slice(&stack_bytes);
        let group = match groups.get(&key[..]) {
            Some(&group) => group as usize,
            None => {
                let group = group_series.len();
                let s = &mut series[series_id as usize];
                walk.clear();
                walk.resize(kind_count, ROOT);
                // Root first: location ids are leaf first, a location's lines innermost first.
                location_ids.clear();
                let mut ids = Fields::new(&stack_bytes);
                while !ids.is_done() {
                    location_ids.push(ids.varint()?);
                }
                let mut depth = 0;
                for &id in location_ids.iter().rev() {
                    let names = frames.of(id)?;
                    for &name in names.iter().rev() {
                        if depth == limits.max_stack_depth {
                            break;
                        }
                        let name_id = match s.name_ids.get(&name) {
                            Some(&n) => n,
                            None => {
                                let bytes = frames.name(&tables, name);
                                let mut n = 0;
                                for tree in &mut s.trees {
                                    n = tree.intern_bytes(bytes);
                                }
                                s.name_ids.insert(name, n);
                                n
                            }
                        };
                        for (node, tree) in walk.iter_mut().zip(&mut s.trees) {
                            *node = tree.child_by_name_id(*node, name_id);
                        }
                        depth += 1;
                    }
                }
                budget.decode.spend_frames((depth * kind_count) as u64)?;
                for (tree, size) in s.trees.iter().zip(&mut s.sizes) {
                    budget.decode.spend_growth(tree, size)?;
                }
                // The group itself (its key and values) is memory too.
                budget.decode.spend_nodes(1 + location_ids.len() as u64 / 8)?;
                groups.insert(key.as_slice().into(), group as u32);
                group_series.push(series_id);
                group_leaves.extend_from_slice(&walk);
                group_values.resize(group_values.len() + kind_count, 0);
                group
            }
        };

        let s = &mut series[series_id as usize];
        for (k, kind) in kinds.iter().enumerate() {
            let value = values[kind.index] as i64;
            if value < 0 {
                return Err(bad(format!("pprof sample has a negative {} value ({value})", kind.profile_type)));
            }
            if value == 0 {
                continue;
            }
            // The tree saturates; a total that overflows means the values are nonsense.
            s.totals[k] = s.totals[k]
                .checked_add(value as u64)
                .ok_or_else(|| bad(format!("pprof {} values add up beyond 2^64", kind.profile_type)))?;
            // At most the series' total: cannot overflow.
            group_values[group * kind_count + k] += value as u64;
        }
    }

    for (group, &series_id) in group_series.iter().enumerate() {
        let s = &mut series[series_id as usize];
        for (k, tree) in s.trees.iter_mut().enumerate() {
            tree.add_self(group_leaves[group * kind_count + k], group_values[group * kind_count + k]);
        }
    }
    // Two label sets may name the same labels (a string-table entry twice): one series then.
    let mut trees: BTreeMap<(usize, BTreeMap<String, String>), CallTree> = BTreeMap::new();
    for s in series {
        for (k, tree) in s.trees.into_iter().enumerate() {
            if tree.total() == 0 {
                continue;
            }
            match trees.entry((kinds[k].index, s.labels.clone())) {
                Entry::Vacant(slot) => {
                    slot.insert(tree);
                }
                Entry::Occupied(mut slot) => slot.get_mut().merge_tree(&tree),
            }
        }
    }

    let (from, until) = dest.range.unwrap_or_else(|| profile_range(&tables, now));
    let sample_rate = dest.sample_rate.unwrap_or_else(|| sample_rate(&tables));
    Ok(trees
        .into_iter()
        .map(|((index, labels), tree)| {
            let kind = kinds.iter().find(|k| k.index == index).expect("a tree per kind");
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
