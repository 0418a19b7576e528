//! The storage benchmarks: ingest rate, query merge time and size on disk.
//!
//! Run: `cargo bench -p kiln-server --bench storage` (everything), or with a filter after `--`:
//! `ingest`, `query`, or `size` (the size report alone; it measures bytes, not time).
//! Figures are written down in README.md's Performance section.
//!
//! The profiles are generated to look like a real service's: a program of a few thousand
//! functions with realistic names, a pool of stacks that share long prefixes, and uploads that
//! each draw ~5 000 distinct stacks from that pool with a skew (hot paths in nearly every
//! upload, a long tail in a few), so that consecutive uploads overlap as a real app's do.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use criterion::{BenchmarkId, Criterion, Throughput};
use kiln_model::folded::{self, LineFormat, ParseLimits};
use kiln_model::{CallTree, FlatTree};
use kiln_server::api::{AppState, router};
use kiln_server::ingest::IngestLimits;
use kiln_server::ingest::pprof;
use kiln_server::proto;
use kiln_server::query::{self, Query};
use kiln_server::storage::{Aggregation, DEFAULT_TENANT, ProfileMeta, SeriesKey, Store, StoreConfig, Upload};
use prost::Message;
use tower::ServiceExt;

/// xorshift64: deterministic inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generated program: function names and a pool of stacks (function ids, root first).
struct Program {
    names: Vec<String>,
    pool: Vec<Vec<u32>>,
}

impl Program {
    fn new(seed: u64, functions: usize, stacks: usize) -> Program {
        let mut rng = Rng(seed);
        let crates = ["kiln", "tokio", "hyper", "serde_json", "std", "alloc", "core", "axum", "object_store", "prost"];
        let modules = [
            "runtime::task::harness",
            "proto::h1::dispatch",
            "storage::wal",
            "ingest::pprof",
            "io::buffered",
            "collections::hash::map",
            "de::deserializer",
            "routing::route",
            "query::merge",
            "sync::mpsc::chan",
        ];
        let verbs = ["poll", "read", "write", "decode", "encode", "merge", "insert", "get", "call", "handle", "flush"];
        let nouns = ["inner", "frame", "buffer", "request", "tree", "node", "chunk", "entry", "batch", "header"];
        let names: Vec<String> = (0..functions)
            .map(|i| {
                format!(
                    "{}::{}::{}_{}::h{:04x}",
                    crates[rng.below(crates.len())],
                    modules[rng.below(modules.len())],
                    verbs[rng.below(verbs.len())],
                    nouns[rng.below(nouns.len())],
                    i
                )
            })
            .collect();
        // Each function calls a few others: stacks follow these edges, so the pool is a tree
        // with shared prefixes rather than random paths.
        let callees: Vec<Vec<u32>> =
            (0..functions).map(|_| (0..4).map(|_| rng.below(functions) as u32).collect()).collect();
        let roots: Vec<u32> = (0..6).map(|_| rng.below(functions) as u32).collect();
        let mut pool: Vec<Vec<u32>> = Vec::with_capacity(stacks);
        let mut seen: HashSet<Vec<u32>> = HashSet::new();
        while pool.len() < stacks {
            // A new stack shares a prefix with an existing one and then goes its own way.
            let mut stack = if pool.is_empty() || rng.below(50) == 0 {
                vec![roots[rng.below(roots.len())]]
            } else {
                let base = &pool[rng.below(pool.len())];
                base[..1 + rng.below(base.len())].to_vec()
            };
            for _ in 0..1 + rng.below(8) {
                if stack.len() >= 48 {
                    break;
                }
                let last = *stack.last().expect("a frame") as usize;
                stack.push(callees[last][rng.below(4)]);
            }
            if seen.insert(stack.clone()) {
                pool.push(stack);
            }
        }
        Program { names, pool }
    }

    /// One upload's tree: `unique` distinct stacks of the pool, hot ones far more often.
    fn upload_tree(&self, rng: &mut Rng, unique: usize) -> FlatTree {
        let mut picked = HashSet::with_capacity(unique);
        let mut tree = CallTree::new();
        while picked.len() < unique.min(self.pool.len()) {
            // Skewed: the pool's first stacks are the hot paths.
            let index = (self.pool.len() as f64 * rng.unit().powi(3)) as usize;
            if picked.insert(index) {
                let value = 1 + (1000.0 * rng.unit().powi(8)) as u64;
                tree.add_stack(self.pool[index].iter().map(|&f| self.names[f as usize].as_str()), value);
            }
        }
        tree.to_flat()
    }
}

