/**
 * GRPCRoute, TCPRoute, TLSRoute and ReferenceGrant: Gateway-API-shaped YAML loads (or is refused
 * with the field named), compiles to the routes the waypoint applies, backendRefs across
 * namespaces follow ReferenceGrants, and every route gets Accepted and ResolvedRefs conditions.
 */
import test from 'ava';
import { applyChange, compile } from '../../../src/model/compile/compile.js';
import { grpcMethodPath } from '../../../src/model/compile/gateway-routes.js';
import type { RouteStatus } from '../../../src/model/compile/route-status.js';
import { codes, compileYaml, node, ns, parseYaml, pod, service } from './helpers.js';

const BASE =
  ns('app') +
  ns('other') +
  node('node-1', '198.18.0.1') +
  pod('app', 'v1', '198.19.1.1', { app: 'echo', version: 'v1' }) +
  pod('app', 'v2', '198.19.1.2', { app: 'echo2' }) +
  pod('other', 'db', '198.19.1.3', { app: 'db' }) +
  service('app', 'echo', '198.18.128.1', { app: 'echo' }, '[{name: grpc, port: 9000}, {name: tcp, port: 5000}, {name: tls, port: 443}]') +
  service('app', 'echo2', '198.18.128.2', { app: 'echo2' }, '[{name: grpc, port: 9000}, {name: tcp, port: 5000}, {name: tls, port: 443}]') +
  service('other', 'db', '198.18.128.3', { app: 'db' }, '[{name: tcp, port: 5000}]');

