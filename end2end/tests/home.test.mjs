// The first page proves the chain SSR -> hydrate -> server function -> engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, modelInfo, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the server renders the loaded model without JavaScript', async () => {
  const info = modelInfo();
  const res = await fetch(`${BASE}/`);
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.ok(html.includes(`data-field="layers">${info.n_layers}<`), 'layer count in the SSR HTML');
  assert.ok(html.includes(`(${info.n_params})`), 'parameter count in the SSR HTML');
  assert.ok(html.includes(info.name), 'model name in the SSR HTML');
  assert.ok(html.includes('/pkg/safeedit.js'), 'hydration script referenced');
});

test('the page hydrates and asks the engine again from the browser', async () => {
  const info = modelInfo();
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#model[data-hydrated="true"]', { timeout: 30_000 });
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/model_info')),
    page.click('#ask-engine'),
  ]);
  assert.equal(response.status(), 200);
  const body = await response.json();
  assert.equal(body.n_layers, info.n_layers);
  assert.equal(body.n_params, info.n_params);
  await page.waitForFunction(() => document.querySelector('#ask-count')?.textContent === '1');
  assert.equal(await page.textContent('[data-field="layers"]'), String(info.n_layers));
  assert.equal(await page.textContent('[data-field="name"]'), info.name);
  assert.deepEqual(errors, []);
  await page.close();
});

test('an unknown page is a real 404', async () => {
  const res = await fetch(`${BASE}/no/such/page`);
  assert.equal(res.status, 404);
  assert.match(await res.text(), /Not found/);
});

test('the stylesheet and the wasm bundle are served', async () => {
  for (const path of ['/pkg/safeedit.css', '/pkg/safeedit.js', '/pkg/safeedit_bg.wasm']) {
    const res = await fetch(`${BASE}${path}`);
    assert.equal(res.status, 200, path);
  }
});
