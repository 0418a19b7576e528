import { test, expect, Page, APIRequestContext } from "@playwright/test";
import { graphReady } from "./graph";

// One app, two label sets and two moments within the last hour:
//   env=prod: main;early 5 (40 minutes ago)      env=dev: main;late 3 (10 minutes ago)
const APP = `lab${Date.now() % 100000}`;

async function upload(request: APIRequestContext, name: string, body: string, from: string, until: string) {
  const url = `/ingest?name=${encodeURIComponent(name)}&from=${from}&until=${until}`;
  const response = await request.post(url, { data: body });
  expect(response.status(), await response.text()).toBe(200);
}

function names(page: Page) {
  return page.locator("table.top-table tbody td.name");
}

test.beforeAll(async ({ request }) => {
  await upload(request, `${APP}.cpu{env=prod}`, "main;early 5\n", "now-40m", "now-39m");
  await upload(request, `${APP}.cpu{env=dev}`, "main;late 3\n", "now-10m", "now-9m");
});

test("label filter narrows the result and the chip removes it", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu`);
  await expect(names(page)).toHaveText(["main", "early", "late"]);
  await page.getByLabel("Filter by label").selectOption("env");
  await page.getByLabel("Label value").selectOption("dev");
  await expect(page).toHaveURL(/query=.*env%3D%22dev%22/);
  await expect(names(page)).toHaveText(["main", "late"]);
  await expect(page.locator(".summary")).toHaveText("3 samples in total");
  await page.getByRole("link", { name: 'Remove filter env="dev"' }).click();
  await expect(names(page)).toHaveText(["main", "early", "late"]);
});

test("dragging across the timeline re-queries that range", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu&from=now-1h&until=now`);
  await expect(names(page)).toHaveText(["main", "early", "late"]);
  const plot = page.locator(".timeline-plot");
  const box = (await plot.boundingBox())!;
  // The last 40% of the hour holds only the upload from 10 minutes ago.
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2, { steps: 4 });
  await page.mouse.move(box.x + box.width - 1, box.y + box.height / 2, { steps: 4 });
  await page.mouse.up();
  await expect(page).toHaveURL(/from=\d+&until=\d+/);
  await expect(names(page)).toHaveText(["main", "late"]);
  await graphReady(page);
});

test("time presets, views and the sandwich are links that reproduce the view", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu`);
  await page.getByRole("link", { name: "15m", exact: true }).click();
  await expect(page).toHaveURL(/from=now-15m/);
  await expect(names(page)).toHaveText(["main", "late"]);

  await page.getByRole("link", { name: "Flame", exact: true }).click();
  await expect(page).toHaveURL(/orient=flame/);
  await graphReady(page);

  await page.getByRole("link", { name: "late", exact: true }).click();
  await expect(page).toHaveURL(/view=sandwich&.*fn=late/);
  await expect(page.getByRole("heading", { name: "Callers of late" })).toBeVisible();
  await expect(page.locator("canvas.flame-canvas")).toHaveCount(2);

  // The URL alone reproduces the view in a fresh page.
  const url = page.url();
  const fresh = await page.context().newPage();
  await fresh.goto(url);
  await expect(fresh.getByRole("heading", { name: "Callees of late" })).toBeVisible();
  await expect(fresh.locator(".time-range a.active")).toHaveText("15m");
});

test("a frame's menu opens the sandwich view", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu`);
  await graphReady(page);
  const canvas = page.locator("canvas.flame-canvas");
  const box = (await canvas.boundingBox())!;
  // Row 2: early (5) then late (3) under main.
  await canvas.click({ button: "right", position: { x: box.width * 0.3, y: 2 * 18 + 9 } });
  await page.getByRole("menuitem", { name: "Sandwich view" }).click();
  await expect(page).toHaveURL(/fn=early/);
});

