//! OpenTelemetry profiles (OTLP, `opentelemetry.proto.profiles.v1development`, proto v1.10) into
//! [`Upload`]s: what the OpenTelemetry eBPF profiler, the Collector and Alloy export.
//!
//! Both transports (gRPC `ProfilesService/Export` and `POST /v1development/profiles`) end here
//! with an [`ExportProfilesServiceRequest`] (the HTTP side decodes protobuf with prost and JSON
//! with [`json`]); [`decode`] maps it and the api layer stores and answers it.
//!
//! **Dictionary.** A request has one dictionary shared by all its profiles; element 0 of every
//! table is the empty value, so index 0 means "none" everywhere. An index outside its table
//! inside the dictionary (a line's function, a location's mapping, a stack's location, an
//! attribute's key) breaks every profile: the request is refused whole (400). An index outside
//! a table in a profile (its sample type, a sample's stack or attributes) is that profile's
//! fault: it is refused alone and counted in `partial_success`, the others are stored.
//!
//! **Profile types.** Each profile has one sample type (and maybe a period):
//! `samples/count` with a `cpu/nanoseconds` period (the eBPF profiler's on-CPU profile) is Kiln's
//! `cpu` in nanoseconds, each count worth `period` nanoseconds; any other sample type goes through
//! the same table as pprof ([`super::pprof::default_config`]: `cpu`, `alloc_space`,
//! `inuse_objects`, …) and a type in neither is stored under its own name and unit, as pprof
//! does (the eBPF profiler's `off_cpu/nanoseconds` is then Kiln's known type `off_cpu`). The five-part IDs Pyroscope clients ask for follow from those
//! types (`kiln_model::selector::profile_type_id`).
//!
//! **Applications and labels.** The application is the resource's `service.name`; when it is
//! missing or the SDK default (`unknown_service…`), each sample's `service.name` or
//! `process.executable.name` (older eBPF profilers put process identity in sample attributes,
//! newer ones in one resource per process), else the resource's `process.executable.name`,
//! else `unknown_service`. The name is used whole: dots never split it into app and type. The
//! other resource and profile attributes with scalar values are series labels; sample
//! attributes become labels only when listed in [`OtlpOptions::sample_labels`]
//! (`--otlp-sample-labels`), so that thread names or span ids cannot multiply series.
//!
//! **Stacks.** A sample's stack lists locations leaf first; a location's lines are innermost
//! first (inlined functions expand to several frames). A location without lines (an
//! unsymbolized native frame) is `<mapping file name>+0x<offset in the file>`, or the build id
//! when the mapping has no name, or `0x<address>` without a mapping, so such frames group by
//! binary. Locations whose `profile.frame.type` is `kernel` get perf's `_[k]` suffix.
//!
//! **Time.** A profile covers `time_unix_nano` + `duration_nano`. When its samples carry
//! `timestamps_unix_nano` spread over more than one 10 s bucket, each bucket is its own
//! upload, stamped with the bucket's range, so that the timeline shows when the work ran.
//! A sample's values pair with its timestamps; a sample with timestamps and no values counts
//! one per timestamp (the eBPF profiler's CPU samples).
//!
//! **Cost.** Linear in the request: the dictionary's frame names are made once per request,
//! names are interned in a tree once per series, samples sharing a stack in a series are
//! expanded once and only their values added per sample, and the mapping allocates nothing per
//! sample (prost's decoding before it does: a sample's repeated fields are vectors). Frames and
//! nodes are spent from the request's decode budget, as for pprof.

pub mod json;

use std::collections::BTreeMap;
use std::ops::Range;

use kiln_model::budget::TreeSize;
use kiln_model::{CallTree, NodeId, ROOT, SeededMap};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    KeyValueAndUnit, Profile, ProfilesDictionary, Sample, ValueType,
};

pub use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};

use super::{IngestError, IngestLimits, RequestBudget, Sink, pprof};
use crate::storage::{Aggregation, KeyedUploads, ProfileMeta, SeriesKey, Upload};

/// The gRPC method's path, also the route it is mounted on.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";

/// The OTLP/HTTP path.
pub const HTTP_PATH: &str = "/v1development/profiles";

/// The application of samples that name none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Width of the time buckets samples with timestamps are stored in.
pub const BUCKET_SECS: i64 = 10;

