// browser_lib.mjs - what the kiosk's and the dashboard's browser tests share
// (test/kiosk/lib.mjs and test/dashboard/lib.mjs re-export it): Debian's
// chromium launched headless without network extras, asserts and progress
// lines, and one command to cartwise-simlock's control socket. playwright-core
// is each test folder's own package (its node_modules), so launch() takes the
// folder's `chromium` instead of importing it here.
import fs from 'node:fs';
import net from 'node:net';

export const CHROMIUM = process.env.CW_CHROMIUM || ['/usr/lib/chromium/chromium', '/usr/bin/chromium']
  .find((p) => fs.existsSync(p));

export function fail(msg) {
  throw new Error(msg);
}
export function check(cond, msg) {
  if (!cond) fail(msg);
}
const t0 = Date.now();
export function note(msg) {
  console.log(`-- [${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

// Chromium without the network it would otherwise try (updates, DNS), no
// sandbox (tests run as root in CI containers), no GPU.
export async function launchChromium(chromium) {
  check(CHROMIUM, 'chromium is not installed (scripts/test installs the Debian package)');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--no-pings',
      '--disable-domain-reliability', '--disable-breakpad', '--no-first-run'],
    env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'disabled:' },
  });
}

// One command to cartwise-simlock's control socket; its one-line answer,
// which must start with "ok".
export function sim(sock, cmd) {
  return new Promise((resolve, reject) => {
    const s = net.connect(sock);
    let buf = '';
    s.on('connect', () => s.write(cmd + '\n'));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) { s.end(); resolve(buf.split('\n')[0]); }
    });
    s.on('error', reject);
  }).then((ans) => { check(ans.startsWith('ok'), `simulator: '${cmd}' answered '${ans}'`); return ans; });
}
