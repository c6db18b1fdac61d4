// The one place where the chain view meets the app's shell (api client,
// i18n, session, Chart wrapper, shared components, API types). Everything
// else under src/chain/ imports the shell through this file.

import { useApp } from '../context';
import type { SessionUser } from '../session';

export { api, ApiError, getAll, qs } from '../api';
export type { Page } from '../api';
export { useApp, useT } from '../context';
export type { Key } from '../i18n';
export { Chart } from '../components/Chart';
export { NotFound, isNotFound, useLoad } from '../components/common';
export type { Loaded } from '../components/common';
export { fmtDateTime, fmtNumber, fmtPercent } from '../format';
export type { RouteProps } from '../router';
export type { Role, SessionUser } from '../session';
export type { Branch, Chain, Device, User } from '../types';

/** The signed-in staff member (null before sign-in). */
export function useActor(): SessionUser | null {
  return useApp().session?.user ?? null;
}
