// The cloud API client (docs/CLOUD.md): JSON in and out, the staff token in the
// Authorization header, errors as ApiError {status, code, message}. A 401 from any
// route (or a token already past expires_at) goes to the central handler, which sends
// the user to #/login?next=<current route> ("session expired").

export class ApiError extends Error {
  status: number;
  code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

interface ApiConfig {
  base: string;
  token: () => string | null;
  /** called once per 401 answer (or a token found expired before sending) */
  onUnauthorized: () => void;
}

const config: ApiConfig = {
  base: '',
  token: () => null,
  onUnauthorized: () => {},
};

export function configureApi(c: Partial<ApiConfig>): void {
  Object.assign(config, c);
}

export function authHeaders(): Record<string, string> {
  const t = config.token();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

/** Raw fetch with the token (used by the live stream); 401 handled centrally. */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const headers: Record<string, string> = { ...authHeaders(), ...(init.headers as Record<string, string> | undefined) };
  const res = await fetch(config.base + path, { ...init, headers, cache: 'no-store' });
  // A 401 anywhere but the sign-in itself means the session is over (expired, revoked, absent).
  if (res.status === 401 && !path.startsWith('/api/auth/login')) config.onUnauthorized();
  return res;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  let payload: string | undefined;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await apiFetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : String(e));
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, err?.code ?? 'http_' + res.status, err?.message ?? res.statusText);
  }
  return json as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body ?? {}),
  put: <T>(path: string, body?: unknown) => request<T>('PUT', path, body ?? {}),
  del: <T = void>(path: string) => request<T>('DELETE', path),
};

/** '?a=1&b=2' from an object, dropping undefined and '' values. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? '?' + s : '';
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** Follows next_cursor until the end or `max` items; returns the items and whether it was cut. */
export async function getAll<T>(path: string, params: Record<string, string | number | undefined> = {},
  max = 10000): Promise<{ items: T[]; truncated: boolean }> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await api.get<Page<T>>(path + qs({ ...params, limit: 200, cursor }));
    for (const it of page.items) {
      if (items.length >= max) return { items, truncated: true };
      items.push(it);
    }
    if (!page.next_cursor) return { items, truncated: false };
    cursor = page.next_cursor;
  }
}
