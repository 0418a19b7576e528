//! Folded-text parsing plus merge into a tree, on a real capture and on a generated large input.
//! Run: `cargo bench -p kiln-model --bench parse`. Figures are written down in README.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::folded::{self, LineFormat, ParseLimits};

/// Deterministic folded text: `stacks` distinct stacks of realistic Rust-like names, depth up to
/// 40, each with a count.
fn generated(stacks: usize) -> Vec<u8> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let modules =
        ["kiln::ingest", "kiln::storage::wal", "tokio::runtime::task", "hyper::proto::h1", "std::io", "serde_json::de"];
    let mut out = Vec::new();
    for _ in 0..stacks {
        let depth = 4 + (next() % 37) as usize;
        for d in 0..depth {
            if d > 0 {
                out.push(b';');
            }
            let m = modules[(next() % modules.len() as u64) as usize];
            out.extend_from_slice(format!("{m}::function_{}", next() % 200).as_bytes());
        }
        out.extend_from_slice(format!(" {}\n", 1 + next() % 1000).as_bytes());
    }
    out
}

fn parse(c: &mut Criterion) {
    let real =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/example-perf-stacks-collapsed.txt")).unwrap();
    let big = generated(100_000);
    let mut group = c.benchmark_group("folded parse + merge");
    for (name, input) in [("example-perf (646 KB)", &real), ("generated 100k stacks", &big)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| folded::parse(input, LineFormat::Counted, ParseLimits::default()).unwrap().node_count())
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
