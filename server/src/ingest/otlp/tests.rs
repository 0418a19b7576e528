//! The mapping on requests built here, for what the goldens from an independent producer
//! (`server/tests/otlp.rs`) do not pin down: budgets, time windows, application precedence.

use opentelemetry_proto::tonic::profiles::v1development::{
    Function, Line, Location, ResourceProfiles, ScopeProfiles, Stack,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

const T0: u64 = 1_700_000_000_000_000_000;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(s.into())) })
}

/// One location per frame name (leaf first) in one stack; samples on it with the given
/// (values, timestamps, attribute (key, value) pairs); resource attributes; sample type
/// `cpu/nanoseconds`.
struct Build {
    request: ExportProfilesServiceRequest,
}

impl Build {
    fn new(frames: &[&str], resource: &[(&str, &str)]) -> Build {
        let mut strings = vec![String::new(), "cpu".into(), "nanoseconds".into()];
        let mut dictionary = ProfilesDictionary {
            location_table: vec![Location::default()],
            function_table: vec![Function::default()],
            stack_table: vec![Stack::default()],
            attribute_table: vec![KeyValueAndUnit::default()],
            ..Default::default()
        };
        let mut locations = Vec::new();
        for frame in frames {
            strings.push(frame.to_string());
            dictionary.function_table.push(Function { name_strindex: strings.len() as i32 - 1, ..Default::default() });
            let function_index = dictionary.function_table.len() as i32 - 1;
            dictionary
                .location_table
                .push(Location { lines: vec![Line { function_index, ..Default::default() }], ..Default::default() });
            locations.push(dictionary.location_table.len() as i32 - 1);
        }
        dictionary.stack_table.push(Stack { location_indices: locations });
        dictionary.string_table = strings;
        let attributes = resource
            .iter()
            .map(|(k, v)| KeyValue { key: k.to_string(), value: text(v), ..Default::default() })
            .collect();
        let profile = Profile {
            sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
            time_unix_nano: T0,
            duration_nano: 10_000_000_000,
            ..Default::default()
        };
        Build {
            request: ExportProfilesServiceRequest {
                resource_profiles: vec![ResourceProfiles {
                    resource: Some(Resource { attributes, ..Default::default() }),
                    scope_profiles: vec![ScopeProfiles { profiles: vec![profile], ..Default::default() }],
                    ..Default::default()
                }],
                dictionary: Some(dictionary),
            },
        }
    }

    fn sample(mut self, values: &[i64], timestamps: &[u64], attributes: &[(&str, &str)]) -> Build {
        let dictionary = self.request.dictionary.as_mut().unwrap();
        let mut indices = Vec::new();
        for (k, v) in attributes {
            dictionary.string_table.push(k.to_string());
            dictionary.attribute_table.push(KeyValueAndUnit {
                key_strindex: dictionary.string_table.len() as i32 - 1,
                value: text(v),
                unit_strindex: 0,
            });
            indices.push(dictionary.attribute_table.len() as i32 - 1);
        }
        self.profile().samples.push(Sample {
            stack_index: 1,
            attribute_indices: indices,
            values: values.to_vec(),
            timestamps_unix_nano: timestamps.to_vec(),
            ..Default::default()
        });
        self
    }

    fn profile(&mut self) -> &mut Profile {
        &mut self.request.resource_profiles[0].scope_profiles[0].profiles[0]
    }

    fn decode_with(&self, limits: &IngestLimits) -> Result<Decoded, IngestError> {
        let mut budget = limits.budget();
        budget.decode.grant(prost_otlp::Message::encoded_len(&self.request) as u64);
        decode(&self.request, &OtlpOptions::default(), limits, &mut budget, 1_700_000_100)
    }

    fn decode(&self) -> Decoded {
        self.decode_with(&IngestLimits::default()).unwrap()
    }
}

