// Mechanism analyses from the CLI appear on the Mechanisms page: end2end/run.sh runs
// `safeedit analyze` (vanilla vs DINM on the default model) into the server's database first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function firstSlug() {
  const html = await (await fetch(`${BASE}/mechanisms`)).text();
  const m = html.match(/href="\/mechanisms\/([a-z0-9]+)"/);
  assert.ok(m, html);
  return m[1];
}

test('the Mechanisms page lists the stored analysis and opens it with table and figures', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  const res = await page.goto(`${BASE}/mechanisms`);
  assert.equal(res.status(), 200);
  const methods = await page.locator('#analyses tbody td').nth(3).textContent();
  assert.equal(methods, 'dinm');
  await page.locator('#analyses tbody a').first().click();
  await page.waitForURL(/\/mechanisms\/[a-z0-9]+$/);
  // After hydration the click navigates in the browser and the analysis loads after the URL
  // changes; wait for its table either way.
  await page.locator('#mechanism-table tbody tr').first().waitFor();
  const rows = await page.locator('#mechanism-table tbody tr').evaluateAll(
    (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())),
  );
  assert.equal(rows.length, 1);
  assert.equal(rows[0][0], 'dinm');
  assert.equal(rows[0].at(-1), '1', 'one edit averaged');
  for (const cell of rows[0].slice(1, 5)) assert.ok(cell === '–' || Number.isFinite(Number(cell)), cell);
  // Four figures, drawn inline by the server (SVG), each with its downloads.
  await page.locator('figure.chart svg').nth(3).waitFor();
  for (const chart of ['toxicity', 'shift', 'projection', 'cosines']) {
    assert.equal(await page.locator(`#fig-${chart} svg`).count(), 1, chart);
    assert.equal(await page.locator(`#fig-${chart} a.download`).count(), 6, chart);
  }
  assert.match(await page.textContent('#probe'), /held-out accuracy/);
  assert.ok(await page.locator('#lens tbody tr').count() >= 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test('an analysis downloads as CSV, LaTeX, JSON and paper figures; unknown ones are 404', async () => {
  const slug = await firstSlug();
  const csv = (await (await fetch(`${BASE}/api/mechanisms/${slug}/analysis.csv`)).text()).trim().split('\n');
  assert.equal(csv[0], 'method,metric,value,n');
  assert.match(csv[1], /^probe,held_out_accuracy,/);
  assert.ok(csv.some((l) => l.startsWith('dinm,toxicity_reduction_all_pct,')), csv.join('\n'));
  const tex = await (await fetch(`${BASE}/api/mechanisms/${slug}/analysis.tex`)).text();
  assert.match(tex, /\\toprule[\s\S]*\\midrule[\s\S]*\\bottomrule/);
  assert.match(tex, /^dinm & /m);
  assert.ok(tex.includes(`/mechanisms/${slug}`), 'the analysis link');
  const json = await (await fetch(`${BASE}/api/mechanisms/${slug}/analysis.json`)).json();
  assert.equal(json.slug, slug);
  assert.equal(json.report.methods[0].method, 'dinm');
  const pdf = Buffer.from(await (await fetch(`${BASE}/api/mechanisms/${slug}/figures/toxicity.pdf?preset=full`)).arrayBuffer());
  assert.ok(pdf.toString('latin1').startsWith('%PDF-'));
  const png = Buffer.from(await (await fetch(`${BASE}/api/mechanisms/${slug}/figures/projection.png`)).arrayBuffer());
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  assert.equal(png.readUInt32BE(16), Math.round((7.7 / 2.54) * 300));
  assert.equal((await fetch(`${BASE}/mechanisms/nosuchanalysis`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/mechanisms/nosuchanalysis/analysis.csv`)).status, 404);
  const badChart = await fetch(`${BASE}/api/mechanisms/${slug}/figures/nochart.svg`);
  assert.equal(badChart.status, 404);
  assert.match(await badChart.text(), /toxicity, shift, projection, cosines/);
  assert.equal((await fetch(`${BASE}/api/mechanisms/${slug}/figures/toxicity.gif`)).status, 400);
});

test('train SFT on 2 pairs in the browser, analyse vanilla vs it, open the analysis with figures', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  // No trained model yet: the Models page opens with the training form.
  await page.goto(`${BASE}/models`);
  assert.match(await page.textContent('#no-models'), /No trained models yet/);
  await page.selectOption('#train-objective', 'sft');
  await page.fill('#train-name', 'SFT e2e');
  await page.fill('#train-limit', '2');
  await page.fill('#train-epochs', '1');
  await page.click('#train-button:not([disabled])');
  // A bad name is refused before anything is queued, naming the field.
  await page.locator('#train-error').waitFor();
  assert.match(await page.textContent('#train-error'), /name: `SFT e2e`/);
  // That refusal was the one expected 400.
  assert.ok(errors.every((e) => /400/.test(e)), errors.join('\n'));
  errors.splice(0);
  await page.fill('#train-name', 'sft-e2e');
  await page.click('#train-button');
  await page.waitForURL(/\/jobs\/[a-z0-9]+$/);
  const trainJob = page.url().split('/').pop();
  assert.equal(await page.textContent('#job-title'), 'Training SFT model sft-e2e on 2 pairs');
  await page.waitForSelector('#run-link', { timeout: 300_000 });
  assert.equal(await page.getAttribute('#run-link', 'href'), '/models/sft-e2e');
  // The loss of every step was drawn as it came.
  assert.equal(await page.getAttribute('#loss-curve', 'data-steps'), '1');
  const job = await (await fetch(`${BASE}/api/jobs/${trainJob}`)).json();
  assert.deepEqual([job.kind, job.state, job.result], ['train', 'done', '/models/sft-e2e']);
  await page.click('#run-link');
  await page.waitForURL(/\/models\/sft-e2e$/);
  await page.locator('#model-card').waitFor();
  assert.equal(await page.textContent('#model-title'), 'SFT model sft-e2e');
  assert.match(await page.textContent('#model-steps'), /^1 of 1: trained to the end/);
  const models = await (await fetch(`${BASE}/api/models`)).json();
  assert.deepEqual(models.trained.map((m) => [m.name, m.objective, m.n_examples]), [['sft-e2e', 'sft', 2]]);

  // Mechanisms: vanilla vs the trained model, picked by name.
  await page.goto(`${BASE}/mechanisms`);
  await page.$eval('#analysis-launcher', (d) => { d.open = true; });
  await page.locator('#analysis-methods input[value="sft-e2e"]').waitFor();
  await page.uncheck('#analysis-methods input[value="dinm"]');
  await page.check('#analysis-methods input[value="sft-e2e"]');
  await page.fill('#analysis-inputs', '4');
  await page.fill('#analysis-projection', '4');
  await page.fill('#analysis-probe-tokens', '32');
  await page.click('#analysis-button:not([disabled])');
  await page.waitForURL(/\/jobs\/[a-z0-9]+$/);
  assert.equal(await page.textContent('#job-title'), 'Mechanism analysis: vanilla vs sft-e2e');
  await page.waitForSelector('#run-link', { timeout: 480_000 });
  await page.click('#run-link');
  await page.waitForURL(/\/mechanisms\/[a-z0-9]+$/);
  await page.locator('#mechanism-table tbody tr').first().waitFor();
  const rows = await page.locator('#mechanism-table tbody tr').evaluateAll(
    (trs) => trs.map((tr) => tr.children[0].textContent.trim()),
  );
  assert.deepEqual(rows, ['sft-e2e']);
  await page.locator('figure.chart svg').nth(3).waitFor();
  for (const chart of ['toxicity', 'shift', 'projection', 'cosines']) {
    assert.equal(await page.locator(`#fig-${chart} svg`).count(), 1, chart);
  }
  assert.deepEqual(errors, []);
  await page.close();
});
