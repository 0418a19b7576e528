import { test, expect, Page } from "@playwright/test";
import * as path from "path";
import { graphReady } from "./graph";

const DATA = path.join(__dirname, "..", "..", "app", "model", "tests", "data", "formats");

/** The "Showing A to B of C (N samples)" line under the time-order view. */
async function shown(page: Page): Promise<string> {
  return (await page.locator(".time-order-range").textContent()) ?? "";
}

test("a .cpuprofile in time order: zoom, pan, keys, tooltip, and the link to the flamegraph", async ({ page }) => {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));

  await page.goto("/open");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles(path.join(DATA, "node-fib.cpuprofile"));
  await expect(page.locator(".flame-status")).toHaveText(/ms in total$/);

  // The file has timestamps: the toggle is offered, and the time order comes from the server.
  const toggle = page.getByRole("button", { name: "Time order" });
  await toggle.click();
  await expect(toggle).toHaveAttribute("aria-pressed", "true");
  const chart = page.locator("canvas.time-order-canvas");
  await expect(chart).toBeVisible();
  await expect(page.locator(".time-order-range")).toHaveText(/^Showing 0 ns to (\S+ ms) of \1 \(336 samples, main\)$/);
  const whole = await shown(page);
  await expect(page.locator("canvas.flame-canvas:not(.time-order-canvas)")).toBeHidden();

  // The wheel zooms in about the pointer: the range shown narrows and no longer starts at 0.
  const box = (await chart.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + 9);
  await page.mouse.wheel(0, -300);
  await expect(page.locator(".time-order-range")).not.toHaveText(whole);
  const zoomed = await shown(page);
  expect(zoomed).not.toMatch(/^Showing 0 ns/);

  // Dragging pans: a drag to the left shows later times.
  await page.mouse.move(box.x + box.width / 2, box.y + 9);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 - 150, box.y + 9, { steps: 5 });
  await page.mouse.up();
  await expect(page.locator(".time-order-range")).not.toHaveText(zoomed);
  const later = (s: string) => parseFloat(s.replace(/^Showing /, ""));
  expect(later(await shown(page))).toBeGreaterThan(later(zoomed));

  // Keys: `0` shows the whole profile again, `+` zooms in, the arrows pan.
  await chart.focus();
  await page.keyboard.press("0");
  await expect(page.locator(".time-order-range")).toHaveText(whole);
  await page.keyboard.press("+");
  await expect(page.locator(".time-order-range")).not.toHaveText(whole);
  const keyed = await shown(page);
  await page.keyboard.press("ArrowRight");
  await expect(page.locator(".time-order-range")).not.toHaveText(keyed);
  await page.keyboard.press("0");
  await expect(page.locator(".time-order-range")).toHaveText(whole);

  // Hovering a box shows its name and when it ran; the middle of the profile, third row, is
  // Node's module loader (app/model/tests/golden/formats/node-fib.cpuprofile.time-order).
  const at = { x: box.x + box.width / 2, y: box.y + 2 * 18 + 9 };
  await page.mouse.move(at.x, at.y);
  const tip = page.locator(".time-order .flame-tooltip");
  await expect(tip.locator(".tip-name")).toHaveText("Module._load");
  await expect(tip.locator(".tip-row")).toHaveText(/^\S+ ms from \S+ ms$/);

  // Clicking selects it and links it: the flamegraph outlines the same function.
  await page.mouse.click(at.x, at.y);
  await expect(page.locator(".time-order .flame-selected")).toContainText("Selected Module._load");
  await expect(page.locator(".linked-function")).toHaveText(/Function selected: Module\._load/);
  await expect(chart).not.toHaveAttribute("data-linked-frames", "0");
  await page.getByRole("button", { name: "Flamegraph" }).click();
  const flame = page.locator("canvas.flame-canvas:not(.time-order-canvas)");
  await expect(flame).toBeVisible();
  await expect(chart).toBeHidden();
  await expect(flame).not.toHaveAttribute("data-linked-frames", "0");

  // And back: a frame selected in the flamegraph is outlined in the time order.
  const fbox = (await flame.boundingBox())!;
  await page.mouse.click(fbox.x + 5, fbox.y + 18 + 9);
  const selected = (await page.locator(".flamegraph:not(.time-order) .flame-selected").textContent()) ?? "";
  const name = selected.replace(/^Selected /, "").replace(/: total .*$/, "");
  expect(name).not.toBe("Module._load");
  await expect(page.locator(".linked-function")).toHaveText(`Function selected: ${name} (outlined in both views)`);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(chart).toBeVisible();
  await expect(chart).not.toHaveAttribute("data-linked-frames", "0");

  // Search highlights in the time order as in the flamegraph; nothing went wrong on the way.
  await page.getByLabel("Search functions").fill("fib");
  await expect(chart).toBeVisible();
  expect(errors).toEqual([]);
});

test("a file without timestamps offers no time order", async ({ page }) => {
  await page.goto("/open");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles({
    name: "stacks.folded",
    mimeType: "text/plain",
    buffer: Buffer.from("main;work 3\nmain;idle 1\n"),
  });
  await expect(page.locator(".flame-status")).toHaveText("4 samples in total");
  await expect(page.getByRole("button", { name: "Time order" })).toHaveCount(0);
});

