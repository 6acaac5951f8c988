/**
 * The folder source end to end: YAML files -> model -> control plane -> DiscoveryClient over
 * TLS. Editing a file delivers a delta; a broken edit never leaves the control plane (no push,
 * the error with file:line on /config_dump and in the metric), and the last good view keeps
 * serving until the file is fixed.
 */
import test from 'ava';
import { writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { FolderSource } from '../../../src/control/sources/folder-source.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import type { ViewChange } from '../../../src/discovery/local-view.js';
import { TOKEN, startControlPlane, tempDir, waitFor } from './fixtures.js';
import { denyPolicyYaml, namespaceYaml, nodeYaml, podYaml, serviceAccountYaml, serviceYaml } from './mesh-yaml.js';

type Update = ViewChange & { source: 'cache' | 'server' };

function writeMesh(dir: string): void {
  mkdirSync(join(dir, 'pods'), { recursive: true });
  writeFileSync(join(dir, 'base.yaml'), [namespaceYaml('shop'), nodeYaml('node-a', '198.18.0.1'), nodeYaml('node-b', '198.18.0.2'),
    serviceAccountYaml('web', 'shop'), serviceAccountYaml('db', 'shop')].join('---\n'));
  writeFileSync(join(dir, 'pods', 'web.yaml'), podYaml({ name: 'web-1', ns: 'shop', node: 'node-a', ip: '198.19.1.10', app: 'web' }));
  writeFileSync(join(dir, 'pods', 'db.yaml'), podYaml({ name: 'db-1', ns: 'shop', node: 'node-b', ip: '198.19.2.10', app: 'db' }));
  writeFileSync(join(dir, 'services.yaml'), [serviceYaml({ name: 'web', ns: 'shop', vip: '198.18.128.10', app: 'web' }),
    serviceYaml({ name: 'db', ns: 'shop', vip: '198.18.128.11', app: 'db' })].join('---\n'));
  writeFileSync(join(dir, 'policy.yaml'), denyPolicyYaml('deny-web', 'shop', 'web'));
}

/** Replace a file the way editors and kubectl-style tools do: write aside, rename over. */
function atomicWrite(file: string, text: string): void {
  writeFileSync(`${file}.tmp~`, text);
  renameSync(`${file}.tmp~`, file);
}

test('folder edits reach subscribers as deltas; a broken edit is held back and reported with file:line', async (t) => {
  const tmp = tempDir('folder');
  const cfg = join(tmp.dir, 'mesh');
  writeMesh(cfg);
  const source = new FolderSource({ dir: cfg, compiler: new ModelCompiler(), debounceMs: 30, rescanMs: 0 });
  const cp = await startControlPlane(source, tmp.dir);
  const a = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-a', token: TOKEN, measureBytes: true });
  const b = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-b', token: TOKEN });
  t.teardown(async () => { await a.close(); await b.close(); await cp.stop(); tmp.cleanup(); });
  const updates = (c: DiscoveryClient) => (cb: (u: Update) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; };
  const fa = waitFor(updates(a), (u) => u.full, 10_000, 'full view a');
  const fb = waitFor(updates(b), (u) => u.full, 10_000, 'full view b');
  await a.start(); await b.start();
  await Promise.all([fa, fb]);
  t.deepEqual([...a.view.all('WORKLOAD').keys()].sort(), ['shop/db-1', 'shop/web-1']);
  t.deepEqual([...a.view.all('SERVICE').keys()].sort(), ['shop/db', 'shop/web']);
  t.deepEqual([...a.view.all('AUTHORIZATION_POLICY').keys()], ['shop/deny-web'], 'node-a runs a web pod');
  t.is(b.view.count('AUTHORIZATION_POLICY'), 0, 'node-b runs no pod the policy selects');
  const web = a.view.get('WORKLOAD', 'shop/web-1') as { ip: string; identity: string; authorization?: unknown };
  t.is(web.ip, '198.19.1.10');
  t.is(web.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  t.is(web.authorization, undefined, 'policies travel as their own resources');

  // Edit: a second web pod on node-b.
  const before = a.bytesReceived;
  const da = waitFor(updates(a), (u) => !u.full, 10_000, 'delta a');
  const db = waitFor(updates(b), (u) => !u.full && u.upserted.some((x) => x.name === 'shop/web-2'), 10_000, 'delta b');
  atomicWrite(join(cfg, 'pods', 'web2.yaml'), podYaml({ name: 'web-2', ns: 'shop', node: 'node-b', ip: '198.19.2.11', app: 'web' }));
  const [ua, ub] = await Promise.all([da, db]);
  t.deepEqual(ua.upserted.map((x) => `${x.kind} ${x.name}`).sort(), ['SERVICE shop/web', 'WORKLOAD shop/web-2']);
  t.true(ub.upserted.some((x) => x.kind === 'AUTHORIZATION_POLICY'), 'the policy follows its workload onto node-b');
  t.true(a.bytesReceived - before < 4096, `delta cost ${a.bytesReceived - before} bytes`);

  // Broken edit: a YAML syntax error in one file.
  const version = a.view.version;
  atomicWrite(join(cfg, 'services.yaml'), 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports: [\n');
  await new Promise((r) => setTimeout(r, 300));
  t.is(a.view.version, version, 'nothing was pushed');
  t.is(a.view.count('SERVICE'), 2, 'the last good view keeps serving');
  const dump = await fetch(`http://127.0.0.1:${cp.ports.metrics}/config_dump`).then((r) => r.json()) as { lastRejected: { file?: string; line?: number; message: string }[]; version: number };
  t.true(dump.lastRejected.length > 0);
  t.regex(dump.lastRejected[0]?.file ?? '', /services\.yaml$/);
  t.true((dump.lastRejected[0]?.line ?? 0) > 0);
  const metrics = await fetch(`http://127.0.0.1:${cp.ports.metrics}/metrics`).then((r) => r.text());
  t.regex(metrics, /ambit_control_config_errors_total\{source="folder"\} 1/);
  t.is((await fetch(`http://127.0.0.1:${cp.ports.readiness}/healthz/ready`)).status, 200, 'still ready: serving the last good configuration');
  t.notRegex(metrics, /ambit_control_nacks_total\{[^}]*\} [1-9]/, 'nothing was nacked: the broken edit never left the control plane');

  // Fixing the file resumes updates.
  const fixed = waitFor(updates(a), (u) => !u.full && u.removed.some((x) => x.name === 'shop/db'), 10_000, 'delta after fix');
  atomicWrite(join(cfg, 'services.yaml'), serviceYaml({ name: 'web', ns: 'shop', vip: '198.18.128.10', app: 'web' }));
  await fixed.catch(async (err: unknown) => {
    t.log(JSON.stringify(cp.configDump(), null, 1).slice(0, 3000));
    throw err;
  });
  t.deepEqual([...a.view.all('SERVICE').keys()], ['shop/web']);
});

test('an invalid folder at start leaves the control plane not ready, with the problem on /config_dump', async (t) => {
  const tmp = tempDir('folder');
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg);
  writeFileSync(join(cfg, 'bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: "nope"\n');
  const cp = await startControlPlane(new FolderSource({ dir: cfg, compiler: new ModelCompiler(), rescanMs: 0 }), tmp.dir);
  t.teardown(async () => { await cp.stop(); tmp.cleanup(); });
  t.false(cp.ready);
  t.is((await fetch(`http://127.0.0.1:${cp.ports.readiness}/healthz/ready`)).status, 503);
  const dump = cp.configDump() as { lastRejected: { file?: string; line?: number }[] };
  t.regex(dump.lastRejected[0]?.file ?? '', /bad\.yaml$/);
  t.is(dump.lastRejected[0]?.line, 6);
});

test('an unknown field (a typo) rejects the reload and the last good configuration keeps serving; allowUnknownFields accepts it with a warning', async (t) => {
  const tmp = tempDir('folder-unknown');
  t.teardown(() => tmp.cleanup());
  const cfg = join(tmp.dir, 'mesh');
  writeMesh(cfg);
  const calls: { kind: 'replace' | 'delta' | 'rejected'; keys: string[]; problems: string[] }[] = [];
  const sink = {
    replaceAll: (rs: Iterable<{ kind: string; name: string }>) => { calls.push({ kind: 'replace', keys: [...rs].map((r) => `${r.kind}/${r.name}`), problems: [] }); },
    applyDelta: (up: Iterable<{ kind: string; name: string }>) => { calls.push({ kind: 'delta', keys: [...up].map((r) => `${r.kind}/${r.name}`), problems: [] }); },
    rejected: (ps: { message: string; file?: string; line?: number }[]) => { calls.push({ kind: 'rejected', keys: [], problems: ps.map((p) => `${p.file?.slice(cfg.length + 1)}:${p.line} ${p.message}`) }); },
  };
  const typo = (name: string): string => `${denyPolicyYaml(name, 'shop', 'web')}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    circuitBreaker: {maxConnections: 1}
`;
  for (const allowUnknownFields of [false, true]) {
    calls.length = 0;
    const source = new FolderSource({ dir: cfg, compiler: new ModelCompiler(), debounceMs: 5, rescanMs: 0, allowUnknownFields });
    await source.start(sink);
    t.is(calls[0]?.kind, 'replace');
    t.true(calls[0]?.keys.includes('AUTHORIZATION_POLICY/shop/deny-web'));
    writeFileSync(join(cfg, 'policy.yaml'), typo('deny-web-2'));
    await source.reload();
    const last = calls[calls.length - 1];
    if (!allowUnknownFields) {
      t.is(last?.kind, 'rejected', 'the typo rejects the load');
      t.regex(last?.problems.join('\n') ?? '', /policy\.yaml:\d+ .*unknown field "circuitBreaker"/);
      t.false(source.status().problems.length === 0);
      t.is(calls.filter((c) => c.kind !== 'rejected').length, 1, 'nothing replaced the last good configuration');
    } else {
      t.not(last?.kind, 'rejected', last?.problems.join('\n'));
      t.true(last?.keys.includes('AUTHORIZATION_POLICY/shop/deny-web-2'), 'the edit is applied');
    }
    await source.close();
    writeMesh(cfg);
  }
});