/// Bytes of `tree` as folded text (`a;b;c 12\n` per stack), without building the text.
fn folded_len(tree: &FlatTree) -> u64 {
    let mut path_len = vec![0u64; tree.len()];
    let mut total = 0;
    for i in 1..tree.len() {
        let parent = tree.parent[i] as usize;
        let sep = u64::from(parent != 0);
        path_len[i] = path_len[parent] + sep + tree.name_of(i as u32).len() as u64;
        if tree.self_value[i] > 0 {
            total += path_len[i] + 1 + tree.self_value[i].to_string().len() as u64 + 1;
        }
    }
    total
}

fn series(app: &str) -> SeriesKey {
    SeriesKey::new(app, "cpu", BTreeMap::from([("pod".to_string(), "pod-0".to_string())]))
}

fn upload(key: &SeriesKey, until: i64, tree: FlatTree) -> Upload {
    Upload {
        meta: ProfileMeta {
            series: key.clone(),
            from: until - 10,
            until,
            units: "samples".into(),
            sample_rate: 100,
            spy_name: "bench".into(),
            aggregation: Aggregation::Sum,
        },
        tree,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // One thread: the figures are per core (the log's own writer thread aside).
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

const T0: i64 = 1_800_000_000;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        background: false,
        // Far after the data: every compaction window has settled.
        clock: Arc::new(|| T0 + 100 * 86_400),
        retention: Duration::ZERO,
        head_max_bytes: u64::MAX,
        ..StoreConfig::new(dir)
    }
}

/// Bytes of every block object (data and meta) under the data directory.
fn block_bytes(dir: &Path) -> u64 {
    fn walk(path: &Path) -> u64 {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { walk(&p) } else { e.metadata().map_or(0, |m| m.len()) }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("blocks"))
}

/// Appends `hours` of 10 s uploads the way a server receives them: one block cut every
/// 10 minutes, then each finished hour compacted into one block. The trees repeat hourly
/// (generating 8 640 distinct 5 000-stack trees would take longer than the benchmark); every
/// upload is still stored, read and merged on its own.
async fn fill(store: &Store, key: &SeriesKey, trees: &[FlatTree], hours: usize, flush: Flush) {
    for hour in 0..hours {
        for batch in 0..6 {
            let uploads: Vec<Upload> = (0..60)
                .map(|i| {
                    let n = batch * 60 + i;
                    let until = T0 + (hour * 3600 + n * 10 + 10) as i64;
                    upload(key, until, trees[n % trees.len()].clone())
                })
                .collect();
            store.append(uploads).await.expect("append");
            if flush == Flush::Every10Minutes || (flush == Flush::Hourly && batch == 5) {
                store.flush().await.expect("flush");
            }
        }
    }
    if flush == Flush::Every10Minutes {
        store.compact(T0 + 100 * 86_400).await.expect("compact");
    }
}

/// How [`fill`] cuts blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing: everything stays in the head.
    Never,
    /// A block every 10 minutes, compacted into one block per hour (what a server does).
    Every10Minutes,
    /// One block per hour directly: the same layout as after compaction, in far less setup
    /// time for a day of data.
    Hourly,
}

/// CPU seconds this process has used (all threads), from `/proc/self/stat` (clock ticks of
/// 1/100 s): on a shared machine, what a query costs whatever else runs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` for at least 3 CPU seconds and prints the CPU time per run.
fn report_cpu(label: &str, mut f: impl FnMut()) {
    let (start, wall) = (cpu_seconds(), Instant::now());
    let mut runs = 0;
    while runs < 3 || cpu_seconds() - start < 3.0 {
        f();
        runs += 1;
    }
    let cpu = (cpu_seconds() - start) / runs as f64;
    let wall = wall.elapsed().as_secs_f64() / runs as f64;
    eprintln!("{label}: {:.1} ms CPU per run (all threads), {:.1} ms wall, {runs} runs", cpu * 1e3, wall * 1e3);
}

/// The query path before stack-tree chunks: every upload decoded into its own tree, then
/// merged node by node (kept here as the reference the figures are compared with).
async fn merge_per_upload(store: &Store, q: &Query) -> FlatTree {
    let mut uploads = store.select(q.from, q.until, |k| q.selects(k)).await.expect("select");
    uploads.sort_by_key(|u| (u.meta.from, u.meta.until));
    let mut tree = CallTree::new();
    for u in &uploads {
        tree.merge_flat(&u.tree);
    }
    tree.to_flat()
}

