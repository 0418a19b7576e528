#!/usr/bin/env node
// Generates a folded profile ("frame;frame;… count" per line) with exactly N unique stacks,
// shaped like a real one: a call tree with shared prefixes, long single-child chains, skewed
// fan-out, function names reused across call sites, Rust/Go/Java-style names, depth ≤ 64,
// counts 1..1000 skewed towards small. Deterministic for a given N and seed.
//
// Usage: node gen-folded.mjs <stacks> <out.folded> [seed]
import fs from "node:fs";

const N = Number(process.argv[2]);
const out = process.argv[3];
const seed = Number(process.argv[4] ?? 42);
if (!Number.isInteger(N) || N < 1 || !out) {
  console.error("usage: node gen-folded.mjs <stacks> <out.folded> [seed]");
  process.exit(2);
}
const MAX_DEPTH = 64;

// mulberry32: small, fast, deterministic.
let state = (seed ^ N) >>> 0;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
// Index in 0..n-1, small indices far more likely (roughly Zipf).
const zipf = (n) => Math.min(n - 1, Math.floor(n * rand() ** 3));

// ---- vocabulary ---------------------------------------------------------------------------
const WORDS = (
  "alloc buffer cache channel codec config conn context cursor decode dispatch encode engine " +
  "executor fetch filter flush frame handler hash header index io iter join json kernel layout " +
  "lexer lock log map merge metrics net parse parser pool proto query queue reader record " +
  "registry render request resolve response router runtime scan schedule schema segment " +
  "serialize session shard sink snapshot socket sort span storage stream sync table task " +
  "timer token trace tree txn util validate value wal worker writer"
).split(" ");
const VERBS = (
  "run poll call next read write get put insert remove flush encode decode parse apply handle " +
  "process visit serve spawn send recv load store lookup push pop drain fill grow resize " +
  "compare hash update commit rollback open close start finish step emit collect build"
).split(" ");
const TYPES = (
  "Builder Buffer Cache Client Codec Conn Context Cursor Decoder Driver Encoder Engine Executor " +
  "Handler Index Iter Lexer Manager Map Parser Pool Reader Registry Request Response Router " +
  "Scanner Scheduler Segment Server Session Shard Sink Snapshot Stream Table Task Tree Worker Writer"
).split(" ");
const cap = (s) => s[0].toUpperCase() + s.slice(1);

// A module is a family of functions in one language's naming style.
function makeModule(i) {
  const lang = rand();
  const a = pick(WORDS);
  const b = pick(WORDS);
  if (lang < 0.5) {
    const crate = pick(["kiln", "tokio", "hyper", "serde_json", "axum", "std", "core", "alloc", "regex", "rayon"]);
    const path = `${crate}::${a}::${b}`;
    return { lang: "rust", name: (t, v) => (rand() < 0.6 ? `${path}::${t}::${v}` : `${path}::${v}_${pick(WORDS)}`) };
  }
  if (lang < 0.75) {
    const root = pick(["github.com/acme/shop", "net/http", "runtime", "google.golang.org/grpc", "encoding/json"]);
    const path = `${root}/${a}${i % 7 ? "" : "/" + b}`;
    return {
      lang: "go",
      name: (t, v) => (rand() < 0.5 ? `${path}.(*${t}).${cap(v)}` : `${path}.${v}${cap(pick(WORDS))}`),
    };
  }
  const root = pick(["org/apache/kafka", "com/acme/orders", "io/netty", "java/util/concurrent", "org/springframework"]);
  const path = `${root}/${a}/${b}`;
  return { lang: "java", name: (t, v) => `${path}/${t}.${v}${rand() < 0.3 ? "$lambda$" + (1 + zipf(20)) : ""}` };
}

// Enough distinct functions to look real: a 1M-stack profile has tens of thousands.
const MODULES = Math.max(40, Math.min(2000, Math.round(N / 400)));
const PER_MODULE = 24;
const modules = [];
const funcs = []; // funcs[m] = names of module m
for (let m = 0; m < MODULES; m++) {
  const mod = makeModule(m);
  modules.push(mod);
  const names = new Set();
  for (let k = 0; k < PER_MODULE * 3 && names.size < PER_MODULE; k++) names.add(mod.name(pick(TYPES), pick(VERBS)));
  funcs.push([...names]);
}
const ROOTS = [
  ["std::rt::lang_start", "main", "kiln::serve"],
  ["java/lang/Thread.run", "java/util/concurrent/ThreadPoolExecutor$Worker.run"],
  ["runtime.goexit", "runtime.main", "main.main"],
  ["tokio::runtime::task::harness::Harness::poll", "tokio::runtime::task::core::Core::poll"],
  ["[kernel.kallsyms]", "entry_SYSCALL_64_after_hwframe", "do_syscall_64"],
  ["clone3", "start_thread", "std::sys::pal::unix::thread::Thread::new::thread_start"],
];

