/**
 * `npm run bench -- NAME [--quick] [--rounds N]`: runs bench/NAME.ts, prints its table (median and
 * range over the rounds, comparisons against the peers measured in the same run) and writes
 * bench/results/NAME.json (bench/lib/report.ts). Rounds default to 3, 1 with `--quick`.
 *
 * `npm run bench -- readme [--check]`: rewrites the tables of bench/README.md from
 * bench/results/*.json (bench/lib/readme.ts); `--check` only says whether they match.
 */
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeResult, writeResult, type BenchOptions, type Row, type Samples } from './lib/report.js';
import { main as readme, renderBlock } from './lib/readme.js';

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...rest] = process.argv.slice(2);
const usage = 'usage: npm run bench -- NAME [--quick] [--rounds N]  (NAME: model, tunnel, capture, control, mesh, waypoint, tls-handshake, fuzz-h1)\n       npm run bench -- readme [--check]\n';

if (name === 'readme') {
  readme(rest);
} else {
  if (name === undefined || !/^[a-z][a-z0-9-]*$/.test(name) || !existsSync(join(here, `${name}.ts`))) {
    process.stderr.write(usage);
    process.exit(2);
  }
  const quick = rest.includes('--quick');
  const ri = rest.indexOf('--rounds');
  const rounds = ri === -1 ? (quick ? 1 : 3) : Number(rest[ri + 1]);
  if (!Number.isInteger(rounds) || rounds < 1) {
    process.stderr.write(`--rounds must be a positive integer, got ${JSON.stringify(rest[ri + 1])}\n${usage}`);
    process.exit(2);
  }
  const args = rest.filter((a, i) => a !== '--quick' && !(ri !== -1 && (i === ri || i === ri + 1)));
  const opts: BenchOptions = { quick, rounds, args };
  const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as { run: (o: BenchOptions) => Promise<Samples | Row[]> };
  const result = makeResult(name, await mod.run(opts), quick);
  const file = writeResult(result);
  process.stdout.write(`\n${name} benchmark\n\n${renderBlock(name, { result, legacy: false })}\n\nwritten to ${file}\n`);
}
