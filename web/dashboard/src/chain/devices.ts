// Device state as the chain view shows it: online state, heartbeat age and a
// health summary from the `health` object the edge reports (heartbeat and
// MQTT telemetry; src/edge/cw_edge_sync.c and src/cloudsync/cw_syncer.c put
// outbox_depth, sync_state, boards_online/total, clock_trusted, disk_free_mb,
// cpu_temp_c, mem_available_mb, uptime_s, config_version in it).

import type { ChainKey } from './i18n';
import type { Device } from '../types';

export type { Device };

export type Level = 'ok' | 'warn' | 'bad' | 'unknown';

// One finding: an i18n key and its values, with its level.
export interface Finding {
  level: Level;
  key: ChainKey;
  vars?: Record<string, string | number>;
}

export interface HealthSummary {
  level: Level; // the worst finding's (ok when none)
  online: boolean;
  outboxDepth: number | null;
  syncState: string | null;
  findings: Finding[];
}

// thresholds; a backlog of sync entries means the device cannot reach the
// cloud (or the cloud refuses it): a few are normal between batches
export const OUTBOX_WARN = 100;
export const OUTBOX_BAD = 1000;
export const DISK_WARN_MB = 200;
export const TEMP_WARN_C = 75;

const RANK: Record<Level, number> = { ok: 0, unknown: 1, warn: 2, bad: 3 };

export function worst(a: Level, b: Level): Level {
  return RANK[a] >= RANK[b] ? a : b;
}

function num(h: Record<string, unknown> | null, k: string): number | null {
  const v = h ? h[k] : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function isOnline(d: Pick<Device, 'status' | 'online'>): boolean {
  return typeof d.online === 'boolean' ? d.online : d.status !== 'offline';
}

// sync_state values (cw_sync_state_name): ok, backoff, unenrolled, revoked,
// gap, cloud_ahead, entry_refused. The last four stop the sync until an
// operator acts.
export function syncLevel(state: string | null): Level {
  if (state === null) return 'unknown';
  if (state === 'ok') return 'ok';
  if (state === 'backoff' || state === 'unenrolled') return 'warn';
  return 'bad';
}

export function summarize(d: Device): HealthSummary {
  const h = d.health && typeof d.health === 'object' ? d.health : null;
  const online = isOnline(d);
  const findings: Finding[] = [];
  if (!online) findings.push({ level: 'bad', key: 'chain.health.offline' });
  else if (d.status === 'degraded') findings.push({ level: 'warn', key: 'chain.health.degraded' });
  else if (d.status === 'maintenance') findings.push({ level: 'warn', key: 'chain.health.maintenance' });

  const syncState = h && typeof h.sync_state === 'string' ? h.sync_state : null;
  const sl = syncLevel(syncState);
  if (sl === 'warn' || sl === 'bad')
    findings.push({ level: sl, key: 'chain.health.sync', vars: { state: syncState as string } });

  const depth = num(h, 'outbox_depth');
  if (depth !== null && depth >= OUTBOX_WARN)
    findings.push({ level: depth >= OUTBOX_BAD ? 'bad' : 'warn', key: 'chain.health.outbox', vars: { n: depth } });

  const bo = num(h, 'boards_online'), bt = num(h, 'boards_total');
  if (bo !== null && bt !== null && bo < bt)
    findings.push({ level: bo === 0 ? 'bad' : 'warn', key: 'chain.health.boards', vars: { online: bo, total: bt } });

  if (h && h.clock_trusted === false) findings.push({ level: 'warn', key: 'chain.health.clock' });
  const disk = num(h, 'disk_free_mb');
  if (disk !== null && disk < DISK_WARN_MB) findings.push({ level: 'warn', key: 'chain.health.disk', vars: { mb: disk } });
  const temp = num(h, 'cpu_temp_c');
  if (temp !== null && temp >= TEMP_WARN_C) findings.push({ level: 'warn', key: 'chain.health.temp', vars: { c: temp } });

  let level: Level = h === null && online ? 'unknown' : 'ok';
  for (const f of findings) level = worst(level, f.level);
  return { level, online, outboxDepth: depth, syncState, findings };
}

// Counts for the header of the devices page.
export function tally(devs: Device[]): { total: number; online: number; bad: number; warn: number } {
  let online = 0, bad = 0, warn = 0;
  for (const d of devs) {
    const s = summarize(d);
    if (s.online) online++;
    if (s.level === 'bad') bad++;
    else if (s.level === 'warn') warn++;
  }
  return { total: devs.length, online, bad, warn };
}

// Worst first, then by name: the devices needing attention on top.
export function sortDevices(devs: Device[], branchCode: (id: string) => string): Device[] {
  const lv = new Map(devs.map((d) => [d.id, summarize(d).level]));
  return devs.slice().sort((a, b) =>
    RANK[lv.get(b.id) as Level] - RANK[lv.get(a.id) as Level] ||
    branchCode(a.branch_id).localeCompare(branchCode(b.branch_id)) ||
    (a.device_name ?? '').localeCompare(b.device_name ?? '') || a.id.localeCompare(b.id));
}

// Age of a time as an i18n key and count: "just now", "N min ago", "N h ago",
// "N d ago"; never (null) when the device never sent a heartbeat.
export function age(iso: string | null, nowMs: number): { key: ChainKey; n: number } {
  if (!iso) return { key: 'chain.age.never', n: 0 };
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return { key: 'chain.age.never', n: 0 };
  const s = Math.max(0, Math.floor((nowMs - t) / 1000));
  if (s < 60) return { key: 'chain.age.seconds', n: s };
  if (s < 3600) return { key: 'chain.age.minutes', n: Math.floor(s / 60) };
  if (s < 86400) return { key: 'chain.age.hours', n: Math.floor(s / 3600) };
  return { key: 'chain.age.days', n: Math.floor(s / 86400) };
}

const STATUSES = ['online', 'offline', 'degraded', 'maintenance'] as const;

// The i18n key of a reported status (one the cloud may add later: "unknown").
export function statusKey(status: string): ChainKey {
  return (STATUSES as readonly string[]).includes(status)
    ? `chain.status.${status as (typeof STATUSES)[number]}` : 'chain.health.unknown';
}
