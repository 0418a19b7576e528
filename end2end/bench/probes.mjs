// What the browser benchmarks share: playwright-core and their options, the watcher that
// times an input to the first frame that shows its effect, and small statistics.
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// This folder.
const here = path.dirname(fileURLToPath(import.meta.url));

/** playwright-core's chromium, from end2end's node_modules (it launches Debian's /usr/bin/chromium). */
export const { chromium } = createRequire(path.join(here, "..", "package.json"))("playwright-core");

/** The command line's arguments, with `--name value` options taken out by `option`. */
export const args = process.argv.slice(2);

/** Takes `--name value` out of `args`: the value, or `dflt` when the option is not given. */
export function option(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args.splice(i, 2)[1] : dflt;
}

// Arms a watcher: the next `event` on `target` starts the clock; the first animation frame
// whose canvas differs from now stops it. Resolves with the latency in ms (and from when the
// page's listeners received the event, `fromDispatch`).
export async function armChange(page, target, event, canvasSelector = "canvas.flame-canvas") {
  await page.evaluate(
    ({ target, event, canvasSelector }) => {
      const canvas = document.querySelector(canvasSelector);
      const snap = () => {
        const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        return { w: canvas.width, h: canvas.height, d };
      };
      const before = snap();
      const differs = () => {
        if (canvas.width !== before.w || canvas.height !== before.h) return true;
        const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const a32 = new Uint32Array(d.buffer);
        const b32 = new Uint32Array(before.d.buffer);
        for (let i = 0; i < a32.length; i++) if (a32[i] !== b32[i]) return true;
        return false;
      };
      window.__change = new Promise((resolve) => {
        const el = document.querySelector(target);
        el.addEventListener(
          event,
          (ev) => {
            const start = ev.timeStamp;
            // When the page got it: the time before is the browser's input pipeline.
            const dispatched = performance.now();
            // Latency = start of the first animation-frame callback that sees new pixels
            // (performance.now(), not the frame's vsync timestamp, which may predate the draw).
            const tick = (ts) => {
              const now = performance.now();
              if (differs()) return resolve({ ms: now - start, vsync: ts - start, fromDispatch: now - dispatched });
              if (performance.now() - start > 10000) return resolve({ timeout: true });
              requestAnimationFrame(tick);
            };
            requestAnimationFrame(tick);
          },
          { once: true, capture: true },
        );
      });
    },
    { target, event, canvasSelector },
  );
}
export const changed = (page) => page.evaluate(() => window.__change);

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
export const settle = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50))));
