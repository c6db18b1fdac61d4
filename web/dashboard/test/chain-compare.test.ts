import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BranchStat, ChainStats, PALETTE, compareChart, paint, rank, telemetryPerDay, totals, utcDays } from '../src/chain/compare';

function st(code: string, rentals: number, rate: number | null, dur: number | null, over: Partial<BranchStat> = {}): BranchStat {
  return { branch_id: code, code, name: code, active: true, rentals, open: 1, overdue_rate: rate, average_duration_minutes: dur,
    carts: 10, devices: 2, devices_online: 1, ...over };
}

test('rank: highest first, branches without a value last, ties by code', () => {
  const items = [st('B', 5, null, null), st('A', 5, 0.2, 30), st('C', 9, 0.1, 45)];
  assert.deepEqual(rank(items, 'rentals').map((s) => s.code), ['C', 'A', 'B']);
  assert.deepEqual(rank(items, 'overdue_rate').map((s) => s.code), ['A', 'C', 'B']);
});

test('compare chart: labels by rank, rates in percent, gaps as null', () => {
  const c = compareChart([st('A', 4, 0.25, 30.26), st('B', 0, null, null)], 'overdue_rate', 'Overdue');
  assert.deepEqual(c.labels, ['A', 'B']);
  assert.deepEqual(c.datasets, [{ label: 'Overdue', data: [25, null] }]);
  assert.deepEqual(compareChart([st('A', 4, 0.25, 30.26)], 'average_duration_minutes', 'x').datasets[0].data, [30.3]);
});

test('totals: the chain rate is weighted by rentals, not a mean of rates', () => {
  const t = totals([st('A', 90, 0.1, 20), st('B', 10, 0.5, 60), st('C', 0, null, null)]);
  assert.equal(t.rentals, 100);
  assert.equal(t.open, 3);
  assert.ok(Math.abs((t.overdueRate as number) - 0.14) < 1e-9);
  assert.ok(Math.abs((t.avgMinutes as number) - 24) < 1e-9);
  assert.deepEqual([t.devices, t.devicesOnline, t.carts], [6, 3, 30]);
  assert.equal(totals([]).overdueRate, null);
});

test('utcDays: every day of [from, to), partial first day included', () => {
  assert.deepEqual(utcDays('2026-11-27T22:00:00Z', '2026-11-30T00:00:00Z'), ['2026-11-27', '2026-11-28', '2026-11-29']);
  assert.deepEqual(utcDays('2026-11-28T00:00:00Z', '2026-11-28T00:00:00Z'), []);
  assert.equal(utcDays('2020-01-01T00:00:00Z', '2026-01-01T00:00:00Z').length, 366);
  assert.deepEqual(utcDays('bad', '2026-01-01T00:00:00Z'), []);
});

test('telemetry per day: top types, the rest as other, empty days as zero', () => {
  const s: ChainStats = {
    chain_id: 'c', from: '2026-11-26T00:00:00Z', to: '2026-11-29T00:00:00Z',
    telemetry: {
      total: 10, by_event_type: { a: 5, b: 3, c: 2 },
      per_day: [
        { date: '2026-11-26', total: 6, by_event_type: { a: 4, b: 1, c: 1 } },
        { date: '2026-11-28', total: 4, by_event_type: { a: 1, b: 2, c: 1 } },
      ],
    },
  };
  const d = telemetryPerDay(s, 2, 'other');
  assert.deepEqual(d.labels, ['2026-11-26', '2026-11-27', '2026-11-28']);
  assert.deepEqual(d.datasets, [
    { label: 'a', data: [4, 0, 1] },
    { label: 'b', data: [1, 0, 2] },
    { label: 'other', data: [1, 0, 1] },
  ]);
  assert.equal(telemetryPerDay(s, 5, 'other').datasets.length, 3);
});

test('paint: one colour per dataset, cycling, data untouched', () => {
  const p = paint({ labels: ['x'], datasets: Array.from({ length: 7 }, (_, i) => ({ label: `d${i}`, data: [i] })) });
  assert.equal(p.datasets[0].backgroundColor, PALETTE[0]);
  assert.equal(p.datasets[6].backgroundColor, PALETTE[0]);
  assert.notEqual(p.datasets[1].backgroundColor, p.datasets[0].backgroundColor);
  assert.deepEqual(p.datasets[3].data, [3]);
  assert.deepEqual(p.labels, ['x']);
});
