// #/chains/{id}/devices — the chain's devices: online state, last heartbeat,
// firmware, health and sync backlog (outbox depth, sync state). Refreshed
// every 30 s; worst first.

import { useEffect, useMemo, useState } from 'react';
import { Branch, NotFound, Page, RouteProps, api, isNotFound, qs, useActor, useLoad, useT } from './shell';
import { Device, age, sortDevices, statusKey, summarize, syncLevel, tally } from './devices';
import { ChainHeader, ErrorLine, listAll, useChain, useFmtTime } from './ui';

const REFRESH_MS = 30000;
const PAGE = 200;

async function loadDevices(chainId: string, branchId: string, pages: number): Promise<{ items: Device[]; more: boolean }> {
  const items: Device[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < pages; i++) {
    const p: Page<Device> = await api.get(`/api/devices${qs({ chain_id: chainId, branch_id: branchId, limit: PAGE, cursor })}`);
    items.push(...p.items);
    cursor = p.next_cursor;
    if (!cursor) return { items, more: false };
  }
  return { items, more: true };
}

export function ChainDevicesPage({ params }: RouteProps) {
  const chainId = params.id;
  const t = useT();
  const fmtTime = useFmtTime();
  const actor = useActor();
  const chain = useChain(chainId);
  const [branchId, setBranchId] = useState('');
  const [pages, setPages] = useState(1);
  const [now, setNow] = useState(() => Date.now());
  const branches = useLoad(() => listAll<Branch>('/api/branches', { chain_id: chainId }), [chainId]);
  const devices = useLoad(() => loadDevices(chainId, branchId, pages), [chainId, branchId, pages]);
  useEffect(() => {
    const id = window.setInterval(() => { devices.reload(); setNow(Date.now()); }, REFRESH_MS);
    return () => window.clearInterval(id);
  }, [devices.reload]);
  useEffect(() => setNow(Date.now()), [devices.data]);

  const byId = useMemo(() => new Map((branches.data ?? []).map((b) => [b.id, b])), [branches.data]);
  const code = (id: string) => byId.get(id)?.code ?? '';
  const list = useMemo(() => sortDevices(devices.data?.items ?? [], code), [devices.data, byId]);
  const sum = tally(list);

  if (isNotFound(chain.error)) return <NotFound />;

  return (
    <section className="page cwc-page">
      <ChainHeader chain={chain.data} chainId={chainId} tab="devices" actor={actor} />
      <div className="cwc-toolbar">
        <h2>{t('chain.devices.title')}</h2>
        <label className="cwc-field cwc-field-inline">
          <span className="cwc-label">{t('chain.f.branch')}</span>
          <select value={branchId} onChange={(e) => { setBranchId(e.target.value); setPages(1); }} data-testid="devices-branch">
            <option value="">{t('chain.allBranches')}</option>
            {(branches.data ?? []).map((b) => <option key={b.id} value={b.id}>{b.code} — {b.name}</option>)}
          </select>
        </label>
        <button type="button" className="btn" onClick={devices.reload} data-testid="devices-refresh">{t('chain.refresh')}</button>
      </div>
      <p className="cwc-summary" data-testid="devices-summary">
        {t('chain.devices.summary', { online: sum.online, total: sum.total })}
        {sum.bad ? <span className="badge cwc-bad">{t('chain.devices.nBad', { n: sum.bad })}</span> : null}
        {sum.warn ? <span className="badge cwc-warn">{t('chain.devices.nWarn', { n: sum.warn })}</span> : null}
      </p>
      <ErrorLine error={chain.error ?? devices.error} />
      <div className="table-wrap">
        <table className="data" data-testid="devices-table">
          <thead>
            <tr>
              <th>{t('chain.devices.name')}</th><th>{t('chain.f.branch')}</th><th>{t('chain.devices.state')}</th>
              <th>{t('chain.devices.heartbeat')}</th><th>{t('chain.devices.firmware')}</th>
              <th>{t('chain.devices.outbox')}</th><th>{t('chain.devices.sync')}</th><th>{t('chain.devices.health')}</th>
            </tr>
          </thead>
          <tbody>
            {list.map((d) => {
              const s = summarize(d);
              const a = age(d.last_heartbeat, now);
              return (
                <tr key={d.id} data-testid={`device-row-${d.id}`} data-online={String(s.online)} data-level={s.level}>
                  <td>
                    <a className="cwc-touch" href={`#/chains/${encodeURIComponent(chainId)}/telemetry?device=${encodeURIComponent(d.id)}`}
                       title={t('chain.devices.events')} data-testid={`device-events-${d.id}`}>{d.device_name ?? '—'}</a>
                    <div className="cwc-sub cwc-mono" dir="ltr">{d.mac_address}</div>
                  </td>
                  <td>{code(d.branch_id) ? <a href={`#/branches/${d.branch_id}`} dir="ltr">{code(d.branch_id)}</a> : '—'}</td>
                  <td className="cwc-nowrap">
                    <span className={`cwc-dot cwc-${s.online ? 'ok' : 'bad'}`} aria-hidden="true" />
                    {t(statusKey(d.status))}
                  </td>
                  <td>
                    <div>{t(a.key, { n: a.n })}</div>
                    <div className="cwc-sub">{fmtTime(d.last_heartbeat)}</div>
                  </td>
                  <td dir="ltr" className="cwc-mono">{d.firmware_version ?? '—'}</td>
                  <td data-testid={`device-outbox-${d.id}`} className="num">{s.outboxDepth ?? '—'}</td>
                  <td>{s.syncState ? <span className={`badge cwc-${syncLevel(s.syncState)}`} dir="ltr">{s.syncState}</span> : '—'}</td>
                  <td className="cwc-wrap" data-testid={`device-health-${d.id}`} data-level={s.level}>
                    {s.findings.length === 0
                      ? <span className={`badge cwc-${s.level === 'unknown' ? 'muted' : 'ok'}`}>{t(s.level === 'unknown' ? 'chain.health.unknown' : 'chain.health.ok')}</span>
                      : s.findings.map((f) => (
                        <span key={f.key} className={`badge cwc-${f.level}`}>{t(f.key, f.vars)}</span>))}
                  </td>
                </tr>
              );
            })}
            {devices.data && list.length === 0 ? (
              <tr><td colSpan={8} className="cwc-empty">{t('chain.devices.none')}</td></tr>
            ) : null}
          </tbody>
        </table>
      </div>
      {devices.data?.more ? (
        <button type="button" className="btn" onClick={() => setPages(pages + 1)} data-testid="devices-more">
          {t('chain.more')}
        </button>
      ) : null}
    </section>
  );
}