const SERVICE_NAME: &str = "service.name";
const EXECUTABLE_NAME: &str = "process.executable.name";
const FRAME_TYPE: &str = "profile.frame.type";
const BUILD_ID_PREFIX: &str = "process.executable.build_id";

/// How OTLP requests are read, beyond the ingest limits.
#[derive(Debug, Clone, Default)]
pub struct OtlpOptions {
    /// Sample attributes that become series labels (`thread.name`, …): none by default, so that
    /// per-sample values cannot multiply series.
    pub sample_labels: Vec<String>,
}

/// What a request decoded to: the uploads of its valid profiles, and the refused ones.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One per (series, time bucket) of each valid profile.
    pub uploads: Vec<Upload>,
    /// Profiles refused on their own.
    pub rejected: i64,
    /// Why, for the first few.
    pub reasons: Vec<String>,
}

impl Decoded {
    /// The `partial_success` of the answer: `None` when every profile was stored.
    pub fn partial_success(&self) -> Option<ExportProfilesPartialSuccess> {
        (self.rejected > 0).then(|| ExportProfilesPartialSuccess {
            rejected_profiles: self.rejected,
            error_message: self.reasons.join("; "),
        })
    }
}

/// Reasons kept for the answer's message; the count says how many there were.
const MAX_REASONS: usize = 5;

fn broken(message: impl std::fmt::Display) -> IngestError {
    IngestError::malformed(format!("OTLP dictionary: {message}"))
}

/// How an OTLP/HTTP body is encoded (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`, OTLP/JSON.
    Json,
}

/// An OTLP/HTTP body as sent (gzipped or not, as `headers` say or its first bytes show), read
/// within `budget`.
pub fn read_http(
    body: &[u8],
    headers: &axum::http::HeaderMap,
    codec: Codec,
    budget: &mut RequestBudget,
) -> Result<ExportProfilesServiceRequest, IngestError> {
    let body = super::body::decode(body, headers, budget)?;
    match codec {
        Codec::Protobuf => from_protobuf(&body),
        Codec::Json => json::from_json(&body),
    }
}

/// Decodes `request` and stores its valid profiles in `tenant`, all in one append; a broken
/// dictionary (or a request over its budget) stores nothing. Returns what was refused.
pub async fn export(
    sink: Sink<'_>,
    tenant: &str,
    request: &ExportProfilesServiceRequest,
    options: &OtlpOptions,
    mut budget: RequestBudget,
) -> Result<Decoded, IngestError> {
    let mut decoded = decode(request, options, sink.limits, &mut budget, crate::timespec::now_unix())?;
    let mut uploads = std::mem::take(&mut decoded.uploads);
    for upload in &mut uploads {
        upload.meta.series.tenant = tenant.to_string();
    }
    super::store_groups(sink, tenant, vec![KeyedUploads { key: None, uploads }]).await?;
    Ok(decoded)
}

/// Reads a protobuf `ExportProfilesServiceRequest` (already decompressed).
pub fn from_protobuf(body: &[u8]) -> Result<ExportProfilesServiceRequest, IngestError> {
    use prost_otlp::Message;
    ExportProfilesServiceRequest::decode(body)
        .map_err(|e| IngestError::malformed(format!("body is not an OTLP ExportProfilesServiceRequest: {e}")))
}

/// Maps `request` into uploads within `budget`; `now` (Unix s) stamps profiles without a time.
/// A broken dictionary is an error (nothing is stored); a profile that is invalid on its own is
/// counted in [`Decoded::rejected`].
pub fn decode(
    request: &ExportProfilesServiceRequest,
    options: &OtlpOptions,
    limits: &IngestLimits,
    budget: &mut RequestBudget,
    now: i64,
) -> Result<Decoded, IngestError> {
    let empty = ProfilesDictionary::default();
    let dictionary = request.dictionary.as_ref().unwrap_or(&empty);
    let dict = Dictionary::new(dictionary, options)?;
    let mut decoded = Decoded::default();
    for resource_profiles in &request.resource_profiles {
        let resource_attributes = resource_profiles.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let resource = ResourceContext::new(resource_attributes);
        for scope_profiles in &resource_profiles.scope_profiles {
            let scope_name = scope_profiles.scope.as_ref().map_or("", |s| s.name.as_str());
            let spy_name: String = if scope_name.is_empty() { "otlp" } else { scope_name }.chars().take(128).collect();
            for profile in &scope_profiles.profiles {
                let context = ProfileContext { dict: &dict, resource: &resource, spy_name: &spy_name, limits, now };
                match context.uploads(profile, budget) {
                    Ok(uploads) => decoded.uploads.extend(uploads),
                    // The budget is the request's: once spent, the whole request is over it.
                    Err(Refusal::Request(e)) => return Err(e),
                    Err(Refusal::Profile(reason)) => {
                        decoded.rejected += 1;
                        if decoded.reasons.len() < MAX_REASONS {
                            decoded.reasons.push(reason);
                        }
                    }
                }
            }
        }
    }
    Ok(decoded)
}

