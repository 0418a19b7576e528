#!/usr/bin/env node
// Browser half of the time-order benchmark (run by time-order.sh, which starts Kiln).
// Plain node + playwright-core's chromium (Debian's /usr/bin/chromium), headless, 1280×800.
//
//   node measure-time-order.mjs --kiln URL --reps N [--out results.json] [--trace trace.json] file.cpuprofile
//
// Opens the file on the Open page (as a user picking it), switches to Time order, then times
// N of each input, from the input event (event.timeStamp) to the first animation frame whose
// canvas pixels differ (performance.now() in that frame's callback):
//   wheel zoom: alternately in and out by one wheel notch (100 px: half or twice the time
//               shown), at pointer positions spread across the canvas, from the whole profile;
//   drag:       mousemove events of a drag that pans 40 px each;
//   key pan:    ArrowRight / ArrowLeft, each a tenth of the view;
// then the flamegraph of the same file: click-to-zoom on a row-1 frame and a search, for
// comparison. Each reported as median / p95 / max, and the median from when the page's
// listeners got the event (what the browser's input pipeline took is the difference). `--trace` records Chromium's tracing
// (devtools.timeline and the V8 sampling profiler) over the time-order inputs.
import fs from "node:fs";
import path from "node:path";
import { armChange, changed, median, settle, args, chromium, option } from "./probes.mjs";

const KILN = option("kiln");
const OUT = option("out", "");
const TRACE = option("trace", "");
const REPS = Number(option("reps", "40"));
const CAP_MS = Number(option("cap-ms", "300000"));
const FILE = args[0];
if (!KILN || !FILE) {
  console.error("usage: measure-time-order.mjs --kiln URL [--reps N] [--out FILE] [--trace FILE] file.cpuprofile");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

const p95 = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)] : NaN;
};
// An input that changed no pixel within 10 s (a zoom out at the whole profile) counts as none.
const stats = (xs) => {
  const done = xs.filter(Number.isFinite);
  return { median: median(done), p95: p95(done), max: Math.max(...done), n: done.length, unchanged: xs.length - done.length, all: xs };
};

// Times `act` REPS-fold: `event` on `target` to the first frame where `canvas` differs.
async function timed(target, event, canvas, act) {
  const out = [];
  const fromDispatch = [];
  for (let i = 0; i < REPS; i++) {
    await settle(page);
    await armChange(page, target, event, canvas);
    await act(i);
    const c = await changed(page);
    out.push(c.timeout ? NaN : c.ms);
    fromDispatch.push(c.timeout ? NaN : c.fromDispatch);
  }
  const s = { ...stats(out), fromDispatch: stats(fromDispatch) };
  const f = (x) => x?.toFixed(1);
  console.error(
    `${target} ${event}: median ${f(s.median)} p95 ${f(s.p95)} max ${f(s.max)} ms; ` +
      `from dispatch median ${f(s.fromDispatch.median)} p95 ${f(s.fromDispatch.p95)} ms`,
  );
  return s;
}

const r = { file: path.basename(FILE), bytes: fs.statSync(FILE).size, reps: REPS };
const t0 = Date.now();
await page.goto(`${KILN}/open`);
await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
await page.getByLabel("Profile file").setInputFiles(FILE);
await page.locator(".flame-status", { hasText: / in total$/ }).waitFor({ timeout: CAP_MS });
r.flamegraphShownMs = Date.now() - t0;
// The time order is fetched once the flamegraph shows: wait for it, then switch.
await page.locator(".view-toggles:not([hidden])").waitFor({ timeout: CAP_MS });
const toggle = page.getByRole("button", { name: "Time order" });
const CHART = "canvas.time-order-canvas";
await page.waitForFunction(() => document.querySelector(".time-order-status")?.textContent !== "Reading the time order…", null, {
  timeout: CAP_MS,
});
const timedStatus = await page.locator(".time-order-status").textContent();
if (timedStatus !== "") throw new Error(`no time order: ${timedStatus}`);
r.timeOrderReadyMs = Date.now() - t0;
await armChange(page, ".view-toggles button:last-child", "click", CHART);
await toggle.click();
r.toggleToPaint = (await changed(page)).ms;
r.range = await page.locator(".time-order-range").textContent();
const chart = page.locator(CHART);
const box = await chart.boundingBox();
const y = box.y + 9;

