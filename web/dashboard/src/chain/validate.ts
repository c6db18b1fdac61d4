// Form validation of the chain view (branches, chains, users, enrollment
// codes). Pure functions: each returns a map field -> i18n key of the first
// problem, empty when the form may be sent. The limits are the server's
// (src/cloud/cw_store.h, cw_cloud_api.c); the server checks again.

import type { ChainKey } from './i18n';
import { utf8Bytes } from '../text';

export type Errors = Partial<Record<string, ChainKey>>;

export const LIMITS = {
  codeBytes: 64,
  nameBytes: 255,
  slugBytes: 100,
  addressBytes: 512,
  cityBytes: 100,
  emailBytes: 254,
  passwordMin: 10,
  passwordMax: 1024,
  usesMin: 1,
  usesMax: 1000,
  expiresMinS: 60,
  expiresMaxS: 90 * 86400,
};

// no C0/C1 control characters (the server refuses them in text fields)
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CODE = /^[A-Za-z0-9_-]+$/;
const SLUG = /^[a-z0-9-]+$/;

function text(errs: Errors, field: string, v: string, required: boolean, max: number) {
  if (v.trim() === '') {
    if (required) errs[field] = 'chain.err.required';
    return;
  }
  if (CONTROL.test(v)) errs[field] = 'chain.err.control';
  else if (utf8Bytes(v) > max) errs[field] = 'chain.err.tooLong';
}

export interface BranchForm {
  code: string;
  name: string;
  address: string;
  city: string;
  latitude: string;
  longitude: string;
}

export const emptyBranchForm: BranchForm = {
  code: '', name: '', address: '', city: '', latitude: '', longitude: '',
};

function coord(errs: Errors, field: string, v: string, lim: number): number | null {
  const s = v.trim();
  if (s === '') return null;
  const n = Number(s);
  if (!Number.isFinite(n) || !/^[-+]?\d+(\.\d+)?$/.test(s)) {
    errs[field] = 'chain.err.number';
    return null;
  }
  if (n < -lim || n > lim) {
    errs[field] = lim === 90 ? 'chain.err.latitude' : 'chain.err.longitude';
    return null;
  }
  return n;
}

export function validateBranch(f: BranchForm): Errors {
  const errs: Errors = {};
  if (f.code.trim() === '') errs.code = 'chain.err.required';
  else if (!CODE.test(f.code.trim())) errs.code = 'chain.err.code';
  else if (utf8Bytes(f.code.trim()) > LIMITS.codeBytes) errs.code = 'chain.err.tooLong';
  text(errs, 'name', f.name, true, LIMITS.nameBytes);
  text(errs, 'address', f.address, false, LIMITS.addressBytes);
  text(errs, 'city', f.city, false, LIMITS.cityBytes);
  const lat = coord(errs, 'latitude', f.latitude, 90);
  const lon = coord(errs, 'longitude', f.longitude, 180);
  if (!errs.latitude && !errs.longitude && (lat === null) !== (lon === null))
    errs[lat === null ? 'latitude' : 'longitude'] = 'chain.err.coordsTogether';
  return errs;
}

// The body of POST /api/branches (with chain_id) or PUT /api/branches/{id}.
// On an edit, only the fields that differ from `before` are sent; a cleared
// optional text is sent as "" (the server stores "" as none), and emptying both
// coordinates of a branch that had a location sends both null (the server's way
// to clear it).
export function branchBody(f: BranchForm, before?: BranchForm): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const str = (k: 'code' | 'name' | 'address' | 'city') => {
    const v = f[k].trim();
    if (before ? v !== before[k].trim() : v !== '') out[k] = v;
  };
  str('code');
  str('name');
  str('address');
  str('city');
  const lat = f.latitude.trim(), lon = f.longitude.trim();
  const changed = !before || lat !== before.latitude.trim() || lon !== before.longitude.trim();
  if (changed && lat !== '' && lon !== '') {
    out.latitude = Number(lat);
    out.longitude = Number(lon);
  } else if (changed && before && lat === '' && lon === '') {
    out.latitude = null;
    out.longitude = null;
  }
  return out;
}

export function branchToForm(b: {
  code: string; name: string; address: string | null; city: string | null;
  latitude: number | null; longitude: number | null;
}): BranchForm {
  return {
    code: b.code,
    name: b.name,
    address: b.address ?? '',
    city: b.city ?? '',
    latitude: b.latitude === null ? '' : String(b.latitude),
    longitude: b.longitude === null ? '' : String(b.longitude),
  };
}

export interface ChainForm {
  name: string;
  slug: string;
}

