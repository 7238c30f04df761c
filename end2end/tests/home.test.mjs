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
  assert.ok(html.includes(`data-field="precision">${info.weights}<`), 'weights\' precision in the SSR HTML');
  assert.ok(html.includes(info.name), 'model name in the SSR HTML');
  assert.match(html, /\/pkg\/[0-9a-f]{16}\/safeedit\.js/, 'hydration script referenced under its version');
});

test('the page hydrates and the browser asks the engine for the New experiment page', async () => {
  const info = modelInfo();
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#model[data-hydrated="true"]', { timeout: 30_000 });
  // A client-side navigation: the new page's data comes from a server function called by the
  // browser.
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/models')),
    page.click('#start-new'),
  ]);
  assert.equal(response.status(), 200);
  const body = await response.json();
  assert.equal(body.loaded.n_layers, info.n_layers);
  assert.equal(body.loaded.name, info.name);
  await page.waitForSelector('#new-model');
  const line = await page.textContent('#new-model');
  assert.ok(line.includes(info.name), line);
  assert.match(line, /DINM preset \S+: learning rate [0-9.e-]+, \d+ steps, at most \d+ new tokens/);
  assert.equal(new URL(page.url()).pathname, '/new');
  // The preset's values stand in the empty fields.
  await page.waitForFunction(
    () => /^preset: \d+$/.test(document.querySelector('#launch-max-new')?.placeholder ?? ''),
  );
  for (const form of ['#eval-launcher', '#test-all-launcher', '#train-launcher', '#compare-launcher',
    '#analysis-launcher']) {
    assert.equal(await page.locator(form).count(), 1, form);
  }
  assert.equal(await page.title(), 'New experiment · SafeEdit Studio');
  assert.deepEqual(errors, []);
  await page.close();
});

test('an unknown page is a real 404', async () => {
  const res = await fetch(`${BASE}/no/such/page`);
  assert.equal(res.status, 404);
  assert.match(await res.text(), /Not found/);
});

test('the stylesheet and the wasm bundle are served, under their version for a year', async () => {
  const html = await (await fetch(`${BASE}/`)).text();
  const pkg = html.match(/\/pkg\/[0-9a-f]{16}\//)[0];
  for (const file of ['safeedit.css', 'safeedit.js', 'safeedit_bg.wasm']) {
    const res = await fetch(`${BASE}${pkg}${file}`);
    assert.equal(res.status, 200, pkg + file);
    assert.match(res.headers.get('cache-control'), /immutable/, pkg + file);
    const plain = await fetch(`${BASE}/pkg/${file}`);
    assert.equal(plain.status, 200, `/pkg/${file}`);
  }
});
