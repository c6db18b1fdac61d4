import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addDays, dayRange, isDate, lastDays, localDate } from '../src/dates';

// run.mjs runs the tests with TZ=Asia/Jerusalem (UTC+2 in winter, +3 in summer).
test('the tests run in Asia/Jerusalem', () => {
  assert.equal(new Date('2026-01-01T00:00:00Z').getTimezoneOffset(), -120);
});

test('a range of local days in UTC, the end day included', () => {
  assert.deepEqual(dayRange('2026-11-01', '2026-11-28'), { from: '2026-10-31T22:00:00.000Z', to: '2026-11-28T22:00:00.000Z' });
  // across the end of summer time (2026-10-25): the first midnight is UTC+3
  assert.deepEqual(dayRange('2026-10-24', '2026-10-25'), { from: '2026-10-23T21:00:00.000Z', to: '2026-10-25T22:00:00.000Z' });
});

test('calendar arithmetic and validation', () => {
  assert.equal(addDays('2026-02-28', 1), '2026-03-01');
  assert.equal(addDays('2026-01-01', -1), '2025-12-31');
  assert.equal(addDays('2026-10-24', 1), '2026-10-25');
  assert.equal(addDays('2026-10-25', 1), '2026-10-26');
  assert.ok(isDate('2026-02-28'));
  assert.ok(!isDate('2026-02-30'));
  assert.ok(!isDate('2026-2-3'));
  assert.ok(!isDate(undefined));
  assert.deepEqual(lastDays(7, new Date('2026-11-28T21:59:00Z')), { from: '2026-11-22', to: '2026-11-28' });
  assert.equal(localDate(new Date('2026-11-28T22:00:00Z')), '2026-11-29');
});
