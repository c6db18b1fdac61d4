// The telemetry browser's queries: a device's rows (GET /api/telemetry/
// devices/{id}) or the whole chain's (GET /api/telemetry/chains/{id}),
// filtered by event type and event time, newest first, paged by cursor.

import { qs } from '../api';
import type { ChainKey } from './i18n';
import { dateTimeToIso } from './range';

export interface TelemetryRow {
  id: number;
  device_id: string;
  branch_id: string;
  event_type: string;
  event_data: unknown;
  event_data_too_large?: boolean;
  seq: number | null;
  timestamp: string;
  clock_trusted: boolean;
  received_at: string;
}

export interface TelemetryFilter {
  deviceId: string; // "" = every device of the chain
  eventType: string; // "" = every type
  from: string; // datetime-local value or ""
  to: string;
}

export const PAGE = 100;
const TYPE = /^[A-Za-z0-9_.:-]{1,50}$/;

// The path of one page, or an i18n key of what is wrong with the filter.
export function telemetryPath(chainId: string, f: TelemetryFilter, cursor: string | null):
  { path: string } | { error: ChainKey; field: string } {
  const from = dateTimeToIso(f.from), to = dateTimeToIso(f.to);
  if (from === undefined) return { error: 'chain.err.dateTime', field: 'from' };
  if (to === undefined) return { error: 'chain.err.dateTime', field: 'to' };
  if (from && to && Date.parse(from) >= Date.parse(to)) return { error: 'chain.err.rangeOrder', field: 'to' };
  const type = f.eventType.trim();
  if (type !== '' && !TYPE.test(type)) return { error: 'chain.err.eventType', field: 'type' };
  const base = f.deviceId
    ? `/api/telemetry/devices/${encodeURIComponent(f.deviceId)}`
    : `/api/telemetry/chains/${encodeURIComponent(chainId)}`;
  return { path: base + qs({ from, to, event_type: type, limit: PAGE, cursor }) };
}

// A one-line preview of event_data: compact JSON cut at `max` characters.
export function preview(row: Pick<TelemetryRow, 'event_data' | 'event_data_too_large'>, max = 120): string {
  if (row.event_data_too_large) return '…';
  if (row.event_data === null || row.event_data === undefined) return '';
  let s: string;
  try {
    s = JSON.stringify(row.event_data);
  } catch {
    return '';
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

// Rows of a new page appended to those shown, without repeating an id (a row
// may be seen twice when the first page was reloaded meanwhile).
export function appendPage(shown: TelemetryRow[], page: TelemetryRow[]): TelemetryRow[] {
  const seen = new Set(shown.map((r) => r.id));
  return shown.concat(page.filter((r) => !seen.has(r.id)));
}