fn apps(decoded: &Decoded) -> Vec<(String, u64)> {
    let mut apps: Vec<(String, u64)> =
        decoded.uploads.iter().map(|u| (u.meta.series.app.clone(), u.tree.total())).collect();
    apps.sort();
    apps
}

#[test]
fn the_resource_service_wins_then_each_samples_process_then_unknown_service() {
    let named = Build::new(&["main"], &[("service.name", "api.cpu")]).sample(&[1], &[], &[(EXECUTABLE_NAME, "x")]);
    assert_eq!(apps(&named.decode()), [("api.cpu".to_string(), 1)], "the name is whole, never split");
    let per_process = Build::new(&["main"], &[("service.name", "unknown_service:java")])
        .sample(&[1], &[], &[(EXECUTABLE_NAME, "java")])
        .sample(&[2], &[], &[(SERVICE_NAME, "billing")])
        .sample(&[4], &[], &[]);
    assert_eq!(
        apps(&per_process.decode()),
        [("billing".to_string(), 2), ("java".to_string(), 1), ("unknown_service:java".to_string(), 4)]
    );
    let nothing = Build::new(&["main"], &[]).sample(&[3], &[], &[]);
    assert_eq!(apps(&nothing.decode()), [(UNKNOWN_SERVICE.to_string(), 3)]);
}

#[test]
fn timestamps_in_one_bucket_keep_the_profiles_range_and_values_pair_with_them() {
    let one_bucket =
        Build::new(&["main"], &[]).sample(&[], &[T0 + 1, T0 + 2, T0 + 3], &[]).sample(&[5, 6], &[T0, T0 + 9], &[]);
    let decoded = one_bucket.decode();
    assert_eq!(decoded.uploads.len(), 1);
    let meta = &decoded.uploads[0].meta;
    assert_eq!((meta.from, meta.until, decoded.uploads[0].tree.total()), (1_700_000_000, 1_700_000_010, 3 + 11));
    let mismatched = Build::new(&["main"], &[]).sample(&[1, 2, 3], &[T0, T0 + 1], &[]).decode();
    assert_eq!((mismatched.rejected, mismatched.uploads.len()), (1, 0));
    assert!(mismatched.reasons[0].contains("3 values for 2 timestamps"), "{:?}", mismatched.reasons);
    let mut linked = Build::new(&["main"], &[]).sample(&[1], &[], &[]);
    linked.profile().samples[0].link_index = 3;
    let decoded = linked.decode();
    assert_eq!((decoded.rejected, decoded.uploads.len()), (1, 0), "a link outside the (empty) link table");
}

#[test]
fn a_profile_outside_the_ingest_window_is_refused_alone() {
    let mut old = Build::new(&["main"], &[]).sample(&[1], &[], &[]);
    old.profile().time_unix_nano = 1_000_000_000; // 1970
    let decoded = old.decode();
    assert_eq!((decoded.rejected, decoded.uploads.len()), (1, 0));
    assert!(decoded.reasons[0].contains("oldest accepted time"), "{:?}", decoded.reasons);
}

#[test]
fn a_request_over_its_decode_budget_is_refused_whole() {
    let mut wide = Build::new(&["leaf"], &[("service.name", "a")]);
    // 5,000 stacks of 200 frames each over one location: far more frames than the bytes allow.
    let dictionary = wide.request.dictionary.as_mut().unwrap();
    for _ in 0..5_000 {
        dictionary.stack_table.push(Stack { location_indices: vec![1; 200] });
    }
    for stack in 2..5_002 {
        wide.profile().samples.push(Sample { stack_index: stack, values: vec![1], ..Default::default() });
    }
    let tight = IngestLimits { frames_per_kib: 64, decode_floor_kib: 1, ..IngestLimits::default() };
    assert!(matches!(wide.decode_with(&tight), Err(IngestError::OverBudget(_))));
    assert_eq!(wide.decode().uploads[0].tree.total(), 5_000);
}
