// e2e.mjs - the kiosk page in headless chromium against the real
// cartwise-edge and cartwise-simlock (started by e2e.sh, which passes their
// addresses in the environment).
//
// Hebrew (touch: the on-screen keypads): phone -> SMS code (read from the
// "log" provider's file) -> take cart N -> the simulator takes the cart out
// -> return -> push into slot S -> the simulator docks it in S -> the
// receipt with the duration; my rentals shows it. English (keyboard only,
// no mouse): a wrong code, then the staff-PIN sign-in (a wrong PIN first),
// the same round trip, "already renting" on the way. RTL / LTR layout
// checked; nothing stored by the browser; screenshots in SHOTS_DIR.
import fs from 'node:fs';
import {
  assertNothingStored, check, errorReason, fail, kioskPage, note, onScreen, runInBrowser, screens,
  sim as simCmd, tapDigits, xOf,
} from './lib.mjs';

const env = (k) => process.env[k] || fail(`${k} is not set (run through e2e.sh)`);
const BASE = env('KIOSK_BASE');
const SIM_SOCK = env('SIM_SOCK');
const ADMIN = env('ADMIN_TOKEN');
const BRANCH = env('BRANCH');
const PIN = env('STAFF_PIN');
const SMS_LOG = env('SMS_LOG');
const shot = screens(env('SHOTS_DIR'));

// One command to the simulator's control socket (test/browser_lib.mjs).
const sim = (cmd) => simCmd(SIM_SOCK, cmd);
// Carts 1-4 are locks 0-3 of board 1.
const lockOf = (n) => `1 ${n - 1}`;
async function cart(n) {
  const r = await fetch(`${BASE}/api/branches/${BRANCH}/carts/${n}`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  check(r.ok, `GET cart ${n}: ${r.status}`);
  return r.json();
}
async function until(what, fn, ms = 8000) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) fail('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The newest code texted to phone (E.164) after `after` lines of the SMS log;
// the text must be in the language the page asked for.
const smsLines = () => (fs.existsSync(SMS_LOG) ? fs.readFileSync(SMS_LOG, 'utf8').split('\n').filter(Boolean) : []);
async function smsCode(phone, after, lang) {
  let line;
  await until('the SMS to ' + phone, async () => {
    line = smsLines().slice(after).reverse().find((l) => l.startsWith(phone + ' '));
    return line;
  });
  check(lang === 'he' ? /קוד/.test(line) : /Your CartWise code/.test(line), `SMS not in ${lang}: ${line}`);
  return line.match(/\b(\d{6})\b/)[1];
}

// The customer walks away with the cart: the simulator's slot empties.
async function takeOut(n) {
  await sim('take ' + lockOf(n));
  await until(`cart ${n} taken`, async () => (await cart(n)).cart_present === false);
}

async function checkDirection(page, dir, lang) {
  const d = await page.evaluate(() => ({ dir: document.dir, lang: document.documentElement.lang,
    body: getComputedStyle(document.body).direction,
    h1: getComputedStyle(document.querySelector('.screen:not([hidden]) h1')).direction }));
  check(d.dir === dir && d.lang === lang && d.body === dir && d.h1 === dir,
    `expected ${lang}/${dir}, got ${JSON.stringify(d)}`);
}
// Phone screen layout: the keypad reads 1 2 3 from the left in both
// languages (as on every phone); the row of actions follows the language:
// "back" (first) on the right in Hebrew, on the left in English.
async function checkPhoneLayout(page, dir) {
  const one = await xOf(page, '#s-phone .keypad [data-key="1"]');
  const three = await xOf(page, '#s-phone .keypad [data-key="3"]');
  check(one < three, `keypad: 1 at x=${one} is not left of 3 at x=${three}`);
  const back = await xOf(page, '#s-phone .actions .back');
  const next = await xOf(page, '#phone-next');
  check(dir === 'rtl' ? back > next : back < next, `${dir}: back at x=${back}, send code at x=${next}`);
  const inputDir = await page.evaluate(() => getComputedStyle(document.getElementById('phone')).direction);
  check(inputDir === 'ltr', 'the phone number field is not left-to-right');
}

async function hebrewTouch(page) {
  note('Hebrew: right to left by default');
  await checkDirection(page, 'rtl', 'he');
  check((await page.textContent('#go-rent')).includes('עגלה'), 'the rent button is not in Hebrew');
  await shot(page, 'he-1-home');

  note('Hebrew: rent with a code by SMS');
  await page.click('#go-rent');
  await onScreen(page, 's-phone');
  await tapDigits(page, '0521234567');
  check(await page.isHidden('#phone-staff') && await page.isHidden('#sms-note'), 'SMS works, yet the page says it does not');
  await checkPhoneLayout(page, 'rtl');
  await shot(page, 'he-2-phone');
  let seen = smsLines().length;
  await page.click('#phone-next');
  await onScreen(page, 's-code');
  await shot(page, 'he-3-code');
  await tapDigits(page, await smsCode('+972521234567', seen, 'he')); // the sixth digit sends it
  await onScreen(page, 's-take');
  const n = Number(await page.getAttribute('#s-take', 'data-cart'));
  check(n >= 1 && n <= 4, 'no cart number on the take screen');
  check((await page.textContent('#h-take')).includes(`עגלה ${n}`), 'take screen heading: ' + await page.textContent('#h-take'));
  check(!(await assertNothingStored(page)), 'the token outlived the finished rent');
  await shot(page, 'he-4-take');
  await takeOut(n);
  await page.click('#s-take .finish');
  await onScreen(page, 's-home');

  note(`Hebrew: return cart ${n}`);
  await page.click('#go-return');
  await tapDigits(page, '0521234567');
  await page.click('#phone-next');
  await onScreen(page, 's-slot');
  const slot = Number(await page.getAttribute('#s-slot', 'data-slot'));
  check(slot >= 1 && slot <= 4, `slot ${slot} for cart ${n}`);
  check((await page.textContent('#h-slot')).includes(String(slot)), 'slot number not shown');
  await shot(page, 'he-5-slot');
  await sim('dock ' + lockOf(slot));
  await onScreen(page, 's-receipt');
  check((await page.textContent('#r-cart')).trim() === String(n), 'receipt: wrong cart');
  check(/דק׳|פחות מדקה/.test(await page.textContent('#r-duration')), 'receipt: no duration in Hebrew: ' + await page.textContent('#r-duration'));
  await shot(page, 'he-6-receipt');
  await page.click('#s-receipt .finish');
  await onScreen(page, 's-home');

  note('Hebrew: my rentals');
  await page.click('#go-history');
  await tapDigits(page, '0521234567');
  seen = smsLines().length;
  await page.click('#phone-next');
  await onScreen(page, 's-code');
  await tapDigits(page, await smsCode('+972521234567', seen, 'he'));
  await onScreen(page, 's-mine');
  const hist = await page.textContent('#mine-history');
  check(hist.includes(`עגלה ${n}`) && hist.includes('הוחזרה'), 'history lacks the returned rental: ' + hist);
  check(!(await assertNothingStored(page)), 'the token outlived my rentals');
  await shot(page, 'he-7-mine');
  await page.keyboard.press('Escape'); // done: the next customer
  await onScreen(page, 's-home');
}

// Presses Tab until the element matching selector has the focus.
async function tabTo(page, selector) {
  for (let i = 0; i < 40; i++) {
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) {
      const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      check(ring !== 'none', `no visible focus on ${selector}`);
      return;
    }
    await page.keyboard.press('Tab');
  }
  fail('Tab never reached ' + selector);
}

