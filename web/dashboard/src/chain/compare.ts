// Chain analytics: shaping GET /api/chains/{id}/branch-stats and
// GET /api/chains/{id}/stats for the charts and tables of the chain view.

export interface BranchStat {
  branch_id: string;
  code: string;
  name: string;
  active: boolean;
  rentals: number;
  open: number;
  overdue_rate: number | null;
  average_duration_minutes: number | null;
  carts: number;
  devices: number;
  devices_online: number;
}

export interface BranchStats {
  chain_id: string;
  from: string;
  to: string;
  items: BranchStat[];
}

export type Metric = 'rentals' | 'overdue_rate' | 'average_duration_minutes';

export const METRICS: Metric[] = ['rentals', 'overdue_rate', 'average_duration_minutes'];

function val(s: BranchStat, m: Metric): number | null {
  switch (m) {
    case 'rentals': return s.rentals;
    case 'overdue_rate': return s.overdue_rate === null || s.overdue_rate === undefined ? null : s.overdue_rate * 100;
    case 'average_duration_minutes': return s.average_duration_minutes ?? null;
    default: return null;
  }
}

// Branches ordered by the metric, highest first (null last), then by code.
export function rank(items: BranchStat[], m: Metric): BranchStat[] {
  return items.slice().sort((a, b) => {
    const va = val(a, m), vb = val(b, m);
    if (va === null && vb !== null) return 1;
    if (vb === null && va !== null) return -1;
    return (vb ?? 0) - (va ?? 0) || a.code.localeCompare(b.code);
  });
}

// Chart.js data of a bar chart comparing branches on one metric; a branch
// without a value (no rentals: no rate, no average) is a gap, not a zero.
export function compareChart(items: BranchStat[], m: Metric, label: string): {
  labels: string[];
  datasets: { label: string; data: (number | null)[] }[];
} {
  const ranked = rank(items, m);
  return {
    labels: ranked.map((s) => s.code),
    datasets: [{ label, data: ranked.map((s) => {
      const v = val(s, m);
      return v === null ? null : Math.round(v * 10) / 10;
    }) }],
  };
}

// Chain totals: rentals, open, the overdue rate weighted by rentals (the
// rate of the whole chain, not the mean of branch rates; a branch's rate is
// over its rentals less the cancelled ones, which the API does not count per
// branch, so a chain with many cancellations is slightly off), devices online.
export function totals(items: BranchStat[]): {
  rentals: number; open: number; overdueRate: number | null;
  avgMinutes: number | null; devices: number; devicesOnline: number; carts: number;
} {
  let rentals = 0, open = 0, devices = 0, online = 0, carts = 0;
  let rateW = 0, rateN = 0, durW = 0, durN = 0;
  for (const s of items) {
    rentals += s.rentals;
    open += s.open;
    devices += s.devices;
    online += s.devices_online;
    carts += s.carts;
    if (s.overdue_rate !== null && s.overdue_rate !== undefined && s.rentals > 0) {
      rateW += s.overdue_rate * s.rentals;
      rateN += s.rentals;
    }
    if (s.average_duration_minutes !== null && s.average_duration_minutes !== undefined && s.rentals > 0) {
      durW += s.average_duration_minutes * s.rentals;
      durN += s.rentals;
    }
  }
  return {
    rentals, open, devices, devicesOnline: online, carts,
    overdueRate: rateN > 0 ? rateW / rateN : null,
    avgMinutes: durN > 0 ? durW / durN : null,
  };
}

export interface ChainStats {
  chain_id: string;
  from: string;
  to: string;
  telemetry: {
    total: number;
    by_event_type: Record<string, number>;
    per_day: { date: string; total: number; by_event_type: Record<string, number> }[];
  };
}

// Every UTC day of [from, to) as YYYY-MM-DD (the server lists only days with
// events; the chart shows the empty days as zeros). Capped at 366 days.
export function utcDays(fromIso: string, toIso: string): string[] {
  const out: string[] = [];
  const from = Date.parse(fromIso), to = Date.parse(toIso);
  if (!Number.isFinite(from) || !Number.isFinite(to)) return out;
  let d = Date.UTC(new Date(from).getUTCFullYear(), new Date(from).getUTCMonth(), new Date(from).getUTCDate());
  while (d < to && out.length < 366) {
    out.push(new Date(d).toISOString().slice(0, 10));
    d += 86400000;
  }
  return out;
}

// A stacked per-day chart of telemetry events: the `top` most frequent types
// each a dataset, the rest summed as "other" (label given by the caller).
export function telemetryPerDay(st: ChainStats, top: number, otherLabel: string): {
  labels: string[];
  datasets: { label: string; data: number[] }[];
} {
  const days = utcDays(st.from, st.to);
  const types = Object.entries(st.telemetry.by_event_type)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k]) => k);
  const shown = types.slice(0, top);
  const rest = types.length > top;
  const byDay = new Map(st.telemetry.per_day.map((p) => [p.date, p]));
  const datasets = shown.map((ty) => ({
    label: ty,
    data: days.map((d) => byDay.get(d)?.by_event_type[ty] ?? 0),
  }));
  if (rest)
    datasets.push({
      label: otherLabel,
      data: days.map((d) => {
        const p = byDay.get(d);
        if (!p) return 0;
        return p.total - shown.reduce((n, ty) => n + (p.by_event_type[ty] ?? 0), 0);
      }),
    });
  return { labels: days, datasets };
}

// Colours of the chain view's datasets (distinct in colour-blind pairs:
// blue, orange, teal, purple, grey-olive, red), the n-th dataset the n-th.
export const PALETTE = ['#2563eb', '#ea8c1e', '#0f9f8f', '#7c3aed', '#8d8d5c', '#dc2626'];

export function paint<D extends { label: string }>(data: { labels: string[]; datasets: D[] }):
  { labels: string[]; datasets: (D & { backgroundColor: string; borderColor: string })[] } {
  return {
    labels: data.labels,
    datasets: data.datasets.map((d, i) => ({
      ...d, backgroundColor: PALETTE[i % PALETTE.length], borderColor: PALETTE[i % PALETTE.length],
    })),
  };
}
