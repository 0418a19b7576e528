//! The messages of Pyroscope's `querier.v1`, `types.v1` and `settings.v1` that Kiln reads and
//! writes, with the field numbers of `shared/specs/pyroscope-connect-api.md` (prost derive, as
//! `crate::proto` does for pprof), and their protojson forms ([`FromJson`], [`ToJson`]).

use prost::Message;
use serde_json::Value;

use super::json::{Fields, Out, int64s, strings};
use crate::proto;
pub use crate::proto::LabelPair;

/// A request message read from protojson.
pub trait FromJson: Sized {
    /// Reads the message from its JSON object.
    fn from_json(value: &Value) -> Result<Self, String>;
}

/// A response message written as protojson.
pub trait ToJson {
    /// The message's JSON object.
    fn to_json(&self) -> Value;
}

/// `ProfileFormat`, by number.
pub const PROFILE_FORMATS: &[&str] = &[
    "PROFILE_FORMAT_UNSPECIFIED",
    "PROFILE_FORMAT_FLAMEGRAPH",
    "PROFILE_FORMAT_TREE",
    "PROFILE_FORMAT_DOT",
    "PROFILE_FORMAT_PPROF",
];
/// `types.v1.TimeSeriesAggregationType`, by number.
pub const AGGREGATIONS: &[&str] = &["TIME_SERIES_AGGREGATION_TYPE_SUM", "TIME_SERIES_AGGREGATION_TYPE_AVERAGE"];
const EXEMPLAR_TYPES: &[&str] =
    &["EXEMPLAR_TYPE_UNSPECIFIED", "EXEMPLAR_TYPE_NONE", "EXEMPLAR_TYPE_INDIVIDUAL", "EXEMPLAR_TYPE_SPAN"];
const ASYNC_QUERY_TYPES: &[&str] = &["ASYNC_QUERY_TYPE_DISABLED", "ASYNC_QUERY_TYPE_FORCE"];

/// `querier.v1.ProfileTypesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ProfileTypesRequest {
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "1")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub end: i64,
}

impl FromJson for ProfileTypesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "ProfileTypesRequest")?;
        Ok(ProfileTypesRequest { start: f.int64("start", "start")?, end: f.int64("end", "end")? })
    }
}

/// `types.v1.ProfileType`.
#[derive(Clone, PartialEq, Message)]
pub struct ProfileType {
    /// The five-part ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Part 1.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Part 2.
    #[prost(string, tag = "4")]
    pub sample_type: String,
    /// Part 3.
    #[prost(string, tag = "5")]
    pub sample_unit: String,
    /// Part 4.
    #[prost(string, tag = "6")]
    pub period_type: String,
    /// Part 5.
    #[prost(string, tag = "7")]
    pub period_unit: String,
}

impl ToJson for ProfileType {
    fn to_json(&self) -> Value {
        Out::new()
            .string("ID", &self.id)
            .string("name", &self.name)
            .string("sampleType", &self.sample_type)
            .string("sampleUnit", &self.sample_unit)
            .string("periodType", &self.period_type)
            .string("periodUnit", &self.period_unit)
            .done()
    }
}

/// `querier.v1.ProfileTypesResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ProfileTypesResponse {
    /// One per profile type with data.
    #[prost(message, repeated, tag = "1")]
    pub profile_types: Vec<ProfileType>,
}

impl ToJson for ProfileTypesResponse {
    fn to_json(&self) -> Value {
        Out::new().list("profileTypes", self.profile_types.iter().map(ToJson::to_json).collect()).done()
    }
}

/// `types.v1.LabelNamesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelNamesRequest {
    /// Label selectors; any of them selects a series (none: every series).
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub end: i64,
}

impl FromJson for LabelNamesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "LabelNamesRequest")?;
        Ok(LabelNamesRequest {
            matchers: f.strings("matchers", "matchers")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
        })
    }
}

/// `types.v1.LabelValuesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelValuesRequest {
    /// The label.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label selectors; any of them selects a series.
    #[prost(string, repeated, tag = "2")]
    pub matchers: Vec<String>,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub end: i64,
}

