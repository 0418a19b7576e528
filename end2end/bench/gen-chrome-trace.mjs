#!/usr/bin/env node
// Generates a Chrome trace (Trace Event format, `{"traceEvents": [...]}`) of about SIZE
// megabytes, for the Open page's big-file measurement (server/docs/performance.md, "Open page:
// a 100 MB Chrome trace"). Shaped like a performance-panel recording: metadata naming 2
// processes and 6 threads, then complete (`X`) events nested up to 12 deep on each thread with
// names from a pool of a few hundred, each ~200 bytes as Chrome writes them (args included).
// Written in chunks, never held whole. Deterministic for a given size and seed.
//
// Usage: node gen-chrome-trace.mjs <megabytes> <out.json> [seed]
import fs from "node:fs";

const MB = Number(process.argv[2]);
const out = process.argv[3];
const seed = Number(process.argv[4] ?? 7);
if (!(MB > 0) || !out) {
  console.error("usage: node gen-chrome-trace.mjs <megabytes> <out.json> [seed]");
  process.exit(2);
}
const target = Math.round(MB * 1024 * 1024);

// mulberry32: small, fast, deterministic.
let state = seed >>> 0;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const WORDS = (
  "alloc buffer cache channel codec config conn context cursor decode dispatch encode engine " +
  "fetch filter flush frame handler hash header index json layout lexer map merge parse parser " +
  "pool query queue reader record render request resolve response router scan schedule schema"
).split(" ");
const NAMES = [];
for (const a of WORDS) for (const b of ["Run", "Poll", "Update", "Paint", "Parse", "Call", "Dispatch"]) NAMES.push(a + b);
const pick = () => NAMES[Math.floor(NAMES.length * rand() ** 2)];

const threads = [
  [1, 1, "CrBrowserMain"],
  [2, 11, "CrRendererMain"],
  [2, 12, "Compositor"],
  [2, 13, "ThreadPoolForegroundWorker"],
  [2, 14, "ThreadPoolForegroundWorker"],
  [2, 15, "Chrome_ChildIOThread"],
];
const fd = fs.openSync(out, "w");
let written = 0;
let chunk = [];
let chunkBytes = 0;
const emit = (event) => {
  const text = JSON.stringify(event) + ",\n";
  chunk.push(text);
  chunkBytes += text.length;
  if (chunkBytes > 1 << 20) flush();
};
const flush = () => {
  const text = chunk.join("");
  fs.writeSync(fd, text);
  written += Buffer.byteLength(text);
  chunk = [];
  chunkBytes = 0;
};
fs.writeSync(fd, '{"traceEvents":[\n');
for (const [pid, tid, name] of threads) {
  emit({ pid, tid, ts: 0, ph: "M", cat: "__metadata", name: "thread_name", args: { name } });
}
// Tasks repeat, as a page's do: 300 task shapes (trees of nested calls up to 12 deep), each
// run many times with its own timings, so that the call tree stays ~20k nodes however big the
// file grows. Each thread's clock is in µs.
const shape = (depth) => {
  const children = depth < 12 && rand() < 0.75 ? 1 + Math.floor(rand() * 2.2) : 0;
  return { name: pick(), children: Array.from({ length: children }, () => shape(depth + 1)) };
};
const SHAPES = Array.from({ length: 300 }, () => shape(0));
const clocks = threads.map(() => 1000);
const task = (pid, tid, ts, node, depth) => {
  let t = ts + 1 + Math.floor(rand() * 5);
  for (const child of node.children) {
    t = task(pid, tid, t, child, depth + 1) + Math.floor(rand() * 3);
  }
  const dur = t - ts + 1 + Math.floor(rand() * 20);
  emit({ args: { data: { frame: "F" + (tid * 7919 + depth), priority: 2 } }, cat: "devtools.timeline",
    dur, name: node.name, ph: "X", pid, tdur: dur - 1, tid, ts, tts: ts - 900 });
  return ts + dur;
};
while (written + chunkBytes < target) {
  const i = Math.floor(rand() * threads.length);
  const [pid, tid] = threads[i];
  const which = SHAPES[Math.floor(SHAPES.length * rand() ** 2)];
  clocks[i] = task(pid, tid, clocks[i], which, 0) + Math.floor(rand() * 50);
}
// Chrome ends its traces without the closing bracket at times; this one closes them.
chunk.push('{"pid":1,"tid":1,"ts":0,"ph":"M","cat":"__metadata","name":"process_name","args":{"name":"Browser"}}\n]}\n');
flush();
fs.closeSync(fd);
console.log(`${out}: ${written} bytes`);
