#!/usr/bin/env node
// Browser half of the benchmark (run by run.sh, which starts Kiln and uploads the profiles).
// Plain node + playwright-core's chromium (Debian's /usr/bin/chromium), headless, 1280×800.
//
//   node measure.mjs --kiln URL --speedscope DIR --out results.json  label=app=file.folded …
//
// For each profile:
//   Kiln  first paint: navigation start → first animation frame where the flamegraph canvas
//                      has ink and .flame-status is empty (performance.now(), page clock);
//         zoom:        click on a row-1 frame (event.timeStamp) → first animation frame whose
//                      canvas pixels differ (rAF timestamp); median of several;
//         search:      input event on "Search functions" → same; median of several;
//         heap:        performance.memory.usedJSHeapSize (precise) and CDP Runtime.getHeapUsage,
//                      plus the wasm linear memory (wasm-bindgen's exports.memory);
//   speedscope first paint: index.html#profileURL=… → first frame where one of its canvases
//                      has ink, capped at 60 s; a crash or timeout is reported as such.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { armChange, changed, median, settle, args, chromium, option } from "./probes.mjs";

const KILN = option("kiln");
const SPEEDSCOPE = option("speedscope", "");
const OUT = option("out", "");
const CAP_MS = Number(option("cap-ms", "60000"));
const REPS = Number(option("reps", "5"));
const profiles = args.map((a) => {
  const [label, app, file] = a.split("=");
  return { label, app, file };
});
if (!KILN || profiles.length === 0) {
  console.error("usage: measure.mjs --kiln URL [--speedscope DIR] [--out FILE] label=app=file …");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
  ],
});

// Installed before any page script: a first-paint watcher driven by requestAnimationFrame,
// plus counters on the 2D calls the flamegraph makes (a counter costs nothing next to them).
const PAGE_PROBES = () => {
  const w = window;
  w.__bench = { fillRect: 0, fillText: 0, fetches: [] };
  const proto = CanvasRenderingContext2D.prototype;
  for (const name of ["fillRect", "fillText"]) {
    const orig = proto[name];
    proto[name] = function (...a) {
      w.__bench[name]++;
      return orig.apply(this, a);
    };
  }
  const origFetch = w.fetch;
  w.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    const rec = { url: String(url).slice(0, 80), start: performance.now() };
    w.__bench.fetches.push(rec);
    return origFetch.call(this, input, init).then((r) => {
      rec.headers = performance.now();
      // A tree answer says whether it is whole or only the frames the first paint shows.
      rec.part = r.headers.get("x-kiln-tree-part");
      const ab = r.arrayBuffer.bind(r);
      r.arrayBuffer = () =>
        ab().then((b) => {
          rec.body = performance.now();
          rec.bytes = b.byteLength;
          return b;
        });
      return r;
    });
  };
};

// Ink in a canvas region (alpha ≠ 0), or -1 when it has no 2D context (WebGL).
const INK = `(c, h) => {
  if (!c.width || !c.height) return 0;
  const ctx = c.getContext("2d");
  if (!ctx) return -1;
  const d = ctx.getImageData(0, 0, c.width, Math.min(c.height, h)).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 16) if (d[i] !== 0) n++;
  return n;
}`;

async function waitFirstPaint(page, selector, extraCheck, capMs) {
  return page.evaluate(
    ({ selector, extraCheck, capMs, INK }) =>
      new Promise((resolve) => {
        const ink = eval(INK);
        const ok = extraCheck ? eval(extraCheck) : () => true;
        const tick = (ts) => {
          const now = performance.now();
          for (const c of document.querySelectorAll(selector)) {
            if (ok() && ink(c, 60) > 50) return resolve({ ms: now, frame: ts });
          }
          if (now > capMs) return resolve({ timeout: true, ms: now });
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }),
    { selector, extraCheck, capMs, INK },
  );
}

async function heap(page, cdp) {
  await cdp.send("HeapProfiler.collectGarbage").catch(() => {});
  const usage = await cdp.send("Runtime.getHeapUsage");
  const inPage = await page.evaluate(async () => {
    let wasm = null;
    try {
      const m = await import("/pkg/kiln.js");
      const exports = await m.default(); // already initialised: returns the same instance
      wasm = exports.memory.buffer.byteLength;
    } catch (e) {
      wasm = null;
    }
    return { used: performance.memory?.usedJSHeapSize ?? null, wasm };
  });
  return { jsUsed: inPage.used, cdpUsed: usage.usedSize, cdpTotal: usage.totalSize, wasm: inPage.wasm };
}

async function kiln(p) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  let crashed = false;
  page.on("crash", () => (crashed = true));
  await page.addInitScript(PAGE_PROBES);
  const cdp = await context.newCDPSession(page);
  const url = `${KILN}/explore?query=${encodeURIComponent(p.app)}&from=now-1h&until=now`;
  const r = { label: p.label };
  try {
    await page.goto(url, { waitUntil: "commit", timeout: CAP_MS });
    const first = await waitFirstPaint(
      page,
      "canvas.flame-canvas",
      `() => { const s = document.querySelector(".flame-status"); return s && s.textContent === ""; }`,
      CAP_MS,
    );
    if (first.timeout) throw new Error(`no flamegraph within ${CAP_MS} ms`);
    r.firstPaint = first.ms;
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      const wasm = performance.getEntriesByType("resource").find((e) => e.name.includes("kiln_bg.wasm"));
      return {
        htmlResponseEnd: n.responseEnd,
        domContentLoaded: n.domContentLoadedEventEnd,
        wasmFetched: wasm?.responseEnd,
        fetches: window.__bench.fetches,
        fillRect: window.__bench.fillRect,
        fillText: window.__bench.fillText,
      };
    });
    r.breakdown = nav;
    // The first paint may come from only the frames the window shows; the explorer then
    // fetches the whole tree, which zooms and searches are timed on.
    const whole = await page.waitForFunction(
      // (A server from before the header sends every tree whole.)
      () => window.__bench.fetches.find((f) => f.url.includes("format=tree") && f.part !== "visible" && f.body)?.body,
      null,
      { timeout: CAP_MS },
    );
    r.wholeTreeLoaded = await whole.jsonValue();
    r.heapAfterPaint = await heap(page, cdp);

    const canvas = page.locator("canvas.flame-canvas");
    const box = await canvas.boundingBox();
    const zooms = [];
    const unzooms = [];
    for (let i = 0; i < REPS; i++) {
      await settle(page);
      await armChange(page, "canvas.flame-canvas", "click");
      // Row 1 (y = 18 + 9): the biggest thread root sits on the left.
      await page.mouse.click(box.x + box.width * 0.15, box.y + 27);
      const z = await changed(page);
      zooms.push(z.ms);
      await settle(page);
      await armChange(page, ".breadcrumb li:first-child button", "click");
      await page.locator(".breadcrumb button", { hasText: "all" }).click();
      unzooms.push((await changed(page)).ms);
    }
    r.zoom = median(zooms);
    r.unzoom = median(unzooms);
    r.zooms = zooms;

    const input = page.locator('input[aria-label="Search functions"]');
    const searches = [];
    const clears = [];
    for (let i = 0; i < REPS; i++) {
      await settle(page);
      await armChange(page, 'input[aria-label="Search functions"]', "input");
      await input.fill(i % 2 ? "parse" : "decode");
      const c = await changed(page);
      searches.push(c.ms);
      await settle(page);
      await armChange(page, 'input[aria-label="Search functions"]', "input");
      await input.fill("");
      clears.push((await changed(page)).ms);
    }
    r.search = median(searches);
    r.searchClear = median(clears);
    r.searches = searches;
    await settle(page);
    r.heapAfterUse = await heap(page, cdp);
  } catch (e) {
    r.error = crashed ? "page crashed" : String(e.message ?? e).split("\n")[0];
  }
  await context.close().catch(() => {});
  return r;
}