impl FromJson for LabelValuesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "LabelValuesRequest")?;
        Ok(LabelValuesRequest {
            name: f.string("name", "name")?,
            matchers: f.strings("matchers", "matchers")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
        })
    }
}

/// `types.v1.LabelNamesResponse` and `types.v1.LabelValuesResponse` (the same shape).
#[derive(Clone, PartialEq, Message)]
pub struct NamesResponse {
    /// Sorted, distinct.
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

impl ToJson for NamesResponse {
    fn to_json(&self) -> Value {
        Out::new().list("names", strings(&self.names)).done()
    }
}

/// `querier.v1.SeriesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SeriesRequest {
    /// Label selectors; any of them selects a series.
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    /// The labels to answer (all when empty).
    #[prost(string, repeated, tag = "2")]
    pub label_names: Vec<String>,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub end: i64,
}

impl FromJson for SeriesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SeriesRequest")?;
        Ok(SeriesRequest {
            matchers: f.strings("matchers", "matchers")?,
            label_names: f.strings("labelNames", "label_names")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
        })
    }
}

impl ToJson for LabelPair {
    fn to_json(&self) -> Value {
        Out::new().string("name", &self.name).string("value", &self.value).done()
    }
}

/// `types.v1.Labels`.
#[derive(Clone, PartialEq, Message)]
pub struct Labels {
    /// Sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
}

/// `querier.v1.SeriesResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct SeriesResponse {
    /// One per distinct label set.
    #[prost(message, repeated, tag = "2")]
    pub labels_set: Vec<Labels>,
}

impl ToJson for SeriesResponse {
    fn to_json(&self) -> Value {
        let sets = self
            .labels_set
            .iter()
            .map(|set| Out::new().list("labels", set.labels.iter().map(ToJson::to_json).collect()).done())
            .collect();
        Out::new().list("labelsSet", sets).done()
    }
}

/// `types.v1.Location`.
#[derive(Clone, PartialEq, Message)]
pub struct CallSiteLocation {
    /// Frame name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `types.v1.GoPGO` (read, not applied).
#[derive(Clone, PartialEq, Message)]
pub struct GoPgo {
    /// Locations kept per stack.
    #[prost(uint32, tag = "1")]
    pub keep_locations: u32,
    /// Whether callees are aggregated.
    #[prost(bool, tag = "2")]
    pub aggregate_callees: bool,
}

/// `types.v1.StackTraceSelector`.
#[derive(Clone, PartialEq, Message)]
pub struct StackTraceSelector {
    /// Frames from the root: only stacks through this call site count.
    #[prost(message, repeated, tag = "1")]
    pub call_site: Vec<CallSiteLocation>,
    /// Go PGO options.
    #[prost(message, optional, tag = "2")]
    pub go_pgo: Option<GoPgo>,
}

fn stack_trace_selector(value: Option<&Value>) -> Result<Option<StackTraceSelector>, String> {
    let Some(value) = value else { return Ok(None) };
    let f = Fields::of(value, "stackTraceSelector")?;
    let call_site = match f.message("callSite", "call_site") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| Ok(CallSiteLocation { name: Fields::of(item, "callSite[]")?.string("name", "name")? }))
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("`callSite` must be an array".into()),
    };
    Ok(Some(StackTraceSelector { call_site, go_pgo: None }))
}

/// `querier.v1.AsyncQueryRequest` (read, not applied: answers are synchronous).
#[derive(Clone, PartialEq, Message)]
pub struct AsyncQueryRequest {
    /// Request id.
    #[prost(string, tag = "1")]
    pub request_id: String,
    /// `AsyncQueryType`.
    #[prost(int32, tag = "2")]
    pub r#type: i32,
}

