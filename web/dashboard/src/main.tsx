// Entry point: the shell (session, language, hash routing) around the route table.
import { StrictMode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import './app.css';
import { api, configureApi } from './api';
import { AppContext, type AppState } from './context';
import { detectLang, dirOf, LANG_KEY, type Lang } from './i18n';
import { Layout } from './components/Layout';
import { Loading, NotFound } from './components/common';
import { Login } from './pages/Login';
import { routes } from './routes';
import {
  formatHash, landingPath, matchPattern, parseHash, routeString, type Location,
} from './router';
import {
  clearSession, loadSession, markExpired, msLeft, nextAfterSignIn, saveSession, withCurrentUser, type Session,
} from './session';
import type { Branch } from './types';

function readLang(): Lang {
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(LANG_KEY);
  } catch {
    stored = null;
  }
  return detectLang(stored, navigator.languages ?? [navigator.language]);
}

function useLocation(): Location {
  const [loc, setLoc] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const on = () => setLoc(parseHash(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return loc;
}

function go(path: string, query: Record<string, string | undefined> = {}, replace = false) {
  const h = formatHash(path, query);
  if (replace) window.location.replace(h);
  else window.location.hash = h;
}

/** #/ : sends the user to its landing page (a manager's branches are asked for). */
function Landing({ session }: { session: Session }) {
  useEffect(() => {
    let cancelled = false;
    const u = session.user;
    (async () => {
      let ids = u.branch_ids ?? [];
      if (u.role === 'branch-manager' && ids.length === 0) {
        try {
          const r = await api.get<{ items: Branch[] }>('/api/branches?limit=2');
          ids = r.items.map((b) => b.id);
        } catch {
          ids = [];
        }
      }
      if (!cancelled) go(landingPath(u.role, u.chain_id, ids), {}, true);
    })();
    return () => {
      cancelled = true;
    };
  }, [session]);
  return <Loading />;
}

function App() {
  const loc = useLocation();
  const [lang, setLangState] = useState<Lang>(readLang);
  const [session, setSession] = useState<Session | null>(() => loadSession());
  // A session stored before this page load is asked for again (GET /api/auth/me):
  // role, chain and branches may have changed since sign-in. Pages wait for it.
  const [checked, setChecked] = useState(() => session === null);
  const locRef = useRef(loc);
  locRef.current = loc;

  useEffect(() => {
    document.documentElement.lang = lang;
    document.documentElement.dir = dirOf(lang);
  }, [lang]);

  const setLang = useCallback((l: Lang) => {
    try {
      localStorage.setItem(LANG_KEY, l);
    } catch {
      /* private mode: the choice lasts for this page only */
    }
    setLangState(l);
  }, []);

  /** Session over (401 or past expires_at): back to sign-in, remembering where we were. */
  const expire = useCallback(() => {
    const cur = locRef.current;
    markExpired();
    setSession(null);
    if (cur.path !== '/login') go('/login', { next: routeString(cur) }, true);
  }, []);

  useEffect(() => {
    configureApi({ token: () => loadSession()?.token ?? null, onUnauthorized: expire });
  }, [expire]);

  useEffect(() => {
    if (checked) return undefined;
    let cancelled = false;
    (async () => {
      try {
        const me = await api.get<unknown>('/api/auth/me');
        const cur = loadSession();
        const fresh = cur && withCurrentUser(cur, me);
        if (!cancelled && fresh) {
          saveSession(fresh);
          setSession(fresh);
        }
      } catch {
        /* a 401 went the expired path; else (network) the cached user stays */
      } finally {
        if (!cancelled) setChecked(true);
      }
    })();
    return () => {
      cancelled = true;
    };
    // once, at start
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // Expiry timer: leave at expires_at even when nothing is being fetched.
  useEffect(() => {
    if (!session) return undefined;
    const ms = Math.min(msLeft(session, Date.now()), 2 ** 31 - 1);
    const id = window.setTimeout(expire, ms);
    return () => window.clearTimeout(id);
  }, [session, expire]);

  const signOut = useCallback(() => {
    clearSession();
    setSession(null);
    go('/login', {}, true);
  }, []);

  const state: AppState = useMemo(() => ({
    lang, setLang, session, signOut, navigate: go,
  }), [lang, setLang, session, signOut]);

  let body: JSX.Element;
  if (loc.path === '/login') {
    body = (
      <Login onSignedIn={(s, expiredUser) => {
        setSession(s);
        setChecked(true);
        const n = nextAfterSignIn(loc.query.next, expiredUser, s.user);
        if (n) {
          const nl = parseHash(n);
          go(nl.path, nl.query, true);
        } else {
          go('/', {}, true);
        }
      }} />
    );
  } else if (!session) {
    body = <Redirect to="/login" query={{ next: loc.path === '/' ? undefined : routeString(loc) }} />;
  } else if (!checked) {
    body = <Loading />;
  } else if (loc.path === '/') {
    body = <Landing session={session} />;
  } else {
    let page: JSX.Element | null = null;
    for (const r of routes) {
      const params = matchPattern(r.pattern, loc.path);
      if (!params) continue;
      const C = r.component;
      page = r.roles && !r.roles.includes(session.user.role)
        ? <NotFound /> : <C key={r.pattern + '|' + JSON.stringify(params)} params={params} query={loc.query} />;
      break;
    }
    body = <Layout path={loc.path}>{page ?? <NotFound />}</Layout>;
  }

  return <AppContext.Provider value={state}>{body}</AppContext.Provider>;
}

function Redirect({ to, query }: { to: string; query?: Record<string, string | undefined> }) {
  useEffect(() => {
    // already there (sign-out moved the hash before this render saw it): keep that URL
    if (parseHash(window.location.hash).path !== to) go(to, query, true);
  }, [to, query]);
  return null;
}

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(<StrictMode><App /></StrictMode>);
}
