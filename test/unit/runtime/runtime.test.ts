/**
 * The suite runs on ambit's runtime (Node 24 LTS, OpenSSL 3.5 or later: the TLS stack that offers
 * X25519MLKEM768), not on whatever `node` the machine has; and the native addon is a Node-API
 * module, so the one build loads on any Node-API runtime without a per-version rebuild.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { REPO_ROOT } from '../../../src/demo/mesh.js';

const major = (v: string): number => Number(v.replace(/^v/, '').split('.')[0]);

test('the tests run on Node 24 LTS with OpenSSL 3.5 or later', (t) => {
  t.true(major(process.versions.node) >= 24, `node ${process.versions.node}`);
  const [maj, min] = (process.versions.openssl ?? '0.0').split('.').map(Number);
  t.true((maj ?? 0) > 3 || ((maj ?? 0) === 3 && (min ?? 0) >= 5), `openssl ${process.versions.openssl}`);
});

test('the runtime is the one package.json declares and setup brings', (t) => {
  const pkg = createRequire(import.meta.url)(join(REPO_ROOT, 'package.json')) as { engines: { node: string } };
  t.is(pkg.engines.node, '>=24');
  t.true(existsSync(join(REPO_ROOT, 'node_modules', '.bin', 'node')), 'node_modules/.bin/node (the registry runtime) is installed');
});

const ADDON = join(REPO_ROOT, 'native', 'build', 'Release', 'ambit_native.node');

test('the native addon imports only Node-API symbols from its host, no V8 or node:: ABI', (t) => {
  if (!existsSync(ADDON)) return t.fail(`${ADDON} is not built (scripts/build-native.sh)`);
  const undefinedSymbols = execFileSync('nm', ['-D', '--undefined-only', ADDON], { encoding: 'utf8' })
    .split('\n').map((l) => l.trim().split(/\s+/).pop() ?? '').filter((s) => s !== '');
  const fromNode = undefinedSymbols.filter((s) => /^_ZN(2v8|4node)/.test(s) || s.startsWith('uv_'));
  t.deepEqual(fromNode, [], 'no V8, node:: or libuv symbols');
  t.true(undefinedSymbols.some((s) => s.startsWith('napi_')), 'it does use Node-API');
});

test('the native addon loads under this runtime', (t) => {
  if (!existsSync(ADDON)) return t.fail(`${ADDON} is not built (scripts/build-native.sh)`);
  const addon = createRequire(import.meta.url)(ADDON) as Record<string, unknown>;
  t.true(Object.keys(addon).length > 0);
});
