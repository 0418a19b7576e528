import { test, expect, Page } from "@playwright/test";
import * as fs from "fs";
import * as path from "path";
import * as zlib from "zlib";

const MODEL = path.join(__dirname, "..", "..", "app", "model", "tests");
const DATA = path.join(MODEL, "data", "formats");

/** The model's golden file heads each profile's stacks with `# name (units): total`. */
function goldenTotals(name: string): { name: string; total: number }[] {
  return fs.readFileSync(path.join(MODEL, "golden", "formats", name), "utf8").split("\n")
    .filter((l) => l.startsWith("# "))
    .map((l) => {
      const m = /^# (.*) \((\w+)\): (\d+)$/.exec(l)!;
      return { name: m[1], total: Number(m[3]) };
    });
}

const ms = (ns: number) => `${(ns / 1e6).toFixed(2)} ms`;

async function openPage(page: Page, errors: string[]) {
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  page.on("console", (m) => {
    // A refused request logs an error by itself; the page says what went wrong in its status.
    if (m.type() === "error" && !m.text().includes("Failed to load resource")) errors.push(`console: ${m.text()}`);
  });
  await page.goto("/open");
  // A file picked before hydration has no handler to read it.
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
}

test("a Chromium trace offers a picker of its threads, plus all merged", async ({ page }) => {
  const errors: string[] = [];
  const threads = goldenTotals("chromium.trace.folded");
  expect(threads.length).toBeGreaterThan(1);
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "chromium.trace.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(merged)} in total`);

  // Every thread with the total the file gives it, after "all merged", which shows first.
  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker).toHaveValue("all");
  const options = picker.locator("option");
  await expect(options).toHaveText([
    `All merged (${threads.length} profiles)`,
    ...threads.map((t) => `${t.name}: ${ms(t.total)}`),
  ]);

  // One thread: its total, its functions only, and its own time order.
  const renderer = threads.findIndex((t) => !t.name.startsWith("CPU profile"));
  await picker.selectOption(String(renderer));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(threads[renderer].total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^Layout$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(0);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toContainText(`samples, ${threads[renderer].name})`);

  const profile = threads.findIndex((t) => t.name.startsWith("CPU profile"));
  await picker.selectOption(String(profile));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(threads[profile].total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^Layout$/ })).toHaveCount(0);
  await expect(page.locator(".time-order-range")).toContainText(`samples, ${threads[profile].name})`);

  // And back to all of them.
  await picker.selectOption("all");
  await expect(page.locator(".flame-status")).toHaveText(`${ms(merged)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^Layout$/ })).toHaveCount(1);
  expect(errors).toEqual([]);
});

test("a callgrind file offers its event types one at a time, never merged", async ({ page }) => {
  const errors: string[] = [];
  const text = fs.readFileSync(path.join(DATA, "cg.callgrind"), "utf8");
  const events = /^events: (.*)$/m.exec(text)![1].split(" ");
  const summary = /^summary: (.*)$/m.exec(text)![1].split(" ").map(Number);
  const count = (n: number, unit: string) => `${n.toLocaleString("en-US")} ${unit}`;
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "cg.callgrind"));
  await expect(page.locator(".flame-status")).toHaveText(`${count(summary[0], events[0])} in total`);
  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker).toHaveValue("0");
  await expect(picker.locator("option")).toHaveText(events.map((e, i) => `${e}: ${count(summary[i], e)}`));
  await picker.selectOption(String(events.indexOf("Dr")));
  await expect(page.locator(".flame-status")).toHaveText(`${count(summary[1], "Dr")} in total`);
  // No timestamps in callgrind: no time order to offer.
  await expect(page.getByRole("button", { name: "Time order" })).toBeHidden();
  expect(errors).toEqual([]);
});

test("a gzipped .cpuprofile opens like the plain file, time order included", async ({ page }) => {
  const errors: string[] = [];
  const file = path.join(DATA, "node-fib.cpuprofile");
  const profile = JSON.parse(fs.readFileSync(file, "utf8"));
  const totalMicros = profile.endTime - profile.startTime - profile.timeDeltas[0];
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles({
    name: "node-fib.cpuprofile.gz",
    mimeType: "application/gzip",
    buffer: zlib.gzipSync(fs.readFileSync(file)),
  });
  await expect(page.locator(".flame-status")).toHaveText(`${(totalMicros / 1000).toFixed(2)} ms in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
  // One profile: no picker; its timestamps still open in time order.
  await expect(page.getByLabel("Profile", { exact: true })).toHaveCount(0);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toHaveText(/\(336 samples, main\)$/);
  expect(errors).toEqual([]);
});