/// `querier.v1.SelectMergeStacktracesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectMergeStacktracesRequest {
    /// Five-part profile type ID.
    #[prost(string, tag = "1")]
    pub profile_type_id: String,
    /// `{…}` selector.
    #[prost(string, tag = "2")]
    pub label_selector: String,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub end: i64,
    /// Node budget of the flamegraph.
    #[prost(int64, optional, tag = "5")]
    pub max_nodes: Option<i64>,
    /// `ProfileFormat`.
    #[prost(int32, tag = "6")]
    pub format: i32,
    /// Focus on a call site.
    #[prost(message, optional, tag = "7")]
    pub stack_trace_selector: Option<StackTraceSelector>,
    /// Profile ids (not stored by Kiln: refused when given).
    #[prost(string, repeated, tag = "8")]
    pub profile_id_selector: Vec<String>,
    /// Asynchronous query options (ignored).
    #[prost(message, optional, tag = "9")]
    pub r#async: Option<AsyncQueryRequest>,
    /// Trace ids (not stored by Kiln: refused when given).
    #[prost(string, repeated, tag = "10")]
    pub trace_id_selector: Vec<String>,
    /// Span ids (not stored by Kiln: an empty graph).
    #[prost(string, repeated, tag = "11")]
    pub span_selector: Vec<String>,
}

impl FromJson for SelectMergeStacktracesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SelectMergeStacktracesRequest")?;
        let r#async = match f.message("async", "async") {
            None => None,
            Some(v) => {
                let a = Fields::of(v, "async")?;
                Some(AsyncQueryRequest {
                    request_id: a.string("requestId", "request_id")?,
                    r#type: a.enumeration("type", "type", ASYNC_QUERY_TYPES)?.unwrap_or(0),
                })
            }
        };
        Ok(SelectMergeStacktracesRequest {
            profile_type_id: f.string("profileTypeID", "profile_typeID")?,
            label_selector: f.string("labelSelector", "label_selector")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
            max_nodes: f.int64_opt("maxNodes", "max_nodes")?,
            format: f.enumeration("format", "format", PROFILE_FORMATS)?.unwrap_or(0),
            stack_trace_selector: stack_trace_selector(f.message("stackTraceSelector", "stack_trace_selector"))?,
            profile_id_selector: f.strings("profileIdSelector", "profile_id_selector")?,
            r#async,
            trace_id_selector: f.strings("traceIdSelector", "trace_id_selector")?,
            span_selector: f.strings("spanSelector", "span_selector")?,
        })
    }
}

/// `querier.v1.Level`.
#[derive(Clone, PartialEq, Message)]
pub struct Level {
    /// 4-tuples (7-tuples in a diff), see `flamegraph.rs`.
    #[prost(int64, repeated, tag = "1")]
    pub values: Vec<i64>,
}

fn levels_json(levels: &[Level]) -> Vec<Value> {
    levels.iter().map(|l| Out::new().list("values", int64s(&l.values)).done()).collect()
}

/// `querier.v1.FlameGraph`.
#[derive(Clone, PartialEq, Message)]
pub struct FlameGraph {
    /// `names[0]` is `total`.
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    /// Rows from the root.
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    /// The root's total.
    #[prost(int64, tag = "3")]
    pub total: i64,
    /// The largest self value.
    #[prost(int64, tag = "4")]
    pub max_self: i64,
}

impl ToJson for FlameGraph {
    fn to_json(&self) -> Value {
        Out::new()
            .list("names", strings(&self.names))
            .list("levels", levels_json(&self.levels))
            .int64("total", self.total)
            .int64("maxSelf", self.max_self)
            .done()
    }
}

/// `querier.v1.PprofProfile`.
#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    /// The merged profile.
    #[prost(message, optional, tag = "1")]
    pub profile: Option<proto::Profile>,
}

/// `querier.v1.SelectMergeStacktracesResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectMergeStacktracesResponse {
    /// FLAMEGRAPH answer.
    #[prost(message, optional, tag = "1")]
    pub flamegraph: Option<FlameGraph>,
    /// PPROF answer.
    #[prost(message, optional, tag = "5")]
    pub pprof: Option<PprofProfile>,
}

impl ToJson for SelectMergeStacktracesResponse {
    fn to_json(&self) -> Value {
        let pprof =
            self.pprof.as_ref().map(|p| Out::new().message("profile", p.profile.as_ref().map(ToJson::to_json)).done());
        Out::new().message("flamegraph", self.flamegraph.as_ref().map(ToJson::to_json)).message("pprof", pprof).done()
    }
}

