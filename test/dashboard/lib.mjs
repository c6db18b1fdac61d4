// lib.mjs - the harness of the dashboard's browser tests (docs/DASHBOARD.md
// "Tests"): headless Debian chromium through playwright-core, one page that
// fails the run on any page error, console error or request outside the
// cloud's origin, the data-testid hooks (docs/DASHBOARD.md "Test hooks"), the simulator's
// control socket, the cloud's and the edge's APIs, and screenshots.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { check, fail, launchChromium, note } from '../browser_lib.mjs';

export { CHROMIUM, check, fail, note, sim } from '../browser_lib.mjs';
// The test's addresses and users: the environment, and the JSON object in
// the file CW_DASH_CONFIG names once it exists (dashboard.sh starts chromium
// first and writes the file when the daemons are up).
let config = process.env;
export async function waitConfig(ms = 240000) {
  const f = process.env.CW_DASH_CONFIG;
  if (!f) return;
  await until('the test config ' + f, () => fs.existsSync(f), ms);
  config = { ...process.env, ...JSON.parse(fs.readFileSync(f, 'utf8')) };
}
export const env = (k) => config[k] || fail(`${k} is not set (run through dashboard.sh)`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits until fn() is truthy (every 100 ms); fails with what(), the last
// state, when ms pass.
export async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail('timed out waiting for ' + (typeof what === 'function' ? await what() : what));
    await sleep(100);
  }
}

// (test/browser_lib.mjs)
export async function launch() {
  return launchChromium(chromium);
}

// Runs body(page) in one fresh page of browser (launch(); a tablet in
// landscape, English by default), then fails when the browser reported a
// problem. Exits 0 when all passed, else 1 after printing why (and a
// screenshot of the page then, "failed.png").
export async function runInBrowser(browser, base, shots, body) {
  const problems = [];
  let rc = 1;
  let page;
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US',
      timezoneId: 'Asia/Jerusalem', hasTouch: true });
    page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => {
      // a refused request (401, 404: part of the tests) is logged by the
      // browser itself; anything else at error level (a CSP refusal, a
      // script error) is a problem
      if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push('console: ' + m.text());
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) {
        problems.push('foreign request: ' + r.url());
      }
    });
    await body(page);
    check(problems.length === 0, 'browser problems:\n' + problems.join('\n'));
    note('ok');
    rc = 0;
  } catch (e) {
    console.error(e);
    if (problems.length) console.error('browser problems:\n' + problems.join('\n'));
    if (page) {
      console.error('page at the failure: ' + page.url());
      await shots(page, 'failed').catch(() => {});
    }
  } finally {
    await Promise.race([browser.close(), sleep(2000)]);
  }
  process.exit(rc);
}

export function screens(dir) {
  fs.mkdirSync(dir, { recursive: true });
  return async (page, name) => page.screenshot({ path: path.join(dir, name + '.png'), fullPage: true });
}

// ---- the test hooks (docs/DASHBOARD.md "Test hooks", data-testid) ----
export const tid = (id) => `[data-testid="${id}"]`;
export async function shown(page, id, ms = 10000) {
  await page.waitForSelector(tid(id), { state: 'visible', timeout: ms })
    .catch(() => fail(`[data-testid="${id}"] not shown within ${ms} ms on ${page.url()}`));
  return page.locator(tid(id)).first();
}
export async function gone(page, id, ms = 10000) {
  await page.waitForSelector(tid(id), { state: 'detached', timeout: ms })
    .catch(() => fail(`[data-testid="${id}"] still there after ${ms} ms`));
}
// The attribute of the first element with that test id (null if none).
export const attrOf = (page, id, attr) => page.evaluate(([s, a]) => {
  const e = document.querySelector(s);
  return e ? e.getAttribute(a) : null;
}, [tid(id), attr]);
// Waits until the attribute reads want (a string or a RegExp).
export async function attrIs(page, id, attr, want, ms = 10000) {
  const ok = (v) => (want instanceof RegExp ? want.test(v ?? '') : v === want);
  await until(async () => `${id} ${attr}=${want} (it reads ${await attrOf(page, id, attr)})`,
    async () => ok(await attrOf(page, id, attr)), ms);
}
export async function routeIs(page, hash, ms = 10000) {
  await until(async () => `route ${hash} (at ${await page.evaluate(() => location.hash)})`,
    async () => (await page.evaluate(() => location.hash)) === hash, ms);
}
export async function go(page, hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

export async function signIn(page, email, password) {
  await shown(page, 'login-email');
  await page.fill(tid('login-email'), email);
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
  await gone(page, 'login-submit', 15000); // the cloud hashes the password (Argon2id)
}
export async function signOut(page) {
  await page.click(tid('nav-signout'));
  await shown(page, 'login-email');
  const left = await page.evaluate(() => Object.keys(sessionStorage).filter((k) => /eyJ/.test(sessionStorage.getItem(k))));
  check(left.length === 0, `sign-out left a token in sessionStorage (${left})`);
  // the next staff member does not land on the page the last one left
  const h = await page.evaluate(() => location.hash);
  check(h === '#/login', `sign-out went to ${h}, not #/login (no next= of the page it left)`);
}
export async function htmlLang(page) {
  return page.evaluate(() => ({ lang: document.documentElement.lang, dir: document.documentElement.dir,
    body: getComputedStyle(document.body).direction }));
}

// ---- the programs around the page ----
// JSON request; returns {status, body}.
export async function http(base, method, p, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  return { status: r.status, body: json };
}
