// Placeholder: f-chain replaces this page (docs/DASHBOARD.md "Chain view").
import type { RouteProps } from '../router';
import { useT } from '../context';

export function AllUsersPage(_props: RouteProps) {
  const t = useT();
  return (
    <section className="page">
      <h1>{t('chain.users.title')}</h1>
      <p>{t('chain.placeholder')}</p>
    </section>
  );
}
