// #/branches/{id}: the branch at a glance — the live indicator, counts per state (which is
// also the colour legend), the cart grid by device → bus/board, open rentals with the
// overdue ones first, and the cart panel (unlock, maintenance) on a tile's click.
import { useEffect, useMemo, useState } from 'react';
import { useApp, useT } from '../context';
import { RentalHead } from '../components/RentalHead';
import { ErrorBox, isNotFound, Loading, Ltr, NotFound } from '../components/common';
import { fmtDateTime, fmtTime } from '../format';
import type { Key } from '../i18n';
import { startLive, type LiveMode } from '../live';
import type { RouteProps } from '../router';
import { countStatuses, groupCarts, isOverdue, minutesLate, sortActive, TILE_STATUSES, tileStatus, type TileStatus } from '../status';
import type { Cart, Device, Rental } from '../types';
import { BranchFrame } from './BranchHeader';
import { useBranchData } from './branchData';
import { CartPanel } from './CartPanel';

export function BranchLivePage({ params }: RouteProps) {
  return <BranchFrame id={params.id} tab="live">{() => <LiveBody branchId={params.id} />}</BranchFrame>;
}

/** Re-renders every `ms` so that time-dependent states (overdue) follow the clock. */
export function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(id);
  }, [ms]);
  return now;
}

function LiveBody({ branchId }: { branchId: string }) {
  const t = useT();
  const data = useBranchData(branchId);
  const [mode, setMode] = useState<LiveMode>('polling');
  const [selected, setSelected] = useState<string | null>(null);
  const now = useNow(10000);
  const { refetch } = data;

  useEffect(() => startLive({ branchId, refetch, onMode: setMode }), [branchId, refetch]);

  const rentalByCart = useMemo(() => {
    const m = new Map<string, Rental>();
    for (const r of data.rentals ?? []) m.set(r.cart_id, r);
    return m;
  }, [data.rentals]);

  if (!data.carts || !data.rentals) {
    if (data.error) return isNotFound(data.error) ? <NotFound /> : <ErrorBox error={data.error} onRetry={() => void refetch(['carts', 'rentals', 'devices'])} />;
    return (
      <>
        <LiveIndicator mode={mode} updatedAt={data.updatedAt} />
        <Loading />
      </>
    );
  }
  const statusOf = (c: Cart) => tileStatus(c, rentalByCart.get(c.id), now);
  const counts = countStatuses(data.carts.map(statusOf));
  const groups = groupCarts(data.carts);
  const cart = selected ? data.carts.find((c) => c.id === selected) : undefined;

  return (
    <div className="live">
      <div className="live-top">
        <LiveIndicator mode={mode} updatedAt={data.updatedAt} />
        {data.error ? <span className="notice error small">{t('app.error', { message: String((data.error as Error).message ?? data.error) })}</span> : null}
      </div>
      <StatusSummary counts={counts} total={data.carts.length} />
      <h2>{t('grid.title')}</h2>
      {data.carts.length === 0 ? <p className="empty">{t('grid.empty')}</p> : (
        <div className="grid-devices">
          {groups.map((g) => (
            <DeviceCard key={g.deviceId || 'none'} deviceId={g.deviceId} device={data.devices.get(g.deviceId)}>
              {g.boards.map((b) => {
                const did = g.deviceId || 'none';
                return (
                  <div key={b.key} className={'board' + (b.online === false ? ' board-off' : '')}
                    data-testid={`board-${did}-${b.bus ?? 'x'}-${b.board ?? 'x'}`}
                    data-online={b.online === null ? undefined : String(b.online)}>
                    <div className="board-head">
                      <span>{b.bus === null && b.board === null ? t('grid.board.none') : t('grid.board', { bus: b.bus ?? '?', board: b.board ?? '?' })}</span>
                      {b.online === false && <span className="badge badge-dark">{t('grid.board.offline')}</span>}
                    </div>
                    <div className="tiles">
                      {b.carts.map((c) => {
                        const s = statusOf(c);
                        return (
                          <button type="button" key={c.id} className={'tile st-' + s} data-testid={'cart-' + c.cart_number}
                            data-status={s} onClick={() => setSelected(c.id)}
                            aria-label={t('cart.title', { number: c.cart_number }) + ': ' + t(('status.' + s) as Key)}>
                            <span className="tile-num">{c.cart_number}</span>
                            <span className="tile-st">{t(('status.' + s) as Key)}</span>
                          </button>
                        );
                      })}
                    </div>
                  </div>
                );
              })}
            </DeviceCard>
          ))}
        </div>
      )}
      <ActiveRentals rentals={data.rentals} now={now} />
      {cart && (
        <CartPanel branchId={branchId} cart={cart} status={statusOf(cart)} rental={rentalByCart.get(cart.id)}
          device={cart.device_id ? data.devices.get(cart.device_id) : undefined} commandsTick={data.commandsTick}
          onChanged={() => void refetch(['carts', 'rentals'])} onClose={() => setSelected(null)} />
      )}
    </div>
  );
}