/// `querier.v1.SelectMergeSpanProfileRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectMergeSpanProfileRequest {
    /// Five-part profile type ID.
    #[prost(string, tag = "1")]
    pub profile_type_id: String,
    /// `{…}` selector.
    #[prost(string, tag = "2")]
    pub label_selector: String,
    /// Span ids.
    #[prost(string, repeated, tag = "3")]
    pub span_selector: Vec<String>,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "5")]
    pub end: i64,
    /// Node budget.
    #[prost(int64, optional, tag = "6")]
    pub max_nodes: Option<i64>,
    /// `ProfileFormat`.
    #[prost(int32, tag = "7")]
    pub format: i32,
}

impl FromJson for SelectMergeSpanProfileRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SelectMergeSpanProfileRequest")?;
        Ok(SelectMergeSpanProfileRequest {
            profile_type_id: f.string("profileTypeID", "profile_typeID")?,
            label_selector: f.string("labelSelector", "label_selector")?,
            span_selector: f.strings("spanSelector", "span_selector")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
            max_nodes: f.int64_opt("maxNodes", "max_nodes")?,
            format: f.enumeration("format", "format", PROFILE_FORMATS)?.unwrap_or(0),
        })
    }
}

/// `querier.v1.SelectMergeSpanProfileResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectMergeSpanProfileResponse {
    /// The graph.
    #[prost(message, optional, tag = "1")]
    pub flamegraph: Option<FlameGraph>,
}

impl ToJson for SelectMergeSpanProfileResponse {
    fn to_json(&self) -> Value {
        Out::new().message("flamegraph", self.flamegraph.as_ref().map(ToJson::to_json)).done()
    }
}

/// `querier.v1.SelectMergeProfileRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectMergeProfileRequest {
    /// Five-part profile type ID.
    #[prost(string, tag = "1")]
    pub profile_type_id: String,
    /// `{…}` selector.
    #[prost(string, tag = "2")]
    pub label_selector: String,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub end: i64,
    /// Node budget.
    #[prost(int64, optional, tag = "5")]
    pub max_nodes: Option<i64>,
    /// Focus on a call site.
    #[prost(message, optional, tag = "6")]
    pub stack_trace_selector: Option<StackTraceSelector>,
    /// Profile ids (refused when given).
    #[prost(string, repeated, tag = "7")]
    pub profile_id_selector: Vec<String>,
    /// Trace ids (refused when given).
    #[prost(string, repeated, tag = "8")]
    pub trace_id_selector: Vec<String>,
}

impl FromJson for SelectMergeProfileRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SelectMergeProfileRequest")?;
        Ok(SelectMergeProfileRequest {
            profile_type_id: f.string("profileTypeID", "profile_typeID")?,
            label_selector: f.string("labelSelector", "label_selector")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
            max_nodes: f.int64_opt("maxNodes", "max_nodes")?,
            stack_trace_selector: stack_trace_selector(f.message("stackTraceSelector", "stack_trace_selector"))?,
            profile_id_selector: f.strings("profileIdSelector", "profile_id_selector")?,
            trace_id_selector: f.strings("traceIdSelector", "trace_id_selector")?,
        })
    }
}

