/**
 * From mesh YAML to the waypoint's configuration along the real path: the model compiles, the
 * control plane projects and scopes the waypoint's view (projection.ts, views.ts), the view is
 * applied as a discovery push, and configFromView builds the WaypointConfig the proxy uses.
 * Checks that a DestinationRule's consistentHash gives sticky endpoint choice by header in the
 * waypoint's own balancer, and that LocalRateLimits arrive as limits the waypoint's limiter
 * enforces.
 */
import test from 'ava';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { Projector } from '../../../src/control/projection.js';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { isGlobal, scopedView, viewContext } from '../../../src/control/views.js';
import { LocalView } from '../../../src/discovery/local-view.js';
import type { DiscoveryResponse__Output } from '../../../src/control/proto.js';
import { hashKeyOf } from '../../../src/waypoint/balancer.js';
import { ClusterManager } from '../../../src/waypoint/cluster.js';
import { LocalRateLimiter } from '../../../src/waypoint/rate-limit.js';
import { configFromView } from '../../../src/waypoint/view-config.js';
import { WaypointError } from '../../../src/waypoint/errors.js';
import { node, ns, parseYaml, pod, service } from '../model/helpers.js';

const MESH =
  ns('shop', { 'ambit.dev/dataplane-mode': 'ambient', 'ambit.dev/use-waypoint': 'wp' }) +
  node('node-1', '198.18.0.1') +
  pod('shop', 'cart-1', '198.19.1.1', { app: 'cart' }) +
  pod('shop', 'cart-2', '198.19.1.2', { app: 'cart' }) +
  pod('shop', 'cart-3', '198.19.1.3', { app: 'cart' }) +
  pod('shop', 'wp-0', '198.19.1.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }) +
  service('shop', 'cart', '198.18.128.1', { app: 'cart' }) +
  `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
`;

const destinationRule = (loadBalancer: string): string =>
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cart, namespace: shop}\nspec: {host: cart, trafficPolicy: {loadBalancer: ${loadBalancer}}}\n---\n`;

const rateLimit = `apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: cart-limit, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: cart}]
  tokenBucket: {maxTokens: 2, tokensPerFill: 1, fillInterval: 1s}
  statusCode: 503
