import { test, expect, Page, Locator, APIRequestContext } from "@playwright/test";
import { graphReady } from "./graph";

// Two profiles, uploaded through the real ingest API:
//   APP:       main 100 = idle 10 + parse 30 (tokenize 30) + render 60 (draw 60), left to right
//   RECURSIVE: main 30 = other 5 + walk 25 (self 5, walk;walk;leaf 20): three walk frames deep
const APP = `viewer${Date.now() % 100000}`;
const RECURSIVE = `recursive${Date.now() % 100000}`;
const ROW = 18;

async function upload(request: APIRequestContext, name: string, body: string) {
  const response = await request.post(`/ingest?name=${encodeURIComponent(name)}`, { data: body });
  expect(response.status(), await response.text()).toBe(200);
}

test.beforeAll(async ({ request }) => {
  await upload(request, `${APP}.cpu`, "main;idle 10\nmain;parse;tokenize 30\nmain;render;draw 60\n");
  await upload(request, `${RECURSIVE}.cpu`, "main;walk;walk;walk;leaf 20\nmain;walk 5\nmain;other 5\n");
});

async function open(page: Page, query: string): Promise<Locator> {
  await page.goto(`/explore?${query}`);
  await graphReady(page);
  const canvas = page.locator("canvas.flame-canvas");
  // The canvas is sized (and drawn) once the tree arrives.
  await expect.poll(async () => (await canvas.boundingBox())?.height ?? 0).toBeGreaterThan(ROW);
  return canvas;
}

/** The canvas pixel at CSS coordinates (`x` as a share of the width), as [r, g, b, a]. */
function pixel(canvas: Locator, xShare: number, y: number): Promise<number[]> {
  return canvas.evaluate(
    (c: HTMLCanvasElement, [share, cssY]) => {
      const ratio = c.width / c.clientWidth;
      const x = Math.floor(c.clientWidth * share * ratio);
      return Array.from(c.getContext("2d")!.getImageData(x, Math.floor(cssY * ratio), 1, 1).data);
    },
    [xShare, y] as [number, number],
  );
}

test("arrow keys move a selection, Enter and + zoom into it, - zooms out", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  const selection = page.locator(".flame-selected");
  const current = page.locator(".breadcrumb button.current");

  await canvas.focus();
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(/^Selected total: total 100 samples/);
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(/^Selected main:/);
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText("Selected render: total 60 samples (60.0% of all, 60.0% of parent), self 0 samples (0.0%)");
  // The keyboard's selection shows its tooltip by the frame and an outline on the canvas:
  // render spans 40%..100% of row 2, its top edge stroked in the focus blue.
  await expect(page.getByRole("tooltip")).toContainText("render");
  await expect.poll(async () => {
    const [r, g, b] = await pixel(canvas, 0.7, 2 * ROW + 1);
    return b > 180 && r < 120 && g < 160;
  }).toBe(true);

  await canvas.press("ArrowLeft");
  await expect(selection).toHaveText(/^Selected parse:/);
  await canvas.press("ArrowLeft");
  await expect(selection).toHaveText(/^Selected idle:/);
  // Left of the left edge stays put: right again is parse, not something further on.
  await canvas.press("ArrowLeft");
  await canvas.press("ArrowRight");
  await expect(selection).toHaveText(/^Selected parse:/);

  await canvas.press("Enter");
  await expect(page.locator(".breadcrumb button")).toHaveText(["all", "main", "parse"]);
  await expect(current).toHaveText("parse");
  await expect(page).toHaveURL(/zoom=main%3Bparse/);

  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(/^Selected tokenize:/);
  await canvas.press("+");
  await expect(current).toHaveText("tokenize");
  await canvas.press("-");
  await expect(current).toHaveText("parse");
  await canvas.press("-");
  await expect(current).toHaveText("main");
  // Still selected, and still in view after zooming out.
  await expect(selection).toHaveText(/^Selected tokenize:/);
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected parse:/);
  await canvas.press("=");
  await expect(current).toHaveText("parse");
});