/// Why a profile was not stored: its own fault, or the request's.
enum Refusal {
    Profile(String),
    Request(IngestError),
}

impl From<kiln_model::budget::Exhausted> for Refusal {
    fn from(e: kiln_model::budget::Exhausted) -> Self {
        Refusal::Request(e.into())
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Profile(message.into()))
}

/// What an attribute of the dictionary means to Kiln when a sample carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleRole {
    Ignored,
    ServiceName,
    ExecutableName,
    Label,
}

/// The request's dictionary, checked, with every location's frame names made once.
struct Dictionary<'a> {
    strings: &'a [String],
    attributes: &'a [KeyValueAndUnit],
    stacks: Vec<&'a [i32]>,
    links: usize,
    /// Each location's frame names (ids into `names`), innermost first.
    location_frames: Vec<Range<u32>>,
    frame_names: Vec<u32>,
    names: Vec<String>,
    sample_roles: Vec<SampleRole>,
}

/// `index` as a position in a table of `len` entries, if it is one.
fn position(index: i32, len: usize) -> Option<usize> {
    usize::try_from(index).ok().filter(|&i| i < len)
}

impl<'a> Dictionary<'a> {
    fn new(dict: &'a ProfilesDictionary, options: &OtlpOptions) -> Result<Self, IngestError> {
        let strings = &dict.string_table[..];
        let string = |index: i32, what: &str| -> Result<&'a str, IngestError> {
            match position(index, strings.len()) {
                Some(i) => Ok(strings[i].as_str()),
                None if index == 0 => Ok(""),
                None => Err(broken(format!("{what} names string {index}, outside the string table"))),
            }
        };
        let check = |index: i32, len: usize, what: &str| -> Result<Option<usize>, IngestError> {
            match position(index, len) {
                // Element 0 is the empty value: the same as none.
                Some(0) => Ok(None),
                Some(i) => Ok(Some(i)),
                None if index == 0 => Ok(None),
                None => Err(broken(format!("{what} {index} is outside its table ({len} entries)"))),
            }
        };
        let attributes = &dict.attribute_table[..];
        let mut sample_roles = Vec::with_capacity(attributes.len());
        let mut kernel = vec![false; attributes.len()];
        let mut build_ids: Vec<Option<&'a str>> = vec![None; attributes.len()];
        for (i, attribute) in attributes.iter().enumerate() {
            let key = string(attribute.key_strindex, "an attribute's key")?;
            string(attribute.unit_strindex, "an attribute's unit")?;
            let text = attribute.value.as_ref().and_then(string_value);
            kernel[i] = key == FRAME_TYPE && text == Some("kernel");
            if key.starts_with(BUILD_ID_PREFIX) {
                build_ids[i] = text.filter(|t| !t.is_empty());
            }
            sample_roles.push(match key {
                "" => SampleRole::Ignored,
                SERVICE_NAME => SampleRole::ServiceName,
                EXECUTABLE_NAME => SampleRole::ExecutableName,
                key if options.sample_labels.iter().any(|l| l == key) => SampleRole::Label,
                _ => SampleRole::Ignored,
            });
        }
        let attribute_list = |indices: &[i32], what: &str| -> Result<(), IngestError> {
            for &index in indices {
                check(index, attributes.len(), what)?;
            }
            Ok(())
        };
        // A mapping's name for unsymbolized frames: its file's base name, else a build id.
        let mut mapping_names: Vec<Option<&'a str>> = Vec::with_capacity(dict.mapping_table.len());
        for mapping in &dict.mapping_table {
            let file = string(mapping.filename_strindex, "a mapping's file name")?;
            attribute_list(&mapping.attribute_indices, "a mapping's attribute")?;
            let base = file.rsplit('/').next().unwrap_or(file);
            let name = if base.is_empty() {
                mapping.attribute_indices.iter().find_map(|&a| position(a, attributes.len()).and_then(|a| build_ids[a]))
            } else {
                Some(base)
            };
            mapping_names.push(name);
        }
        let mut function_names: Vec<&'a str> = Vec::with_capacity(dict.function_table.len());
        for function in &dict.function_table {
            let name = string(function.name_strindex, "a function's name")?;
            let system_name = string(function.system_name_strindex, "a function's system name")?;
            string(function.filename_strindex, "a function's file name")?;
            function_names.push(if name.is_empty() { system_name } else { name });
        }