---
`;

/** The waypoint `shop/wp`'s view of `yaml`, as the control plane would push it. */
function waypointView(t: import('ava').ExecutionContext, yaml: string): LocalView {
  const parsed = parseYaml(yaml);
  const compiled = new ModelCompiler().compile(parsed.resources);
  const errors = [...parsed.diagnostics, ...compiled.diagnostics].filter((d) => d.severity === 'error');
  t.deepEqual(errors.map((d) => d.message), [], 'fixture mesh is valid');
  const table = new ResourceTable();
  table.replaceAll(new Projector().project(compiled.mesh!, parsed.resources));
  const scoped = scopedView(table, viewContext(table, { kind: 'waypoint', name: 'shop/wp' }));
  const entries = [...[...table.values()].filter(isGlobal), ...scoped.values()];
  const view = new LocalView();
  const upserts = entries.map((e) => ({ kind: e.resource.kind, name: e.resource.name, json: e.resource.json })) as DiscoveryResponse__Output['upserts'];
  view.apply({ epoch: table.epoch, version: table.version, full: true, baseVersion: 0, upserts, removals: [], changedAtMs: Date.now(), replaceKinds: [] });
  return view;
}

/** The endpoint the waypoint picks for each of `n` requests carrying `x-user: user`. */
function picks(yaml: string, t: import('ava').ExecutionContext, users: string[], n: number): Map<string, Set<string>> {
  const config = configFromView(waypointView(t, yaml), { waypoint: 'shop/wp' });
  const binding = config.binding('shop/cart');
  if (binding === undefined) throw new Error('shop/cart is not bound to shop/wp');
  const cluster = new ClusterManager().get(config, binding.service, undefined, 80, 'http1');
  t.is(cluster.endpoints.length, 3);
  const out = new Map<string, Set<string>>();
  for (const user of users) {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const key = hashKeyOf(cluster.consistentHash, { header: (name) => (name === 'x-user' ? user : undefined), sourceIp: '198.19.1.50' });
      seen.add(cluster.pick(new Set(), key)?.key ?? 'none');
    }
    out.set(user, seen);
  }
  return out;
}

const USERS = Array.from({ length: 24 }, (_, i) => `user-${i}`);

test('a DestinationRule with consistentHash on a header makes the waypoint pin each user to one endpoint', (t) => {
  const yaml = MESH + destinationRule('{consistentHash: {httpHeaderName: X-User}}');
  const config = configFromView(waypointView(t, yaml), { waypoint: 'shop/wp' });
  t.deepEqual(config.binding('shop/cart')?.destinationPolicy?.trafficPolicy.consistentHash, { httpHeaderName: 'x-user', ringHash: { minimumRingSize: 1024 } });

  const sticky = picks(yaml, t, USERS, 12);
  for (const [user, endpoints] of sticky) t.is(endpoints.size, 1, `${user} always reaches the same endpoint`);
  const used = new Set([...sticky.values()].flatMap((s) => [...s]));
  t.true(used.size >= 2, `users spread over the endpoints (used ${[...used].join(', ')})`);

  // The same mesh with round robin: one user's requests move between endpoints.
  const roundRobin = picks(MESH + destinationRule('{simple: ROUND_ROBIN}'), t, ['user-0'], 6);
  t.is(roundRobin.get('user-0')?.size, 3);
});

test('maglev by header is sticky too', (t) => {
  const sticky = picks(MESH + destinationRule('{consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 251}}}'), t, USERS, 8);
  for (const [user, endpoints] of sticky) t.is(endpoints.size, 1, `${user} always reaches the same endpoint`);
});

test('LocalRateLimits of a bound service reach the waypoint as limits its limiter enforces', (t) => {
  const config = configFromView(waypointView(t, MESH + rateLimit), { waypoint: 'shop/wp' });
  const limits = config.binding('shop/cart')?.rateLimits ?? [];
  t.deepEqual(limits, [{ key: 'shop/cart-limit', spec: { targetRefs: [{ kind: 'Service', name: 'cart' }], tokenBucket: { maxTokens: 2, tokensPerFill: 1, fillInterval: '1000ms' }, statusCode: 503 } }]);
  let now = 0;
  const limiter = new LocalRateLimiter(() => now);
  t.true(limiter.check(limits, undefined).allowed);
  t.true(limiter.check(limits, undefined).allowed);
  t.deepEqual(limiter.check(limits, undefined), { allowed: false, limit: 'shop/cart-limit', status: 503 });
  now = 1000;
  t.true(limiter.check(limits, undefined).allowed, 'one token back after the fill interval');
});

test('a RATE_LIMIT payload in the wrong shape is refused as a whole', (t) => {
  const view = waypointView(t, MESH + rateLimit);
  const bad = JSON.stringify({ service: 'shop/cart', limits: [{ key: 'shop/cart-limit', maxTokens: 0, tokensPerFill: 1, fillIntervalMs: 1000, statusCode: 429 }] });
  view.apply({ epoch: view.epoch, version: view.version + 1, full: false, baseVersion: view.version, upserts: [{ kind: 'RATE_LIMIT', name: 'shop/cart', json: bad }], removals: [], changedAtMs: Date.now(), replaceKinds: [] } as DiscoveryResponse__Output);
  const err = t.throws(() => configFromView(view, { waypoint: 'shop/wp' }), { instanceOf: WaypointError });
  t.regex(err?.message ?? '', /RATE_LIMIT 'shop\/cart'/);
});

test('a ServiceEntry host in the waypoint\'s view: its STATIC addresses and DNS names are the cluster\'s endpoints', (t) => {
  const yaml = MESH + `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec:
  hosts: [api.example.com]
  addresses: [198.18.230.7]
  ports: [{number: 443, name: tls, protocol: TLS, targetPort: 8443}]
  resolution: DNS
  endpoints: [{address: eu.api.example.com}, {address: 198.18.231.7, ports: {tls: 9443}}]
