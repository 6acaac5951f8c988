/**
 * Discovery over real gRPC (TLS with the mesh root, and the loopback plaintext port): full views,
 * per-resource deltas, per-node policy scoping, waypoint views, resume from a cached view, and a
 * control-plane restart while subscribers keep serving their view.
 */
import test from 'ava';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DiscoveryClient, type DiscoveryClientOptions } from '../../../src/discovery/discovery-client.js';
import { protos } from '../../../src/control/proto.js';
import type { ControlPlane } from '../../../src/control/control-plane.js';
import { resourceKey } from '../../../src/control/mesh-resource.js';
import type { ViewChange } from '../../../src/discovery/local-view.js';
import { MemorySource, TOKEN, NODE_A_TOKEN, binding, policy, route, service, startControlPlane, tempDir, waitFor, workload } from './fixtures.js';

type Update = ViewChange & { source: 'cache' | 'server' };

function initial() {
  return [
    workload('web-1', 'node-a', { labels: { app: 'web' } }),
    workload('db-1', 'node-b', { ns: 'data', labels: { app: 'db' } }),
    service('web'), service('db', 'data'),
    policy('deny-web', 'default', { app: 'web' }),
    policy('deny-db', 'data'),
    binding('default/wp', ['default/web']),
    route('web-route', 'default', ['default/web']),
    route('db-route', 'data', ['data/db']),
  ];
}

function client(cp: ControlPlane, o: Partial<DiscoveryClientOptions> & { name: string }): DiscoveryClient {
  return new DiscoveryClient({
    address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem,
    kind: 'agent', token: TOKEN, backoff: { initialMs: 50, maxMs: 300 }, measureBytes: true, ...o,
  });
}

function updates(c: DiscoveryClient) {
  return (cb: (u: Update) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; };
}

test('an agent gets every workload and service but only the policies of its own workloads; deltas carry one resource', async (t) => {
  const tmp = tempDir('disc');
  const src = new MemorySource(initial());
  const cp = await startControlPlane(src, tmp.dir);
  const a = client(cp, { name: 'node-a' });
  const b = client(cp, { name: 'node-b' });
  t.teardown(async () => { await a.close(); await b.close(); await cp.stop(); tmp.cleanup(); });
  const fa = waitFor(updates(a), (u) => u.full, 10_000, 'full view on node-a');
  const fb = waitFor(updates(b), (u) => u.full, 10_000, 'full view on node-b');
  await a.start(); await b.start();
  await fa; await fb;
  t.is(a.view.count('WORKLOAD'), 2);
  t.is(a.view.count('SERVICE'), 2);
  t.deepEqual([...a.view.all('AUTHORIZATION_POLICY').keys()], ['default/deny-web']);
  t.deepEqual([...b.view.all('AUTHORIZATION_POLICY').keys()], ['data/deny-db']);
  t.is(a.view.count('ROUTE'), 0, 'agents receive no L7 routes');

  // One pod changes: each agent receives that pod only.
  const bytesBefore = a.bytesReceived;
  const da = waitFor(updates(a), (u) => !u.full, 10_000, 'delta on node-a');
  const db = waitFor(updates(b), (u) => !u.full, 10_000, 'delta on node-b');
  src.delta([workload('web-2', 'node-b', { labels: { app: 'web' }, ip: '198.19.1.7' })]);
  const [ua, ub] = await Promise.all([da, db]);
  t.deepEqual(ua.upserted, [{ kind: 'WORKLOAD', name: 'default/web-2' }]);
  // node-b now runs a web pod, so deny-web enters its view in the same push.
  t.deepEqual(ub.upserted.map((u) => u.name).sort(), ['default/deny-web', 'default/web-2']);
  t.true(a.bytesReceived - bytesBefore < 1024, `one-pod delta was ${a.bytesReceived - bytesBefore} bytes`);
  t.is((a.view.get('WORKLOAD', 'default/web-2') as { ip: string }).ip, '198.19.1.7');

  // The pod leaves node-b: the policy leaves node-b's view, node-a only sees the removal.
  const rb = waitFor(updates(b), (u) => u.removed.length > 0, 10_000, 'removal on node-b');
  src.delta([], [resourceKey('WORKLOAD', 'default/web-2')]);
  const r = await rb;
  t.deepEqual(r.removed.map((x) => x.name).sort(), ['default/deny-web', 'default/web-2']);
  t.false(b.view.all('AUTHORIZATION_POLICY').has('default/deny-web'));

  // An identical reload pushes nothing and the version stays.
  const v = cp.table.version;
  src.replace(initial());
  t.is(cp.table.version, v);

  const metrics = await fetch(`http://127.0.0.1:${cp.ports.metrics}/metrics`).then((x) => x.text());
  t.regex(metrics, /ambit_control_subscribers\{kind="agent"\} 2/);
  t.regex(metrics, /ambit_control_pushes_total\{kind="agent",type="delta"\} [1-9]/);
});