fn query_bench(c: &mut Criterion, selected: &dyn Fn(&str) -> bool) {
    let cases =
        [("1h blocks", 1, Flush::Every10Minutes), ("1h head", 1, Flush::Never), ("24h blocks", 24, Flush::Hourly)];
    let cases: Vec<_> = cases.into_iter().filter(|(label, _, _)| selected(&format!("query/merge/{label}"))).collect();
    if cases.is_empty() {
        return;
    }
    let program = Program::new(0x5eed, 3000, 12_000);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let started = Instant::now();
    let trees: Vec<FlatTree> = (0..360).map(|_| program.upload_tree(&mut rng, 5000)).collect();
    let nodes: usize = trees.iter().map(FlatTree::len).sum();
    let stacks: usize = trees.iter().map(|t| t.self_value.iter().filter(|&&v| v > 0).count()).sum();
    eprintln!(
        "query inputs: 360 trees, {} nodes and {} stacks on average, {:.1} MB folded each, generated in {:.1?}",
        nodes / trees.len(),
        stacks / trees.len(),
        trees.iter().map(folded_len).sum::<u64>() as f64 / 360.0 / 1e6,
        started.elapsed()
    );
    let rt = runtime();
    let key = series("bench");
    let mut group = c.benchmark_group("query");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (label, hours, flush) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt.block_on(async {
            let store = Store::open_with(config(dir.path())).await.expect("open");
            let started = Instant::now();
            fill(&store, &key, &trees, hours, flush).await;
            eprintln!(
                "{label}: stored in {:.1?}, {} blocks, {:.1} MB of blocks",
                started.elapsed(),
                store.block_count(),
                block_bytes(dir.path()) as f64 / 1e6
            );
            store
        });
        let q = Query::parse(DEFAULT_TENANT, "bench.cpu", T0, T0 + hours as i64 * 3600).expect("query");
        let merged = rt.block_on(query::merge(&store, &q)).expect("merge");
        assert_eq!(merged.tree, rt.block_on(merge_per_upload(&store, &q)), "both paths give one answer");
        eprintln!("{label}: merged tree of {} nodes, total {}", merged.tree.len(), merged.tree.total());
        group.throughput(Throughput::Elements(hours as u64 * 360));
        group.bench_function(BenchmarkId::new("merge", label), |b| {
            b.iter(|| rt.block_on(query::merge(&store, &q)).expect("merge").tree.len())
        });
        report_cpu(&format!("query/merge/{label}"), || {
            rt.block_on(query::merge(&store, &q)).expect("merge");
        });
        if flush != Flush::Never {
            group.bench_function(BenchmarkId::new("per-upload merge (previous path)", label), |b| {
                b.iter(|| rt.block_on(merge_per_upload(&store, &q)).len())
            });
            report_cpu(&format!("query/per-upload merge (previous path)/{label}"), || {
                rt.block_on(merge_per_upload(&store, &q));
            });
        }
        drop(store);
    }
    group.finish();
}

async fn app(dir: &Path) -> Router {
    router(AppState::new(Arc::new(Store::open_with(config(dir)).await.expect("open"))))
}

