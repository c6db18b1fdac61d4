/* kiosk.js - the customer kiosk: rent, return, my rentals (docs/KIOSK.md).
 *
 * Plain browser JavaScript, no build step, nothing from the internet. Talks
 * only to the edge that served the page (same origin, docs/KIOSK.md "API").
 *
 * The customer token lives in S.token, a variable of this page, and nowhere
 * else: never localStorage, sessionStorage or a cookie (fetch sends none:
 * credentials "omit"). It is dropped as soon as the flow no longer needs it
 * and by reset(), which runs after every finished flow and after
 * idle_seconds without a touch or a key. Every asynchronous answer carries
 * the session generation it was asked in; an answer from an earlier session
 * (after a reset) is thrown away. */
'use strict';

(function () {
  const TEXTS = window.CW_TEXTS;
  const FINISH_S = 20;        /* "take cart N" and the receipt stay this long */
  const POLL_MS = 1000;       /* return: how often the rental is read */
  const RETURN_WAIT_S = 300;  /* return: give up waiting for the dock after */
  const REQUEST_TIMEOUT_MS = 20000;
  const INFO_RETRY_MS = 5000;
  const DONE_STATES = ['returned', 'returned-late', 'cancelled']; // the engine's names

  const S = {
    info: { default_language: 'he', idle_seconds: 60, sms: 'ok', offline_signin: [],
            code_length: 6, branch_id: null },
    infoOk: false,
    lang: 'he',
    gen: 0,          /* session generation: bumped by reset() */
    screen: 's-home',
    flow: null,      /* 'rent' | 'return' | 'history' */
    phone: '',       /* E.164 from the server once known, else as typed */
    token: null,     /* the customer token: this variable only */
    rentalId: null,
    mine: null,      /* last /api/me/rentals answer, for a language switch */
    receipt: null,
    status: null,    /* {key, params} */
    error: null,     /* {key, params, action} */
    busy: false,
    retry: null,     /* what "try again" repeats */
    timers: { idle: 0, poll: 0, countdown: 0, info: 0 },
    pollUntil: 0,
  };
  const params = new WeakMap(); /* element -> params of its data-t text */

  const $ = (id) => document.getElementById(id);
  const isolate = (s) => '\u2068' + s + '\u2069'; /* bidi-isolated (phones, times) */

  /* ---- texts ---- */
  function t(key, p) {
    const table = TEXTS[S.lang] || TEXTS.he;
    let s = table[key];
    if (s === undefined) s = TEXTS.en[key] !== undefined ? TEXTS.en[key] : key;
    if (p) s = s.replace(/\{(\w+)\}/g, (m, k) => (p[k] !== undefined ? String(p[k]) : m));
    return s;
  }
  function setT(el, key, p) {
    el.dataset.t = key;
    if (p) params.set(el, p); else params.delete(el);
    el.textContent = t(key, p);
  }
  function applyTexts() {
    const root = document.documentElement;
    root.lang = S.lang;
    root.dir = TEXTS[S.lang].dir;
    document.title = t('brand');
    document.querySelectorAll('[data-t]').forEach((el) => {
      el.textContent = t(el.dataset.t, params.get(el));
    });
    document.querySelectorAll('[data-t-label]').forEach((el) => {
      el.setAttribute('aria-label', t(el.dataset.tLabel));
    });
    const other = S.lang === 'he' ? 'en' : 'he';
    const lb = $('lang');
    lb.textContent = TEXTS[S.lang].other_lang; /* the other language, in its own words */
    lb.lang = other;
    renderStatus();
    renderError();
    if (S.mine) renderMine(S.mine);
    if (S.receipt) renderReceipt(S.receipt);
  }
  function setLang(lang) {
    if (!TEXTS[lang]) return;
    S.lang = lang;
    applyTexts();
  }

  /* ---- formatting ---- */
  function locale() { return S.lang === 'he' ? 'he-IL' : 'en-GB'; }
  function toDate(v) {
    if (v === null || v === undefined || v === '') return null;
    const d = new Date(typeof v === 'number' ? v : String(v));
    return isNaN(d.getTime()) ? null : d;
  }
  function fmtTime(v) {
    const d = toDate(v);
    return d ? isolate(new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit' }).format(d)) : '';
  }
  function fmtDateTime(v) {
    const d = toDate(v);
    return d ? isolate(new Intl.DateTimeFormat(locale(), { day: 'numeric', month: 'numeric',
      hour: '2-digit', minute: '2-digit' }).format(d)) : '';
  }
  function fmtDuration(sec) {
    if (typeof sec !== 'number' || !isFinite(sec) || sec < 0) return '';
    if (sec < 60) return t('dur_less');
    const m = Math.floor(sec / 60);
    if (m < 60) return t('dur_min', { m });
    return t('dur_hour', { h: Math.floor(m / 60), m: m % 60 });
  }
  function fmtPhone(p) {
    /* +972521234567 or 0521234567 -> 052-123-4567; else as given */
    const m = /^(?:\+972|0)(5\d)-?(\d{3})-?(\d{4})$/.exec(p || '');
    return isolate(m ? '0' + m[1] + '-' + m[2] + '-' + m[3] : (p || ''));
  }

  /* ---- the API ---- */
  async function api(method, path, body, token) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      const r = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctl.signal, cache: 'no-store', credentials: 'omit', redirect: 'error',
      });
      let data = null;
      try { data = await r.json(); } catch (e) { data = null; }
      const err = data && typeof data.error === 'object' ? data.error : null;
      return { ok: r.ok, status: r.status, data, err,
               reason: r.ok ? null : reasonOf(r.status, err) };
    } catch (e) {
      return { ok: false, status: 0, data: null, err: null, reason: 'network' };
    } finally {
      clearTimeout(timer);
    }
  }
  /* error.reason when the API gives one; else a reason from the generic
   * code (the admin-era routes answer with code only). */
  function reasonOf(status, err) {
    if (err && typeof err.reason === 'string' && err.reason) return err.reason;
    const byCode = { no_cart: 'no_cart', fault: 'lock_fault', offline: 'board_offline',
                     unauthorized: 'signin_required' };
    if (err && byCode[err.code]) return byCode[err.code];
    if (status === 502 || status === 504) return 'network';
    return 'unknown';
  }

  /* ---- status and errors ---- */
  function setStatus(key, p) {
    S.status = key ? { key, params: p } : null;
    renderStatus();
  }
  function renderStatus() {
    const el = $('status');
    el.textContent = S.status ? t(S.status.key, S.status.params) : '';
  }
  function clearError() {
    S.error = null;
    renderError();
  }
  /* The message a customer reads for an API failure, and what the one
   * button next to it does. */
  function showError(res, actions) {
    const e = res.err || {};
    const min = Math.max(1, Math.ceil((Number(e.retry_after_s) || 60) / 60));
    let key = 'err_' + res.reason;
    let p = { min };
    if (res.reason === 'wrong_code') {
      const n = Number(e.attempts_left);
      if (n === 1) key = 'err_wrong_code_last';
      else if (Number.isInteger(n) && n > 1) p = { n };
      else key = 'err_code_expired';
    }
    if (TEXTS.en[key] === undefined) key = 'err_unknown';
    const action = (actions && actions[res.reason]) || null;
    S.error = { key, params: p, action, reason: res.reason };
    setStatus(null);
    renderError();
  }
  function renderError() {
    const box = $('error');
    const btn = $('error-action');
    if (!S.error) {
      box.hidden = true;
      $('error-text').textContent = '';
      btn.hidden = true;
      box.dataset.reason = '';
      return;
    }
    $('error-text').textContent = t(S.error.key, S.error.params);
    box.dataset.reason = S.error.reason || '';
    box.hidden = false;
    if (S.error.action) {
      btn.textContent = t(S.error.action.label);
      btn.hidden = false;
    } else {
      btn.hidden = true;
    }
  }

  /* ---- screens ---- */
  function show(id, opts) {
    document.querySelectorAll('.screen').forEach((s) => { s.hidden = s.id !== id; });
    S.screen = id;
    if (!(opts && opts.keepError)) clearError();
    if (!(opts && opts.keepStatus)) setStatus(null);
    stopCountdown();
    const h = $(id).querySelector('h1');
    if (h) h.focus();
  }
  function setBusy(on, key) {
    S.busy = on;
    $('main').setAttribute('aria-busy', on ? 'true' : 'false');
    document.querySelectorAll('#main button, #error-action').forEach((b) => {
      if (!b.classList.contains('finish') && !b.classList.contains('back')) b.disabled = on;
    });
    if (on) { clearError(); setStatus(key); } else if (S.status && /^busy_/.test(S.status.key)) setStatus(null);
  }
  /* False once the session that started a call was reset or left: each
   * flow checks it after every await and drops a late answer. */
  function alive(gen) { return gen === S.gen; }

  function countdown(seconds) {
    stopCountdown();
    let left = seconds;
    const el = $('countdown');
    const tick = () => {
      setT(el, 'countdown', { s: left });
      if (left-- <= 0) { reset(); return; }
      S.timers.countdown = setTimeout(tick, 1000);
    };
    tick();
  }
  function stopCountdown() {
    clearTimeout(S.timers.countdown);
    S.timers.countdown = 0;
    const el = $('countdown');
    delete el.dataset.t;
    el.textContent = '';
  }

  /* ---- idle and reset ---- */
  function bump() {
    clearTimeout(S.timers.idle);
    S.timers.idle = setTimeout(onIdle, Math.max(5, Number(S.info.idle_seconds) || 60) * 1000);
  }
  function onIdle() {
    /* a return waiting for the dock has its own limit (RETURN_WAIT_S) */
    if (S.screen === 's-slot' && S.timers.poll) { bump(); return; }
    if (S.screen !== 's-home' || S.error || S.lang !== S.info.default_language) reset();
    else bump();
  }
  function reset() {
    S.gen++;
    S.token = null;
    S.phone = '';
    S.flow = null;
    S.rentalId = null;
    S.mine = null;
    S.receipt = null;
    S.retry = null;
    clearTimeout(S.timers.poll);
    S.timers.poll = 0;
    ['phone', 'code', 'pin'].forEach((id) => { $(id).value = ''; });
    $('mine-open').textContent = '';
    $('mine-history').textContent = '';
    setBusy(false);
    S.lang = TEXTS[S.info.default_language] ? S.info.default_language : 'he';
    applyTexts();
    show('s-home');
    bump();
    loadInfo();
  }

  async function loadInfo() {
    clearTimeout(S.timers.info);
    const gen = S.gen;
    const res = await api('GET', '/api/kiosk/info');
    if (res.ok && res.data) {
      const first = !S.infoOk;
      S.info = Object.assign({}, S.info, res.data);
      S.infoOk = true;
      if (S.screen === 's-home' && S.error && S.error.reason === 'network') clearError();
      if (first && alive(gen) && S.screen === 's-home' && TEXTS[S.info.default_language]) {
        setLang(S.info.default_language);
      }
      $('code').maxLength = Number(S.info.code_length) || 6;
      return;
    }
    S.infoOk = false;
    if (S.screen === 's-home') showError({ reason: 'network' });
    S.timers.info = setTimeout(loadInfo, INFO_RETRY_MS);
  }

  /* ---- keypads ---- */
  function buildKeypads() {
    document.querySelectorAll('.keypad').forEach((pad) => {
      const target = pad.dataset.for;
      pad.setAttribute('dir', 'ltr'); /* 1 2 3 from the left, as on every phone */
      const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'clear', '0', 'del'];
      keys.forEach((k) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'key';
        b.dataset.key = k;
        if (k === 'del') {
          b.textContent = '\u232b';
          b.dataset.tLabel = 'key_delete';
        } else if (k === 'clear') {
          b.dataset.t = 'key_clear';
          b.classList.add('key-word');
        } else {
          b.textContent = k;
        }
        b.addEventListener('click', () => press(target, k));
        pad.appendChild(b);
      });
    });
  }
  function press(id, k) {
    const input = $(id);
    if (k === 'del') input.value = input.value.slice(0, -1);
    else if (k === 'clear') input.value = '';
    else if (input.value.length < input.maxLength) input.value += k;
    onField(input);
  }
  function clean(input) {
    let v = input.value;
    v = input.id === 'phone' ? v.replace(/[^0-9+]/g, '').replace(/(?!^)\+/g, '') : v.replace(/\D/g, '');
    if (v !== input.value) input.value = v.slice(0, input.maxLength);
  }
  function onField(input) {
    clean(input);
    if (S.error && S.error.reason !== 'network') clearError();
    if (input.id === 'code' && input.value.length === input.maxLength && !S.busy) verifyCode();
  }
  /* Digits typed anywhere on a screen with a field go to that field. */
  function onKey(ev) {
    if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
    const screen = $(S.screen);
    const input = screen.querySelector('input');
    const active = document.activeElement;
    if (ev.key === 'Escape') {
      const back = screen.querySelector('.back, .finish');
      if (back && !back.hidden) { ev.preventDefault(); back.click(); }
      return;
    }
    if (ev.key === 'Enter') {
      /* on a button Enter presses it; elsewhere (the heading) the main action */
      if (!active || active.tagName !== 'BUTTON') { ev.preventDefault(); primary(); }
      return;
    }
    if (!input || active === input) return;
    if (/^[0-9]$/.test(ev.key) || (ev.key === '+' && input.id === 'phone')) {
      ev.preventDefault();
      if (input.value.length < input.maxLength) input.value += ev.key;
      onField(input);
    } else if (ev.key === 'Backspace') {
      ev.preventDefault();
      press(input.id, 'del');
    }
  }
  function primary() {
    const b = $(S.screen).querySelector('.actions .primary');
    if (b && !b.hidden && !b.disabled) b.click();
  }

  /* ---- flows ---- */
  function smsUsable() { return S.info.sms !== 'off'; }
  function staffOffered() {
    return Array.isArray(S.info.offline_signin) && S.info.offline_signin.indexOf('staff_pin') >= 0;
  }
  function start(flow) {
    S.gen++;
    S.token = null;
    S.flow = flow;
    S.phone = '';
    $('phone').value = '';
    setT($('h-phone'), 'phone_title_' + flow);
    const next = $('phone-next');
    const needsCode = flow !== 'return';
    setT(next, needsCode ? 'send_code' : 'continue');
    next.hidden = needsCode && !smsUsable();
    const note = $('sms-note');
    const staff = $('phone-staff');
    const smsBad = needsCode && S.info.sms !== 'ok';
    note.hidden = !smsBad;
    if (smsBad) setT(note, S.info.sms === 'off' ? 'sms_off_note' : 'sms_unreachable_note');
    staff.hidden = !(smsBad && staffOffered());
    staff.classList.toggle('primary', next.hidden);
    show('s-phone');
  }

  function typedPhone() {
    const v = $('phone').value.trim();
    if (v.replace(/\D/g, '').length < 9) {
      showError({ reason: 'invalid_phone' });
      $('phone').focus();
      return null;
    }
    return v;
  }

  async function phoneNext() {
    const p = typedPhone();
    if (!p) return;
    S.phone = p;
    if (S.flow === 'return') await doReturn();
    else await requestCode();
  }

  async function requestCode() {
    const gen = S.gen;
    S.retry = requestCode;
    setBusy(true, 'busy_sending');
    const res = await api('POST', '/api/auth/otp/request', { phone: S.phone, lang: S.lang });
    if (!alive(gen)) return;
    setBusy(false);
    if (res.ok) {
      if (res.data && res.data.phone) S.phone = res.data.phone;
      $('code').value = '';
      const n = Number(S.info.code_length) || 6;
      setT($('code-sent'), res.data && res.data.sms === 'queued' ? 'code_queued' : 'code_sent',
        { n, phone: fmtPhone(S.phone) });
      /* no SMS on the phone (no signal, a slow carrier): staff can help */
      $('code-staff').hidden = !staffOffered();
      show('s-code');
      return;
    }
    if (res.reason === 'sms_unreachable') {
      /* the code stays queued and may still arrive: offer both */
      S.info.sms = 'unreachable';
      $('code-staff').hidden = !staffOffered();
    }
    showError(res, {
      sms_unreachable: staffOffered() ? { label: 'staff_signin', run: toStaff } : null,
      network: { label: 'try_again', run: requestCode },
    });
  }

  async function verifyCode() {
    const code = $('code').value;
    const want = Number(S.info.code_length) || 6;
    if (code.length !== want) { $('code').focus(); return; }
    const gen = S.gen;
    S.retry = verifyCode;
    setBusy(true, 'busy_checking');
    const res = await api('POST', '/api/auth/otp/verify', { phone: S.phone, code });
    if (!alive(gen)) return;
    setBusy(false);
    $('code').value = '';
    if (res.ok && res.data && res.data.token) {
      S.token = res.data.token;
      await signedIn(gen);
      return;
    }
    showError(res, {
      code_expired: { label: 'new_code', run: requestCode },
      wrong_code: (res.err && Number(res.err.attempts_left) > 0) ? null
        : { label: 'new_code', run: requestCode },
      network: { label: 'try_again', run: () => { show('s-code'); } },
    });
    $('code').focus();
  }

  function toStaff() {
    $('pin').value = '';
    setT($('h-staff'), 'staff_title');
    const lead = $('s-staff').querySelector('.lead');
    setT(lead, 'staff_lead', { phone: fmtPhone(S.phone) });
    show('s-staff');
  }
  async function staffSignin() {
    if (!S.phone) { const p = typedPhone(); if (!p) return; S.phone = p; }
    const pin = $('pin').value;
    if (!pin) { $('pin').focus(); return; }
    const gen = S.gen;
    setBusy(true, 'busy_checking');
    const res = await api('POST', '/api/auth/offline', { phone: S.phone, staff_pin: pin });
    if (!alive(gen)) return;
    setBusy(false);
    $('pin').value = '';
    if (res.ok && res.data && res.data.token) {
      if (res.data.phone) S.phone = res.data.phone;
      S.token = res.data.token;
      await signedIn(gen);
      return;
    }
    showError(res, { invalid_phone: { label: 'back', run: () => start(S.flow) } });
    $('pin').focus();
  }

  async function signedIn(gen) {
    if (S.flow === 'rent') await rent(gen);
    else if (S.flow === 'history') await loadMine(gen);
    else S.token = null;
  }

  function signinAgain() {
    const flow = S.flow;
    start(flow);
  }

  async function rent(gen) {
    if (!alive(gen)) return;
    if (!S.info.branch_id) await loadInfo();
    if (!alive(gen)) return;
    S.retry = () => rent(S.gen);
    setBusy(true, 'busy_opening');
    const res = await api('POST', '/api/branches/' + encodeURIComponent(S.info.branch_id || '-') +
      '/carts/assign', {}, S.token);
    if (!alive(gen)) return;
    setBusy(false);
    if (res.ok && res.data) {
      S.token = null; /* the rent is done: nothing more to do as this customer */
      setT($('h-take'), 'take_title', { n: res.data.cart_number });
      $('take-number').textContent = String(res.data.cart_number);
      const due = fmtTime(res.data.expected_return);
      if (due) setT($('take-due'), 'take_due', { time: due });
      else $('take-due').textContent = '';
      $('s-take').dataset.cart = String(res.data.cart_number);
      show('s-take');
      countdown(FINISH_S);
      return;
    }
    if (res.reason !== 'lock_fault' && res.reason !== 'network') S.token = null;
    showError(res, {
      lock_fault: { label: 'try_other', run: () => rent(S.gen) },
      network: { label: 'try_again', run: () => rent(S.gen) },
      already_renting: { label: 'go_return', run: () => { const p = S.phone; start('return'); $('phone').value = p.replace(/^\+972/, '0'); } },
      signin_required: { label: 'try_again', run: signinAgain },
    });
  }

  async function loadMine(gen) {
    setBusy(true, 'busy_loading');
    const res = await api('GET', '/api/me/rentals', undefined, S.token);
    if (!alive(gen)) return;
    setBusy(false);
    S.token = null; /* read once; a new look needs a new sign-in */
    if (res.ok && res.data) {
      S.mine = res.data;
      renderMine(res.data);
      show('s-mine');
      return;
    }
    showError(res, { signin_required: { label: 'try_again', run: signinAgain } });
  }
  function rentalRow(r, open) {
    const li = document.createElement('li');
    const n = r.cart_number;
    const state = r.status || r.state || '';
    const text = open
      ? t('mine_open_row', { n, time: fmtDateTime(r.start_time || r.started_at) })
      : t('mine_row', { n, time: fmtDateTime(r.start_time || r.started_at),
                        duration: fmtDuration(r.duration_s) });
    const main = document.createElement('span');
    main.textContent = text;
    li.appendChild(main);
    if (state) {
      const tag = document.createElement('span');
      tag.className = 'tag tag-' + state;
      tag.textContent = t('state_' + state);
      li.appendChild(tag);
    }
    return li;
  }
  function renderMine(d) {
    const fill = (ul, list, open) => {
      ul.textContent = '';
      if (!Array.isArray(list) || list.length === 0) {
        const li = document.createElement('li');
        li.className = 'none';
        li.textContent = t('mine_none');
        ul.appendChild(li);
        return;
      }
      list.forEach((r) => ul.appendChild(rentalRow(r, open)));
    };
    fill($('mine-open'), d.open, true);
    fill($('mine-history'), d.history, false);
  }

  /* ---- return ---- */
  async function doReturn() {
    const gen = S.gen;
    S.retry = doReturn;
    setBusy(true, 'busy_checking');
    const res = await api('POST', '/api/kiosk/return', { phone: S.phone });
    if (!alive(gen)) return;
    setBusy(false);
    if (res.ok && res.data) {
      S.rentalId = res.data.rental_id;
      setT($('h-slot'), 'slot_title', { n: res.data.slot_number });
      $('slot-number').textContent = String(res.data.slot_number);
      $('s-slot').dataset.slot = String(res.data.slot_number);
      show('s-slot');
      S.pollUntil = Date.now() + RETURN_WAIT_S * 1000;
      poll(gen);
      return;
    }
    showError(res, { network: { label: 'try_again', run: doReturn } });
  }
  async function poll(gen) {
    clearTimeout(S.timers.poll);
    S.timers.poll = 0;
    if (!alive(gen) || !S.rentalId) return;
    const res = await api('GET', '/api/kiosk/rentals/' + encodeURIComponent(S.rentalId));
    if (!alive(gen)) return;
    if (res.ok && res.data && DONE_STATES.indexOf(res.data.state || res.data.status) >= 0) {
      S.receipt = res.data;
      renderReceipt(res.data);
      show('s-receipt');
      countdown(FINISH_S);
      return;
    }
    if (res.reason === 'network') showError(res); /* keeps polling: it may come back */
    else if (S.error && S.error.reason === 'network') clearError();
    if (Date.now() > S.pollUntil) {
      showError({ reason: 'return_timeout' }, {
        return_timeout: { label: 'try_again', run: () => { S.pollUntil = Date.now() + RETURN_WAIT_S * 1000; show('s-slot'); poll(S.gen); } },
      });
      return;
    }
    S.timers.poll = setTimeout(() => poll(gen), POLL_MS);
  }
  function renderReceipt(d) {
    $('r-cart').textContent = String(d.cart_number);
    $('r-duration').textContent = fmtDuration(d.duration_s);
    $('r-ended').textContent = fmtTime(d.ended_at || d.actual_return);
    $('r-late').hidden = (d.state || d.status) !== 'returned-late';
  }

  /* ---- wiring ---- */
  function init() {
    buildKeypads();
    $('lang').addEventListener('click', () => setLang(S.lang === 'he' ? 'en' : 'he'));
    $('go-rent').addEventListener('click', () => start('rent'));
    $('go-return').addEventListener('click', () => start('return'));
    $('go-history').addEventListener('click', () => start('history'));
    $('phone-next').addEventListener('click', phoneNext);
    $('phone-staff').addEventListener('click', () => {
      const p = typedPhone();
      if (!p) return;
      S.phone = p;
      toStaff();
    });
    $('code-next').addEventListener('click', verifyCode);
    $('code-resend').addEventListener('click', requestCode);
    $('code-staff').addEventListener('click', toStaff);
    $('pin-next').addEventListener('click', staffSignin);
    document.querySelectorAll('.back').forEach((b) => b.addEventListener('click', reset));
    document.querySelectorAll('.finish').forEach((b) => b.addEventListener('click', reset));
    $('error-action').addEventListener('click', () => {
      const a = S.error && S.error.action;
      clearError();
      if (a) a.run();
    });
    ['phone', 'code', 'pin'].forEach((id) => {
      $(id).addEventListener('input', (ev) => onField(ev.target));
    });
    document.addEventListener('keydown', onKey);
    ['pointerdown', 'keydown', 'input'].forEach((ev) => document.addEventListener(ev, bump, true));
    S.lang = 'he';
    applyTexts();
    reset();
  }

  /* for the tests (test/kiosk/e2e.mjs): read-only facts, never the token */
  window.CW_KIOSK = Object.freeze({
    screen: () => S.screen,
    lang: () => S.lang,
    hasToken: () => S.token !== null,
    reason: () => (S.error ? S.error.reason : null),
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