// speedscope's release build plus the profile, from a throwaway static server.
function staticServer(root, profile) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };
  const server = http.createServer((req, res) => {
    const u = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = u === "/profile.folded" ? profile : path.join(root, path.normalize(u === "/" ? "/index.html" : u));
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, {
        "content-type": types[path.extname(file)] ?? "application/octet-stream",
        "content-length": st.size,
        "access-control-allow-origin": "*",
      });
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function speedscope(p) {
  const r = { label: p.label };
  const server = await staticServer(SPEEDSCOPE, p.file);
  const base = `http://127.0.0.1:${server.address().port}`;
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  let crashed = false;
  page.on("crash", () => (crashed = true));
  const cdp = await context.newCDPSession(page);
  try {
    await page.goto(`${base}/index.html#profileURL=${encodeURIComponent(`${base}/profile.folded`)}`, {
      waitUntil: "commit",
      timeout: CAP_MS,
    });
    const first = await Promise.race([
      waitFirstPaint(page, "canvas", null, CAP_MS),
      new Promise((resolve) => page.on("crash", () => resolve({ crash: true }))),
    ]);
    if (first.crash) r.error = "page crashed";
    else if (first.timeout) r.error = `timeout (${CAP_MS / 1000} s)`;
    else {
      r.firstPaint = first.ms;
      await cdp.send("HeapProfiler.collectGarbage").catch(() => {});
      r.heap = (await cdp.send("Runtime.getHeapUsage")).usedSize;
    }
  } catch (e) {
    r.error = crashed ? "page crashed" : String(e.message ?? e).split("\n")[0];
  }
  await context.close().catch(() => {});
  server.close();
  return r;
}

const results = [];
for (const p of profiles) {
  const k = await kiln(p);
  console.error(`kiln ${p.label}: ${JSON.stringify(k)}`);
  const s = SPEEDSCOPE ? await speedscope(p) : { error: "not run" };
  console.error(`speedscope ${p.label}: ${JSON.stringify(s)}`);
  results.push({ label: p.label, bytes: fs.statSync(p.file).size, kiln: k, speedscope: s });
}
await browser.close();
if (OUT) fs.writeFileSync(OUT, JSON.stringify(results, null, 2));

const ms = (x) => (x === undefined || x === null || Number.isNaN(x) ? "–" : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
const mb = (x) => (x == null ? "–" : `${(x / 1048576).toFixed(1)} MB`);
console.log("| stacks | folded | Kiln first paint | speedscope first paint | speedscope / Kiln | Kiln zoom | Kiln search | Kiln JS heap | Kiln wasm memory |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const { label, bytes, kiln: k, speedscope: s } of results) {
  const ratio = k.firstPaint && s.firstPaint ? `${(s.firstPaint / k.firstPaint).toFixed(1)}×` : "–";
  const h = k.heapAfterUse ?? k.heapAfterPaint;
  console.log(
    `| ${label} | ${mb(bytes)} | ${k.error ? k.error : ms(k.firstPaint)} | ${s.error ? s.error : ms(s.firstPaint)} | ${ratio} | ` +
      `${ms(k.zoom)} | ${ms(k.search)} | ${mb(h?.jsUsed)} | ${mb(h?.wasm)} |`,
  );
}
