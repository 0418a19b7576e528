//! OTLP/JSON (`application/json` on `POST /v1development/profiles`) into the same
//! [`ExportProfilesServiceRequest`] the protobuf paths decode.
//!
//! The protobuf JSON mapping as OTLP writes it: lowerCamelCase keys, fields left out when they
//! hold their default, 64-bit integers as strings or numbers, attribute values as `AnyValue`
//! objects. The generated messages' own serde derives (the crate's `with-serde`) need every
//! field present and 64-bit integers as numbers, which no OTLP/JSON exporter writes, so this
//! module reads the messages through lenient mirrors of its own. Links (beyond their number),
//! ids and original payloads are not read: Kiln stores none of them.

use std::fmt;
use std::marker::PhantomData;

use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::profiles::v1development as profiles;
use opentelemetry_proto::tonic::resource::v1 as resource;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::ExportProfilesServiceRequest;
use crate::ingest::IngestError;

/// Reads an OTLP/JSON `ExportProfilesServiceRequest` (already decompressed).
pub fn from_json(body: &[u8]) -> Result<ExportProfilesServiceRequest, IngestError> {
    let request: Request = serde_json::from_slice(body)
        .map_err(|e| IngestError::malformed(format!("body is not an OTLP/JSON ExportProfilesServiceRequest: {e}")))?;
    Ok(request.into())
}

/// An integer written as a JSON number or a decimal string.
#[derive(Debug, Default, Clone, Copy)]
struct Int<T>(T);

impl<'de, T: TryFrom<i128> + Default> Deserialize<'de> for Int<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor<T>(PhantomData<T>);
        impl<T: TryFrom<i128>> IntVisitor<T> {
            fn fit<E: de::Error>(value: i128) -> Result<Int<T>, E> {
                T::try_from(value).map(Int).map_err(|_| E::custom(format!("integer {value} is out of range")))
            }
        }
        impl<T: TryFrom<i128>> Visitor<'_> for IntVisitor<T> {
            type Value = Int<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer, as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int<T>, E> {
                Self::fit(v.into())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int<T>, E> {
                Self::fit(v.into())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int<T>, E> {
                if v.fract() != 0.0 || !v.is_finite() {
                    return Err(E::custom(format!("{v} is not an integer")));
                }
                Self::fit(v as i128)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int<T>, E> {
                let value: i128 = v.trim().parse().map_err(|_| E::custom(format!("`{v}` is not an integer")))?;
                Self::fit(value)
            }
        }
        deserializer.deserialize_any(IntVisitor(PhantomData))
    }
}