test("a gzipped Chromium trace offers the same picker", async ({ page }) => {
  const errors: string[] = [];
  const threads = goldenTotals("chromium.trace.folded");
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles({
    name: "trace.json.gz",
    mimeType: "application/gzip",
    buffer: zlib.gzipSync(fs.readFileSync(path.join(DATA, "chromium.trace.json"))),
  });
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  await expect(page.locator(".flame-status")).toHaveText(`${ms(merged)} in total`);
  await expect(page.getByLabel("Profile", { exact: true }).locator("option")).toHaveCount(threads.length + 1);
  expect(errors).toEqual([]);
});

test("a Firefox Gecko profile offers its threads; a Ruby stackprof file opens with the total it counts", async ({ page }) => {
  const errors: string[] = [];
  const threads = goldenTotals("gecko-fib.folded");
  expect(threads.length).toBe(3);
  await openPage(page, errors);
  await expect(page.locator(".dropzone")).toContainText("Firefox Profiler (Gecko JSON)");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "gecko-fib.json"));
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  // As the page writes durations: seconds from one second on.
  const dur = (ns: number) => (ns >= 1e9 ? `${(ns / 1e9).toFixed(2)} s` : ms(ns));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(merged)} in total`);
  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker.locator("option")).toHaveText([
    `All merged (${threads.length} profiles)`,
    ...threads.map((t) => `${t.name}: ${dur(t.total)}`),
  ]);
  // The page's own thread: the content process whose stacks run the page's fib.
  const golden = fs.readFileSync(path.join(MODEL, "golden", "formats", "gecko-fib.folded"), "utf8");
  const heading = golden.slice(0, golden.indexOf("gecko-fib.html")).split("\n").filter((l) => l.startsWith("# ")).pop()!;
  const content = threads.findIndex((t) => heading.startsWith(`# ${t.name} (`));
  expect(content).toBeGreaterThanOrEqual(0);
  await picker.selectOption(String(content));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(threads[content].total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib \(file:.*gecko-fib\.html:4:13\)$/ })).toHaveCount(1);

  const stackprof = JSON.parse(fs.readFileSync(path.join(DATA, "stackprof-fib.json"), "utf8"));
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "stackprof-fib.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(stackprof.samples * stackprof.interval * 1000)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^Object#fib$/ })).toHaveCount(1);
  await expect(picker).toHaveCount(0);
  expect(errors).toEqual([]);
});

test("a preprocessed node --prof log opens with its time order; a .heapprofile in bytes", async ({ page }) => {
  const errors: string[] = [];
  const [ticks] = goldenTotals("v8-work.prof.folded");
  const log = JSON.parse(fs.readFileSync(path.join(DATA, "v8-work.prof.json"), "utf8"));
  await openPage(page, errors);
  await expect(page.locator(".dropzone")).toContainText("Node --prof, preprocessed");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "v8-work.prof.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(ticks.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toHaveText(new RegExp(`\\(${log.ticks.length} samples, main\\)$`));

  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "node-alloc.heapprofile"));
  await expect(page.locator("table.top-table td.name", { hasText: /^makeRow$/ })).toHaveCount(1);
  await expect(page.locator(".flame-status")).toContainText("in total");
  await expect(page.getByRole("button", { name: "Time order" })).toBeHidden();
  expect(errors).toEqual([]);
});

