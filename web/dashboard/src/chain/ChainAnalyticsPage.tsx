// #/chains/{id}/analytics — chain-wide figures and comparisons between
// branches (GET /api/chains/{id}/branch-stats) and telemetry per day
// (GET /api/chains/{id}/stats), charts by the shell's Chart wrapper.

import { FormEvent, useMemo, useState } from 'react';
import { Chart, NotFound, RouteProps, api, fmtNumber, fmtPercent, isNotFound, qs, useActor, useApp, useLoad, useT } from './shell';
import { BranchStats, ChainStats, METRICS, Metric, compareChart, paint, rank, telemetryPerDay, totals } from './compare';
import { dayRange, lastDays } from './range';
import { ChainHeader, ErrorLine, useChain } from './ui';

const STACKED = { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } };

export function ChainAnalyticsPage({ params }: RouteProps) {
  const chainId = params.id;
  const t = useT();
  const { lang } = useApp();
  const pct = (v: number | null) => fmtPercent(v, lang, 1);
  const mins = (v: number | null) => fmtNumber(v, lang, 0);
  const actor = useActor();
  const chain = useChain(chainId);
  const initial = lastDays(30, new Date());
  const [from, setFrom] = useState(initial.from);
  const [to, setTo] = useState(initial.to);
  const [range, setRange] = useState(() => dayRange(initial.from, initial.to));
  const [bad, setBad] = useState(false);
  const [metric, setMetric] = useState<Metric>('rentals');
  const q = qs({ from: range?.from, to: range?.to });
  const cid = encodeURIComponent(chainId);
  const bstats = useLoad(() => api.get<BranchStats>(`/api/chains/${cid}/branch-stats${q}`), [cid, q]);
  const cstats = useLoad(() => api.get<ChainStats>(`/api/chains/${cid}/stats${q}`), [cid, q]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    const r = dayRange(from, to);
    setBad(!r);
    if (r) setRange(r);
  };
  const preset = (n: number) => {
    const r = lastDays(n, new Date());
    setFrom(r.from);
    setTo(r.to);
    setBad(false);
    setRange(dayRange(r.from, r.to));
  };

  const items = bstats.data?.items ?? [];
  const sum = useMemo(() => totals(items), [items]);
  const compare = useMemo(() => paint(compareChart(items, metric, t(`chain.metric.${metric}`))), [items, metric, t]);
  const perDay = useMemo(() => cstats.data ? paint(telemetryPerDay(cstats.data, 5, t('chain.analytics.other'))) : null, [cstats.data, t]);

  const rtl = lang === 'he';
  // right to left: the bars grow from the start side, their labels there
  const compareOptions = useMemo(() => ({
    indexAxis: 'y' as const,
    plugins: { legend: { display: false } },
    scales: { x: { beginAtZero: true, reverse: rtl }, y: { position: rtl ? 'right' as const : 'left' as const } },
  }), [rtl]);

  if (isNotFound(chain.error) || isNotFound(bstats.error)) return <NotFound />;

  return (
    <section className="page cwc-page" data-testid="chain-analytics">
      <ChainHeader chain={chain.data} chainId={chainId} tab="analytics" actor={actor} />
      <form className="cwc-toolbar" onSubmit={apply} noValidate>
        <label className="cwc-field cwc-field-inline">
          <span className="cwc-label">{t('chain.from')}</span>
          <input type="date" value={from} onChange={(e) => setFrom(e.target.value)} data-testid="chain-analytics-from" />
        </label>
        <label className="cwc-field cwc-field-inline">
          <span className="cwc-label">{t('chain.to')}</span>
          <input type="date" value={to} onChange={(e) => setTo(e.target.value)} data-testid="chain-analytics-to" />
        </label>
        <button type="submit" className="btn btn-primary" data-testid="chain-analytics-apply">{t('chain.show')}</button>
        {[7, 30, 90].map((n) => (
          <button key={n} type="button" className="btn" onClick={() => preset(n)}>{t('chain.lastDays', { n })}</button>
        ))}
      </form>
      {bad ? <p className="notice error" role="alert">{t('chain.err.range')}</p> : null}
      <ErrorLine error={bstats.error ?? cstats.error} />

      <div className="cwc-figures">
        <div className="card cwc-figure" data-testid="chain-stat-rentals"><span>{t('chain.metric.rentals')}</span><strong>{sum.rentals}</strong></div>
        <div className="card cwc-figure" data-testid="chain-stat-open"><span>{t('chain.analytics.open')}</span><strong>{sum.open}</strong></div>
        <div className="card cwc-figure" data-testid="chain-stat-overdue-rate"><span>{t('chain.metric.overdue_rate')}</span><strong>{pct(sum.overdueRate)}</strong></div>
        <div className="card cwc-figure" data-testid="chain-stat-avg-duration"><span>{t('chain.metric.average_duration_minutes')}</span><strong>{mins(sum.avgMinutes)}</strong></div>
        <div className="card cwc-figure" data-testid="chain-stat-devices"><span>{t('chain.analytics.devicesOnline')}</span><strong dir="ltr">{sum.devicesOnline} / {sum.devices}</strong></div>
      </div>

      <div className="card">
        <div className="cwc-toolbar">
          <h2>{t('chain.analytics.compare')}</h2>
          <div className="cwc-seg" role="group" aria-label={t('chain.analytics.metric')}>
            {METRICS.map((m) => (
              <button key={m} type="button" aria-pressed={metric === m} className={metric === m ? 'btn cwc-on' : 'btn'}
                      onClick={() => setMetric(m)} data-testid={`compare-metric-${m}`}>{t(`chain.metric.${m}`)}</button>
            ))}
          </div>
        </div>
        <Chart type="bar" data={compare} testId="chart-branch-compare" label={t('chain.analytics.compare')}
               height={Math.max(220, 48 * items.length + 60)}
               options={compareOptions} />
      </div>

      <div className="table-wrap">
        <table className="data" data-testid="branch-stats-table">
          <thead>
            <tr>
              <th>{t('chain.f.branch')}</th><th>{t('chain.metric.rentals')}</th><th>{t('chain.analytics.open')}</th>
              <th>{t('chain.metric.overdue_rate')}</th><th>{t('chain.metric.average_duration_minutes')}</th>
              <th>{t('chain.analytics.carts')}</th><th>{t('chain.analytics.devicesOnline')}</th>
            </tr>
          </thead>
          <tbody>
            {rank(items, metric).map((s) => (
              <tr key={s.branch_id} data-testid={`branch-stats-${s.code}`} className={s.active ? '' : 'cwc-row-off'}>
                <td><a href={`#/branches/${s.branch_id}/analytics`}><span dir="ltr">{s.code}</span> — {s.name}</a></td>
                <td className="num">{s.rentals}</td>
                <td className="num">{s.open}</td>
                <td className="num">{pct(s.overdue_rate)}</td>
                <td className="num">{mins(s.average_duration_minutes)}</td>
                <td className="num">{s.carts}</td>
                <td className="num"><span dir="ltr">{s.devices_online} / {s.devices}</span></td>
              </tr>
            ))}
            {bstats.data && items.length === 0 ? (
              <tr><td colSpan={7} className="cwc-empty">{t('chain.branches.none')}</td></tr>) : null}
          </tbody>
        </table>
      </div>

      <div className="card">
        <h2>{t('chain.analytics.telemetry', { n: cstats.data?.telemetry.total ?? 0 })}</h2>
        <Chart type="bar" data={perDay ?? { labels: [], datasets: [] }} testId="chart-chain-telemetry"
               label={t('chain.analytics.telemetry', { n: cstats.data?.telemetry.total ?? 0 })}
               options={STACKED} />
      </div>
    </section>
  );
}