const cdp = await context.newCDPSession(page);
if (TRACE) {
  await cdp.send("Tracing.start", {
    transferMode: "ReturnAsStream",
    traceConfig: {
      includedCategories: [
        "devtools.timeline",
        "disabled-by-default-devtools.timeline",
        "v8.execute",
        "disabled-by-default-v8.cpu_profiler",
        "input",
        "latencyInfo",
        "benchmark",
      ],
    },
  });
}

// Wheel: in REPS/2 times, then out as many, the pointer spread across the canvas.
const xAt = (i) => box.x + box.width * (0.1 + 0.8 * (((i * 37) % 100) / 100));
r.wheelZoom = await timed(CHART, "wheel", CHART, async (i) => {
  await page.mouse.move(xAt(i), y);
  await page.mouse.wheel(0, i < REPS / 2 ? -100 : 100);
});
// Zoomed in 5 notches (1/32 of the profile) for the pans, so that a pan moves something.
await chart.focus();
await page.keyboard.press("0");
for (let i = 0; i < 5; i++) await page.keyboard.press("+");
await page.mouse.move(box.x + box.width / 2, y);
await page.mouse.down();
await page.mouse.move(box.x + box.width / 2 - 10, y);
let dragX = box.x + box.width / 2 - 10;
r.drag = await timed(CHART, "mousemove", CHART, async (i) => {
  dragX += i % 20 < 10 ? -40 : 40;
  await page.mouse.move(dragX, y);
});
await page.mouse.up();
await chart.focus();
r.keyPan = await timed(CHART, "keydown", CHART, async (i) => {
  await page.keyboard.press(i % 20 < 10 ? "ArrowRight" : "ArrowLeft");
});
if (TRACE) {
  const done = new Promise((resolve) => cdp.once("Tracing.tracingComplete", resolve));
  await cdp.send("Tracing.end");
  const { stream } = await done;
  const fd = fs.openSync(TRACE, "w");
  for (;;) {
    const { data, eof, base64Encoded } = await cdp.send("IO.read", { handle: stream, size: 1 << 20 });
    fs.writeSync(fd, base64Encoded ? Buffer.from(data, "base64") : data);
    if (eof) break;
  }
  fs.closeSync(fd);
  await cdp.send("IO.close", { handle: stream });
}

// The flamegraph of the same file, for comparison.
await page.getByRole("button", { name: "Flamegraph" }).click();
const FLAME = "canvas.flame-canvas:not(.time-order-canvas)";
r.flameZoom = await timed(FLAME, "click", FLAME, async () => {
  // Measured each time: the zoom path shown above the graph after the first zoom moves it.
  const fbox = await page.locator(FLAME).boundingBox();
  await page.mouse.click(fbox.x + fbox.width * 0.15, fbox.y + 27);
  // Back to the root for the next one (not timed).
  await settle(page);
  await page.locator(".breadcrumb button", { hasText: "all" }).click();
});
const input = 'input[aria-label="Search functions"]';
r.flameSearch = await timed(input, "input", FLAME, async (i) => {
  await page.locator(input).fill(i % 2 ? "parse" : "render");
});
r.errors = errors;
await browser.close();
if (OUT) fs.writeFileSync(OUT, JSON.stringify(r, null, 2));

const ms = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : "–");
const row = (name, s) =>
  console.log(`| ${name} | ${ms(s.median)} | ${ms(s.p95)} | ${ms(s.max)} | ${ms(s.fromDispatch.median)} | ${s.n} |`);
console.log(`${r.file}: ${(r.bytes / 1048576).toFixed(1)} MB; ${r.range}`);
console.log(`flamegraph shown ${(r.flamegraphShownMs / 1000).toFixed(1)} s after picking the file, time order ready ${(r.timeOrderReadyMs / 1000).toFixed(1)} s, toggle → painted ${ms(r.toggleToPaint)}`);
console.log("| input → next painted frame | median | p95 | max | median from dispatch | n |");
console.log("|---|---|---|---|---|---|");
row("time order: wheel zoom", r.wheelZoom);
row("time order: drag (per mousemove)", r.drag);
row("time order: key pan", r.keyPan);
row("flamegraph: click zoom", r.flameZoom);
row("flamegraph: search", r.flameSearch);
if (errors.length) console.log(`page errors: ${errors.join("; ")}`);
