//! Folded-text parsing plus merge into a tree, on a real capture and on generated large inputs.
//! Run: `cargo bench -p kiln-model --bench parse`. Figures are written down in README.md.
//!
//! Generated inputs:
//! - "tree-shaped": a call tree shaped like a real profile (as `end2end/bench/gen-folded.mjs`
//!   makes them: shared prefixes, long single-child chains, skewed fan-out, names reused across
//!   call sites), once in tree order (what collapse tools print) and once shuffled (what an
//!   agent's hash map may print: no line shares a prefix with the one before it);
//! - "random": every line a new random path (the worst case: nearly every frame is a new node).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::folded::{self, LineFormat, ParseLimits};

/// xorshift64: deterministic and dependency-free.
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

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Index in 0..n, small ones far more likely (roughly Zipf).
    fn zipf(&mut self, n: usize) -> usize {
        ((n as f64 * self.unit().powi(3)) as usize).min(n - 1)
    }
}

/// `stacks` random stacks of Rust-like names, depth 4 to 40, each with a count.
fn random(stacks: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let modules =
        ["kiln::ingest", "kiln::storage::wal", "tokio::runtime::task", "hyper::proto::h1", "std::io", "serde_json::de"];
    let mut out = Vec::new();
    for _ in 0..stacks {
        let depth = 4 + rng.below(37);
        for d in 0..depth {
            if d > 0 {
                out.push(b';');
            }
            let m = modules[rng.below(modules.len())];
            out.extend_from_slice(format!("{m}::function_{}", rng.below(200)).as_bytes());
        }
        out.extend_from_slice(format!(" {}\n", 1 + rng.below(1000)).as_bytes());
    }
    out
}

const WORDS: &[&str] = &[
    "alloc", "buffer", "cache", "channel", "codec", "config", "conn", "context", "cursor", "decode", "dispatch",
    "encode", "engine", "executor", "fetch", "filter", "flush", "frame", "handler", "hash", "header", "index", "io",
    "iter", "join", "json", "kernel", "layout", "lexer", "lock", "log", "map", "merge", "metrics", "net", "parse",
    "pool", "proto", "query", "queue", "reader", "record", "registry", "render", "request", "resolve", "response",
    "router", "runtime", "scan", "schedule", "schema", "segment", "session", "shard", "sink", "snapshot", "socket",
    "sort", "span", "storage", "stream", "sync", "table", "task", "timer", "token", "trace", "tree", "txn", "wal",
];
const TYPES: &[&str] = &[
    "Builder",
    "Buffer",
    "Cache",
    "Client",
    "Codec",
    "Conn",
    "Context",
    "Decoder",
    "Driver",
    "Encoder",
    "Engine",
    "Handler",
    "Index",
    "Iter",
    "Manager",
    "Map",
    "Parser",
    "Pool",
    "Reader",
    "Request",
    "Router",
    "Scheduler",
    "Segment",
    "Server",
    "Session",
    "Sink",
    "Stream",
    "Table",
    "Task",
    "Tree",
    "Worker",
    "Writer",
];
const ROOTS: &[&[&str]] = &[
    &["std::rt::lang_start", "main", "kiln::serve"],
    &["java/lang/Thread.run", "java/util/concurrent/ThreadPoolExecutor$Worker.run"],
    &["runtime.goexit", "runtime.main", "main.main"],
    &["tokio::runtime::task::harness::Harness::poll", "tokio::runtime::task::core::Core::poll"],
    &["[kernel.kallsyms]", "entry_SYSCALL_64_after_hwframe", "do_syscall_64"],
    &["clone3", "start_thread", "std::sys::pal::unix::thread::Thread::new::thread_start"],
];
const MAX_DEPTH: usize = 64;

/// A call tree shaped like a real profile with exactly `stacks` distinct stacks, printed in
/// tree order: a port of `end2end/bench/gen-folded.mjs` (same shape, not the same bytes).
struct TreeShaped {
    rng: Rng,
    funcs: Vec<Vec<String>>,
    lines: Vec<Vec<u8>>,
}

