import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countStatuses, groupCarts, isOverdue, minutesLate, sortActive, tileStatus } from '../src/status';
import type { Cart } from '../src/types';

const NOW = Date.parse('2026-11-28T12:00:00Z');

function cart(n: number, over: Partial<Cart> = {}): Cart {
  return {
    id: 'c' + n, branch_id: 'b', device_id: 'd1', controller_id: 'k', cart_number: n, locker_id: n,
    status: 'available', is_locked: true, last_used: null, maintenance_notes: null, updated_at: null,
    bus_index: 0, board: 1, board_online: true, ...over,
  };
}

test('overdue from expected_return, recomputed against now', () => {
  const r = { status: 'active' as const, overdue: false, expected_return: '2026-11-28T11:59:59Z' };
  assert.equal(isOverdue(r, NOW), true);
  assert.equal(isOverdue({ ...r, expected_return: '2026-11-28T12:00:01Z' }, NOW), false);
  assert.equal(isOverdue({ ...r, status: 'returned' }, NOW), false);
  assert.equal(isOverdue({ ...r, status: 'overdue', expected_return: '2030-01-01T00:00:00Z' }, NOW), true);
  assert.equal(minutesLate('2026-11-28T11:30:00Z', NOW), 30);
});

test('tile status: board offline wins, overdue rented, cart status otherwise', () => {
  const late = { status: 'active' as const, overdue: false, expected_return: '2026-11-28T11:00:00Z' };
  const onTime = { ...late, expected_return: '2026-11-28T13:00:00Z' };
  assert.equal(tileStatus(cart(1, { status: 'rented' }), late, NOW), 'overdue');
  assert.equal(tileStatus(cart(1, { status: 'rented' }), onTime, NOW), 'rented');
  assert.equal(tileStatus(cart(1, { status: 'rented', board_online: false }), late, NOW), 'board-offline');
  assert.equal(tileStatus(cart(1, { status: 'maintenance', board_online: false }), undefined, NOW), 'board-offline');
  assert.equal(tileStatus(cart(1, { status: 'maintenance', board_online: null }), undefined, NOW), 'maintenance');
  assert.equal(tileStatus(cart(1, { status: 'fault' }), undefined, NOW), 'fault');
  assert.equal(tileStatus(cart(1, { status: 'awaiting-return' }), late, NOW), 'overdue');
  assert.equal(tileStatus(cart(1, { status: 'available' }), late, NOW), 'available');
  assert.equal(tileStatus(cart(1, { status: 'offline' }), undefined, NOW), 'offline');
  assert.equal(tileStatus(cart(1, { status: 'bogus' as never }), undefined, NOW), 'offline');
});

test('active rentals: overdue first (most late first), then by expected return', () => {
  const rs = [
    { id: 'a', status: 'active' as const, overdue: false, expected_return: '2026-11-28T14:00:00Z' },
    { id: 'b', status: 'active' as const, overdue: false, expected_return: '2026-11-28T11:00:00Z' },
    { id: 'c', status: 'active' as const, overdue: false, expected_return: '2026-11-28T13:00:00Z' },
    { id: 'd', status: 'overdue' as const, overdue: true, expected_return: '2026-11-28T10:00:00Z' },
  ];
  assert.deepEqual(sortActive(rs, NOW).map((r) => r.id), ['d', 'b', 'c', 'a']);
});

test('grouping by device then bus/board, cart order kept, offline board flagged', () => {
  const carts = [cart(3, { board: 2 }), cart(1), cart(2, { board_online: false }), cart(9, { device_id: null, bus_index: null, board: null, board_online: null }),
    cart(5, { device_id: 'd0', bus_index: 1, board: 1 })];
  const g = groupCarts(carts);
  assert.deepEqual(g.map((d) => d.deviceId), ['d1', 'd0', '']);
  assert.deepEqual(g[0].boards.map((b) => [b.bus, b.board, b.online, b.carts.map((c) => c.cart_number)]),
    [[0, 1, false, [1, 2]], [0, 2, true, [3]]]);
  assert.equal(g[2].boards[0].online, null);
  assert.deepEqual(countStatuses(['rented', 'rented', 'fault']).rented, 2);
});
