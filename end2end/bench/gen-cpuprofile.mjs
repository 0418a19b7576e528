#!/usr/bin/env node
// Generates a V8 .cpuprofile with exactly N samples, for the time-order benchmark. Shaped like
// a real recording: the stack on CPU walks (most samples repeat the previous stack or change
// its top few frames, now and then a different task runs from near the root), a call tree of
// at most ~20k nodes with names reused across call sites, idle and GC stretches, samples about
// 100 µs apart with jitter. Deterministic for a given N and seed. About 12 bytes a sample.
//
// Usage: node gen-cpuprofile.mjs <samples> <out.cpuprofile> [seed]
import fs from "node:fs";

const N = Number(process.argv[2]);
const out = process.argv[3];
const seed = Number(process.argv[4] ?? 7);
if (!Number.isInteger(N) || N < 1 || !out) {
  console.error("usage: node gen-cpuprofile.mjs <samples> <out.cpuprofile> [seed]");
  process.exit(2);
}
const MAX_NODES = 20000;
const MAX_DEPTH = 40;

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
const zipf = (n) => Math.min(n - 1, Math.floor(n * rand() ** 3));

const WORDS = (
  "alloc buffer cache channel codec config conn context cursor decode dispatch encode engine " +
  "fetch filter flush frame handler hash header index json layout lexer map merge parse parser " +
  "pool query queue reader record render request resolve response router scan schedule schema " +
  "serialize session sink socket sort span stream table task timer token trace tree value worker"
).split(" ");
const VERBS = "run poll call next read write get put parse apply handle process visit emit collect build".split(" ");
const cap = (s) => s[0].toUpperCase() + s.slice(1);
const FUNCTIONS = Array.from({ length: 3000 }, (_, i) => ({
  functionName: rand() < 0.15 ? "" : `${pick(VERBS)}${cap(pick(WORDS))}${i % 7 === 0 ? cap(pick(WORDS)) : ""}`,
  url: `file:///srv/app/src/${pick(WORDS)}/${pick(WORDS)}.js`,
  lineNumber: Math.floor(rand() * 900),
  columnNumber: Math.floor(rand() * 60),
}));

// Nodes: id, callFrame, children. Id 1 is the root, with V8's special children.
const nodes = [];
const hits = [];
function node(frame, parent) {
  const id = nodes.length + 1;
  nodes.push({ id, callFrame: { scriptId: "1", ...frame }, children: [], parent });
  hits.push(0);
  if (parent) nodes[parent - 1].children.push(id);
  return id;
}
const special = (name) => ({ functionName: name, url: "", lineNumber: -1, columnNumber: -1 });
const ROOT = node(special("(root)"), 0);
const IDLE = node(special("(idle)"), ROOT);
const PROGRAM = node(special("(program)"), ROOT);
const GC = node(special("(garbage collector)"), ROOT);
// A few entry points, as an event loop has.
const entries = Array.from({ length: 6 }, () => node(pick(FUNCTIONS), ROOT));

function child(of) {
  const kids = nodes[of - 1].children;
  if (kids.length > 0 && (rand() < 0.85 || nodes.length >= MAX_NODES)) return kids[zipf(kids.length)];
  if (nodes.length >= MAX_NODES) return of;
  return node(FUNCTIONS[zipf(FUNCTIONS.length)], of);
}

const samples = new Uint32Array(N);
const deltas = new Uint32Array(N);
let stack = [ROOT, entries[0]];
for (let i = 0; i < N; i++) {
  const r = rand();
  if (stack.length <= 1 || r < 0.004) {
    // Another task: from an entry point, or idle / GC for a while.
    const q = rand();
    stack = q < 0.2 ? [ROOT, IDLE] : q < 0.25 ? [ROOT, GC] : q < 0.3 ? [ROOT, PROGRAM] : [ROOT, pick(entries)];
  } else if (r < 0.55) {
    // The same stack again.
  } else if (stack[1] === IDLE || stack[1] === GC || stack[1] === PROGRAM) {
    if (rand() < 0.05) stack = [ROOT, pick(entries)];
  } else {
    // Return from a few frames, then call a few.
    const pop = Math.min(stack.length - 2, Math.floor(rand() ** 2 * 4));
    stack.length -= pop;
    const push = Math.floor(rand() * 3);
    for (let k = 0; k < push && stack.length < MAX_DEPTH; k++) stack.push(child(stack[stack.length - 1]));
  }
  const top = stack[stack.length - 1];
  samples[i] = top;
  hits[top - 1]++;
  deltas[i] = i === 0 ? 0 : 80 + Math.floor(rand() * 40);
}

const fd = fs.openSync(out, "w");
const write = (s) => fs.writeSync(fd, s);
write('{"nodes":[');
nodes.forEach((n, i) => {
  const { parent, ...rest } = n;
  write((i ? "," : "") + JSON.stringify({ ...rest, hitCount: hits[i] }));
});
const startTime = 1_000_000_000;
const endTime = startTime + deltas.reduce((a, b) => a + b, 0);
write(`],"startTime":${startTime},"endTime":${endTime},"samples":[`);
const CHUNK = 100000;
for (let i = 0; i < N; i += CHUNK) {
  write((i ? "," : "") + Array.from(samples.subarray(i, i + CHUNK)).join(","));
}
write('],"timeDeltas":[');
for (let i = 0; i < N; i += CHUNK) {
  write((i ? "," : "") + Array.from(deltas.subarray(i, i + CHUNK)).join(","));
}
write("]}\n");
fs.closeSync(fd);
console.error(`${out}: ${N} samples, ${nodes.length} nodes, ${fs.statSync(out).size} bytes`);
