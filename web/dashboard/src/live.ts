// Live updates of a branch (docs/DASHBOARD.md "Live updates"): GET /api/branches/{id}/events
// read with fetch() (the token goes in the Authorization header, never in the URL, hence
// not EventSource), parsed by SseParser. A `change` event names the kinds to refetch.
//
// Modes, shown by the live indicator:
//  * live    — the stream is open (after its `hello`);
//  * polling — no stream (not offered by this server, dropped, refused): the page refetches
//              everything every 2 s while reconnecting with backoff (1 s doubling to 30 s);
//  * offline — the refetches fail too (no network / server down).
// Besides, a full refetch every 30 s whatever the mode (a change missed for any reason is
// corrected within 30 s), and a stream silent for 45 s (keepalives come every 15 s) is
// dropped and reopened.
import { apiFetch } from './api';
import { ALL_KINDS, changeKinds, SseParser, type Kind } from './sse';

export type LiveMode = 'live' | 'polling' | 'offline';

export interface LiveOptions {
  branchId: string;
  /** refetch these kinds; rejects when the refetch failed (network, server) */
  refetch: (kinds: Kind[]) => Promise<void>;
  onMode: (mode: LiveMode) => void;
  pollMs?: number;
  fullMs?: number;
  silenceMs?: number;
}

/** Backoff before reconnect attempt n (0-based): 1 s, 2 s, 4 s … capped at 30 s. */
export function backoffMs(attempt: number): number {
  return Math.min(30000, 1000 * 2 ** Math.min(attempt, 5));
}

export function startLive(o: LiveOptions): () => void {
  const pollMs = o.pollMs ?? 2000;
  const fullMs = o.fullMs ?? 30000;
  const silenceMs = o.silenceMs ?? 45000;
  let stopped = false;
  let mode: LiveMode | null = null;
  let attempt = 0;
  let ctrl: AbortController | null = null;
  let pollTimer: ReturnType<typeof setInterval> | undefined;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let silenceTimer: ReturnType<typeof setTimeout> | undefined;
  let inFlight = false;

  const setMode = (m: LiveMode) => {
    if (m !== mode) {
      mode = m;
      o.onMode(m);
    }
  };

  const refetch = async (kinds: Kind[]) => {
    const full = kinds.length === ALL_KINDS.length;
    if (full && inFlight) return; // a full refetch is running: polls do not pile up
    if (full) inFlight = true;
    try {
      await o.refetch(kinds);
      if (mode === 'offline') setMode('polling');
    } catch {
      if (mode !== 'live') setMode('offline');
    } finally {
      if (full) inFlight = false;
    }
  };

  const startPolling = () => {
    if (pollTimer !== undefined || stopped) return;
    pollTimer = globalThis.setInterval(() => void refetch([...ALL_KINDS]), pollMs);
  };
  const stopPolling = () => {
    if (pollTimer !== undefined) globalThis.clearInterval(pollTimer);
    pollTimer = undefined;
  };

  const armSilence = () => {
    if (silenceTimer !== undefined) globalThis.clearTimeout(silenceTimer);
    silenceTimer = globalThis.setTimeout(() => ctrl?.abort(), silenceMs);
  };

  const fallBack = (delay: number) => {
    if (stopped) return;
    if (mode !== 'offline') setMode('polling');
    startPolling();
    if (reconnectTimer !== undefined) globalThis.clearTimeout(reconnectTimer);
    reconnectTimer = globalThis.setTimeout(connect, delay);
  };

  async function connect() {
    reconnectTimer = undefined;
    if (stopped) return;
    ctrl = new AbortController();
    const my = ctrl;
    let res: Response;
    try {
      res = await apiFetch('/api/branches/' + encodeURIComponent(o.branchId) + '/events', {
        headers: { Accept: 'text/event-stream' }, signal: my.signal,
      });
    } catch {
      if (!stopped) {
        void refetch([...ALL_KINDS]); // tells polling from offline
        fallBack(backoffMs(attempt++));
      }
      return;
    }
    const type = res.headers.get('Content-Type') ?? '';
    if (!res.ok || !res.body || !type.startsWith('text/event-stream')) {
      try {
        await res.body?.cancel();
      } catch {
        /* already closed */
      }
      // 404: no stream on this server (or route not there yet): poll, retry seldom
      fallBack(res.status === 404 ? 30000 : backoffMs(attempt++));
      return;
    }
    const parser = new SseParser((e) => {
      if (e.event === 'hello') {
        attempt = 0;
        stopPolling();
        setMode('live');
        void refetch([...ALL_KINDS]); // anything missed while not live
      } else if (e.event === 'change') {
        void refetch(changeKinds(e.data));
      }
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    armSilence();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armSilence();
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      /* aborted or network: reconnect below */
    } finally {
      if (silenceTimer !== undefined) globalThis.clearTimeout(silenceTimer);
      silenceTimer = undefined;
    }
    if (!stopped) fallBack(backoffMs(attempt++));
  }

  const fullTimer = globalThis.setInterval(() => void refetch([...ALL_KINDS]), fullMs);
  void refetch([...ALL_KINDS]); // the first load does not wait for the stream
  void connect();

  return () => {
    stopped = true;
    ctrl?.abort();
    stopPolling();
    globalThis.clearInterval(fullTimer);
    if (reconnectTimer !== undefined) globalThis.clearTimeout(reconnectTimer);
    if (silenceTimer !== undefined) globalThis.clearTimeout(silenceTimer);
  };
}
