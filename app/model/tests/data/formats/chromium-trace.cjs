// Writes chromium.trace.json: `NODE_PATH=end2end/node_modules node chromium-trace.cjs` (Playwright
// with Debian's Chromium), tracing a page that runs fib and forces layouts.
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--headless', '--disable-gpu'] });
  const page = await browser.newPage();
  await page.setContent('<html><body><div id=x></div></body></html>');
  await browser.startTracing(page, { path: 'chromium.trace.json', categories: ['devtools.timeline', 'disabled-by-default-v8.cpu_profiler', 'v8.execute', 'blink.user_timing'] });
  await page.evaluate(() => {
    function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
    function layout() { const x = document.getElementById('x'); for (let i = 0; i < 200; i++) { x.textContent = 'v' + i; x.getBoundingClientRect(); } }
    const end = performance.now() + 150; let s = 0;
    while (performance.now() < end) { s += fib(20); layout(); }
    performance.mark('done'); return s;
  });
  await page.waitForTimeout(100);
  await browser.stopTracing();
  await browser.close();
})();