// ---- tree walk --------------------------------------------------------------------------------
const fd = fs.openSync(out, "w");
let buf = [];
let bufLen = 0;
let written = 0;
let maxDepth = 0;
let samples = 0;
function emit(stack) {
  const count = 1 + Math.floor(999 * rand() ** 6);
  const line = `${stack.join(";")} ${count}\n`;
  buf.push(line);
  bufLen += line.length;
  written++;
  samples += count;
  maxDepth = Math.max(maxDepth, stack.length);
  if (bufLen > 1 << 22) flush();
}
function flush() {
  fs.writeSync(fd, buf.join(""));
  buf = [];
  bufLen = 0;
}

// Children of a frame: mostly the same module (a call inside a library), sometimes another.
function childName(mod, used) {
  for (let tries = 0; tries < 8; tries++) {
    const m = rand() < 0.7 ? mod : zipf(MODULES);
    const name = pick(funcs[m]);
    if (!used.has(name)) return [name, m];
  }
  // Many siblings from one module: closures and generics, as real profiles have.
  const m = zipf(MODULES);
  let name;
  do name = `${pick(funcs[m])}::{{closure}}#${used.size}`;
  while (used.has(name));
  return [name, m];
}

// Emits exactly `budget` unique stacks under `stack` (which is itself not yet emitted).
function grow(stack, mod, budget) {
  const depth = stack.length;
  if (budget === 1 || depth >= MAX_DEPTH) {
    emit(stack);
    return budget - 1; // only 0 unless MAX_DEPTH cut it short; the caller spreads the rest
  }
  // Some frames do work of their own besides calling others.
  if (rand() < 0.12) {
    emit(stack);
    budget--;
  }
  // Long single-child chains (wrappers, trait objects, futures), then fan-out.
  let k;
  const r = rand();
  if (r < 0.55 && depth < MAX_DEPTH - 8) k = 1;
  else if (r < 0.8) k = 2 + Math.floor(rand() * 3);
  else k = 5 + zipf(40);
  if (depth >= MAX_DEPTH - 1) k = budget; // last row: every remaining stack is a leaf sibling
  k = Math.min(k, budget);
  // Skewed split of the budget, each child at least one stack.
  const weights = [];
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const w = 1 / (i + 1) ** 1.2 + rand() * 0.3;
    weights.push(w);
    sum += w;
  }
  const shares = weights.map((w) => Math.max(1, Math.floor(((budget - k) * w) / sum) + 1));
  let rest = budget - shares.reduce((a, b) => a + b, 0);
  for (let i = 0; rest !== 0; i = (i + 1) % k) {
    if (rest > 0) {
      shares[i]++;
      rest--;
    } else if (shares[i] > 1) {
      shares[i]--;
      rest++;
    }
  }
  const used = new Set();
  let leftover = 0;
  for (let i = 0; i < k; i++) {
    const [name, m] = childName(mod, used);
    used.add(name);
    stack.push(name);
    leftover = grow(stack, m, shares[i] + leftover);
    stack.pop();
  }
  return leftover;
}

// Top level: a few thread roots, the biggest share to the first.
const rootShares = [0.45, 0.2, 0.15, 0.1, 0.06, 0.04].map((s) => Math.max(1, Math.floor(N * s)));
rootShares[0] += N - rootShares.reduce((a, b) => a + b, 0);
let leftover = 0;
for (let i = 0; i < ROOTS.length; i++) {
  if (rootShares[i] <= 0) continue;
  leftover = grow([...ROOTS[i]], zipf(MODULES), rootShares[i] + leftover);
}
flush();
fs.closeSync(fd);
if (leftover !== 0 || written !== N) {
  console.error(`generator bug: wrote ${written} stacks for ${N} (leftover ${leftover})`);
  process.exit(1);
}
const bytes = fs.statSync(out).size;
console.error(`${out}: ${written} stacks, max depth ${maxDepth}, ${samples} samples, ${(bytes / 1e6).toFixed(1)} MB`);
