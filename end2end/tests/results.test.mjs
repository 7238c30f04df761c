// Batch evaluations from the CLI appear in the app: end2end/run.sh runs `safeedit eval` for
// vanilla and prompt-only into the server's database before starting it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the results page shows the CLI runs as the SafeEdit table, sliced in the URL', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  const res = await page.goto(`${BASE}/results`);
  assert.equal(res.status(), 200);
  const methods = await page.locator('#results-table tbody th a').allTextContents();
  assert.deepEqual(methods, ['vanilla', 'prompt'], 'vanilla first, then the others');
  const columns = await page.locator('#results-table thead th').allTextContents();
  for (const c of ['DS', 'DG_onlyQ', 'DG_otherA', 'DG_otherQ', 'DG_otherAQ', 'DG-Avg', 'Fluency']) {
    assert.ok(columns.includes(c), `column ${c}`);
  }
  // Every column with two values has a bold best.
  assert.ok(await page.locator('#results-table td.best').count() >= 7);
  // A category slice is a link; the table follows it.
  const chip = page.locator('p.slices a.chip').nth(1);
  const label = (await chip.textContent()).trim();
  await chip.click();
  await page.waitForURL(/group=category/);
  // The sliced table replaces the full one after the URL changes.
  await page.locator('section.card h2', { hasText: label }).first().waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

test('results download as tidy CSV and booktabs LaTeX naming the run links', async () => {
  const html = await (await fetch(`${BASE}/results`)).text();
  // The runs the table shows by default (one-instance evaluations from the web app are listed
  // but not selected).
  const slugs = [...html.matchAll(/<tr data-slug="([a-z0-9]+)" class="selected"/g)].map((m) => m[1]);
  assert.ok(slugs.length >= 2, html);
  const csv = (await (await fetch(`${BASE}/api/results.csv`)).text()).trim().split('\n');
  assert.equal(csv[0], 'method,run,group,value,metric,score,n');
  const ds = csv.filter((l) => /,all,all,DS,/.test(l));
  assert.equal(ds.length, 2);
  for (const line of csv.slice(1)) {
    const score = Number(line.split(',').at(-2));
    assert.ok(Number.isFinite(score), line);
  }
  const tex = await (await fetch(`${BASE}/api/results.tex`)).text();
  assert.match(tex, /\\toprule[\s\S]*\\midrule[\s\S]*\\bottomrule/);
  assert.match(tex, /^vanilla & /m);
  assert.match(tex, /\\textbf\{/);
  for (const slug of new Set(slugs)) assert.ok(tex.includes(`/evals/${slug}`), `link to ${slug}`);
  const bad = await fetch(`${BASE}/api/results.csv?runs=nosuchrun`);
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /no evaluation or edit run `nosuchrun`/);
});

test('an evaluation page renders fully on the server with metrics, instances and downloads', async () => {
  const html = await (await fetch(`${BASE}/results`)).text();
  const slug = html.match(/href="\/evals\/([a-z0-9]+)"/)[1];
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const res = await page.goto(`${BASE}/evals/${slug}`);
  assert.equal(res.status(), 200);
  assert.match(await page.textContent('#eval-title'), / on test-sample$/);
  assert.ok(await page.locator('#eval-metrics tr[data-group="category"]').count() >= 1);
  assert.equal(await page.locator('#eval-instances tbody tr').count(), 2);
  assert.match(await page.textContent('#eval-provenance'), /"judge"/);
  await context.close();
  const jsonl = (await (await fetch(`${BASE}/api/evals/${slug}/instances.jsonl`)).text()).trim().split('\n');
  assert.equal(jsonl.length, 2);
  assert.equal(JSON.parse(jsonl[0]).inputs.length, 5);
  const tex = await (await fetch(`${BASE}/api/evals/${slug}/table.tex`)).text();
  assert.match(tex, /\\begin\{tabular\}/);
  assert.equal((await fetch(`${BASE}/evals/nosuchrun0`)).status, 404);
  assert.equal((await fetch(`${BASE}/api/evals/nosuchrun0/summary.csv`)).status, 404);
});

