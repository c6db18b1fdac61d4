// #/branches: the branches the user sees (a manager: its own), each a link to its live view.
import { getAll } from '../api';
import { Ltr, Show, useLoad } from '../components/common';
import { useT } from '../context';
import { branchPath, type RouteProps } from '../router';
import type { Branch } from '../types';

export function BranchesPage(_props: RouteProps) {
  const t = useT();
  const l = useLoad(() => getAll<Branch>('/api/branches'), []);
  return (
    <section className="page">
      <h1>{t('branches.title')}</h1>
      <Show l={l}>
        {({ items }) => items.length === 0 ? <p className="empty">{t('branches.empty')}</p> : (
          <ul className="branch-cards">
            {items.map((b) => (
              <li key={b.id}>
                <a className={'card branch-card' + (b.active ? '' : ' inactive')} href={'#' + branchPath(b.id)}
                  data-testid={'branch-link-' + b.code}>
                  <Ltr className="branch-code">{b.code}</Ltr>
                  <span className="branch-name">{b.name}</span>
                  {b.city && <span className="branch-city">{b.city}</span>}
                  {!b.active && <span className="badge">{t('branches.inactive')}</span>}
                </a>
              </li>
            ))}
          </ul>
        )}
      </Show>
    </section>
  );
}
