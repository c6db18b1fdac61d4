// Sign-in (#/login?next=<route>): POST /api/auth/login, keep the token, go on to `next`
// (only for the user whose session expired in this tab, or when none did) or the role's
// landing page.
import { useState, type FormEvent } from 'react';
import { api, ApiError } from '../api';
import { useApp, useT } from '../context';
import { peekExpiredFlag, saveSession, takeExpiredUser, type Session, type SessionUser } from '../session';

interface LoginResponse {
  token: string;
  expires_at: string;
  user: SessionUser;
}

export function Login({ onSignedIn }: {
  /** expiredUser: whose session expired in this tab (takeExpiredUser), null when none */
  onSignedIn: (s: Session, expiredUser: string | null) => void;
}) {
  const t = useT();
  const { lang, setLang } = useApp();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [expired] = useState(() => peekExpiredFlag());

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api.post<LoginResponse>('/api/auth/login', { email: email.trim(), password });
      const s: Session = { token: r.token, expires_at: r.expires_at, user: r.user };
      const expiredUser = takeExpiredUser();
      saveSession(s);
      setPassword('');
      onSignedIn(s, expiredUser);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) setError(t('login.rate_limited', { message: err.message }));
      else if (err instanceof ApiError && (err.status === 401 || err.status === 400)) setError(t('login.error'));
      else setError(t('login.unavailable'));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="login-wrap">
      <form className="login card" onSubmit={submit} noValidate>
        <div className="login-head">
          <h1>{t('app.title')}</h1>
          <button type="button" className="btn btn-ghost" data-testid="lang-toggle"
            aria-label={t('lang.toggle.label')} onClick={() => setLang(lang === 'he' ? 'en' : 'he')}>
            {t('lang.toggle')}
          </button>
        </div>
        <h2>{t('login.title')}</h2>
        {expired && <p className="notice warn" data-testid="login-expired" role="status">{t('login.expired')}</p>}
        <label>
          <span>{t('login.email')}</span>
          <input data-testid="login-email" type="email" autoComplete="username" dir="ltr" required
            value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          <span>{t('login.password')}</span>
          <input data-testid="login-password" type="password" autoComplete="current-password" dir="ltr" required
            value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && <p className="notice error" data-testid="login-error" role="alert">{error}</p>}
        <button type="submit" className="btn btn-primary btn-block" data-testid="login-submit" disabled={busy}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
      </form>
    </div>
  );
}
