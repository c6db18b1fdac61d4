// Folding the API's rentals per UTC hour (stats per_hour) into the viewer's local time:
// a count per local hour of the day (0..23) and a count per local day (YYYY-MM-DD),
// with Intl so that daylight-saving changes are right. `timeZone` undefined = the
// browser's zone; the tests pass a fixed one.

export interface HourCount {
  hour: string;
  count: number;
}

function parts(d: Date, fmt: Intl.DateTimeFormat): { day: string; hour: number } {
  const p: Record<string, string> = {};
  for (const x of fmt.formatToParts(d)) p[x.type] = x.value;
  const hour = Number(p.hour) % 24; // some engines say 24 for midnight with hour12:false
  return { day: `${p.year}-${p.month}-${p.day}`, hour };
}

function formatter(timeZone?: string): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat('en-US', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23',
  });
}

/** Rentals per local hour of the day: 24 counts. */
export function foldHoursOfDay(perHour: HourCount[], timeZone?: string): number[] {
  const out = new Array<number>(24).fill(0);
  const fmt = formatter(timeZone);
  for (const h of perHour) {
    const d = new Date(h.hour);
    if (Number.isNaN(d.getTime())) continue;
    out[parts(d, fmt).hour] += h.count;
  }
  return out;
}

/**
 * Rentals per local day, every day from the local day of `from` to that of `to` (exclusive end)
 * present (zeros included), oldest first.
 */
export function foldDays(perHour: HourCount[], from: string, to: string, timeZone?: string): { day: string; count: number }[] {
  const fmt = formatter(timeZone);
  const counts = new Map<string, number>();
  const start = Date.parse(from);
  const end = Date.parse(to);
  if (Number.isFinite(start) && Number.isFinite(end) && end > start) {
    // step by hours so that every local day in the range is met (23/25 h days included)
    const last = parts(new Date(end - 1), fmt).day;
    for (let t = start; ; t += 3600_000) {
      const day = parts(new Date(Math.min(t, end - 1)), fmt).day;
      if (!counts.has(day)) counts.set(day, 0);
      if (day === last || t >= end) break;
    }
  }
  for (const h of perHour) {
    const d = new Date(h.hour);
    if (Number.isNaN(d.getTime())) continue;
    const day = parts(d, fmt).day;
    counts.set(day, (counts.get(day) ?? 0) + h.count);
  }
  return [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([day, count]) => ({ day, count }));
}

/** The browser's time zone name, for the "times are local" note. */
export function localZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local';
  } catch {
    return 'local';
  }
}
