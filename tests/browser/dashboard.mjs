// The dashboard end to end, in headless Chromium against a running local stack (driven by
// tests/it/dashboard.rs, or by hand against `fleet dev`):
//
//   node tests/browser/dashboard.mjs http://127.0.0.1:8080 [screenshot.png]
//
// Opens the page, waits for the dev token and the live connection, submits a spin job,
// waits for its progress bar to move, drops the connection mid-job for a few seconds,
// waits for the page to reconnect by itself (replaying what it missed), waits for the job
// to show succeeded with its summary, then checks the frames the page delivered: the
// job's JobStarted, JobProgress… and JobSucceeded in that order, and the channel's
// offsets consecutive with no duplicate. Then the form built from `GET /models`: a `sir`
// job with an out-of-range parameter is refused naming it, a valid SEIR job runs, and
// its result, loaded through `GET /jobs/{id}/result` and the presigned S3 link it
// redirects to (cross-origin, under the results bucket's CORS rule), is drawn: a median
// line and a band for each compartment, a point per day (screenshot: <screenshot>-chart.png).
// Last, a long job cancelled from its row ends CANCELLED within seconds (its JobCancelled
// frame delivered), and the cancelled job's worker then runs a next job: it stopped the
// model and is free.
// Exits 0 when every check passes.

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { check, forwardConsole, launch, step } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const base = process.argv[2];
const screenshot = process.argv[3] || join(root, 'target/dashboard.png');
const SPIN_MS = 8000;
const OFFLINE_MS = 3500;
const SIR_DAYS = 60;

if (!base) {
  console.error('usage: node dashboard.mjs <base url, e.g. http://127.0.0.1:8080> [screenshot.png]');
  process.exit(2);
}

