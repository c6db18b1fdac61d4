// page_flows.mjs - the kiosk page in headless chromium against the contract
// mock (mock_api.mjs), no daemon: every failure a customer can meet shows
// its message (keyed on error.reason) and offers the right way on; the SMS
// code flow; idle reset; nothing kept by the browser; accessibility checks
// (names, touch target sizes, text contrast). Screenshots in SHOTS_DIR.
import { createMock } from './mock_api.mjs';
import {
  assertNothingStored, check, errorReason, kioskPage, note, onScreen, runInBrowser, screens,
} from './lib.mjs';

const shot = screens(process.env.SHOTS_DIR || 'kiosk-screens');
const { server, state } = createMock();
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const BASE = `http://127.0.0.1:${server.address().port}`;

const set = (o) => Object.assign(state, o);
async function home(page) {
  await page.keyboard.press('Escape');
  await onScreen(page, 's-home');
}
async function phone(page, flow, number) {
  await page.click('#go-' + flow);
  await onScreen(page, 's-phone');
  await page.keyboard.type(number);
  await page.keyboard.press('Enter');
}
// Rent or history up to the code screen, then the right code (typed: the
// sixth digit sends it).
async function signIn(page, flow, number) {
  await phone(page, flow, number);
  await onScreen(page, 's-code');
  await page.keyboard.type(state.last_code);
}

async function a11y(page, where) {
  const bad = await page.evaluate(() => {
    const out = [];
    const lum = (c) => {
      const v = c.match(/[\d.]+/g).slice(0, 3).map((x) => {
        const s = Number(x) / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
    };
    const bg = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (!/rgba\(.*, 0\)$/.test(c) && c !== 'transparent') return c;
      }
      return 'rgb(255, 255, 255)';
    };
    const shown = (el) => el.getClientRects().length > 0;
    document.querySelectorAll('button, input').forEach((el) => {
      if (!shown(el)) return;
      const name = el.getAttribute('aria-label') || el.textContent.trim() ||
        (el.id && document.querySelector(`label[for="${el.id}"]`)?.textContent.trim());
      if (!name) out.push(`no accessible name: ${el.outerHTML.slice(0, 80)}`);
      const r = el.getBoundingClientRect();
      if (el.tagName === 'BUTTON' && (r.width < 64 || r.height < 64)) out.push(`small target ${Math.round(r.width)}x${Math.round(r.height)}: ${name}`);
    });
    document.querySelectorAll('h1, h2, p, li, dt, dd, label, button, span').forEach((el) => {
      if (!shown(el) || !el.textContent.trim()) return;
      const s = getComputedStyle(el);
      const a = lum(s.color), b = lum(bg(el));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const min = el.disabled ? 0 : 4.5;
      if (ratio < min) out.push(`contrast ${ratio.toFixed(2)} < 4.5: ${el.textContent.trim().slice(0, 40)}`);
    });
    return out;
  });
  check(bad.length === 0, `${where}: ${bad.join('; ')}`);
}

