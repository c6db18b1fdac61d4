import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configureApi } from '../src/api';
import { backoffMs, startLive, type LiveMode } from '../src/live';
import type { Kind } from '../src/sse';

// A fake fetch: the events route answers with `respond`; records the requests.
interface Call { url: string; auth: string | null }
function fakeFetch(respond: (call: Call, signal: AbortSignal | undefined) => Response | Promise<Response>): Call[] {
  const calls: Call[] = [];
  globalThis.fetch = (async (url: string, init?: RequestInit) => {
    const h = (init?.headers ?? {}) as Record<string, string>;
    const call = { url, auth: h.Authorization ?? null };
    calls.push(call);
    return respond(call, init?.signal ?? undefined);
  }) as typeof fetch;
  return calls;
}

/** A streaming SSE response whose chunks the test pushes. */
function sseStream(signal: AbortSignal | undefined): { res: Response; push: (s: string) => void; end: () => void } {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start(c) { ctl = c; } });
  signal?.addEventListener('abort', () => { try { ctl.error(new Error('aborted')); } catch { /* closed */ } });
  const enc = new TextEncoder();
  return {
    res: new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }),
    push: (s) => ctl.enqueue(enc.encode(s)),
    end: () => ctl.close(),
  };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 2000) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await wait(5);
  }
}

configureApi({ token: () => 'tok', onUnauthorized: () => {} });

test('backoff doubles from 1 s to 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 10].map(backoffMs), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test('stream: token in the header, hello → live, change → the named kinds, drop → polling', async () => {
  let stream: ReturnType<typeof sseStream> | null = null;
  const calls = fakeFetch((_c, signal) => {
    stream = sseStream(signal);
    return stream.res;
  });
  const modes: LiveMode[] = [];
  const fetched: Kind[][] = [];
  const stop = startLive({
    branchId: 'b 1', onMode: (m) => modes.push(m), refetch: async (k) => { fetched.push(k); },
    pollMs: 20, fullMs: 100000,
  });
  await until(() => stream !== null);
  assert.equal(calls[0].url, '/api/branches/b%201/events');
  assert.equal(calls[0].auth, 'Bearer tok');
  assert.ok(!calls[0].url.includes('tok'), 'no token in the URL');
  assert.equal(fetched.length, 1, 'the first load does not wait for the stream');
  stream!.push('event: hello\ndata: {"branch_id":"b 1"}\n\n');
  await until(() => modes.includes('live'));
  stream!.push(': keepalive\n\nevent: change\ndata: {"kinds":["rentals"]}\n\n');
  await until(() => fetched.some((k) => k.length === 1 && k[0] === 'rentals'));
  const before = fetched.length;
  await wait(60);
  assert.equal(fetched.length, before, 'no polling while live');
  stream!.end();
  await until(() => modes[modes.length - 1] === 'polling');
  await until(() => fetched.length >= before + 2); // polls every 20 ms meanwhile
  stop();
});

test('no stream on this server (404): polling; failing refetches: offline, then back', async () => {
  fakeFetch(() => new Response('{"error":{"code":"not_found","message":"route not found"}}', { status: 404 }));
  const modes: LiveMode[] = [];
  let failing = true;
  let n = 0;
  const stop = startLive({
    branchId: 'b', onMode: (m) => modes.push(m), pollMs: 15, fullMs: 100000,
    refetch: async () => { n++; if (failing) throw new Error('down'); },
  });
  await until(() => modes.includes('offline'));
  failing = false;
  await until(() => modes[modes.length - 1] === 'polling');
  assert.ok(n >= 2);
  stop();
  const after = n;
  await wait(50);
  assert.equal(n, after, 'stopped: no more refetches');
});

test('a silent stream is dropped and reopened', async () => {
  let opened = 0;
  fakeFetch((_c, signal) => {
    opened++;
    const s = sseStream(signal);
    s.push('event: hello\ndata: {}\n\n');
    return s.res;
  });
  const stop = startLive({ branchId: 'b', onMode: () => {}, refetch: async () => {}, pollMs: 1000, fullMs: 100000, silenceMs: 30 });
  await until(() => opened >= 2, 3000);
  stop();
});

test('polls do not pile up while a full refetch is slow', async () => {
  fakeFetch(() => new Response('', { status: 404 }));
  let running = 0;
  let most = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const stop = startLive({
    branchId: 'b', onMode: () => {}, pollMs: 5, fullMs: 100000,
    refetch: async () => {
      running++;
      most = Math.max(most, running);
      await gate;
      running--;
    },
  });
  await wait(60);
  assert.equal(most, 1, 'one full refetch at a time');
  release();
  stop();
});