        // Frame names: one per function (and kernel mark) met, one per unsymbolized location.
        let mut names: Vec<String> = Vec::new();
        let mut by_function: SeededMap<(usize, bool), u32> = SeededMap::default();
        let mut location_frames = Vec::with_capacity(dict.location_table.len());
        let mut frame_names = Vec::new();
        for location in &dict.location_table {
            let mapping = check(location.mapping_index, dict.mapping_table.len(), "a location's mapping")?;
            attribute_list(&location.attribute_indices, "a location's attribute")?;
            let is_kernel =
                location.attribute_indices.iter().any(|&a| position(a, attributes.len()).is_some_and(|a| kernel[a]));
            let suffix = if is_kernel { "_[k]" } else { "" };
            let start = frame_names.len() as u32;
            let mut unsymbolized = location.lines.is_empty();
            for line in &location.lines {
                let function = check(line.function_index, dict.function_table.len(), "a line's function")?;
                match function.map(|f| (f, function_names[f])).filter(|(_, name)| !name.is_empty()) {
                    Some((f, name)) => {
                        let id = *by_function.entry((f, is_kernel)).or_insert_with(|| {
                            names.push(format!("{name}{suffix}"));
                            names.len() as u32 - 1
                        });
                        frame_names.push(id);
                    }
                    // A line without a function name says no more than its address.
                    None => unsymbolized = true,
                }
            }
            if unsymbolized && frame_names.len() as u32 == start {
                let address = location.address;
                let name = match mapping {
                    Some(m) => {
                        let mapping = &dict.mapping_table[m];
                        let in_mapping = mapping.memory_limit > mapping.memory_start
                            && (mapping.memory_start..mapping.memory_limit).contains(&address);
                        // pprof's rule: an address inside the mapping's memory is offset into its
                        // file; otherwise (the eBPF profiler) it already is a file address.
                        let offset = if in_mapping {
                            (address - mapping.memory_start).wrapping_add(mapping.file_offset)
                        } else {
                            address
                        };
                        match mapping_names[m] {
                            Some(file) => format!("{file}+{offset:#x}{suffix}"),
                            None => format!("{address:#x}{suffix}"),
                        }
                    }
                    None => format!("{address:#x}{suffix}"),
                };
                names.push(name);
                frame_names.push(names.len() as u32 - 1);
            }
            location_frames.push(start..frame_names.len() as u32);
        }
        let mut stacks = Vec::with_capacity(dict.stack_table.len());
        for stack in &dict.stack_table {
            for &location in &stack.location_indices {
                if position(location, dict.location_table.len()).is_none() {
                    return Err(broken(format!(
                        "a stack's location {location} is outside the location table ({} entries)",
                        dict.location_table.len()
                    )));
                }
            }
            stacks.push(&stack.location_indices[..]);
        }
        Ok(Dictionary {
            strings,
            attributes,
            stacks,
            links: dict.link_table.len(),
            location_frames,
            frame_names,
            names,
            sample_roles,
        })
    }

    fn string(&self, index: i32) -> Option<&'a str> {
        match position(index, self.strings.len()) {
            Some(i) => Some(self.strings[i].as_str()),
            None => (index == 0).then_some(""),
        }
    }

    /// A dictionary attribute, `None` for index 0 and past the table.
    fn attribute(&self, index: i32) -> Option<&'a KeyValueAndUnit> {
        position(index, self.attributes.len()).filter(|&i| i > 0).map(|i| &self.attributes[i])
    }

    /// The frame names of `location`, innermost first.
    fn frames(&self, location: i32) -> &[u32] {
        let range = &self.location_frames[location as usize];
        &self.frame_names[range.start as usize..range.end as usize]
    }
}

