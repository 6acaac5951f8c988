/**
 * The tables of bench/README.md, generated from bench/results/*.json (`npm run bench -- readme`
 * rewrites them; test/unit/bench/readme.test.ts fails when they differ from the JSON).
 *
 * Invariants:
 * - Everything between `<!-- results:NAME -->` and `<!-- /results:NAME -->` is generated: the
 *   run's provenance (date, rounds, --quick, machine, Node, OpenSSL), every metric as
 *   `median (min–max)` over its rounds, the comparisons and targets of bench/lib/targets.ts.
 *   Text outside the markers is prose and is never touched.
 * - A results file written before rounds were recorded (rows with a single `value`) is shown as
 *   what it is: single figures, rounds and --quick unknown.
 * - The output depends only on the JSON and the specs (no clock, no locale), so the check is exact.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, fmtSummary, RESULTS_DIR, summarize, type BenchResult, type ResultRow } from './report.js';
import { BENCH_SPECS, compare, judge, type BenchSpec, type Comparison, type Compared, type Verdict } from './targets.js';

export const README_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'README.md');

/** A results file as read: `legacy` when it predates recorded rounds. */
export interface LoadedResult {
  result: BenchResult;
  legacy: boolean;
}

interface LegacyFile {
  bench: string;
  at: string;
  machine: string;
  rows: Array<{ subject: string; metric: string; value: number }>;
}

export function parseResult(text: string): LoadedResult {
  const raw = JSON.parse(text) as Partial<BenchResult> & Partial<LegacyFile>;
  if (typeof raw.rounds === 'number') return { result: raw as BenchResult, legacy: false };
  const old = raw as LegacyFile;
  return {
    legacy: true,
    result: { bench: old.bench, at: old.at, machine: old.machine, rounds: 1, quick: false, node: '', openssl: '', rows: old.rows.map((r) => summarize(r.subject, r.metric, [r.value])) },
  };
}

/** Every bench/results/NAME.json by NAME. */
export function loadResults(dir = RESULTS_DIR): Map<string, LoadedResult> {
  const out = new Map<string, LoadedResult>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) out.set(f.slice(0, -'.json'.length), parseResult(readFileSync(join(dir, f), 'utf8')));
  return out;
}

const OP_SIGN = { ratio: '/', minus: '−' } as const;

function comparisonHeader(c: Comparison): string {
  return c.op === 'ratio' ? `${c.of}/${c.vs}` : `${c.of} − ${c.vs}`;
}

function fmtCompared(c: Compared | undefined, unit: string): string {
  if (c === undefined) return '';
  if (Number.isNaN(c.value)) return '–';
  const v = `${fmt(c.value)}${unit}`;
  if (c.min === undefined || c.max === undefined || fmt(c.min) === fmt(c.max)) return v;
  return `${v} (${fmt(c.min)}–${fmt(c.max)}${unit})`;
}

/** The metrics table: one row per metric, a column per subject, then the spec's comparisons. */
export function renderTable(result: BenchResult, spec: BenchSpec = { comparisons: [], targets: [] }): string {
  const metrics = [...new Set(result.rows.map((r) => r.metric))];
  const seen = [...new Set(result.rows.map((r) => r.subject))];
  const subjects = [...(spec.subjects ?? []).filter((s) => seen.includes(s)), ...seen.filter((s) => !(spec.subjects ?? []).includes(s))];
  const get = (s: string, m: string): ResultRow | undefined => result.rows.find((r) => r.subject === s && r.metric === m);
  const applies = (c: Comparison, m: string) => (c.metrics === undefined || c.metrics.includes(m)) && get(c.of, m) !== undefined && get(c.vs, m) !== undefined;
  const comparisons = spec.comparisons.filter((c) => metrics.some((m) => applies(c, m)));
  const header = ['metric', ...subjects, ...comparisons.map(comparisonHeader)];
  const body = metrics.map((m) => [
    m,
    ...subjects.map((s) => fmtSummary(get(s, m))),
    ...comparisons.map((c) => (applies(c, m) ? fmtCompared(compare(result, c.of, c.vs, c.op, m), c.op === 'ratio' ? '×' : '') : '')),
  ]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...body.map(line)].join('\n');
}

