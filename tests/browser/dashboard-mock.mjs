// The dashboard's client logic against a fake backend (Playwright routes for HTTP and the
// WebSocket), so it runs without the stack: the cursor, reconnect with `since`, replayed
// and duplicated and out-of-order frames, a gap that forces a resubscription, a
// discontinuity that reloads the list, statuses that never move backwards; the form built
// from `GET /models` (defaults, hints, a refused field marked), and a `sir` result drawn.
//
//   node tests/browser/dashboard-mock.mjs [path/to/dashboard.html] [screenshot.png]
//
// Exits 0 when every check passes.

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { check, forwardConsole, launch, step } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pagePath = process.argv[2] || join(root, 'infra/fleet/assets/dashboard.html');
const screenshot = process.argv[3] || join(root, 'target/dashboard-mock.png');
const ORIGIN = 'http://127.0.0.1:9'; // never reached: every request is routed below
const TIMEOUT = 10_000;
const JOB = '01900000-0000-7000-8000-000000000001';
const SIR_JOB = '01900000-0000-7000-8000-000000000002';
const DAYS = 30;

/** The shape of `GET /models` (shared/contracts/src/models.rs), cut down. */
const CATALOG = {
  otherModels: true,
  models: [
    { name: 'sir', title: 'sir: epidemic', params: [
      { name: 'population', type: 'integer', required: true, default: 2000, minimum: 1, hint: 'people' },
      { name: 'initialInfected', type: 'integer', required: true, default: 5, minimum: 1, hint: 'at most population' },
      { name: 'sigma', type: 'number', required: false, exclusiveMinimum: 0, hint: 'set it for SEIR' },
    ], picture: { kind: 'bands', xLabel: 'day', yLabel: 'people', median: 'p50', band: ['p5', 'p95'],
      series: ['susceptible', 'exposed', 'infected', 'recovered'].map((f) => ({ field: f, label: f })) } },
    { name: 'spin', title: 'spin: works', params: [
      { name: 'durationMs', type: 'integer', required: false, default: 4000, minimum: 0, maximum: 3600000, hint: 'ms' },
      { name: 'mode', type: 'choice', required: false, default: 'ok', choices: ['ok', 'fail', 'crash', 'hang'], hint: 'then' },
    ] },
  ],
};

/** A SEIR result: each compartment's percentile bands, one value per day. */
function sirResult() {
  const band = (f) => Object.fromEntries(['p5', 'p25', 'p50', 'p75', 'p95'].map((k, i) =>
    [k, Array.from({ length: DAYS + 1 }, (_, d) => Math.round(f(d) * (0.8 + i * 0.1)))]));
  return {
    model: 'sir', days: DAYS,
    susceptible: band((d) => 2000 - 60 * d), exposed: band((d) => 10 * d),
    infected: band((d) => 20 * d), recovered: band((d) => 30 * d),
  };
}

const b64url = (s) => Buffer.from(s).toString('base64url');
const TOKEN = `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify({ sub: 'dev', exp: 4102444800 }))}.sig`;

/** The fake notifier: the channel's history, and the open connections. */
const server = {
  history: [],      // stream frames of user:dev, offset = index + 1
  sockets: [],      // WebSocketRoute of every connection, in order
  subscribes: [],   // every subscribe message received
  jobLoads: 0,
  posted: [],       // every POST /jobs body
  append(type, data) {
    const frame = { channel: 'user:dev', offset: this.history.length + 1, type, data, correlationId: 'c-1' };
    this.history.push(frame);
    return frame;
  },
  current() {
    return this.sockets[this.sockets.length - 1];
  },
  send(frame) {
    this.current().send(JSON.stringify(frame));
  },
};