/// A string, or the text of a scalar attribute value (what a label can hold).
fn string_value(value: &AnyValue) -> Option<&str> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn scalar_text(value: &AnyValue) -> Option<String> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

/// What a resource says about the series of its profiles.
struct ResourceContext {
    service_name: Option<String>,
    executable_name: Option<String>,
    labels: BTreeMap<String, String>,
}

impl ResourceContext {
    fn new(attributes: &[KeyValue]) -> Self {
        let mut context = ResourceContext { service_name: None, executable_name: None, labels: BTreeMap::new() };
        for attribute in attributes {
            let Some(text) = attribute.value.as_ref().and_then(scalar_text) else { continue };
            match attribute.key.as_str() {
                "" => {}
                SERVICE_NAME => context.service_name = Some(text),
                key => {
                    if key == EXECUTABLE_NAME {
                        context.executable_name = Some(text.clone());
                    }
                    context.labels.entry(key.to_string()).or_insert(text);
                }
            }
        }
        context
    }

    /// The resource's own application, when it names one that is not the SDK default.
    fn service(&self) -> Option<&str> {
        self.service_name.as_deref().filter(|s| !s.trim().is_empty() && !s.starts_with(UNKNOWN_SERVICE))
    }
}

/// How one profile's values are stored.
struct Kind {
    profile_type: String,
    units: String,
    aggregation: Aggregation,
    /// What one unit of a value is worth in `units` (the period, for counted CPU samples).
    scale: u64,
}

/// The trees of one (series, bucket) of a profile.
struct SeriesTree {
    series: u32,
    bucket: Option<i64>,
    tree: CallTree,
    size: TreeSize,
    /// Tree name id of each request frame name met so far.
    name_ids: SeededMap<u32, u32>,
}

struct ProfileContext<'c, 'a> {
    dict: &'c Dictionary<'a>,
    resource: &'c ResourceContext,
    spy_name: &'c str,
    limits: &'c IngestLimits,
    now: i64,
}

impl ProfileContext<'_, '_> {
    fn kind(&self, profile: &Profile) -> Result<Kind, Refusal> {
        let dict = self.dict;
        let value_type = |vt: Option<&ValueType>, what: &str| -> Result<(&str, &str), Refusal> {
            let Some(vt) = vt else { return Ok(("", "")) };
            match (dict.string(vt.type_strindex), dict.string(vt.unit_strindex)) {
                (Some(t), Some(u)) => Ok((t, u)),
                _ => refuse(format!("the profile's {what} names a string outside the string table")),
            }
        };
        let (name, unit) = value_type(profile.sample_type.as_ref(), "sample type")?;
        let period_type = value_type(profile.period_type.as_ref(), "period type")?;
        if name.is_empty() {
            return refuse("a profile has no sample type");
        }
        if (name, unit) == ("samples", "count") && period_type == ("cpu", "nanoseconds") && profile.period > 0 {
            return Ok(Kind {
                profile_type: "cpu".into(),
                units: "nanoseconds".into(),
                aggregation: Aggregation::Sum,
                scale: profile.period as u64,
            });
        }
        let entry = pprof::default_config(name).unwrap_or_default();
        let aggregation = match entry.aggregation.as_deref() {
            Some("average") => Aggregation::Average,
            _ => Aggregation::Sum,
        };
        Ok(Kind {
            profile_type: entry.display_name.unwrap_or_else(|| name.to_string()),
            units: entry.units.filter(|u| !u.is_empty()).unwrap_or_else(|| unit.to_string()),
            aggregation,
            scale: 1,
        })
    }

