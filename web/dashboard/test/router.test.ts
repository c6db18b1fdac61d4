import { test } from 'node:test';
import assert from 'node:assert/strict';
import { branchPath, chainPath, formatHash, landingPath, matchPattern, parseHash, routeString, safeNext } from '../src/router';
import { routes } from '../src/routes';

test('parseHash splits path and query', () => {
  assert.deepEqual(parseHash('#/branches/abc/history?from=2026-01-01&phone=%2B972501234567'),
    { path: '/branches/abc/history', query: { from: '2026-01-01', phone: '+972501234567' } });
  assert.deepEqual(parseHash(''), { path: '/', query: {} });
  assert.deepEqual(parseHash('#'), { path: '/', query: {} });
  assert.deepEqual(parseHash('#/branches/'), { path: '/branches', query: {} });
  assert.deepEqual(parseHash('#login?next=%2Fbranches%2Fx'), { path: '/login', query: { next: '/branches/x' } });
});

test('formatHash round-trips through parseHash', () => {
  const h = formatHash('/login', { next: '/branches/x/history?from=2026-01-01&to=2026-02-01', empty: '' });
  assert.equal(h, '#/login?next=%2Fbranches%2Fx%2Fhistory%3Ffrom%3D2026-01-01%26to%3D2026-02-01');
  assert.equal(parseHash(h).query.next, '/branches/x/history?from=2026-01-01&to=2026-02-01');
  assert.equal(routeString(parseHash('#/a/b?x=1')), '/a/b?x=1');
});

test('matchPattern binds and decodes parameters, segment by segment', () => {
  assert.deepEqual(matchPattern('/branches/:id', '/branches/a%20b'), { id: 'a b' });
  assert.deepEqual(matchPattern('/branches/:id/history', '/branches/x/history'), { id: 'x' });
  assert.equal(matchPattern('/branches/:id', '/branches/x/history'), null);
  assert.equal(matchPattern('/branches/:id', '/branches'), null);
  assert.equal(matchPattern('/chains/:id', '/branches/x'), null);
  assert.equal(matchPattern('/branches/:id', '/branches/%E0%A4%A'), null);
});

test('safeNext follows only our own routes', () => {
  assert.equal(safeNext('/branches/x?y=1'), '/branches/x?y=1');
  assert.equal(safeNext('//evil.example/'), null);
  assert.equal(safeNext('https://evil.example/'), null);
  assert.equal(safeNext('/login?next=/x'), null);
  assert.equal(safeNext(undefined), null);
});

test('landing page per role', () => {
  assert.equal(landingPath('platform-admin', null, []), '/chains');
  assert.equal(landingPath('chain-admin', 'c1', []), '/chains/c1');
  assert.equal(landingPath('branch-manager', 'c1', ['b1']), '/branches/b1');
  assert.equal(landingPath('branch-manager', 'c1', ['b1', 'b2']), '/branches');
  assert.equal(landingPath('branch-manager', 'c1', []), '/branches');
  assert.equal(branchPath('b/1', 'history'), '/branches/b%2F1/history');
  assert.equal(chainPath('c1', 'devices'), '/chains/c1/devices');
});

test('every contract route is in the table, each path matching exactly one pattern', () => {
  const paths = ['/branches', '/branches/x', '/branches/x/history', '/branches/x/analytics', '/chains', '/chains/c',
    '/chains/c/devices', '/chains/c/users', '/chains/c/analytics', '/chains/c/telemetry', '/users'];
  for (const p of paths) {
    const m = routes.filter((r) => matchPattern(r.pattern, p));
    assert.equal(m.length, 1, p);
  }
  assert.deepEqual(routes.find((r) => r.pattern === '/chains')?.roles, ['platform-admin']);
  assert.deepEqual(routes.find((r) => r.pattern === '/users')?.roles, ['platform-admin']);
});
