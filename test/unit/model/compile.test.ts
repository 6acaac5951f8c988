import test from 'ava';
import { fileURLToPath } from 'node:url';
import { evaluateAuthorization } from '../../../src/model/authz/evaluate.js';
import { analyzePaths } from '../../../src/model/analyze.js';
import { compile } from '../../../src/model/compile/compile.js';
import { compileYaml, node, ns, pod, service } from './helpers.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples/bookinfo/', import.meta.url));
const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };

test('the examples analyze clean and compile to the expected mesh', async (t) => {
  const r = await analyzePaths([EXAMPLES]);
  t.deepEqual(r.diagnostics.map((d) => `${d.code} ${d.message}`), []);
  const s = r.snapshot;
  t.is(s.workloadCount, 7);
  t.deepEqual(s.workloadsOnNode('node-1').map((w) => w.key), ['bookinfo/ratings-v1', 'bookinfo/reviews-v1', 'bookinfo/waypoint-0', 'frontend/productpage-v1']);
  t.is(s.nodeAddress('node-2'), '198.18.0.2');
  const reviews = s.serviceByVip('198.18.128.12');
  t.is(reviews?.hostname, 'reviews.bookinfo.svc.cluster.local');
  t.deepEqual(reviews?.endpoints.map((e) => e.ip), ['198.19.1.11', '198.19.2.11', '198.19.2.12']);
  t.deepEqual(reviews?.waypoint, { namespace: 'bookinfo', name: 'waypoint', via: 'namespace' });
  const canary = reviews?.routes[1];
  t.deepEqual(canary?.action.type === 'forward' ? canary.action.destinations.map((d) => `${d.subset}:${d.weight}`) : [], ['v1:90', 'v2:10']);
  t.deepEqual(canary?.retries, { attempts: 3, perTryTimeoutMs: 2000, retryOn: ['5xx', 'connect-failure', 'refused-stream'], backoffMs: undefined });
  t.is(canary?.timeoutMs, 10_000);
  t.deepEqual(reviews?.destinationPolicy?.subsets.map((x) => x.name), ['v1', 'v2', 'v3']);
  t.is(reviews?.destinationPolicy?.trafficPolicy.loadBalancer, 'LEAST_REQUEST');
  t.is(s.serviceByHost('ratings', 'bookinfo')?.routes[0]?.timeoutMs, 1500);
  t.is(s.service('bookinfo/details')?.routes[0]?.source.kind, 'HTTPRoute');
  const pp = s.workloadByIp('198.19.1.10');
  t.is(pp?.identity, 'spiffe://cluster.local/ns/frontend/sa/bookinfo-productpage');
  t.is(pp?.mtls.mode, 'STRICT');
  t.is(pp?.mtls.source.level, 'mesh');
  t.false(s.hasWaypoint(pp!));
  t.true(s.hasWaypoint(s.workload('bookinfo/reviews-v1')!));
  t.false(s.workload('bookinfo/waypoint-0')?.enrolled);
  t.is(s.workload('bookinfo/waypoint-0')?.waypoint, undefined, 'a waypoint pod is not bound to itself');
  t.deepEqual(s.waypoint('bookinfo/waypoint')?.addresses, ['198.19.1.20']);
  t.deepEqual(s.waypointAuthorization('bookinfo/waypoint', 'bookinfo/reviews').map((p) => p.key), ['bookinfo/reviews-read-only']);
});

test('authorization from the examples: deny by default, allows by principal', async (t) => {
  const s = (await analyzePaths([EXAMPLES])).snapshot;
  const ratings = s.workload('bookinfo/ratings-v1')!;
  t.deepEqual(s.authorizationFor(ratings).map((p) => p.key), ['bookinfo/allow-nothing', 'bookinfo/allow-reviews-to-ratings']);
  const decide = (principal: string): boolean =>
    evaluateAuthorization(s.authorizationFor(ratings), { source: { principal, ip: '198.19.2.11' }, destination: { ip: ratings.ip!, port: 9080 } }, { layer: 'L4' }).allow;
  t.true(decide('cluster.local/ns/bookinfo/sa/bookinfo-reviews'));
  t.false(decide('cluster.local/ns/frontend/sa/bookinfo-productpage'));
});

