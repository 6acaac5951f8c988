/**
 * `npm run bench -- NAME [--quick]`: runs bench/NAME.ts, prints a table with ratios, and writes
 * bench/results/NAME.json (format: bench/README.md).
 */
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable, writeResult, type BenchOptions, type Row } from './lib/report.js';

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...rest] = process.argv.slice(2);
if (name === undefined || !/^[a-z][a-z0-9-]*$/.test(name) || !existsSync(join(here, `${name}.ts`))) {
  process.stderr.write(`usage: npm run bench -- NAME [--quick]  (NAME: model, tunnel, capture, control, mesh, waypoint, fuzz-h1, tls-handshake)\n`);
  process.exit(2);
}
const opts: BenchOptions = { quick: rest.includes('--quick'), args: rest.filter((a) => a !== '--quick') };
const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as { run: (o: BenchOptions) => Promise<Row[]> };
const rows = await mod.run(opts);
const result = writeResult(name, rows);
process.stdout.write(`\n${name} benchmark, ${result.machine}, ${result.at}${opts.quick ? ' (quick)' : ''}\n\n`);
process.stdout.write(formatTable(rows) + '\n');
process.stdout.write(`\nwritten to bench/results/${name}.json\n`);
