/**
 * bench/README.md's tables are generated from bench/results/*.json (bench/lib/readme.ts): these
 * tests fail when the README drifts from the data, and pin the rules the tables follow (median
 * and range over the rounds, targets judged on the median only, rounds interleaved).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { blockNames, loadResults, parseResult, README_PATH, renderBlock, renderTable, updateReadme } from '../../../bench/lib/readme.js';
import { interleaved, makeResult, median, Samples, summarize, type BenchResult } from '../../../bench/lib/report.js';
import { BENCH_SPECS, compare, judge } from '../../../bench/lib/targets.js';

const fix = 'run `npm run bench -- readme` to regenerate bench/README.md from bench/results/*.json';

test('bench/README.md tables match bench/results/*.json', (t) => {
  const text = readFileSync(README_PATH, 'utf8');
  t.is(updateReadme(text, loadResults()), text, fix);
});

test('every results file has a table in bench/README.md, and every table a spec', (t) => {
  const names = blockNames(readFileSync(README_PATH, 'utf8'));
  for (const bench of loadResults().keys()) t.true(names.includes(bench), `bench/README.md has no <!-- results:${bench} --> block`);
  for (const name of names) t.not(BENCH_SPECS[name], undefined, `bench/lib/targets.ts has no spec for ${name}`);
  t.is(new Set(names).size, names.length, 'a results block appears twice');
});

function result(rows: Array<[string, string, number[]]>, over: Partial<BenchResult> = {}): BenchResult {
  return {
    bench: 'tunnel', at: '2026-12-03T18:00:00Z', machine: '2 cores', rounds: 3, quick: false, node: '24.0.0', openssl: '3.5.0',
    rows: rows.map(([s, m, v]) => summarize(s, m, v)), ...over,
  };
}

test('a target is met only when the median meets it, whatever the best round', (t) => {
  const target = { metric: 'throughput_gbps', subject: 'ambit', vs: 'stunnel', op: 'ratio' as const, cmp: '>=' as const, threshold: 1, unit: '×' };
  const best = result([['ambit', 'throughput_gbps', [0.94, 1.25, 0.97]], ['stunnel', 'throughput_gbps', [1, 1, 1]]]);
  const v = judge(best, target);
  t.false(v.met);
  t.is(v.figure?.value, 0.97);
  t.deepEqual([v.figure?.min, v.figure?.max], [0.94, 1.25]);
  t.true(judge(result([['ambit', 'throughput_gbps', [1.01, 0.9, 1.2]], ['stunnel', 'throughput_gbps', [1, 1, 1]]]), target).met);
  t.false(judge(result([['stunnel', 'throughput_gbps', [1]]]), target).met, 'a target not measured is not met');
});

test('ratios come from the medians; their range pairs each round with the same round', (t) => {
  const r = result([['ambit', 'rps', [10, 30, 20]], ['haproxy', 'rps', [20, 20, 40]]]);
  t.deepEqual(compare(r, 'ambit', 'haproxy', 'ratio', 'rps'), { value: 20 / 20, min: 0.5, max: 1.5 });
  t.deepEqual(compare(r, 'ambit', 'haproxy', 'minus', 'rps'), { value: 0, min: -20, max: 10 });
  const unpaired = result([['ambit', 'rps', [10, 30, 20]], ['haproxy', 'rps', [20]]]);
  t.deepEqual(compare(unpaired, 'ambit', 'haproxy', 'ratio', 'rps'), { value: 1 });
});

test('tables show median and range over the rounds, and say which run it was', (t) => {
  const r = result([['ambit', 'setup_ms', [3, 5, 4]], ['ambit-x25519', 'setup_ms', [2, 2, 2]], ['stunnel', 'rps', [100]]]);
  const table = renderTable(r, BENCH_SPECS['tunnel']);
  t.regex(table, /\| setup_ms \| 4\.00 \(3\.00–5\.00\) \| 2\.00 \| – \| 2\.00× \(1\.50–2\.50×\) \|/);
  const full = renderBlock('tunnel', { result: r, legacy: false });
  t.regex(full, /a full run, 3 rounds, 2026-12-03T18:00:00Z, 2 cores, Node 24\.0\.0, OpenSSL 3\.5\.0/);
  t.regex(renderBlock('tunnel', { result: { ...r, quick: true, rounds: 1 }, legacy: false }), /--quick` run\*\* \(a smoke test, not a full run\), 1 round,/);
  t.regex(renderBlock('model', undefined), /No results recorded yet: run `npm run bench -- model`/);
});

test('results written before rounds were recorded read as single figures, labelled so', (t) => {
  const legacy = parseResult(JSON.stringify({ bench: 'capture', at: '2026-11-23T08:00:00Z', machine: '2 cores', rows: [{ subject: 'ambit', metric: 'connect_us', value: 21.5 }] }));
  t.true(legacy.legacy);
  t.deepEqual(legacy.result.rows[0], { subject: 'ambit', metric: 'connect_us', values: [21.5], median: 21.5, min: 21.5, max: 21.5 });
  t.regex(renderBlock('capture', legacy), /older format/);
});

test('updateReadme rewrites only between the markers', (t) => {
  const text = 'intro 1.25×\n<!-- results:capture -->\nstale\n<!-- /results:capture -->\noutro\n';
  const out = updateReadme(text, new Map());
  t.true(out.startsWith('intro 1.25×\n<!-- results:capture -->\nNo results recorded yet'));
  t.true(out.endsWith('\n<!-- /results:capture -->\noutro\n'));
  t.is(updateReadme(out, new Map()), out);
});

test('median is the middle value, or the mean of the two middle values', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.true(Number.isNaN(median([])));
});

test('rounds interleave the subjects, and the JSON records what ran', async (t) => {
  const order: string[] = [];
  const s = new Samples();
  await interleaved('test', 2, ['a', 'b', 'c'], async (subject, round) => {
    order.push(`${round}${subject}`);
    s.add(subject, 'x_ms', round + 1);
  });
  s.add('a', 'once_mb', 7);
  t.deepEqual(order, ['0a', '0b', '0c', '1a', '1b', '1c']);
  const r = makeResult('demo', s, true);
  t.is(r.rounds, 2);
  t.true(r.quick);
  t.is(r.node, process.versions.node);
  t.is(r.openssl, process.versions.openssl);
  t.deepEqual(r.rows.map((x) => [x.subject, x.metric, x.values]), [['a', 'x_ms', [1, 2]], ['b', 'x_ms', [1, 2]], ['c', 'x_ms', [1, 2]], ['a', 'once_mb', [7]]]);
});
