import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changeKinds, SseParser, type SseEvent } from '../src/sse';

function parse(chunks: string[]): { events: SseEvent[]; p: SseParser } {
  const events: SseEvent[] = [];
  const p = new SseParser((e) => events.push(e));
  for (const c of chunks) p.push(c);
  return { events, p };
}

test('hello, change and keepalive as the cloud sends them', () => {
  const { events, p } = parse(['event: hello\ndata: {"branch_id":"b"}\n\n: keepalive\n\n',
    'event: change\ndata: {"kinds":["carts","rentals"]}\n\n']);
  assert.deepEqual(events, [{ event: 'hello', data: '{"branch_id":"b"}' },
    { event: 'change', data: '{"kinds":["carts","rentals"]}' }]);
  assert.equal(p.comments, 1);
});

test('split anywhere, also inside CRLF', () => {
  const text = 'event: change\r\ndata: {"kinds":["carts"]}\r\n\r\nevent: change\rdata: x\r\r';
  for (let i = 0; i <= text.length; i++) {
    const { events } = parse([text.slice(0, i), text.slice(i)]);
    assert.deepEqual(events, [{ event: 'change', data: '{"kinds":["carts"]}' }, { event: 'change', data: 'x' }], 'split at ' + i);
  }
  const one = parse(text.split(''));
  assert.equal(one.events.length, 2);
});

test('multi-line data, default event name, no-space values, id and retry', () => {
  const { events, p } = parse(['data:a\ndata: b\nid: 7\nretry: 1500\n\n', 'data\n\n']);
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '7' }, { event: 'message', data: '', id: '7' }]);
  assert.equal(p.retry, 1500);
});

test('an event without data is not dispatched; unfinished events wait', () => {
  const { events } = parse(['event: change\n\n', 'event: change\ndata: {}']);
  assert.deepEqual(events, []);
});

test('changeKinds keeps known kinds, all on garbage', () => {
  assert.deepEqual(changeKinds('{"kinds":["rentals","bogus","carts"]}'), ['carts', 'rentals']);
  assert.deepEqual(changeKinds('not json'), ['carts', 'rentals', 'devices', 'commands', 'telemetry']);
  assert.deepEqual(changeKinds('{}'), ['carts', 'rentals', 'devices', 'commands', 'telemetry']);
});
