import { test, expect, APIRequestContext } from "@playwright/test";
import * as path from "path";
import { graphReady } from "./graph";

const APP = `cmp${Date.now() % 100000}`;

async function upload(request: APIRequestContext, name: string, body: string, from: string, until: string) {
  const response = await request.post(`/ingest?name=${encodeURIComponent(name)}&from=${from}&until=${until}`, { data: body });
  expect(response.status(), await response.text()).toBe(200);
}

test("the diff page shows what grew and what shrank", async ({ page, request }) => {
  // Baseline: parse dominates. Comparison: render dominates.
  await upload(request, `${APP}.cpu`, "main;parse 80\nmain;render 20\n", "now-90m", "now-89m");
  await upload(request, `${APP}.cpu`, "main;parse 20\nmain;render 80\n", "now-30m", "now-29m");
  await page.goto(`/diff?leftQuery=${APP}.cpu&leftFrom=now-2h&leftUntil=now-1h&rightQuery=${APP}.cpu&rightFrom=now-1h&rightUntil=now`);
  await expect(page.locator(".diff-table tr.grew td.name")).toHaveText(["render"]);
  await expect(page.locator(".diff-table tr.shrank td.name")).toHaveText(["parse"]);
  await expect(page.locator(".diff-table tr.grew td.change")).toHaveText("+60.00");
  await graphReady(page);
  await expect(page.locator("canvas.flame-canvas")).toHaveCount(3);
  // Each side has its own timeline over its own range, holding that side's 100 samples.
  const timelines = page.locator(".side-by-side .timeline-plot");
  await expect(timelines).toHaveCount(2);
  await expect(timelines.nth(0)).toHaveAttribute("data-total", "100");
  await expect(timelines.nth(1)).toHaveAttribute("data-total", "100");
  const ranges = await timelines.evaluateAll((plots) => plots.map((p) => p.getAttribute("aria-label")));
  expect(ranges[0]).not.toBe(ranges[1]);

  // Hovering render in the diff flamegraph (row 2, right of parse) shows both sides.
  const canvas = page.locator("canvas.flame-canvas").first();
  const box = (await canvas.boundingBox())!;
  await canvas.hover({ position: { x: box.width * 0.75, y: 2 * 18 + 9 } });
  await expect(page.getByRole("tooltip")).toContainText("render");
  await expect(page.getByRole("tooltip")).toContainText("before 20 samples (20.00%)");
  await expect(page.getByRole("tooltip")).toContainText("after 80 samples (80.00%)");

  // Red means grew: the pixel under render is red-dominant, the one under parse green-dominant.
  const pixel = (x: number) =>
    canvas.evaluate((c: HTMLCanvasElement, px: number) => {
      const ratio = c.width / c.clientWidth;
      return Array.from(c.getContext("2d")!.getImageData(px * ratio, (2 * 18 + 4) * ratio, 1, 1).data);
    }, x);
  const [r1, g1] = await pixel(box.width * 0.9);
  expect(r1).toBeGreaterThan(g1);
  const [r2, g2] = await pixel(box.width * 0.1);
  expect(g2).toBeGreaterThan(r2);

  // The search filters the table and marks the frames of all three graphs; a link keeps it.
  await page.getByLabel("Search functions").fill("/^PARS/");
  await expect(page.locator(".diff-table td.name")).toHaveText(["parse"]);
  await expect(page.locator(".flame-matched")).toHaveText([/^Matched/, /^Matched/, /^Matched/]);
  await expect(page).toHaveURL(/search=%2F%5EPARS%2F/);
  await page.reload();
  await expect(page.locator(".diff-table td.name")).toHaveText(["parse"]);
});

test("a mismatched comparison explains itself", async ({ request }) => {
  await upload(request, `${APP}.alloc_space`, "main;alloc 5\n", "now-5m", "now-4m");
  const response = await request.get(`/render-diff?leftQuery=${APP}.cpu&rightQuery=${APP}.alloc_space`);
  expect(response.status()).toBe(400);
  expect((await response.json()).error).toContain("profile types differ");
});

