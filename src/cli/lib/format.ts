/**
 * Text formatting shared by the operator commands: fixed-width tables that fit a terminal
 * (columns are shrunk, widest flexible column first, and cut with `…`, never wrapped), human
 * byte rates and durations.
 */

export interface Column {
  title: string;
  /** Right-align (numbers). */
  right?: boolean;
  /** May be shortened to fit (default false: kept whole). */
  flex?: boolean;
}

function cut(s: string, w: number): string {
  if (s.length <= w) return s;
  return w <= 1 ? s.slice(0, w) : `${s.slice(0, w - 1)}…`;
}

/** A table of `rows` at most `width` characters wide (two spaces between columns). */
export function table(columns: readonly Column[], rows: readonly string[][], width = 80): string {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? '').length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1);
  while (total() > width) {
    let widest = -1;
    for (let i = 0; i < columns.length; i++) if (columns[i]?.flex && (widest < 0 || (widths[i] as number) > (widths[widest] as number))) widest = i;
    if (widest < 0 || (widths[widest] as number) <= 6) break;
    widths[widest] = Math.max(6, (widths[widest] as number) - (total() - width));
  }
  const line = (cells: readonly string[]) => columns.map((c, i) => {
    const w = widths[i] as number;
    const v = cut(cells[i] ?? '', w);
    return c.right ? v.padStart(w) : v.padEnd(w);
  }).join('  ').trimEnd();
  return [line(columns.map((c) => c.title)), ...rows.map(line)].join('\n');
}

/** `1.2 MB/s`-style rate (decimal units, as network tools print). */
export function rate(bytesPerSecond: number): string {
  return `${bytes(bytesPerSecond)}/s`;
}

export function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${u === 0 ? Math.round(v) : v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

/** `3d4h`, `5h12m`, `42m`, `17s`, or `expired 3m ago`. */
export function duration(seconds: number): string {
  if (seconds < 0) return `expired ${duration(-seconds)} ago`;
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  if (m > 0) return `${m}m`;
  return `${Math.floor(seconds)}s`;
}
