// On a phone (390 px wide) no page scrolls sideways: the header wraps, wide tables scroll inside
// themselves. Runs after the other browser tests, so every kind of page has a record to show.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, watchErrors } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The first link to `prefix/<slug>` on the page at `path`, if any. */
async function firstLink(path, prefix) {
  const html = await (await fetch(`${BASE}${path}`)).text();
  const m = html.match(new RegExp(`href="(${prefix}/[a-z0-9-]+)"`));
  return m?.[1];
}

test('at 390 px no page scrolls horizontally', async () => {
  const pages = ['/', '/instances', '/instances/test/0', '/runs', '/results', '/test-all', '/mechanisms', '/models'];
  for (const [list, prefix] of [
    ['/runs', '/runs'], ['/results', '/evals'], ['/test-all', '/test-all'],
    ['/mechanisms', '/mechanisms'], ['/models', '/models'],
  ]) {
    const link = await firstLink(list, prefix);
    assert.ok(link, `${list} links to a record`);
    pages.push(link);
  }
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const errors = watchErrors(page);
  const wide = [];
  for (const path of pages) {
    const res = await page.goto(`${BASE}${path}`);
    assert.equal(res.status(), 200, path);
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
    if (scroll > inner) wide.push(`${path}: ${scroll} > ${inner}`);
  }
  assert.deepEqual(wide, []);
  assert.deepEqual(errors, []);
  await page.close();
});