test("a Java Flight Recorder file offers one profile per event kind, CPU samples first", async ({ page }) => {
  const errors: string[] = [];
  // What OpenJDK's own `jfr print` says the recording holds (jfr-demo.sh wrote it).
  const profiles = fs.readFileSync(path.join(DATA, "jfr-demo.jfr-print.folded"), "utf8").split("\n")
    .filter((l) => l.startsWith("# "))
    .map((l) => {
      const m = /^# (.*) \((\w+)\): (\d+)$/.exec(l)!;
      return { name: m[1], units: m[2], total: Number(m[3]) };
    });
  expect(profiles[0].name).toBe("cpu");
  const count = (n: number, unit: string) => `${n.toLocaleString("en-US")} ${unit}`;
  await openPage(page, errors);
  await expect(page.locator(".dropzone")).toContainText("Java Flight Recorder (.jfr)");
  await page.getByLabel("Profile file").setInputFiles({
    name: "recording.bin",
    mimeType: "application/octet-stream",
    buffer: fs.readFileSync(path.join(DATA, "jfr-demo.jfr")),
  });
  await expect(page.locator(".flame-status")).toHaveText(`${count(profiles[0].total, "samples")} in total`);
  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker).toHaveValue("0");
  await expect(picker.locator("option")).toHaveCount(profiles.length);
  await expect(picker.locator("option").first()).toHaveText(`cpu: ${count(profiles[0].total, "samples")}`);
  const locks = profiles.findIndex((p) => p.name === "lock_count");
  await picker.selectOption(String(locks));
  await expect(page.locator(".flame-status")).toHaveText(`${count(profiles[locks].total, "lock_samples")} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^JfrDemo\.holdMonitor$/ })).toHaveCount(1);
  const waited = profiles.findIndex((p) => p.name === "lock_duration");
  await picker.selectOption(String(waited));
  const ns = profiles[waited].total;
  await expect(page.locator(".flame-status")).toHaveText(`${ns >= 1e9 ? `${(ns / 1e9).toFixed(2)} s` : ms(ns)} in total`);
  await expect(page.getByRole("button", { name: "Time order" })).toBeHidden();
  expect(errors).toEqual([]);
});

// As the page writes durations: seconds from one second on.
const dur = (ns: number) => (ns >= 1e9 ? `${(ns / 1e9).toFixed(2)} s` : ms(ns));

test("a raw node --prof isolate log opens with its ticks in time order", async ({ page }) => {
  const errors: string[] = [];
  const [ticks] = goldenTotals("v8-work.isolate.folded");
  const log = fs.readFileSync(path.join(DATA, "v8-work.isolate.log"), "utf8");
  const count = log.split("\n").filter((l) => l.startsWith("tick,")).length;
  await openPage(page, errors);
  await expect(page.locator(".dropzone")).toContainText("Node --prof log (isolate-*.log)");
  await page.getByLabel("Profile file").setInputFiles({
    name: "isolate-0x33f10e80-9034-v8.log",
    mimeType: "text/plain",
    buffer: Buffer.from(log),
  });
  await expect(page.locator(".flame-status")).toHaveText(`${dur(ticks.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^hot$/ })).toHaveCount(1);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toHaveText(new RegExp(`\\(${count} samples, main\\)$`));
  expect(errors).toEqual([]);
});