impl ToJson for proto::Profile {
    fn to_json(&self) -> Value {
        let value_type = |v: &proto::ValueType| Out::new().int64("type", v.r#type).int64("unit", v.unit).done();
        let samples = self
            .sample
            .iter()
            .map(|s| {
                let ids: Vec<Value> = s.location_id.iter().map(|id| Value::String(id.to_string())).collect();
                Out::new().list("locationId", ids).list("value", int64s(&s.value)).done()
            })
            .collect();
        let locations = self
            .location
            .iter()
            .map(|l| {
                let lines = l
                    .line
                    .iter()
                    .map(|line| Out::new().uint64("functionId", line.function_id).int64("line", line.line).done())
                    .collect();
                Out::new().uint64("id", l.id).uint64("address", l.address).list("line", lines).done()
            })
            .collect();
        let functions =
            self.function.iter().map(|f| Out::new().uint64("id", f.id).int64("name", f.name).done()).collect();
        let table: Vec<Value> =
            self.string_table.iter().map(|s| Value::String(String::from_utf8_lossy(s).into_owned())).collect();
        Out::new()
            .list("sampleType", self.sample_type.iter().map(value_type).collect())
            .list("sample", samples)
            .list("location", locations)
            .list("function", functions)
            .list("stringTable", table)
            .int64("timeNanos", self.time_nanos)
            .int64("durationNanos", self.duration_nanos)
            .message("periodType", self.period_type.as_ref().map(value_type))
            .int64("period", self.period)
            .done()
    }
}

/// `querier.v1.SelectSeriesRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectSeriesRequest {
    /// Five-part profile type ID.
    #[prost(string, tag = "1")]
    pub profile_type_id: String,
    /// `{…}` selector.
    #[prost(string, tag = "2")]
    pub label_selector: String,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub end: i64,
    /// One series per distinct value set of these labels.
    #[prost(string, repeated, tag = "5")]
    pub group_by: Vec<String>,
    /// Seconds per point.
    #[prost(double, tag = "6")]
    pub step: f64,
    /// `TimeSeriesAggregationType`.
    #[prost(int32, optional, tag = "7")]
    pub aggregation: Option<i32>,
    /// Focus on a call site.
    #[prost(message, optional, tag = "8")]
    pub stack_trace_selector: Option<StackTraceSelector>,
    /// The top series by total.
    #[prost(int64, optional, tag = "9")]
    pub limit: Option<i64>,
    /// `ExemplarType` (exemplars are never answered).
    #[prost(int32, tag = "10")]
    pub exemplar_type: i32,
}

impl FromJson for SelectSeriesRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SelectSeriesRequest")?;
        Ok(SelectSeriesRequest {
            profile_type_id: f.string("profileTypeID", "profile_typeID")?,
            label_selector: f.string("labelSelector", "label_selector")?,
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
            group_by: f.strings("groupBy", "group_by")?,
            step: f.double("step", "step")?,
            aggregation: f.enumeration("aggregation", "aggregation", AGGREGATIONS)?,
            stack_trace_selector: stack_trace_selector(f.message("stackTraceSelector", "stack_trace_selector"))?,
            limit: f.int64_opt("limit", "limit")?,
            exemplar_type: f.enumeration("exemplarType", "exemplar_type", EXEMPLAR_TYPES)?.unwrap_or(0),
        })
    }
}

/// `types.v1.Point`.
#[derive(Clone, PartialEq, Message)]
pub struct Point {
    /// The step's value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `types.v1.Series`.
#[derive(Clone, PartialEq, Message)]
pub struct Series {
    /// The group's labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    /// One per step with data.
    #[prost(message, repeated, tag = "2")]
    pub points: Vec<Point>,
}

/// `querier.v1.SelectSeriesResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectSeriesResponse {
    /// One per group.
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<Series>,
}

impl ToJson for SelectSeriesResponse {
    fn to_json(&self) -> Value {
        let series = self
            .series
            .iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .map(|p| Out::new().double("value", p.value).int64("timestamp", p.timestamp).done())
                    .collect();
                Out::new().list("labels", s.labels.iter().map(ToJson::to_json).collect()).list("points", points).done()
            })
            .collect();
        Out::new().list("series", series).done()
    }
}

/// `querier.v1.DiffRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct DiffRequest {
    /// The baseline.
    #[prost(message, optional, tag = "1")]
    pub left: Option<SelectMergeStacktracesRequest>,
    /// The comparison.
    #[prost(message, optional, tag = "2")]
    pub right: Option<SelectMergeStacktracesRequest>,
}

impl FromJson for DiffRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "DiffRequest")?;
        let side = |name: &str| f.message(name, name).map(SelectMergeStacktracesRequest::from_json).transpose();
        Ok(DiffRequest { left: side("left")?, right: side("right")? })
    }
}

