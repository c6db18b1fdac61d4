// A parser for text/event-stream (the WHATWG "server-sent events" format), fed chunks
// as they arrive from fetch(): lines end in \n, \r\n or \r (also split across chunks);
// "event:", "data:" (several lines joined by \n), "id:", "retry:"; lines starting with
// ':' are comments (keepalives); an empty line dispatches the event. Unknown fields are
// ignored; an event without data is not dispatched (as EventSource does).

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export class SseParser {
  private buf = '';
  private lastCR = false;
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  /** retry: value in ms, if the server sent one */
  retry: number | undefined;
  /** comment lines seen (keepalives), for the liveness watchdog */
  comments = 0;

  constructor(private readonly onEvent: (e: SseEvent) => void) {}

  push(chunk: string): void {
    let text = chunk;
    // a \r at the end of the previous chunk and \n at the start of this one are one line end
    if (this.lastCR && text.startsWith('\n')) text = text.slice(1);
    this.lastCR = false;
    this.buf += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      if (m[0] === '\r' && m.index === this.buf.length - 1) {
        // could be the first half of \r\n: take the line, remember the \r
        this.lastCR = true;
      }
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event': this.event = value; break;
      case 'data': this.data.push(value); break;
      case 'id': if (!value.includes('\0')) this.id = value; break;
      case 'retry': if (/^\d+$/.test(value)) this.retry = Number(value); break;
      default: break;
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.event = '';
      return;
    }
    const e: SseEvent = { event: this.event || 'message', data: this.data.join('\n') };
    if (this.id !== undefined) e.id = this.id;
    this.event = '';
    this.data = [];
    this.onEvent(e);
  }
}

export const ALL_KINDS = ['carts', 'rentals', 'devices', 'commands', 'telemetry'] as const;
export type Kind = (typeof ALL_KINDS)[number];

/** The kinds named by a `change` event's data ({"kinds":[…]}); unknown kinds dropped. Bad JSON → all kinds. */
export function changeKinds(data: string): Kind[] {
  try {
    const v = JSON.parse(data) as { kinds?: unknown };
    if (!Array.isArray(v.kinds)) return [...ALL_KINDS];
    return ALL_KINDS.filter((k) => (v.kinds as unknown[]).includes(k));
  } catch {
    return [...ALL_KINDS];
  }
}
