import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendPage, preview, telemetryPath, TelemetryRow } from '../src/chain/telemetry';
import { dateTimeToIso, dayRange, lastDays, localDate } from '../src/chain/range';

const C = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

test('telemetry path: chain or device, filters, cursor', () => {
  assert.deepEqual(telemetryPath(C, { deviceId: '', eventType: '', from: '', to: '' }, null),
    { path: `/api/telemetry/chains/${C}?limit=100` });
  const p = telemetryPath(C, { deviceId: 'dev-1', eventType: ' lock.fault ', from: '', to: '' }, '42');
  assert.deepEqual(p, { path: '/api/telemetry/devices/dev-1?event_type=lock.fault&limit=100&cursor=42' });
  const r = telemetryPath(C, { deviceId: '', eventType: '', from: '2026-11-28T08:00', to: '2026-11-28T09:30' }, null);
  assert.ok('path' in r);
  const u = new URL(`http://x${(r as { path: string }).path}`);
  assert.equal(u.searchParams.get('from'), new Date(2026, 10, 28, 8, 0).toISOString());
  assert.equal(u.searchParams.get('to'), new Date(2026, 10, 28, 9, 30).toISOString());
});

test('telemetry path: bad filters name their field', () => {
  assert.deepEqual(telemetryPath(C, { deviceId: '', eventType: 'a b', from: '', to: '' }, null), { error: 'chain.err.eventType', field: 'type' });
  assert.deepEqual(telemetryPath(C, { deviceId: '', eventType: 'x'.repeat(51), from: '', to: '' }, null), { error: 'chain.err.eventType', field: 'type' });
  assert.deepEqual(telemetryPath(C, { deviceId: '', eventType: '', from: '2026-13-01T00:00', to: '' }, null), { error: 'chain.err.dateTime', field: 'from' });
  assert.deepEqual(telemetryPath(C, { deviceId: '', eventType: '', from: '2026-11-28T10:00', to: '2026-11-28T09:00' }, null), { error: 'chain.err.rangeOrder', field: 'to' });
});

test('preview and paging', () => {
  assert.equal(preview({ event_data: { a: 1 } }), '{"a":1}');
  assert.equal(preview({ event_data: null }), '');
  assert.equal(preview({ event_data: null, event_data_too_large: true }), '…');
  assert.equal(preview({ event_data: { s: 'x'.repeat(300) } }, 20).length, 20);
  const row = (id: number) => ({ id } as TelemetryRow);
  assert.deepEqual(appendPage([row(9), row(8)], [row(8), row(7)]).map((r) => r.id), [9, 8, 7]);
});

test('day ranges: local days, to included, empty or bad refused', () => {
  assert.deepEqual(dayRange('2026-11-01', '2026-11-30'), {
    from: new Date(2026, 10, 1).toISOString(), to: new Date(2026, 11, 1).toISOString(),
  });
  assert.ok(dayRange('2026-11-05', '2026-11-05'));
  assert.equal(dayRange('2026-11-06', '2026-11-05'), null);
  assert.equal(dayRange('2026-02-30', '2026-03-01'), null);
  assert.equal(dayRange('', '2026-03-01'), null);
  assert.deepEqual(lastDays(7, new Date(2026, 10, 28, 15)), { from: '2026-11-22', to: '2026-11-28' });
  assert.equal(localDate(new Date(2026, 0, 5)), '2026-01-05');
  assert.equal(dateTimeToIso(''), null);
  assert.equal(dateTimeToIso('garbage'), undefined);
});