test("a perf script capture with times opens in time order too", async ({ page }) => {
  await page.goto("/open");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByLabel("Profile file").setInputFiles(path.join(__dirname, "data", "perf-java-stacks-01.txt"));
  await expect(page.locator(".flame-status")).toHaveText(/samples in total$/);
  await page.getByRole("button", { name: "Time order" }).click();
  await expect(page.locator(".time-order-range")).toHaveText(/^Showing 0 ns to \S+ (ms|s) of \S+ (ms|s) \([\d,]+ samples, .+ \d+\)$/);
  await expect(page.locator(".time-order-status")).toHaveText("");
});

test("a stored series in time order: one column per upload, the spike the widest", async ({ page, request }) => {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  // Three uploads a minute apart; the middle one is a spike of `main;hot`.
  const app = `spiky${Date.now() % 100000}`;
  const uploads: [string, string, string][] = [
    ["now-30m", "now-29m", "main;a 3\nmain;b 2\n"],
    ["now-29m", "now-28m", "main;hot 20\nidle 5\n"],
    ["now-28m", "now-27m", "idle 4\n"],
  ];
  // Sent newest first: the columns follow the uploads' times, not their arrival.
  for (const [from, until, body] of uploads.reverse()) {
    const response = await request.post(`/ingest?name=${app}.cpu&from=${from}&until=${until}`, { data: body });
    expect(response.status(), await response.text()).toBe(200);
  }

  // The view switch offers it next to the flamegraph; the URL keeps it.
  await page.goto(`/explore?query=${app}.cpu&from=now-1h&until=now`);
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await page.getByRole("link", { name: "Time order", exact: true }).click();
  await expect(page).toHaveURL(/view=time/);
  await expect(page.getByRole("link", { name: "Time order", exact: true })).toHaveAttribute("aria-current", "true");
  await expect(page.locator(".time-order-range")).toHaveText(
    "Showing 0 samples to 34 samples of 34 samples (5 samples, 3 uploads, one column each)",
  );
  await expect(page.locator(".time-order-status")).toHaveText("");

  // Columns as wide as their uploads: 0–5, the spike 5–30, then 30–34. The spike's middle,
  // second row, is `hot`; the last column's first row is `idle`.
  const chart = page.locator("canvas.time-order-canvas");
  const box = (await chart.boundingBox())!;
  const tip = page.locator(".time-order .flame-tooltip .tip-name");
  await page.mouse.move(box.x + box.width * (20 / 34), box.y + 18 + 9);
  await expect(tip).toHaveText("hot");
  await expect(page.locator(".time-order .flame-tooltip .tip-row")).toHaveText("20 samples from 10 samples");
  await page.mouse.move(box.x + box.width * (32 / 34), box.y + 9);
  await expect(tip).toHaveText("idle");

  // Zooming into the spike works as for opened files.
  await page.mouse.move(box.x + box.width * (20 / 34), box.y + 9);
  await page.mouse.wheel(0, -300);
  await expect(page.locator(".time-order-range")).not.toHaveText(/^Showing 0 samples/);
  expect(errors).toEqual([]);
});

test("a stored series: the function selected in time order is outlined in the flamegraph, and back", async ({ page, request }) => {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  const app = `linked${Date.now() % 100000}`;
  for (const [from, until, body] of [
    ["now-30m", "now-29m", "main;a 3\nmain;b 2\n"],
    ["now-29m", "now-28m", "main;hot 20\nidle 5\n"],
    ["now-28m", "now-27m", "idle 4\n"],
  ]) {
    const response = await request.post(`/ingest?name=${app}.cpu&from=${from}&until=${until}`, { data: body });
    expect(response.status(), await response.text()).toBe(200);
  }

  // Selecting `hot` in the time order (the spike's second row) keeps it in the URL.
  await page.goto(`/explore?query=${app}.cpu&from=now-1h&until=now&view=time`);
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
  await expect(page.locator(".time-order-status")).toHaveText("");
  const chart = page.locator("canvas.time-order-canvas");
  const box = (await chart.boundingBox())!;
  await page.mouse.click(box.x + box.width * (20 / 34), box.y + 18 + 9);
  await expect(page).toHaveURL(/sel=hot(&|$)/);
  await expect(chart).not.toHaveAttribute("data-linked-frames", "0");

  // The view switch carries it to the flamegraph, which outlines `hot`'s frame.
  await page.getByRole("link", { name: "Icicle", exact: true }).click();
  await expect(page).toHaveURL(/sel=hot(&|$)/);
  await graphReady(page);
  const flame = page.locator("canvas.flame-canvas");
  await expect(flame).toHaveAttribute("data-linked-frames", "1");

  // And the other way: `idle` (the root's first child, 9 of 34 samples, names in order)
  // selected in the flamegraph is outlined in the time order, in the uploads that have it.
  const fbox = (await flame.boundingBox())!;
  await page.mouse.click(fbox.x + fbox.width * 0.1, fbox.y + 18 + 9);
  await expect(page).toHaveURL(/sel=idle(&|$)/);
  await page.getByRole("link", { name: "Time order", exact: true }).click();
  await expect(page).toHaveURL(/view=time&.*sel=idle(&|$)/);
  await expect(page.locator(".time-order-status")).toHaveText("");
  await expect(page.locator("canvas.time-order-canvas")).not.toHaveAttribute("data-linked-frames", "0");
  expect(errors).toEqual([]);
});
