import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clearSession, isExpired, loadSession, markExpired, msLeft, saveSession, takeExpiredFlag, type KV } from '../src/session';

function store(): KV & { m: Map<string, string> } {
  const m = new Map<string, string>();
  return { m, getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v), removeItem: (k) => void m.delete(k) };
}

const S = { token: 'tok', expires_at: '2026-11-28T12:00:00Z', user: { id: 'u', email: 'a@b', role: 'branch-manager' as const, chain_id: 'c' } };
const BEFORE = Date.parse('2026-11-28T11:59:59Z');
const AFTER = Date.parse('2026-11-28T12:00:00Z');

test('expiry at expires_at', () => {
  assert.equal(isExpired(S, BEFORE), false);
  assert.equal(isExpired(S, AFTER), true);
  assert.equal(isExpired({ expires_at: 'nonsense' }, BEFORE), true);
  assert.equal(msLeft(S, BEFORE), 1000);
  assert.equal(msLeft(S, AFTER + 5), 0);
});

test('saved, loaded while valid, dropped once expired', () => {
  const kv = store();
  saveSession(S, kv);
  assert.deepEqual(loadSession(BEFORE, kv), S);
  assert.equal(loadSession(AFTER, kv), null);
  assert.equal(kv.m.size, 0, 'expired session removed');
});

test('garbage in storage is dropped', () => {
  const kv = store();
  kv.setItem('cartwise.session', '{not json');
  assert.equal(loadSession(BEFORE, kv), null);
  kv.setItem('cartwise.session', JSON.stringify({ token: '', expires_at: S.expires_at, user: S.user }));
  assert.equal(loadSession(BEFORE, kv), null);
});

test('the expired flag is shown once, cleared by sign-in and sign-out clears the session', () => {
  const kv = store();
  saveSession(S, kv);
  markExpired(kv);
  assert.equal(loadSession(BEFORE, kv), null);
  assert.equal(takeExpiredFlag(kv), true);
  assert.equal(takeExpiredFlag(kv), false);
  markExpired(kv);
  saveSession(S, kv);
  assert.equal(takeExpiredFlag(kv), false);
  clearSession(kv);
  assert.equal(loadSession(BEFORE, kv), null);
});
