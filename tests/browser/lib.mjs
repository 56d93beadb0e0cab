// What the browser scripts share: launching Debian's Chromium through playwright-core, and
// waiting on conditions with deadlines.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Chromium, headless, with a fresh profile and nothing that calls home. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'fleet-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

export function step(message) {
  console.log(`· ${message}`);
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Forwards the page's console and errors, so a failure shows what the page saw. */
export function forwardConsole(page, errors) {
  page.on('console', (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => {
    console.log(`  [page exception] ${e.message}`);
    errors.push(e);
  });
}
