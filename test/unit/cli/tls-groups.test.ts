/**
 * `--tls-groups` on the three long-running commands: the default and an override reach the
 * TLS port of a real `ambit control` process (seen by a client offering ambit's default groups),
 * and a bad list stops `ambit agent`, `ambit waypoint` and `ambit control` at start-up naming
 * the bad group, before anything listens.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { negotiatedGroup } from '../../../src/tunnel/tls-groups.js';
import { tlsGroupsOption } from '../../../src/cli/lib/tls-groups.js';
import { tempDir } from '../../integration/control/fixtures.js';
import { eventually } from '../../helpers/eventually.js';

const MAIN = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

function run(command: string, args: string[]) {
  const child = spawn(process.execPath, ['--import=tsx', MAIN, command, ...args], { env: { ...process.env, AMBIT_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

/** Starts `ambit control` on a tiny folder with `extra` flags; resolves with its TLS port and the groups it logged. */
async function control(t: { teardown: (f: () => void) => void }, extra: string[]) {
  const tmp = tempDir('cli-groups');
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg);
  writeFileSync(join(cfg, 'mesh.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: shop }\n');
  writeFileSync(join(tmp.dir, 'tokens'), 'cli-token\n');
  const p = run('control', ['--config', cfg, '--token-file', join(tmp.dir, 'tokens'), '--ca-dir', join(tmp.dir, 'ca'), '--host', '127.0.0.1',
    '--grpc-tls-port', '0', '--grpc-plaintext-port', 'off', '--metrics-port', '0', '--readiness-port', '0', ...extra]);
  t.teardown(() => { p.child.kill('SIGKILL'); tmp.cleanup(); });
  const listening = () => p.out().split('\n').find((l) => l.includes('"control plane listening"'));
  await eventually('the "control plane listening" line', () => listening() !== undefined, { timeoutMs: 30_000, intervalMs: 50, detail: () => `stderr: ${p.err()}` });
  const parsed = JSON.parse(listening() ?? '') as { ports: { tls: number }; tlsGroups: string };
  return { port: parsed.ports.tls, logged: parsed.tlsGroups };
}

/** The group a client offering ambit's default groups negotiates with `port`. */
function groupWith(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false, ecdhCurve: 'X25519MLKEM768:X25519' }, () => {
      resolve(negotiatedGroup(s));
      s.destroy();
    });
    s.once('error', reject);
  });
}

test('tlsGroupsOption: the default when absent, the list when given, the flag named when bad', (t) => {
  t.deepEqual(tlsGroupsOption(undefined), ['X25519MLKEM768', 'X25519']);
  t.deepEqual(tlsGroupsOption('X25519,secp256r1'), ['X25519', 'secp256r1']);
  t.regex(t.throws(() => tlsGroupsOption('X25519:nope')).message, /^--tls-groups: TLS group 'nope'/);
});

test('ambit control offers X25519MLKEM768 by default and only what --tls-groups says otherwise', async (t) => {
  const [byDefault, overridden] = await Promise.all([control(t, []), control(t, ['--tls-groups', 'X25519'])]);
  t.is(byDefault.logged, 'X25519MLKEM768:X25519');
  t.is(await groupWith(byDefault.port), 'X25519MLKEM768');
  t.is(overridden.logged, 'X25519');
  t.is(await groupWith(overridden.port), 'X25519');
});

test('a bad --tls-groups stops each command at start-up, naming the group', async (t) => {
  const tmp = tempDir('cli-groups-bad');
  t.teardown(() => tmp.cleanup());
  writeFileSync(join(tmp.dir, 'token'), 'tok\n');
  const bad = 'X25519MLKEM768:X25519Kyber768';
  const runs = await Promise.all([
    run('control', ['--config', tmp.dir, '--token-file', join(tmp.dir, 'token'), '--ca-dir', join(tmp.dir, 'ca'), '--tls-groups', bad]),
    run('waypoint', ['--name', 'shop/waypoint', '--control-plane', '127.0.0.1:1', '--token-file', join(tmp.dir, 'token'), '--tls-groups', bad]),
    run('agent', ['--node', 'node-a', '--control', '127.0.0.1:1', '--token-file', join(tmp.dir, 'token'), '--tls-groups', bad]),
  ].map(async (p) => ({ code: await p.exited, err: p.err() })));
  for (const [i, r] of runs.entries()) {
    t.not(r.code, 0, `run ${i} failed`);
    t.regex(r.err, /--tls-groups: TLS group 'X25519Kyber768' is not supported/, r.err);
  }
  t.deepEqual(runs.map((r) => r.code), [2, 2, 1], 'control and waypoint treat it as a bad option (2); the agent as bad configuration (1), as its other checks');
});
