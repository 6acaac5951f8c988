/**
 * Benchmark results (format: bench/README.md): measurements only, never a verdict. Each benchmark
 * returns rows; the runner prints them with ratios against the first subject and writes
 * bench/results/NAME.json.
 */
import { cpus, release } from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Row {
  subject: string;
  metric: string;
  value: number;
}

export interface BenchOptions {
  /** Short run suitable for a smoke test (default false). */
  quick: boolean;
  /** Extra arguments after the benchmark name. */
  args: string[];
}

export interface BenchResult {
  bench: string;
  at: string;
  machine: string;
  rows: Row[];
}

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

export function machineDescription(): string {
  return `${cpus().length} cores, Linux ${release()}`;
}

export function writeResult(bench: string, rows: Row[]): BenchResult {
  const result: BenchResult = { bench, at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: machineDescription(), rows };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${bench}.json`), JSON.stringify(result, null, 2) + '\n');
  return result;
}

/** A table of every metric by subject, with each subject's ratio to `ambit` where both exist. */
export function formatTable(rows: Row[]): string {
  const metrics = [...new Set(rows.map((r) => r.metric))];
  const subjects = [...new Set(rows.map((r) => r.subject))];
  const value = (s: string, m: string) => rows.find((r) => r.subject === s && r.metric === m)?.value;
  const header = ['metric', ...subjects, ...subjects.filter((s) => s !== 'ambit').map((s) => `ambit/${s}`)];
  const body = metrics.map((m) => {
    const a = value('ambit', m);
    return [
      m,
      ...subjects.map((s) => fmt(value(s, m))),
      ...subjects.filter((s) => s !== 'ambit').map((s) => {
        const v = value(s, m);
        return a !== undefined && v !== undefined && v !== 0 ? `${(a / v).toFixed(2)}x` : '-';
      }),
    ];
  });
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((r) => (r[i] ?? '').length)));
  return [header, ...body].map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')).join('\n');
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '-';
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(3);
}
