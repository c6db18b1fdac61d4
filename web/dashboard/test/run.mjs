// The dashboard's unit tests (docs/DASHBOARD.md "Tests"): the type check (tsc --noEmit,
// strict) and test/*.test.ts bundled by esbuild for node, run by `node --test`.
// Tests run with TZ=Asia/Jerusalem (a zone with summer time, so local-time code is
// exercised off UTC). Exit status non-zero when either fails.
// Usage: node test/run.mjs [name-filter...] (a filter skips the type check)
import * as esbuild from 'esbuild';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const only = process.argv.slice(2);

let failed = false;
// the type check runs beside the tests (its own process: ~9 s of one core, the tests ~2 s)
const tsc = only.length ? null : new Promise((resolve) => {
  const p = spawn(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', root],
    { stdio: 'inherit' });
  p.on('exit', (code) => resolve(code));
});

const tests = readdirSync(here).filter((f) => f.endsWith('.test.ts') && (!only.length || only.some((o) => f.includes(o))));
const out = mkdtempSync(join(tmpdir(), 'cw-dash-test-'));
try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: tests.map((f) => join(here, f)),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node18',
    outdir: out,
    outExtension: { '.js': '.mjs' },
    logLevel: 'warning',
  });
  const files = readdirSync(out).filter((f) => f.endsWith('.mjs')).map((f) => join(out, f));
  const r = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit', env: { ...process.env, TZ: 'Asia/Jerusalem' } });
  if (r.status !== 0) failed = true;
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (tsc) {
  const code = await tsc;
  if (code !== 0) {
    console.error('tsc --noEmit failed');
    failed = true;
  } else {
    console.log('tsc --noEmit: ok');
  }
}
process.exit(failed ? 1 : 0);