test('identity uses the trust domain option and the default ServiceAccount', (t) => {
  const s = compileYaml(t, ns('a', AMBIENT) + node('node-1', '198.18.0.1') + pod('a', 'p', '198.19.1.1', {}), { trustDomain: 'example.org' });
  const w = s.workload('a/p')!;
  t.is(w.identity, 'spiffe://example.org/ns/a/sa/default');
  t.deepEqual(s.workloadsWithIdentity(w.identity).map((x) => x.key), ['a/p']);
  t.deepEqual(s.workloadsInNamespace('a').map((x) => x.key), ['a/p']);
});

test('enrollment: namespace label, pod opt-out, pod opt-in, host network', (t) => {
  const y =
    ns('in', AMBIENT) +
    ns('out') +
    node('node-1', '198.18.0.1') +
    pod('in', 'plain', '198.19.1.1', {}) +
    pod('in', 'optout', '198.19.1.2', { 'ambit.dev/dataplane-mode': 'none' }) +
    pod('out', 'plain', '198.19.1.3', {}) +
    pod('out', 'optin', '198.19.1.4', { 'ambit.dev/dataplane-mode': 'ambient' }) +
    'apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet, namespace: in}\nspec: {hostNetwork: true, nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 198.18.0.1}\n';
  const s = compileYaml(t, y);
  const enrolled = s.workloads().filter((w) => w.enrolled).map((w) => w.key);
  t.deepEqual(enrolled, ['in/plain', 'out/optin']);
});

test('readiness: phase and Ready condition; not-ready pods are not endpoints', (t) => {
  const y =
    ns('a') +
    node('node-1', '198.18.0.1') +
    pod('a', 'ok', '198.19.1.1', { app: 'x' }) +
    pod('a', 'pending', '198.19.1.2', { app: 'x' }, { phase: 'Pending' }) +
    'apiVersion: v1\nkind: Pod\nmetadata: {name: notready, namespace: a, labels: {app: x}}\nspec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\nstatus: {podIP: 198.19.1.3, conditions: [{type: Ready, status: "False"}]}\n---\n' +
    service('a', 'x', '198.18.128.1', { app: 'x' });
  const s = compileYaml(t, y);
  t.deepEqual(s.service('a/x')?.endpoints.map((e) => e.workload), ['a/ok']);
  t.false(s.workload('a/notready')!.ready);
});

test('targetPort: number, named (per pod), default to port; headless Service', (t) => {
  const y =
    ns('a') +
    node('node-1', '198.18.0.1') +
    pod('a', 'v1', '198.19.1.1', { app: 'x' }, { ports: { http: 8080, metrics: 9090 } }) +
    pod('a', 'v2', '198.19.1.2', { app: 'x' }, { ports: { http: 8181, metrics: 9090 } }) +
    service('a', 'x', '198.18.128.1', { app: 'x' }, '[{name: http, port: 80, targetPort: http}, {name: m, port: 9090}, {name: n, port: 70, targetPort: 7070}]') +
    service('a', 'h', 'None', { app: 'x' });
  const s = compileYaml(t, y);
  t.deepEqual(s.service('a/x')?.endpoints.map((e) => e.ports), [{ 80: 8080, 9090: 9090, 70: 7070 }, { 80: 8181, 9090: 9090, 70: 7070 }]);
  const h = s.service('a/h')!;
  t.is(h.vip, undefined);
  t.is(h.endpoints.length, 2);
});

