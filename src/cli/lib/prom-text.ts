/**
 * A reader of the Prometheus text exposition format (what the agents serve on /metrics): enough
 * for `ambit top` to sum counters by label. Comments, HELP/TYPE lines and timestamps are skipped;
 * label values are unescaped (\\, \", \n).
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    while (text[i] === ',' || text[i] === ' ') i++;
    const eq = text.indexOf('=', i);
    if (eq < 0) break;
    const key = text.slice(i, eq).trim();
    i = eq + 1;
    if (text[i] !== '"') break;
    i++;
    let v = '';
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < text.length) {
        const n = text[i + 1];
        v += n === 'n' ? '\n' : n;
        i += 2;
      } else {
        v += text[i];
        i++;
      }
    }
    i++;
    out[key] = v;
  }
  return out;
}

/** Every sample of a scrape. Malformed lines are skipped (a scrape is never fatal). */
export function parsePromText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = line.lastIndexOf('}');
      if (close < brace) continue;
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close));
      rest = line.slice(close + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = Number(rest.split(/\s+/)[0]);
    if (rest === '' || Number.isNaN(value)) continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** Sum of `name` over samples whose labels include `match`, grouped by `by` (joined with `\u0000`). */
export function sumBy(samples: readonly Sample[], name: string, by: readonly string[] = [], match: Record<string, string> = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    const key = by.map((b) => s.labels[b] ?? '').join('\u0000');
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/** Total of `name` over samples whose labels include `match`. */
export function total(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return sumBy(samples, name, [], match).get('') ?? 0;
}