test("links within the explorer change the view without a reload; Back restores it; other pages load", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu`);
  await graphReady(page);
  // A reload or a new document would drop this.
  await page.evaluate(() => ((window as unknown as { samePage?: boolean }).samePage = true));
  const samePage = () => page.evaluate(() => (window as unknown as { samePage?: boolean }).samePage ?? false);

  await page.getByRole("link", { name: "15m", exact: true }).click();
  await expect(names(page)).toHaveText(["main", "late"]);
  await page.getByRole("link", { name: "Table", exact: true }).click();
  await expect(page).toHaveURL(/view=table/);
  await expect(page.locator("canvas.flame-canvas")).toHaveCount(0);
  expect(await samePage()).toBe(true);

  await page.goBack();
  await expect(page).not.toHaveURL(/view=table/);
  await expect(page.locator("canvas.flame-canvas")).toHaveCount(1);
  await page.goBack();
  await expect(page).not.toHaveURL(/from=now-15m/);
  await expect(names(page)).toHaveText(["main", "early", "late"]);
  expect(await samePage()).toBe(true);

  await page.getByRole("link", { name: "Compare", exact: true }).click();
  await expect(page).toHaveURL(/\/diff$/);
  await expect(page.getByRole("heading", { name: "Compare" })).toBeVisible();
  expect(await samePage()).toBe(false);
});

test("the table shows its rows a page at a time; the search pages what it keeps", async ({ page, request }) => {
  // 250 leaves under main: fn000 has 1 sample, fn249 has 250.
  const wide = `${APP}wide`;
  const lines = Array.from({ length: 250 }, (_, i) => `main;fn${String(i).padStart(3, "0")} ${i + 1}\n`).join("");
  await upload(request, `${wide}.cpu`, lines, "now-5m", "now-4m");
  await page.goto(`/explore?query=${wide}.cpu`);
  const pages = page.locator("nav.table-pages");
  // The server renders the first page only.
  await expect(page.locator("table.top-table tbody tr")).toHaveCount(100);
  await expect(pages).toContainText("Rows 1–100 of 251");
  await expect(names(page).nth(1)).toHaveText("fn249");
  await graphReady(page);
  await expect(page.getByRole("button", { name: "← Previous" })).toBeDisabled();

  await page.getByRole("button", { name: "Next →" }).click();
  await expect(pages).toContainText("Rows 101–200 of 251");
  await expect(names(page).first()).toHaveText("fn150");
  await page.getByRole("button", { name: "Next →" }).click();
  await expect(pages).toContainText("Rows 201–251 of 251");
  await expect(page.locator("table.top-table tbody tr")).toHaveCount(51);
  await expect(names(page).last()).toHaveText("fn000");
  await expect(page.getByRole("button", { name: "Next →" })).toBeDisabled();
  await page.getByRole("button", { name: "← Previous" }).click();
  await expect(names(page).first()).toHaveText("fn150");

  // A search starts again from its first page; ten matches need no pages.
  await page.getByLabel("Search functions").fill("fn00");
  await expect(names(page)).toHaveText(["fn009", "fn008", "fn007", "fn006", "fn005", "fn004", "fn003", "fn002", "fn001", "fn000"]);
  await expect(pages).toHaveCount(0);
  await page.getByLabel("Search functions").fill("fn");
  await expect(pages).toContainText("Rows 1–100 of 250");
  await expect(names(page).first()).toHaveText("fn249");
});

test("the graph is painted before the page hydrates, and the hydrated page takes it over", async ({ page }) => {
  // Watched from the first frame: whether a frame showed the drawn graph, with the loading
  // line gone, while the page was not hydrated yet.
  await page.addInitScript(() => {
    const seen = window as unknown as { paintedBeforeHydration?: boolean; draws: number };
    // Every picture of the graph is put on the canvas in one call.
    seen.draws = 0;
    const put = CanvasRenderingContext2D.prototype.putImageData;
    CanvasRenderingContext2D.prototype.putImageData = function (...args: Parameters<typeof put>) {
      seen.draws++;
      return put.apply(this, args);
    };
    const look = () => {
      if (document.body?.hasAttribute("data-hydrated")) return;
      const canvas = document.querySelector<HTMLCanvasElement>("canvas.flame-canvas");
      const status = document.querySelector(".flame-status");
      // The canvas gets its height (and its 2D context) when it is first drawn.
      if (canvas?.style.height && status?.textContent === "") {
        const [r, g, b] = canvas.getContext("2d")!.getImageData(1, 2, 1, 1).data;
        // The root frame fills the first row in a warm colour; the background (white in the
        // light theme) and a canvas never drawn (black) are grey.
        seen.paintedBeforeHydration = !(r === g && g === b);
      }
      requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
  });
  await page.goto(`/explore?query=${APP}.cpu&zoom=main`);
  await graphReady(page);
  const seen = () =>
    page.evaluate(() => {
      const { paintedBeforeHydration, draws } = window as unknown as { paintedBeforeHydration?: boolean; draws: number };
      return { paintedBeforeHydration, draws };
    });
  expect((await seen()).paintedBeforeHydration).toBe(true);
  // The hydrated graph is the one drawn, zoomed as the URL says, and answers input; the same
  // picture is not drawn again (two frames later, the canvas's width has been reported).
  await expect(page.locator(".breadcrumb")).toContainText("main");
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  expect((await seen()).draws).toBe(1);
  const canvas = page.locator("canvas.flame-canvas");
  const box = (await canvas.boundingBox())!;
  // Row 2: early (5) then late (3) under main.
  await canvas.click({ position: { x: box.width * 0.3, y: 2 * 18 + 9 } });
  await expect(page).toHaveURL(/zoom=main%3Bearly/);
  expect((await seen()).draws).toBeGreaterThan(1);
});

test("a large graph is first painted from the frames it shows, then the whole tree takes over", async ({ page, request }) => {
  // One heavy call chain and 20,000 light calls under main, each with callees: at the root's
  // zoom every light call is far under a pixel, so nothing below them can show.
  const app = `${APP}large`;
  let folded = "main;work;deep;deeper;deepest 1000000\n";
  for (let i = 0; i < 20000; i++) folded += `main;leaf${i};below${i};bottom${i} 1\n`;
  await upload(request, `${app}.cpu`, folded, "now-5m", "now-4m");
  const trees: { url: string; part?: string }[] = [];
  page.on("response", (response) => {
    if (response.url().includes("format=tree")) trees.push({ url: response.url(), part: response.headers()["x-kiln-tree-part"] });
  });
  await page.goto(`/explore?query=${app}.cpu`);
  await graphReady(page);
  // The first fetch asked for what the window's width shows, and got the part.
  await expect.poll(() => trees.length).toBe(2);
  expect(trees[0].url).toMatch(/visibleWidth=\d+/);
  expect(trees[0].part).toBe("visible");
  // Then the whole tree replaced it: a search finds a function only the whole tree holds.
  expect(trees[1].url).not.toContain("visibleWidth");
  expect(trees[1].part).toBe("whole");
  await page.getByLabel("Search functions").fill("bottom17");
  await expect(page.locator(".flame-matched")).toHaveText(/^Matched 1,111 samples of 1,020,000 samples/);
});

test("a graph taller than the window draws the rows in view first and the rest after the frame", async ({ page, request }) => {
  // One stack 80 frames deep under main: 82 rows with the total's, a canvas twice the window's
  // height, below the toolbar.
  const app = `${APP}deep`;
  const frames = Array.from({ length: 80 }, (_, i) => `f${i + 1}`);
  await upload(request, `${app}.cpu`, `main;${frames.join(";")} 10\n`, "now-5m", "now-4m");
  // Every picture handed to the canvas, as the rows (dirty rectangle) it covers.
  await page.addInitScript(() => {
    const seen = window as unknown as { puts: number[][] };
    seen.puts = [];
    const put = CanvasRenderingContext2D.prototype.putImageData;
    CanvasRenderingContext2D.prototype.putImageData = function (...args: Parameters<typeof put>) {
      const [image, , , , y, , height] = args as unknown as [ImageData, number, number, number, number, number, number];
      seen.puts.push([y ?? 0, y === undefined ? image.height : y + height]);
      return put.apply(this, args);
    };
  });
  await page.goto(`/explore?query=${app}.cpu`);
  await graphReady(page);
  const canvas = page.locator("canvas.flame-canvas");
  await expect(canvas).toHaveAttribute("data-picture", / rows 0\.\.82$/);
  const puts = () => page.evaluate(() => (window as unknown as { puts: number[][] }).puts);
  // The first picture stopped short of the canvas's end; a later one reached it.
  const height = await canvas.evaluate((c: HTMLCanvasElement) => c.height);
  const first = (await puts())[0];
  expect(first[1]).toBeLessThan(height);
  expect((await puts()).some(([, end]) => end === height)).toBe(true);

  /** The pixel in the middle of row `row`, as [r, g, b]. */
  const pixel = (row: number) =>
    canvas.evaluate((c: HTMLCanvasElement, row: number) => {
      const ratio = c.width / c.clientWidth;
      const [r, g, b] = c.getContext("2d")!.getImageData(Math.floor(c.width / 2), Math.floor((row * 18 + 4) * ratio), 1, 1).data;
      return [r, g, b];
    }, row);
  // The deepest frame, drawn after the frame, is a frame's colour: neither the white
  // background nor the black of a canvas never drawn.
  const [r, g, b] = await pixel(81);
  expect(r === g && g === b).toBe(false);
  // A search repaints the rows in view at once and the others after: the deepest frame
  // matches and takes the search's purple.
  await page.getByLabel("Search functions").fill("f80");
  await expect.poll(async () => {
    const [r, g, b] = await pixel(81);
    return b > g && r > g;
  }).toBe(true);
});
