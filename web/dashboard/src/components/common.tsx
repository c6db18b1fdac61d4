// Small shared pieces: loading, error, not found, and a hook to load API data.
import { useCallback, useEffect, useRef, useState, type ReactNode } from 'react';
import { ApiError } from '../api';
import { useApp, useT } from '../context';

/**
 * A left-to-right token (phone, masked phone, id, code, MAC, e-mail) kept whole and in
 * order inside right-to-left text: `<bdi dir="ltr">`, so that Hebrew pages do not show
 * `+972***567` as `567***972+` (the attribute holds without CSS, and in a copy).
 */
export function Ltr({ children, className, testId }: { children: ReactNode; className?: string; testId?: string }) {
  return <bdi dir="ltr" className={className} data-testid={testId}>{children}</bdi>;
}

export function Loading() {
  const t = useT();
  return <div className="loading" role="status">{t('app.loading')}</div>;
}

export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const t = useT();
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="error-box" role="alert">
      <span>{t('app.error', { message })}</span>
      {onRetry && <button type="button" className="btn" onClick={onRetry}>{t('app.retry')}</button>}
    </div>
  );
}

/** The "not found / not allowed" page: the same for both, so nothing leaks. */
export function NotFound() {
  const t = useT();
  const { navigate } = useApp();
  return (
    <section className="page not-found" data-testid="not-found">
      <h1>{t('notfound.title')}</h1>
      <p>{t('notfound.text')}</p>
      <button type="button" className="btn" onClick={() => navigate('/')}>{t('notfound.home')}</button>
    </section>
  );
}

/** True when an error means "not there or not yours" (404, or 403 on a read). */
export function isNotFound(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 404 || e.status === 403);
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `fn()` when `deps` change and on reload(); keeps the last data while reloading
 * (no flicker on live refreshes); answers of an older call are dropped.
 */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const gen = useRef(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const run = useCallback(() => {
    const my = ++gen.current;
    setLoading(true);
    fnRef.current().then(
      (d) => {
        if (my !== gen.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (my !== gen.current) return;
        setError(e);
        setLoading(false);
      });
  }, []);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(() => {
    setData(undefined);
    run();
  }, deps);
  return { data, error, loading, reload: run };
}

/** Standard rendering of a Loaded: loading, not found, error, else children(data). */
export function Show<T>({ l, children }: { l: Loaded<T>; children: (d: T) => JSX.Element }) {
  if (l.data !== undefined) return children(l.data);
  if (l.error) return isNotFound(l.error) ? <NotFound /> : <ErrorBox error={l.error} onRetry={l.reload} />;
  return <Loading />;
}