/// `querier.v1.FlameGraphDiff`.
#[derive(Clone, PartialEq, Message)]
pub struct FlameGraphDiff {
    /// `names[0]` is `total`.
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    /// Rows of 7-tuples.
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    /// Both sides' totals.
    #[prost(int64, tag = "3")]
    pub total: i64,
    /// The largest self value on either side.
    #[prost(int64, tag = "4")]
    pub max_self: i64,
    /// The left side's total.
    #[prost(int64, tag = "5")]
    pub left_ticks: i64,
    /// The right side's total.
    #[prost(int64, tag = "6")]
    pub right_ticks: i64,
}

/// `querier.v1.DiffResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct DiffResponse {
    /// The comparison.
    #[prost(message, optional, tag = "1")]
    pub flamegraph: Option<FlameGraphDiff>,
}

impl ToJson for DiffResponse {
    fn to_json(&self) -> Value {
        let graph = self.flamegraph.as_ref().map(|g| {
            Out::new()
                .list("names", strings(&g.names))
                .list("levels", levels_json(&g.levels))
                .int64("total", g.total)
                .int64("maxSelf", g.max_self)
                .int64("leftTicks", g.left_ticks)
                .int64("rightTicks", g.right_ticks)
                .done()
        });
        Out::new().message("flamegraph", graph).done()
    }
}

/// A message with no fields (`GetProfileStatsRequest`, `GetSettingsRequest`,
/// `DeleteSettingsResponse`).
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

impl FromJson for Empty {
    fn from_json(value: &Value) -> Result<Self, String> {
        Fields::of(value, "the request")?;
        Ok(Empty {})
    }
}

impl ToJson for Empty {
    fn to_json(&self) -> Value {
        Out::new().done()
    }
}

/// `types.v1.GetProfileStatsResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetProfileStatsResponse {
    /// Whether the tenant has any data.
    #[prost(bool, tag = "1")]
    pub data_ingested: bool,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub oldest_profile_time: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub newest_profile_time: i64,
}

impl ToJson for GetProfileStatsResponse {
    fn to_json(&self) -> Value {
        Out::new()
            .bool("dataIngested", self.data_ingested)
            .int64("oldestProfileTime", self.oldest_profile_time)
            .int64("newestProfileTime", self.newest_profile_time)
            .done()
    }
}

/// `querier.v1.AnalyzeQueryRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct AnalyzeQueryRequest {
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub start: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub end: i64,
    /// `profile_type_id{…}` or `{…}`.
    #[prost(string, tag = "4")]
    pub query: String,
}

impl FromJson for AnalyzeQueryRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "AnalyzeQueryRequest")?;
        Ok(AnalyzeQueryRequest {
            start: f.int64("start", "start")?,
            end: f.int64("end", "end")?,
            query: f.string("query", "query")?,
        })
    }
}

/// `querier.v1.QueryScope`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryScope {
    /// What was looked at.
    #[prost(string, tag = "1")]
    pub component_type: String,
    /// How many of them.
    #[prost(uint64, tag = "2")]
    pub component_count: u64,
    /// Blocks read.
    #[prost(uint64, tag = "3")]
    pub block_count: u64,
    /// Series selected.
    #[prost(uint64, tag = "4")]
    pub series_count: u64,
    /// Profiles (uploads) read.
    #[prost(uint64, tag = "5")]
    pub profile_count: u64,
    /// Samples read.
    #[prost(uint64, tag = "6")]
    pub sample_count: u64,
    /// Index bytes read.
    #[prost(uint64, tag = "7")]
    pub index_bytes: u64,
    /// Profile bytes read.
    #[prost(uint64, tag = "8")]
    pub profile_bytes: u64,
    /// Symbol bytes read.
    #[prost(uint64, tag = "9")]
    pub symbol_bytes: u64,
}

