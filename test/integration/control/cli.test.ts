/**
 * `ambit control` as a process: starts from a folder (with --debounce-ms), serves a subscriber
 * and a file edit, drains on SIGTERM (exit 0); an invalid folder exits 1 naming file:line;
 * missing or malformed options exit 2.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { tempDir, waitFor } from './fixtures.js';
import { eventually } from '../../helpers/eventually.js';
import { namespaceYaml, podYaml, nodeYaml, serviceAccountYaml } from './mesh-yaml.js';

const MAIN = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

function start(args: string[]) {
  const child = spawn(process.execPath, ['--import=tsx', MAIN, 'control', ...args], { env: { ...process.env, AMBIT_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

test('ambit control serves a folder and drains on SIGTERM', async (t) => {
  const tmp = tempDir('cli');
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg);
  writeFileSync(join(cfg, 'mesh.yaml'), [namespaceYaml('shop'), nodeYaml('node-a', '198.18.0.1'), serviceAccountYaml('web', 'shop'),
    podYaml({ name: 'web-1', ns: 'shop', node: 'node-a', ip: '198.19.1.10', app: 'web' })].join('---\n'));
  writeFileSync(join(tmp.dir, 'tokens'), 'cli-token\n');
  const p = start(['--config', cfg, '--token-file', join(tmp.dir, 'tokens'), '--ca-dir', join(tmp.dir, 'ca'), '--host', '127.0.0.1',
    '--grpc-tls-port', '0', '--grpc-plaintext-port', '0', '--metrics-port', '0', '--readiness-port', '0', '--debounce-ms', '40']);
  t.teardown(() => { p.child.kill('SIGKILL'); tmp.cleanup(); });
  const listening = () => p.out().split('\n').find((l) => l.includes('"control plane listening"'));
  await eventually('the "control plane listening" line', () => listening() !== undefined, { timeoutMs: 30_000, intervalMs: 50, detail: () => `stderr: ${p.err()}` });
  const { ports } = JSON.parse(listening() ?? '') as { ports: { tls: number; plaintext: number; metrics: number } };
  const root = readFileSync(join(tmp.dir, 'ca', 'root-cert.pem'), 'utf8');
  const c = new DiscoveryClient({ address: `127.0.0.1:${ports.tls}`, trustBundlePem: root, kind: 'agent', name: 'node-a', token: 'cli-token' });
  t.teardown(() => c.close());
  const full = waitFor((cb: (u: { full: boolean }) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; }, (u) => u.full, 20_000, 'full view');
  await c.start();
  await full;
  t.true(c.view.all('WORKLOAD').has('shop/web-1'));
  const dump = await fetch(`http://127.0.0.1:${ports.metrics}/config_dump`).then((r) => r.json()) as { source: { details: { debounceMs: number } } };
  t.is(dump.source.details.debounceMs, 40, '--debounce-ms reaches the folder source');
  const delta = waitFor((cb: (u: { full: boolean; upserted: { name: string }[] }) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; }, (u) => !u.full, 20_000, 'delta');
  writeFileSync(join(cfg, 'web-2.yaml'), podYaml({ name: 'web-2', ns: 'shop', node: 'node-a', ip: '198.19.1.11', app: 'web' }));
  t.deepEqual((await delta).upserted.map((u) => u.name), ['shop/web-2']);
  const down = new Promise<void>((resolve) => c.once('disconnected', () => resolve()));
  p.child.kill('SIGTERM');
  t.is(await p.exited, 0);
  await down;
  t.regex(p.out(), /draining/);
  t.true(c.view.all('WORKLOAD').has('shop/web-1'), 'the subscriber keeps its view');
});

test('ambit control exits 1 on an invalid folder, naming file and line; 2 on missing options', async (t) => {
  const tmp = tempDir('cli');
  t.teardown(() => tmp.cleanup());
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg);
  writeFileSync(join(cfg, 'bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: 7\n');
  writeFileSync(join(tmp.dir, 'tokens'), 'cli-token\n');
  const p = start(['--config', cfg, '--token-file', join(tmp.dir, 'tokens'), '--ca-dir', join(tmp.dir, 'ca'), '--host', '127.0.0.1',
    '--grpc-tls-port', '0', '--grpc-plaintext-port', 'off', '--metrics-port', '0', '--readiness-port', '0']);
  t.is(await p.exited, 1);
  t.regex(p.err(), /bad\.yaml:6:\d+: /);
  const q = start(['--config', cfg]);
  t.is(await q.exited, 1);
  t.regex(q.err(), /--token-file is required/);
  const r = start([]);
  t.is(await r.exited, 2);
  const d = start(['--config', cfg, '--token-file', join(tmp.dir, 'tokens'), '--debounce-ms', 'soon']);
  t.is(await d.exited, 2);
  t.regex(d.err(), /--debounce-ms must be a whole number of milliseconds 0-3600000, got 'soon'/);
});
