// #/chains/{id}/telemetry — the telemetry browser: one device or the whole
// chain, filtered by event type and event time, newest first, paged by
// cursor ("more").

import { FormEvent, useEffect, useMemo, useState } from 'react';
import { Branch, Device, Key, NotFound, Page, RouteProps, api, isNotFound, useActor, useLoad, useT } from './shell';
import { TelemetryFilter, TelemetryRow, appendPage, preview, telemetryPath } from './telemetry';
import { ChainHeader, ErrorLine, listAll, useChain, useFmtTime } from './ui';
import { Ltr } from '../components/common';

const KNOWN_TYPES = ['rental.started', 'rental.returned', 'lock.fault', 'lock.offline', 'device.health'];

// ?device=<id>&type=<event type> preset the filter (the devices page links here).
export function ChainTelemetryPage({ params, query }: RouteProps) {
  const chainId = params.id;
  const t = useT();
  const fmtTime = useFmtTime();
  const actor = useActor();
  const chain = useChain(chainId);
  const cid = encodeURIComponent(chainId);
  const devices = useLoad(() => listAll<Device>('/api/devices', { chain_id: chainId }, 1000), [chainId]);
  const branches = useLoad(() => listAll<Branch>('/api/branches', { chain_id: chainId }), [chainId]);
  const types = useLoad(() => api.get<{ telemetry: { by_event_type: Record<string, number> } }>(`/api/chains/${cid}/stats`)
    .then((s) => Object.keys(s.telemetry.by_event_type)), [cid]);
  const [f, setF] = useState<TelemetryFilter>({
    deviceId: query.device ?? '', eventType: query.type ?? '', from: '', to: '',
  });
  const [rows, setRows] = useState<TelemetryRow[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [bad, setBad] = useState<{ error: Key; field: string } | null>(null);
  const [fail, setFail] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<number | null>(null);

  const devName = useMemo(() => new Map((devices.data ?? []).map((d) => [d.id, d.device_name])), [devices.data]);
  const brCode = useMemo(() => new Map((branches.data ?? []).map((b) => [b.id, b.code])), [branches.data]);
  const typeList = useMemo(() => Array.from(new Set([...(types.data ?? []), ...KNOWN_TYPES])).sort(), [types.data]);

  const run = async (more: boolean) => {
    const p = telemetryPath(chainId, f, more ? cursor : null);
    if ('error' in p) {
      setBad(p);
      return;
    }
    setBad(null);
    setFail(null);
    setBusy(true);
    try {
      const page: Page<TelemetryRow> = await api.get(p.path);
      setRows(more && rows ? appendPage(rows, page.items) : page.items);
      setCursor(page.next_cursor);
    } catch (e) {
      setFail(e);
    } finally {
      setBusy(false);
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(false);
  };
  // the newest rows at once (of the chain, or as the link preset them)
  useEffect(() => {
    void run(false);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [chainId]);

  if (isNotFound(chain.error)) return <NotFound />;

  return (
    <section className="page cwc-page">
      <ChainHeader chain={chain.data} chainId={chainId} tab="telemetry" actor={actor} />
      <form className="cwc-filters" onSubmit={submit} noValidate>
        <label className="cwc-field">
          <span className="cwc-label">{t('chain.telemetry.device')}</span>
          <select value={f.deviceId} onChange={(e) => setF({ ...f, deviceId: e.target.value })} data-testid="telemetry-device">
            <option value="">{t('chain.telemetry.allDevices')}</option>
            {(devices.data ?? []).map((d) => (
              <option key={d.id} value={d.id}>{brCode.get(d.branch_id) ?? ''} · {d.device_name}</option>))}
          </select>
        </label>
        <label className={`cwc-field${bad?.field === 'type' ? ' cwc-field-bad' : ''}`}>
          <span className="cwc-label">{t('chain.telemetry.type')}</span>
          <input value={f.eventType} list="cwc-telemetry-types" dir="ltr" placeholder={t('chain.telemetry.anyType')}
                 onChange={(e) => setF({ ...f, eventType: e.target.value })} data-testid="telemetry-type" />
          <datalist id="cwc-telemetry-types">{typeList.map((ty) => <option key={ty} value={ty} />)}</datalist>
        </label>
        <label className={`cwc-field${bad?.field === 'from' ? ' cwc-field-bad' : ''}`}>
          <span className="cwc-label">{t('chain.from')}</span>
          <input type="datetime-local" value={f.from} onChange={(e) => setF({ ...f, from: e.target.value })} data-testid="telemetry-from" />
        </label>
        <label className={`cwc-field${bad?.field === 'to' ? ' cwc-field-bad' : ''}`}>
          <span className="cwc-label">{t('chain.to')}</span>
          <input type="datetime-local" value={f.to} onChange={(e) => setF({ ...f, to: e.target.value })} data-testid="telemetry-to" />
        </label>
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="telemetry-search">{t('chain.search')}</button>
      </form>
      {bad ? <p className="notice error" role="alert" data-testid="telemetry-error">{t(bad.error)}</p> : null}
      <ErrorLine error={fail} />
      {rows ? (
        <div className="table-wrap">
          <table className="data" data-testid="telemetry-table">
            <thead>
              <tr>
                <th>{t('chain.telemetry.time')}</th><th>{t('chain.f.branch')}</th><th>{t('chain.telemetry.device')}</th>
                <th>{t('chain.telemetry.type')}</th><th>{t('chain.telemetry.data')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} data-testid={`telemetry-row-${r.id}`} data-type={r.event_type}>
                  <td>
                    {fmtTime(r.timestamp)}
                    {!r.clock_trusted ? <span className="badge cwc-warn" title={t('chain.telemetry.clockHint')}>{t('chain.telemetry.clock')}</span> : null}
                  </td>
                  <td dir="ltr" className="cwc-start">{brCode.get(r.branch_id) ?? ''}</td>
                  <td>{devName.get(r.device_id) ?? <Ltr>{r.device_id.slice(0, 8)}</Ltr>}</td>
                  <td dir="ltr" className="cwc-start cwc-mono">{r.event_type}</td>
                  <td className="cwc-data">
                    <button type="button" className="cwc-link" aria-expanded={open === r.id}
                            onClick={() => setOpen(open === r.id ? null : r.id)}>
                      <code dir="ltr">{open === r.id ? JSON.stringify(r.event_data, null, 2) : preview(r)}</code>
                    </button>
                  </td>
                </tr>
              ))}
              {rows.length === 0 ? <tr><td colSpan={5} className="cwc-empty">{t('chain.telemetry.none')}</td></tr> : null}
            </tbody>
          </table>
        </div>
      ) : null}
      {rows && cursor ? (
        <button type="button" className="btn" disabled={busy} onClick={() => void run(true)} data-testid="telemetry-more">
          {t('chain.more')}
        </button>
      ) : null}
    </section>
  );
}
