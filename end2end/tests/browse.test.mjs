// Browsing SafeEdit: overview -> filtered table (filters live in the URL) -> search, sort,
// pages -> an instance's permalink; server-side rendering of shared links; 404s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const rowIds = (page) => page.$$eval('table.instances tbody tr', (rows) => rows.map((r) => r.dataset.id));

test('a filtered view is a link that renders fully on the server', async () => {
  const res = await fetch(`${BASE}/instances?split=test&category=bias&per_page=200`);
  assert.equal(res.status, 200);
  const html = await res.text();
  const total = Number(html.match(/data-total="(\d+)"/)[1]);
  assert.ok(total > 0 && total < 144, `bias is a strict subset of the sample (${total})`);
  const rows = html.match(/<tr data-id="/g) ?? [];
  assert.equal(rows.length, total, 'every matching row is in the HTML');
  const tags = html.match(/class="tag cat-[a-z]+"/g) ?? [];
  assert.ok(tags.every((t) => t === 'class="tag cat-bias"'), 'only bias rows');
});

test('browse, filter, search, sort, page and open an instance in the browser', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#model[data-hydrated="true"]', { timeout: 30_000 });

  // Overview -> the category's instances.
  const link = page.locator('#overview a[data-split="test"][data-category="illegal"]');
  const expected = Number(await link.textContent());
  assert.ok(expected > 0);
  await link.click();
  await page.waitForURL(/\/instances\?split=test&category=illegal/);
  await page.waitForSelector(`#result-summary[data-total="${expected}"]`);
  assert.equal(await page.locator('table.instances tbody tr').count(), Math.min(expected, 25));

  // Search within the category: the query lands in the URL and narrows the rows.
  const question = await page.locator('table.instances tbody tr td.question a').first().textContent();
  const word = question.split(/\s+/).sort((a, b) => b.length - a.length)[0].replace(/[^\p{L}\p{N}]/gu, '');
  await page.fill('#f-q', word);
  await page.click('#f-apply');
  await page.waitForURL((u) => u.searchParams.get('q') === word && u.searchParams.get('category') === 'illegal');
  // Only the filters that are set are in the link.
  assert.equal(new URL(page.url()).search, `?split=test&category=illegal&q=${encodeURIComponent(word)}`);
  // While the new page loads the table (and its summary) is replaced by the loading note.
  await page.waitForFunction((n) => {
    const summary = document.querySelector('#result-summary');
    return summary !== null && Number(summary.dataset.total) <= n;
  }, expected);
  const found = Number(await page.getAttribute('#result-summary', 'data-total'));
  assert.ok(found >= 1, `the search for ${word} finds the row it came from`);

  // Reset to all test instances, sort by prompt length (descending on a second click), page on.
  await page.goto(`${BASE}/instances?split=test`);
  await page.click('th a[data-sort="length"]');
  await page.waitForURL(/sort=length/);
  await page.click('th a[data-sort="length"]');
  await page.waitForURL(/sort=length&desc=1/);
  await page.waitForSelector('th a[data-sort="length"]:has-text("▼")');
  const lengths = await page.$$eval('table.instances tbody tr td:last-child', (tds) => tds.map((t) => Number(t.textContent)));
  assert.deepEqual(lengths, [...lengths].sort((a, b) => b - a), 'longest prompts first');
  const first = await rowIds(page);
  await page.click('#page-next');
  await page.waitForURL(/page=2/);
  await page.waitForFunction((ids) => {
    const now = [...document.querySelectorAll('table.instances tbody tr')].map((r) => r.dataset.id);
    return now.length > 0 && now[0] !== ids[0];
  }, first);

  // An instance's permalink.
  const id = (await rowIds(page))[0];
  await page.click(`table.instances tbody tr[data-id="${id}"] td.question a`);
  await page.waitForURL(new RegExp(`/instances/test/${id}$`));
  await page.waitForSelector('#instance-title');
  assert.equal(await page.textContent('#instance-title'), `Instance ${id} (test)`);
  for (const sel of ['#question', '#adversarial-prompt', '#safe-generation', '#unsafe-generation',
    '#dg-onlyq', '#dg-othera', '#dg-otherq', '#dg-otheraq', '#knowledge-prompt', '#knowledge-answer']) {
    assert.ok(await page.locator(sel).count() === 1, `${sel} shown`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('an instance link opens complete in a fresh browser context', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.route('**/*.wasm', (route) => route.abort()); // no hydration: server HTML only
  await page.goto(`${BASE}/instances/editing/2`);
  assert.equal(await page.textContent('#instance-title'), 'Instance 2 (editing)');
  assert.ok((await page.textContent('#safe-generation')).length > 20);
  await context.close();
});

test('unknown instances and splits are real 404s / clear errors', async () => {
  const missing = await fetch(`${BASE}/instances/test/999999`);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /Not found/);
  const badSplit = await fetch(`${BASE}/instances?split=nope`);
  assert.match(await badSplit.text(), /unknown split `nope`/);
  const api = await fetch(`${BASE}/api/instances`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": {"split": 3}}',
  });
  assert.ok(api.status >= 400 && api.status < 500, `malformed input is a client error (${api.status})`);
});
