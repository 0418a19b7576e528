//! OTLP profiles as the OpenTelemetry eBPF profiler sends them for a busy host, beside the same
//! samples as one pprof: the CPU one 4 MB request costs before storage, per format.
//!
//! Run: `cargo bench -p kiln-server --bench otlp`. The request is made here (no capture of the
//! profiler exists on this machine): 200 processes, each a resource with one CPU profile
//! (samples/count, 20 Hz), over a shared dictionary of about 6,000 functions; 23,000 stacks of
//! 16–48 frames, interpreted frames with lines and native frames without (one in seven), some
//! kernel frames; 46,000 samples with one to four timestamps each in one 5 s window. The pprof holds the
//! same stacks and counts, the process as a sample label (so both split into the same series).
//! Its figures belong in `server/docs/performance.md` beside the pprof ones.

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput};
use kiln_server::ingest::IngestLimits;
use kiln_server::ingest::otlp::{self, ExportProfilesServiceRequest, OtlpOptions};
use kiln_server::ingest::pprof::{self, Destination, SampleTypeConfigs};
use kiln_server::proto;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles, Sample,
    ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const PROCESSES: usize = 200;
const FUNCTIONS: usize = 6_000;
const STACKS: usize = 23_000;
const SAMPLES: usize = 46_000;
const T0: u64 = 1_795_871_000_000_000_000;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(s.into())) })
}

/// A stack: leaf-first function numbers, `None` for an unsymbolized native frame.
type Frames = Vec<Option<usize>>;

/// The host's stacks and samples: (process, stack, timestamps).
fn host(rng: &mut XorShift) -> (Vec<Frames>, Vec<(usize, usize, usize)>) {
    let stacks = (0..STACKS)
        .map(|_| {
            let depth = 16 + rng.below(33) as usize;
            (0..depth).map(|d| if d % 7 == 3 { None } else { Some(rng.below(FUNCTIONS as u64) as usize) }).collect()
        })
        .collect();
    let samples = (0..SAMPLES)
        .map(|_| (rng.below(PROCESSES as u64) as usize, rng.below(STACKS as u64) as usize, 1 + rng.below(4) as usize))
        .collect();
    (stacks, samples)
}

