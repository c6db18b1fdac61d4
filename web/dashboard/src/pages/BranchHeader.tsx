// Title and tabs (live, history, analytics) of a branch's pages; loads the branch and
// renders the not-found page when it is not the user's.
import type { ReactNode } from 'react';
import { api } from '../api';
import { Ltr, Show, useLoad } from '../components/common';
import { useT } from '../context';
import { branchPath } from '../router';
import type { Branch } from '../types';

export type BranchTab = 'live' | 'history' | 'analytics';

export function BranchFrame({ id, tab, extra, children }: {
  id: string; tab: BranchTab; extra?: ReactNode; children: (b: Branch) => JSX.Element;
}) {
  const t = useT();
  const l = useLoad(() => api.get<Branch>('/api/branches/' + encodeURIComponent(id)), [id]);
  return (
    <Show l={l}>
      {(b) => (
        <section className="page branch-page">
          <div className="page-head">
            <h1><Ltr className="branch-code">{b.code}</Ltr> {b.name}</h1>
            {extra}
          </div>
          <nav className="tabs" role="tablist">
            {(['live', 'history', 'analytics'] as BranchTab[]).map((x) => (
              <a key={x} role="tab" aria-selected={x === tab} className={x === tab ? 'tab active' : 'tab'}
                href={'#' + branchPath(b.id, x)} data-testid={'tab-' + x}>{t(('branch.tab.' + x) as 'branch.tab.live')}</a>
            ))}
          </nav>
          {!b.active && <p className="notice warn">{t('branch.inactive')}</p>}
          {children(b)}
        </section>
      )}
    </Show>
  );
}
