import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldDays, foldHoursOfDay } from '../src/hours';

// Asia/Jerusalem: UTC+2 in winter, UTC+3 in summer (DST ended 2026-10-25 02:00 local).
const TZ = 'Asia/Jerusalem';

test('UTC hours fold into local hours of the day', () => {
  const h = foldHoursOfDay([
    { hour: '2026-11-28T08:00:00Z', count: 3 }, // 10:00 local
    { hour: '2026-11-27T08:00:00Z', count: 2 }, // 10:00 local, another day
    { hour: '2026-11-28T22:00:00Z', count: 1 }, // 00:00 local next day
    { hour: '2026-07-01T08:00:00Z', count: 4 }, // summer: 11:00 local
    { hour: 'garbage', count: 100 },
  ], TZ);
  assert.equal(h.length, 24);
  assert.equal(h[10], 5);
  assert.equal(h[0], 1);
  assert.equal(h[11], 4);
  assert.equal(h.reduce((a, b) => a + b, 0), 10);
  assert.equal(foldHoursOfDay([{ hour: '2026-11-28T08:00:00Z', count: 3 }], 'UTC')[8], 3);
});

test('local days: every day of the range, zeros included, UTC hours moved across midnight', () => {
  const d = foldDays([
    { hour: '2026-11-26T21:00:00Z', count: 2 }, // 23:00 local on the 26th
    { hour: '2026-11-26T22:00:00Z', count: 5 }, // 00:00 local on the 27th
  ], '2026-11-25T22:00:00Z', '2026-11-28T22:00:00Z', TZ);
  assert.deepEqual(d, [
    { day: '2026-11-26', count: 2 }, { day: '2026-11-27', count: 5 }, { day: '2026-11-28', count: 0 },
  ]);
});

test('a range over a DST change has each local day once', () => {
  const d = foldDays([], '2026-10-23T21:00:00Z', '2026-10-26T22:00:00Z', TZ);
  assert.deepEqual(d.map((x) => x.day), ['2026-10-24', '2026-10-25', '2026-10-26']);
});