test("a gzipped processed Firefox profile offers its threads, plus all merged", async ({ page }) => {
  const errors: string[] = [];
  const threads = goldenTotals("firefox-processed.folded");
  expect(threads.length).toBe(3);
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles({
    name: "profile.json.gz",
    mimeType: "application/gzip",
    buffer: zlib.gzipSync(fs.readFileSync(path.join(DATA, "firefox-processed.json"))),
  });
  await expect(page.locator(".flame-status")).toHaveText(`${dur(merged)} in total`);
  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker.locator("option")).toHaveText([
    `All merged (${threads.length} profiles)`,
    ...threads.map((t) => `${t.name}: ${dur(t.total)}`),
  ]);
  const content = threads.findIndex((t) => t.name.startsWith("Isolated Web Content GeckoMain"));
  await picker.selectOption(String(content));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(threads[content].total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib \(file:\/\/\/tmp\/ff\/fib\.html:4:13\)$/ })).toHaveCount(1);
  await expect(page.locator("table.top-table td.name", { hasText: /^PollWrapper$/ })).toHaveCount(0);
  expect(errors).toEqual([]);
});

test("Instruments, pmcstat, Papyrus and Safari files open with the totals they hold", async ({ page }) => {
  const errors: string[] = [];
  const count = (n: number, unit: string) => `${n.toLocaleString("en-US")} ${unit}`;
  await openPage(page, errors);
  const dropzone = page.locator(".dropzone");
  for (const shown of ["Instruments call tree (deep copy)", "FreeBSD pmcstat -G", "Papyrus profiling log", "Safari timeline recording"]) {
    await expect(dropzone).toContainText(shown);
  }
  const picker = page.getByLabel("Profile", { exact: true });

  // Instruments: one profile, no picker, no times.
  const [instruments] = goldenTotals("instruments-deep-copy.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "instruments-deep-copy.txt"));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(instruments.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^shade\(Ray const&\)$/ })).toHaveCount(1);
  await expect(page.getByRole("button", { name: "Time order" })).toBeHidden();

  // pmcstat: its events one at a time, the first by default, never merged.
  const events = goldenTotals("pmcstat-callgraph.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "pmcstat-callgraph.txt"));
  await expect(page.locator(".flame-status")).toHaveText(`${count(events[0].total, "samples")} in total`);
  await expect(picker).toHaveValue("0");
  await expect(picker.locator("option")).toHaveText(events.map((e) => `${e.name}: ${count(e.total, "samples")}`));
  await picker.selectOption("1");
  await expect(page.locator(".flame-status")).toHaveText(`${count(events[1].total, "samples")} in total`);

  // Papyrus: a stack, in time order.
  const [stack] = goldenTotals("papyrus-stack.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "papyrus-stack.log"));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(stack.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^utility\.\.Wait$/ })).toHaveCount(1);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toContainText("stack 4242)");
  await page.getByRole("button", { name: "Flamegraph" }).click();

  // Safari: the recording's JavaScript samples, in time order.
  const [recording] = goldenTotals("safari-recording.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "safari-recording.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${dur(recording.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^sortMany$/ })).toHaveCount(1);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toContainText("Timeline Recording 1)");
  expect(errors).toEqual([]);
});

/** `perf script` samples per thread, counted from the file: a header line (`comm [pid/]tid …`)
 * and its indented stack; a sample without frames is not drawn. Named as perf prints the
 * thread, the command as inferno writes it (spaces as `_`). */
function perfThreads(text: string): { name: string; total: number }[] {
  const counts = new Map<string, number>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    if (line.startsWith("#") || line.trim() === "" || /^\s/.test(line)) {
      i++;
      continue;
    }
    const words = line.trim().split(/\s+/);
    const k = words.findIndex((w, j) => j > 0 && /^(\d+\/)?\d+$/.test(w));
    const name = `${words.slice(0, k).join("_")} ${words[k]}`;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() !== "" && /^\s/.test(lines[j])) j++;
    if (j > i + 1) counts.set(name, (counts.get(name) ?? 0) + 1);
    i = j;
  }
  return [...counts.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, total]) => ({ name, total }));
}

