import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  branchBody, branchToForm, emptyBranchForm, enrollBody, slugify, userBody, validateBranch, validateChain,
  validateEnroll, validateUser, assignableRoles, UserForm,
} from '../src/chain/validate';

test('branch: code and name required, code charset and length', () => {
  assert.deepEqual(validateBranch(emptyBranchForm), { code: 'chain.err.required', name: 'chain.err.required' });
  assert.equal(validateBranch({ ...emptyBranchForm, code: 'TLV 1', name: 'x' }).code, 'chain.err.code');
  assert.equal(validateBranch({ ...emptyBranchForm, code: 'a'.repeat(65), name: 'x' }).code, 'chain.err.tooLong');
  assert.deepEqual(validateBranch({ ...emptyBranchForm, code: 'TLV-1_b', name: 'תל אביב' }), {});
});

test('branch: names counted in UTF-8 bytes, control characters refused', () => {
  // 128 Hebrew letters = 256 bytes > 255
  assert.equal(validateBranch({ ...emptyBranchForm, code: 'A', name: 'א'.repeat(128) }).name, 'chain.err.tooLong');
  assert.deepEqual(validateBranch({ ...emptyBranchForm, code: 'A', name: 'א'.repeat(127) }), {});
  assert.equal(validateBranch({ ...emptyBranchForm, code: 'A', name: 'a\tb' }).name, 'chain.err.control');
});

test('branch: coordinates in range and together', () => {
  const f = { ...emptyBranchForm, code: 'A', name: 'B' };
  assert.equal(validateBranch({ ...f, latitude: '91', longitude: '0' }).latitude, 'chain.err.latitude');
  assert.equal(validateBranch({ ...f, latitude: '0', longitude: '-180.5' }).longitude, 'chain.err.longitude');
  assert.equal(validateBranch({ ...f, latitude: '1e3', longitude: '0' }).latitude, 'chain.err.number');
  assert.equal(validateBranch({ ...f, latitude: '32.1' }).longitude, 'chain.err.coordsTogether');
  assert.deepEqual(validateBranch({ ...f, latitude: '32.08', longitude: '34.78' }), {});
});

test('branch body: create sends the filled fields, edit only the changed ones', () => {
  assert.deepEqual(branchBody({ ...emptyBranchForm, code: ' TLV ', name: 'Tel Aviv', latitude: '32', longitude: '34.5' }),
    { code: 'TLV', name: 'Tel Aviv', latitude: 32, longitude: 34.5 });
  const before = branchToForm({ code: 'TLV', name: 'Tel Aviv', address: 'Dizengoff 1', city: null, latitude: null, longitude: null });
  assert.deepEqual(branchBody(before, before), {});
  assert.deepEqual(branchBody({ ...before, name: 'TLV Center', address: '' }, before), { name: 'TLV Center', address: '' });
});

test('branch body: emptying both coordinates of a located branch clears the location (both null)', () => {
  const before = branchToForm({ code: 'TLV', name: 'Tel Aviv', address: null, city: null, latitude: 32.08, longitude: 34.78 });
  assert.deepEqual(branchBody({ ...before, latitude: ' ', longitude: '' }, before), { latitude: null, longitude: null });
  assert.deepEqual(branchBody({ ...before, latitude: '32.1' }, before), { latitude: 32.1, longitude: 34.78 });
  // nothing to clear: a branch without a location, or a new one, sends no coordinates
  const none = { ...before, latitude: '', longitude: '' };
  assert.deepEqual(branchBody(none, none), {});
  assert.deepEqual(branchBody({ ...emptyBranchForm, code: 'A', name: 'A' }), { code: 'A', name: 'A' });
});

test('chain: slug rules; slugify', () => {
  assert.deepEqual(validateChain({ name: 'Shufersal', slug: 'shufersal' }), {});
  assert.equal(validateChain({ name: 'x', slug: 'Big Chain' }).slug, 'chain.err.slug');
  assert.equal(validateChain({ name: '', slug: '' }).name, 'chain.err.required');
  assert.equal(slugify('  Super Market #2 '), 'super-market-2');
  assert.equal(slugify('רמי לוי'), '');
});

const base: UserForm = { email: 'm@example.com', password: 'long enough pw', role: 'branch-manager', chainId: 'c1', branchIds: ['b1'] };

test('user: roles a chain admin may give; never a platform admin', () => {
  assert.deepEqual(assignableRoles('chain-admin'), ['chain-admin', 'branch-manager']);
  assert.deepEqual(assignableRoles('branch-manager'), []);
  assert.equal(validateUser({ ...base, role: 'platform-admin', chainId: '', branchIds: [] }, true, 'chain-admin').role, 'chain.err.role');
  assert.deepEqual(validateUser({ ...base, role: 'platform-admin', chainId: '', branchIds: [] }, true, 'platform-admin'), {});
});

test('user: password on create, optional on edit; manager needs a branch; chain rules', () => {
  assert.deepEqual(validateUser(base, true, 'chain-admin'), {});
  assert.equal(validateUser({ ...base, password: '' }, true, 'chain-admin').password, 'chain.err.required');
  assert.equal(validateUser({ ...base, password: 'short' }, true, 'chain-admin').password, 'chain.err.passwordShort');
  assert.deepEqual(validateUser({ ...base, password: '' }, false, 'chain-admin'), {});
  assert.equal(validateUser({ ...base, branchIds: [] }, true, 'chain-admin').branches, 'chain.err.branches');
  assert.equal(validateUser({ ...base, chainId: '' }, true, 'platform-admin').chain, 'chain.err.required');
  assert.equal(validateUser({ ...base, role: 'platform-admin', branchIds: [] }, true, 'platform-admin').chain, 'chain.err.platformNoChain');
  assert.equal(validateUser({ ...base, email: 'no-at' }, true, 'chain-admin').email, 'chain.err.email');
});

test('user body: create; edit sends changes, restates branches on a role change, null chain for platform admins', () => {
  assert.deepEqual(userBody({ ...base, email: 'M@Example.com', branchIds: ['b2', 'b1'] }),
    { email: 'm@example.com', password: 'long enough pw', role: 'branch-manager', chain_id: 'c1', branch_ids: ['b1', 'b2'] });
  const before = { ...base, password: '' };
  assert.deepEqual(userBody(before, before), {});
  assert.deepEqual(userBody({ ...before, branchIds: ['b1', 'b3'] }, before), { branch_ids: ['b1', 'b3'] });
  assert.deepEqual(userBody({ ...before, role: 'chain-admin', branchIds: [] }, before), { role: 'chain-admin', chain_id: 'c1' });
  assert.deepEqual(userBody({ ...before, role: 'platform-admin', chainId: '', branchIds: [] }, before), { role: 'platform-admin', chain_id: null });
  assert.deepEqual(userBody({ ...before, password: 'new password!' }, before), { password: 'new password!' });
});

test('enrollment code: uses 1..1000, lifetime 60 s .. 90 days', () => {
  assert.deepEqual(validateEnroll('1', '24'), {});
  assert.equal(validateEnroll('0', '24').uses, 'chain.err.uses');
  assert.equal(validateEnroll('1001', '24').uses, 'chain.err.uses');
  assert.equal(validateEnroll('2.5', '24').uses, 'chain.err.uses');
  assert.equal(validateEnroll('1', '0.01').hours, 'chain.err.hours');
  assert.equal(validateEnroll('1', '2161').hours, 'chain.err.hours');
  assert.deepEqual(validateEnroll('1000', '2160'), {});
  assert.deepEqual(enrollBody('5', '1.5'), { uses: 5, expires_in_s: 5400 });
});