const GRPC = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: split, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9000}]
  rules:
    - matches:
        - method: {service: echo.Echo, method: Say}
          headers: [{name: X-Canary, value: "yes"}]
      backendRefs: [{name: echo2, port: 9000}]
    - matches: [{method: {service: echo.Echo}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {add: [{name: X-Via, value: grpcroute}]}
        - type: ResponseHeaderModifier
          responseHeaderModifier: {set: [{name: X-Served, value: mesh}]}
        - type: RequestMirror
          requestMirror: {backendRef: {name: echo2, port: 9000}}
      backendRefs: [{name: echo, port: 9000, weight: 80}, {name: echo2, port: 9000, weight: 20}]
    - matches: [{method: {type: RegularExpression, method: "Get.*"}}]
      backendRefs: [{name: echo, port: 9000}]
`;

function conditions(s: readonly RouteStatus[], name: string): string[] {
  const st = s.find((r) => r.route.name === name);
  return (st?.parents ?? []).flatMap((p) => p.conditions.map((c) => `${p.parentRef.name} ${c.type}=${c.status} ${c.reason}`));
}

test('GRPCRoute method matches are path matches, as Istio compiles them', (t) => {
  t.deepEqual(grpcMethodPath({ service: 'pkg.Svc', method: 'Do' }), { type: 'exact', value: '/pkg.Svc/Do' });
  t.deepEqual(grpcMethodPath({ type: 'Exact', service: 'pkg.Svc' }), { type: 'prefix', value: '/pkg.Svc/' });
  t.deepEqual(grpcMethodPath({ method: 'Do' }), { type: 'regex', value: '/[^/]+/Do' });
  t.deepEqual(grpcMethodPath({ type: 'RegularExpression', service: 'pkg\\..*' }), { type: 'regex', value: '/pkg\\..*/[^/]+' });
  t.is(grpcMethodPath(undefined), undefined);
});

test('GRPCRoute compiles to weighted routes with header filters and mirrors, in GRPCRoute precedence', (t) => {
  const s = compileYaml(t, BASE + GRPC);
  const svc = s.service('app/echo')!;
  t.deepEqual(svc.routeSources.map((r) => `${r.kind} ${r.name}`), ['GRPCRoute split']);
  t.deepEqual(svc.routes.map((r) => r.path), ['spec.rules[0].matches[0]', 'spec.rules[1].matches[0]', 'spec.rules[2].matches[0]']);
  const [say, all, get] = svc.routes;
  t.deepEqual(say?.matches[0]?.path, { type: 'exact', value: '/echo.Echo/Say' });
  t.deepEqual(say?.matches[0]?.headers, [{ name: 'x-canary', match: { type: 'exact', value: 'yes' }, invert: false }]);
  t.is(say?.matches[0]?.port, 9000);
  t.deepEqual(all?.matches[0]?.path, { type: 'prefix', value: '/echo.Echo/' });
  t.deepEqual(all?.action, {
    type: 'forward',
    destinations: [
      { host: 'echo.app.svc.cluster.local', subset: undefined, port: 9000, weight: 80 },
      { host: 'echo2.app.svc.cluster.local', subset: undefined, port: 9000, weight: 20 },
    ],
  });
  t.deepEqual(all?.requestHeaders, { set: {}, add: { 'x-via': 'grpcroute' }, remove: [] });
  t.deepEqual(all?.responseHeaders, { set: { 'x-served': 'mesh' }, add: {}, remove: [] });
  t.deepEqual(all?.mirrors.map((m) => `${m.destination.host} ${m.percent}`), ['echo2.app.svc.cluster.local 100']);
  t.deepEqual(get?.matches[0]?.path, { type: 'regex', value: '/[^/]+/Get.*' });
  t.deepEqual(conditions(s.routeStatuses(), 'split'), ['echo Accepted=True Accepted', 'echo ResolvedRefs=True ResolvedRefs']);
  t.deepEqual(codes(s.diagnostics()), []);
});

test('GRPCRoute schema: a method match needs service or method; Exact names must be gRPC names; unknown fields are refused', (t) => {
  const bad = (rule: string) => parseYaml(`apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: app}\nspec:\n  parentRefs: [{group: "", kind: Service, name: echo}]\n  rules: [${rule}]\n`).diagnostics.map((d) => `${d.code} ${d.path}`);
  t.deepEqual(bad('{matches: [{method: {type: Exact}}], backendRefs: [{name: echo, port: 9000}]}'), ['AMBIT_SCHEMA_REQUIRED spec.rules[0].matches[0].method']);
  t.deepEqual(bad('{matches: [{method: {service: "not/a.service", method: "Say"}}]}'), ['AMBIT_SCHEMA_FORMAT spec.rules[0].matches[0].method.service']);
  t.deepEqual(bad('{matches: [{method: {method: "Say-It"}}]}'), ['AMBIT_SCHEMA_FORMAT spec.rules[0].matches[0].method.method']);
  t.deepEqual(bad('{matches: [{method: {type: RegularExpression, service: "a/b"}}]}'), [], 'a regex is not a name');
  t.deepEqual(bad('{matches: [{path: {value: /x}}]}'), ['AMBIT_SCHEMA_UNKNOWN_FIELD spec.rules[0].matches[0].path']);
  t.deepEqual(bad('{timeouts: {request: 1s}}'), ['AMBIT_SCHEMA_UNKNOWN_FIELD spec.rules[0].timeouts']);
  t.deepEqual(bad('{filters: [{type: URLRewrite}]}'), ['AMBIT_SCHEMA_ENUM spec.rules[0].filters[0].type']);
});

test('TCPRoute and TLSRoute compile to L4 routes: TLSRoutes by SNI first, then TCPRoutes by port; both need rules with backends', (t) => {
  const y =
    BASE +
    `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 5000}]
  rules: [{backendRefs: [{name: echo, port: 5000, weight: 1}, {name: echo2, port: 5000, weight: 3}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: tls, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 443}]
  hostnames: [api.example.com, "*.Internal.example.com"]
  rules: [{backendRefs: [{name: echo2, port: 443}]}]
`;
  const s = compileYaml(t, y);
  const l4 = s.service('app/echo')!.l4Routes ?? [];
  t.deepEqual(
    l4.map((r) => `${r.source.kind} ${r.protocol} ${r.port} [${r.sniHosts.join(',')}] ${r.destinations.map((d) => `${d.host}:${d.port}*${d.weight}`).join(' ')}`),
    [
      'TLSRoute tls 443 [api.example.com,*.internal.example.com] echo2.app.svc.cluster.local:443*1',
      'TCPRoute tcp 5000 [] echo.app.svc.cluster.local:5000*1 echo2.app.svc.cluster.local:5000*3',
    ],
  );
  t.is(s.service('app/echo2')!.l4Routes, undefined, 'a Service without L4 routes carries none');
  t.deepEqual(conditions(s.routeStatuses(), 'tcp'), ['echo Accepted=True Accepted', 'echo ResolvedRefs=True ResolvedRefs']);
  const noRules = parseYaml('apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t, namespace: app}\nspec: {parentRefs: [{kind: Service, group: "", name: echo}]}\n');
  t.deepEqual(noRules.diagnostics.map((d) => `${d.code} ${d.path}`), ['AMBIT_SCHEMA_REQUIRED spec']);
  t.regex(noRules.diagnostics[0]?.message ?? '', /rules/);
  const noBackends = parseYaml('apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: t, namespace: app}\nspec: {hostnames: ["bad_host"], rules: [{backendRefs: []}]}\n');
  t.deepEqual(noBackends.diagnostics.map((d) => `${d.code} ${d.path}`).sort(), ['AMBIT_SCHEMA_FORMAT spec.hostnames[0]', 'AMBIT_SCHEMA_RANGE spec.rules[0].backendRefs']);
});

const CROSS = `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: to-db, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 5000}]
  rules: [{backendRefs: [{name: db, namespace: other, port: 5000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-to-db, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: echo2, port: 9000}]
  rules: [{backendRefs: [{name: db, namespace: other, port: 5000, weight: 1}, {name: echo2, port: 9000, weight: 1}]}]
`;

test('ReferenceGrant denied: a backendRef to another namespace without a grant is refused (RefNotPermitted) and not used', (t) => {
  const s = compileYaml(t, BASE + CROSS);
  t.deepEqual(s.service('app/echo')!.l4Routes?.[0]?.destinations, [], 'no usable backend: the waypoint closes the connection');
  const http = s.service('app/echo2')!.routes[0]!;
  t.deepEqual(http.action.type === 'forward' ? http.action.destinations.map((d) => d.host) : [], ['echo2.app.svc.cluster.local']);
  t.deepEqual(conditions(s.routeStatuses(), 'to-db'), ['echo Accepted=True Accepted', 'echo ResolvedRefs=False RefNotPermitted']);
  const d = s.diagnostics().filter((x) => x.code === 'AMBIT_REF_NOT_PERMITTED');
  t.deepEqual(d.map((x) => `${x.resource?.name} ${x.path}`).sort(), ['to-db spec.rules[0].backendRefs[0].namespace', 'web-to-db spec.rules[0].backendRefs[0].namespace']);
});

test('ReferenceGrant allowed: a grant in the target namespace for the route kind and namespace opens it; a grant for another kind, namespace or name does not', (t) => {
  const grant = (name: string, from: string, to: string) => `---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: ${name}, namespace: other}\nspec:\n  from: [${from}]\n  to: [${to}]\n`;
  const wrong =
    grant('wrong-kind', '{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: app}', '{group: "", kind: Service}') +
    grant('wrong-ns', '{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: elsewhere}', '{group: "", kind: Service}') +
    grant('wrong-name', '{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}', '{group: "", kind: Service, name: cache}');
  const denied = compileYaml(t, BASE + CROSS + wrong);
  t.deepEqual(denied.service('app/echo')!.l4Routes?.[0]?.destinations, []);
  t.deepEqual(conditions(denied.routeStatuses(), 'to-db'), ['echo Accepted=True Accepted', 'echo ResolvedRefs=False RefNotPermitted']);

  const ok = compileYaml(t, BASE + CROSS + grant('tcp-to-db', '{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}', '{group: "", kind: Service, name: db}'));
  t.deepEqual(ok.service('app/echo')!.l4Routes?.[0]?.destinations.map((d) => d.host), ['db.other.svc.cluster.local']);
  t.deepEqual(conditions(ok.routeStatuses(), 'to-db'), ['echo Accepted=True Accepted', 'echo ResolvedRefs=True ResolvedRefs']);
  t.deepEqual(conditions(ok.routeStatuses(), 'web-to-db'), ['echo2 Accepted=True Accepted', 'echo2 ResolvedRefs=False RefNotPermitted'], 'the grant names TCPRoutes only');
  t.deepEqual(ok.diagnostics().filter((x) => x.code === 'AMBIT_REF_NOT_PERMITTED').map((x) => x.resource?.name), ['web-to-db']);
  const bad = parseYaml('apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: other}\nspec: {from: [], to: [{group: "", kind: Service, port: 1}]}\n');
  t.deepEqual(bad.diagnostics.map((d) => `${d.code} ${d.path}`).sort(), ['AMBIT_SCHEMA_RANGE spec.from', 'AMBIT_SCHEMA_UNKNOWN_FIELD spec.to[0].port']);
});

test('route status: NoMatchingParent for a missing Service, port or Gateway, BackendNotFound and InvalidKind for backends', (t) => {
  const y =
    BASE +
    `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec:
  parentRefs:
    - {group: "", kind: Service, name: echo, port: 9000}
    - {group: "", kind: Service, name: nope}
    - {group: "", kind: Service, name: echo, port: 1234}
    - {name: some-gateway}
  rules:
    - backendRefs: [{name: missing, port: 9000}, {group: example.com, kind: Bucket, name: b}]
`;
  const s = compileYaml(t, y);
  t.deepEqual(conditions(s.routeStatuses(), 'g'), [
    'echo Accepted=True Accepted',
    'echo ResolvedRefs=False BackendNotFound',
    'nope Accepted=False NoMatchingParent',
    'nope ResolvedRefs=False BackendNotFound',
    'echo Accepted=False NoMatchingParent',
    'echo ResolvedRefs=False BackendNotFound',
    'some-gateway Accepted=False NoMatchingParent',
    'some-gateway ResolvedRefs=False BackendNotFound',
  ]);
  const st = s.routeStatuses().find((r) => r.route.name === 'g')!;
  t.regex(st.parents[0]!.conditions[1]!.message, /Service app\/missing does not exist.*Bucket b is not a Service/);
  t.is(st.parents[0]!.controllerName, 'ambit.dev/waypoint');
  // The Bucket is not a backend the waypoint can use; the missing Service stays (the waypoint answers 503 for it).
  const a = s.service('app/echo')!.routes[0]?.action;
  t.deepEqual(a?.type === 'forward' ? a.destinations.map((d) => d.host) : a, ['missing.app.svc.cluster.local']);
});

test('incremental: adding and removing a ReferenceGrant, a GRPCRoute or a TCPRoute gives what a full compile gives (routes, L4 routes, status, diagnostics)', (t) => {
  const base = parseYaml(BASE + CROSS).resources;
  const grant = parseYaml('apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: other}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}]\n  to: [{group: "", kind: Service}]\n').resources;
  const grpc = parseYaml(GRPC).resources;
  const same = (inc: ReturnType<typeof compile>, full: ReturnType<typeof compile>, what: string) => {
    for (const key of ['app/echo', 'app/echo2']) {
      t.deepEqual(inc.service(key)?.routes, full.service(key)?.routes, `${what}: routes of ${key}`);
      t.deepEqual(inc.service(key)?.l4Routes, full.service(key)?.l4Routes, `${what}: L4 routes of ${key}`);
    }
    t.deepEqual(inc.routeStatuses(), full.routeStatuses(), `${what}: status`);
    t.deepEqual(codes(inc.diagnostics()).sort(), codes(full.diagnostics()).sort(), `${what}: diagnostics`);
  };
  let snap = compile(base);
  snap.diagnostics();
  snap = applyChange(snap, { upsert: grant });
  same(snap, compile([...base, ...grant]), 'grant added');
  t.deepEqual(snap.service('app/echo')?.l4Routes?.[0]?.destinations.map((d) => d.host), ['db.other.svc.cluster.local']);
  snap = applyChange(snap, { upsert: grpc });
  same(snap, compile([...base, ...grant, ...grpc]), 'GRPCRoute added');
  snap = applyChange(snap, { delete: grant.map((r) => r.ref) });
  same(snap, compile([...base, ...grpc]), 'grant removed');
  t.deepEqual(snap.service('app/echo')?.l4Routes?.[0]?.destinations, []);
  const tcp = base.filter((r) => r.kind === 'TCPRoute');
  snap = applyChange(snap, { delete: tcp.map((r) => r.ref) });
  same(snap, compile(base.filter((r) => r.kind !== 'TCPRoute').concat(grpc)), 'TCPRoute removed');
  t.is(snap.service('app/echo')?.l4Routes, undefined);
});

test('route status of Gateway parents: an ingress Gateway (class ambit) accepts the HTTPRoutes its listeners take; a waypoint\'s listeners take none (NotAllowedByListeners)', (t) => {
  const y =
    BASE +
    `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: app}
