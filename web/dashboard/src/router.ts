// Hash routes (docs/DASHBOARD.md "Routes"): pure parsing and formatting, no DOM here
// so that the unit tests run it under node. The hooks live in routes.tsx / main.tsx.

export interface Location {
  /** path without the leading '#', always starting with '/', e.g. '/branches/abc/history' */
  path: string;
  /** query parameters after '?' in the hash */
  query: Record<string, string>;
}

/** '#/branches/x?from=1' → {path: '/branches/x', query: {from: '1'}}. Empty or '#' → '/'. */
export function parseHash(hash: string): Location {
  let h = hash.startsWith('#') ? hash.slice(1) : hash;
  if (!h.startsWith('/')) h = '/' + h;
  const q = h.indexOf('?');
  const rawPath = q >= 0 ? h.slice(0, q) : h;
  const query: Record<string, string> = {};
  if (q >= 0) {
    new URLSearchParams(h.slice(q + 1)).forEach((v, k) => {
      query[k] = v;
    });
  }
  let path = rawPath.replace(/\/+$/, '');
  if (path === '') path = '/';
  return { path, query };
}

/** {path, query} → '#/path?k=v' (keys in the given order, empty values dropped). */
export function formatHash(path: string, query: Record<string, string | undefined> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== '') p.set(k, v);
  }
  const qs = p.toString();
  return '#' + (path.startsWith('/') ? path : '/' + path) + (qs ? '?' + qs : '');
}

/** The route as a string for `next=`: path plus query, without '#'. */
export function routeString(loc: Location): string {
  return formatHash(loc.path, loc.query).slice(1);
}

/**
 * Matches '/branches/:id/history' against a path; returns the decoded
 * parameters, or null. Segments must match one to one.
 */
export function matchPattern(pattern: string, path: string): Record<string, string> | null {
  const ps = pattern.split('/').filter(Boolean);
  const xs = path.split('/').filter(Boolean);
  if (ps.length !== xs.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    if (p.startsWith(':')) {
      let v: string;
      try {
        v = decodeURIComponent(xs[i]);
      } catch {
        return null;
      }
      if (v === '') return null;
      params[p.slice(1)] = v;
    } else if (p !== xs[i]) {
      return null;
    }
  }
  return params;
}

/** A `next=` value is followed only when it is one of our own routes (no '//host', no scheme). */
export function safeNext(next: string | undefined): string | null {
  if (!next) return null;
  if (!next.startsWith('/') || next.startsWith('//')) return null;
  if (next.startsWith('/login')) return null;
  return next;
}

/** Path of a branch view ('live' is the branch's main page). */
export function branchPath(id: string, view: 'live' | 'history' | 'analytics' = 'live'): string {
  const base = '/branches/' + encodeURIComponent(id);
  return view === 'live' ? base : base + '/' + view;
}

export function chainPath(id: string, view?: 'devices' | 'users' | 'analytics' | 'telemetry'): string {
  const base = '/chains/' + encodeURIComponent(id);
  return view ? base + '/' + view : base;
}

/**
 * Where a signed-in user lands without a `next`: platform admin → chains; chain admin →
 * its chain; a manager of one branch → that branch; of several (or none known) → the list.
 */
export function landingPath(role: string, chainId: string | null, branchIds: readonly string[]): string {
  if (role === 'platform-admin') return '/chains';
  if (role === 'chain-admin' && chainId) return chainPath(chainId);
  if (role === 'branch-manager' && branchIds.length === 1) return branchPath(branchIds[0]);
  return '/branches';
}

/** What every page of the route table receives. */
export interface RouteProps {
  /** the pattern's :parameters, decoded */
  params: Record<string, string>;
  /** the hash's query */
  query: Record<string, string>;
}
