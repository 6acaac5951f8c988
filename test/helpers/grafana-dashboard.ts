/**
 * Reads a Grafana dashboard's queries and fills in its template variables the way Grafana's
 * Prometheus data source does, so the e2e tests can run a real dashboard's PromQL against a real
 * Prometheus:
 *
 * - `query` variables (`query_result(<PromQL>)` with a capture regex) are resolved in dashboard
 *   order by running their PromQL, formatting each series as Grafana does
 *   (`name{k="v", ...} value ts`) and keeping the regex's first group, de-duplicated;
 * - `custom` variables take their comma-separated options;
 * - a multi-value or include-All variable expands to its selected values, each regex-escaped,
 *   joined as `(a|b)` (one value: the escaped value alone); "All" without `allValue` selects every
 *   option, as Grafana does; a single-value variable is inserted as is;
 * - the built-in intervals (`$__rate_interval`, `$__interval`, `$__range`, ...) become fixed
 *   durations.
 */
import { readFileSync } from 'node:fs';

export interface DashboardQuery { dashboard: string; panel: string; expr: string }

interface Panel { title?: string; targets?: { expr?: string }[]; panels?: Panel[] }
interface Variable { name: string; type: string; query?: string | { query?: string }; regex?: string; multi?: boolean; includeAll?: boolean; allValue?: string | null }
interface Dashboard { panels?: Panel[]; rows?: { panels?: Panel[] }[]; templating?: { list?: Variable[] } }

export class GrafanaDashboard {
  readonly variables: Variable[];
  readonly queries: DashboardQuery[] = [];
  /** The queries of each panel that has any (titles need not be unique). */
  private readonly byPanel: DashboardQuery[][] = [];

  /** `rewrite` (default none) edits each query and variable query before use, keeping the layout. */
  constructor(readonly file: string, path: string, rewrite: (promql: string) => string = (q) => q) {
    const d = JSON.parse(readFileSync(path, 'utf8'), (k, v: unknown) => (k === 'expr' || k === 'query') && typeof v === 'string' ? rewrite(v) : v) as Dashboard;
    this.variables = d.templating?.list ?? [];
    const walk = (ps: Panel[]) => {
      for (const p of ps) {
        const qs = (p.targets ?? []).filter((t) => t.expr !== undefined && t.expr.trim() !== '').map((t) => ({ dashboard: file, panel: p.title ?? '', expr: t.expr as string }));
        if (qs.length > 0) { this.byPanel.push(qs); this.queries.push(...qs); }
        walk(p.panels ?? []);
      }
    };
    walk(d.panels ?? []);
    for (const r of d.rows ?? []) walk(r.panels ?? []);
  }

  /** The queries of each panel that has any. */
  panels(): readonly DashboardQuery[][] {
    return this.byPanel;
  }

  /**
   * Resolves every variable in order. `pick` chooses the value of a single-value variable from
   * its options (undefined: the first option); multi-value and include-All variables select
   * every option.
   */
  async resolve(run: (promql: string) => Promise<{ metric: Record<string, string>; value: [number, string] }[]>, pick: Record<string, string> = {}): Promise<Values> {
    const values: Values = new Map();
    for (const v of this.variables) {
      let options: string[];
      if (v.type === 'custom') {
        options = String(typeof v.query === 'string' ? v.query : v.query?.query ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
      } else if (v.type === 'query') {
        const q = typeof v.query === 'string' ? v.query : v.query?.query ?? '';
        const m = /^\s*query_result\(([\s\S]*)\)\s*$/.exec(q);
        if (m === null) throw new Error(`variable ${v.name}: only query_result(...) queries are supported, got ${q}`);
        const series = await run(interpolate(m[1] as string, values));
        const re = v.regex !== undefined && v.regex !== '' ? toRegExp(v.regex) : undefined;
        options = [];
        for (const s of series) {
          const { __name__: name, ...labels } = s.metric;
          const text = `${name ?? ''}{${Object.entries(labels).map(([k, x]) => `${k}="${x}"`).join(', ')}} ${s.value[1]} ${Math.round(s.value[0] * 1000)}`;
          const hit = re === undefined ? text : re.exec(text)?.[1];
          if (hit !== undefined && !options.includes(hit)) options.push(hit);
        }
      } else {
        continue; // datasource, interval, textbox: not used by the queries here
      }
      const multi = v.multi === true || v.includeAll === true;
      if (multi) {
        values.set(v.name, { multi: true, values: options, options });
      } else {
        const want = pick[v.name];
        if (want !== undefined && !options.includes(want)) throw new Error(`variable ${v.name}: ${want} is not among its options ${JSON.stringify(options)}`);
        const chosen = want ?? options[0];
        values.set(v.name, { multi: false, values: chosen === undefined ? [] : [chosen], options });
      }
    }
    return values;
  }
}

export type Values = Map<string, { multi: boolean; values: string[]; options: string[] }>;

/** Grafana's built-in interval variables, as fixed durations. */
const BUILTINS: Record<string, string> = { __rate_interval: '1m', __interval: '1m', __range: '5m', __range_s: '300', __interval_ms: '60000' };

/** Grafana's `prometheusSpecialRegexEscape`: a value made safe inside `=~"..."`. */
function regexEscape(v: string): string {
  return v.replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&');
}

/** `$name`, `${name}` and `[[name]]` replaced by their values, as Grafana's Prometheus source does. */
export function interpolate(expr: string, values: Values): string {
  return expr.replace(/\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c) as string;
    const builtin = BUILTINS[name];
    if (builtin !== undefined) return builtin;
    const v = values.get(name);
    if (v === undefined) return whole;
    if (!v.multi) return v.values[0] ?? '';
    const escaped = v.values.map(regexEscape);
    return escaped.length === 1 ? (escaped[0] as string) : `(${escaped.join('|')})`;
  });
}

/** A Grafana regex option (`/body/flags`) as a RegExp. */
function toRegExp(s: string): RegExp {
  const m = /^\/(.*)\/([gimsuy]*)$/.exec(s);
  return m === null ? new RegExp(s) : new RegExp(m[1] as string, (m[2] as string).replace('g', ''));
}