test("in a flame graph the root is at the bottom and up goes to the callee", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu&orient=flame`);
  const selection = page.locator(".flame-selected");
  await canvas.focus();
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected total:/);
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected main:/);
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected render:/);
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(/^Selected main:/);
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(/^Selected total:/);
  // The outline is drawn where the frame is: render (row 2, 40%..100%) is third from the
  // bottom, its top edge in the focus blue.
  await canvas.press("ArrowUp");
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected render:/);
  const height = (await canvas.boundingBox())!.height;
  await expect.poll(async () => {
    const [r, g, b] = await pixel(canvas, 0.7, height - 3 * ROW + 1);
    return b > 180 && r < 120 && g < 160;
  }).toBe(true);
  await canvas.press("Enter");
  await expect(page.locator(".breadcrumb button.current")).toHaveText("render");
});

test("the help lists the flamegraph keys", async ({ page }) => {
  await open(page, `query=${APP}.cpu`);
  await page.locator("h1.query").click();
  await page.keyboard.press("?");
  const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
  await expect(help).toContainText("select the caller or the widest callee");
  await expect(help).toContainText("zoom into the selected frame");
});

test("colouring by self value repaints frames on a heat scale and is kept in the URL", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  // draw (row 3, 40%..100%) holds the most self samples: the hottest frame.
  const drawPixel = () => pixel(canvas, 0.9, 3 * ROW + 2);
  const byPackage = await drawPixel();
  await page.getByLabel("Colour frames").selectOption("self");
  await expect(page).toHaveURL(/colour=self/);
  await expect.poll(drawPixel).not.toEqual(byPackage);
  const [r, g, b] = await drawPixel();
  expect(r).toBeGreaterThan(150);
  expect(g).toBeLessThan(60);
  expect(b).toBeLessThan(60);
  // tokenize (row 3, 10%..40%) holds half as much: cooler, so lighter.
  const [tr, tg] = await pixel(canvas, 0.35, 3 * ROW + 2);
  expect(tr).toBeGreaterThan(r);
  expect(tg).toBeGreaterThan(g);

  // The URL alone reproduces the colours.
  await page.reload();
  await expect(page.getByLabel("Colour frames")).toHaveValue("self");
  await expect.poll(drawPixel).toEqual([r, g, b, 255]);
  await page.getByLabel("Colour frames").selectOption("package");
  await expect.poll(drawPixel).toEqual(byPackage);
  await expect(page).not.toHaveURL(/colour=/);
});

test("the theme toggle repaints the canvas and is remembered", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  // Under idle (row 3, 0%..10%) nothing is drawn: the canvas background.
  const background = () => pixel(canvas, 0.05, 3 * ROW + ROW / 2);
  const frame = () => pixel(canvas, 0.9, 3 * ROW + 2);
  await expect.poll(background).toEqual([255, 255, 255, 255]);
  const lightFrame = await frame();

  const toggle = page.getByRole("button", { name: "Dark theme" });
  await expect(toggle).toHaveAttribute("aria-pressed", "false");
  await toggle.click();
  await expect(toggle).toHaveAttribute("aria-pressed", "true");
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect.poll(background).toEqual([0x1f, 0x1e, 0x1c, 255]);
  // Frames darken to suit the background (same hue, less light).
  const darkFrame = await frame();
  expect(Math.max(...darkFrame.slice(0, 3))).toBeLessThan(Math.max(...lightFrame.slice(0, 3)));
  const bodyBackground = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await expect.poll(bodyBackground).toBe("rgb(22, 21, 20)");

  await page.reload();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect.poll(background).toEqual([0x1f, 0x1e, 0x1c, 255]);
  await page.getByRole("button", { name: "Dark theme" }).click();
  await expect.poll(background).toEqual([255, 255, 255, 255]);
});

test.describe("with a dark system setting", () => {
  test.use({ colorScheme: "dark" });

  test("the page and the canvas open dark, and the toggle still switches", async ({ page }) => {
    const canvas = await open(page, `query=${APP}.cpu`);
    const background = () => pixel(canvas, 0.05, 3 * ROW + ROW / 2);
    await expect.poll(background).toEqual([0x1f, 0x1e, 0x1c, 255]);
    const toggle = page.getByRole("button", { name: "Dark theme" });
    await expect(toggle).toHaveAttribute("aria-pressed", "true");
    await toggle.click();
    await expect.poll(background).toEqual([255, 255, 255, 255]);
    await expect(page.locator("html")).toHaveAttribute("data-theme", "light");
  });
});

test("collapsing recursion merges repeated frames, conserves samples, and is kept in the URL", async ({ page }) => {
  const canvas = await open(page, `query=${RECURSIVE}.cpu`);
  const rows = async () => Math.round((await canvas.boundingBox())!.height / ROW);
  const selection = page.locator(".flame-selected");
  // total, main, walk, walk, walk, leaf.
  expect(await rows()).toBe(6);

  // Zoom into the second walk (row 3; main holds other 0%..17%, then walk 17%..100%, and the
  // second walk 17%..83%), then collapse walk from its menu.
  const box = (await canvas.boundingBox())!;
  await canvas.click({ position: { x: box.width * 0.5, y: 3 * ROW + ROW / 2 } });
  await expect(page.locator(".breadcrumb button")).toHaveText(["all", "main", "walk", "walk"]);
  await canvas.click({ button: "right", position: { x: box.width * 0.5, y: 2 * ROW + ROW / 2 } });
  await page.getByRole("menuitem", { name: "Collapse recursion" }).click();
  await expect(page).toHaveURL(/collapse=walk/);

  // One walk frame is left, leaf right under it; the zoom followed the frame to its new path.
  await expect.poll(rows).toBe(4);
  await expect(page.locator(".breadcrumb button")).toHaveText(["all", "main", "walk"]);
  await expect(page).toHaveURL(/zoom=main%3Bwalk(&|$)/);
  // The merged frame holds what its three frames held: 25 in total, 5 of them its own, and
  // leaf keeps its 20; the profile keeps its 30.
  await canvas.focus();
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText(
    "Selected walk: total 25 samples (83.3% of all, 83.3% of parent), self 5 samples (16.7%)",
  );
  await canvas.press("ArrowDown");
  await expect(selection).toHaveText("Selected leaf: total 20 samples (66.7% of all, 80.0% of parent), self 20 samples (66.7%)");
  await canvas.press("ArrowUp");
  await canvas.press("ArrowUp");
  await canvas.press("ArrowUp");
  await expect(selection).toHaveText(/^Selected total: total 30 samples/);

  // The exports carry the collapse: the folded download is the collapsed profile.
  const folded = page.getByRole("link", { name: "Folded" });
  await expect(folded).toHaveAttribute("href", /collapse=walk/);
  const exported = await page.request.get((await folded.getAttribute("href"))!);
  expect((await exported.text()).split("\n").filter(Boolean).sort()).toEqual(["main;other 5", "main;walk 5", "main;walk;leaf 20"]);
  await expect(page.getByRole("link", { name: "SVG" })).toHaveAttribute("href", /inverted=true/);

  // The link reproduces the collapsed view; the chip expands it again.
  await page.reload();
  await expect.poll(rows).toBe(4);
  await expect(page.locator(".breadcrumb button.current")).toHaveText("walk");
  await page.getByRole("button", { name: "Expand recursion of walk" }).click();
  await expect.poll(rows).toBe(6);
  await expect(page).not.toHaveURL(/collapse=/);
});

test("a search between slashes is a regular expression; a bad one says why", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  const search = page.getByLabel("Search functions");
  // `^(parse|draw)$`: parse 30 + draw 60; a substring search for it would match nothing.
  await search.fill("/^(PARSE|draw)$/");
  await expect(page.locator(".flame-matched")).toHaveText("Matched 90 samples of 100 samples (90.0%)");
  await expect(page.locator("table.top-table tbody td.name")).toHaveText(["draw", "parse"]);
  // parse (row 2, 10%..40%) is drawn in the search hue, a purple where blue and red outweigh
  // green; main above it, not a match, is dimmed to a grey.
  const [r, g, b] = await pixel(canvas, 0.25, 2 * ROW + ROW / 2);
  expect(b, "parse drawn in the search hue").toBeGreaterThan(g);
  expect(r).toBeGreaterThan(g);
  // The pattern is kept in the URL; the server filters the table with it on a reload.
  await expect(page).toHaveURL(/search=[^&]*PARSE[^&]*draw/);
  await page.reload();
  await expect(page.locator(".flame-matched")).toHaveText("Matched 90 samples of 100 samples (90.0%)");
  await expect(page.locator("table.top-table tbody td.name")).toHaveText(["draw", "parse"]);

  await search.fill("/parse(/");
  await expect(page.locator(".flame-matched")).toContainText("Not a valid regular expression");
  await expect(page.locator("table.top-table tbody tr")).toHaveCount(0);
  await search.fill("");
  await expect(page.locator(".flame-matched")).toHaveText("");
  // main, idle, parse, tokenize, render, draw.
  await expect(page.locator("table.top-table tbody tr")).toHaveCount(6);
});

test("double-click focuses the frame under the pointer", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  const box = (await canvas.boundingBox())!;
  // Row 3, right part: draw (under render, the right 60%).
  await canvas.dblclick({ position: { x: box.width * 0.8, y: 3 * ROW + ROW / 2 } });
  await expect(page.locator(".breadcrumb button.current")).toHaveText("draw");
  await expect(page).toHaveURL(/zoom=main%3Brender%3Bdraw/);
  const selected = await page.evaluate(() => window.getSelection()?.toString() ?? "");
  expect(selected).toBe("");
});

test("the frame under the pointer is outlined over the canvas, without a redraw", async ({ page }) => {
  const canvas = await open(page, `query=${APP}.cpu`);
  const box = (await canvas.boundingBox())!;
  const pixels = () => canvas.evaluate((c: HTMLCanvasElement) => c.toDataURL());
  const before = await pixels();
  // Row 3, right part: draw (render's child, the right 60% of the width).
  await canvas.hover({ position: { x: box.width * 0.8, y: 3 * ROW + ROW / 2 } });
  const outline = page.locator(".flame-hover");
  await expect(outline).toBeVisible();
  const o = (await outline.boundingBox())!;
  expect(o.y - box.y).toBeCloseTo(3 * ROW, 0);
  expect((o.x - box.x) / box.width).toBeCloseTo(0.4, 1);
  expect((o.x + o.width - box.x) / box.width).toBeCloseTo(1, 1);
  // The canvas's own pixels did not change: the outline is an element above them.
  expect(await pixels()).toBe(before);
  await page.mouse.move(0, 0);
  await expect(outline).toHaveCount(0);
});
