//! Block encoding and decoding: what cutting the head costs and what a query pays per chunk.
//! Run: `cargo bench -p kiln-server --bench block`.

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::CallTree;
use kiln_server::storage::block;
use kiln_server::storage::{Aggregation, ProfileMeta, SeriesKey, Upload};

/// 100 series × 6 uploads of a few hundred stacks each, deterministic.
fn uploads() -> Vec<Upload> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for series in 0..100 {
        let key = SeriesKey::new(
            format!("app{}", series % 10),
            "cpu",
            BTreeMap::from([("pod".to_string(), format!("pod-{series}"))]),
        );
        for upload in 0..6i64 {
            let mut tree = CallTree::new();
            for _ in 0..300 {
                let depth = 3 + next() % 20;
                let frames: Vec<String> =
                    (0..depth).map(|d| format!("kiln::module{}::function_{}", d % 7, next() % 60)).collect();
                tree.add_stack(frames.iter().map(String::as_str), 1 + next() % 100);
            }
            out.push(Upload {
                meta: ProfileMeta {
                    series: key.clone(),
                    from: 1_700_000_000 + upload * 10,
                    until: 1_700_000_010 + upload * 10,
                    units: "samples".into(),
                    sample_rate: 100,
                    spy_name: "bench".into(),
                    aggregation: Aggregation::Sum,
                },
                tree: tree.to_flat(),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let uploads = uploads();
    let (bytes, index, _) = block::encode(&uploads);
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(uploads.len() as u64));
    group.bench_function("encode 600 uploads", |b| b.iter(|| block::encode(&uploads)));
    group.bench_function("decode whole block", |b| b.iter(|| block::decode_all(&bytes).unwrap()));
    let entry = &index.series[0];
    let chunk = &bytes[entry.offset as usize..(entry.offset + entry.len) as usize];
    group.throughput(Throughput::Elements(entry.uploads));
    group.bench_function("decode one series chunk", |b| b.iter(|| block::decode_chunk(entry, chunk).unwrap()));
    group.bench_function("read one series chunk (query path)", |b| b.iter(|| block::read_chunk(entry, chunk).unwrap()));
    group.finish();
    println!("block: {} uploads, {} bytes ({} series)", uploads.len(), bytes.len(), index.series.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
