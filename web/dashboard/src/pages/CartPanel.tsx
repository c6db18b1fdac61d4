// The cart panel: the cart's details, its current rental, and the commands a manager may
// send (unlock, maintenance on/off). A sent command's state is polled every second
// (GET /api/commands/{id}) until it succeeds, fails or expires; a `commands` change on the
// live stream polls at once.
import { useEffect, useRef, useState } from 'react';
import { api, ApiError } from '../api';
import { useApp, useT } from '../context';
import { Ltr } from '../components/common';
import { fmtDateTime } from '../format';
import { MAINT_NOTE_MAX_BYTES, maintNoteTooLong } from '../text';
import type { Key } from '../i18n';
import type { TileStatus } from '../status';
import type { Cart, Command, CommandState, Device, Rental } from '../types';

const FINAL: CommandState[] = ['succeeded', 'failed', 'expired'];

interface Sent {
  label: Key;
  command?: Command;
  error?: string;
}

export function CartPanel({ branchId, cart, status, rental, device, commandsTick, onChanged, onClose }: {
  branchId: string; cart: Cart; status: TileStatus; rental: Rental | undefined; device: Device | undefined;
  commandsTick: number; onChanged: () => void; onClose: () => void;
}) {
  const t = useT();
  const { lang } = useApp();
  const [sent, setSent] = useState<Sent | null>(null);
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState('');
  const closeRef = useRef<HTMLButtonElement>(null);
  const changed = useRef(onChanged);
  changed.current = onChanged;
  const base = '/api/branches/' + encodeURIComponent(branchId) + '/carts/' + encodeURIComponent(cart.id);

  useEffect(() => {
    closeRef.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);

  // poll the command until final
  const cmdId = sent?.command?.id;
  const cmdState = sent?.command?.state;
  useEffect(() => {
    if (!cmdId || (cmdState && FINAL.includes(cmdState))) return undefined;
    let stop = false;
    const poll = async () => {
      try {
        const c = await api.get<Command>('/api/commands/' + encodeURIComponent(cmdId));
        if (stop) return;
        setSent((s) => (s && s.command?.id === c.id ? { ...s, command: c } : s));
        if (FINAL.includes(c.state)) changed.current();
      } catch {
        /* next second */
      }
    };
    const id = window.setInterval(() => void poll(), 1000);
    void poll();
    return () => {
      stop = true;
      window.clearInterval(id);
    };
    // commandsTick: a change on the stream polls at once
  }, [cmdId, cmdState, commandsTick]);

  async function send(label: Key, path: string, body: unknown) {
    setBusy(true);
    setSent({ label });
    try {
      const c = await api.post<Command>(base + path, body);
      setSent({ label, command: c });
    } catch (e) {
      let msg = e instanceof Error ? e.message : String(e);
      if (e instanceof ApiError && e.status === 404 && path === '/maintenance') msg = t('command.unsupported');
      setSent({ label, error: msg });
    } finally {
      setBusy(false);
    }
  }

  const state = sent?.command?.state;
  // the server counts the note in bytes of UTF-8 (maxLength counts characters)
  const noteLong = maintNoteTooLong(note);
  return (
    <div className="overlay" onClick={onClose}>
      <aside className="panel card" data-testid="cart-panel" role="dialog" aria-modal="true"
        aria-label={t('cart.title', { number: cart.cart_number })} onClick={(e) => e.stopPropagation()}>
        <header className="panel-head">
          <h2 className={'panel-title st-' + status}>
            <span className="tile-num">{cart.cart_number}</span>
            <span>{t(('status.' + status) as Key)}</span>
          </h2>
          <button ref={closeRef} type="button" className="btn btn-ghost" onClick={onClose} aria-label={t('app.close')}>✕</button>
        </header>
        <dl className="facts">
          <dt>{t('cart.locker')}</dt><dd><Ltr>{cart.locker_id}</Ltr></dd>
          <dt>{t('cart.locked')}</dt><dd>{cart.is_locked ? t('app.yes') : t('app.no')}</dd>
          <dt>{t('cart.device')}</dt><dd>{device?.device_name || (device?.mac_address || cart.device_id
            ? <Ltr>{device?.mac_address || cart.device_id}</Ltr> : t('app.none'))}</dd>
          {(cart.bus_index !== undefined || cart.board !== undefined) && (
            <><dt>{t('cart.board')}</dt><dd>{cart.bus_index ?? '—'} / {cart.board ?? '—'}</dd></>
          )}
          <dt>{t('cart.last_used')}</dt><dd>{fmtDateTime(cart.last_used, lang)}</dd>
          {cart.maintenance_notes && <><dt>{t('cart.notes')}</dt><dd>{cart.maintenance_notes}</dd></>}
          {rental && (
            <>
              <dt>{t('cart.rental')}</dt>
              <dd><Ltr className="phone">{rental.phone}</Ltr> · {t('rentals.expected')} {fmtDateTime(rental.expected_return, lang)}</dd>
            </>
          )}
        </dl>
        {!cart.device_id && <p className="notice warn">{t('cart.no_device')}</p>}
        <div className="actions">
          <button type="button" className="btn btn-primary" data-testid="cart-unlock" disabled={busy}
            onClick={() => void send('cart.unlock', '/unlock', {})}>{t('cart.unlock')}</button>
          <label className="note">
            <span>{t('cart.maint_note')}</span>
            <input type="text" value={note} aria-invalid={noteLong || undefined}
              onChange={(e) => setNote(e.target.value)} />
          </label>
          {noteLong && <p className="notice error" data-testid="cart-maint-note-error" role="alert">
            {t('cart.maint_note_long', { max: MAINT_NOTE_MAX_BYTES })}</p>}
          <div className="row">
            <button type="button" className={'btn ' + (status === 'maintenance' ? '' : 'btn-maint')} data-testid="cart-maint-on"
              disabled={busy || noteLong} onClick={() => void send('cart.maint_on', '/maintenance', note.trim() ? { on: true, note: note.trim() } : { on: true })}>
              {t('cart.maint_on')}
            </button>
            <button type="button" className={'btn ' + (status === 'maintenance' ? 'btn-maint' : '')} data-testid="cart-maint-off"
              disabled={busy} onClick={() => void send('cart.maint_off', '/maintenance', { on: false })}>
              {t('cart.maint_off')}
            </button>
          </div>
        </div>
        {sent && (
          <div className={'command cmd-' + (state ?? (sent.error ? 'error' : 'sending'))} role="status">
            <span className="muted">{t(sent.label)}:</span>{' '}
            {sent.error ? <span className="cmd-error" data-testid="command-error">{sent.error}</span>
              : state ? (
                <span data-testid="command-state" data-state={state}>
                  {!FINAL.includes(state) && <span className="spinner" aria-hidden="true" />}
                  {t(('command.' + state) as Key)}
                </span>
              ) : <span>{t('command.sending')}</span>}
          </div>
        )}
      </aside>
    </div>
  );
}
