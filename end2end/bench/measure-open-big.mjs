#!/usr/bin/env node
// The Open page on a big file (server/docs/performance.md, "Open page: a 100 MB Chrome trace"):
// Debian's chromium through playwright-core, headless, against a running Kiln.
//
//   node measure-open-big.mjs --kiln URL --file trace.json [--runs 3]
//
// Per run, in a fresh page:
//   painted: the file input's `change` event → the first animation frame where the flamegraph
//            canvas has ink and the status says "… in total" (performance.now(), page clock);
//   peak:    the renderer process's peak resident memory (VmHWM in /proc, its pid from CDP
//            SystemInfo.getProcessInfo), next to its resident memory before the file was
//            picked; and CDP Performance.getMetrics' JS heap, polled every 50 ms (its maximum).
import fs from "node:fs";
import { chromium, option } from "./probes.mjs";

const kiln = option("kiln");
const file = option("file");
const runs = Number(option("runs", 3));
if (!kiln || !file) {
  console.error("usage: node measure-open-big.mjs --kiln URL --file trace.json [--runs 3]");
  process.exit(2);
}
const size = fs.statSync(file).size;
const mib = (b) => `${(b / 1048576).toFixed(0)} MiB`;
const status = (pid, key) => {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-precise-memory-info", "--renderer-process-limit=1"],
});
const results = [];
for (let run = 0; run < runs; run++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  await page.goto(`${kiln}/open`);
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  const info = await (await browser.newBrowserCDPSession()).send("SystemInfo.getProcessInfo");
  const renderers = info.processInfo.filter((p) => p.type === "renderer").map((p) => p.id);
  const before = Math.max(...renderers.map((pid) => status(pid, "VmRSS")));
  await page.evaluate(() => {
    const input = document.querySelector('input[type="file"]');
    window.__painted = new Promise((resolve) => {
      input.addEventListener("change", () => {
        const start = performance.now();
        const tick = () => {
          const canvas = document.querySelector("canvas.flame-canvas");
          const text = document.querySelector(".flame-status")?.textContent ?? "";
          if (/in total$/.test(text) && canvas && canvas.width > 0) {
            const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, Math.min(canvas.height, 40)).data;
            let ink = false;
            for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) { ink = true; break; }
            if (ink) return resolve({ ms: performance.now() - start, text });
          }
          if (/^Could not/.test(text)) return resolve({ error: text });
          if (performance.now() - start > 120000) return resolve({ error: "timeout" });
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }, { once: true, capture: true });
    });
  });
  let heapPeak = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const { metrics } = await cdp.send("Performance.getMetrics");
      const used = metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0;
      heapPeak = Math.max(heapPeak, used);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await page.getByLabel("Profile file").setInputFiles(file);
  const painted = await page.evaluate(() => window.__painted);
  polling = false;
  await poll;
  const peak = Math.max(...renderers.map((pid) => status(pid, "VmHWM")));
  results.push({ run, painted, before, peak, heapPeak });
  console.log(JSON.stringify({ run, ...painted, rendererBefore: mib(before), rendererPeak: mib(peak),
    peakOverFile: (peak / size).toFixed(2), jsHeapPeak: mib(heapPeak) }));
  await context.close();
}
await browser.close();
const ms = results.map((r) => r.painted.ms).filter(Number.isFinite).sort((a, b) => a - b);
console.log(`file ${mib(size)}; painted median ${ms.length ? ms[Math.floor((ms.length - 1) / 2)].toFixed(0) : "-"} ms ` +
  `(${ms.map((m) => m.toFixed(0)).join(", ")}); renderer peak max ${mib(Math.max(...results.map((r) => r.peak)))}`);
