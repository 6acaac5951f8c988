/**
 * What bench/README.md shows beside each benchmark's measurements, declared as data: the
 * comparisons between subjects that get a column (ratios, added latency) and the targets.
 *
 * Invariants:
 * - A comparison or a target is computed from the medians (ambit's median over the peer's
 *   median), never from a best round. Its range is over the rounds, each round's ambit value
 *   against the same round's peer value (the rounds are interleaved, so a round's pair saw the
 *   same machine); it is shown only when both sides have the same number of rounds.
 * - A target is "met" only when the median meets it. The range is context, never the verdict.
 */
import type { BenchResult, ResultRow } from './report.js';

export type Op = 'ratio' | 'minus';

/** A column: `of` against `vs` (`of / vs` for a ratio, `of − vs` for a difference). */
export interface Comparison {
  of: string;
  vs: string;
  op: Op;
  /** Only these metrics (default: every metric both subjects have). */
  metrics?: readonly string[];
}

export interface Target {
  metric: string;
  subject: string;
  /** Compared against this subject with `op` (default: the subject's own median). */
  vs?: string;
  op?: Op;
  cmp: '<=' | '>=';
  threshold: number;
  /** What the threshold is written with: '×', ' ms', ' MB', ... (default ''). */
  unit?: string;
}

export interface BenchSpec {
  /** Column order of these subjects (default: the order the results list them; others follow). */
  subjects?: readonly string[];
  comparisons: readonly Comparison[];
  targets: readonly Target[];
}

const added = (of: string, metrics: readonly string[]): Comparison => ({ of, vs: 'direct', op: 'minus', metrics });

export const BENCH_SPECS: Readonly<Record<string, BenchSpec>> = {
  model: {
    comparisons: [],
    targets: [
      { metric: 'compile_ms', subject: 'ambit', cmp: '<=', threshold: 500, unit: ' ms' },
      { metric: 'incremental_ms', subject: 'ambit', cmp: '<=', threshold: 5, unit: ' ms' },
      { metric: 'l4_decisions_per_s', subject: 'ambit', cmp: '>=', threshold: 500_000 },
    ],
  },
  tunnel: {
    subjects: ['ambit', 'ambit-x25519', 'stunnel', 'tcp-relay', 'direct'],
    comparisons: [
      { of: 'ambit', vs: 'stunnel', op: 'ratio' },
      { of: 'ambit', vs: 'ambit-x25519', op: 'ratio', metrics: ['setup_ms'] },
      added('ambit', ['p50_ms', 'p99_ms']),
      added('stunnel', ['p50_ms', 'p99_ms']),
      added('tcp-relay', ['p50_ms', 'p99_ms']),
    ],
    targets: [
      { metric: 'throughput_gbps', subject: 'ambit', vs: 'stunnel', op: 'ratio', cmp: '>=', threshold: 1, unit: '×' },
      { metric: 'p50_ms', subject: 'ambit', vs: 'direct', op: 'minus', cmp: '<=', threshold: 0.2, unit: ' ms' },
    ],
  },
  capture: {
    comparisons: [{ of: 'ambit', vs: 'direct', op: 'ratio' }],
    targets: [],
  },
  control: {
    comparisons: [],
    targets: [
      { metric: 'push_p99_ms', subject: 'ambit', cmp: '<=', threshold: 100, unit: ' ms' },
      { metric: 'rss_mb', subject: 'ambit', cmp: '<=', threshold: 300, unit: ' MB' },
    ],
  },
  mesh: {
    subjects: ['ambit', 'stunnel', 'tcp-relay', 'direct'],
    comparisons: [
      { of: 'ambit', vs: 'stunnel', op: 'ratio', metrics: ['throughput_gbps', 'p50_ms', 'p99_ms'] },
      added('ambit', ['p50_ms', 'p99_ms']),
      added('stunnel', ['p50_ms', 'p99_ms']),
      added('tcp-relay', ['p50_ms', 'p99_ms']),
    ],
    targets: [
      { metric: 'throughput_gbps', subject: 'ambit', vs: 'stunnel', op: 'ratio', cmp: '>=', threshold: 1, unit: '×' },
      { metric: 'rss_mb_50_pods', subject: 'ambit', cmp: '<=', threshold: 80, unit: ' MB' },
      { metric: 'p99_ms', subject: 'ambit', vs: 'direct', op: 'minus', cmp: '<=', threshold: 1, unit: ' ms' },
    ],
  },
  waypoint: {
    comparisons: [{ of: 'ambit', vs: 'haproxy', op: 'ratio' }, { of: 'ambit', vs: 'nginx', op: 'ratio' }],
    targets: [
      { metric: 'rps', subject: 'ambit', vs: 'haproxy', op: 'ratio', cmp: '>=', threshold: 0.5, unit: '×' },
      { metric: 'p99_ms', subject: 'ambit', vs: 'haproxy', op: 'ratio', cmp: '<=', threshold: 2, unit: '×' },
    ],
  },
  'tls-handshake': {
    comparisons: [{ of: 'ambit', vs: 'x25519', op: 'ratio' }, { of: 'pq_to_classical', vs: 'x25519', op: 'ratio' }],
    targets: [],
  },
  'fuzz-h1': { comparisons: [], targets: [] },
};

/** A comparison's figure from the medians, and its range over paired rounds (if they pair). */
export interface Compared {
  value: number;
  min?: number;
  max?: number;
}

function apply(op: Op, a: number, b: number): number {
  return op === 'ratio' ? (b === 0 ? Number.NaN : a / b) : a - b;
}

export function row(result: BenchResult, subject: string, metric: string): ResultRow | undefined {
  return result.rows.find((r) => r.subject === subject && r.metric === metric);
}

/** `of` against `vs` on `metric`; undefined when either was not measured. */
export function compare(result: BenchResult, of: string, vs: string, op: Op, metric: string): Compared | undefined {
  const a = row(result, of, metric);
  const b = row(result, vs, metric);
  if (a === undefined || b === undefined) return undefined;
  const value = apply(op, a.median, b.median);
  if (a.values.length < 2 || a.values.length !== b.values.length) return { value };
  const per = a.values.map((v, i) => apply(op, v, b.values[i] as number)).filter((v) => !Number.isNaN(v));
  return per.length === 0 ? { value } : { value, min: Math.min(...per), max: Math.max(...per) };
}

export interface Verdict {
  target: Target;
  /** The median figure the target is judged on (undefined: not measured in this run). */
  figure: Compared | undefined;
  met: boolean;
}

export function judge(result: BenchResult, t: Target): Verdict {
  let figure: Compared | undefined;
  if (t.vs === undefined) {
    const r = row(result, t.subject, t.metric);
    figure = r === undefined ? undefined : r.values.length < 2 ? { value: r.median } : { value: r.median, min: r.min, max: r.max };
  } else {
    figure = compare(result, t.subject, t.vs, t.op ?? 'ratio', t.metric);
  }
  const v = figure?.value;
  const met = v !== undefined && !Number.isNaN(v) && (t.cmp === '<=' ? v <= t.threshold : v >= t.threshold);
  return { target: t, figure, met };
}
