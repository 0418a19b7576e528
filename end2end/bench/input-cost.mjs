#!/usr/bin/env node
// What a zoom and a search cost the page, from its handling of the input to the next frame,
// in CPU time: Chromium's trace of the renderer's main thread (`EventDispatch` of each click or
// input, the task holding it, and the next task that updates the frame), which the machine's
// load moves far less than wall-clock figures.
//
//   node end2end/bench/input-cost.mjs --kiln URL --query app.cpu [--reps 20]
//
// Opens the explorer, waits until it has hydrated and the whole tree has arrived, then
// alternates a click zoom on row 1 with "all", and a search ("decode"/"parse") with clearing it.
import { chromium, option } from "./probes.mjs";

const KILN = option("kiln", "");
const QUERY = option("query", "");
const REPS = Number(option("reps", "10"));
if (!KILN || !QUERY) {
  console.error("usage: input-cost.mjs --kiln URL --query app.cpu [--reps N]");
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--headless"] });
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
await page.goto(`${KILN}/explore?query=${encodeURIComponent(QUERY)}&from=now-1h&until=now`);
await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
// The first paint may show a part of the tree; the whole one follows it (and the names are
// lowercased for searching a moment later).
await page.waitForTimeout(3000);
const box = await page.locator("canvas.flame-canvas").boundingBox();
await browser.startTracing(page, { categories: ["devtools.timeline", "disabled-by-default-devtools.timeline"] });
for (let i = 0; i < REPS; i++) {
  await page.mouse.click(box.x + box.width * 0.15, box.y + 27);
  await page.waitForTimeout(300);
  await page.locator(".breadcrumb button", { hasText: "all" }).click();
  await page.waitForTimeout(300);
}
const search = page.locator('input[aria-label="Search functions"]');
for (let i = 0; i < REPS; i++) {
  await search.fill(i % 2 ? "parse" : "decode");
  await page.waitForTimeout(300);
  await search.fill("");
  await page.waitForTimeout(300);
}
const trace = JSON.parse((await browser.stopTracing()).toString());
await browser.close();

const events = trace.traceEvents ?? trace;
const threads = new Map(
  events.filter((e) => e.ph === "M" && e.name === "thread_name").map((e) => [`${e.pid}:${e.tid}`, e.args.name]),
);
const main = events.filter((e) => e.ph === "X" && threads.get(`${e.pid}:${e.tid}`) === "CrRendererMain");
const tasks = main.filter((e) => e.name === "RunTask" || e.name === "ThreadControllerImpl::RunTask").sort((a, b) => a.ts - b.ts);
const within = (outer, inner) => outer.ts <= inner.ts && inner.ts <= outer.ts + outer.dur;
const frameTask = (after) =>
  tasks.find(
    (t) => t.ts > after && main.some((e) => within(t, e) && ["WebFrameWidgetImpl::UpdateLifecycle", "Commit", "Paint"].includes(e.name)),
  );
const ms = (us) => Math.round((us ?? 0) / 100) / 10;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const type of ["click", "input"]) {
  const rows = main
    .filter((e) => e.name === "EventDispatch" && e.args?.data?.type === type)
    .sort((a, b) => a.ts - b.ts)
    .map((e) => ({ handler: ms(e.tdur), frame: ms(frameTask(e.ts + e.dur)?.tdur) }));
  console.log(
    `${type === "click" ? "zoom and back" : "search and clear"}: handler ${rows.map((r) => r.handler).join(" / ")} ms; ` +
      `median handler ${median(rows.map((r) => r.handler))} ms, next frame ${median(rows.map((r) => r.frame))} ms`,
  );
}
