/**
 * Durations as Istio and the Gateway API write them: Go-style sequences of a decimal number and a
 * unit (`1.5s`, `100ms`, `1m30s`, `2h`). Protobuf JSON durations (`1.5s`) are a subset.
 * Parsing is exact to the microsecond and never throws.
 */

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds of a duration string, or undefined when it is not a valid duration. `0` alone is valid. */
export function parseDurationMs(text: string): number | undefined {
  if (text === '0') return 0;
  if (text.length === 0 || text.length > 64) return undefined;
  let total = 0;
  let pos = 0;
  PART.lastIndex = 0;
  while (pos < text.length) {
    PART.lastIndex = pos;
    const m = PART.exec(text);
    if (m === null) return undefined;
    const unit = UNIT_MS[m[2] as string];
    if (unit === undefined) return undefined;
    total += Number(m[1]) * unit;
    pos = PART.lastIndex;
  }
  return Math.round(total * 1000) / 1000;
}

/** Formats milliseconds back as a compact duration (`1500` → `1.5s`, `250` → `250ms`). */
export function formatDurationMs(ms: number): string {
  if (ms >= 1000 && ms % 1 === 0 && ms % 1000 !== 0 && ms < 60_000) return `${ms / 1000}s`;
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
