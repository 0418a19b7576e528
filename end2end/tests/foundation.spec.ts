import { test, expect, Page, APIRequestContext } from "@playwright/test";
import { graphReady } from "./graph";

// Two uploads of one series, merged by Kiln:
//   main 135 = parse 50 (tokenize 50) + render 75 (draw 75) + idle 10
const FIRST = "main;parse;tokenize 30\nmain;render;draw 50\n";
const SECOND = "main;parse;tokenize 20\nmain;render;draw 25\nmain;idle 10\n";
const APP = `shop${Date.now() % 100000}`;

async function upload(request: APIRequestContext, name: string, body: string) {
  const response = await request.post(`/ingest?name=${encodeURIComponent(name)}`, { data: body });
  expect(response.status(), await response.text()).toBe(200);
  expect(await response.text()).toBe("");
}

async function canvasInkedPixels(page: Page): Promise<number> {
  return page.locator("canvas.flame-canvas").evaluate((canvas: HTMLCanvasElement) => {
    const ctx = canvas.getContext("2d")!;
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    // The light theme's background is opaque white: ink is anything else.
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) {
      const white = data[i] === 255 && data[i + 1] === 255 && data[i + 2] === 255;
      if (data[i + 3] !== 0 && !white) inked++;
    }
    return inked;
  });
}

function row(page: Page, name: string) {
  return page.locator("table.top-table tbody tr").filter({ has: page.locator("td.name", { hasText: new RegExp(`^${name}$`) }) });
}

test.beforeAll(async ({ request }) => {
  await upload(request, `${APP}.cpu{env=ci}`, FIRST);
  await upload(request, `${APP}.cpu{env=ci}`, SECOND);
});

test("home lists the app and the explorer draws its merged flamegraph", async ({ page }) => {
  await page.goto("/");
  const link = page.getByRole("link", { name: APP, exact: true });
  await expect(link).toBeVisible();
  await link.click();
  await expect(page).toHaveURL(new RegExp(`/explore\\?query=${APP}`));

  for (const [name, self, total] of [
    ["main", "0", "135"],
    ["render", "0", "75"],
    ["draw", "75", "75"],
    ["parse", "0", "50"],
    ["tokenize", "50", "50"],
    ["idle", "10", "10"],
  ]) {
    await expect(row(page, name).locator("td.self")).toHaveText(`${self} samples`);
    await expect(row(page, name).locator("td.total")).toHaveText(`${total} samples`);
  }

  await graphReady(page);
  await expect.poll(() => canvasInkedPixels(page)).toBeGreaterThan(1000);
});

test("click zooms with a breadcrumb, hover shows a tooltip, reload keeps the data", async ({ page }) => {
  await page.goto(`/explore?query=${APP}`);
  const canvas = page.locator("canvas.flame-canvas");
  await graphReady(page);
  await expect.poll(() => canvasInkedPixels(page)).toBeGreaterThan(1000);
  const box = (await canvas.boundingBox())!;
  const rowY = (depth: number) => depth * 18 + 9;

  // Row 2 under main holds idle (10), parse (50), render (75) left to right: 80% is render.
  await canvas.click({ position: { x: box.width * 0.8, y: rowY(2) } });
  const current = page.locator(".breadcrumb button.current");
  await expect(current).toHaveText("render");
  await expect(page.locator(".breadcrumb button")).toHaveText(["all", "main", "render"]);

  // Zoomed into render, draw spans the full width on row 3.
  await canvas.hover({ position: { x: box.width * 0.3, y: rowY(3) } });
  const tooltip = page.getByRole("tooltip");
  await expect(tooltip).toContainText("draw");
  await expect(tooltip).toContainText("total 75 samples");
  await expect(tooltip).toContainText("55.6% of all");

  // The zoom is in the URL: a reload (or a shared link) opens at the same frame.
  await expect(page).toHaveURL(/zoom=main%3Brender/);
  await page.reload();
  await expect(current).toHaveText("render");

  // Back to the top through the breadcrumb.
  await page.locator(".breadcrumb button", { hasText: "all" }).click();
  await expect(current).toHaveText("all");

  await page.reload();
  await expect(row(page, "draw").locator("td.total")).toHaveText("75 samples");
  await expect.poll(() => canvasInkedPixels(page)).toBeGreaterThan(1000);
});

test("frame names are text, never markup", async ({ page, request }) => {
  const evil = "<img src=x onerror=alert(1)>";
  await upload(request, "xss.cpu", `main;${evil} 5\n`);
  let dialogs = 0;
  page.on("dialog", (d) => {
    dialogs++;
    void d.dismiss();
  });
  await page.goto(`/explore?query=xss.cpu`);
  await expect(page.locator("td.name", { hasText: evil })).toHaveText(evil);
  await expect(page.locator("h1.query")).toHaveText("xss.cpu");
  await expect(page.locator("table img")).toHaveCount(0);
  await graphReady(page);
  expect(dialogs).toBe(0);
});

test("bad uploads get a clear 400 and change nothing", async ({ request }) => {
  const bad = await request.post(`/ingest?name=${APP}.cpu`, { data: "main;ok 1\nmain;broken -4\n" });
  expect(bad.status()).toBe(400);
  const body = await bad.json();
  expect(body.error).toContain("line 2");
  const folded = await request.get(`/render?query=${APP}.cpu&format=folded`);
  expect(await folded.text()).not.toContain("main;ok");
});

test("search highlights matches, shows the matched share and filters the table; Escape zooms out", async ({ page }) => {
  await page.goto(`/explore?query=${APP}`);
  await graphReady(page);
  const before = await page.locator("canvas.flame-canvas").screenshot();
  await page.getByLabel("Search functions").fill("TOK");
  await expect(page.locator(".flame-matched")).toHaveText("Matched 50 samples of 135 samples (37.0%)");
  await expect(page).toHaveURL(/search=TOK/);
  await expect(page.locator("table.top-table tbody td.name")).toHaveText(["tokenize"]);
  await expect.poll(async () => Buffer.compare(await page.locator("canvas.flame-canvas").screenshot(), before)).not.toBe(0);
  await page.getByLabel("Search functions").fill("");
  await expect(page.locator(".flame-matched")).toHaveText("");
  await expect(page.locator("table.top-table tbody tr")).toHaveCount(6);

  const canvas = page.locator("canvas.flame-canvas");
  const box = (await canvas.boundingBox())!;
  await canvas.click({ position: { x: box.width * 0.8, y: 2 * 18 + 9 } });
  await expect(page.locator(".breadcrumb button.current")).toHaveText("render");
  await canvas.press("Escape");
  await expect(page.locator(".breadcrumb button.current")).toHaveText("main");
});
