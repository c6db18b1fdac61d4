// kiosk_load.mjs - the driver of kiosk_load.sh: N kiosk sessions at once
// against one edge, from one Node process (no program started per request,
// so the timings are the edge's and the machine is not loaded by the driver).
//
//   node kiosk_load.mjs --port P --branch B --admin-token T --sms-file F
//        --sim bus0=SOCK --sim bus1=SOCK [--sessions 20] [--kiosks 4]
//
// Each session, from kiosk address 127.0.6.(1 + i % kiosks): otp/request ->
// the code from the fake gateway's file -> otp/verify -> carts/assign with
// the customer token -> the simulator takes the cart out (the session waits
// until the edge sees the slot empty) -> kiosk/return -> the simulator docks
// the cart in the designated slot -> polls /api/kiosk/rentals/{id} until
// "returned". Prints one JSON line per session ({"session", "ok", "error"?,
// "steps": {step: ms}}) and exits 1 if any session failed.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const opt = { sessions: 20, kiosks: 4, sim: {} };
for (let i = 2; i < process.argv.length; i += 2) {
	const k = process.argv[i].replace(/^--/, ''), v = process.argv[i + 1];
	if (k === 'sim') {
		const [name, sock] = v.split('=');
		opt.sim[name] = sock;
	} else {
		opt[k.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
	}
}
for (const k of ['port', 'branch', 'adminToken', 'smsFile']) {
	if (!opt[k]) {
		console.error(`kiosk_load.mjs: --${k} is required`);
		process.exit(2);
	}
}
const N = Number(opt.sessions), KIOSKS = Number(opt.kiosks);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint() / 1000000n);

// One HTTP request from a chosen local address; resolves {status, body}.
function api(ip, method, path, { token, body } = {}) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? undefined : JSON.stringify(body);
		const headers = {};
		if (token) headers.Authorization = `Bearer ${token}`;
		if (data !== undefined) {
			headers['Content-Type'] = 'application/json';
			headers['Content-Length'] = Buffer.byteLength(data);
		}
		const req = http.request({ host: '127.0.0.1', port: Number(opt.port), localAddress: ip,
			method, path, headers, agent: false, timeout: 30000 }, (res) => {
			let text = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { text += c; });
			res.on('end', () => {
				let json = null;
				try { json = JSON.parse(text); } catch { /* reported below */ }
				resolve({ status: res.statusCode, body: json, text });
			});
		});
		req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
		req.on('error', reject);
		if (data !== undefined) req.write(data);
		req.end();
	});
}

// One simulator control command ("take B L"); resolves the answer line.
function sim(name, cmd) {
	return new Promise((resolve, reject) => {
		const s = net.connect(opt.sim[name]);
		let text = '';
		s.setEncoding('utf8');
		s.on('connect', () => s.write(cmd + '\n'));
		s.on('data', (c) => {
			text += c;
			if (text.includes('\n')) {
				s.end();
				const line = text.split('\n')[0];
				if (line.startsWith('ok')) resolve(line);
				else reject(new Error(`simulator ${name}: '${cmd}' answered '${line}'`));
			}
		});
		s.on('error', reject);
	});
}

// The one 6-digit number in the newest text to phone (E.164), or null.
function smsCode(phone) {
	let text = null;
	for (const line of fs.readFileSync(opt.smsFile, 'utf8').split('\n')) {
		if (!line) continue;
		const m = JSON.parse(line);
		if (m.to === phone) text = m.text;
	}
	if (text === null) return null;
	const runs = text.match(/[0-9]+/g) || [];
	const six = runs.filter((r) => r.length === 6);
	if (six.length !== 1 || runs.some((r) => r.length > 6))
		throw new Error(`no single 6-digit code in the text: ${text}`);
	return six[0];
}

function expect(res, status, what) {
	if (res.status !== status)
		throw new Error(`${what}: HTTP ${res.status} (want ${status}) ${res.text}`);
	if (!res.body) throw new Error(`${what}: not JSON: ${res.text}`);
	return res.body;
}

async function until(what, limitMs, fn) {
	const end = now() + limitMs;
	for (;;) {
		const v = await fn();
		if (v) return v;
		if (now() > end) throw new Error(`${what}: not within ${limitMs} ms`);
		await sleep(50);
	}
}

const admin = (path) => api('127.0.0.1', 'GET', path, { token: opt.adminToken });
let carts; // cart number -> {sim, lock}

async function session(i) {
	const ip = `127.0.6.${1 + (i % KIOSKS)}`;
	const local = '0581' + String(i + 1).padStart(6, '0');
	const e164 = '+972' + local.slice(1);
	const steps = {};
	let t0 = now();
	const step = (name) => { const t = now(); steps[name] = t - t0; t0 = t; };

	expect(await api(ip, 'POST', '/api/auth/otp/request', { body: { phone: local } }), 202, 'otp/request');
	step('request');
	const code = await until('the SMS', 10000, async () => smsCode(e164));
	step('sms');
	const signin = expect(await api(ip, 'POST', '/api/auth/otp/verify',
		{ body: { phone: local, code } }), 200, 'otp/verify');
	step('verify');
	const rent = expect(await api(ip, 'POST', `/api/branches/${opt.branch}/carts/assign`,
		{ token: signin.token, body: {} }), 201, 'assign');
	step('assign');
	const c = carts[rent.cart_number];
	await sim(c.sim, `take 1 ${c.lock}`);
	await until(`cart ${rent.cart_number} seen taken`, 10000, async () =>
		expect(await admin(`/api/branches/${opt.branch}/carts/${rent.cart_number}`), 200, 'cart')
			.cart_present === false);
	step('take');
	const ret = expect(await api(ip, 'POST', '/api/kiosk/return', { body: { phone: local } }), 200, 'return');
	if (ret.rental_id !== rent.rental_id)
		throw new Error(`return named rental ${ret.rental_id}, not ${rent.rental_id}`);
	step('return');
	const s = carts[ret.slot_number];
	await sim(s.sim, `dock 1 ${s.lock}`);
	const receipt = await until(`rental ${rent.rental_id} returned`, 10000, async () => {
		const r = expect(await api(ip, 'GET', `/api/kiosk/rentals/${rent.rental_id}`), 200, 'receipt');
		return r.state === 'returned' ? r : null;
	});
	if (typeof receipt.duration_s !== 'number' || !receipt.ended_at)
		throw new Error(`receipt without duration: ${JSON.stringify(receipt)}`);
	step('receipt');
	return steps;
}

const list = expect(await admin(`/api/branches/${opt.branch}/carts`), 200, 'carts');
carts = {};
for (const c of list) carts[c.cart_number] = { sim: `bus${c.bus}`, lock: c.lock };

const t = now();
const results = await Promise.all(Array.from({ length: N }, (_, i) =>
	session(i).then((steps) => ({ session: i + 1, ok: true, steps }),
		(err) => ({ session: i + 1, ok: false, error: String(err.message || err) }))));
for (const r of results) console.log(JSON.stringify(r));
console.error(`${N} sessions in ${now() - t} ms`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
