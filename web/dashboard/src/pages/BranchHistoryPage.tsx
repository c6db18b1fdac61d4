// #/branches/{id}/history?from=&to=: rentals started in the local days from..to
// (both included), optionally of one phone (exact, as the customer gave it; kept in the
// page's state, never in the URL: not in the browser's history, nor in a sign-in's
// `next`), newest first,
// a page at a time; CSV export of the whole search (all pages, at most 10 000 rows),
// built here in the browser. Phones are shown as the server sends them: masked for the
// roles that may not see them (docs/CLOUD.md "Phone masking").
import { useEffect, useState, type FormEvent } from 'react';
import { api, getAll, qs, type Page } from '../api';
import { ErrorBox, Loading, Ltr, useLoad } from '../components/common';
import { useApp, useT } from '../context';
import { RentalHead } from '../components/RentalHead';
import { buildCsv, csvFileName } from '../csv';
import { dayRange, isDate, lastDays } from '../dates';
import { downloadText } from '../download';
import { fmtDateTime } from '../format';
import type { Key } from '../i18n';
import { branchPath, type RouteProps } from '../router';
import type { Branch, Rental } from '../types';
import { BranchFrame } from './BranchHeader';

export const EXPORT_MAX = 10000;

export function BranchHistoryPage({ params, query }: RouteProps) {
  return (
    <BranchFrame id={params.id} tab="history">
      {(b) => <HistoryBody branch={b} query={query} />}
    </BranchFrame>
  );
}