/// A gzipped pprof CPU profile of about `target` bytes, as the Go agent sends every 10 s.
fn pprof_body(program: &Program, rng: &mut Rng, target: usize) -> Vec<u8> {
    let mut samples = 40;
    loop {
        let mut strings: Vec<Vec<u8>> = vec![Vec::new(), b"samples".to_vec(), b"count".to_vec()];
        strings.push(b"cpu".to_vec());
        strings.push(b"nanoseconds".to_vec());
        let first_name = strings.len();
        strings.extend(program.names.iter().map(|n| n.as_bytes().to_vec()));
        let mut profile = proto::Profile {
            sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }, proto::ValueType { r#type: 3, unit: 4 }],
            period_type: Some(proto::ValueType { r#type: 3, unit: 4 }),
            period: 10_000_000,
            time_nanos: T0 * 1_000_000_000,
            duration_nanos: 10_000_000_000,
            ..Default::default()
        };
        let mut used = BTreeMap::new();
        let mut r = Rng(rng.0);
        for _ in 0..samples {
            let stack = &program.pool[(program.pool.len() as f64 * r.unit().powi(3)) as usize];
            // One location per function (id = function id + 1); leaf first.
            let location_id: Vec<u64> = stack.iter().rev().map(|&f| u64::from(f) + 1).collect();
            for &f in stack {
                used.insert(f, ());
            }
            let count = 1 + r.below(20) as i64;
            profile.sample.push(proto::Sample { location_id, value: vec![count, count * 10_000_000], label: vec![] });
        }
        for &f in used.keys() {
            let id = u64::from(f) + 1;
            profile.function.push(proto::Function { id, name: (first_name + f as usize) as i64 });
            profile.location.push(proto::Location {
                id,
                address: 0x40_0000 + id * 64,
                line: vec![proto::Line { function_id: id, line: 10 }],
            });
        }
        // Only the strings in use, as a real encoder writes them.
        let mut remap = vec![0i64; strings.len()];
        let mut kept: Vec<Vec<u8>> = strings[..first_name].to_vec();
        for f in &mut profile.function {
            let old = f.name as usize;
            if remap[old] == 0 {
                remap[old] = kept.len() as i64;
                kept.push(strings[old].clone());
            }
            f.name = remap[old];
        }
        profile.string_table = kept;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&profile.encode_to_vec()).expect("gzip");
        let body = gz.finish().expect("gzip");
        if body.len() >= target || samples > 100_000 {
            return body;
        }
        samples = (samples * target / body.len().max(1)).max(samples + 1);
    }
}

/// Folded text of about `target` bytes from the program's pool.
fn folded_body(program: &Program, rng: &mut Rng, target: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < target {
        let stack = &program.pool[(program.pool.len() as f64 * rng.unit().powi(3)) as usize];
        let line: Vec<&str> = stack.iter().map(|&f| program.names[f as usize].as_str()).collect();
        out.extend_from_slice(line.join(";").as_bytes());
        out.extend_from_slice(format!(" {}\n", 1 + rng.below(50)).as_bytes());
    }
    out
}

fn ingest_bench(c: &mut Criterion) {
    let program = Program::new(0x5eed, 3000, 12_000);
    let mut rng = Rng(0xfeed_beef_0bad_f00d);
    let pprof = pprof_body(&program, &mut rng, 10_000);
    let folded = folded_body(&program, &mut rng, 50_000);
    eprintln!("ingest inputs: pprof {} bytes gzipped, folded {} bytes", pprof.len(), folded.len());
    let rt = runtime();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, String, &[u8]); 2] = [
        (
            "pprof 10 KB",
            format!("/ingest?name=bench.cpu%7Bpod%3Da%7D&format=pprof&from={T0}&until={}", T0 + 10),
            &pprof,
        ),
        ("folded 50 KB", format!("/ingest?name=bench.cpu%7Bpod%3Db%7D&from={T0}&until={}", T0 + 10), &folded),
    ];
    for (label, uri, body) in cases {
        group.bench_function(BenchmarkId::new("http oneshot + fsync", label), |b| {
            b.iter_custom(|iters| {
                // A fresh store per sample: the head does not grow across the whole run.
                let dir = tempfile::tempdir().expect("temp dir");
                rt.block_on(async {
                    let app = app(dir.path()).await;
                    let started = Instant::now();
                    for _ in 0..iters {
                        let request = Request::post(uri.as_str()).body(Body::from(body.to_vec())).expect("request");
                        let response = app.clone().oneshot(request).await.expect("response");
                        assert_eq!(response.status(), StatusCode::OK);
                        to_bytes(response.into_body(), usize::MAX).await.expect("body");
                    }
                    started.elapsed()
                })
            })
        });
    }
    // The CPU part alone (no log, no fsync): what one core could parse if the disk were free.
    let limits = IngestLimits::default();
    let labels = BTreeMap::new();
    let config = pprof::SampleTypeConfigs::new();
    group.bench_function(BenchmarkId::new("parse only", "pprof 10 KB"), |b| {
        let dest = pprof::Destination {
            app: "bench",
            labels: &labels,
            range: Some((T0, T0 + 10)),
            sample_rate: None,
            spy_name: "",
            config: &config,
        };
        b.iter(|| pprof::uploads(&pprof, &dest, &limits, &mut limits.budget(), T0).expect("pprof").len())
    });
    group.bench_function(BenchmarkId::new("parse only", "folded 50 KB"), |b| {
        b.iter(|| folded::parse(&folded, LineFormat::Counted, ParseLimits::default()).expect("folded").to_flat().len())
    });
    group.finish();
}

