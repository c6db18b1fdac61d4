// lib.mjs - shared by the kiosk browser tests (e2e.mjs, page_flows.mjs):
// headless Debian chromium through playwright-core, screenshots, asserts,
// and what a customer does on the page.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { check, fail, launchChromium, note } from '../browser_lib.mjs';

export { CHROMIUM, check, fail, note, sim } from '../browser_lib.mjs';

// (test/browser_lib.mjs)
export async function launch() {
  return launchChromium(chromium);
}

// Runs body(browser, problems) in a fresh chromium, then fails when the
// browser reported a problem (kioskPage collects them). Exits 0 when all
// passed, else 1 after printing why. A graceful close may take many seconds
// on a loaded machine: after 2 s the process exits and playwright kills the
// browser it launched.
export async function runInBrowser(body) {
  const browser = await launch();
  const problems = [];
  let rc = 1;
  try {
    await body(browser, problems);
    check(problems.length === 0, 'browser problems:\n' + problems.join('\n'));
    note('ok');
    rc = 0;
  } catch (e) {
    console.error(e);
  } finally {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 2000))]);
  }
  process.exit(rc);
}

// A kiosk-sized page that fails the test on any page error, console error
// (a CSP violation is one) or request to another origin.
// opts.clock: playwright's controllable clock, installed before the page runs.
export async function kioskPage(browser, base, problems, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1080, height: 1500 },
    timezoneId: 'Asia/Jerusalem', locale: 'he-IL' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // API errors and a dropped connection are part of the tests; anything
    // else logged as an error (a CSP refusal, a script error) is not
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push('console: ' + m.text());
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) problems.push('foreign request: ' + r.url());
  });
  if (opts.clock) await page.clock.install();
  await page.goto(base + '/');
  await page.waitForFunction(() => window.CW_KIOSK && document.querySelector('.keypad .key'));
  return page;
}

export function screens(dir) {
  fs.mkdirSync(dir, { recursive: true });
  return async (page, name) => page.screenshot({ path: path.join(dir, name + '.png') }); // 1080x1500 holds every screen
}

export const visible = (page, id) => page.waitForSelector(`#${id}:not([hidden])`, { timeout: 15000 });
export async function onScreen(page, id) {
  await page.waitForFunction((s) => window.CW_KIOSK.screen() === s, id, { timeout: 15000 });
}
// Taps digits on the on-screen keypad of the visible screen.
export async function tapDigits(page, digits) {
  for (const d of digits) await page.click(`.screen:not([hidden]) .keypad [data-key="${d}"]`);
}
export async function errorReason(page, reason) {
  await page.waitForFunction((r) => window.CW_KIOSK.reason() === r, reason, { timeout: 15000 })
    .catch(async () => fail(`expected error ${reason}, page shows ${await page.evaluate(() => window.CW_KIOSK.reason())}: ${await page.textContent('#error-text')}`));
  return (await page.textContent('#error-text')).trim();
}
// Nothing of the customer's sign-in is kept by the browser.
export async function assertNothingStored(page) {
  const s = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length,
    cookie: document.cookie, token: window.CW_KIOSK.hasToken() }));
  check(s.local === 0 && s.session === 0 && s.cookie === '', 'the browser stored something: ' + JSON.stringify(s));
  return s.token;
}
// Left edges of two elements (layout direction checks).
export async function xOf(page, selector) {
  const b = await page.locator(selector).first().boundingBox();
  check(b, selector + ' is not laid out');
  return b.x;
}
