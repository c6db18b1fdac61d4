// The one Chart.js wrapper: a canvas in a box of fixed height, the chart created once
// and updated in place when its data or options change, destroyed on unmount.
// Only the controllers and elements the dashboard uses are registered (tree-shaken).
import { useEffect, useRef } from 'react';
import {
  ArcElement, BarController, BarElement, CategoryScale, Chart as ChartJS, DoughnutController, Filler,
  Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
  type ChartData, type ChartOptions, type ChartType,
} from 'chart.js';
import { useApp } from '../context';

ChartJS.register(BarController, BarElement, LineController, LineElement, PointElement, DoughnutController,
  ArcElement, CategoryScale, LinearScale, Tooltip, Legend, Filler);
ChartJS.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans Hebrew", Arial, sans-serif';
ChartJS.defaults.font.size = 14;

export interface ChartProps<T extends ChartType = ChartType> {
  type: T;
  data: ChartData<T>;
  options?: ChartOptions<T>;
  /** data-testid of the box holding the canvas */
  testId?: string;
  height?: number;
  /** accessible description of the chart */
  label?: string;
}

export function Chart<T extends ChartType>({ type, data, options, testId, height = 260, label }: ChartProps<T>) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<ChartJS | null>(null);
  const { lang } = useApp();
  const rtl = lang === 'he';

  useEffect(() => {
    if (!canvas.current) return undefined;
    const c = new ChartJS(canvas.current, { type: type as ChartType, data: { datasets: [] }, options: {} });
    chart.current = c as unknown as ChartJS;
    return () => {
      c.destroy();
      chart.current = null;
    };
  }, [type]);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    const base = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      locale: rtl ? 'he-IL' : 'en-GB',
      plugins: { legend: { rtl, display: true }, tooltip: { rtl } },
    };
    c.data = data as unknown as ChartData;
    c.options = merge(base, (options ?? {}) as Record<string, unknown>) as ChartOptions;
    c.update();
  }, [data, options, rtl]);

  return (
    <div className="chart-box" style={{ height }} data-testid={testId}>
      <canvas ref={canvas} role="img" aria-label={label} />
    </div>
  );
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = av && v && typeof av === 'object' && typeof v === 'object' && !Array.isArray(v)
      ? merge(av as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** State colours shared by the grid legend and the charts (the same as app.css). */
export const COLORS = {
  available: '#1f9d55',
  rented: '#2563eb',
  overdue: '#dc2626',
  'awaiting-return': '#d97706',
  maintenance: '#7c3aed',
  fault: '#ea580c',
  'board-offline': '#374151',
  offline: '#9ca3af',
  primary: '#2563eb',
  secondary: '#0d9488',
} as const;
