// Date ranges of the chain view's forms: <input type="date"> and
// <input type="datetime-local"> values are local time; the API takes RFC 3339
// UTC with `from` inclusive and `to` exclusive.

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

// YYYY-MM-DD of a local day.
export function localDate(d: Date): string {
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// YYYY-MM-DDTHH:MM of a local time (datetime-local's value).
export function localDateTime(d: Date): string {
  return `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function parseDate(v: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return d.getFullYear() === Number(m[1]) && d.getMonth() === Number(m[2]) - 1 && d.getDate() === Number(m[3])
    ? d : null;
}

// A range of whole local days, `to` included: {from, to} in UTC for the API
// (to = the local midnight after the last day), or null when a date is not
// valid or the range is empty.
export function dayRange(fromDay: string, toDay: string): { from: string; to: string } | null {
  const f = parseDate(fromDay), t = parseDate(toDay);
  if (!f || !t) return null;
  const end = new Date(t.getFullYear(), t.getMonth(), t.getDate() + 1);
  if (end.getTime() <= f.getTime()) return null;
  return { from: f.toISOString(), to: end.toISOString() };
}

// The last n local days, today included, as date input values.
export function lastDays(n: number, now: Date): { from: string; to: string } {
  const f = new Date(now.getFullYear(), now.getMonth(), now.getDate() - (n - 1));
  return { from: localDate(f), to: localDate(now) };
}

// datetime-local value -> RFC 3339 UTC; "" -> null (no bound); invalid -> undefined.
export function dateTimeToIso(v: string): string | null | undefined {
  if (v.trim() === '') return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(v);
  if (!m) return undefined;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0));
  if (d.getMonth() !== Number(m[2]) - 1 || d.getDate() !== Number(m[3])) return undefined;
  return d.toISOString();
}