test('PeerAuthentication: workload > namespace > mesh, UNSET inherits, port level, default PERMISSIVE', (t) => {
  const pa = (name: string, nsName: string, spec: string): string => `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${nsName}}\nspec: ${spec}\n---\n`;
  const base = ns('istio-system') + ns('a') + ns('b') + ns('c') + node('node-1', '198.18.0.1');
  const pods = pod('a', 'web', '198.19.1.1', { app: 'web' }) + pod('a', 'db', '198.19.1.2', { app: 'db' }) + pod('b', 'x', '198.19.1.3', {}) + pod('c', 'y', '198.19.1.4', {});
  const none = compileYaml(t, base + pods);
  t.deepEqual(none.workload('a/web')!.mtls, { mode: 'PERMISSIVE', source: { level: 'default' }, ports: {} });
  const s = compileYaml(
    t,
    base +
      pods +
      pa('mesh', 'istio-system', '{mtls: {mode: STRICT}}') +
      pa('ns-a', 'a', '{mtls: {mode: PERMISSIVE}}') +
      pa('ns-b', 'b', '{mtls: {mode: UNSET}}') +
      pa('web', 'a', '{selector: {matchLabels: {app: web}}, mtls: {mode: UNSET}, portLevelMtls: {"8080": {mode: DISABLE}, "9090": {mode: UNSET}}}') +
      pa('db', 'a', '{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}'),
  );
  const web = s.workload('a/web')!;
  t.is(web.mtls.mode, 'PERMISSIVE', 'UNSET on the workload inherits the namespace');
  t.is(web.mtls.source.level, 'namespace');
  t.is(s.mtlsMode(web, 8080), 'DISABLE');
  t.is(s.mtlsMode(web, 9090), 'PERMISSIVE', 'port-level UNSET inherits');
  t.is(s.mtlsMode(web, 1234), 'PERMISSIVE');
  t.is(s.workload('a/db')!.mtls.mode, 'STRICT');
  t.is(s.workload('b/x')!.mtls.mode, 'STRICT', 'namespace UNSET inherits the mesh');
  t.is(s.workload('b/x')!.mtls.source.level, 'mesh');
  t.is(s.workload('c/y')!.mtls.mode, 'STRICT');
});