    /// The uploads of one profile, or why it is refused.
    fn uploads(&self, profile: &Profile, budget: &mut RequestBudget) -> Result<Vec<Upload>, Refusal> {
        let dict = self.dict;
        let kind = self.kind(profile)?;
        let mut base_labels = self.resource.labels.clone();
        for &index in &profile.attribute_indices {
            if index != 0 && dict.attribute(index).is_none() {
                return refuse(format!("a profile's attribute {index} is outside the attribute table"));
            }
            if let Some(attribute) = dict.attribute(index) {
                let key = dict.string(attribute.key_strindex).unwrap_or("");
                if let (false, Some(text)) = (key.is_empty(), attribute.value.as_ref().and_then(scalar_text)) {
                    base_labels.entry(key.to_string()).or_insert(text);
                }
            }
        }
        base_labels.remove(SERVICE_NAME);

        // Buckets: only when the samples' timestamps span more than one.
        let bucket_of = |nanos: u64| (nanos / 1_000_000_000) as i64 / BUCKET_SECS;
        let mut span: Option<(i64, i64)> = None;
        for sample in &profile.samples {
            for &t in &sample.timestamps_unix_nano {
                let b = bucket_of(t);
                span = Some(span.map_or((b, b), |(lo, hi)| (lo.min(b), hi.max(b))));
            }
        }
        let profile_time = (profile.time_unix_nano > 0).then(|| bucket_of(profile.time_unix_nano));
        let bucketed = match span {
            Some((lo, hi)) => lo != hi || profile_time.is_some_and(|p| p != lo && has_untimed(profile)),
            None => false,
        };
        let untimed_bucket = profile_time.or(span.map(|(lo, _)| lo));

        let mut series: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        let mut series_ids: SeededMap<Box<[i32]>, u32> = SeededMap::default();
        let mut trees: Vec<SeriesTree> = Vec::new();
        let mut tree_ids: SeededMap<(u32, Option<i64>), u32> = SeededMap::default();
        // (tree, stack) → group; per group its leaf and the sum of its values.
        let mut groups: SeededMap<(u32, i32), u32> = SeededMap::default();
        let mut group_leaves: Vec<(u32, NodeId)> = Vec::new();
        let mut group_values: Vec<u64> = Vec::new();
        let mut totals: Vec<u64> = Vec::new();
        // Buffers reused by every sample.
        let mut relevant: Vec<i32> = Vec::new();
        let mut previous: Option<(Vec<i32>, u32)> = None;

        for sample in &profile.samples {
            let stack = match position(sample.stack_index, dict.stacks.len()) {
                Some(i) => i as i32,
                None if sample.stack_index == 0 => 0,
                None => {
                    return refuse(format!(
                        "a sample's stack {} is outside the stack table ({} entries)",
                        sample.stack_index,
                        dict.stacks.len()
                    ));
                }
            };
            if sample.link_index != 0 && position(sample.link_index, dict.links).is_none() {
                return refuse(format!("a sample's link {} is outside the link table", sample.link_index));
            }
            relevant.clear();
            for &index in &sample.attribute_indices {
                if position(index, dict.attributes.len()).is_none() && index != 0 {
                    return refuse(format!("a sample's attribute {index} is outside the attribute table"));
                }
                if position(index, dict.sample_roles.len())
                    .is_some_and(|i| i > 0 && dict.sample_roles[i] != SampleRole::Ignored)
                {
                    relevant.push(index);
                }
            }
            relevant.sort_unstable();
            relevant.dedup();
            let series_id = match &previous {
                Some((set, id)) if *set == relevant => *id,
                _ => {
                    let id = match series_ids.get(&relevant[..]) {
                        Some(&id) => id,
                        None => {
                            let id = series.len() as u32;
                            series.push(self.series_of(&relevant, &base_labels)?);
                            budget.decode.spend_nodes(1 + relevant.len() as u64)?;
                            series_ids.insert(relevant.as_slice().into(), id);
                            id
                        }
                    };
                    match &mut previous {
                        Some((set, previous_id)) => {
                            set.clone_from(&relevant);
                            *previous_id = id;
                        }
                        None => previous = Some((relevant.clone(), id)),
                    }
                    id
                }
            };

            let (values_len, times_len) = (sample.values.len(), sample.timestamps_unix_nano.len());
            if values_len > 1 && times_len > 0 && values_len != times_len {
                return refuse(format!("a sample has {values_len} values for {times_len} timestamps"));
            }
            if let Some(&v) = sample.values.iter().find(|&&v| v < 0) {
                return refuse(format!("a sample has a negative value ({v})"));
            }
            // Bucketed, each timestamp is a part with its own value; otherwise the sample is
            // one part worth all its values (or its count of timestamps, when it has none).
            let parts = if bucketed && times_len > 0 { times_len } else { 1 };
            for part in 0..parts {
                let value: u64 = if parts == 1 && !(bucketed && times_len == 1) {
                    match values_len {
                        0 => times_len as u64,
                        _ => sample
                            .values
                            .iter()
                            .try_fold(0u64, |sum, &v| sum.checked_add(v as u64))
                            .ok_or_else(|| Refusal::Profile("a sample's values add up beyond 2^64".into()))?,
                    }
                } else {
                    match values_len {
                        0 => 1,
                        // One value for several timestamps: all of it in the first one's bucket.
                        1 if part == 0 => sample.values[0] as u64,
                        1 => 0,
                        _ => sample.values[part] as u64,
                    }
                };
                if value == 0 {
                    continue;
                }
                let scaled = value
                    .checked_mul(kind.scale)
                    .ok_or_else(|| Refusal::Profile("a sample's value times the period is beyond 2^64".into()))?;
                let bucket = if !bucketed {
                    None
                } else if times_len > 0 {
                    Some(bucket_of(sample.timestamps_unix_nano[part]))
                } else {
                    untimed_bucket
                };
                let tree_id = match tree_ids.get(&(series_id, bucket)) {
                    Some(&t) => t,
                    None => {
                        let t = trees.len() as u32;
                        let tree = CallTree::new();
                        let size = TreeSize::of(&tree);
                        trees.push(SeriesTree {
                            series: series_id,
                            bucket,
                            tree,
                            size,
                            name_ids: SeededMap::default(),
                        });
                        totals.push(0);
                        budget.decode.spend_nodes(5)?;
                        tree_ids.insert((series_id, bucket), t);
                        t
                    }
                };
                let group = match groups.get(&(tree_id, stack)) {
                    Some(&g) => g as usize,
                    None => {
                        let leaf = self.insert_stack(&mut trees[tree_id as usize], stack, budget)?;
                        let g = group_leaves.len();
                        groups.insert((tree_id, stack), g as u32);
                        group_leaves.push((tree_id, leaf));
                        group_values.push(0);
                        budget.decode.spend_nodes(1)?;
                        g
                    }
                };
                let total = &mut totals[tree_id as usize];
                *total = total
                    .checked_add(scaled)
                    .ok_or_else(|| Refusal::Profile("a profile's values add up beyond 2^64".into()))?;
                // At most the tree's total: cannot overflow.
                group_values[group] += scaled;
            }
        }
        for (&(tree_id, leaf), &value) in group_leaves.iter().zip(&group_values) {
            trees[tree_id as usize].tree.add_self(leaf, value);
        }

        let (from, until) = profile_range(profile, self.now);
        // Samples per second from a nanosecond period, else 100 (as for pprof).
        let sample_rate = if self.period_in_nanoseconds(profile) {
            u32::try_from(1_000_000_000 / profile.period).unwrap_or(u32::MAX).max(1)
        } else {
            100
        };
        let mut uploads = Vec::new();
        for tree in trees {
            if tree.tree.total() == 0 {
                continue;
            }
            let (app, labels) = &series[tree.series as usize];
            let (from, until) = match tree.bucket {
                // An upload's `until` is the last second it covers (queries take it inclusively):
                // a bucket ends one second before the next begins.
                Some(b) => (b * BUCKET_SECS, b * BUCKET_SECS + BUCKET_SECS - 1),
                None => (from, until),
            };
            for time in [from, until] {
                if let Err(reason) = self.limits.window.check(time, self.now) {
                    return refuse(format!(
                        "the profile's time (`time_unix_nano`, `duration_nano`, timestamps): {reason}"
                    ));
                }
            }
            uploads.push(Upload {
                meta: ProfileMeta {
                    series: SeriesKey::new(app.clone(), kind.profile_type.clone(), labels.clone()),
                    from,
                    until,
                    units: kind.units.clone(),
                    sample_rate,
                    spy_name: self.spy_name.to_string(),
                    aggregation: kind.aggregation,
                },
                tree: tree.tree.to_flat(),
            });
        }
        Ok(uploads)
    }