impl TreeShaped {
    fn generate(stacks: usize) -> Vec<Vec<u8>> {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ stacks as u64);
        let module_count = (stacks / 400).clamp(40, 2000);
        let mut funcs = Vec::new();
        for m in 0..module_count {
            let (a, b) = (WORDS[rng.below(WORDS.len())], WORDS[rng.below(WORDS.len())]);
            let lang = rng.below(4);
            let mut names: Vec<String> = Vec::new();
            for _ in 0..72 {
                if names.len() == 24 {
                    break;
                }
                let (t, v) = (TYPES[rng.below(TYPES.len())], WORDS[rng.below(WORDS.len())]);
                let name = match lang {
                    0 | 1 => format!("kiln::{a}::{b}::{t}::{v}"),
                    2 => format!("github.com/acme/shop/{a}{m}.(*{t}).{v}"),
                    _ => format!("org/acme/{a}/{b}/{t}.{v}"),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            funcs.push(names);
        }
        let mut g = TreeShaped { rng, funcs, lines: Vec::with_capacity(stacks) };
        let shares = [0.45, 0.2, 0.15, 0.1, 0.06, 0.04].map(|s: f64| ((stacks as f64 * s) as usize).max(1));
        let mut leftover = stacks.saturating_sub(shares.iter().sum());
        for (root, share) in ROOTS.iter().zip(shares) {
            let module = g.rng.zipf(module_count);
            let mut stack: Vec<String> = root.iter().map(|s| s.to_string()).collect();
            leftover = g.grow(&mut stack, module, share + leftover);
        }
        g.lines
    }

    fn emit(&mut self, stack: &[String]) {
        let count = 1 + (999.0 * self.rng.unit().powi(6)) as u64;
        self.lines.push(format!("{} {count}\n", stack.join(";")).into_bytes());
    }

    /// Emits `budget` stacks under `stack`; returns what it could not place.
    fn grow(&mut self, stack: &mut Vec<String>, module: usize, mut budget: usize) -> usize {
        let depth = stack.len();
        if budget == 1 || depth >= MAX_DEPTH {
            self.emit(stack);
            return budget - 1;
        }
        if self.rng.unit() < 0.12 {
            self.emit(stack);
            budget -= 1;
        }
        let r = self.rng.unit();
        let mut k = if r < 0.55 && depth < MAX_DEPTH - 8 {
            1
        } else if r < 0.8 {
            2 + self.rng.below(3)
        } else {
            5 + self.rng.zipf(40)
        };
        if depth >= MAX_DEPTH - 1 {
            k = budget;
        }
        let k = k.min(budget);
        if k == 0 {
            return 0;
        }
        let weights: Vec<f64> = (0..k).map(|i| 1.0 / ((i + 1) as f64).powf(1.2) + self.rng.unit() * 0.3).collect();
        let sum: f64 = weights.iter().sum();
        let mut shares: Vec<usize> = weights.iter().map(|w| (((budget - k) as f64 * w / sum) as usize) + 1).collect();
        let given: usize = shares.iter().sum();
        shares[0] += budget - given.min(budget);
        let mut used: Vec<String> = Vec::new();
        let mut leftover = 0;
        for share in shares {
            let (name, m) = self.child_name(module, &used);
            used.push(name.clone());
            stack.push(name);
            leftover = self.grow(stack, m, share + leftover);
            stack.pop();
        }
        leftover
    }

    fn child_name(&mut self, module: usize, used: &[String]) -> (String, usize) {
        for _ in 0..8 {
            let m = if self.rng.unit() < 0.7 { module } else { self.rng.zipf(self.funcs.len()) };
            let name = &self.funcs[m][self.rng.below(self.funcs[m].len())];
            if !used.contains(name) {
                return (name.clone(), m);
            }
        }
        let m = self.rng.zipf(self.funcs.len());
        let base = &self.funcs[m][self.rng.below(self.funcs[m].len())];
        (format!("{base}::{{{{closure}}}}#{}", used.len()), m)
    }
}

fn parse(c: &mut Criterion) {
    let real =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/example-perf-stacks-collapsed.txt")).unwrap();
    let mut lines = TreeShaped::generate(100_000);
    let tree_order = lines.concat();
    // Fisher-Yates with a fixed seed.
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in (1..lines.len()).rev() {
        lines.swap(i, rng.below(i + 1));
    }
    let shuffled = lines.concat();
    let worst = random(100_000);
    let mb = |v: &[u8]| v.len() as f64 / 1e6;
    let cases = [
        ("example-perf (646 KB)".to_string(), &real),
        (format!("tree-shaped 100k stacks, tree order ({:.0} MB)", mb(&tree_order)), &tree_order),
        (format!("tree-shaped 100k stacks, shuffled ({:.0} MB)", mb(&shuffled)), &shuffled),
        (format!("random 100k stacks ({:.0} MB)", mb(&worst)), &worst),
    ];
    let mut group = c.benchmark_group("folded parse + merge");
    group.sample_size(20);
    for (name, input) in cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| folded::parse(input, LineFormat::Counted, ParseLimits::default()).unwrap().node_count())
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
