/**
 * `ambit control --kubernetes` as a process against the fake Kubernetes API server (HTTPS with
 * its own CA, bearer token, from a --kubeconfig file; the control plane's Kubernetes client is
 * @kubernetes/client-node): it lists and watches the cluster, an agent authenticated by
 * TokenReview gets its view and a watch event as a delta, /config_dump names the API server,
 * SIGTERM drains (exit 0). Bad Kubernetes options stop it at start-up naming the cause.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { WATCHED_KINDS } from '../../../src/control/kube/kube-kinds.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { tempDir, waitFor } from './fixtures.js';

const MAIN = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

function start(args: string[], env: NodeJS.ProcessEnv = {}) {
  const base: NodeJS.ProcessEnv = { ...process.env, AMBIT_LOG_LEVEL: 'info', ...env };
  delete base['KUBERNETES_SERVICE_HOST'];
  const child = spawn(process.execPath, ['--import=tsx', MAIN, 'control', ...args], { env: base, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

function pod(name: string, node: string, ip: string) {
  return {
    metadata: { name, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: node, serviceAccountName: 'web', containers: [{ name: 'main', image: 'x' }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

test('ambit control --kubernetes --kubeconfig serves the cluster to an agent and drains on SIGTERM', async (t) => {
  const api = new FakeKubeApi(WATCHED_KINDS, {
    token: 'cp-token', notInstalled: ['httproutes', 'gateways'],
    tokenReviews: { 'agent-a': { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } },
  });
  await api.start();
  const tmp = tempDir('cli-kube');
  t.teardown(async () => { await api.close(); tmp.cleanup(); });
  api.put('namespaces', { metadata: { name: 'shop', labels: { 'ambit.dev/dataplane-mode': 'ambient' } } });
  api.put('nodes', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] } });
  api.put('serviceaccounts', { metadata: { name: 'web', namespace: 'shop' } });
  api.put('pods', pod('web-1', 'node-a', '198.19.1.10'));
  const p = start(['--kubernetes', '--kubeconfig', api.writeKubeconfig(tmp.dir, 'cp-token'), '--ca-dir', join(tmp.dir, 'ca'), '--host', '127.0.0.1',
    '--grpc-tls-port', '0', '--grpc-plaintext-port', '0', '--metrics-port', '0', '--readiness-port', '0', '--debounce-ms', '20']);
  t.teardown(() => { p.child.kill('SIGKILL'); });
  const deadline = Date.now() + 30_000;
  let ports: { tls: number; metrics: number } | undefined;
  while (ports === undefined) {
    if (Date.now() > deadline || p.child.exitCode !== null) { t.fail(`no listening line; stderr: ${p.err()}`); return; }
    const line = p.out().split('\n').find((l) => l.includes('"control plane listening"'));
    if (line) ports = (JSON.parse(line) as { ports: { tls: number; metrics: number } }).ports;
    else await new Promise((r) => setTimeout(r, 50));
  }
  const root = readFileSync(join(tmp.dir, 'ca', 'root-cert.pem'), 'utf8');
  const c = new DiscoveryClient({ address: `127.0.0.1:${ports.tls}`, trustBundlePem: root, kind: 'agent', name: 'node-a', token: 'agent-a' });
  t.teardown(() => c.close());
  const updates = (cb: (u: { full: boolean; upserted: { name: string }[] }) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; };
  const full = waitFor(updates, (u) => u.full, 20_000, 'full view');
  await c.start();
  await full;
  t.deepEqual([...c.view.all('WORKLOAD').keys()], ['shop/web-1']);
  t.is(api.count('list pods'), 1, 'the process listed pods from the API server once');
  t.true(api.count('tokenreview') >= 1, 'the agent token went to TokenReview');
  const delta = waitFor(updates, (u) => !u.full && u.upserted.some((x) => x.name === 'shop/web-2'), 20_000, 'delta from a watch event');
  api.put('pods', pod('web-2', 'node-a', '198.19.1.11'));
  await delta;
  const dump = await fetch(`http://127.0.0.1:${ports.metrics}/config_dump`).then((r) => r.json()) as { source: { kind: string; location: string; details: Record<string, { installed: boolean; objects: number }> } };
  t.is(dump.source.kind, 'kubernetes');
  t.is(dump.source.location, api.url);
  t.is(dump.source.details['pods']?.objects, 2);
  t.false(dump.source.details['gateways']?.installed);
  t.notRegex(p.out() + p.err(), /cp-token|agent-a"/, 'no token in the logs');
  p.child.kill('SIGTERM');
  t.is(await p.exited, 0);
});

test('ambit control --kubernetes stops at start-up outside a pod, and on an unknown context or kubeconfig', async (t) => {
  const tmp = tempDir('cli-kube');
  t.teardown(() => tmp.cleanup());
  const api = new FakeKubeApi(WATCHED_KINDS);
  await api.start();
  t.teardown(() => api.close());
  const common = ['--ca-dir', join(tmp.dir, 'ca'), '--host', '127.0.0.1', '--grpc-tls-port', '0', '--grpc-plaintext-port', 'off', '--metrics-port', '0', '--readiness-port', '0'];
  const outside = start(['--kubernetes', ...common]);
  t.is(await outside.exited, 1);
  t.regex(outside.err(), /AMBIT_ERR_CONTROL_CONFIG: not running in a Kubernetes pod \(KUBERNETES_SERVICE_HOST unset\); pass --kubeconfig FILE/);
  const ctx = start(['--kubernetes', '--kubeconfig', api.writeKubeconfig(tmp.dir, 't'), '--context', 'prod', ...common]);
  t.is(await ctx.exited, 1);
  t.regex(ctx.err(), /context 'prod' not found \(it has: fake\)/);
  const missing = start(['--kubernetes', '--kubeconfig', join(tmp.dir, 'absent'), ...common]);
  t.is(await missing.exited, 1);
  t.regex(missing.err(), /cannot read kubeconfig .*absent/);
});
