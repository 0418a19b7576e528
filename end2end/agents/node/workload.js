// Burns CPU in a few named functions, some deeply recursive, under the Pyroscope Node agent's
// wall and heap profilers, with a wall label, and uploads to SERVER (a capture server).
// usage: node workload.js [SECONDS]
//   env PYROSCOPE_TARGET (default http://127.0.0.1:4052), FLUSH_INTERVAL_MS (default 10000)
'use strict';
const Pyroscope = require('@pyroscope/nodejs');

const seconds = Number(process.argv[2] ?? 35);

Pyroscope.init({
  serverAddress: process.env.PYROSCOPE_TARGET ?? 'http://127.0.0.1:4052',
  appName: 'agenttest.node',
  tags: { env: 'test', region: 'local' },
  // Documented option; the agent's default is 60 000 ms. 10 s is what the other agents use.
  flushIntervalMs: Number(process.env.FLUSH_INTERVAL_MS ?? 10000),
});
Pyroscope.start(); // wall (100 Hz) and heap (512 KiB sampling interval) profilers

function fibonacci(n) {
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

// A tree walk whose stacks go 40 frames deep through two mutually recursive functions.
function descendLeft(depth, acc) {
  if (depth === 0) return leafWork(acc);
  return descendRight(depth - 1, acc + depth);
}
function descendRight(depth, acc) {
  if (depth === 0) return leafWork(acc);
  return descendLeft(depth - 1, acc ^ depth);
}
function leafWork(seed) {
  let x = seed | 1;
  for (let i = 0; i < 20000; i++) x = (x * 1103515245 + 12345) & 0x7fffffff;
  return x;
}

function countPrimes(limit) {
  let count = 0;
  for (let n = 2; n < limit; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
    if (prime) count++;
  }
  return count;
}

// Allocations the heap profiler samples; some are kept so that the heap profile has live bytes.
const retained = [];
function buildRecords(n) {
  const records = [];
  for (let i = 0; i < n; i++) records.push({ id: i, name: `record-${i}`, tags: [i % 7, i % 11] });
  records.sort((a, b) => (a.tags[0] - b.tags[0]) || (b.id - a.id));
  if (retained.length < 200) retained.push(records);
  return records.length;
}

let sink = 0;
function carWork() {
  sink += fibonacci(24);
  sink += descendLeft(40, 1);
}
function bikeWork() {
  sink += countPrimes(4000);
  sink += buildRecords(1500);
}

// About half of one core: 50 ms of work, then 50 ms idle, so the wall profile also has idle time.
function round() {
  const until = Date.now() + 50;
  while (Date.now() < until) {
    Pyroscope.wrapWithLabels({ vehicle: 'car' }, carWork);
    Pyroscope.wrapWithLabels({ vehicle: 'bike' }, bikeWork);
  }
}
const timer = setInterval(round, 100);

setTimeout(async () => {
  clearInterval(timer);
  await Pyroscope.stop(); // uploads the last, partial wall profile
  console.log(`done (${sink})`);
}, seconds * 1000);