test("open a local perf script capture, then upload it", async ({ page, request }) => {
  const file = path.join(__dirname, "data", "perf-java-stacks-01.txt");
  await page.goto("/open");
  // A file picked before hydration has no handler to read it.
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles(file);
  await expect(page.locator(".flame-status")).toHaveText(/^[\d,]+ samples in total$/);
  const shown = (await page.locator(".flame-status").textContent())!.replace(/[^\d]/g, "");

  // The same capture collapsed by the server through the ingest API has the same total.
  const fs = await import("fs");
  const name = `${APP}-perf`;
  const ingest = await request.post(`/ingest?name=${name}&format=perf_script`, { data: fs.readFileSync(file) });
  expect(ingest.status()).toBe(200);
  const rendered = await (await request.get(`/render?query=${name}`)).json();
  expect(String(rendered.flamebearer.numTicks)).toBe(shown);

  await expect(page.locator("table.top-table tbody tr").first()).toBeVisible();
  await expect(page.locator("table.top-table td.name", { hasText: /^java$/ })).toHaveCount(1);

  await page.getByLabel("Application name and labels").fill(`${APP}-opened.cpu{env=local}`);
  await page.getByRole("button", { name: "Upload to Kiln" }).click();
  await page.getByRole("link", { name: "Uploaded: open it in the explorer" }).click();
  await expect(page.locator(".summary")).toHaveText(`${Number(shown).toLocaleString("en-US")} samples in total`);
});

test("open a Node .cpuprofile: recognised by content, read by the server, total as the file says", async ({ page, request }) => {
  const fs = await import("fs");
  const file = path.join(__dirname, "..", "..", "app", "model", "tests", "data", "formats", "node-fib.cpuprofile");
  const profile = JSON.parse(fs.readFileSync(file, "utf8"));
  // Every sample weighs the time to the next one and the last the time to endTime: the total
  // is the time from the first sample to the end, in µs in the file.
  const totalMicros = profile.endTime - profile.startTime - profile.timeDeltas[0];
  await page.goto("/open");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await expect(page.locator(".dropzone")).toContainText("Chrome / Node .cpuprofile");
  // A name that says nothing: the content decides.
  await page.getByLabel("Profile file").setInputFiles({
    name: "profile.bin",
    mimeType: "application/octet-stream",
    buffer: fs.readFileSync(file),
  });
  await expect(page.locator(".flame-status")).toHaveText(`${(totalMicros / 1000).toFixed(2)} ms in total`);
  for (const name of ["busy", "fib", "sortMany"]) {
    await expect(page.locator("table.top-table td.name", { hasText: new RegExp(`^${name}$`) })).toHaveCount(1);
  }
  // Stored through /ingest with no format, the same total comes back.
  const name = `${APP}-node`;
  const ingest = await request.post(`/ingest?name=${name}.cpu`, { data: fs.readFileSync(file) });
  expect(ingest.status(), await ingest.text()).toBe(200);
  const rendered = await (await request.get(`/render?query=${name}.cpu`)).json();
  expect(rendered.flamebearer.numTicks).toBe(totalMicros * 1000);
});

test("open a Chromium trace: every thread and CPU profile merged", async ({ page }) => {
  const fs = await import("fs");
  const dir = path.join(__dirname, "..", "..", "app", "model", "tests");
  // The model's golden file heads each thread's stacks with its total.
  const golden = fs.readFileSync(path.join(dir, "golden", "formats", "chromium.trace.folded"), "utf8");
  const total = golden.split("\n").filter((l) => l.startsWith("# ")).map((l) => Number(l.split(": ").pop()))
    .reduce((a, b) => a + b, 0);
  await page.goto("/open");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles(path.join(dir, "data", "formats", "chromium.trace.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${(total / 1e6).toFixed(2)} ms in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^Layout$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
});

test("open a speedscope file: read by the server, every profile merged", async ({ page }) => {
  const file = {
    $schema: "https://www.speedscope.app/file-format-schema.json",
    shared: { frames: [{ name: "main" }, { name: "work" }, { name: "idle" }] },
    profiles: [
      { type: "sampled", name: "thread-1", unit: "none", startValue: 0, endValue: 7,
        samples: [[0, 1], [0, 1]], weights: [3, 4] },
      { type: "evented", name: "thread-2", unit: "none", startValue: 0, endValue: 5,
        events: [{ type: "O", frame: 0, at: 0 }, { type: "O", frame: 2, at: 0 },
                 { type: "C", frame: 2, at: 5 }, { type: "C", frame: 0, at: 5 }] },
    ],
  };
  await page.goto("/open");
  // A file picked before hydration has no handler to read it.
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles({
    name: "profile.speedscope.json",
    mimeType: "application/json",
    buffer: Buffer.from(JSON.stringify(file)),
  });
  await expect(page.locator(".flame-status")).toHaveText("12 samples in total");
  await expect(page.locator("table.top-table td.name", { hasText: /^work$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^idle$/ })).toHaveCount(1);
});
