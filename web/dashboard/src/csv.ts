// CSV (RFC 4180) built in the browser for the history export. Every cell is quoted
// when it holds a quote, comma or line break (quotes doubled). Cells a spreadsheet would
// read as a formula (starting with = + - @, or a tab / carriage return) get a leading
// apostrophe, so "=HYPERLINK(…)" typed somewhere upstream stays text (CSV injection).
// Phones are written "'+972…" for that reason (the apostrophe is hidden by spreadsheets).

export function csvCell(v: string | number | boolean | null | undefined): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  if (/[",\r\n]/.test(s)) s = '"' + s.replace(/"/g, '""') + '"';
  return s;
}

/** Lines joined by CRLF, ending with one; a UTF-8 BOM first so that Excel reads Hebrew. */
export function buildCsv(header: string[], rows: (string | number | boolean | null | undefined)[][]): string {
  const lines = [header, ...rows].map((r) => r.map(csvCell).join(','));
  return '\uFEFF' + lines.join('\r\n') + '\r\n';
}

/** rentals-<branch code>-<from>-<to>.csv, with anything outside [A-Za-z0-9_-] in the code replaced. */
export function csvFileName(branchCode: string, from: string, to: string): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');
  return `rentals-${safe(branchCode)}-${safe(from)}-${safe(to)}.csv`;
}
