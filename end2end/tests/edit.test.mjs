// Detoxify an instance from the browser: the edit panel -> the job page (progress over SSE) ->
// the run page (a shareable link that renders fully on the server) -> the downloads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

let runUrl;

test('detoxify an instance, watch the progress and open the run', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/instances/editing/2`);
  await page.waitForSelector('#detoxify-button:not([disabled])', { timeout: 30_000 });
  // Few steps and short answers keep the test quick on a CPU; the defaults are the preset's.
  await page.click('#detoxify summary');
  await page.fill('#hp-steps', '2');
  await page.fill('#hp-max-new', '8');
  await page.click('#detoxify-button');
  await page.waitForURL(/\/jobs\/[a-z0-9]+$/);
  await page.waitForSelector('#run-link', { timeout: 240_000 });
  // The progress arrived over SSE: the located layer and both steps are on the page.
  const layer = Number(await page.getAttribute('#located-layer', 'data-layer'));
  assert.ok(Number.isInteger(layer) && layer >= 0);
  assert.equal(await page.locator('#job-steps li').count(), 2);
  assert.equal(await page.getAttribute('#job-status', 'data-status'), 'done');
  await page.click('#run-link');
  await page.waitForURL(/\/runs\/[a-z0-9]{10}$/);
  runUrl = page.url();
  await page.waitForSelector('#run-title');
  assert.equal(await page.textContent('#run-title'), 'DINM edit of editing instance 2');
  assert.equal(await page.locator('section.comparison').count(), 1, 'editing instances have DS only');
  assert.equal(await page.locator('#run-metrics tbody tr').count(), 1);
  assert.equal(Number(await page.getAttribute('#located-layer', 'data-layer')), layer);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the run link opens complete in a fresh browser without JavaScript', async () => {
  assert.ok(runUrl, 'the previous test produced a run');
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const res = await page.goto(runUrl);
  assert.equal(res.status(), 200);
  assert.equal(await page.textContent('#run-title'), 'DINM edit of editing instance 2');
  assert.match(await page.textContent('#run-provenance'), /SmolLM2/);
  await context.close();
});

test('downloads: run JSON, generations JSONL and the delta as safetensors', async () => {
  const slug = runUrl.split('/').pop();
  const run = await (await fetch(`${BASE}/api/runs/${slug}/run.json`)).json();
  assert.equal(run.slug, slug);
  assert.equal(run.request.id, 2);
  assert.equal(run.outcome.steps.length, 2);
  const lines = (await (await fetch(`${BASE}/api/runs/${slug}/generations.jsonl`)).text()).trim().split('\n');
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]).kind, 'DS');
  const delta = Buffer.from(await (await fetch(`${BASE}/api/runs/${slug}/delta.safetensors`)).arrayBuffer());
  const headerLen = Number(delta.readBigUInt64LE(0));
  const header = JSON.parse(delta.subarray(8, 8 + headerLen).toString('utf8'));
  const name = run.outcome.tensor;
  assert.deepEqual(header[name].dtype, 'F32');
  assert.equal(delta.length, 8 + headerLen + 4 * header[name].shape[0] * header[name].shape[1]);
  const runs = await (await fetch(`${BASE}/runs`)).text();
  assert.ok(runs.includes(`/runs/${slug}`), 'the runs list links the run');
});

test('unknown runs and jobs are 404s', async () => {
  assert.equal((await fetch(`${BASE}/runs/nosuchrun0`)).status, 404);
  assert.equal((await fetch(`${BASE}/jobs/nosuchjob000`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/runs/nosuchrun0/run.json`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/jobs/nosuchjob000/events`)).status, 404);
});

test('an edit request naming no instance or a bad hyperparameter is a 400 that says why', async () => {
  const post = (request) => fetch(`${BASE}/api/start_edit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ request }),
  });
  let res = await post({ split: 'test', id: 99999, overrides: {} });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /no instance 99999 in split `test`/);
  res = await post({ split: 'editing', id: 2, overrides: { steps: 0 } });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /steps must be 1..=100, got 0/);
  res = await post({ split: 'editing', id: 2, overrides: { layer: 'x' } });
  assert.equal(res.status, 400);
});

test('re-run with this config reproduces the run exactly', async () => {
  assert.ok(runUrl, 'the first test produced a run');
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(runUrl);
  // The button is disabled until the page has hydrated.
  await page.waitForSelector('#rerun:not([disabled])', { timeout: 30_000 });
  await page.click('#rerun');
  await page.waitForURL(/\/jobs\/[a-z0-9]+$/, { timeout: 30_000 });
  await page.waitForSelector('#run-link', { timeout: 240_000 });
  const again = (await page.getAttribute('#run-link', 'href')).split('/').pop();
  const first = runUrl.split('/').pop();
  assert.notEqual(again, first, 'a re-run is a new run with its own link');
  const load = async (slug) => (await (await fetch(`${BASE}/api/runs/${slug}/run.json`)).json());
  const [a, b] = [await load(first), await load(again)];
  assert.deepEqual(b.request, a.request);
  assert.deepEqual(b.config, a.config);
  for (const key of ['layer', 'distances', 'steps', 'delta_norm', 'comparisons']) {
    assert.deepEqual(b.outcome[key], a.outcome[key], `outcome.${key}`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});