spec:
  gatewayClassName: ambit
  listeners: [{name: web, port: 80, protocol: HTTP, hostname: shop.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: in, namespace: app}
spec:
  parentRefs: [{name: edge}, {name: wp}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: echo, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-host, namespace: app}
spec:
  parentRefs: [{name: edge}]
  hostnames: [else.example.org]
  rules: [{backendRefs: [{name: echo, port: 9000}]}]
`;
  const s = compileYaml(t, y);
  t.deepEqual(conditions(s.routeStatuses(), 'in'), ['edge Accepted=True Accepted', 'edge ResolvedRefs=True ResolvedRefs', 'wp Accepted=False NotAllowedByListeners', 'wp ResolvedRefs=True ResolvedRefs']);
  t.deepEqual(conditions(s.routeStatuses(), 'other-host'), ['edge Accepted=False NotAllowedByListeners', 'edge ResolvedRefs=True ResolvedRefs']);
});

test('a Service with a GRPCRoute ignores its VirtualService, and the conflict names the GRPCRoute', (t) => {
  const vs = 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo, namespace: app}\nspec: {hosts: [echo], http: [{route: [{destination: {host: echo2}}]}]}\n---\n';
  const s = compileYaml(t, BASE + vs + GRPC);
  t.deepEqual(s.service('app/echo')?.routeSources.map((r) => r.kind), ['GRPCRoute']);
  const conflict = s.diagnostics().find((d) => d.code === 'AMBIT_REF_CONFLICT');
  t.regex(conflict?.message ?? '', /GRPCRoute app\/split routes it \(Gateway API routes take precedence\)/);
});