function HistoryBody({ branch, query }: { branch: Branch; query: Record<string, string> }) {
  const t = useT();
  const { lang, navigate } = useApp();
  const def = lastDays(7);
  const from = isDate(query.from) ? query.from : def.from;
  const to = isDate(query.to) ? query.to : def.to;
  // a phone in the URL (a link from before it was kept out) is taken once and removed
  const [phone, setSearchPhone] = useState(() => (query.phone ?? '').trim());
  const [fFrom, setFrom] = useState(from);
  const [fTo, setTo] = useState(to);
  const [fPhone, setPhone] = useState(phone);
  const urlPhone = query.phone !== undefined;
  useEffect(() => {
    if (urlPhone) navigate(branchPath(branch.id, 'history'), { from: query.from, to: query.to }, true);
  }, [urlPhone, navigate, branch.id, query.from, query.to]);
  const [formError, setFormError] = useState<string | null>(null);
  const [extra, setExtra] = useState<{ items: Rental[]; next: string | null } | null>(null);
  const [more, setMore] = useState(false);
  const [exportMsg, setExportMsg] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);

  const base = '/api/branches/' + encodeURIComponent(branch.id) + '/rentals/history';
  const range = from <= to ? dayRange(from, to) : null;
  const params = range ? { from: range.from, to: range.to, phone: phone || undefined } : null;
  const l = useLoad(async () => {
    setExtra(null);
    if (!params) return { items: [], next_cursor: null } as Page<Rental>;
    return api.get<Page<Rental>>(base + qs({ ...params, limit: 100 }));
  }, [branch.id, from, to, phone]);

  function submit(e: FormEvent) {
    e.preventDefault();
    if (!isDate(fFrom) || !isDate(fTo) || fFrom > fTo) {
      setFormError(t('history.bad_range'));
      return;
    }
    setFormError(null);
    setExportMsg(null);
    const p = fPhone.trim();
    if (fFrom === from && fTo === to && p === phone) l.reload();
    setSearchPhone(p);
    if (fFrom !== from || fTo !== to) navigate(branchPath(branch.id, 'history'), { from: fFrom, to: fTo }, true);
  }

  const items = [...(l.data?.items ?? []), ...(extra?.items ?? [])];
  const next = extra ? extra.next : l.data?.next_cursor ?? null;

  async function loadMore() {
    if (!next || !params) return;
    setMore(true);
    try {
      const p = await api.get<Page<Rental>>(base + qs({ ...params, limit: 100, cursor: next }));
      setExtra((x) => ({ items: [...(x?.items ?? []), ...p.items], next: p.next_cursor }));
    } finally {
      setMore(false);
    }
  }

  async function exportCsv() {
    if (!params) return;
    setExporting(true);
    setExportMsg(t('history.exporting'));
    try {
      const r = await getAll<Rental>(base, params, EXPORT_MAX);
      const header = ['rental_id', 'cart_number', 'phone', 'status', 'start_time', 'expected_return', 'actual_return',
        'duration_minutes', 'notes'];
      const rows = r.items.map((x) => [x.id, x.cart_number, x.phone, x.status, x.start_time, x.expected_return,
        x.actual_return, x.duration_minutes, x.notes]);
      downloadText(csvFileName(branch.code, from, to), buildCsv(header, rows));
      setExportMsg(r.truncated ? t('history.export.capped', { max: EXPORT_MAX }) : t('history.export.done', { count: r.items.length }));
    } catch (e) {
      setExportMsg(t('app.error', { message: e instanceof Error ? e.message : String(e) }));
    } finally {
      setExporting(false);
    }
  }

  const masked = items.some((r) => r.phone_masked);
  return (
    <div className="history">
      <form className="filters" onSubmit={submit}>
        <label>{t('history.from')}
          <input type="date" data-testid="history-from" value={fFrom} max={fTo || undefined} onChange={(e) => setFrom(e.target.value)} />
        </label>
        <label>{t('history.to')}
          <input type="date" data-testid="history-to" value={fTo} min={fFrom || undefined} onChange={(e) => setTo(e.target.value)} />
        </label>
        <label>{t('history.phone')}
          <input type="tel" data-testid="history-phone" dir="ltr" inputMode="tel" placeholder={t('history.phone.hint')}
            value={fPhone} onChange={(e) => setPhone(e.target.value)} />
        </label>
        <button type="submit" className="btn btn-primary" data-testid="history-search">{t('history.search')}</button>
        <button type="button" className="btn" data-testid="history-export" disabled={exporting || !params}
          onClick={() => void exportCsv()}>{t('history.export')}</button>
      </form>
      {formError && <p className="notice error" role="alert">{formError}</p>}
      {exportMsg && <p className="notice info" data-testid="history-export-message" role="status">{exportMsg}</p>}
      {!range && <p className="notice error">{t('history.bad_range')}</p>}
      {l.error ? <ErrorBox error={l.error} onRetry={l.reload} /> : l.data === undefined ? <Loading /> : (
        <>
          <p className="muted">{t('history.count', { count: items.length + (next ? '+' : '') })}</p>
          {masked && <p className="muted small">{t('rentals.masked')}</p>}
          <div className="table-wrap">
            <table className="data" data-testid="rentals-history">
              <RentalHead history />
              <tbody>
                {items.length === 0 && <tr><td colSpan={7} className="empty">{t('history.empty')}</td></tr>}
                {items.map((r) => (
                  <tr key={r.id} data-testid={'history-' + r.id} className={r.status === 'overdue' ? 'overdue' : undefined}>
                    <td className="num strong">{r.cart_number}</td>
                    <td><Ltr className="phone">{r.phone}</Ltr></td>
                    <td><span className={'pill rs-' + r.status}>{t(('rental.status.' + r.status) as Key)}</span></td>
                    <td>{fmtDateTime(r.start_time, lang)}</td>
                    <td>{fmtDateTime(r.expected_return, lang)}</td>
                    <td>{fmtDateTime(r.actual_return, lang)}</td>
                    <td className="num">{r.duration_minutes ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {next && (
            <button type="button" className="btn more" data-testid="history-more" disabled={more} onClick={() => void loadMore()}>
              {t('history.more')}
            </button>
          )}
        </>
      )}
    </div>
  );
}