await runInBrowser(async (browser, problems) => {
  const page = await kioskPage(browser, BASE, problems, { clock: true });
  await a11y(page, 'home (he)');

  note('SMS code: a wrong code says how many tries are left');
  await phone(page, 'rent', '052-111-2222');
  await onScreen(page, 's-code');
  check((await page.textContent('#code-sent')).includes('052-111-2222'), 'the code screen does not name the phone');
  await a11y(page, 'code screen');
  await page.keyboard.type('000000');
  check((await errorReason(page, 'wrong_code')).includes('4'), 'no tries-left count');
  await shot(page, 'flows-he-wrong-code');

  note('lock fault: "try another cart" rents one');
  set({ assign_fail: ['lock_fault'] });
  await page.keyboard.type(state.last_code);
  check(/המנעול לא נפתח/.test(await errorReason(page, 'lock_fault')), 'lock fault message');
  check(await page.evaluate(() => window.CW_KIOSK.hasToken()), 'the token was dropped before the retry');
  await shot(page, 'flows-he-lock-fault');
  await page.click('#error-action');
  await onScreen(page, 's-take');
  check(!(await page.evaluate(() => window.CW_KIOSK.hasToken())), 'token kept after the rent');
  await a11y(page, 'take screen');
  await home(page);

  note('already renting, no cart, board offline, sign-in expired');
  await signIn(page, 'rent', '0521112222');
  await errorReason(page, 'already_renting');
  check(await page.isVisible('#error-action'), 'already renting offers no way to return');
  await home(page);
  for (const [reason, text] of [['no_cart', 'אין כרגע עגלה פנויה'], ['board_offline', 'לא מגיבה'],
    ['signin_required', 'צריך להיכנס מחדש']]) {
    set({ assign_fail: [reason] });
    await signIn(page, 'rent', '0523334444');
    check((await errorReason(page, reason)).includes(text), reason + ' message');
    await shot(page, 'flows-he-' + reason);
    await home(page);
  }

  note('invalid phone (too short on the page, a landline at the server)');
  await phone(page, 'rent', '12345');
  await errorReason(page, 'invalid_phone');
  await page.fill('#phone', '');
  await page.keyboard.press('Escape');
  await phone(page, 'rent', '031234567');
  await errorReason(page, 'invalid_phone');
  await home(page);

  note('too many codes requested, too many tries (minutes from retry_after_s)');
  set({ otp_fail: ['too_many_requests'] });
  await phone(page, 'rent', '0525556666');
  check((await errorReason(page, 'too_many_requests')).includes('20'), 'retry minutes not shown');
  await home(page);
  set({ verify_fail: ['too_many_attempts'] });
  await signIn(page, 'history', '0525556666');
  check((await errorReason(page, 'too_many_attempts')).includes('15'), 'retry minutes not shown');
  await home(page);

  note('code used up: offers a new code');
  await phone(page, 'history', '0527778888');
  await onScreen(page, 's-code');
  for (let i = 0; i < 4; i++) {
    await page.keyboard.type('999999'); // the sixth digit sends it; typing clears the last error
    await errorReason(page, 'wrong_code');
  }
  check((await page.textContent('#error-text')).includes('נותר ניסיון אחד'), 'last try not said');
  await page.keyboard.type('999999');
  await errorReason(page, 'code_expired');
  await page.click('#error-action');
  await onScreen(page, 's-code');
  await page.keyboard.type(state.last_code);
  await onScreen(page, 's-mine');
  set({ sms: 'unreachable' }); // read again by the reset on the way home
  await home(page);

  note('SMS unreachable: the page offers the staff PIN');
  await page.waitForFunction(() => fetch('/api/kiosk/info').then((r) => r.ok));
  await page.click('#lang');
  await phone(page, 'rent', '0529990000');
  await onScreen(page, 's-phone');
  check(await page.isVisible('#sms-note') && await page.isVisible('#phone-staff'), 'no staff sign-in offered');
  await errorReason(page, 'sms_unreachable');
  await shot(page, 'flows-en-sms-unreachable');
  await a11y(page, 'phone screen (en, sms unreachable)');
  await page.click('#error-action');
  await onScreen(page, 's-staff');
  await page.keyboard.type('1111');
  await page.keyboard.press('Enter');
  check(/staff PIN is not right/.test(await errorReason(page, 'wrong_pin')), 'wrong PIN message');
  await page.keyboard.type('2468');
  await page.keyboard.press('Enter');
  await onScreen(page, 's-take');
  set({ sms: 'ok' });
  await home(page);

  note('return: no open rental, no free slot, then a late return with its receipt');
  await page.click('#lang');
  await phone(page, 'return', '0520000001');
  check(/no cart rented/.test(await errorReason(page, 'no_open_rental')), 'no open rental message');
  await home(page);
  await page.click('#lang');
  set({ return_fail: ['no_free_slot'] });
  await phone(page, 'return', '0529990000');
  await errorReason(page, 'no_free_slot');
  await page.keyboard.press('Enter');
  await onScreen(page, 's-slot');
  const slot = await page.getAttribute('#s-slot', 'data-slot');
  check((await page.textContent('#h-slot')).includes('slot ' + slot), 'slot heading');
  await fetch(BASE + '/__mock/dock', { method: 'POST', body: JSON.stringify({ late: true, minutes: 75 }) });
  await onScreen(page, 's-receipt');
  check((await page.textContent('#r-duration')).trim() === '1 h 15 min', 'duration: ' + await page.textContent('#r-duration'));
  check(await page.isVisible('#r-late'), 'late return not said');
  await a11y(page, 'receipt (en)');
  await shot(page, 'flows-en-receipt-late');

  note('the receipt resets by itself; idle resets a half-done sign-in to Hebrew');
  await page.clock.runFor(25000);
  await onScreen(page, 's-home');
  await page.click('#lang');
  await phone(page, 'history', '0521112222');
  await onScreen(page, 's-code');
  await page.keyboard.type('12');
  await page.clock.runFor(61000);
  await onScreen(page, 's-home');
  check(await page.evaluate(() => document.dir) === 'rtl', 'idle did not go back to Hebrew');
  check(await page.inputValue('#code') === '' && await page.inputValue('#phone') === '', 'idle left digits behind');
  check(!(await assertNothingStored(page)), 'a token survived idle');

  note('no cookie sent, the token only on the two customer calls');
  const bad = state.requests.filter((r) => r.cookie ||
    (r.auth !== (r.path === '/api/me/rentals' || r.path.endsWith('/carts/assign'))));
  check(bad.length === 0, 'requests with a cookie or a misplaced token: ' + JSON.stringify(bad.slice(0, 3)));

  note('network down');
  await page.click('#go-return');
  await onScreen(page, 's-phone');
  await page.keyboard.type('0521112222');
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await page.keyboard.press('Enter');
  check(/לא מצליח להתחבר/.test(await errorReason(page, 'network')), 'network message');
  await shot(page, 'flows-he-network');
});