async function main() {
  const html = readFileSync(pagePath, 'utf8');
  const { context, close } = await launch();
  const errors = [];
  try {
    const page = await context.newPage();
    forwardConsole(page, errors);
    await page.route(`${ORIGIN}/**`, async (route) => {
      const url = new URL(route.request().url());
      const json = (status, body) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
      if (url.pathname === '/') return route.fulfill({ status: 200, contentType: 'text/html', body: html });
      if (url.pathname === '/dev/token') return json(200, { token: TOKEN, sub: 'dev' });
      if (url.pathname === '/models') return json(200, CATALOG);
      if (url.pathname === `/jobs/${SIR_JOB}/result`) return json(200, sirResult());
      if (url.pathname === '/jobs' && route.request().method() === 'GET') {
        server.jobLoads += 1;
        const jobs = server.jobLoads > 1
          ? [{ jobId: JOB, status: 'SUCCEEDED', model: 'spin', progress: 1,
               result: { summary: { spunMs: 4000 }, location: { bucket: 'b', key: 'k' } },
               createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:04Z' },
             { jobId: SIR_JOB, status: 'SUCCEEDED', model: 'sir', progress: 1,
               result: { summary: { peakDay: 12 }, location: { bucket: 'b', key: 'k2' } },
               createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:04Z' }]
          : [];
        return json(200, { jobs });
      }
      if (url.pathname === '/jobs' && route.request().method() === 'POST') {
        check(route.request().headers().authorization === `Bearer ${TOKEN}`, 'POST /jobs carries the token');
        const body = route.request().postDataJSON();
        server.posted.push(body);
        if (body.params && body.params.durationMs > 3600000) {
          return json(400, { error: 'invalid request: field `params.durationMs`: must be at most 3600000 (one hour), got 9999999', field: 'params.durationMs' });
        }
        return json(202, { jobId: JOB });
      }
      return json(404, { error: 'not found' });
    });
    await page.routeWebSocket(/\/ws\?token=/, (ws) => {
      check(new URL(ws.url()).searchParams.get('token') === TOKEN, 'the socket carries the token');
      server.sockets.push(ws);
      ws.onMessage((text) => {
        const msg = JSON.parse(text);
        if (msg.action === 'ping') return ws.send(JSON.stringify({ channel: '', offset: 0, type: 'pong', data: {} }));
        if (msg.action !== 'subscribe') return;
        server.subscribes.push(msg);
        const replay = msg.since === undefined ? [] : server.history.filter((f) => f.offset > msg.since);
        for (const f of replay) ws.send(JSON.stringify(f));
        ws.send(JSON.stringify({ channel: msg.channel, offset: 0, type: 'subscribed',
                                 data: { head: server.history.length, replayed: replay.length } }));
      });
    });

    const fleet = (expr, arg) => page.evaluate(expr, arg);
    const until = (fn, arg) => page.waitForFunction(fn, arg, { timeout: TIMEOUT });
    const offsets = () => fleet(() => window.fleet.delivered.map((f) => f.offset));
    const row = `[data-testid="job"][data-job-id="${JOB}"]`;

    await page.goto(`${ORIGIN}/`);

    step('the cursor: the Rust unit cases, in JS');
    const cases = await fleet(() => {
      const { Cursor } = window.fleet;
      const frame = (offset, type = 'JobProgress') => ({ channel: 'job:1', offset, type, data: {} });
      const a = new Cursor(2);
      const out = [];
      for (const o of [5, 3, 4, 4, 1, 6, 5]) out.push(...a.accept(frame(o)));
      const b = new Cursor(0);
      const one = b.accept(frame(1)).map((f) => f.offset);
      const held = b.accept(frame(4)).length;
      const gap = b.hasGap();
      const skipped = b.accept(frame(3, 'discontinuity')).map((f) => f.offset);
      const c = new Cursor(7);
      const pong = c.accept({ channel: '', offset: 0, type: 'pong', data: {} });
      return { first: out.map((f) => f.offset), since: a.since, gapAfter: a.hasGap(),
               one, held, gap, skipped, bSince: b.since, pong: pong.length, cSince: c.since };
    });
    check(JSON.stringify(cases.first) === '[3,4,5,6]' && cases.since === 6 && !cases.gapAfter, `replayed and live once in order: ${JSON.stringify(cases)}`);
    check(JSON.stringify(cases.one) === '[1]' && cases.held === 0 && cases.gap, `a gap waits: ${JSON.stringify(cases)}`);
    check(JSON.stringify(cases.skipped) === '[3,4]' && cases.bSince === 4, `a discontinuity skips it: ${JSON.stringify(cases)}`);
    check(cases.pong === 1 && cases.cSince === 7, 'control frames pass through');

    step('the token is filled in from /dev/token and the page connects and subscribes from 0');
    await until(() => window.fleet.connected && window.fleet.connections === 1);
    check((await page.inputValue('[data-testid="token-input"]')) === TOKEN, 'the token field holds the dev token');
    await until(() => document.querySelector('[data-testid="connection"]').dataset.state === 'live');
    check(server.subscribes[0].channel === 'user:dev' && server.subscribes[0].since === 0, `first subscribe: ${JSON.stringify(server.subscribes[0])}`);
    check((await page.textContent('[data-testid="user"]')).includes('dev'), 'the user is shown');

    step('the form is built from GET /models: one field per parameter, with defaults and hints');
    await until(() => document.querySelector('[data-testid="model-select"] option[value="spin"]'));
    await page.selectOption('[data-testid="model-select"]', 'sir');
    check((await page.inputValue('[data-testid="param-population"]')) === '2000', 'sir defaults');
    check((await page.getAttribute('[data-testid="param-population"]', 'min')) === '1', 'limits become attributes');
    check((await page.inputValue('[data-testid="param-sigma"]')) === '', 'an optional parameter without a default starts empty');
    check((await page.textContent('#param-population-hint')).includes('at least 1'), 'the hint names the limit');
    await page.selectOption('[data-testid="model-select"]', 'spin');
    check((await page.inputValue('[data-testid="param-durationMs"]')) === '4000', 'spin defaults');
    check((await page.getAttribute('[data-testid="param-durationMs"]', 'max')) === '3600000', 'spin maximum');
    check(await page.isHidden('[data-testid="other-model"]'), 'the JSON editor is for other models only');

    step('another model: invalid params JSON is refused in the form');
    await page.selectOption('[data-testid="model-select"]', '');
    await page.fill('[data-testid="model-name"]', 'my-exec');
    await page.fill('[data-testid="params-input"]', '{"durationMs": ');
    await page.click('[data-testid="submit-job"]');
    await until(() => document.querySelector('[data-testid="submit-status"]').dataset.kind === 'error');
    check(await page.getAttribute('[data-testid="params-input"]', 'aria-invalid') === 'true', 'the field is marked invalid');
    check(server.posted.length === 0, 'nothing was sent');

    step("a parameter the API refuses is marked, with the API's message");
    await page.selectOption('[data-testid="model-select"]', 'spin');
    await page.fill('[data-testid="param-durationMs"]', '9999999');
    await page.click('[data-testid="submit-job"]');
    await until(() => document.querySelector('[data-testid="submit-status"]').dataset.kind === 'error');
    check((await page.textContent('[data-testid="submit-status"]')).includes('params.durationMs'), 'the message names the field');
    check(await page.getAttribute('[data-testid="param-durationMs"]', 'aria-invalid') === 'true', 'the input is marked invalid');
    await page.fill('[data-testid="param-durationMs"]', '4000');

    step('a job is submitted and appears queued');
    await page.click('[data-testid="submit-job"]');
    await until((sel) => document.querySelector(sel)?.dataset.status === 'QUEUED', row);
    check(await fleet(() => window.fleet.lastJobId) === JOB, 'lastJobId');

    step('live frames: requested, started, progress 25 %');
    server.send(server.append('JobRequested', { jobId: JOB, model: 'spin', params: { durationMs: 4000 }, requestedBy: 'dev' }));
    server.send(server.append('JobStarted', { jobId: JOB, worker: 'w-1', attempt: 1 }));
    server.send(server.append('JobProgress', { jobId: JOB, progress: 0.25 }));
    await until((sel) => document.querySelector(`${sel} [data-testid="job-progress"]`)?.getAttribute('aria-valuenow') === '25', row);
    check((await page.getAttribute(row, 'data-status')) === 'RUNNING', 'running');
    const sent = server.posted[server.posted.length - 1];
    check(JSON.stringify(sent) === '{"model":"spin","params":{"durationMs":4000,"mode":"ok"}}', `the form's job: ${JSON.stringify(sent)}`);

    step('drop: frames published meanwhile are replayed on reconnect, duplicates and disorder dropped');
    check(await fleet(() => window.fleet.drop()), 'drop() found a connection');
    check(!(await fleet(() => window.fleet.connected)), 'disconnected right after drop');
    server.append('JobProgress', { jobId: JOB, progress: 0.5 });
    server.append('JobProgress', { jobId: JOB, progress: 0.75 });
    await until(() => window.fleet.connections === 2 && window.fleet.connected);
    const resub = server.subscribes[server.subscribes.length - 1];
    check(resub.since === 3, `resubscribed with since = last delivered: ${JSON.stringify(resub)}`);
    // Live copies racing the replay: a duplicate and an old one.
    server.send(server.history[4]);
    server.send(server.history[2]);
    await until(() => window.fleet.delivered.length === 5);
    check(JSON.stringify(await offsets()) === '[1,2,3,4,5]', `delivered once in order: ${await offsets()}`);
    await until((sel) => document.querySelector(`${sel} [data-testid="job-progress"]`)?.getAttribute('aria-valuenow') === '75', row);

    step('a gap that persists makes the page resubscribe with since');
    const before = server.subscribes.length;
    server.append('JobProgress', { jobId: JOB, progress: 0.9 }); // 6: lost in transit
    server.send(server.append('JobProgress', { jobId: JOB, progress: 0.95 })); // 7
    check(JSON.stringify(await offsets()) === '[1,2,3,4,5]', '7 waits for 6');
    await until(() => window.fleet.delivered.length === 7);
    check(server.subscribes.length === before + 1 && server.subscribes[before].since === 5, `resubscribed from 5: ${JSON.stringify(server.subscribes.slice(before))}`);
    check(JSON.stringify(await offsets()) === '[1,2,3,4,5,6,7]', `after the gap: ${await offsets()}`);

    step('success with its summary; a late progress frame does not move the status back');
    server.send(server.append('JobSucceeded', { jobId: JOB, summary: { mode: 'ok', spunMs: 4000 }, result: { bucket: 'results', key: `jobs/${JOB}.json` } }));
    server.send(server.append('JobProgress', { jobId: JOB, progress: 0.5 }));
    await until(() => window.fleet.delivered.length === 9);
    check((await page.getAttribute(row, 'data-status')) === 'SUCCEEDED', 'still succeeded');
    check((await page.textContent(`${row} [data-testid="job-summary"]`)).includes('4,000'), 'the summary is shown');
    check((await page.getAttribute(`${row} [data-testid="job-progress"]`, 'aria-valuenow')) === '100', 'progress full');

    step('a discontinuity moves the cursor and reloads the list');
    const loads = server.jobLoads;
    server.send({ channel: 'user:dev', offset: 20, type: 'discontinuity', data: { since: 9, resumeAfter: 20, reason: 'expired' } });
    server.send({ channel: 'user:dev', offset: 21, type: 'JobProgress', data: { jobId: JOB, progress: 1 } });
    await until(() => window.fleet.delivered.length === 11);
    check(JSON.stringify((await offsets()).slice(-2)) === '[20,21]', 'the stream goes on after the discontinuity');
    await until((n) => window.fleet.jobLoads > n, loads);

    step('a finished job without a picture offers its download; a sir job draws its bands');
    check(await page.isVisible(`${row} [data-testid="job-download"]`), 'the spin job has a download');
    check((await page.locator(`${row} [data-testid="job-chart-toggle"]`).count()) === 0, 'and no chart');
    const sirRow = `[data-testid="job"][data-job-id="${SIR_JOB}"]`;
    await page.click(`${sirRow} [data-testid="job-chart-toggle"]`);
    await until((sel) => document.querySelectorAll(`${sel} [data-testid="chart-median"]`).length === 4, sirRow);
    const drawn = await fleet((id) => window.fleet.charts[id], SIR_JOB);
    check(JSON.stringify(drawn.series) === JSON.stringify({ susceptible: DAYS + 1, exposed: DAYS + 1, infected: DAYS + 1, recovered: DAYS + 1 }),
      `a median per compartment, a point per day: ${JSON.stringify(drawn)}`);
    check((await page.locator(`${sirRow} [data-testid="chart-band"]`).count()) === 4, 'a band per compartment');
    check((await page.textContent(`${sirRow} [data-testid="chart-legend"]`)).includes('recovered'), 'the legend names them');

    step('an error frame is shown; frames of other channels are ignored');
    server.send({ channel: 'user:eve', offset: 22, type: 'JobProgress', data: { jobId: 'x', progress: 0.1 } });
    server.send({ channel: 'job:x', offset: 0, type: 'error', data: { code: 'forbidden', message: 'not yours' } });
    await until(() => document.querySelector('[data-testid="connection"]').dataset.state === 'error');
    check((await fleet(() => window.fleet.delivered.length)) === 11, 'nothing delivered from another channel');

    step('a server-side close makes the page reconnect by itself');
    await server.current().close({ code: 1001, reason: 'Going away' });
    await until(() => window.fleet.connections === 3 && window.fleet.connected);
    check(server.subscribes[server.subscribes.length - 1].since === 21, 'resubscribed from 21');

    step('a forbidden answer on its own channel (authorization lost) makes the page reconnect');
    server.send({ channel: 'user:dev', offset: 0, type: 'error', data: { code: 'forbidden', message: 'reconnect with a token' } });
    await until(() => window.fleet.connections === 4 && window.fleet.connected);
    await until(() => document.querySelector('[data-testid="connection"]').dataset.state === 'live');
    check(JSON.stringify(await offsets()) === '[1,2,3,4,5,6,7,8,9,20,21]', `nothing delivered twice: ${await offsets()}`);

    await page.screenshot({ path: screenshot, fullPage: true });
    await page.close();

    await sseFallback(context, html, errors);
    check(errors.length === 0, `no page errors: ${errors.map((e) => e.message)}`);
    console.log(`ok: dashboard logic against the fake backend (screenshot: ${screenshot})`);
  } finally {
    await close();
  }
}

/**
 * When the WebSocket cannot connect (nothing listens for it here: the page's origin is
 * routed, its sockets are not), the page falls back to Server-Sent Events, with `since`.
 */
async function sseFallback(context, html, errors) {
  step('SSE fallback: the WebSocket never opens, so the page reads /sse with since');
  const page = await context.newPage();
  forwardConsole(page, errors);
  const requests = [];
  let onResumed;
  const resumed = new Promise((resolve) => { onResumed = resolve; });
  const frame = (offset, type, data) => JSON.stringify({ channel: 'user:dev', offset, type, data });
  await page.route(`${ORIGIN}/**`, async (route) => {
    const url = new URL(route.request().url());
    const json = (status, body) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
    if (url.pathname === '/') return route.fulfill({ status: 200, contentType: 'text/html', body: html });
    if (url.pathname === '/dev/token') return json(200, { token: TOKEN, sub: 'dev' });
    if (url.pathname === '/jobs') return json(200, { jobs: [] });
    if (url.pathname === '/sse') {
      requests.push(Object.fromEntries(url.searchParams));
      if (requests.length === 2) onResumed();
      // The first stream carries three frames (one twice) and ends; later ones carry none.
      const events = requests.length > 1 ? [] : [
        frame(1, 'JobRequested', { jobId: JOB, model: 'spin', params: {}, requestedBy: 'dev' }),
        frame(2, 'JobStarted', { jobId: JOB, worker: 'w', attempt: 1 }),
        frame(2, 'JobStarted', { jobId: JOB, worker: 'w', attempt: 1 }),
        frame(3, 'JobProgress', { jobId: JOB, progress: 0.5 }),
      ];
      const body = events.map((e) => `id: ${JSON.parse(e).offset}\ndata: ${e}\n\n`).join('');
      return route.fulfill({ status: 200, contentType: 'text/event-stream', body });
    }
    return json(404, { error: 'not found' });
  });
  await page.goto(`${ORIGIN}/`);
  const until = (fn) => page.waitForFunction(fn, undefined, { timeout: 30_000 });
  await until(() => window.fleet.delivered.length === 3);
  check(requests[0].channel === 'user:dev' && requests[0].since === '0' && requests[0].token === TOKEN,
    `the first SSE request: ${JSON.stringify(requests[0])}`);
  await until(() => document.querySelector('[data-job-id] [data-testid="job-progress"]')?.getAttribute('aria-valuenow') === '50');
  check(JSON.stringify(await page.evaluate(() => window.fleet.delivered.map((f) => f.offset))) === '[1,2,3]', 'SSE frames once, in order');
  // The stream ended: the page tries again (WebSocket first, then SSE) from where it was.
  await withDeadline(resumed, 30_000, 'a second SSE request');
  check(requests.length >= 2 && requests[1].since === '3', `SSE resumed with since=3: ${JSON.stringify(requests)}`);
  await page.close();
}

/** `promise`, or a failure naming `what` after `ms`. */
function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

mkdirSync(dirname(screenshot), { recursive: true });
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