/// `querier.v1.QueryImpact`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryImpact {
    /// Stored bytes the query reads.
    #[prost(uint64, tag = "2")]
    pub total_bytes_in_time_range: u64,
    /// Series it reads.
    #[prost(uint64, tag = "3")]
    pub total_queried_series: u64,
    /// Always false: Kiln stores each upload once.
    #[prost(bool, tag = "4")]
    pub deduplication_needed: bool,
}

/// `querier.v1.AnalyzeQueryResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct AnalyzeQueryResponse {
    /// Where the query reads.
    #[prost(message, repeated, tag = "1")]
    pub query_scopes: Vec<QueryScope>,
    /// What it costs.
    #[prost(message, optional, tag = "2")]
    pub query_impact: Option<QueryImpact>,
}

impl ToJson for AnalyzeQueryResponse {
    fn to_json(&self) -> Value {
        let scopes = self
            .query_scopes
            .iter()
            .map(|s| {
                Out::new()
                    .string("componentType", &s.component_type)
                    .uint64("componentCount", s.component_count)
                    .uint64("blockCount", s.block_count)
                    .uint64("seriesCount", s.series_count)
                    .uint64("profileCount", s.profile_count)
                    .uint64("sampleCount", s.sample_count)
                    .uint64("indexBytes", s.index_bytes)
                    .uint64("profileBytes", s.profile_bytes)
                    .uint64("symbolBytes", s.symbol_bytes)
                    .done()
            })
            .collect();
        let impact = self.query_impact.as_ref().map(|i| {
            Out::new()
                .uint64("totalBytesInTimeRange", i.total_bytes_in_time_range)
                .uint64("totalQueriedSeries", i.total_queried_series)
                .bool("deduplicationNeeded", i.deduplication_needed)
                .done()
        });
        Out::new().list("queryScopes", scopes).message("queryImpact", impact).done()
    }
}

/// `settings.v1.Setting`.
#[derive(Clone, PartialEq, Message, serde::Serialize, serde::Deserialize)]
pub struct Setting {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value (opaque to Kiln).
    #[prost(string, tag = "2")]
    pub value: String,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub modified_at: i64,
}

impl ToJson for Setting {
    fn to_json(&self) -> Value {
        Out::new().string("name", &self.name).string("value", &self.value).int64("modifiedAt", self.modified_at).done()
    }
}

fn setting_from_json(value: &Value) -> Result<Setting, String> {
    let f = Fields::of(value, "setting")?;
    Ok(Setting {
        name: f.string("name", "name")?,
        value: f.string("value", "value")?,
        modified_at: f.int64("modifiedAt", "modifiedAt")?,
    })
}

/// `settings.v1.GetSettingsResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSettingsResponse {
    /// Every setting of the tenant, by name.
    #[prost(message, repeated, tag = "1")]
    pub settings: Vec<Setting>,
}

impl ToJson for GetSettingsResponse {
    fn to_json(&self) -> Value {
        Out::new().list("settings", self.settings.iter().map(ToJson::to_json).collect()).done()
    }
}

/// `settings.v1.SetSettingsRequest` and `SetSettingsResponse` (the same shape).
#[derive(Clone, PartialEq, Message)]
pub struct SettingMessage {
    /// The setting.
    #[prost(message, optional, tag = "1")]
    pub setting: Option<Setting>,
}

impl FromJson for SettingMessage {
    fn from_json(value: &Value) -> Result<Self, String> {
        let f = Fields::of(value, "SetSettingsRequest")?;
        Ok(SettingMessage { setting: f.message("setting", "setting").map(setting_from_json).transpose()? })
    }
}

impl ToJson for SettingMessage {
    fn to_json(&self) -> Value {
        Out::new().message("setting", self.setting.as_ref().map(ToJson::to_json)).done()
    }
}

/// `settings.v1.DeleteSettingsRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct DeleteSettingsRequest {
    /// The setting's name.
    #[prost(string, tag = "1")]
    pub name: String,
}

impl FromJson for DeleteSettingsRequest {
    fn from_json(value: &Value) -> Result<Self, String> {
        Ok(DeleteSettingsRequest { name: Fields::of(value, "DeleteSettingsRequest")?.string("name", "name")? })
    }
}