test('authorization lists: mesh-wide, namespace-wide, selector (root first); targetRef policies only at waypoints', (t) => {
  const ap = (name: string, nsName: string, spec: string): string => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: ${nsName}}\nspec: ${spec}\n---\n`;
  const y =
    ns('istio-system') +
    ns('a') +
    ns('b') +
    node('node-1', '198.18.0.1') +
    pod('a', 'web', '198.19.1.1', { app: 'web' }) +
    pod('b', 'web', '198.19.1.2', { app: 'web' }) +
    service('a', 'web', '198.18.128.1', { app: 'web' }) +
    ap('z-mesh', 'istio-system', '{action: DENY, rules: [{from: [{source: {ipBlocks: [203.0.113.0/24]}}]}]}') +
    ap('root-web', 'istio-system', '{selector: {matchLabels: {app: web}}, action: AUDIT, rules: [{}]}') +
    ap('b-ns', 'a', '{}') +
    ap('a-web', 'a', '{selector: {matchLabels: {app: web}}, rules: [{from: [{source: {namespaces: [b]}}]}]}') +
    ap('other', 'a', '{selector: {matchLabels: {app: other}}}') +
    ap('svc', 'a', '{targetRefs: [{kind: Service, group: "", name: web}], rules: [{to: [{operation: {methods: [GET]}}]}]}');
  const s = compileYaml(t, y);
  t.deepEqual(s.authorizationFor(s.workload('a/web')!).map((p) => p.key), ['istio-system/z-mesh', 'a/b-ns', 'istio-system/root-web', 'a/a-web']);
  t.deepEqual(s.authorizationFor(s.workload('b/web')!).map((p) => p.key), ['istio-system/z-mesh', 'istio-system/root-web']);
  t.deepEqual(s.waypointAuthorization('a/none', 'a/web').map((p) => p.key), ['a/svc']);
  t.deepEqual(s.waypointAuthorization('a/none').map((p) => p.key), []);
});

test('waypoint bindings: namespace, service override, pod opt-out, cross-namespace, missing', (t) => {
  const gw = (nsName: string, name: string): string =>
    `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: ${name}, namespace: ${nsName}}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\n`;
  const y =
    ns('a', { ...AMBIENT, 'ambit.dev/use-waypoint': 'wp' }) +
    ns('b', { ...AMBIENT, 'ambit.dev/use-waypoint': 'shared', 'ambit.dev/use-waypoint-namespace': 'infra' }) +
    ns('c', { 'ambit.dev/use-waypoint': 'ghost' }) +
    ns('infra') +
    node('node-1', '198.18.0.1') +
    gw('a', 'wp') +
    gw('a', 'svc-wp') +
    gw('infra', 'shared') +
    pod('a', 'web', '198.19.1.1', { app: 'web' }) +
    pod('a', 'solo', '198.19.1.2', { app: 'solo', 'ambit.dev/use-waypoint': 'none' }) +
    pod('a', 'wp-0', '198.19.1.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }) +
    pod('b', 'x', '198.19.1.3', {}) +
    pod('c', 'y', '198.19.1.4', {}) +
    service('a', 'web', '198.18.128.1', { app: 'web' }, undefined, { 'ambit.dev/use-waypoint': 'svc-wp' }) +
    service('a', 'solo', '198.18.128.2', { app: 'solo' });
  const s = compileYaml(t, y);
  t.deepEqual(s.workload('a/web')!.waypoint, { namespace: 'a', name: 'wp', via: 'namespace' });
  t.is(s.workload('a/solo')!.waypoint, undefined);
  t.deepEqual(s.service('a/web')!.waypoint, { namespace: 'a', name: 'svc-wp', via: 'service' });
  t.deepEqual(s.service('a/solo')!.waypoint, { namespace: 'a', name: 'wp', via: 'namespace' });
  t.true(s.hasWaypoint(s.workload('a/solo')!), 'a Service bound to a waypoint counts');
  t.deepEqual(s.workload('b/x')!.waypoint, { namespace: 'infra', name: 'shared', via: 'namespace' });
  t.is(s.workload('c/y')!.waypoint, undefined);
  t.deepEqual(s.workload('c/y')!.waypointTarget, { namespace: 'c', name: 'ghost', via: 'namespace' });
  t.deepEqual(s.waypoint('a/wp')?.workloads, ['a/wp-0']);
  t.deepEqual(s.waypoints().map((w) => w.key), ['a/svc-wp', 'a/wp', 'infra/shared']);
});

test('host resolution: short names in the writer namespace, FQDN as is, wildcards', (t) => {
  const y =
    ns('a') +
    ns('b') +
    node('node-1', '198.18.0.1') +
    pod('a', 'p', '198.19.1.1', { app: 'x' }) +
    pod('b', 'p', '198.19.1.2', { app: 'x' }) +
    service('a', 'x', '198.18.128.1', { app: 'x' }) +
    service('b', 'x', '198.18.128.2', { app: 'x' }) +
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: to-b, namespace: a}\nspec:\n  hosts: [x.b.svc.cluster.local]\n  http: [{route: [{destination: {host: x}}]}]\n---\n' +
    'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: all, namespace: a}\nspec: {host: "*.svc.cluster.local", trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n';
  const s = compileYaml(t, y);
  const b = s.service('b/x')!;
  t.deepEqual(b.routes[0]?.action.type === 'forward' ? b.routes[0].action.destinations[0]?.host : undefined, 'x.a.svc.cluster.local', 'short host resolved in the VirtualService namespace (a), not the Service namespace');
  t.deepEqual(s.service('a/x')!.routes, []);
  t.is(s.service('a/x')!.destinationPolicy?.trafficPolicy.loadBalancer, 'RANDOM');
  t.is(s.serviceByHost('x', 'b')?.key, 'b/x');
  t.is(s.serviceByHost('x.b'), undefined, 'dotted names are not expanded');
  t.deepEqual(s.servicesMatchingHost('*.svc.cluster.local', 'a').map((x) => x.key), ['a/x', 'b/x']);
});

test('HTTPRoute rules: precedence, filters, no backend means 500', (t) => {
  const y =
    ns('a') +
    node('node-1', '198.18.0.1') +
    pod('a', 'p', '198.19.1.1', { app: 'x' }) +
    service('a', 'x', '198.18.128.1', { app: 'x' }) +
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: a}
spec:
  parentRefs: [{group: "", kind: Service, name: x, port: 80}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: x, port: 80, weight: 3}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: X-Env, value: prod}], remove: [X-Debug]}
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
      timeouts: {request: 2s}
      retry: {attempts: 4, codes: [503]}
    - matches: [{path: {type: Exact, value: /api/health}}]
      backendRefs: [{name: x, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /gone}}]
`;
  const s = compileYaml(t, y);
  const routes = s.service('a/x')!.routes;
  t.deepEqual(routes.map((r) => r.path), ['spec.rules[1].matches[0]', 'spec.rules[2].matches[0]', 'spec.rules[0].matches[0]']);
  const api = routes[2]!;
  t.deepEqual(api.requestHeaders, { set: { 'x-env': 'prod' }, add: {}, remove: ['x-debug'] });
  t.deepEqual(api.rewrite, { path: undefined, prefixPath: '/v2', authority: undefined });
  t.is(api.timeoutMs, 2000);
  t.deepEqual(api.retries?.retryOn, ['503']);
  t.is(api.matches[0]?.port, 80);
  t.deepEqual(routes[1]?.action, { type: 'direct-response', status: 500, body: undefined });
});