export function validateChain(f: ChainForm): Errors {
  const errs: Errors = {};
  text(errs, 'name', f.name, true, LIMITS.nameBytes);
  const s = f.slug.trim();
  if (s === '') errs.slug = 'chain.err.required';
  else if (!SLUG.test(s)) errs.slug = 'chain.err.slug';
  else if (utf8Bytes(s) > LIMITS.slugBytes) errs.slug = 'chain.err.tooLong';
  return errs;
}

// A slug proposed from a name: lower-case ASCII letters and digits, the rest
// folded into single '-'. Names in Hebrew give "" (the admin types one).
export function slugify(name: string): string {
  return name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, LIMITS.slugBytes);
}

export type Role = 'platform-admin' | 'chain-admin' | 'branch-manager';
export const ROLES: Role[] = ['platform-admin', 'chain-admin', 'branch-manager'];

export interface UserForm {
  email: string;
  password: string;
  role: Role;
  chainId: string; // "" = none
  branchIds: string[];
}

// Roles the signed-in user may give: a platform admin any, a chain admin
// chain admins and managers of its chain, a manager none.
export function assignableRoles(actor: Role): Role[] {
  if (actor === 'platform-admin') return ROLES.slice();
  if (actor === 'chain-admin') return ['chain-admin', 'branch-manager'];
  return [];
}

// creating: the password is required; editing: "" keeps the old one.
export function validateUser(f: UserForm, creating: boolean, actor: Role): Errors {
  const errs: Errors = {};
  const email = f.email.trim();
  if (email === '') errs.email = 'chain.err.required';
  else if (!/^[^\s@]+@[^\s@]+$/.test(email) || CONTROL.test(email)) errs.email = 'chain.err.email';
  else if (utf8Bytes(email) > LIMITS.emailBytes) errs.email = 'chain.err.tooLong';
  if (creating || f.password !== '') {
    const n = utf8Bytes(f.password);
    if (f.password === '') errs.password = 'chain.err.required';
    else if (n < LIMITS.passwordMin) errs.password = 'chain.err.passwordShort';
    else if (n > LIMITS.passwordMax) errs.password = 'chain.err.tooLong';
    else if (/[\r\n]/.test(f.password)) errs.password = 'chain.err.control';
  }
  if (!assignableRoles(actor).includes(f.role)) errs.role = 'chain.err.role';
  if (f.role === 'platform-admin') {
    if (f.chainId !== '') errs.chain = 'chain.err.platformNoChain';
  } else if (f.chainId === '') {
    errs.chain = 'chain.err.required';
  }
  if (f.role === 'branch-manager' && f.branchIds.length === 0) errs.branches = 'chain.err.branches';
  return errs;
}

// The body of POST /api/users or PUT /api/users/{id}.
export function userBody(f: UserForm, before?: UserForm): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const email = f.email.trim().toLowerCase();
  if (!before || email !== before.email.trim().toLowerCase()) out.email = email;
  if (f.password !== '') out.password = f.password;
  const roleChanged = !before || f.role !== before.role;
  const chainChanged = !before || f.chainId !== before.chainId;
  if (roleChanged) out.role = f.role;
  if (chainChanged || roleChanged) out.chain_id = f.role === 'platform-admin' ? null : f.chainId;
  const branches = f.role === 'branch-manager' ? f.branchIds.slice().sort() : [];
  const beforeBranches = before && before.role === 'branch-manager' ? before.branchIds.slice().sort() : [];
  // a new role or chain clears the server's list unless branch_ids is sent
  if (f.role === 'branch-manager' &&
      (!before || roleChanged || chainChanged || branches.join() !== beforeBranches.join()))
    out.branch_ids = branches;
  return out;
}

// Validity of a new enrollment code: uses 1..1000, lifetime 60 s .. 90 days.
export function validateEnroll(uses: string, hours: string): Errors {
  const errs: Errors = {};
  const u = Number(uses);
  if (!/^\d+$/.test(uses.trim()) || u < LIMITS.usesMin || u > LIMITS.usesMax) errs.uses = 'chain.err.uses';
  const h = Number(hours);
  if (!/^\d+(\.\d+)?$/.test(hours.trim()) || h * 3600 < LIMITS.expiresMinS || h * 3600 > LIMITS.expiresMaxS)
    errs.hours = 'chain.err.hours';
  return errs;
}

export function enrollBody(uses: string, hours: string): { uses: number; expires_in_s: number } {
  return { uses: Number(uses), expires_in_s: Math.round(Number(hours) * 3600) };
}
