import { expect, Page } from "@playwright/test";

/** Waits until the page's flamegraph is drawn and answers input. The explorer draws its graph
 * before the page hydrates (its status line is already empty then), so a click that follows
 * the drawing alone could land before the canvas has its handlers. */
export async function graphReady(page: Page) {
  await expect(page.locator(".flame-status")).toHaveText("");
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
}
