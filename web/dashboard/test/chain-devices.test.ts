import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device, age, sortDevices, summarize, syncLevel, tally } from '../src/chain/devices';

function dev(over: Partial<Device>): Device {
  return {
    id: 'd', branch_id: 'b', chain_id: 'c', device_name: 'pi', mac_address: 'aa:bb:cc:dd:ee:ff', serial_number: null,
    status: 'online', online: true, last_heartbeat: '2026-11-28T10:00:00Z', firmware_version: '1.0.0',
    health: { outbox_depth: 0, sync_state: 'ok', boards_online: 2, boards_total: 2, clock_trusted: true }, created_at: '',
    ...over,
  };
}

test('a healthy device is ok with no findings', () => {
  const s = summarize(dev({}));
  assert.equal(s.level, 'ok');
  assert.equal(s.online, true);
  assert.equal(s.outboxDepth, 0);
  assert.equal(s.syncState, 'ok');
  assert.deepEqual(s.findings, []);
});

test('offline is bad; online inferred from status when the field is absent', () => {
  assert.equal(summarize(dev({ status: 'offline', online: false })).level, 'bad');
  const s = summarize(dev({ status: 'offline', online: undefined }));
  assert.equal(s.online, false);
  assert.equal(summarize(dev({ status: 'degraded', online: undefined })).online, true);
});

test('outbox depth thresholds', () => {
  assert.equal(summarize(dev({ health: { outbox_depth: 99, sync_state: 'ok' } })).level, 'ok');
  const w = summarize(dev({ health: { outbox_depth: 100, sync_state: 'ok' } }));
  assert.equal(w.level, 'warn');
  assert.deepEqual(w.findings[0], { level: 'warn', key: 'chain.health.outbox', vars: { n: 100 } });
  assert.equal(summarize(dev({ health: { outbox_depth: 5000, sync_state: 'ok' } })).level, 'bad');
});

test('sync states: backoff warns, a stopped sync is bad, unknown when not reported', () => {
  assert.equal(syncLevel('ok'), 'ok');
  assert.equal(syncLevel('backoff'), 'warn');
  for (const st of ['gap', 'cloud_ahead', 'entry_refused', 'revoked']) assert.equal(syncLevel(st), 'bad', st);
  assert.equal(syncLevel(null), 'unknown');
  const s = summarize(dev({ health: { sync_state: 'gap', outbox_depth: 3 } }));
  assert.equal(s.level, 'bad');
  assert.deepEqual(s.findings.map((f) => f.key), ['chain.health.sync']);
});

test('boards offline, untrusted clock, low disk, heat', () => {
  const s = summarize(dev({ health: { sync_state: 'ok', boards_online: 1, boards_total: 3, clock_trusted: false, disk_free_mb: 50, cpu_temp_c: 80 } }));
  assert.equal(s.level, 'warn');
  assert.deepEqual(s.findings.map((f) => f.key), ['chain.health.boards', 'chain.health.clock', 'chain.health.disk', 'chain.health.temp']);
  assert.equal(summarize(dev({ health: { boards_online: 0, boards_total: 2 } })).level, 'bad');
});

test('no health object: unknown while online, bad when offline; garbage ignored', () => {
  assert.equal(summarize(dev({ health: null })).level, 'unknown');
  assert.equal(summarize(dev({ health: null, status: 'offline', online: false })).level, 'bad');
  const s = summarize(dev({ health: { outbox_depth: 'many', sync_state: 7 } as unknown as Record<string, unknown> }));
  assert.equal(s.outboxDepth, null);
  assert.equal(s.syncState, null);
});

test('tally and worst-first order', () => {
  const a = dev({ id: 'a', device_name: 'a' });
  const b = dev({ id: 'b', device_name: 'b', status: 'offline', online: false });
  const c = dev({ id: 'c', device_name: 'c', health: { sync_state: 'backoff' } });
  assert.deepEqual(tally([a, b, c]), { total: 3, online: 2, bad: 1, warn: 1 });
  assert.deepEqual(sortDevices([a, b, c], () => 'X').map((d) => d.id), ['b', 'c', 'a']);
});

test('heartbeat age', () => {
  const now = Date.parse('2026-11-28T10:00:00Z');
  assert.deepEqual(age(null, now), { key: 'chain.age.never', n: 0 });
  assert.deepEqual(age('2026-11-28T09:59:30Z', now), { key: 'chain.age.seconds', n: 30 });
  assert.deepEqual(age('2026-11-28T09:55:00Z', now), { key: 'chain.age.minutes', n: 5 });
  assert.deepEqual(age('2026-11-28T07:00:00Z', now), { key: 'chain.age.hours', n: 3 });
  assert.deepEqual(age('2026-11-25T10:00:00Z', now), { key: 'chain.age.days', n: 3 });
  assert.deepEqual(age('2026-11-28T10:00:05Z', now), { key: 'chain.age.seconds', n: 0 });
});
