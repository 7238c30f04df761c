// A share link's first load in Chromium over a throttled network (issue 18 §5): a fresh browser
// context (empty cache) per page, the network emulated through the DevTools protocol, and from the
// navigation's start: HTML and CSS/JS parsed (DOMContentLoaded), the WebAssembly bundle received,
// and for the home page the app hydrated. Prints one JSON line per page.
// Usage: BASE_URL=... PAGES="/ /evals/SLUG" MBIT=20 RTT_MS=40 node end2end/bench/first-load.mjs
import { launch, BASE } from '../tests/helpers.mjs';

const mbit = Number(process.env.MBIT ?? 20);
const rtt = Number(process.env.RTT_MS ?? 40);
const pages = (process.env.PAGES ?? '/').split(/\s+/).filter(Boolean);
const repeats = Number(process.env.REPEATS ?? 3);

const browser = await launch();
try {
  for (const path of pages) {
    const runs = [];
    for (let i = 0; i < repeats; i++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: rtt,
        downloadThroughput: (mbit * 1e6) / 8,
        uploadThroughput: (mbit * 1e6) / 8,
      });
      await page.goto(BASE + path, { waitUntil: 'domcontentloaded' });
      await page.waitForFunction(
        () => performance.getEntriesByType('resource').some((r) => r.name.endsWith('.wasm') && r.responseEnd > 0),
        null, { timeout: 60_000, polling: 20 },
      );
      if (path === '/') {
        await page.waitForSelector('#model[data-hydrated="true"]', { timeout: 60_000 });
      }
      const timing = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const resources = performance.getEntriesByType('resource');
        const wasm = resources.find((r) => r.name.endsWith('.wasm'));
        const bytes = nav.transferSize + resources.reduce((s, r) => s + r.transferSize, 0);
        return {
          dom_content_loaded_s: nav.domContentLoadedEventEnd / 1000,
          wasm_received_s: wasm.responseEnd / 1000,
          ready_s: performance.now() / 1000,
          transferred_bytes: bytes,
          wasm_transferred_bytes: wasm.transferSize,
        };
      });
      runs.push(timing);
      await context.close();
    }
    const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
    console.log(JSON.stringify({
      page: path, mbit, rtt_ms: rtt, runs: runs.length,
      dom_content_loaded_s: median('dom_content_loaded_s'),
      wasm_received_s: median('wasm_received_s'),
      ready_s: median('ready_s'),
      transferred_bytes: median('transferred_bytes'),
      wasm_transferred_bytes: median('wasm_transferred_bytes'),
    }));
  }
} finally {
  await browser.close();
}