test('a waypoint receives the routes of the services bound to it and follows binding changes', async (t) => {
  const tmp = tempDir('disc');
  const src = new MemorySource(initial());
  const cp = await startControlPlane(src, tmp.dir);
  const w = client(cp, { name: 'default/wp', kind: 'waypoint' });
  t.teardown(async () => { await w.close(); await cp.stop(); tmp.cleanup(); });
  const f = waitFor(updates(w), (u) => u.full, 10_000, 'waypoint full view');
  await w.start();
  await f;
  t.deepEqual([...w.view.all('ROUTE').keys()], ['default/web-route']);
  t.is(w.view.count('AUTHORIZATION_POLICY'), 0);
  const d = waitFor(updates(w), (u) => !u.full, 10_000, 'binding delta');
  src.delta([binding('default/wp', ['default/web', 'data/db'])]);
  await d;
  t.deepEqual([...w.view.all('ROUTE').keys()].sort(), ['data/db-route', 'default/web-route']);
});

test('plaintext port answers on loopback; wrong tokens and bound tokens are refused', async (t) => {
  const tmp = tempDir('disc');
  const cp = await startControlPlane(new MemorySource(initial()), tmp.dir);
  t.teardown(async () => { await cp.stop(); tmp.cleanup(); });
  const Ctor = protos().discovery.ambit.v1.Discovery;
  const c = new Ctor(`127.0.0.1:${cp.ports.plaintext}`, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  const attempt = (name: string, token: string) => new Promise<{ code: number; details: string } | 'view'>((resolve) => {
    const call = c.Stream();
    call.on('data', () => { resolve('view'); call.cancel(); });
    call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    call.write({ hello: { kind: 'AGENT', name, token } });
  });
  const bad = await attempt('node-a', 'not-a-token');
  t.like(bad, { code: grpc.status.UNAUTHENTICATED });
  const other = await attempt('node-b', NODE_A_TOKEN);
  t.like(other, { code: grpc.status.PERMISSION_DENIED });
  t.regex((other as { details: string }).details, /bound to agent 'node-a'/);
  t.is(await attempt('node-a', NODE_A_TOKEN), 'view');
  const metrics = await fetch(`http://127.0.0.1:${cp.ports.metrics}/metrics`).then((x) => x.text());
  t.regex(metrics, /ambit_control_auth_failures_total\{service="discovery"\} 2/);
});

test('a subscriber that expects another control-plane identity refuses the server', async (t) => {
  const tmp = tempDir('disc');
  const cp = await startControlPlane(new MemorySource(initial()), tmp.dir);
  const c = client(cp, { name: 'node-a', expectedIdentity: 'spiffe://cluster.local/ns/ambit-system/sa/someone-else' });
  t.teardown(async () => { await c.close(); await cp.stop(); tmp.cleanup(); });
  await c.start();
  await new Promise((r) => setTimeout(r, 700));
  t.false(c.connected);
  t.true(c.view.empty);
});

test('resume: a restarted subscriber starts from its cached view and receives only the delta', async (t) => {
  const tmp = tempDir('disc');
  const src = new MemorySource(initial());
  const cp = await startControlPlane(src, tmp.dir);
  const cacheFile = join(tmp.dir, 'view.json');
  const first = client(cp, { name: 'node-a', cacheFile });
  t.teardown(async () => { await cp.stop(); tmp.cleanup(); });
  const f = waitFor(updates(first), (u) => u.full, 10_000, 'full view');
  await first.start();
  await f;
  await first.close();
  src.delta([workload('web-3', 'node-a', { labels: { app: 'web' } })]);

  const second = client(cp, { name: 'node-a', cacheFile });
  t.teardown(() => second.close());
  const seen: Update[] = [];
  second.on('update', (u) => seen.push(u));
  const d = waitFor(updates(second), (u) => u.source === 'server', 10_000, 'resumed push');
  await second.start();
  t.is(seen[0]?.source, 'cache', 'the cached view is served before the control plane answers');
  t.is(second.view.count('WORKLOAD'), 2);
  const u = await d;
  t.false(u.full, 'resume is a delta, not a full view');
  t.deepEqual(u.upserted.filter((x) => x.kind === 'WORKLOAD'), [{ kind: 'WORKLOAD', name: 'default/web-3' }]);
  t.is(second.view.count('WORKLOAD'), 3);
  t.true(second.view.all('AUTHORIZATION_POLICY').has('default/deny-web'));
});

test('killing and restarting the control plane: subscribers keep their view, reconnect and catch up', async (t) => {
  const tmp = tempDir('disc');
  const src = new MemorySource(initial());
  let cp = await startControlPlane(src, tmp.dir);
  const port = cp.ports.tls;
  const trust = cp.trustBundlePem;
  const c = client(cp, { name: 'node-a' });
  t.teardown(async () => { await c.close(); await cp.stop(); tmp.cleanup(); });
  const f = waitFor(updates(c), (u) => u.full, 10_000, 'full view');
  await c.start();
  await f;
  const down = new Promise<void>((resolve) => c.once('disconnected', () => resolve()));
  await cp.stop();
  await down;
  t.false(c.connected);
  t.is(c.view.count('WORKLOAD'), 2, 'the view survives the outage');

  const next = initial();
  next.push(workload('web-9', 'node-a', { labels: { app: 'web' } }));
  const back = waitFor(updates(c), (u) => u.source === 'server', 15_000, 'view from the restarted control plane');
  cp = await startControlPlane(new MemorySource(next), tmp.dir, { tlsPort: port });
  t.deepEqual(cp.trustBundlePem, trust);
  await back;
  t.true(c.connected);
  t.is(c.view.count('WORKLOAD'), 3);
  t.is(c.view.epoch, cp.table.epoch);
});

test('with the control plane unreachable, a subscriber starts from its persisted view', async (t) => {
  const tmp = tempDir('disc');
  const src = new MemorySource(initial());
  const cp = await startControlPlane(src, tmp.dir);
  const cacheFile = join(tmp.dir, 'view.json');
  const first = client(cp, { name: 'node-a', cacheFile, persistIntervalMs: 10 });
  const f = waitFor(updates(first), (u) => u.full, 10_000, 'full view');
  await first.start();
  await f;
  await first.close();
  const port = cp.ports.tls;
  const trust = cp.trustBundlePem;
  await cp.stop();
  const offline = new DiscoveryClient({ address: `127.0.0.1:${port}`, trustBundlePem: trust, kind: 'agent', name: 'node-a', token: TOKEN, cacheFile, backoff: { initialMs: 50, maxMs: 200 } });
  t.teardown(async () => { await offline.close(); tmp.cleanup(); });
  await offline.start();
  await offline.whenReady();
  t.false(offline.connected);
  t.is(offline.view.count('WORKLOAD'), 2);
  t.deepEqual([...offline.view.all('AUTHORIZATION_POLICY').keys()], ['default/deny-web']);
});
