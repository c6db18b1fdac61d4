import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clearSession, isExpired, loadSession, markExpired, msLeft, nextAfterSignIn, peekExpiredFlag, saveSession, takeExpiredUser,
  withCurrentUser, type KV,
} from '../src/session';

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
  assert.equal(kv.m.get('cartwise.session'), undefined, 'expired session removed');
  assert.equal(takeExpiredUser(kv), 'u', 'a session found expired is an expiry of its user');
  assert.equal(kv.m.size, 0);
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
  assert.equal(peekExpiredFlag(kv), true);
  assert.equal(takeExpiredUser(kv), 'u', 'the expiry names the user whose session it was');
  assert.equal(takeExpiredUser(kv), null);
  assert.equal(peekExpiredFlag(kv), false);
  markExpired(kv);
  saveSession(S, kv);
  assert.equal(takeExpiredUser(kv), null);
  clearSession(kv);
  assert.equal(loadSession(BEFORE, kv), null);
});

test('an expiry marked again (timer after a 401) keeps the user; with no session known it is ""', () => {
  const kv = store();
  saveSession(S, kv);
  markExpired(kv);
  markExpired(kv);
  assert.equal(takeExpiredUser(kv), 'u');
  markExpired(kv);
  assert.equal(takeExpiredUser(kv), '');
});

test('sign-in follows next only for the user whose session expired (or when none did)', () => {
  const next = '/branches/b1/history?from=2026-11-01&to=2026-11-07';
  assert.equal(nextAfterSignIn(next, 'u', { id: 'u' }), next);
  assert.equal(nextAfterSignIn(next, null, { id: 'u' }), next, 'a link opened before signing in');
  assert.equal(nextAfterSignIn(next, 'u', { id: 'other' }), null, 'another user starts at its landing page');
  assert.equal(nextAfterSignIn(next, '', { id: 'u' }), null, 'an expiry of an unknown user');
  assert.equal(nextAfterSignIn('//evil.example/x', 'u', { id: 'u' }), null);
  assert.equal(nextAfterSignIn(undefined, null, { id: 'u' }), null);
});

test('GET /api/auth/me replaces the cached user, keeps the token', () => {
  const s = { ...S, user: { ...S.user, branch_ids: ['b1'] } };
  const me = { user: { id: 'u', email: 'a@b', role: 'chain-admin', chain_id: 'c2' }, expires_at: S.expires_at };
  assert.deepEqual(withCurrentUser(s, me),
    { token: 'tok', expires_at: S.expires_at, user: { id: 'u', email: 'a@b', role: 'chain-admin', chain_id: 'c2', branch_ids: [] } });
  assert.deepEqual(withCurrentUser(s, { user: { ...me.user, role: 'branch-manager', chain_id: null, branch_ids: ['b2', 'b3'] } })?.user,
    { id: 'u', email: 'a@b', role: 'branch-manager', chain_id: null, branch_ids: ['b2', 'b3'] });
  assert.equal(withCurrentUser(s, { user: { ...me.user, id: 'v' } }), null, 'another user');
  assert.equal(withCurrentUser(s, { error: { code: 'x' } }), null);
  assert.equal(withCurrentUser(s, null), null);
});
