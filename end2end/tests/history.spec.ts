import { test, expect, Page, Locator, APIRequestContext } from "@playwright/test";
import { graphReady } from "./graph";

// Back and Forward within the explorer, and pages that log no errors.
//   APP: main 100 = idle 10 + parse 30 (tokenize 30) + render 60 (draw 60), left to right
const APP = `history${Date.now() % 100000}`;
const ROW = 18;

async function upload(request: APIRequestContext, name: string, body: string) {
  const response = await request.post(`/ingest?name=${encodeURIComponent(name)}`, { data: body });
  expect(response.status(), await response.text()).toBe(200);
}

test.beforeAll(async ({ request }) => {
  await upload(request, `${APP}.cpu`, "main;idle 10\nmain;parse;tokenize 30\nmain;render;draw 60\n");
});

async function open(page: Page): Promise<Locator> {
  await page.goto(`/explore?query=${APP}.cpu`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await graphReady(page);
  const canvas = page.locator("canvas.flame-canvas");
  await expect.poll(async () => (await canvas.boundingBox())?.height ?? 0).toBeGreaterThan(ROW);
  // A reload or another document would drop this.
  await page.evaluate(() => ((window as unknown as { samePage?: boolean }).samePage = true));
  return canvas;
}

const samePage = (page: Page) =>
  page.evaluate(() => (window as unknown as { samePage?: boolean }).samePage ?? false);
const historyLength = (page: Page) => page.evaluate(() => history.length);

test("Back and Forward undo and redo zooms and focus without leaving the explorer", async ({ page }) => {
  const canvas = await open(page);
  const current = page.locator(".breadcrumb button.current");
  const start = await historyLength(page);
  const box = (await canvas.boundingBox())!;

  // Four zooms, each its own entry: a click on render (row 2, right), a click on draw below
  // it, the breadcrumb back to the root, and the menu's Focus on parse (row 2, 10%..40%).
  await canvas.click({ position: { x: box.width * 0.8, y: 2 * ROW + 9 } });
  await expect(current).toHaveText("render");
  await expect(page).toHaveURL(/zoom=main%3Brender(&|$)/);
  await canvas.click({ position: { x: box.width * 0.5, y: 3 * ROW + 9 } });
  await expect(current).toHaveText("draw");
  await expect(page).toHaveURL(/zoom=main%3Brender%3Bdraw/);
  await page.locator(".breadcrumb button", { hasText: "all" }).click();
  await expect(current).toHaveText("all");
  await expect(page).not.toHaveURL(/zoom=/);
  await canvas.click({ button: "right", position: { x: box.width * 0.25, y: 2 * ROW + 9 } });
  await page.getByRole("menuitem", { name: "Focus" }).click();
  await expect(current).toHaveText("parse");
  await expect(page).toHaveURL(/zoom=main%3Bparse/);
  expect(await historyLength(page)).toBe(start + 4);

  // Back walks the zooms in reverse, URL and graph together; Forward redoes them.
  await page.goBack();
  await expect(current).toHaveText("all");
  await expect(page).not.toHaveURL(/zoom=/);
  await page.goBack();
  await expect(current).toHaveText("draw");
  await expect(page.locator(".breadcrumb button")).toHaveText(["all", "main", "render", "draw"]);
  await expect(page).toHaveURL(/zoom=main%3Brender%3Bdraw/);
  await page.goBack();
  await expect(current).toHaveText("render");
  await expect(page).toHaveURL(/zoom=main%3Brender(&|$)/);
  await page.goBack();
  await expect(current).toHaveText("all");
  await expect(page).not.toHaveURL(/zoom=/);
  await expect(page).toHaveURL(/\/explore\?/);
  await page.goForward();
  await expect(current).toHaveText("render");
  await expect(page).toHaveURL(/zoom=main%3Brender(&|$)/);
  await page.goForward();
  await expect(current).toHaveText("draw");
  // Restoring a zoom made no entry of its own: Forward still reaches the last one.
  await page.goForward();
  await page.goForward();
  await expect(current).toHaveText("parse");
  expect(await historyLength(page)).toBe(start + 4);
  expect(await samePage(page)).toBe(true);

  // A zoom after going back replaces what was ahead, as a link would.
  await page.goBack();
  await expect(current).toHaveText("all");
  await canvas.click({ position: { x: box.width * 0.05, y: 2 * ROW + 9 } });
  await expect(current).toHaveText("idle");
  expect(await historyLength(page)).toBe(start + 4);
  await page.goBack();
  await expect(current).toHaveText("all");
  await page.goForward();
  await expect(current).toHaveText("idle");

  // The entry's URL alone brings the zoom back, as a shared link or a reload does.
  await page.reload();
  await graphReady(page);
  await expect(current).toHaveText("idle");
});

test("a searched word is one history entry; Back and Forward restore the search", async ({ page }) => {
  await open(page);
  const search = page.getByLabel("Search functions");
  const matched = page.locator(".flame-matched");
  const rows = page.locator("table.top-table tbody td.name");
  const start = await historyLength(page);

  // Typed key by key, then Enter: one entry for the word.
  await search.click();
  await search.pressSequentially("tok");
  await search.press("Enter");
  await expect(matched).toHaveText("Matched 30 samples of 100 samples (30.0%)");
  await expect(rows).toHaveText(["tokenize"]);
  await expect(page).toHaveURL(/search=tok(&|$)/);
  expect(await historyLength(page)).toBe(start + 1);

  // Another word, typed over the first, then leaving the box: one more entry.
  await search.press("Control+a");
  await search.pressSequentially("draw");
  await search.press("Tab");
  await expect(matched).toHaveText("Matched 60 samples of 100 samples (60.0%)");
  await expect(page).toHaveURL(/search=draw(&|$)/);
  expect(await historyLength(page)).toBe(start + 2);

  await page.goBack();
  await expect(search).toHaveValue("tok");
  await expect(matched).toHaveText("Matched 30 samples of 100 samples (30.0%)");
  await expect(rows).toHaveText(["tokenize"]);
  await expect(page).toHaveURL(/search=tok(&|$)/);
  await page.goBack();
  await expect(search).toHaveValue("");
  await expect(matched).toHaveText("");
  await expect(rows).toHaveCount(6);
  await expect(page).not.toHaveURL(/search=/);
  await page.goForward();
  await expect(search).toHaveValue("tok");
  await expect(matched).toHaveText("Matched 30 samples of 100 samples (30.0%)");
  expect(await samePage(page)).toBe(true);

  // Typing after Back starts a new entry rather than rewriting the one gone back to.
  await search.click();
  await search.press("End");
  await search.pressSequentially("enize");
  await search.press("Enter");
  await expect(page).toHaveURL(/search=tokenize(&|$)/);
  await page.goBack();
  await expect(search).toHaveValue("tok");
  await expect(page).toHaveURL(/search=tok(&|$)/);
});

test("no page logs an error, and the icons every page links are there", async ({ page, request }) => {
  const pages = [
    "/",
    `/explore?query=${APP}.cpu`,
    `/diff?leftQuery=${APP}.cpu&rightQuery=${APP}.cpu`,
    "/open",
    "/no/such/page",
  ];
  for (const path of pages) {
    const errors: string[] = [];
    const onConsole = (m: import("@playwright/test").ConsoleMessage) => {
      // The "not found" page is itself answered 404, and Chromium says so: that one is expected.
      const itself = path === "/no/such/page" && m.location().url.endsWith(path);
      if (m.type() === "error" && !itself) errors.push(`console: ${m.text()} (${m.location().url})`);
    };
    const onPageError = (e: Error) => errors.push(`page: ${e.message}`);
    const onResponse = (r: import("@playwright/test").Response) => {
      if (r.status() >= 400 && !(path === "/no/such/page" && r.url().endsWith(path))) {
        errors.push(`response: ${r.status()} ${r.url()}`);
      }
    };
    page.on("console", onConsole);
    page.on("pageerror", onPageError);
    page.on("response", onResponse);
    await page.goto(path);
    await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
    if (path.startsWith("/explore") || path.startsWith("/diff")) {
      await expect(page.locator(".flame-status").first()).toHaveText("");
    }
    // Whatever the page fetches after hydrating has answered.
    await page.waitForLoadState("networkidle");

    const icons = await page.locator('head link[rel="icon"]').evaluateAll((links) =>
      links.map((l) => (l as HTMLLinkElement).href),
    );
    expect(icons.length, `${path} links an icon`).toBeGreaterThan(0);
    for (const href of icons) {
      const response = await request.get(href);
      expect(response.status(), href).toBe(200);
      expect(response.headers()["content-type"], href).toMatch(/^image\//);
    }
    page.off("console", onConsole);
    page.off("pageerror", onPageError);
    page.off("response", onResponse);
    expect(errors, path).toEqual([]);
  }
});