    fn period_in_nanoseconds(&self, profile: &Profile) -> bool {
        profile.period > 0
            && profile.period_type.as_ref().is_some_and(|pt| self.dict.string(pt.unit_strindex) == Some("nanoseconds"))
    }

    /// The application and labels of a sample with these (relevant, sorted) attributes.
    fn series_of(
        &self,
        relevant: &[i32],
        base: &BTreeMap<String, String>,
    ) -> Result<(String, BTreeMap<String, String>), Refusal> {
        let dict = self.dict;
        let mut labels = base.clone();
        let (mut service, mut executable) = (None, None);
        for &index in relevant {
            let Some(attribute) = dict.attribute(index) else { continue };
            let Some(text) = attribute.value.as_ref().and_then(scalar_text) else { continue };
            match dict.sample_roles[index as usize] {
                SampleRole::ServiceName => service = Some(text),
                SampleRole::ExecutableName => executable = Some(text),
                SampleRole::Label => {
                    let key = dict.string(attribute.key_strindex).unwrap_or("");
                    labels.insert(key.to_string(), text);
                }
                SampleRole::Ignored => {}
            }
        }
        let sample_service = service.filter(|s| !s.trim().is_empty() && !s.starts_with(UNKNOWN_SERVICE));
        let app = self
            .resource
            .service()
            .map(str::to_string)
            .or(sample_service)
            .or(executable.filter(|e| !e.trim().is_empty()))
            .or_else(|| self.resource.executable_name.clone().filter(|e| !e.trim().is_empty()))
            .or_else(|| self.resource.service_name.clone().filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let max = self.limits.max_label_bytes;
        if app.len() > max {
            return refuse(format!("the application name is longer than {max} bytes"));
        }
        if let Some((key, _)) = labels.iter().find(|(k, v)| k.len() > max || v.len() > max) {
            let key: String = key.chars().take(64).collect();
            return refuse(format!("attribute `{key}` is longer than {max} bytes"));
        }
        if labels.len() > self.limits.max_labels {
            return refuse(format!(
                "a profile's series has more than {} labels (resource and listed sample attributes)",
                self.limits.max_labels
            ));
        }
        Ok((app.trim().to_string(), labels))
    }

    /// Inserts the frames of dictionary stack `stack` root first into `tree`; returns the leaf.
    fn insert_stack(&self, tree: &mut SeriesTree, stack: i32, budget: &mut RequestBudget) -> Result<NodeId, Refusal> {
        let dict = self.dict;
        let mut node = ROOT;
        let mut depth = 0;
        let locations = dict.stacks.get(stack as usize).copied().unwrap_or(&[]);
        'walk: for &location in locations.iter().rev() {
            for &name in dict.frames(location).iter().rev() {
                if depth == self.limits.max_stack_depth {
                    break 'walk;
                }
                let name_id = match tree.name_ids.get(&name) {
                    Some(&n) => n,
                    None => {
                        let n = tree.tree.intern_bytes(dict.names[name as usize].as_bytes());
                        tree.name_ids.insert(name, n);
                        n
                    }
                };
                node = tree.tree.child_by_name_id(node, name_id);
                depth += 1;
            }
        }
        budget.decode.spend_frames(depth as u64)?;
        budget.decode.spend_growth(&tree.tree, &mut tree.size)?;
        Ok(node)
    }
}

fn has_untimed(profile: &Profile) -> bool {
    profile.samples.iter().any(|s: &Sample| s.timestamps_unix_nano.is_empty())
}

/// The profile's own time range in Unix seconds: its time and duration, else the span of its
/// samples' timestamps, else `now`.
fn profile_range(profile: &Profile, now: i64) -> (i64, i64) {
    let secs = |nanos: u64| (nanos / 1_000_000_000) as i64;
    if profile.time_unix_nano > 0 {
        let from = secs(profile.time_unix_nano);
        let until = secs(profile.time_unix_nano.saturating_add(profile.duration_nano));
        return (from, until.max(from));
    }
    let times = profile.samples.iter().flat_map(|s| s.timestamps_unix_nano.iter().copied());
    match times.fold(None, |acc: Option<(u64, u64)>, t| Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))) {
        Some((lo, hi)) => (secs(lo), secs(hi)),
        None => (now, now),
    }
}

#[cfg(test)]
mod tests;
