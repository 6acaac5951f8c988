/**
 * `npm run bench -- fuzz-h1 [--quick] [--runs N] [--seed S] [--side requests|responses] [--survey] [--path P]`:
 * the differential fuzz of test/unit/waypoint/h1-differential.test.ts run long. It uses the same
 * generators, loopback runners and oracle (test/unit/waypoint/h1-differential-cases.ts), but any
 * seed and many more cases: the waypoint's HTTP/1.1 codec (H1Server for requests, H1Pool for
 * responses) against node:http's strict llhttp.
 *
 * Not a benchmark and never part of `npm test`: the rows are counts (cases, failing, stricter,
 * hangs) and cases/s, and a FAIL sets the exit code to 1. Rounds do not apply: it is one run
 * (`--rounds` is ignored, and the results JSON records `rounds: 1`).
 * - Default: fast-check stops at the first FAIL and shrinks it; the counterexample is printed
 *   with `--seed`/`--path` to replay exactly that case.
 * - `--survey`: no stopping, no shrinking; every FAIL is counted under a short label and the
 *   first input of each label is printed (what a run finds, not only its first find).
 * Options: `--runs` cases per side (default 10,000; `--quick` 500), `--seed` (default random,
 * printed), `--side` one side only (default both), `--path` fast-check's replay path (with
 * `--seed`).
 */
import fc from 'fast-check';
import type { BenchOptions, Row } from './lib/report.js';
import {
  RequestDifferential, ResponseDifferential, Tally, compare, differentialProperty, requestCases, responseCases,
  type Pair, type WireCase,
} from '../test/unit/waypoint/h1-differential-cases.js';

interface Options {
  runs: number;
  seed: number;
  sides: ('requests' | 'responses')[];
  survey: boolean;
  path: string | undefined;
}

function parse(o: BenchOptions): Options {
  const value = (name: string): string | undefined => {
    const i = o.args.indexOf(name);
    return i === -1 ? undefined : o.args[i + 1];
  };
  const side = value('--side');
  if (side !== undefined && side !== 'requests' && side !== 'responses') throw new Error(`--side must be requests or responses, not ${JSON.stringify(side)}`);
  const runs = Number(value('--runs') ?? (o.quick ? 500 : 10_000));
  const seed = Number(value('--seed') ?? Math.floor(Math.random() * 2 ** 31));
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(seed)) throw new Error('--seed must be an integer');
  return { runs, seed, sides: side === undefined ? ['requests', 'responses'] : [side], survey: o.args.includes('--survey'), path: value('--path') };
}

interface Differential {
  run(c: WireCase): Promise<Pair>;
  close(): Promise<void>;
}

/** Prints a progress line every `every` cases. */
function progress(side: string, tally: Tally, total: number, started: number): void {
  const every = Math.max(100, Math.floor(total / 20));
  if (tally.runs % every !== 0) return;
  const s = (performance.now() - started) / 1000;
  process.stderr.write(`  ${side}: ${tally.runs}/${total} cases, ${tally.failures.size} failing label(s), ${(tally.runs / s).toFixed(0)} cases/s\n`);
}

async function fuzzSide(side: 'requests' | 'responses', o: Options): Promise<{ tally: Tally; seconds: number; failed: boolean }> {
  const diff: Differential = side === 'requests' ? await RequestDifferential.start() : await ResponseDifferential.start();
  const arb = side === 'requests' ? requestCases() : responseCases();
  const tally = new Tally();
  const started = performance.now();
  let failed = false;
  try {
    const params: fc.Parameters<[WireCase]> = { seed: o.seed, numRuns: o.runs, includeErrorInReport: true, ...(o.path !== undefined ? { path: o.path } : {}) };
    if (o.survey) {
      await fc.assert(fc.asyncProperty(arb, async (c) => {
        const p = await diff.run(c);
        tally.add(c, p, compare(p));
        progress(side, tally, o.runs, started);
      }), params);
      failed = tally.failures.size > 0;
    } else {
      const property = differentialProperty(arb, diff, tally).afterEach(() => progress(side, tally, o.runs, started));
      const details = await fc.check(property, params);
      if (details.failed) {
        failed = true;
        const err = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
        process.stdout.write(`\n${side}: FAIL after ${details.numRuns} case(s), shrunk ${details.numShrinks} time(s); replay with --side ${side} --seed ${details.seed} --path ${details.counterexamplePath ?? ''}\n${err}\n`);
      }
    }
  } finally {
    await diff.close();
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`\n${tally.summary(`${side} (seed ${o.seed})`)}\n`);
  for (const [label, e] of tally.failures) process.stdout.write(`\nFAIL x${e.count}: ${label}\n${e.example}\n`);
  return { tally, seconds, failed };
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const o = parse(opts);
  process.stdout.write(`fuzz-h1: seed ${o.seed}, ${o.runs} case(s) per side${o.survey ? ', survey' : ''}\n`);
  const rows: Row[] = [];
  for (const side of o.sides) {
    const { tally, seconds, failed } = await fuzzSide(side, o);
    if (failed) process.exitCode = 1;
    let failing = 0;
    for (const e of tally.failures.values()) failing += e.count;
    rows.push(
      { subject: 'ambit', metric: `${side}_cases`, value: tally.runs },
      { subject: 'ambit', metric: `${side}_failing`, value: failing },
      { subject: 'ambit', metric: `${side}_stricter`, value: tally.stricterCount },
      { subject: 'ambit', metric: `${side}_hangs`, value: tally.hangs.length },
      { subject: 'ambit', metric: `${side}_cases_per_s`, value: tally.runs / seconds },
    );
  }
  return rows;
}