fn ints<T: Copy>(values: Vec<Int<T>>) -> Vec<T> {
    values.into_iter().map(|Int(v)| v).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Request {
    resource_profiles: Vec<ResourceProfiles>,
    dictionary: Option<Dictionary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceProfiles {
    resource: Option<Resource>,
    scope_profiles: Vec<ScopeProfiles>,
    schema_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Resource {
    attributes: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ScopeProfiles {
    scope: Option<Scope>,
    profiles: Vec<Profile>,
    schema_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Scope {
    name: String,
    version: String,
    attributes: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Profile {
    sample_type: Option<ValueType>,
    samples: Vec<Sample>,
    time_unix_nano: Int<u64>,
    duration_nano: Int<u64>,
    period_type: Option<ValueType>,
    period: Int<i64>,
    attribute_indices: Vec<Int<i32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ValueType {
    type_strindex: Int<i32>,
    unit_strindex: Int<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Sample {
    stack_index: Int<i32>,
    attribute_indices: Vec<Int<i32>>,
    link_index: Int<i32>,
    values: Vec<Int<i64>>,
    timestamps_unix_nano: Vec<Int<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Dictionary {
    mapping_table: Vec<Mapping>,
    location_table: Vec<Location>,
    function_table: Vec<Function>,
    /// Only counted: a sample's `linkIndex` must be inside it.
    link_table: Vec<de::IgnoredAny>,
    string_table: Vec<String>,
    attribute_table: Vec<KeyValueAndUnit>,
    stack_table: Vec<Stack>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Mapping {
    memory_start: Int<u64>,
    memory_limit: Int<u64>,
    file_offset: Int<u64>,
    filename_strindex: Int<i32>,
    attribute_indices: Vec<Int<i32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Location {
    mapping_index: Int<i32>,
    address: Int<u64>,
    lines: Vec<Line>,
    attribute_indices: Vec<Int<i32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Line {
    function_index: Int<i32>,
    line: Int<i64>,
    column: Int<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Function {
    name_strindex: Int<i32>,
    system_name_strindex: Int<i32>,
    filename_strindex: Int<i32>,
    start_line: Int<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Stack {
    location_indices: Vec<Int<i32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct KeyValueAndUnit {
    key_strindex: Int<i32>,
    value: Option<AnyValue>,
    unit_strindex: Int<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct KeyValue {
    key: String,
    value: Option<AnyValue>,
}

/// The scalar kinds of `AnyValue`; arrays, maps and bytes are read as no value (Kiln makes
/// labels of scalars only).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    int_value: Option<Int<i64>>,
    double_value: Option<f64>,
}

impl From<AnyValue> for common::AnyValue {
    fn from(v: AnyValue) -> Self {
        use common::any_value::Value;
        let value = if let Some(s) = v.string_value {
            Some(Value::StringValue(s))
        } else if let Some(b) = v.bool_value {
            Some(Value::BoolValue(b))
        } else if let Some(Int(i)) = v.int_value {
            Some(Value::IntValue(i))
        } else {
            v.double_value.map(Value::DoubleValue)
        };
        common::AnyValue { value }
    }
}

impl From<KeyValue> for common::KeyValue {
    fn from(kv: KeyValue) -> Self {
        common::KeyValue { key: kv.key, value: kv.value.map(Into::into), ..Default::default() }
    }
}

impl From<ValueType> for profiles::ValueType {
    fn from(vt: ValueType) -> Self {
        profiles::ValueType { type_strindex: vt.type_strindex.0, unit_strindex: vt.unit_strindex.0 }
    }
}

impl From<Request> for ExportProfilesServiceRequest {
    fn from(request: Request) -> Self {
        let resource_profiles = request
            .resource_profiles
            .into_iter()
            .map(|rp| profiles::ResourceProfiles {
                resource: rp.resource.map(|r| resource::Resource {
                    attributes: r.attributes.into_iter().map(Into::into).collect(),
                    ..Default::default()
                }),
                scope_profiles: rp
                    .scope_profiles
                    .into_iter()
                    .map(|sp| profiles::ScopeProfiles {
                        scope: sp.scope.map(|s| common::InstrumentationScope {
                            name: s.name,
                            version: s.version,
                            attributes: s.attributes.into_iter().map(Into::into).collect(),
                            ..Default::default()
                        }),
                        profiles: sp.profiles.into_iter().map(Into::into).collect(),
                        schema_url: sp.schema_url,
                    })
                    .collect(),
                schema_url: rp.schema_url,
            })
            .collect();
        ExportProfilesServiceRequest { resource_profiles, dictionary: request.dictionary.map(Into::into) }
    }
}

impl From<Profile> for profiles::Profile {
    fn from(p: Profile) -> Self {
        profiles::Profile {
            sample_type: p.sample_type.map(Into::into),
            samples: p
                .samples
                .into_iter()
                .map(|s| profiles::Sample {
                    stack_index: s.stack_index.0,
                    attribute_indices: ints(s.attribute_indices),
                    link_index: s.link_index.0,
                    values: ints(s.values),
                    timestamps_unix_nano: ints(s.timestamps_unix_nano),
                })
                .collect(),
            time_unix_nano: p.time_unix_nano.0,
            duration_nano: p.duration_nano.0,
            period_type: p.period_type.map(Into::into),
            period: p.period.0,
            attribute_indices: ints(p.attribute_indices),
            ..Default::default()
        }
    }
}

impl From<Dictionary> for profiles::ProfilesDictionary {
    fn from(d: Dictionary) -> Self {
        profiles::ProfilesDictionary {
            mapping_table: d
                .mapping_table
                .into_iter()
                .map(|m| profiles::Mapping {
                    memory_start: m.memory_start.0,
                    memory_limit: m.memory_limit.0,
                    file_offset: m.file_offset.0,
                    filename_strindex: m.filename_strindex.0,
                    attribute_indices: ints(m.attribute_indices),
                })
                .collect(),
            location_table: d
                .location_table
                .into_iter()
                .map(|l| profiles::Location {
                    mapping_index: l.mapping_index.0,
                    address: l.address.0,
                    lines: l
                        .lines
                        .into_iter()
                        .map(|line| profiles::Line {
                            function_index: line.function_index.0,
                            line: line.line.0,
                            column: line.column.0,
                        })
                        .collect(),
                    attribute_indices: ints(l.attribute_indices),
                })
                .collect(),
            function_table: d
                .function_table
                .into_iter()
                .map(|f| profiles::Function {
                    name_strindex: f.name_strindex.0,
                    system_name_strindex: f.system_name_strindex.0,
                    filename_strindex: f.filename_strindex.0,
                    start_line: f.start_line.0,
                })
                .collect(),
            link_table: vec![profiles::Link::default(); d.link_table.len()],
            string_table: d.string_table,
            attribute_table: d
                .attribute_table
                .into_iter()
                .map(|a| profiles::KeyValueAndUnit {
                    key_strindex: a.key_strindex.0,
                    value: a.value.map(Into::into),
                    unit_strindex: a.unit_strindex.0,
                })
                .collect(),
            stack_table: d
                .stack_table
                .into_iter()
                .map(|s| profiles::Stack { location_indices: ints(s.location_indices) })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_fields_read_as_strings_or_numbers_and_defaults_may_be_left_out() {
        let body = br#"{"resourceProfiles":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a.b"}},{"key":"pid","value":{"intValue":"42"}}]},
            "scopeProfiles":[{"profiles":[{"timeUnixNano":"1700000000000000000","durationNano":5,"period":"10",
            "samples":[{"stackIndex":1,"values":["3",4],"timestampsUnixNano":["1700000000000000001","1700000000000000002"]}]}]}]}],
            "dictionary":{"stringTable":["","main"],"locationTable":[{},{"address":"4096","lines":[{"functionIndex":1}]}]}}"#;
        let request = from_json(body).unwrap();
        let profile = &request.resource_profiles[0].scope_profiles[0].profiles[0];
        assert_eq!((profile.time_unix_nano, profile.duration_nano, profile.period), (1_700_000_000_000_000_000, 5, 10));
        assert_eq!(profile.samples[0].values, [3, 4]);
        assert_eq!(profile.samples[0].timestamps_unix_nano[1], 1_700_000_000_000_000_002);
        let dictionary = request.dictionary.unwrap();
        assert_eq!(dictionary.location_table[1].address, 4096);
        let attributes = &request.resource_profiles[0].resource.as_ref().unwrap().attributes;
        assert_eq!(attributes[1].value.as_ref().unwrap().value, Some(common::any_value::Value::IntValue(42)));
        assert!(from_json(br#"{"resourceProfiles":[{"scopeProfiles":[{"profiles":[{"period":"x"}]}]}]}"#).is_err());
        assert!(from_json(br#"{"dictionary":{"stackTable":[{"locationIndices":[3000000000]}]}}"#).is_err());
    }
}
