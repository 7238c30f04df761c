// A server that dies with a job running and one queued comes back and finishes both: the jobs
// are durable (apalis on SQLite beside the runs database), the interrupted evaluation resumes
// from the instances it had finished, and the browser's job pages end at their results.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, watchErrors } from './helpers.mjs';

let browser;
let server;
const dataDir = mkdtempSync(join(tmpdir(), 'safeedit-restart-'));

/** A free TCP port on the loopback. */
function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts `safeedit serve` on `port` with this test's data folder; resolves once it answers. */
async function serve(port) {
  const child = spawn(process.env.SAFEEDIT_BIN, [
    'serve', '--addr', `127.0.0.1:${port}`, '--site-root', process.env.LEPTOS_SITE_ROOT,
    '--data-dir', dataDir,
  ], { stdio: 'ignore' });
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/`)).ok) return child;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the server did not start');
}

/** Queues an evaluation job through the JSON API; its id. */
async function submit(base, body) {
  const res = await fetch(`${base}/api/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text).id;
}

before(async () => { browser = await launch(); });
after(async () => {
  server?.kill('SIGKILL');
  await browser?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('killed with a job running and one queued, the restarted server finishes both', async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  server = await serve(port);
  // Two instances: still running when the server dies after the first.
  const running = await submit(base, {
    kind: 'eval', method: 'vanilla', split: 'test', limit: 2, max_new_tokens: 16,
  });
  const queued = await submit(base, {
    kind: 'eval', method: 'prompt', split: 'test', limit: 1, max_new_tokens: 4,
  });
  // Wait until the first has finished an instance (so the restart must resume it).
  for (let i = 0; ; i++) {
    const info = await (await fetch(`${base}/api/jobs/${running}`)).json();
    if (info.state === 'running' && info.progress?.done >= 1) break;
    assert.ok(i < 600, `the job never got going: ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal((await (await fetch(`${base}/api/jobs/${queued}`)).json()).state, 'queued');
  server.kill('SIGKILL');
  await new Promise((r) => server.once('exit', r));

  server = await serve(port);
  const page = await browser.newPage();
  const errors = watchErrors(page);
  for (const id of [running, queued]) {
    await page.goto(`${base}/jobs/${id}`);
    await page.waitForSelector('#run-link', { timeout: 300_000 });
    assert.equal(await page.getAttribute('#job-status', 'data-status'), 'done');
    await page.click('#run-link');
    await page.waitForURL(/\/evals\/[a-z0-9]+$/);
    await page.waitForSelector('#eval-title');
  }
  // The interrupted evaluation has each of its instances once.
  const info = await (await fetch(`${base}/api/jobs/${running}`)).json();
  const slug = info.result.split('/').pop();
  const evalPage = await (await fetch(`${base}/evals/${slug}`)).text();
  assert.match(evalPage, /2 instances/);
  assert.deepEqual(errors, []);
  await page.close();
});