/// Real folded captures: the ones in the repository, plus `KILN_REAL_DATA` (a folder of
/// `.txt` folded files) when set.
fn real_captures() -> Vec<(String, Vec<u8>)> {
    let mut dirs = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../app/model/tests/data"))];
    if let Ok(extra) = std::env::var("KILN_REAL_DATA") {
        dirs.push(PathBuf::from(extra));
    }
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if !name.ends_with(".txt") || name.starts_with("CDDL") || out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else { continue };
            // Folded files only: every line ends in a count.
            if folded::parse(&text, LineFormat::Counted, ParseLimits::default()).is_ok_and(|t| !t.is_empty()) {
                out.push((name, text));
            }
        }
    }
    out
}

/// Stores `uploads` (series, folded text) one 10 s apart, cuts a block every 60 uploads,
/// compacts, and returns (folded bytes, block bytes).
fn stored_size(rt: &tokio::runtime::Runtime, uploads: &[(SeriesKey, Vec<u8>)]) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let store = Store::open_with(config(dir.path())).await.expect("open");
        let mut text_bytes = 0;
        for (batch_index, batch) in uploads.chunks(60).enumerate() {
            let mut list = Vec::new();
            for (i, (key, text)) in batch.iter().enumerate() {
                text_bytes += text.len() as u64;
                let tree = folded::parse(text, LineFormat::Counted, ParseLimits::default()).expect("folded");
                list.push(upload(key, T0 + ((batch_index * 60 + i) * 10 + 10) as i64, tree.to_flat()));
            }
            store.append(list).await.expect("append");
            store.flush().await.expect("flush");
        }
        store.compact(T0 + 100 * 86_400).await.expect("compact");
        (text_bytes, block_bytes(dir.path()))
    })
}

/// Folded text of `tree` with every count jittered: the same app profiled again 10 s later.
fn jittered(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let split = line.iter().rposition(|&b| b == b' ').unwrap_or(line.len());
        // About a third of the stacks are not seen in a given 10 s.
        if rng.below(3) == 0 {
            continue;
        }
        out.extend_from_slice(&line[..split]);
        out.extend_from_slice(format!(" {}\n", 1 + rng.below(100)).as_bytes());
    }
    out
}

fn size_report() {
    let rt = runtime();
    let mut rng = Rng(0x0dd_ba11);
    let mut rows: Vec<(String, u64, u64)> = Vec::new();
    let captures = real_captures();
    // Each capture once, in its own series: nothing repeats, the worst case.
    let once: Vec<(SeriesKey, Vec<u8>)> =
        captures.iter().map(|(name, text)| (series(&format!("real-{name}")), text.clone())).collect();
    let (text, blocks) = stored_size(&rt, &once);
    rows.push((format!("{} real captures, each uploaded once", captures.len()), text, blocks));
    // Each capture as an app profiled every 10 s for 10 minutes.
    let mut repeated = Vec::new();
    for _ in 0..60 {
        for (name, capture) in &captures {
            repeated.push((series(&format!("real-{name}")), jittered(capture, &mut rng)));
        }
    }
    let (text, blocks) = stored_size(&rt, &repeated);
    rows.push((format!("the same {} apps, 60 uploads each (10 min)", captures.len()), text, blocks));
    // The generated app of the query benchmark, one hour.
    let program = Program::new(0x5eed, 3000, 12_000);
    let key = series("bench");
    let mut generated = Vec::new();
    for _ in 0..360 {
        let tree = program.upload_tree(&mut rng, 5000);
        generated.push((key.clone(), folded::print(&tree).into_bytes()));
    }
    let (text, blocks) = stored_size(&rt, &generated);
    rows.push(("generated app, 360 uploads of 5 000 stacks (1 h)".to_string(), text, blocks));
    println!("size on disk (blocks after flush and compaction):");
    for (what, text, blocks) in rows {
        println!(
            "  {what}: {:.2} MB folded -> {:.3} MB blocks, {:.1}x smaller",
            text as f64 / 1e6,
            blocks as f64 / 1e6,
            text as f64 / blocks.max(1) as f64
        );
    }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f) || f.contains(name));
    let selected: &dyn Fn(&str) -> bool = &selected;
    if selected("size") {
        size_report();
    }
    let mut c = Criterion::default().configure_from_args();
    if selected("ingest") {
        ingest_bench(&mut c);
    }
    query_bench(&mut c, selected);
    c.final_summary();
}