fn otlp_request(stacks: &[Frames], samples: &[(usize, usize, usize)]) -> ExportProfilesServiceRequest {
    let mut strings: Vec<String> = ["", "samples", "count", "cpu", "nanoseconds", "profile.frame.type", "kernel"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut dictionary = ProfilesDictionary {
        mapping_table: vec![Mapping::default()],
        function_table: vec![Function::default()],
        location_table: vec![Location::default()],
        stack_table: vec![Stack::default()],
        attribute_table: vec![
            KeyValueAndUnit::default(),
            KeyValueAndUnit { key_strindex: 5, value: text("kernel"), unit_strindex: 0 },
        ],
        ..Default::default()
    };
    strings.push("/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0".into());
    dictionary.mapping_table.push(Mapping { filename_strindex: strings.len() as i32 - 1, ..Default::default() });
    // One location per function (interpreted, with a line), kernel for the first 200.
    for f in 0..FUNCTIONS {
        strings.push(format!("module{}.function_{f}", f % 50));
        dictionary.function_table.push(Function { name_strindex: strings.len() as i32 - 1, ..Default::default() });
        let attribute_indices = if f < 200 { vec![1] } else { vec![] };
        dictionary.location_table.push(Location {
            lines: vec![Line { function_index: f as i32 + 1, line: 10 + f as i64 % 400, column: 0 }],
            attribute_indices,
            ..Default::default()
        });
    }
    for (s, frames) in stacks.iter().enumerate() {
        let mut locations = Vec::with_capacity(frames.len());
        for (depth, frame) in frames.iter().enumerate() {
            match frame {
                Some(f) => locations.push(*f as i32 + 1),
                None => {
                    // An unsymbolized native frame: a location of its own.
                    dictionary.location_table.push(Location {
                        mapping_index: 1,
                        address: 0x10_0000 + (s * 64 + depth) as u64,
                        ..Default::default()
                    });
                    locations.push(dictionary.location_table.len() as i32 - 1);
                }
            }
        }
        dictionary.stack_table.push(Stack { location_indices: locations });
    }
    dictionary.string_table = strings;
    let mut by_process: Vec<Vec<Sample>> = vec![Vec::new(); PROCESSES];
    for (i, &(process, stack, count)) in samples.iter().enumerate() {
        let timestamps = (0..count).map(|k| T0 + ((i * 7 + k * 131) % 5_000) as u64 * 1_000_000).collect();
        by_process[process].push(Sample {
            stack_index: stack as i32 + 1,
            timestamps_unix_nano: timestamps,
            ..Default::default()
        });
    }
    let resource_profiles = by_process
        .into_iter()
        .enumerate()
        .map(|(process, samples)| ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue {
                        key: "process.executable.name".into(),
                        value: text(&format!("proc{process}")),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "container.id".into(),
                        value: text(&format!("c{}", process % 20)),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
                    period_type: Some(ValueType { type_strindex: 3, unit_strindex: 4 }),
                    period: 50_000_000,
                    time_unix_nano: T0,
                    duration_nano: 5_000_000_000,
                    samples,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportProfilesServiceRequest { resource_profiles, dictionary: Some(dictionary) }
}

/// The same samples as one pprof: the process a string label, counts as `samples/count`.
fn pprof_profile(stacks: &[Frames], samples: &[(usize, usize, usize)]) -> Vec<u8> {
    use prost::Message;
    let mut string_table: Vec<Vec<u8>> =
        ["", "samples", "count", "cpu", "nanoseconds", "process"].iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut function = Vec::new();
    let mut location = Vec::new();
    for f in 0..FUNCTIONS {
        string_table.push(format!("module{}.function_{f}", f % 50).into_bytes());
        let id = f as u64 + 1;
        function.push(proto::Function { id, name: string_table.len() as i64 - 1 });
        location.push(proto::Location { id, address: 0, line: vec![proto::Line { function_id: id, line: 1 }] });
    }
    let mut stack_ids = Vec::with_capacity(stacks.len());
    for (s, frames) in stacks.iter().enumerate() {
        let ids = frames
            .iter()
            .enumerate()
            .map(|(depth, frame)| match frame {
                Some(f) => *f as u64 + 1,
                None => {
                    let id = location.len() as u64 + 1;
                    location.push(proto::Location { id, address: 0x10_0000 + (s * 64 + depth) as u64, line: vec![] });
                    id
                }
            })
            .collect::<Vec<u64>>();
        stack_ids.push(ids);
    }
    let process_names: Vec<i64> = (0..PROCESSES)
        .map(|p| {
            string_table.push(format!("proc{p}").into_bytes());
            string_table.len() as i64 - 1
        })
        .collect();
    let sample = samples
        .iter()
        .map(|&(process, stack, count)| proto::Sample {
            location_id: stack_ids[stack].clone(),
            value: vec![count as i64],
            label: vec![proto::Label { key: 5, str: process_names[process], num: 0 }],
        })
        .collect();
    proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        sample,
        location,
        function,
        string_table,
        time_nanos: T0 as i64,
        duration_nanos: 5_000_000_000,
        period_type: Some(proto::ValueType { r#type: 3, unit: 4 }),
        period: 50_000_000,
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (stacks, samples) = host(&mut rng);
    let request = otlp_request(&stacks, &samples);
    let bytes = prost_otlp::Message::encode_to_vec(&request);
    let pprof_bytes = pprof_profile(&stacks, &samples);
    let limits = IngestLimits::default();
    let options = OtlpOptions::default();
    let now = 1_795_871_300;
    eprintln!("OTLP request: {} bytes; the same samples as pprof: {} bytes", bytes.len(), pprof_bytes.len());
    let labels = BTreeMap::new();
    let config = SampleTypeConfigs::new();
    let dest =
        Destination { app: "host", labels: &labels, range: None, sample_rate: None, spy_name: "", config: &config };
    let decode_pprof = || {
        // As `/ingest` grants a body's bytes before decoding it.
        let mut budget = limits.budget();
        budget.decode.grant(pprof_bytes.len() as u64);
        pprof::uploads(&pprof_bytes, &dest, &limits, &mut budget, now).unwrap()
    };
    // The same data: as many series, and the same samples (OTLP's in nanoseconds).
    let mut budget = limits.budget();
    budget.decode.grant(prost_otlp::Message::encoded_len(&request) as u64);
    let from_otlp = otlp::decode(&request, &options, &limits, &mut budget, now).unwrap().uploads;
    let from_pprof = decode_pprof();
    assert_eq!(from_otlp.len(), from_pprof.len());
    let total = |uploads: &[kiln_server::storage::Upload]| uploads.iter().map(|u| u.tree.total()).sum::<u64>();
    assert_eq!(total(&from_otlp), total(&from_pprof) * 50_000_000);

    let mut group = c.benchmark_group("otlp");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("ebpf-host/prost-decode", |b| b.iter(|| otlp::from_protobuf(&bytes).unwrap()));
    group.bench_function("ebpf-host/map", |b| {
        b.iter(|| {
            let mut budget = limits.budget();
            budget.decode.grant(prost_otlp::Message::encoded_len(&request) as u64);
            otlp::decode(&request, &options, &limits, &mut budget, now).unwrap()
        })
    });
    group.bench_function("ebpf-host/decode+map", |b| {
        b.iter(|| {
            let request = otlp::from_protobuf(&bytes).unwrap();
            let mut budget = limits.budget();
            budget.decode.grant(prost_otlp::Message::encoded_len(&request) as u64);
            otlp::decode(&request, &options, &limits, &mut budget, now).unwrap()
        })
    });
    group.throughput(Throughput::Bytes(pprof_bytes.len() as u64));
    group.bench_function("ebpf-host-as-pprof/decode", |b| b.iter(decode_pprof));
    group.finish();
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
