/**
 * Benchmark results: rounds, their summary, and bench/results/NAME.json. Measurements only, never
 * a verdict (targets and their verdicts live in bench/lib/targets.ts and the generated README).
 *
 * Invariants:
 * - A benchmark measures its subjects in rounds interleaved across subjects (round 1: a, b, c;
 *   round 2: a, b, c; ...), so a noisy neighbour on these shared machines lands on every subject
 *   alike. `interleaved()` is that loop; a benchmark with phases (bulk, then rate) runs one
 *   `interleaved()` per phase inside its own round loop, which keeps the same order.
 * - Every round's value is kept (`values`, in round order); the summary is the median (the mean of
 *   the two middle values for an even count) and the range (min–max) over those rounds. Nothing
 *   reports a best run.
 * - `rounds` in the JSON is the largest number of values any metric has: what was run, not what
 *   was asked for (a metric measured once per run, such as an idle RSS, has one value).
 * - The JSON says whether it was a `--quick` run, and records the machine, the date, Node's and
 *   OpenSSL's versions.
 */
import { cpus, release, totalmem } from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchOptions {
  /** Short run suitable for a smoke test (default false). */
  quick: boolean;
  /** Rounds to run (default 3, 1 with `--quick`; `--rounds N`). */
  rounds: number;
  /** Extra arguments after the benchmark name (without `--quick` and `--rounds N`). */
  args: string[];
}

/** One value of one metric of one subject (the single-figure form a benchmark may still return). */
export interface Row {
  subject: string;
  metric: string;
  value: number;
}

/** One metric of one subject as written to the JSON. */
export interface ResultRow {
  subject: string;
  metric: string;
  /** Every round's value, in round order. */
  values: number[];
  median: number;
  min: number;
  max: number;
}

export interface BenchResult {
  bench: string;
  /** When the run ended (ISO 8601, seconds). */
  at: string;
  machine: string;
  /** Rounds run: the largest number of values of any row. */
  rounds: number;
  /** A `--quick` (smoke-test) run. */
  quick: boolean;
  node: string;
  openssl: string;
  rows: ResultRow[];
}

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/**
 * Per-round values of every (subject, metric), in the order first added. `add` appends one round's
 * value; a metric that is measured once per run is added once.
 */
export class Samples {
  private readonly series = new Map<string, { subject: string; metric: string; values: number[] }>();

  add(subject: string, metric: string, value: number): void {
    const k = `${subject}\u0000${metric}`;
    let s = this.series.get(k);
    if (s === undefined) {
      s = { subject, metric, values: [] };
      this.series.set(k, s);
    }
    s.values.push(value);
  }

  /** The values of one (subject, metric) so far (empty if none). */
  values(subject: string, metric: string): readonly number[] {
    return this.series.get(`${subject}\u0000${metric}`)?.values ?? [];
  }

  /** Rows grouped by metric (metrics in first-added order, subjects likewise within each). */
  rows(): ResultRow[] {
    const all = [...this.series.values()];
    const metrics = [...new Set(all.map((s) => s.metric))];
    return metrics.flatMap((m) => all.filter((s) => s.metric === m)).map((s) => summarize(s.subject, s.metric, s.values));
  }
}

/**
 * Runs `measure` for every subject in every round, interleaved: round 1 measures each subject in
 * order, then round 2 does, and so on. Progress goes to stderr as `<label>: round r/N: <subject>`.
 */
export async function interleaved<S extends { name: string } | string>(
  label: string,
  rounds: number,
  subjects: readonly S[],
  measure: (subject: S, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++) await interleavedRound(label, round, rounds, subjects, measure);
}

/** One round of `interleaved()`: for benchmarks whose round has several phases. */
export async function interleavedRound<S extends { name: string } | string>(
  label: string,
  round: number,
  rounds: number,
  subjects: readonly S[],
  measure: (subject: S, round: number) => Promise<void>,
): Promise<void> {
  for (const s of subjects) {
    process.stderr.write(`${label}: round ${round + 1}/${rounds}: ${typeof s === 'string' ? s : s.name}\n`);
    await measure(s, round);
  }
}

/** Median of `xs` (mean of the two middle values for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const lo = s[Math.floor((s.length - 1) / 2)] as number;
  const hi = s[Math.ceil((s.length - 1) / 2)] as number;
  return (lo + hi) / 2;
}

/** The `q` quantile (0..1) of ascending `sorted`, nearest rank; NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

export function summarize(subject: string, metric: string, values: readonly number[]): ResultRow {
  const vs = values.map(round6);
  const finite = vs.filter((v) => !Number.isNaN(v));
  return {
    subject,
    metric,
    values: vs,
    median: round6(median(vs)),
    min: finite.length === 0 ? Number.NaN : Math.min(...finite),
    max: finite.length === 0 ? Number.NaN : Math.max(...finite),
  };
}

/** Six significant digits: more than any of these measurements can tell apart. */
function round6(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(6)) : v;
}

export function machineDescription(): string {
  const cpu = cpus();
  return `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}`;
}

/** The result of a run; `rows` as returned by a benchmark (per-round samples or single figures). */
export function makeResult(bench: string, measured: Samples | Row[], quick: boolean): BenchResult {
  const rows = measured instanceof Samples ? measured.rows() : measured.map((r) => summarize(r.subject, r.metric, [r.value]));
  return {
    bench,
    at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine: machineDescription(),
    rounds: Math.max(0, ...rows.map((r) => r.values.length)),
    quick,
    node: process.versions.node,
    openssl: process.versions.openssl,
    rows,
  };
}

export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${result.bench}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  return file;
}

/**
 * A figure with three significant digits (thousands grouped, a true minus sign), for tables;
 * `integral` figures (counts, round thresholds) are written without decimals.
 */
export function fmt(v: number | undefined, integral = false): string {
  if (v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  const a = Math.abs(v);
  const sign = v < 0 ? '−' : '';
  if (a >= 1000 || integral) return `${sign}${Math.round(a).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',')}`;
  if (a >= 100) return `${sign}${a.toFixed(0)}`;
  if (a >= 10) return `${sign}${a.toFixed(1)}`;
  if (a >= 1) return `${sign}${a.toFixed(2)}`;
  return `${sign}${a.toPrecision(2)}`;
}

/** Metric names ending in a unit of measure (counts such as `client_hello_bytes` have none). */
const MEASURED_UNIT = /_(ms|us|s|gbps|mb|per_s|per_gb|per_req)$/;

/** `median (min–max)`, or the value alone for a single round; counts without decimals. */
export function fmtSummary(r: Pick<ResultRow, 'metric' | 'median' | 'min' | 'max' | 'values'> | undefined, unit = ''): string {
  if (r === undefined) return '–';
  const integral = !MEASURED_UNIT.test(r.metric) && r.values.every((v) => Number.isInteger(v)) && Number.isInteger(r.median);
  const f = (v: number) => fmt(v, integral);
  const m = `${f(r.median)}${unit}`;
  if (r.values.length < 2 || f(r.min) === f(r.max)) return m;
  return `${m} (${f(r.min)}–${f(r.max)}${unit})`;
}
