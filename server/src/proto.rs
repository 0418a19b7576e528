//! Protocol-buffer messages shared by the layers that speak them: pprof (`perftools.profiles`),
//! which ingest builds in tests (decoding reads the wire format directly, see `ingest/pprof.rs`)
//! and the api's pprof export encodes, and Pyroscope's label pairs, in pushes and in its query
//! API. At the bottom of the layers, so neither has to import the other for them.

use prost::Message;

/// `perftools.profiles.Profile` as Kiln writes it (pprof export) and tests build it; decoding
/// reads the wire format directly (the ingest layer's `pprof::uploads`).
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

/// `types.v1.LabelPair`: Pyroscope's push (ingest) and its query API (api) both carry it.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}
