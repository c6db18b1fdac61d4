// The frame around every signed-in page: top bar with the app name, the role's
// navigation, the user, the language switch and sign-out.
import type { ReactNode } from 'react';
import { useApp, useT } from '../context';
import type { Key } from '../i18n';
import { Ltr } from './common';

export function Layout({ path, children }: { path: string; children: ReactNode }) {
  const t = useT();
  const { session, lang, setLang, signOut } = useApp();
  const role = session?.user.role;
  const links: { href: string; key: Key }[] = [];
  if (role === 'platform-admin') {
    links.push({ href: '/chains', key: 'nav.chains' }, { href: '/branches', key: 'nav.branches' },
      { href: '/users', key: 'nav.users' });
  } else if (role === 'chain-admin' && session?.user.chain_id) {
    links.push({ href: '/chains/' + encodeURIComponent(session.user.chain_id), key: 'nav.chains' },
      { href: '/branches', key: 'nav.branches' });
  } else {
    links.push({ href: '/branches', key: 'nav.branches' });
  }
  return (
    <div className="shell">
      <header className="topbar">
        <a className="brand" href="#/">{t('app.title')}</a>
        <nav className="mainnav" aria-label={t('nav.menu')}>
          {links.map((l) => (
            <a key={l.href} href={'#' + l.href}
              className={path === l.href || path.startsWith(l.href + '/') ? 'active' : undefined}>
              {t(l.key)}
            </a>
          ))}
        </nav>
        <div className="topbar-end">
          {session && (
            <span className="user">
              <Ltr testId="user-name" className="user-name">{session.user.email}</Ltr>
              <span className="user-role">{t(('role.' + session.user.role) as Key)}</span>
            </span>
          )}
          <button type="button" className="btn btn-ghost" data-testid="lang-toggle" lang={lang === 'he' ? 'en' : 'he'}
            aria-label={t('lang.toggle.label')} onClick={() => setLang(lang === 'he' ? 'en' : 'he')}>
            {t('lang.toggle')}
          </button>
          {session && (
            <button type="button" className="btn btn-ghost" data-testid="nav-signout" onClick={signOut}>
              {t('nav.signout')}
            </button>
          )}
        </div>
      </header>
      <main className="content">{children}</main>
    </div>
  );
}