test('DestinationRule: subsets inherit and override traffic policy, port-level settings', (t) => {
  const y =
    ns('a') +
    node('node-1', '198.18.0.1') +
    pod('a', 'p', '198.19.1.1', { app: 'x', version: 'v1' }) +
    service('a', 'x', '198.18.128.1', { app: 'x' }) +
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x, namespace: a}
spec:
  host: x
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 250ms}}
    outlierDetection: {consecutive5xxErrors: 3}
    portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: RANDOM}
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        connectionPool: {http: {maxRetries: 1}}
`;
  const s = compileYaml(t, y);
  const dp = s.service('a/x')!.destinationPolicy!;
  t.is(dp.trafficPolicy.loadBalancer, 'LEAST_REQUEST');
  t.is(dp.trafficPolicy.connectionPool?.connectTimeoutMs, 250);
  t.deepEqual(dp.trafficPolicy.outlierDetection, { consecutive5xxErrors: 3, consecutiveGatewayErrors: undefined, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0 });
  t.is(dp.trafficPolicy.ports[80]?.loadBalancer, 'RANDOM');
  t.is(dp.trafficPolicy.ports[80]?.connectionPool?.maxConnections, 10);
  const v1 = dp.subsets[0]!;
  t.is(v1.trafficPolicy.loadBalancer, 'LEAST_REQUEST');
  t.is(v1.trafficPolicy.connectionPool?.maxRetries, 1);
  t.is(v1.trafficPolicy.connectionPool?.maxConnections, undefined, 'a subset connectionPool replaces the whole group, as in Istio');
});

test('VirtualService matches, fault, mirror, redirect and direct response normalise', (t) => {
  const y =
    ns('a') +
    node('node-1', '198.18.0.1') +
    pod('a', 'p', '198.19.1.1', { app: 'x' }) +
    service('a', 'x', '198.18.128.1', { app: 'x' }) +
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x, namespace: a}
spec:
  hosts: [x]
  http:
    - match: [{uri: {regex: "^/r/.*"}, headers: {X-User: {exact: bob}}, withoutHeaders: {x-skip: {}}, queryParams: {debug: {exact: "1"}}, ignoreUriCase: true}]
      redirect: {uri: /new, authority: example.com, redirectCode: 308}
    - match: [{uri: {exact: /teapot}}]
      directResponse: {status: 418, body: {string: short and stout}}
    - route: [{destination: {host: x}}]
      fault: {abort: {httpStatus: 503, percentage: {value: 1.5}}, delay: {fixedDelay: 1s}}
      mirror: {host: x}
      mirrorPercentage: {value: 10}
      headers: {response: {add: {x-served-by: ambit}}}
`;
  const s = compileYaml(t, y);
  const [r0, r1, r2] = s.service('a/x')!.routes;
  t.deepEqual(r0?.matches[0]?.headers, [
    { name: 'x-user', match: { type: 'exact', value: 'bob' }, invert: false },
    { name: 'x-skip', match: undefined, invert: true },
  ]);
  t.true(r0?.matches[0]?.ignorePathCase);
  t.deepEqual(r0?.action, { type: 'redirect', scheme: undefined, host: 'example.com', port: undefined, path: '/new', prefixPath: undefined, status: 308 });
  t.deepEqual(r1?.action, { type: 'direct-response', status: 418, body: 'short and stout' });
  t.deepEqual(r2?.fault, { delay: { ms: 1000, percent: 100 }, abort: { httpStatus: 503, percent: 1.5 } });
  t.deepEqual(r2?.mirrors.map((m) => [m.destination.host, m.percent]), [['x.a.svc.cluster.local', 10]]);
  t.deepEqual(r2?.responseHeaders?.add, { 'x-served-by': 'ambit' });
});

