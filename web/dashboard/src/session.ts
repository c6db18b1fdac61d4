// The signed-in staff member (docs/DASHBOARD.md "Session"): token and expires_at in
// sessionStorage (gone when the tab closes), never in a URL or localStorage.

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

/** The stored session, or null when none, unreadable or expired (an expired one is removed). */
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
  if (!valid(s) || isExpired(s, nowMs)) {
    store.removeItem(KEY);
    return null;
  }
  return s;
}

export function saveSession(s: Session, store: KV | null = defaultStore()): void {
  store?.setItem(KEY, JSON.stringify(s));
  store?.removeItem(EXPIRED_KEY);
}

export function clearSession(store: KV | null = defaultStore()): void {
  store?.removeItem(KEY);
}

/** Marks that the sign-in page should say "session expired" (read once). */
export function markExpired(store: KV | null = defaultStore()): void {
  store?.removeItem(KEY);
  store?.setItem(EXPIRED_KEY, '1');
}

export function takeExpiredFlag(store: KV | null = defaultStore()): boolean {
  if (!store) return false;
  const v = store.getItem(EXPIRED_KEY) === '1';
  if (v) store.removeItem(EXPIRED_KEY);
  return v;
}

export function peekExpiredFlag(store: KV | null = defaultStore()): boolean {
  return !!store && store.getItem(EXPIRED_KEY) === '1';
}