async function main() {
  const { context, close } = await launch();
  const errors = [];
  let page;
  try {
    page = await context.newPage();
    forwardConsole(page, errors);
    const until = (what, timeout, fn, arg) =>
      page.waitForFunction(fn, arg, { timeout, polling: 100 }).catch((e) => {
        throw new Error(`timed out after ${timeout} ms waiting until ${what} (${e.message.split('\n')[0]})`);
      });

    step(`open ${base}/`);
    const response = await page.goto(`${base}/`);
    check(response && response.ok(), `GET / answers ${response && response.status()}`);

    step('the dev token is filled in and the page goes live');
    await until('the token field is filled in', 15_000,
      () => document.querySelector('[data-testid="token-input"]').value.length > 0);
    await until('the page is connected and subscribed', 30_000,
      () => window.fleet.connected && document.querySelector('[data-testid="connection"]').dataset.state === 'live');
    check((await page.evaluate(() => window.fleet.connections)) === 1, 'one connection so far');

    step('the form is built from GET /models');
    await until('the catalog fills the model list', 15_000,
      () => document.querySelector('[data-testid="model-select"] option[value="sir"]'));

    step(`submit a spin job of ${SPIN_MS} ms`);
    await page.selectOption('[data-testid="model-select"]', 'spin');
    await page.fill('[data-testid="param-durationMs"]', String(SPIN_MS));
    await page.click('[data-testid="submit-job"]');
    await until('the job is accepted', 15_000, () => window.fleet.lastJobId);
    const jobId = await page.evaluate(() => window.fleet.lastJobId);
    const row = `[data-testid="job"][data-job-id="${jobId}"]`;
    console.log(`  job ${jobId}`);

    step("wait until the job's progress bar moves");
    await until('the progress bar moves', 60_000, (sel) => {
      const bar = document.querySelector(`${sel} [data-testid="job-progress"]`);
      return bar && Number(bar.getAttribute('aria-valuenow')) > 0;
    }, row);
    const before = await page.evaluate(() => window.fleet.since());
    const statusAtDrop = await page.getAttribute(row, 'data-status');
    check(statusAtDrop === 'RUNNING', `the job is still running when the connection drops (${statusAtDrop})`);

    // Offline long enough for the worker to report progress meanwhile (about every
    // second), so the reconnect must replay what was missed.
    step(`drop the connection mid-job for ${OFFLINE_MS} ms (delivered up to offset ${before})`);
    check(await page.evaluate((ms) => window.fleet.drop(ms), OFFLINE_MS), 'drop() found a connection to drop');
    check(!(await page.evaluate(() => window.fleet.connected)), 'disconnected after drop()');
    await until('the page reconnects by itself', 30_000,
      () => window.fleet.connections === 2 && window.fleet.connected);

    step('wait until the job shows succeeded with its summary');
    await until('the job succeeds on the page', 60_000, (sel) => {
      const li = document.querySelector(sel);
      return li && li.dataset.status === 'SUCCEEDED'
        && li.querySelector('[data-testid="job-summary"]').textContent.trim().length > 0;
    }, row);
    const summary = (await page.textContent(`${row} [data-testid="job-summary"]`)).trim();
    check(summary.includes('spunMs'), `the summary names spunMs: ${summary}`);
    check((await page.getAttribute(`${row} [data-testid="job-progress"]`, 'aria-valuenow')) === '100', 'the bar is full');

    step('check the frames the page delivered');
    const { delivered, replayed } = await page.evaluate(() => ({
      delivered: window.fleet.delivered, replayed: window.fleet.replayed,
    }));
    for (const f of delivered) console.log(`  ${f.offset} ${f.type} ${JSON.stringify(f.data)}`);
    console.log(`  frames replayed by the server over all subscriptions: ${replayed}`);
    const offsets = delivered.map((f) => f.offset);
    check(new Set(offsets).size === offsets.length, `no duplicate offset: ${offsets}`);
    check(delivered.every((f) => f.type !== 'discontinuity'), 'no discontinuity on a fresh channel');
    check(offsets.every((o, i) => o === i + 1), `offsets consecutive from 1: ${offsets}`);
    const types = delivered.filter((f) => f.data && f.data.jobId === jobId).map((f) => f.type);
    console.log(`  the job's frames: ${types.join(', ')}`);
    const started = types.indexOf('JobStarted');
    const progress = types.indexOf('JobProgress');
    const succeeded = types.indexOf('JobSucceeded');
    check(started >= 0, 'JobStarted delivered');
    check(progress > started, 'JobProgress delivered after JobStarted');
    check(succeeded > progress && succeeded === types.lastIndexOf('JobSucceeded'), 'JobSucceeded delivered once, after the progress');
    check(types.slice(started + 1, succeeded).every((t) => t === 'JobProgress' || t === 'JobStarted'),
      `only progress between start and success: ${types}`);
    check(offsets.some((o) => o > before), 'frames delivered after the reconnect');
    check(replayed >= 1, 'the resubscription replayed the frames published while offline');

    await page.screenshot({ path: screenshot, fullPage: true });

    step('a sir parameter out of range is refused by the API, naming the field');
    await page.selectOption('[data-testid="model-select"]', 'sir');
    check((await page.inputValue('[data-testid="param-population"]')) === '2000', 'the catalog default fills the field');
    await page.fill('[data-testid="param-initialInfected"]', '5000');
    await page.click('[data-testid="submit-job"]');
    await until('the refusal is shown', 15_000,
      () => document.querySelector('[data-testid="submit-status"]').dataset.kind === 'error');
    const refusal = await page.textContent('[data-testid="submit-status"]');
    check(refusal.includes('params.initialInfected') && refusal.includes('population (2000)'), `the message names the field and the fix: ${refusal}`);
    check((await page.getAttribute('[data-testid="param-initialInfected"]', 'aria-invalid')) === 'true', 'the field is marked');
    check((await page.evaluate(() => window.fleet.lastJobId)) === jobId, 'no job was accepted');

    step(`run a SEIR job of ${SIR_DAYS} days and draw its result`);
    await page.fill('[data-testid="param-initialInfected"]', '5');
    await page.fill('[data-testid="param-sigma"]', '0.25');
    await page.fill('[data-testid="param-days"]', String(SIR_DAYS));
    await page.fill('[data-testid="param-runs"]', '20');
    await page.click('[data-testid="submit-job"]');
    await until('the sir job is accepted', 15_000, (previous) => window.fleet.lastJobId !== previous, jobId);
    const sirJob = await page.evaluate(() => window.fleet.lastJobId);
    const sirRow = `[data-testid="job"][data-job-id="${sirJob}"]`;
    console.log(`  job ${sirJob}`);
    await until('the sir job succeeds', 90_000, (sel) => document.querySelector(sel)?.dataset.status === 'SUCCEEDED', sirRow);
    await page.click(`${sirRow} [data-testid="job-chart-toggle"]`);
    await until('the chart is drawn', 30_000,
      (sel) => document.querySelectorAll(`${sel} [data-testid="chart-median"]`).length > 0
        || document.querySelector(`${sel} [data-testid="job-error"]`).textContent.length > 0, sirRow);
    const chartError = await page.textContent(`${sirRow} [data-testid="job-error"]`);
    check(!chartError, `the result loads: ${chartError}`);
    const drawn = await page.evaluate((id) => window.fleet.charts[id], sirJob);
    const points = SIR_DAYS + 1;
    for (const compartment of ['susceptible', 'exposed', 'infected', 'recovered']) {
      check(drawn.series[compartment] === points, `${compartment}: a median of ${points} points (${JSON.stringify(drawn.series)})`);
    }
    check((await page.locator(`${sirRow} [data-testid="chart-band"]`).count()) === 4, 'a band per compartment');
    const legend = await page.textContent(`${sirRow} [data-testid="chart-legend"]`);
    check(['susceptible', 'exposed', 'infected', 'recovered'].every((c) => legend.includes(c)), `the legend: ${legend}`);
    const chartShot = screenshot.replace(/\.png$/, '-chart.png');
    await page.locator(sirRow).screenshot({ path: chartShot });

    step('cancel a running job from its row');
    const submitSpin = async (ms, previous) => {
      await page.selectOption('[data-testid="model-select"]', 'spin');
      await page.fill('[data-testid="param-durationMs"]', String(ms));
      await page.click('[data-testid="submit-job"]');
      await until('the spin job is accepted', 15_000, (p) => window.fleet.lastJobId !== p, previous);
      return page.evaluate(() => window.fleet.lastJobId);
    };
    const rowOf = (id) => `[data-testid="job"][data-job-id="${id}"]`;
    const longJob = await submitSpin(3_600_000, sirJob);
    await until('the long job runs', 60_000, (sel) => document.querySelector(sel)?.dataset.status === 'RUNNING', rowOf(longJob));
    const cancelAt = Date.now();
    await page.click(`${rowOf(longJob)} [data-testid="job-cancel"]`);
    await until('the job shows cancelled', 10_000, (sel) => document.querySelector(sel)?.dataset.status === 'CANCELLED', rowOf(longJob));
    console.log(`  cancelled on the page ${Date.now() - cancelAt} ms after the click`);
    await until('its JobCancelled frame arrives', 10_000,
      (id) => window.fleet.delivered.some((f) => f.type === 'JobCancelled' && f.data.jobId === id), longJob);
    check((await page.locator(`${rowOf(longJob)} [data-testid="job-cancel"]`).count()) === 0, 'no cancel button on a cancelled job');
    const cancelError = await page.textContent(`${rowOf(longJob)} [data-testid="job-error"]`);
    check(cancelError.includes('Job.Cancelled'), `the row says why it ended: ${cancelError}`);

    step("the cancelled job's worker runs a next job");
    // The cancelled job's worker comes free once its heartbeat finds the token closed and
    // the model stops; then it takes jobs again. Two 10 s jobs at a time, up to four
    // rounds (a loaded machine may take a while to free it), until one of them runs on
    // that worker; had the cancel not stopped the hour-long job, none ever would. (Read
    // from the frames' `worker`, not from the rows, which show RUNNING only as fast as the
    // notifier delivers.)
    const workerOf = (id) => page.evaluate((job) => {
      const f = window.fleet.delivered.find((d) => d.type === 'JobStarted' && d.data.jobId === job);
      return f ? f.data.worker : null;
    }, id);
    const cancelledWorker = await workerOf(longJob);
    check(cancelledWorker, "the long job's JobStarted named its worker");
    let previous = longJob;
    const ran = [];
    for (let round = 0; round < 4 && !ran.includes(cancelledWorker); round += 1) {
      const pair = [];
      for (let k = 0; k < 2; k += 1) {
        previous = await submitSpin(10_000, previous);
        pair.push(previous);
      }
      await until('both jobs of the round started', 120_000, (jobs) => jobs.every((job) =>
        window.fleet.delivered.some((f) => f.type === 'JobStarted' && f.data.jobId === job)), pair);
      for (const job of pair) ran.push(await workerOf(job));
    }
    check(ran.includes(cancelledWorker), `the cancelled job's worker ${cancelledWorker} ran a next job (they ran on ${ran})`);

    check(errors.length === 0, `no page errors: ${errors.map((e) => e.message)}`);
    console.log(`ok: the dashboard ran job ${jobId} live through a dropped connection (screenshot: ${screenshot}) and drew sir job ${sirJob} (${chartShot})`);
  } catch (e) {
    if (page) {
      const failed = screenshot.replace(/\.png$/, '-failed.png');
      await page.screenshot({ path: failed, fullPage: true }).catch(() => {});
      const delivered = await page.evaluate(() => window.fleet && window.fleet.delivered).catch(() => null);
      console.log(`  delivered at failure: ${JSON.stringify(delivered)}`);
      console.log(`  screenshot at failure: ${failed}`);
    }
    throw e;
  } finally {
    await close();
  }
}

mkdirSync(dirname(screenshot), { recursive: true });
main().catch((e) => {
  console.error(`FAILED: ${e.message}`);
  process.exit(1);
});