/** One target's line; `judged` false for an older-format result (no medians to judge). */
export function renderVerdict(v: Verdict, judged = true): string {
  const t = v.target;
  const unit = t.unit ?? '';
  const what = t.vs === undefined ? `${t.subject} ${t.metric}` : `${t.metric} ${t.subject} ${OP_SIGN[t.op ?? 'ratio']} ${t.vs}`;
  const goal = `${what} ${t.cmp === '<=' ? '≤' : '≥'} ${fmt(t.threshold, Number.isInteger(t.threshold))}${unit}`;
  if (!judged) return `- ${goal}: not judged (no medians in this result)`;
  if (v.figure === undefined || Number.isNaN(v.figure.value)) return `- ${goal}: not measured in this run`;
  const range = v.figure.min !== undefined && v.figure.max !== undefined ? `; rounds ${fmt(v.figure.min)}–${fmt(v.figure.max)}${unit}` : '';
  return `- ${goal}: **${v.met ? 'met' : 'not met'}** (median ${fmt(v.figure.value)}${unit}${range})`;
}

function provenance(name: string, loaded: LoadedResult): string {
  const r = loaded.result;
  const source = `bench/results/${name}.json`;
  if (loaded.legacy) {
    return `${source}, ${r.at}, ${r.machine}: recorded in the older format: one figure per metric, not a median over recorded rounds, and neither the number of rounds nor whether it was a \`--quick\` run was recorded. The next full run replaces it.`;
  }
  const kind = r.quick ? '**a `--quick` run** (a smoke test, not a full run)' : 'a full run';
  const rounds = `${r.rounds} round${r.rounds === 1 ? '' : 's'}`;
  return `${source}: ${kind}, ${rounds}, ${r.at}, ${r.machine}, Node ${r.node}, OpenSSL ${r.openssl}. Each figure: median over the rounds (min–max over the rounds).`;
}

/** The generated text of one block (between the markers). */
export function renderBlock(name: string, loaded: LoadedResult | undefined): string {
  const spec = BENCH_SPECS[name] ?? { comparisons: [], targets: [] };
  if (loaded === undefined) return `No results recorded yet: run \`npm run bench -- ${name}\`, then \`npm run bench -- readme\`.`;
  const parts = [provenance(name, loaded), '', renderTable(loaded.result, spec)];
  if (spec.targets.length > 0) {
    const head = loaded.legacy ? 'Targets (judged on the median once a run records its rounds):' : 'Targets, judged on the median:';
    parts.push('', head, '', ...spec.targets.map((t) => renderVerdict(judge(loaded.result, t), !loaded.legacy)));
  }
  return parts.join('\n');
}

const BLOCK = /(<!-- results:([a-z0-9-]+) -->\n)([\s\S]*?\n)??(<!-- \/results:\2 -->)/g;

/** The names of the generated blocks in `text`, in order. */
export function blockNames(text: string): string[] {
  return [...text.matchAll(BLOCK)].map((m) => m[2] as string);
}

/** `text` with every generated block rewritten from `results`. */
export function updateReadme(text: string, results: Map<string, LoadedResult>): string {
  return text.replace(BLOCK, (_all, open: string, name: string, _old: string | undefined, close: string) => `${open}${renderBlock(name, results.get(name))}\n${close}`);
}

/** `npm run bench -- readme [--check]`: rewrites bench/README.md's tables (or exits 1 if stale). */
export function main(args: string[]): void {
  const text = readFileSync(README_PATH, 'utf8');
  const results = loadResults();
  const missing = [...results.keys()].filter((n) => !blockNames(text).includes(n));
  if (missing.length > 0) process.stderr.write(`bench/README.md has no <!-- results:NAME --> block for: ${missing.join(', ')}\n`);
  const next = updateReadme(text, results);
  if (args.includes('--check')) {
    if (next !== text || missing.length > 0) {
      process.stderr.write('bench/README.md does not match bench/results/*.json: run `npm run bench -- readme`\n');
      process.exitCode = 1;
    }
    return;
  }
  if (next !== text) writeFileSync(README_PATH, next);
  process.stdout.write(`bench/README.md: ${blockNames(text).length} tables from bench/results/*.json${next === text ? ' (unchanged)' : ''}\n`);
}
