// #/branches/{id}/analytics?days=7|30|90: the branch's rentals over the last days —
// big figures (rentals, overdue rate, utilisation, average duration) and charts: rentals
// per local hour of the day and per local day (folded here from the API's UTC per_hour),
// the duration distribution, and lock faults per cart.
import { useMemo } from 'react';
import { api, ApiError, qs } from '../api';
import { Chart, COLORS } from '../components/Chart';
import { ErrorBox, Loading, useLoad } from '../components/common';
import { useApp, useT } from '../context';
import { dayRange, lastDays } from '../dates';
import { fmtNumber, fmtPercent } from '../format';
import { foldDays, foldHoursOfDay, localZone } from '../hours';
import { locale } from '../i18n';
import { branchPath, type RouteProps } from '../router';
import type { Branch, Faults, RentalStats } from '../types';
import { BranchFrame } from './BranchHeader';

const RANGES = [7, 30, 90] as const;

export function BranchAnalyticsPage({ params, query }: RouteProps) {
  return (
    <BranchFrame id={params.id} tab="analytics">
      {(b) => <AnalyticsBody branch={b} days={RANGES.find((d) => String(d) === query.days) ?? 30} />}
    </BranchFrame>
  );
}

async function loadFaults(branchId: string, range: { from: string; to: string }): Promise<Faults | null> {
  try {
    return await api.get<Faults>('/api/branches/' + encodeURIComponent(branchId) + '/faults' + qs(range));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null; // not on this server yet
    throw e;
  }
}

function AnalyticsBody({ branch, days }: { branch: Branch; days: number }) {
  const t = useT();
  const { lang, navigate } = useApp();
  const dates = lastDays(days);
  const range = dayRange(dates.from, dates.to);
  const l = useLoad(async () => {
    const [stats, faults] = await Promise.all([
      api.get<RentalStats>('/api/branches/' + encodeURIComponent(branch.id) + '/rentals/stats' + qs(range)),
      loadFaults(branch.id, range),
    ]);
    return { stats, faults };
  }, [branch.id, days]);

  return (
    <div className="analytics" data-testid="analytics">
      <div className="filters">
        <span className="muted">{t('analytics.range')}</span>
        <div className="seg" role="group">
          {RANGES.map((d) => (
            <button key={d} type="button" className={'btn' + (d === days ? ' active' : '')} aria-pressed={d === days}
              data-testid={'analytics-days-' + d}
              onClick={() => navigate(branchPath(branch.id, 'analytics'), { days: String(d) }, true)}>
              {t(('analytics.days' + d) as 'analytics.days7')}
            </button>
          ))}
        </div>
        <span className="muted small">{t('analytics.local_time', { zone: localZone() })}</span>
      </div>
      {l.error ? <ErrorBox error={l.error} onRetry={l.reload} /> : !l.data ? <Loading /> : (
        <AnalyticsView stats={l.data.stats} faults={l.data.faults} lang={lang} />
      )}
    </div>
  );
}

function AnalyticsView({ stats, faults, lang }: { stats: RentalStats; faults: Faults | null; lang: 'en' | 'he' }) {
  const t = useT();
  const hours = useMemo(() => stats.per_hour ? foldHoursOfDay(stats.per_hour) : null, [stats]);
  const perDay = useMemo(() => {
    if (stats.per_hour) return foldDays(stats.per_hour, stats.from, stats.to);
    // an older server: its UTC days
    return stats.per_day.map((d) => ({ day: d.date, count: d.started }));
  }, [stats]);
  const dayFmt = new Intl.DateTimeFormat(locale(lang), { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const rate = stats.overdue_rate;
  const util = stats.utilisation?.ratio;

  return (
    <>
      <div className="stats">
        <div className="stat">
          <div className="stat-n" data-testid="stat-total">{fmtNumber(stats.counts.total, lang)}</div>
          <div className="stat-l">{t('analytics.total')}</div>
        </div>
        <div className={'stat' + (rate !== null && rate > 0.1 ? ' bad' : '')}>
          <div className="stat-n" data-testid="stat-overdue-rate">{fmtPercent(rate, lang, 1)}</div>
          <div className="stat-l">{t('analytics.overdue_rate')}</div>
        </div>
        <div className="stat">
          <div className="stat-n" data-testid="stat-utilisation">{fmtPercent(util, lang, 1)}</div>
          <div className="stat-l">{t('analytics.utilisation')}{util === undefined ? ' · ' + t('analytics.not_available') : ''}</div>
        </div>
        <div className="stat">
          <div className="stat-n" data-testid="stat-avg-duration">
            {stats.average_duration_minutes === null ? '—' : fmtNumber(stats.average_duration_minutes, lang)}
            {stats.average_duration_minutes !== null && <span className="stat-unit">{t('analytics.minutes', { value: '' }).trim()}</span>}
          </div>
          <div className="stat-l">{t('analytics.avg_duration')}</div>
        </div>
      </div>
      <div className="charts">
        <section className="card">
          <h3>{t('analytics.per_hour')}</h3>
          {hours ? (
            <Chart testId="chart-per-hour" type="bar" label={t('analytics.per_hour')}
              data={{ labels: hours.map((_, h) => String(h).padStart(2, '0')), datasets: [{ label: t('analytics.rentals'), data: hours, backgroundColor: COLORS.primary }] }}
              options={{ plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }} />
          ) : <p className="muted" data-testid="chart-per-hour">{t('analytics.not_available')}</p>}
        </section>
        <section className="card">
          <h3>{t('analytics.per_day')}</h3>
          <Chart testId="chart-per-day" type="bar" label={t('analytics.per_day')}
            data={{ labels: perDay.map((d) => dayFmt.format(new Date(d.day + 'T00:00:00Z'))), datasets: [{ label: t('analytics.rentals'), data: perDay.map((d) => d.count), backgroundColor: COLORS.secondary }] }}
            options={{ plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }} />
        </section>
        <section className="card">
          <h3>{t('analytics.durations')}</h3>
          {stats.durations ? (
            <Chart testId="chart-durations" type="bar" label={t('analytics.durations')}
              data={{
                labels: stats.durations.buckets.map((b) => b.max_minutes === null ? t('analytics.bucket.open', { min: b.min_minutes })
                  : t('analytics.bucket', { min: b.min_minutes, max: b.max_minutes })),
                datasets: [{ label: t('analytics.rentals'), data: stats.durations.buckets.map((b) => b.count), backgroundColor: COLORS.rented }],
              }}
              options={{ plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }} />
          ) : <p className="muted" data-testid="chart-durations">{t('analytics.not_available')}</p>}
        </section>
        <section className="card">
          <h3>{t('analytics.faults')}</h3>
          {faults === null ? <p className="muted" data-testid="chart-faults">{t('analytics.not_available')}</p> : (
            <>
              <Chart testId="chart-faults" type="bar" label={t('analytics.faults')}
                data={{
                  labels: faults.items.map((f) => t('cart.title', { number: f.cart_number })),
                  datasets: [
                    { label: t('analytics.faults.fault'), data: faults.items.map((f) => f.lock_fault), backgroundColor: COLORS.fault },
                    { label: t('analytics.faults.offline'), data: faults.items.map((f) => f.lock_offline), backgroundColor: COLORS['board-offline'] },
                  ],
                }}
                options={{ scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }} />
              {faults.items.length === 0 && <p className="muted">{t('analytics.faults.none')}</p>}
            </>
          )}
        </section>
      </div>
    </>
  );
}
