/**
 * The last-resort guard: an exception nobody caught, or a rejection nobody handled, is logged and
 * counted in `ambit_waypoint_internal_errors_total` and the process keeps running. Run in a child
 * process, because the guard is process-wide and the test runner has handlers of its own.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const GUARD = fileURLToPath(new URL('../../../src/waypoint/last-resort.ts', import.meta.url));
const METRICS = fileURLToPath(new URL('../../../src/waypoint/metrics.ts', import.meta.url));

const SCRIPT = `
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { guardProcess } from ${JSON.stringify(GUARD)};
import { waypointMetrics } from ${JSON.stringify(METRICS)};
const registry = new Registry();
const m = waypointMetrics(registry);
const lines = [];
const log = pino({ level: 'error' }, { write: (l) => lines.push(JSON.parse(l)) });
const unguard = guardProcess(log, m.internalErrors);
setTimeout(() => { throw new Error('a bug reached by some input'); }, 1);
setTimeout(() => { void Promise.reject(new Error('a forgotten promise')); }, 5);
setTimeout(async () => {
  const text = await registry.metrics();
  unguard();
  process.stdout.write(JSON.stringify({ text, lines }));
}, 50);
`;

test('isolation: an uncaught exception and an unhandled rejection are counted and logged, and the process lives on', async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import=tsx', '--input-type=module', '-e', SCRIPT], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`child failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
  const { text, lines } = JSON.parse(out) as { text: string; lines: { where: string; msg: string; err: { message: string } }[] };
  t.regex(text, /ambit_waypoint_internal_errors_total\{where="uncaught_exception"\} 1/);
  t.regex(text, /ambit_waypoint_internal_errors_total\{where="unhandled_rejection"\} 1/);
  t.deepEqual(lines.map((l) => [l.where, l.err.message]), [['uncaught_exception', 'a bug reached by some input'], ['unhandled_rejection', 'a forgotten promise']]);
});