async function englishKeyboard(page) {
  const kb = page.keyboard;
  note('English: switched with the keyboard, left to right');
  await tabTo(page, '#lang');
  await kb.press('Enter');
  await checkDirection(page, 'ltr', 'en');
  await shot(page, 'en-1-home');

  await tabTo(page, '#go-rent');
  await kb.press('Enter');
  await onScreen(page, 's-phone');
  await kb.type('0527654321'); // typed digits go to the field
  check(await page.inputValue('#phone') === '0527654321', 'typed digits did not reach the phone field');
  await checkPhoneLayout(page, 'ltr');
  await shot(page, 'en-2-phone');
  let seen = smsLines().length;
  await kb.press('Enter'); // send code
  await onScreen(page, 's-code');
  const code = await smsCode('+972527654321', seen, 'en');

  note('English: a wrong code, then the staff PIN (a wrong one first)');
  await kb.type(code === '000000' ? '111111' : '000000');
  check(/not right\. 4 tries left/.test(await errorReason(page, 'wrong_code')), 'wrong code message');
  await shot(page, 'en-3-wrong-code');
  await tabTo(page, '#code-staff');
  await kb.press('Enter');
  await onScreen(page, 's-staff');
  await kb.type('0000');
  await kb.press('Enter');
  const wrong = await errorReason(page, 'wrong_pin');
  check(/staff PIN is not right/.test(wrong), 'wrong PIN message: ' + wrong);
  await shot(page, 'en-4-wrong-pin');
  await page.focus('#h-staff');
  await kb.type(PIN);
  await kb.press('Enter');
  await onScreen(page, 's-take');
  const n = Number(await page.getAttribute('#s-take', 'data-cart'));
  check((await page.textContent('#h-take')).trim() === `Take cart ${n}`, 'take screen: ' + await page.textContent('#h-take'));
  await shot(page, 'en-5-take');
  await takeOut(n);
  await kb.press('Escape'); // done
  await onScreen(page, 's-home');
  check(await page.evaluate(() => document.dir) === 'rtl', 'the reset did not go back to Hebrew');

  note('English: already renting');
  await tabTo(page, '#lang');
  await kb.press('Enter');
  await tabTo(page, '#go-rent');
  await kb.press('Enter');
  await kb.type('0527654321');
  seen = smsLines().length;
  await kb.press('Enter');
  await onScreen(page, 's-code');
  await kb.type(await smsCode('+972527654321', seen, 'en'));
  const already = await errorReason(page, 'already_renting');
  check(/already have a cart/.test(already), 'already renting message: ' + already);
  await shot(page, 'en-6-already-renting');

  note(`English: return cart ${n} from the error's button`);
  await tabTo(page, '#error-action');
  await kb.press('Enter');
  await onScreen(page, 's-phone');
  check(await page.inputValue('#phone') === '0527654321', 'the return did not keep the phone');
  await page.focus('#h-phone');
  await kb.press('Enter');
  await onScreen(page, 's-slot');
  const slot = Number(await page.getAttribute('#s-slot', 'data-slot'));
  check((await page.textContent('#h-slot')).trim() === `Push the cart into slot ${slot}`, 'slot heading');
  await shot(page, 'en-7-slot');
  await sim('dock ' + lockOf(slot));
  await onScreen(page, 's-receipt');
  check((await page.textContent('#r-cart')).trim() === String(n), 'receipt: wrong cart');
  check(/min|less than a minute/.test(await page.textContent('#r-duration')), 'receipt duration');
  await shot(page, 'en-8-receipt');
  check(!(await assertNothingStored(page)), 'a token outlived the flows');
}

await runInBrowser(async (browser, problems) => {
  const page = await kioskPage(browser, BASE, problems); // one kiosk, customer after customer
  await hebrewTouch(page);
  await englishKeyboard(page);
});
