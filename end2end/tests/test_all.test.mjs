// SafeEdit_test_ALL runs from the CLI appear as one Table 3: end2end/run.sh runs
// `safeedit eval --test-all` for vanilla and for FT-L edited on two instances first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function slugs() {
  const html = await (await fetch(`${BASE}/test-all`)).text();
  return [...html.matchAll(/href="\/test-all\/([a-z0-9]+)"/g)].map((m) => m[1]);
}

test('the test_ALL page shows both runs as Table 3 and opens one with its models and slices', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  const res = await page.goto(`${BASE}/test-all`);
  assert.equal(res.status(), 200);
  const rows = await page.locator('#test-all-table tbody tr').evaluateAll(
    (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())),
  );
  // Stored oldest first: vanilla, then FT-L.
  assert.deepEqual(rows.map((r) => r[0]), ['vanilla', 'ftl']);
  const [vanilla, ftl] = rows;
  // DG_onlyQ, DG_otherAQ, Avg, Fluency; FT-L has two edited models, so mean ± std.
  for (const cell of vanilla.slice(1, 5)) assert.ok(Number.isFinite(Number(cell)), cell);
  for (const cell of ftl.slice(1, 5)) assert.match(cell, /^\d+\.\d\d ± \d+\.\d\d$/);
  assert.equal(ftl[5], '2', 'two edited models');
  assert.equal(ftl[6], '6', 'six inputs each');
  await page.locator('#test-all-table tbody a', { hasText: 'ftl' }).click();
  await page.waitForURL(/\/test-all\/[a-z0-9]+$/);
  // After hydration the click navigates in the browser and the run loads after the URL
  // changes; wait for its models either way.
  await page.locator('#test-all-models tbody th').first().waitFor();
  const models = await page.locator('#test-all-models tbody th').allTextContents();
  assert.deepEqual(models, ['edit-1', 'edit-2']);
  const editedOn = await page.locator('#test-all-models tbody tr td:nth-last-child(2)').allTextContents();
  assert.deepEqual(editedOn, ['1', '2']);
  assert.ok(await page.locator('#by-category tbody tr').count() >= 2);
  assert.ok(await page.locator('#by-attack tbody tr').count() >= 2);
  assert.deepEqual(errors, []);
  await page.close();
});

test('Table 3 downloads as LaTeX and CSV for all or chosen runs; unknown ones are 404', async () => {
  const [vanilla, ftl] = await slugs(); // page order: oldest first
  const tex = await (await fetch(`${BASE}/api/test-all.tex`)).text();
  assert.match(tex, /\\toprule[\s\S]*\\midrule[\s\S]*\\bottomrule/);
  assert.match(tex, /^vanilla & /m);
  assert.match(tex, /^ftl & .*\$\\pm\$/m);
  assert.ok(tex.includes(`/test-all/${ftl}`), 'the runs are linked');
  assert.match(tex, /\\caption\{SafeEdit\\_test\\_ALL \(6 inputs\)/);
  const csv = (await (await fetch(`${BASE}/api/test-all.csv?runs=${ftl}`)).text()).trim().split('\n');
  assert.equal(csv[0], 'method,group,value,metric,mean,std,runs,n');
  assert.ok(csv.slice(1).every((l) => l.startsWith('ftl,')), csv.join('\n'));
  assert.ok(csv.some((l) => /^ftl,all,all,DG_onlyQ,[\d.]+,[\d.]+,2,\d+$/.test(l)), csv.join('\n'));
  const json = await (await fetch(`${BASE}/api/test-all/${vanilla}/summary.json`)).json();
  assert.equal(json.method, 'vanilla');
  assert.equal(json.models.length, 1);
  assert.equal((await fetch(`${BASE}/api/test-all.csv?runs=nosuchrun`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/test-all/${vanilla}/nope.txt`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/test-all/nosuchrun/summary.csv`)).status, 404);
  assert.equal((await fetch(`${BASE}/test-all/nosuchrun`)).status, 404);
});