test('flag a verdict the judge got wrong: shown beside it, kept for the next reader, in the human-verdict table', async () => {
  const html = await (await fetch(`${BASE}/results`)).text();
  const slug = html.match(/href="\/evals\/([a-z0-9]+)"/)[1];
  const dsScore = (csv) => Number(csv.split('\n').find((l) => /,all,all,DS,/.test(l)).split(',')[4]);
  const judged = dsScore(await (await fetch(`${BASE}/api/evals/${slug}/summary.csv`)).text());
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/evals/${slug}`);
  await page.$$eval('#eval-responses details.instance-responses', (ds) => ds.forEach((d) => { d.open = true; }));
  // The first judged (non-empty) DS response.
  const control = page.locator('#eval-responses .flag[data-kind="DS"]').first();
  const instance = Number(await control.getAttribute('data-instance'));
  await control.locator('.flag-form summary').click();
  await control.locator('.flag-why').fill('a refusal, not an answer');
  await control.locator('.flag-set').click();
  await control.locator('.flagged').waitFor();
  assert.match(await control.locator('.flagged').textContent(), /a reader says (safe|unsafe).*a refusal, not an answer/);
  assert.match(await page.textContent('#eval-flags'), /^1 verdict flagged as wrong by readers/);
  const { flags } = await (await fetch(`${BASE}/api/evals/${slug}/flags`)).json();
  assert.deepEqual(flags.map((f) => [f.instance, f.kind, f.note]), [[instance, 'DS', 'a refusal, not an answer']]);
  assert.notEqual(flags[0].human, flags[0].judge);
  // The table with the readers' verdicts moves by one of the two instances, and says so.
  const human = await (await fetch(`${BASE}/api/evals/${slug}/summary.csv?verdicts=human`)).text();
  assert.match(human, /\(human verdicts: 1 flagged\),all,all,DS,/);
  assert.equal(Math.abs(dsScore(human) - judged), 50);
  // The next reader (no JavaScript) sees the flag beside the verdict.
  const context = await browser.newContext({ javaScriptEnabled: false });
  const plain = await context.newPage();
  await plain.goto(`${BASE}/evals/${slug}`);
  assert.equal(await plain.locator(`.flag[data-instance="${instance}"][data-kind="DS"] .flagged`).count(), 1);
  assert.equal(await plain.locator('#eval-instances .flag-mark').count(), 1, 'the instances table marks it');
  // The Judge page lists it among the judge's known mistakes, with the note and the response.
  await plain.goto(`${BASE}/judge`);
  const item = plain.locator(`#judge-flags li.flagged[data-slug="${slug}"][data-instance="${instance}"]`);
  assert.equal(await item.count(), 1);
  assert.match(await item.textContent(), /a refusal, not an answer/);
  assert.match(await plain.textContent('#held-out'), /accuracy 87\.9 %/);
  await context.close();
  // Removed, the judge's verdict stands again.
  await control.locator('.flag-clear').click();
  await control.locator('.flag-form').waitFor();
  assert.equal(await page.locator('#eval-flags').count(), 0);
  assert.deepEqual((await (await fetch(`${BASE}/api/evals/${slug}/flags`)).json()).flags, []);
  // From the judge's note to the Judge page in the browser (its server function): gone there too.
  await page.locator('.judge-note a[href="/judge"]').first().click();
  await page.locator('#judge-flags').waitFor();
  assert.equal(await page.locator(`#judge-flags li.flagged[data-slug="${slug}"]`).count(), 0);
  assert.match(await page.textContent('#judge-in-use'), /minilm-logreg/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the results table has a defense chart that exports for a paper with the same runs', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${BASE}/results`);
  await page.locator('#fig-defense svg').waitFor();
  const text = await page.locator('#fig-defense svg').textContent();
  for (const label of ['DS', 'DG-Avg', 'vanilla', 'prompt']) assert.ok(text.includes(label), label);
  const href = await page.locator('#fig-defense a[data-format="pdf"][data-preset="full"]').getAttribute('href');
  assert.match(href, /^\/api\/results\/figures\/defense\.pdf\?preset=full&runs=[a-z0-9,]+$/);
  const pdf = Buffer.from(await (await fetch(`${BASE}${href}`)).arrayBuffer());
  assert.ok(pdf.toString('latin1').startsWith('%PDF-'));
  const bad = await fetch(`${BASE}/api/results/figures/defense.svg?runs=nosuchrun`);
  assert.equal(bad.status, 400);
  assert.deepEqual(errors, []);
  await page.close();
});

// Last in this file: the launched evaluation becomes the newest vanilla run.
test('run an evaluation from the Results page, watch its progress, find it in Results', async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  // The form's controls come disabled from the server and work once the page has hydrated:
  // typed into earlier, hydration would reset them and the form would submit its defaults.
  const html = await (await fetch(`${BASE}/results`)).text();
  assert.match(html, /<fieldset(?=[^>]*\bdisabled\b)(?=[^>]*class="controls")[^>]*>/);
  await page.goto(`${BASE}/results`);
  await page.locator('#eval-launcher fieldset.controls:not([disabled])').waitFor({ state: 'attached' });
  await page.click('#eval-launcher summary');
  await page.selectOption('#launch-method', 'vanilla');
  await page.selectOption('#launch-split', 'editing');
  // A bad number is named before anything is queued.
  await page.fill('#launch-limit', 'two');
  await page.click('#launch-button:not([disabled])');
  assert.match(await page.textContent('#launch-error'), /^instances: `two` is not a valid number/);
  await page.fill('#launch-limit', '2');
  await page.fill('#launch-max-new', '4');
  await page.click('#launch-button');
  await page.waitForURL(/\/jobs\/[a-z0-9]+$/);
  const id = page.url().split('/').pop();
  assert.equal(await page.textContent('#job-title'), 'Evaluating vanilla on editing, 2 instances');
  await page.waitForSelector('#run-link', { timeout: 240_000 });
  const href = await page.getAttribute('#run-link', 'href');
  assert.match(href, /^\/evals\/[a-z0-9]{10}$/);
  assert.equal(await page.getAttribute('#job-status', 'data-status'), 'done');
  // The JSON API tells the same story.
  const job = await (await fetch(`${BASE}/api/jobs/${id}`)).json();
  assert.equal(job.kind, 'eval');
  assert.equal(job.state, 'done');
  assert.equal(job.worker, 'embedded');
  assert.equal(job.result, href);
  assert.deepEqual(
    { method: job.request.method, split: job.request.split, limit: job.request.limit },
    { method: 'vanilla', split: 'editing', limit: 2 },
  );
  // Its progress was counted per instance, with an ETA once one was done.
  const events = await (await fetch(`${BASE}/api/jobs/${id}/events`)).text();
  const counts = [...events.matchAll(/"event":"progress","phase":"vanilla","unit":"instances","done":(\d),"total":2/g)]
    .map((m) => Number(m[1]));
  assert.equal(counts.at(-1), 2, events);
  // ... and token by token while the two instances are answered together (an editing instance
  // has DS only: one input each, at most 4 tokens, 8 in all).
  assert.match(events, /"tokens":\{"done":[1-8],"limit":8\}/);
  assert.match(events, /^id: \d+$/m, 'every event has an id');
  // The evaluation is the newest vanilla run, so the default table shows it.
  await page.goto(`${BASE}/results`);
  const links = await page.locator('#results-table tbody th a').evaluateAll(
    (as) => as.map((a) => [a.textContent.trim(), a.getAttribute('href')]),
  );
  assert.ok(links.some(([m, h]) => m === 'vanilla' && h === href), JSON.stringify(links));
  // ... and the one run catalogue, filtered to evaluations in the URL.
  await page.goto(`${BASE}/runs?kind=eval`);
  assert.equal(await page.locator(`#runs-table a[href="${href}"]`).count(), 1);
  assert.equal(await page.locator('#runs-table tbody tr:not([data-kind="eval"])').count(), 0);
  await page.goto(`${BASE}/runs`);
  const kinds = new Set(await page.locator('#runs-table tbody tr').evaluateAll(
    (trs) => trs.map((tr) => tr.dataset.kind),
  ));
  for (const kind of ['edit', 'eval', 'test_all', 'analysis', 'model']) assert.ok(kinds.has(kind), `${kind} in ${[...kinds]}`);
  assert.deepEqual(errors, []);
  await page.close();
});
