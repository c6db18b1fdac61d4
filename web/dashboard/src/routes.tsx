// THE route table (docs/DASHBOARD.md "Routes"): every page of the app is registered here,
// first match wins. `roles` limits a route to some roles; anyone else sees the not-found
// page (the server enforces tenancy anyway: 404 for what you may not see).
// #/login is not in the table: it is the one route that needs no session.
import type { ComponentType } from 'react';
import type { RouteProps } from './router';
import type { Role } from './session';
import { BranchesPage } from './pages/BranchesPage';
import { BranchLivePage } from './pages/BranchLivePage';
import { BranchHistoryPage } from './pages/BranchHistoryPage';
import { BranchAnalyticsPage } from './pages/BranchAnalyticsPage';
// Chain / platform pages (src/chain/**)
import { ChainsPage } from './chain/ChainsPage';
import { ChainPage } from './chain/ChainPage';
import { ChainDevicesPage } from './chain/ChainDevicesPage';
import { ChainUsersPage } from './chain/ChainUsersPage';
import { ChainAnalyticsPage } from './chain/ChainAnalyticsPage';
import { ChainTelemetryPage } from './chain/ChainTelemetryPage';
import { AllUsersPage } from './chain/AllUsersPage';

export interface RouteDef {
  /** '/branches/:id/history': ':name' segments become params.name */
  pattern: string;
  component: ComponentType<RouteProps>;
  /** allowed roles; absent = every signed-in staff member */
  roles?: Role[];
}

export const routes: RouteDef[] = [
  // Branch view
  { pattern: '/branches', component: BranchesPage },
  { pattern: '/branches/:id', component: BranchLivePage },
  { pattern: '/branches/:id/history', component: BranchHistoryPage },
  { pattern: '/branches/:id/analytics', component: BranchAnalyticsPage },
  // Chain / platform view
  { pattern: '/chains', component: ChainsPage, roles: ['platform-admin'] },
  { pattern: '/chains/:id', component: ChainPage, roles: ['platform-admin', 'chain-admin'] },
  { pattern: '/chains/:id/devices', component: ChainDevicesPage, roles: ['platform-admin', 'chain-admin'] },
  { pattern: '/chains/:id/users', component: ChainUsersPage, roles: ['platform-admin', 'chain-admin'] },
  { pattern: '/chains/:id/analytics', component: ChainAnalyticsPage, roles: ['platform-admin', 'chain-admin'] },
  { pattern: '/chains/:id/telemetry', component: ChainTelemetryPage, roles: ['platform-admin', 'chain-admin'] },
  { pattern: '/users', component: AllUsersPage, roles: ['platform-admin'] },
];