test('attachedPolicies works for any selector kind (RequestAuthentication here)', (t) => {
  const ra = (name: string, nsName: string, sel: string): string =>
    `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ${name}, namespace: ${nsName}}\nspec: {${sel}jwtRules: [{issuer: https://i.example}]}\n---\n`;
  const y = ns('istio-system') + ns('a') + node('node-1', '198.18.0.1') + pod('a', 'p', '198.19.1.1', { app: 'x' }) + ra('mesh', 'istio-system', '') + ra('sel', 'a', 'selector: {matchLabels: {app: x}}, ') + ra('miss', 'a', 'selector: {matchLabels: {app: y}}, ');
  const s = compileYaml(t, y);
  t.deepEqual(s.attachedPolicies('security.istio.io/RequestAuthentication', s.workload('a/p')!).map((r) => r.ref.name), ['mesh', 'sel']);
});

test('the snapshot is immutable', (t) => {
  const s = compileYaml(t, ns('a') + node('node-1', '198.18.0.1') + pod('a', 'p', '198.19.1.1', { app: 'x' }) + service('a', 'x', '198.18.128.1', { app: 'x' }));
  const w = s.workload('a/p')!;
  t.throws(() => {
    (w as { ip: string | undefined }).ip = '1.2.3.4';
  });
  t.throws(() => {
    (s.service('a/x')!.endpoints as unknown as unknown[]).push(1);
  });
  t.true(Object.isFrozen(s.workloadsInNamespace('a')));
  t.true(Object.isFrozen(w.labels));
});

test('compile of nothing is an empty snapshot', (t) => {
  const s = compile([]);
  t.is(s.workloadCount, 0);
  t.deepEqual(s.services(), []);
  t.deepEqual(s.diagnostics(), []);
  t.is(s.version, 1);
});

test('authorizationSetFor is cached per workload object and decides like the list', async (t) => {
  const s = (await analyzePaths([EXAMPLES])).snapshot;
  const w = s.workload('bookinfo/reviews-v1')!;
  const set = s.authorizationSetFor(w);
  t.is(s.authorizationSetFor(w), set);
  const ctx = { source: { principal: 'cluster.local/ns/frontend/sa/bookinfo-productpage', ip: '198.19.1.10' }, destination: { ip: w.ip!, port: 9080 } };
  t.deepEqual(evaluateAuthorization(set, ctx, { layer: 'L4' }), evaluateAuthorization(s.authorizationFor(w), ctx, { layer: 'L4' }));
  t.true(evaluateAuthorization(set, ctx, { layer: 'L4' }).allow);
});

test('L7 rules on a selector policy without a waypoint: warned, and denied at L4', (t) => {
  const y =
    ns('a', AMBIENT) +
    node('node-1', '198.18.0.1') +
    pod('a', 'web', '198.19.1.1', { app: 'web' }) +
    'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, namespace: a}\nspec: {selector: {matchLabels: {app: web}}, rules: [{to: [{operation: {methods: [GET]}}]}]}\n';
  const s = compileYaml(t, y);
  const w = s.workload('a/web')!;
  t.false(s.hasWaypoint(w));
  const d = s.diagnostics().find((x) => x.code === 'AMBIT_POLICY_L7_WITHOUT_WAYPOINT');
  t.regex(d?.message ?? '', /a\/web has no waypoint: its L7 rules never match at L4, so they allow nothing/);
  t.is(d?.path, 'spec.rules');
  const decision = evaluateAuthorization(s.authorizationFor(w), { source: { principal: 'cluster.local/ns/a/sa/default', ip: '198.19.1.2' }, destination: { ip: '198.19.1.1', port: 8080 } }, { layer: 'L4' });
  t.false(decision.allow);
});

test('targetingResources finds policies attached by targetRefs (any kind)', async (t) => {
  const r = await analyzePaths([fileURLToPath(new URL('../../fixtures/model/all-kinds.yaml', import.meta.url))]);
  t.deepEqual(r.diagnostics.map((d) => d.code), []);
  const s = r.snapshot;
  t.deepEqual(s.targetingResources('ambit.dev/LocalRateLimit', { kind: 'Service', namespace: 'shop', name: 'cart' }).map((x) => x.ref.name), ['cart-limit']);
  t.deepEqual(s.targetingResources('security.istio.io/RequestAuthentication', { kind: 'Gateway', namespace: 'shop', name: 'shop-waypoint' }).map((x) => x.ref.name), ['cart-jwt']);
  t.deepEqual(s.targetingResources('ambit.dev/LocalRateLimit', { kind: 'Gateway', namespace: 'shop', name: 'cart' }), []);
});