export function LiveIndicator({ mode, updatedAt }: { mode: LiveMode; updatedAt: Date | null }) {
  const t = useT();
  const { lang } = useApp();
  return (
    <div className={'live-status live-' + mode} data-testid="live-status" data-state={mode} role="status">
      <span className="dot" aria-hidden="true" />
      <strong>{t(('live.' + mode) as Key)}</strong>
      {updatedAt && <span className="muted">{t('live.updated', { time: fmtTime(updatedAt, lang) })}</span>}
    </div>
  );
}

function StatusSummary({ counts, total }: { counts: Record<TileStatus, number>; total: number }) {
  const t = useT();
  return (
    <div className="summary" aria-label={t('status.legend')} data-testid="status-summary">
      <div className="sum sum-total">
        <span className="sum-n">{total}</span>
        <span className="sum-l">{t('grid.summary.total')}</span>
      </div>
      {TILE_STATUSES.map((s) => (
        <div key={s} className={'sum st-' + s + (counts[s] ? '' : ' zero')} data-testid={'count-' + s}>
          <span className="sum-n">{counts[s]}</span>
          <span className="sum-l"><span className="swatch" aria-hidden="true" />{t(('status.' + s) as Key)}</span>
        </div>
      ))}
    </div>
  );
}

function DeviceCard({ deviceId, device, children }: { deviceId: string; device: Device | undefined; children: React.ReactNode }) {
  const t = useT();
  const online = device ? (device.online ?? device.status !== 'offline') : undefined;
  const name = device?.device_name || device?.mac_address || (deviceId ? deviceId.slice(0, 8) : '');
  return (
    <section className="device card" data-testid={'device-' + (deviceId || 'none')}
      data-online={online === undefined ? undefined : String(online)}>
      <header className="device-head">
        <h3>{deviceId ? t('grid.device', { name }) : t('grid.device.none')}</h3>
        {online !== undefined && (
          <span className={'pill ' + (online ? 'pill-ok' : 'pill-bad')}>
            {online ? t('grid.device.online') : t('grid.device.offline')}
          </span>
        )}
      </header>
      {children}
    </section>
  );
}

function ActiveRentals({ rentals, now }: { rentals: Rental[]; now: number }) {
  const t = useT();
  const { lang } = useApp();
  const sorted = sortActive(rentals, now);
  const masked = rentals.some((r) => r.phone_masked);
  return (
    <section className="rentals-active">
      <h2>{t('rentals.active.title')} <span className="count">{rentals.length}</span></h2>
      {masked && <p className="muted small">{t('rentals.masked')}</p>}
      <div className="table-wrap">
        <table className="data" data-testid="rentals-active">
          <RentalHead />
          <tbody>
            {sorted.length === 0 && (
              <tr><td colSpan={5} className="empty">{t('rentals.active.empty')}</td></tr>
            )}
            {sorted.map((r) => {
              const late = isOverdue(r, now);
              const m = minutesLate(r.expected_return, now);
              return (
                <tr key={r.id} data-testid={'rental-' + r.id} data-overdue={String(late)} className={late ? 'overdue' : undefined}>
                  <td className="num strong">{r.cart_number}</td>
                  <td><Ltr className="phone">{r.phone}</Ltr></td>
                  <td>
                    <span className={'pill ' + (late ? 'pill-bad' : 'pill-info')}>
                      {late ? t('rental.status.overdue') : t('rental.status.active')}
                    </span>{' '}
                    <span className="muted small">{late ? t('rentals.overdue_by', { minutes: Math.max(m, 0) }) : t('rentals.due_in', { minutes: Math.max(-m, 0) })}</span>
                  </td>
                  <td>{fmtDateTime(r.start_time, lang)}</td>
                  <td>{fmtDateTime(r.expected_return, lang)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
