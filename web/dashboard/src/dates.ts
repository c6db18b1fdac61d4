// Local calendar dates (YYYY-MM-DD, as <input type=date> gives them) and the API's UTC
// ranges: a range of local days [from, to] (both included) is the instant range
// [local midnight of from, local midnight of the day after to), in RFC 3339 UTC.

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

export function isDate(s: string | undefined): s is string {
  const m = s ? DATE_RE.exec(s) : null;
  if (!m) return false;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return d.getFullYear() === Number(m[1]) && d.getMonth() === Number(m[2]) - 1 && d.getDate() === Number(m[3]);
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** The local date of an instant, YYYY-MM-DD. */
export function localDate(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** date + n days (calendar days, DST-proof). */
export function addDays(date: string, n: number): string {
  const m = DATE_RE.exec(date);
  if (!m) throw new Error('not a date: ' + date);
  return localDate(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + n));
}

/** Local midnight starting `date`, as an RFC 3339 UTC instant. */
export function localMidnightIso(date: string): string {
  const m = DATE_RE.exec(date);
  if (!m) throw new Error('not a date: ' + date);
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).toISOString();
}

/** The API range of the local days from..to (both included). */
export function dayRange(from: string, to: string): { from: string; to: string } {
  return { from: localMidnightIso(from), to: localMidnightIso(addDays(to, 1)) };
}

/** The last `days` local days up to today: {from, to} as dates. */
export function lastDays(days: number, now = new Date()): { from: string; to: string } {
  const to = localDate(now);
  return { from: addDays(to, -(days - 1)), to };
}