---
`;
  const config = configFromView(waypointView(t, yaml), { waypoint: 'shop/wp' });
  const svc = config.serviceByHost('api.example.com');
  if (svc === undefined) throw new Error('the ServiceEntry host is not in the waypoint view');
  const cluster = new ClusterManager().get(config, svc, undefined, 443, 'http1');
  t.deepEqual(cluster.endpoints.map((e) => [e.ip, e.port, e.identity]), [['eu.api.example.com', 8443, undefined], ['198.18.231.7', 9443, undefined]]);
});

test('Telemetry reaches the waypoint through its scoped view and applies per bound service', (t) => {
  const telemetry = (name: string, namespace: string, spec: string) => `apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec: ${spec}\n---\n`;
  const yaml = MESH + service('shop', 'other', '198.18.128.2', { app: 'cart' }) +
    telemetry('mesh', 'istio-system', '{tracing: [{randomSamplingPercentage: 25}]}') +
    telemetry('errors', 'shop', '{accessLogging: [{filter: {expression: "response.code >= 500"}}]}') +
    telemetry('cart', 'shop', '{targetRefs: [{kind: Service, name: cart}], accessLogging: [{disabled: true}], tracing: [{randomSamplingPercentage: 100}]}') +
    telemetry('elsewhere', 'legacy', '{accessLogging: [{disabled: true}]}');
  const view = waypointView(t, ns('istio-system') + ns('legacy') + yaml);
  t.deepEqual([...view.all('TELEMETRY').keys()].sort(), ['istio-system/mesh', 'shop/cart', 'shop/errors'], 'not the Telemetry of another namespace');
  const config = configFromView(view, { waypoint: 'shop/wp' });
  const cart = config.telemetryFor(config.binding('shop/cart')?.service);
  t.false(cart.server.accessLog.enabled);
  t.is(config.samplingPercent('198.18.128.1', 80), 100);
  const other = config.telemetryFor(config.binding('shop/other')?.service);
  t.truthy(config.binding('shop/other'), 'other is bound too (the namespace uses the waypoint)');
  t.is(other.server.accessLog.source, 'shop/errors');
  t.is(config.samplingPercent('198.18.128.2', 80), 25);
  t.is(config.samplingPercent('198.18.128.99', 80), 25, 'an address no service claims: the waypoint\'s own');
});

test('GRPCRoute and TCPRoute of a bound service reach the waypoint: gRPC rules as routes, TCPRoute rules as L4 routes of its binding (not in the SERVICE payload)', (t) => {
  const yaml = MESH + `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cart-grpc, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart}]
  rules: [{matches: [{method: {service: shop.Cart, method: Add}}], backendRefs: [{name: cart, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: cart-tcp, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
---
`;
  const view = waypointView(t, yaml);
  t.false('l4Routes' in (view.get('SERVICE', 'shop/cart') as object), 'L4 routes go to bound waypoints only');
  const binding = configFromView(view, { waypoint: 'shop/wp' }).binding('shop/cart');
  t.deepEqual(binding?.routes.map((r) => `${r.source.kind} ${JSON.stringify(r.matches[0]?.path)}`), ['GRPCRoute {"type":"exact","value":"/shop.Cart/Add"}']);
  t.deepEqual(binding?.l4Routes?.map((r) => `${r.source.kind} ${r.protocol} ${r.port} ${r.destinations.map((d) => d.host).join(',')}`), ['TCPRoute tcp 80 cart.shop.svc.cluster.local']);
  const bad = JSON.stringify({ service: 'shop/cart', routes: [], l4Routes: 'no' });
  view.apply({ epoch: view.epoch, version: view.version + 1, full: false, baseVersion: view.version, upserts: [{ kind: 'ROUTE', name: 'shop/cart', json: bad }], removals: [], changedAtMs: Date.now(), replaceKinds: [] } as DiscoveryResponse__Output);
  t.throws(() => configFromView(view, { waypoint: 'shop/wp' }), { instanceOf: WaypointError, message: /ROUTE 'shop\/cart'/ });
});
