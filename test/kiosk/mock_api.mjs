// mock_api.mjs - a stand-in for cartwise-edge's kiosk API (the contract in
// docs/KIOSK.md), node's http module only. Serves web/kiosk with the same
// security headers as cw_static (so a page that needs inline script or style
// fails here too) and keeps rentals in memory.
//
// Used by page_flows.mjs (every failure message without a daemon) and by
// hand: node test/kiosk/mock_api.mjs [port] then open http://127.0.0.1:port/.
// The code of the last request is GET /__mock/last_code; the test steers the
// next answers with POST /__mock {"sms": "ok"|"unreachable"|"off",
// "assign_fail": [reasons...], "idle_seconds": n, ...} and docks a cart with
// POST /__mock/dock.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../../web/kiosk');
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };
const SECURITY = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:",
  'X-Content-Type-Options': 'nosniff', 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer',
};

export function createMock() {
  const st = {
    sms: 'ok', idle_seconds: 60, branch: 'branch-001', codes: new Map(), attempts: new Map(),
    tokens: new Map(), rentals: [], carts: 8, assign_fail: [], otp_fail: [], verify_fail: [],
    return_fail: [], last_code: null, offline_pin: '2468', requests: [], next_id: 1,
  };
  const err = (res, status, code, reason, message, extra) => send(res, status,
    { error: Object.assign({ code, reason, message }, extra || {}) });
  const send = (res, status, body) => {
    res.writeHead(status, Object.assign({ 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, SECURITY));
    res.end(JSON.stringify(body));
  };
  const normalize = (p) => {
    const s = String(p || '').replace(/[\s\-().]/g, '');
    let m = /^05(\d{8})$/.exec(s) || /^(?:\+|00)?9725(\d{8})$/.exec(s);
    return m ? '+9725' + m[1] : null;
  };
  const bearer = (req) => {
    const h = req.headers.authorization || '';
    const tok = h.startsWith('Bearer ') ? h.slice(7) : '';
    return st.tokens.get(tok) || null;
  };
  const open = (phone) => st.rentals.find((r) => r.phone === phone && (r.state === 'active' || r.state === 'overdue'));
  const pub = (r) => ({ rental_id: r.id, state: r.state, cart_number: r.cart, started_at: r.started,
    ended_at: r.ended, duration_s: r.ended ? Math.round((Date.parse(r.ended) - Date.parse(r.started)) / 1000) : null });
  const hist = (r) => ({ id: r.id, cart_number: r.cart, status: r.state, start_time: r.started,
    actual_return: r.ended, duration_s: pub(r).duration_s });

  const api = (req, res, url, body) => {
    const p = url.pathname;
    if (req.method === 'GET' && p === '/api/kiosk/info') {
      return send(res, 200, { branch_id: st.branch, device_name: 'mock kiosk', default_language: 'he',
        languages: ['he', 'en'], idle_seconds: st.idle_seconds, sms: st.sms,
        offline_signin: ['staff_pin'], otp_ttl_s: 300, code_length: 6 });
    }
    if (req.method === 'POST' && p === '/api/auth/otp/request') {
      const phone = normalize(body.phone);
      if (!phone) return err(res, 400, 'invalid', 'invalid_phone', 'phone: not a mobile number');
      const f = st.otp_fail.shift();
      if (f === 'too_many_requests') return err(res, 429, 'conflict', f, 'too many codes', { retry_after_s: 1200 });
      if (st.sms === 'unreachable' || st.sms === 'off' || f === 'sms_unreachable') {
        return err(res, 503, 'io', 'sms_unreachable', 'SMS gateway unreachable');
      }
      const code = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
      st.codes.set(phone, code);
      st.attempts.set(phone, 5);
      st.last_code = code;
      return send(res, 202, { phone, expires_in_s: 300, sms: 'sent' });
    }
    if (req.method === 'POST' && p === '/api/auth/otp/verify') {
      const phone = normalize(body.phone);
      if (!phone) return err(res, 400, 'invalid', 'invalid_phone', 'phone: not a mobile number');
      const f = st.verify_fail.shift();
      if (f === 'too_many_attempts') return err(res, 429, 'auth', f, 'too many attempts', { retry_after_s: 900 });
      const want = st.codes.get(phone);
      if (!want) return err(res, 401, 'auth', 'code_expired', 'no code pending');
      if (body.code !== want) {
        const left = st.attempts.get(phone) - 1;
        st.attempts.set(phone, left);
        if (left <= 0) { st.codes.delete(phone); return err(res, 401, 'auth', 'code_expired', 'code used up'); }
        return err(res, 401, 'auth', 'wrong_code', 'wrong code', { attempts_left: left });
      }
      st.codes.delete(phone);
      const token = 'tok-' + Math.random().toString(36).slice(2);
      st.tokens.set(token, phone);
      return send(res, 200, { token, expires_at: new Date(Date.now() + 30 * 86400e3).toISOString(), phone, method: 'otp' });
    }
    if (req.method === 'POST' && p === '/api/auth/offline') {
      const phone = normalize(body.phone);
      if (!phone) return err(res, 400, 'invalid', 'invalid_phone', 'phone: not a mobile number');
      if (body.staff_pin !== st.offline_pin) return err(res, 401, 'auth', 'wrong_pin', 'wrong staff PIN');
      const token = 'tok-' + Math.random().toString(36).slice(2);
      st.tokens.set(token, phone);
      return send(res, 200, { token, expires_at: new Date(Date.now() + 900e3).toISOString(), phone, method: 'staff_pin' });
    }
    if (req.method === 'POST' && p === `/api/branches/${st.branch}/carts/assign`) {
      const phone = bearer(req);
      if (!phone) return err(res, 401, 'auth', 'signin_required', 'sign in first');
      const f = st.assign_fail.shift();
      if (f === 'lock_fault') return err(res, 503, 'fault', f, 'the lock did not open');
      if (f === 'board_offline') return err(res, 503, 'offline', f, 'board does not answer');
      if (f === 'no_cart') return err(res, 409, 'no_cart', f, 'no cart free');
      if (f === 'signin_required') return err(res, 401, 'auth', f, 'token expired');
      if (open(phone)) return err(res, 409, 'conflict', 'already_renting', 'already renting');
      const used = new Set(st.rentals.filter((r) => r.state === 'active').map((r) => r.cart));
      let cart = 1;
      while (used.has(cart)) cart++;
      const r = { id: 'r' + st.next_id++, phone, cart, state: 'active', started: new Date().toISOString(), ended: null };
      st.rentals.push(r);
      return send(res, 201, { rental_id: r.id, cart_number: cart,
        expected_return: new Date(Date.now() + 2 * 3600e3).toISOString(), unlock_latency_ms: 40 });
    }
    if (req.method === 'GET' && p === '/api/me/rentals') {
      const phone = bearer(req);
      if (!phone) return err(res, 401, 'auth', 'signin_required', 'sign in first');
      const mine = st.rentals.filter((r) => r.phone === phone).reverse();
      return send(res, 200, { phone, open: mine.filter((r) => r.state === 'active' || r.state === 'overdue').map(hist),
        history: mine.filter((r) => r.state !== 'active' && r.state !== 'overdue').slice(0, 20).map(hist) });
    }
    if (req.method === 'POST' && p === '/api/kiosk/return') {
      const phone = normalize(body.phone);
      if (!phone) return err(res, 400, 'invalid', 'invalid_phone', 'phone: not a mobile number');
      const f = st.return_fail.shift();
      if (f === 'no_free_slot') return err(res, 409, 'no_cart', f, 'no free slot');
      if (f === 'too_many_requests') return err(res, 429, 'conflict', f, 'slow down', { retry_after_s: 60 });
      const r = open(phone);
      if (!r) return err(res, 404, 'not_found', 'no_open_rental', 'no open rental');
      r.slot = r.cart + 1;
      return send(res, 200, { rental_id: r.id, slot_number: r.slot });
    }
    let m;
    if (req.method === 'GET' && (m = /^\/api\/kiosk\/rentals\/([^/]+)$/.exec(p))) {
      const r = st.rentals.find((x) => x.id === m[1]);
      if (!r) return err(res, 404, 'not_found', 'not_found', 'no such rental');
      return send(res, 200, pub(r));
    }
    return err(res, 404, 'not_found', undefined, 'no such route');
  };

  const control = (req, res, url, body) => {
    if (url.pathname === '/__mock/last_code') return send(res, 200, { code: st.last_code });
    if (url.pathname === '/__mock/requests') return send(res, 200, st.requests);
    if (url.pathname === '/__mock/dock') { // the open rental's cart docks; late: returned-late
      const r = st.rentals.find((x) => x.slot && x.state === 'active');
      if (!r) return send(res, 409, { error: 'nothing to dock' });
      r.state = body.late ? 'returned-late' : 'returned';
      r.ended = new Date(Date.parse(r.started) + (body.minutes || 0) * 60e3 + 5e3).toISOString();
      return send(res, 200, pub(r));
    }
    if (url.pathname === '/__mock/backdate') { // every rental started `minutes` ago
      st.rentals.forEach((r) => { r.started = new Date(Date.parse(r.started) - body.minutes * 60e3).toISOString(); });
      return send(res, 200, {});
    }
    for (const k of ['sms', 'idle_seconds', 'assign_fail', 'otp_fail', 'verify_fail', 'return_fail']) {
      if (k in body) st[k] = body[k];
    }
    return send(res, 200, {});
  };

  const file = (req, res, url) => {
    let rel = decodeURIComponent(url.pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    const full = path.join(ROOT, path.normalize(rel));
    const type = TYPES[path.extname(full)];
    if (!full.startsWith(ROOT + path.sep) || !type || !fs.existsSync(full)) {
      return err(res, 404, 'not_found', undefined, 'no such page');
    }
    res.writeHead(200, Object.assign({ 'Content-Type': type,
      'Cache-Control': type.startsWith('text/html') ? 'no-store' : 'no-cache' }, SECURITY));
    res.end(req.method === 'HEAD' ? undefined : fs.readFileSync(full));
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, 'http://mock');
      let body = {};
      try { body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}; } catch (e) { body = {}; }
      if (url.pathname.startsWith('/__mock')) return control(req, res, url, body);
      if (url.pathname.startsWith('/api/')) {
        st.requests.push({ method: req.method, path: url.pathname, auth: !!req.headers.authorization,
          cookie: req.headers.cookie || null, body });
        return api(req, res, url, body);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return err(res, 405, 'invalid', undefined, 'GET only');
      return file(req, res, url);
    });
  });
  return { server, state: st };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { server } = createMock();
  server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
    console.log(`mock kiosk API on http://127.0.0.1:${server.address().port}/`);
  });
}
