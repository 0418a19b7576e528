//! Decoding real agent uploads: the CPU one upload costs before storage, per path.
//!
//! Run: `cargo bench -p kiln-server --bench decode` (a filter after `--`, e.g. `node`). The
//! bodies are the captures in `tests/data/agents/` (see its README): what released agents send.
//! Figures and history: `server/docs/performance.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use criterion::{Criterion, Throughput};
use flate2::read::GzDecoder;
use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_server::ingest::IngestLimits;
use kiln_server::ingest::pprof::{self, Destination, SampleTypeConfigs};
use kiln_server::ingest::push::{self, Codec};

fn body(path: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agents").join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let limits = IngestLimits::default();
    let labels = BTreeMap::from([("env".to_string(), "test".to_string())]);
    let config = SampleTypeConfigs::new();
    let dest = Destination {
        app: "agenttest",
        labels: &labels,
        range: Some((1_795_871_219, 1_795_871_280)),
        sample_rate: None,
        spy_name: "nodespy",
        config: &config,
    };
    let now = 1_795_871_300;

    let mut group = c.benchmark_group("pprof");
    for (name, file) in [
        // @pyroscope/nodejs 0.6.4, 60 s of wall time: 1,708 samples of deep stacks, one label.
        ("node-wall-60s", "node-0.6-default/bodies/0001-conn1.bin"),
        ("node-wall-10s", "node-0.6/bodies/0001-conn1.bin"),
        ("node-heap", "node-0.6/bodies/0002-conn2.bin"),
        ("rust-v05", "rust-v05/bodies/0002-conn2.bin"),
    ] {
        let gzipped = body(file);
        let raw = gunzip(&gzipped);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(format!("{name}/gunzip"), |b| b.iter(|| gunzip(&gzipped)));
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| pprof::uploads(&raw, &dest, &limits, &mut limits.budget(), now).unwrap())
        });
        group.bench_function(format!("{name}/gunzip+decode"), |b| {
            b.iter(|| pprof::uploads(&gzipped, &dest, &limits, &mut limits.budget(), now).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("push");
    let gzipped = body("rust-v2/bodies/0001-conn1.bin");
    let raw = gunzip(&gzipped);
    let tenant = "anonymous";
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("rust-v2/decode", |b| {
        b.iter(|| push::decode(&raw, Codec::Proto, tenant, "pyroscope-rs", &limits, &mut limits.budget(), now).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("folded");
    let gzipped = body("rust-v05-folded/bodies/0001-conn1.bin");
    let raw = gunzip(&gzipped);
    let parse_limits = ParseLimits { max_depth: limits.max_stack_depth, max_line_len: limits.max_line_bytes };
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("rust-v05-folded/parse", |b| {
        b.iter(|| folded::parse(&raw, LineFormat::Counted, parse_limits).unwrap())
    });
    group.finish();
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
