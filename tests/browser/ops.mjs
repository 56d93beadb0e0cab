// The ops console end to end, in headless Chromium against a running local stack whose
// DLQ holds a poisoned message (driven by tests/it/ops_console.rs, or by hand against
// `fleet dev` after poisoning one):
//
//   FLEET_NON_OPS_TOKEN=$(fleet auth token --sub alice) \
//     node tests/browser/ops.mjs http://127.0.0.1:8080 fleet-dev-simulation-dlq [screenshot.png]
//
// As an ops user: opens /ops (401: the sign-in panel), takes the local dev ops token,
// sees the DLQ's depth, peeks the message (its reason and correlation id), redrives it
// with the confirmation (a dry run first shows where it goes) and waits until the depth
// is 0 and the source queue holds the copy. As a user without the fleet-ops group: /ops
// answers 403 and shows why, and the API answers 403. Exits 0 when every check passes.

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { check, forwardConsole, launch, step } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [base, dlq] = [process.argv[2], process.argv[3]];
const screenshot = process.argv[4] || join(root, 'target/ops.png');
const nonOps = process.env.FLEET_NON_OPS_TOKEN;

if (!base || !dlq || !nonOps) {
  console.error('usage: FLEET_NON_OPS_TOKEN=<token without fleet-ops> node ops.mjs <base url> <dlq name> [screenshot.png]');
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

    step(`open ${base}/ops without a token`);
    let response = await page.goto(`${base}/ops`);
    check(response.status() === 401, `GET /ops without a token answers 401 (${response.status()})`);
    await until('the sign-in panel offers the local dev ops token', 15_000,
      () => !document.querySelector('[data-testid="dev-token"]').hidden);
    check(await page.isHidden('#console'), 'the console stays hidden');

    step('sign in with the local dev ops token');
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="dev-token"]')]);
    await until('the console is granted and ready', 15_000,
      () => window.fleetOps.access === 'granted' && window.fleetOps.ready);
    await until('the user is shown', 15_000,
      () => document.querySelector('[data-testid="user"]').textContent.includes('dev-ops'));

    const row = `[data-testid="dlq"][data-name="${dlq}"]`;
    step(`the DLQ ${dlq} shows the poisoned message`);
    await until('the DLQ has depth 1', 30_000, (sel) => document.querySelector(sel)?.dataset.depth === '1', row);

    step('peek it: reason and correlation id');
    await page.click(`${row} [data-testid="dlq-show"]`);
    await until('the message is listed', 15_000, () => document.querySelectorAll('[data-testid="message"]').length === 1);
    const reason = await page.textContent('[data-testid="message-reason"]');
    check(reason.includes('Worker.InvalidTask') && reason.includes('taskToken'), `the reason: ${reason}`);
    const correlation = await page.textContent('[data-testid="message-correlation"]');
    check(correlation === 'poisoned-in-browser', `the correlation id: ${correlation}`);

    step('redrive it, confirming what the dry run shows');
    await page.click('[data-testid="message-redrive"]');
    await until('the confirmation opens', 15_000, () => document.querySelector('[data-testid="confirm-dialog"]').open);
    const question = await page.textContent('[data-testid="confirm-text"]');
    check(question.includes(dlq), `the confirmation names the queue: ${question}`);
    const plan = await page.textContent('[data-testid="confirm-detail"]');
    check(/1 to queue \S*simulation\b/.test(plan), `the dry run says where it goes: ${plan}`);
    check((await page.evaluate(() => window.fleetOps.lastRedrive)) === undefined, 'nothing redriven before confirming');
    await page.click('[data-testid="confirm-ok"]');
    await until('the redrive reports', 30_000,
      () => document.querySelector('[data-testid="dlq-status"]').dataset.kind === 'ok');
    const tally = await page.textContent('[data-testid="dlq-status"]');
    check(tally.includes('redrove 1 message'), `the tally: ${tally}`);

    step('the depth goes to 0 and the source queue holds the copy');
    await until('the DLQ has depth 0', 30_000, (sel) => document.querySelector(sel)?.dataset.depth === '0', row);
    await until('the simulation queue shows the copy', 30_000, () =>
      [...document.querySelectorAll('[data-testid="queue"]')].some((q) => /-simulation$/.test(q.dataset.name) && Number(q.dataset.visible) >= 1));
    await page.screenshot({ path: screenshot, fullPage: true });

    step('a user without the fleet-ops group gets 403 on /ops and on its API');
    await context.clearCookies();
    const host = new URL(base).hostname;
    await context.addCookies([{ name: 'fleet_ops_token', value: nonOps, domain: host, path: '/ops', sameSite: 'Strict' }]);
    response = await page.goto(`${base}/ops`);
    check(response.status() === 403, `GET /ops without the group answers 403 (${response.status()})`);
    await until('the page says why', 15_000,
      () => document.querySelector('[data-testid="access-message"]').textContent.includes('lacks the fleet-ops group'));
    check(await page.isHidden('#console'), 'the console stays hidden');
    const api = await page.evaluate(async (token) => {
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const list = await fetch('/ops/api/dlqs', { headers });
      const redrive = await fetch('/ops/api/dlqs/simulation-dlq/redrive', { method: 'POST', headers, body: '{}' });
      const anonymous = await fetch('/ops/api/dlqs');
      return { list: list.status, redrive: redrive.status, anonymous: anonymous.status };
    }, nonOps);
    check(api.list === 403 && api.redrive === 403, `the API refuses the user: ${JSON.stringify(api)}`);
    check(api.anonymous === 401, `the API refuses no token with 401: ${JSON.stringify(api)}`);

    check(errors.length === 0, `no page errors: ${errors.map((e) => e.message)}`);
    console.log(`ok: an ops user redrove the poisoned message of ${dlq} from /ops (screenshot: ${screenshot}); a non-ops user got 403`);
  } catch (e) {
    if (page) {
      const failed = screenshot.replace(/\.png$/, '-failed.png');
      await page.screenshot({ path: failed, fullPage: true }).catch(() => {});
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
