// The signed-in staff member (docs/DASHBOARD.md "Session"): token and expires_at in
// sessionStorage (gone when the tab closes), never in a URL or localStorage.

import { safeNext } from './router';

export type Role = 'platform-admin' | 'chain-admin' | 'branch-manager';

export interface SessionUser {
  id: string;
  email: string;
  role: Role;
  chain_id: string | null;
  branch_ids?: string[];
}

export interface Session {
  token: string;
  /** ISO 8601 */
  expires_at: string;
  user: SessionUser;
}

/** The part of Storage we use (sessionStorage in the browser, a Map in the tests). */
export interface KV {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

const KEY = 'cartwise.session';
const EXPIRED_KEY = 'cartwise.expired';

function defaultStore(): KV | null {
  try {
    return typeof sessionStorage !== 'undefined' ? sessionStorage : null;
  } catch {
    return null;
  }
}

/** Whether a session is past its expires_at (or has an unreadable one) at `nowMs`. */
export function isExpired(s: Pick<Session, 'expires_at'>, nowMs: number): boolean {
  const t = Date.parse(s.expires_at);
  return !Number.isFinite(t) || t <= nowMs;
}

/** Milliseconds left before expiry (0 when expired). */
export function msLeft(s: Pick<Session, 'expires_at'>, nowMs: number): number {
  const t = Date.parse(s.expires_at);
  return Number.isFinite(t) ? Math.max(0, t - nowMs) : 0;
}

function valid(x: unknown): x is Session {
  if (!x || typeof x !== 'object') return false;
  const s = x as Record<string, unknown>;
  const u = s.user as Record<string, unknown> | undefined;
  return typeof s.token === 'string' && s.token !== '' && typeof s.expires_at === 'string' &&
    !!u && typeof u.id === 'string' && typeof u.email === 'string' && typeof u.role === 'string';
}

/**
 * The stored session, or null when none, unreadable or expired (an expired one is
 * removed, and its expiry remembered with its user as markExpired does).
 */
export function loadSession(nowMs = Date.now(), store: KV | null = defaultStore()): Session | null {
  if (!store) return null;
  const raw = store.getItem(KEY);
  if (!raw) return null;
  let s: unknown;
  try {
    s = JSON.parse(raw);
  } catch {
    store.removeItem(KEY);
    return null;
  }
  if (!valid(s)) {
    store.removeItem(KEY);
    return null;
  }
  if (isExpired(s, nowMs)) {
    markExpired(store);
    return null;
  }
  return s;
}

/** The user id of the stored session, expired or not (null when none or unreadable). */
function storedUserId(store: KV): string | null {
  try {
    const s: unknown = JSON.parse(store.getItem(KEY) ?? 'null');
    return valid(s) ? s.user.id : null;
  } catch {
    return null;
  }
}

/**
 * The session with the user as GET /api/auth/me answers now (role, chain, branches
 * may have changed since sign-in); the token and its expiry stay. Null when the answer
 * is not a user, or names another user than the session's.
 */
export function withCurrentUser(s: Session, me: unknown): Session | null {
  const u = (me as { user?: unknown } | null)?.user as Record<string, unknown> | undefined;
  if (!u || typeof u !== 'object' || typeof u.id !== 'string' || typeof u.email !== 'string' ||
      typeof u.role !== 'string' || u.id !== s.user.id) return null;
  const ids = Array.isArray(u.branch_ids) ? u.branch_ids.filter((x): x is string => typeof x === 'string') : [];
  return {
    ...s,
    user: {
      id: u.id,
      email: u.email,
      role: u.role as Role,
      chain_id: typeof u.chain_id === 'string' ? u.chain_id : null,
      branch_ids: ids,
    },
  };
}

export function saveSession(s: Session, store: KV | null = defaultStore()): void {
  store?.setItem(KEY, JSON.stringify(s));
  store?.removeItem(EXPIRED_KEY);
}

export function clearSession(store: KV | null = defaultStore()): void {
  store?.removeItem(KEY);
}

/**
 * Ends the session and marks that the sign-in page should say "session expired",
 * remembering whose session it was (the stored session's user; kept from an earlier
 * mark when the session is already gone; "" when unknown).
 */
export function markExpired(store: KV | null = defaultStore()): void {
  if (!store) return;
  const id = storedUserId(store) ?? store.getItem(EXPIRED_KEY) ?? '';
  store.removeItem(KEY);
  store.setItem(EXPIRED_KEY, id);
}

/** Whose session expired ("" when unknown), or null when none did; the mark is removed. */
export function takeExpiredUser(store: KV | null = defaultStore()): string | null {
  if (!store) return null;
  const v = store.getItem(EXPIRED_KEY);
  if (v !== null) store.removeItem(EXPIRED_KEY);
  return v;
}

export function peekExpiredFlag(store: KV | null = defaultStore()): boolean {
  return !!store && store.getItem(EXPIRED_KEY) !== null;
}

/**
 * Where sign-in goes on: `next` (when one of our routes) only if no session expired in
 * this tab or it was the same user's; another user starts at its role's landing page
 * (null), so that it never sees the route, or the search, of the one before.
 */
export function nextAfterSignIn(next: string | undefined, expiredUser: string | null, user: Pick<SessionUser, 'id'>): string | null {
  if (expiredUser !== null && expiredUser !== user.id) return null;
  return safeNext(next);
}
