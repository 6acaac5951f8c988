/**
 * Waypoint-only policy over real discovery (folder source, model, control plane, gRPC over TLS):
 * a waypoint receives the LocalRateLimits and the consistent-hash DestinationRule of the services
 * bound to it, as RATE_LIMIT and DESTINATION_RULE resources, and a delta when a limit changes or
 * goes away; a node agent receives neither. The waypoint's view turns into a WaypointConfig with
 * those limits and that hash policy.
 */
import test from 'ava';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FolderSource } from '../../../src/control/sources/folder-source.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import type { ViewChange } from '../../../src/discovery/local-view.js';
import type { RateLimitPolicy } from '../../../src/model/compile/types.js';
import { configFromView } from '../../../src/waypoint/view-config.js';
import { TOKEN, startControlPlane, tempDir, waitFor } from './fixtures.js';
import { nodeYaml, podYaml, serviceAccountYaml, serviceYaml } from './mesh-yaml.js';

type Update = ViewChange & { source: 'cache' | 'server' };

const NAMESPACE = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: wp}
`;

const GATEWAY = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
`;

const DESTINATION_RULE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec: {host: web, trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: session}}}}}
`;

const limitYaml = (target: string, maxTokens: number): string => `apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: web-limit, namespace: shop}
spec:
  targetRefs: [${target}]
  tokenBucket: {maxTokens: ${maxTokens}, tokensPerFill: 2, fillInterval: 500ms}
`;

function writeMesh(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'base.yaml'), [NAMESPACE, nodeYaml('node-a', '198.18.0.1'), serviceAccountYaml('web', 'shop'), serviceAccountYaml('wp', 'shop'), GATEWAY].join('---\n'));
  writeFileSync(join(dir, 'apps.yaml'), [
    podYaml({ name: 'web-1', ns: 'shop', node: 'node-a', ip: '198.19.1.10', app: 'web' }),
    podYaml({ name: 'wp-0', ns: 'shop', node: 'node-a', ip: '198.19.1.9', app: 'wp' }).replace('    app: wp\n', '    app: wp\n    gateway.networking.k8s.io/gateway-name: wp\n'),
    serviceYaml({ name: 'web', ns: 'shop', vip: '198.18.128.10', app: 'web' }),
  ].join('---\n'));
  writeFileSync(join(dir, 'web-dr.yaml'), DESTINATION_RULE);
  writeFileSync(join(dir, 'web-limit.yaml'), limitYaml('{kind: Service, name: web}', 5));
}

function atomicWrite(file: string, text: string): void {
  writeFileSync(`${file}.tmp~`, text);
  renameSync(`${file}.tmp~`, file);
}

const limitsOf = (c: DiscoveryClient): RateLimitPolicy[] | undefined => (c.view.get('RATE_LIMIT', 'shop/web') as { limits: RateLimitPolicy[] } | undefined)?.limits;

test('a waypoint receives the rate limits and consistent hashing of its services, and deltas when a limit changes; agents do not', async (t) => {
  const tmp = tempDir('wp-policy');
  const cfg = join(tmp.dir, 'mesh');
  writeMesh(cfg);
  const source = new FolderSource({ dir: cfg, compiler: new ModelCompiler(), debounceMs: 30, rescanMs: 0 });
  const cp = await startControlPlane(source, tmp.dir);
  const opts = { address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, token: TOKEN, backoff: { initialMs: 50, maxMs: 300 } };
  const w = new DiscoveryClient({ ...opts, kind: 'waypoint', name: 'shop/wp' });
  const a = new DiscoveryClient({ ...opts, kind: 'agent', name: 'node-a' });
  t.teardown(async () => { await w.close(); await a.close(); await cp.stop(); tmp.cleanup(); });
  const updates = (c: DiscoveryClient) => (cb: (u: Update) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; };
  const agentUpdates: Update[] = [];
  a.on('update', (u: Update) => agentUpdates.push(u));
  const fw = waitFor(updates(w), (u) => u.full, 10_000, 'waypoint full view');
  const fa = waitFor(updates(a), (u) => u.full, 10_000, 'agent full view');
  await w.start(); await a.start();
  await Promise.all([fw, fa]);

  t.deepEqual(limitsOf(w), [{
    key: 'shop/web-limit', source: { group: 'ambit.dev', kind: 'LocalRateLimit', namespace: 'shop', name: 'web-limit' }, via: 'service',
    maxTokens: 5, tokensPerFill: 2, fillIntervalMs: 500, statusCode: 429,
  }]);
  const dr = w.view.get('DESTINATION_RULE', 'shop/web') as { policy: { trafficPolicy: { consistentHash?: unknown } } };
  t.deepEqual(dr.policy.trafficPolicy.consistentHash, { httpCookie: { name: 'session' }, ringHash: { minimumRingSize: 1024 } });
  const config = configFromView(w.view, { waypoint: 'shop/wp' });
  const binding = config.binding('shop/web');
  t.deepEqual(binding?.rateLimits.map((l) => [l.key, l.spec.tokenBucket]), [['shop/web-limit', { maxTokens: 5, tokensPerFill: 2, fillInterval: '500ms' }]]);
  t.deepEqual(binding?.destinationPolicy?.trafficPolicy.consistentHash, { httpCookie: { name: 'session' }, ringHash: { minimumRingSize: 1024 } });

  t.is(a.view.count('RATE_LIMIT'), 0, 'agents receive no rate limits');
  t.is(a.view.count('DESTINATION_RULE'), 0);
  t.false('rateLimits' in (a.view.get('SERVICE', 'shop/web') as object), 'the global SERVICE carries no waypoint policy');

  // Retarget the limit to the waypoint Gateway and raise it: one RATE_LIMIT upsert.
  const changed = waitFor(updates(w), (u) => !u.full && u.upserted.some((x) => x.kind === 'RATE_LIMIT'), 10_000, 'rate-limit delta');
  atomicWrite(join(cfg, 'web-limit.yaml'), limitYaml('{group: gateway.networking.k8s.io, kind: Gateway, name: wp}', 9));
  const d = await changed;
  t.deepEqual(d.upserted, [{ kind: 'RATE_LIMIT', name: 'shop/web' }]);
  t.deepEqual(d.removed, []);
  t.like(limitsOf(w)?.[0], { key: 'shop/web-limit', via: 'waypoint', maxTokens: 9 });
  t.is(configFromView(w.view, { waypoint: 'shop/wp' }).binding('shop/web')?.rateLimits[0]?.spec.tokenBucket.maxTokens, 9);

  // Delete it: the waypoint's RATE_LIMIT goes away.
  const removed = waitFor(updates(w), (u) => u.removed.some((x) => x.kind === 'RATE_LIMIT'), 10_000, 'rate-limit removal');
  rmSync(join(cfg, 'web-limit.yaml'));
  const r = await removed;
  t.deepEqual(r.removed, [{ kind: 'RATE_LIMIT', name: 'shop/web' }]);
  t.is(limitsOf(w), undefined);
  t.deepEqual(configFromView(w.view, { waypoint: 'shop/wp' }).binding('shop/web')?.rateLimits, []);
  t.false(agentUpdates.some((u) => [...u.upserted, ...u.removed].some((x) => x.kind === 'RATE_LIMIT')), 'no rate limit ever reached the agent');
});
