// Small building blocks of the chain view: list loading, error lines,
// dialogs, form fields, the chain's header and tab bar.

import { FormEvent, ReactNode, useEffect, useRef, useState } from 'react';
import {
  ApiError, Chain, Key, SessionUser, api, fmtDateTime, getAll, useApp, useLoad, useT, type Loaded,
} from './shell';
import type { Errors } from './validate';
import './chain.css';

// Every item of a short list (chains, branches, users: one page of 200 or a few).
export async function listAll<I>(path: string, params: Record<string, string | number | undefined> = {},
  max = 2000): Promise<I[]> {
  return (await getAll<I>(path, params, max)).items;
}

// An API error in the user's language: the server's message names the field;
// 409/403 get a sentence of ours first; network and server errors ours only.
export function errorText(t: (k: Key, v?: Record<string, string | number>) => string, e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 409) return `${t('chain.err.conflict')} (${e.message})`;
    if (e.status === 403) return `${t('chain.err.forbidden')} (${e.message})`;
    if (e.status === 0 || e.status >= 500) return t('chain.err.server');
    return e.message;
  }
  return t('chain.err.server');
}

export function ErrorLine({ error, testId }: { error: unknown; testId?: string }) {
  const t = useT();
  if (!error) return null;
  return <p className="notice error" role="alert" data-testid={testId}>{errorText(t, error)}</p>;
}

export function Dialog({ title, onClose, children, testId }: {
  title: string; onClose: () => void; children: ReactNode; testId?: string;
}) {
  const t = useT();
  const ref = useRef<HTMLDivElement>(null);
  const close = useRef(onClose);
  close.current = onClose;
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    ref.current?.querySelector<HTMLElement>('input, select, textarea, button:not(.cwc-x)')?.focus();
    const onKey = (e: KeyboardEvent) => { if (e.key === 'Escape') close.current(); };
    window.addEventListener('keydown', onKey);
    return () => { window.removeEventListener('keydown', onKey); prev?.focus?.(); };
  }, []);
  return (
    <div className="cwc-overlay" onMouseDown={(e) => { if (e.target === e.currentTarget) onClose(); }}>
      <div className="cwc-dialog" role="dialog" aria-modal="true" aria-label={title} ref={ref} data-testid={testId}>
        <div className="cwc-dialog-head">
          <h2>{title}</h2>
          <button type="button" className="btn btn-ghost cwc-x" onClick={onClose} aria-label={t('chain.close')}>✕</button>
        </div>
        {children}
      </div>
    </div>
  );
}

export function Field({ label, error, children, hint }: {
  label: string; error?: Key; children: ReactNode; hint?: string;
}) {
  const t = useT();
  return (
    <label className={`cwc-field${error ? ' cwc-field-bad' : ''}`}>
      <span className="cwc-label">{label}</span>
      {children}
      {hint && !error ? <span className="cwc-hint">{hint}</span> : null}
      {error ? <span className="cwc-field-error">{t(error)}</span> : null}
    </label>
  );
}

export type Tab = 'branches' | 'devices' | 'users' | 'analytics' | 'telemetry';

export function ChainTabs({ chainId, current, canUsers }: { chainId: string; current: Tab; canUsers: boolean }) {
  const t = useT();
  const tabs: [Tab, string][] = [
    ['branches', ''], ['devices', '/devices'], ['users', '/users'],
    ['analytics', '/analytics'], ['telemetry', '/telemetry'],
  ];
  const id = encodeURIComponent(chainId);
  return (
    <nav className="tabs" aria-label={t('chain.tabs')}>
      {tabs.filter(([k]) => k !== 'users' || canUsers).map(([k, suffix]) => (
        <a key={k} href={`#/chains/${id}${suffix}`} className={k === current ? 'tab active' : 'tab'}
           aria-current={k === current ? 'page' : undefined} data-testid={`chain-tab-${k}`}>
          {t(`chain.tab.${k}`)}
        </a>
      ))}
    </nav>
  );
}

// The chain of the page ('' = none: resolves to null without a request).
export function useChain(chainId: string): Loaded<Chain | null> {
  return useLoad(() => chainId
    ? api.get<Chain>(`/api/chains/${encodeURIComponent(chainId)}`)
    : Promise.resolve(null), [chainId]);
}

export function adminsChain(a: SessionUser | null, chainId: string): boolean {
  return !!a && (a.role === 'platform-admin' || (a.role === 'chain-admin' && a.chain_id === chainId));
}

// The chain's header: back to all chains (platform admin), its name, the tabs.
export function ChainHeader({ chain, chainId, tab, actor }: {
  chain: Chain | null | undefined; chainId: string; tab: Tab; actor: SessionUser | null;
}) {
  const t = useT();
  return (
    <header className="cwc-head">
      {actor?.role === 'platform-admin' ? <a className="cwc-back" href="#/chains">{t('chain.allChains')}</a> : null}
      <h1>
        {chain ? chain.name : '…'}
        {chain && !chain.active ? <span className="badge cwc-bad">{t('chain.inactive')}</span> : null}
      </h1>
      <ChainTabs chainId={chainId} current={tab} canUsers={adminsChain(actor, chainId)} />
    </header>
  );
}

// A time in the user's language and time zone ('—' for none).
export function useFmtTime(): (iso: string | null | undefined) => string {
  const { lang } = useApp();
  return (iso) => fmtDateTime(iso, lang);
}

// A dialog form's sending: validate (field errors shown, nothing sent while
// there are any), then send; busy while it runs; the error line on failure
// (the dialog stays open), onDone on success.
export function useSubmit(validate: () => Errors, send: () => Promise<unknown>, onDone: () => void): {
  errs: Errors; busy: boolean; fail: string | null; submit: (e: FormEvent) => void;
} {
  const t = useT();
  const [errs, setErrs] = useState<Errors>({});
  const [busy, setBusy] = useState(false);
  const [fail, setFail] = useState<string | null>(null);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const v = validate();
    setErrs(v);
    if (Object.keys(v).length) return;
    setBusy(true);
    setFail(null);
    send().then(onDone, (err: unknown) => {
      setFail(errorText(t, err));
      setBusy(false);
    });
  };
  return { errs, busy, fail, submit };
}