test("a perf script capture offers a picker of its threads, in samples that add up to the whole", async ({ page }) => {
  const errors: string[] = [];
  const file = path.join(__dirname, "data", "perf-java-stacks-01.txt");
  const threads = perfThreads(fs.readFileSync(file, "utf8"));
  expect(threads.length).toBeGreaterThan(1);
  const samples = (n: number) => `${n.toLocaleString("en-US")} samples`;
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  await openPage(page, errors);
  await page.getByLabel("Profile file").setInputFiles(file);
  await expect(page.locator(".flame-status")).toHaveText(`${samples(merged)} in total`);

  const picker = page.getByLabel("Profile", { exact: true });
  await expect(picker).toHaveValue("all");
  await expect(picker.locator("option")).toHaveText([
    `All merged (${threads.length} profiles)`,
    ...threads.map((t) => `${t.name}: ${samples(t.total)}`),
  ]);

  // The busiest thread: its samples, its command at the root, and its own time order.
  const busiest = threads.reduce((best, t, i) => (t.total > threads[best].total ? i : best), 0);
  const command = threads[busiest].name.split(" ")[0];
  await picker.selectOption(String(busiest));
  await expect(page.locator(".flame-status")).toHaveText(`${samples(threads[busiest].total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: new RegExp(`^${command}$`) })).toHaveCount(1);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toContainText(`samples, ${threads[busiest].name})`);

  await picker.selectOption("all");
  await expect(page.locator(".flame-status")).toHaveText(`${samples(merged)} in total`);
  expect(errors).toEqual([]);
});

test("a file is posted raw; one the server refuses as too large (413) is gzipped and posted again", async ({ page }) => {
  const errors: string[] = [];
  const threads = goldenTotals("chromium.trace.folded");
  const merged = threads.reduce((sum, t) => sum + t.total, 0);
  const raw = fs.readFileSync(path.join(DATA, "chromium.trace.json"));
  await openPage(page, errors);
  // The first post is answered 413, as a server with a lower --max-collapse-body-bytes would.
  const posted: Buffer[] = [];
  await page.route("**/api/collapse?format=auto", async (route) => {
    const body = route.request().postDataBuffer() ?? Buffer.alloc(0);
    posted.push(body);
    if (posted.length === 1) {
      await route.fulfill({ status: 413, contentType: "application/json", body: '{"error": "too large"}' });
    } else {
      await route.continue();
    }
  });
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "chromium.trace.json"));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(merged)} in total`);
  expect(posted.length).toBe(2);
  expect(posted[0].equals(raw)).toBe(true);
  expect([...posted[1].subarray(0, 2)]).toEqual([0x1f, 0x8b]);
  expect(zlib.gunzipSync(posted[1]).equals(raw)).toBe(true);
  // The picker asks again with the gzipped copy, which the server took.
  await page.getByLabel("Profile", { exact: true }).selectOption("0");
  await expect(page.locator(".flame-status")).toHaveText(`${ms(threads[0].total)} in total`);
  expect(errors).toEqual([]);
});

test("Chrome's older performance-panel export and the older head-tree .cpuprofile open with their totals", async ({ page }) => {
  const errors: string[] = [];
  await openPage(page, errors);
  const timeline = goldenTotals("chrome-timeline-cpuprofile.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "chrome-timeline-cpuprofile.json"));
  const merged = timeline.reduce((sum, t) => sum + t.total, 0);
  await expect(page.locator(".flame-status")).toHaveText(`${ms(merged)} in total`);
  await expect(page.getByLabel("Profile", { exact: true }).locator("option")).toHaveText([
    `All merged (${timeline.length} profiles)`,
    ...timeline.map((t) => `${t.name}: ${ms(t.total)}`),
  ]);
  const [tree] = goldenTotals("v8-profiler-head.folded");
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "v8-profiler-head.cpuprofile"));
  await expect(page.locator(".flame-status")).toHaveText(`${ms(tree.total)} in total`);
  await expect(page.locator("table.top-table td.name", { hasText: /^fib$/ })).toHaveCount(1);
  expect(errors).toEqual([]);
});
