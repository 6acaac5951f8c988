/**
 * Ingress gateways in the model: a Gateway of class `ambit` with HTTP and HTTPS listeners, a
 * kubernetes.io/tls Secret as the HTTPS certificate, HTTPRoutes bound to it (hostnames
 * intersected with the listener's, allowedRoutes, sectionName, precedence), and the projection:
 * the private key travels only in the INGRESS resource selected for that ingress.
 */
import test from 'ava';
import { Projector } from '../../../src/control/projection.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { contextFingerprint, selects, type ViewContext } from '../../../src/control/views.js';
import { hostAuthorityMatch, intersectHost } from '../../../src/model/compile/ingress.js';
import { stringMatches } from '../../../src/waypoint/router.js';
import { analyzeYaml, codes, compileYaml, node, ns, parseYaml, pod, service } from './helpers.js';

const PEM_CERT = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
const PEM_KEY = '-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n';
const b64 = (s: string) => Buffer.from(s).toString('base64');

const SECRET = `apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: edge}
type: kubernetes.io/tls
data: {tls.crt: ${b64(PEM_CERT)}, tls.key: ${b64(PEM_KEY)}}
---
`;

const GATEWAY = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: ambit
  listeners:
    - {name: web, port: 80, protocol: HTTP}
    - {name: shop, port: 443, protocol: HTTPS, hostname: "*.example.com", tls: {certificateRefs: [{name: missing}, {name: shop-cert}]}, allowedRoutes: {namespaces: {from: All}}}
---
`;

const BASE = ns('edge') + node('node-1', '198.18.0.1') + ns('shop', { 'ambit.dev/dataplane-mode': 'ambient' })
  + pod('shop', 'web-1', '198.19.1.1', { app: 'web' }) + service('shop', 'web', '198.18.128.1', { app: 'web' })
  + pod('edge', 'gw-0', '198.19.1.9', { 'gateway.networking.k8s.io/gateway-name': 'gw' }, { sa: 'gw-sa' });

const route = (name: string, namespace: string, body: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${namespace}}
spec:
${body}
---
`;

const SHOP_ROUTE = route('shop', 'shop', `  parentRefs: [{name: gw, namespace: edge}]
  hostnames: [shop.example.com, other.test]
  rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: web, port: 80}]`);

test('hostnames intersect as the Gateway API says, and match Host with any port', (t) => {
  t.is(intersectHost('a.example.com', '*.example.com'), 'a.example.com');
  t.is(intersectHost('*.example.com', 'a.example.com'), 'a.example.com');
  t.is(intersectHost('a.other.com', '*.example.com'), undefined);
  const m = hostAuthorityMatch('*.example.com');
  t.true(m !== undefined && stringMatches(m, 'a.b.example.com:8443'));
  t.false(m !== undefined && stringMatches(m, 'example.com'));
  const e = hostAuthorityMatch('shop.example.com');
  t.true(e !== undefined && stringMatches(e, 'shop.example.com'));
  t.false(e !== undefined && stringMatches(e, 'shopXexample.com'));
});

test('an HTTPRoute bound to an ingress Gateway: listeners, certificate, hostnames and namespaces', (t) => {
  const snap = compileYaml(t, BASE + SECRET + GATEWAY + SHOP_ROUTE + route('same-ns-only', 'shop', `  parentRefs: [{name: gw, namespace: edge, sectionName: web}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`));
  const [gw] = snap.ingresses();
  t.truthy(gw);
  t.is(gw?.key, 'edge/gw');
  t.is(gw?.serviceAccount, 'gw-sa');
  t.deepEqual(gw?.workloads, ['edge/gw-0']);
  t.deepEqual(gw?.listeners.map((l) => [l.name, l.port, l.protocol, l.certificate]), [['web', 80, 'HTTP', undefined], ['shop', 443, 'HTTPS', 'edge/shop-cert']]);
  const https = gw?.ports.find((p) => p.port === 443);
  t.deepEqual(https?.certificates, [{ hostname: '*.example.com', secret: 'edge/shop-cert' }]);
  // shop.example.com is inside *.example.com; other.test is not, so it is not served there.
  t.deepEqual(https?.routes.map((r) => r.matches.map((m) => [m.authority?.value, m.path?.value])), [[[hostAuthorityMatch('shop.example.com')?.value, '/api']]]);
  t.deepEqual(https?.routes[0]?.action, { type: 'forward', destinations: [{ host: 'web.shop.svc.cluster.local', subset: undefined, port: 80, weight: 1 }] });
  // The HTTP listener allows only routes of the Gateway's own namespace (from: Same by default).
  t.deepEqual(gw?.ports.find((p) => p.port === 80)?.routes, []);
  t.deepEqual(gw?.routeSources.map((r) => r.name), ['shop']);
  t.deepEqual(snap.waypoints(), [], 'an ingress gateway is not a waypoint');
});

test('routes of a port: the most specific hostname first, then path precedence', (t) => {
  const yaml = BASE + GATEWAY.replace('{name: web, port: 80, protocol: HTTP}', '{name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}')
    + route('any', 'shop', `  parentRefs: [{name: gw, namespace: edge, port: 80}]
  rules: [{matches: [{path: {type: Exact, value: /x}}], backendRefs: [{name: web, port: 80}]}]`)
    + route('exact', 'shop', `  parentRefs: [{name: gw, namespace: edge, port: 80}]
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]`)
    + route('wild', 'shop', `  parentRefs: [{name: gw, namespace: edge, port: 80}]
  hostnames: ["*.example.com"]
  rules: [{backendRefs: [{name: web, port: 80}]}]`);
  const snap = compileYaml(t, yaml + SECRET);
  const routes = snap.ingress('edge/gw')?.ports.find((p) => p.port === 80)?.routes ?? [];
  t.deepEqual(routes.map((r) => r.source.name), ['exact', 'wild', 'any']);
  t.is(routes[2]?.matches[0]?.authority, undefined, 'a route without hostnames serves any host');
});

test('the Secret: kubernetes.io/tls needs PEM tls.crt and tls.key; values never appear in messages', (t) => {
  const bad = `apiVersion: v1
kind: Secret
metadata: {name: s, namespace: edge}
type: kubernetes.io/tls
data: {tls.crt: ${b64('not a certificate SECRETVALUE')}}
`;
  const ds = parseYaml(bad).diagnostics;
  t.deepEqual(codes(ds).sort(), ['AMBIT_SCHEMA_FORMAT', 'AMBIT_SCHEMA_REQUIRED']);
  t.false(JSON.stringify(ds).includes('SECRETVALUE'));
  t.false(JSON.stringify(ds).includes(b64('not a certificate SECRETVALUE')));
  t.deepEqual(codes(parseYaml(`apiVersion: v1
kind: Secret
metadata: {name: s}
type: Opaque
stringData: {password: x}
`).diagnostics), [], 'other Secret types are accepted');
  t.deepEqual(codes(parseYaml('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nspec: {}\n').diagnostics), ['AMBIT_SCHEMA_UNKNOWN_FIELD']);
});

test('analyze: an HTTPS listener needs certificateRefs; an unknown class is ignored; a route to the ingress is no longer unimplemented', (t) => {
  const noCert = GATEWAY.replace(', tls: {certificateRefs: [{name: missing}, {name: shop-cert}]}', '');
  t.true(codes(analyzeYaml(BASE + noCert)).includes('AMBIT_SCHEMA_REQUIRED'));
  t.true(codes(analyzeYaml(BASE + GATEWAY.replace('gatewayClassName: ambit', 'gatewayClassName: istio'))).includes('AMBIT_SCHEMA_UNIMPLEMENTED'));
  const ds = analyzeYaml(BASE + SECRET + GATEWAY + SHOP_ROUTE);
  t.deepEqual(ds.filter((d) => d.severity !== 'info' && d.code !== 'AMBIT_REF_SERVICE_NO_PODS').map((d) => `${d.code} ${d.message}`), []);
});

test('projection: the key travels only in the INGRESS resource, which only that ingress selects', (t) => {
  const p = parseYaml(BASE + SECRET + GATEWAY + SHOP_ROUTE);
  const { mesh } = new ModelCompiler().compile(p.resources);
  if (mesh === undefined) return t.fail('the mesh compiles');
  const out = new Projector().project(mesh, p.resources);
  const ingress = out.find((m) => m.kind === 'INGRESS');
  t.truthy(ingress);
  t.true(ingress?.json.includes('SECRETKEYMATERIAL'));
  t.deepEqual(out.filter((m) => m.json.includes('SECRETKEYMATERIAL')).map((m) => m.kind), ['INGRESS'], 'no other resource carries the key');
  const ctx = (kind: 'agent' | 'waypoint', name: string): ViewContext => ({ sub: { kind, name }, workloads: kind === 'agent' ? [{ node: 'node-1', namespace: 'edge', serviceAccount: 'gw-sa', labels: {} }] : [], services: new Set(), namespaces: new Set() });
  t.true(selects(ingress?.select, ctx('waypoint', 'edge/gw')));
  t.false(selects(ingress?.select, ctx('waypoint', 'edge/other')));
  t.false(selects(ingress?.select, ctx('agent', 'node-1')));
  t.truthy(contextFingerprint(ctx('waypoint', 'edge/gw')) !== undefined);
  const binding = out.find((m) => m.kind === 'WAYPOINT_BINDING' && m.name === 'edge/gw');
  t.like(JSON.parse(binding?.json ?? '{}') as object, { serviceAccount: 'gw-sa', services: [], ingress: true });
});

const ISTIO_GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 443, name: https, protocol: HTTPS}
      hosts: ["shop/*.example.com"]
      tls: {mode: SIMPLE, credentialName: shop-cert}
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*"]
---
`;

const vsYaml = (name: string, namespace: string, hosts: string, gateways: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  hosts: ${hosts}
  gateways: ${gateways}
  http:
    - match: [{uri: {prefix: /api}}]
      route: [{destination: {host: web.shop.svc.cluster.local, port: {number: 80}}}]
---
`;

test('Istio Gateway + VirtualService gateways: servers, credentialName, server host namespaces, selector', (t) => {
  const yaml = BASE + SECRET + ISTIO_GATEWAY
    + pod('edge', 'istio-gw-0', '198.19.1.20', { istio: 'ingressgateway' }, { sa: 'istio-gw' })
    + vsYaml('shop', 'shop', '[shop.example.com]', '[edge/public]')
    + vsYaml('elsewhere', 'other', '[other.example.com]', '[edge/public]')
    + vsYaml('mesh-only', 'shop', '[web]', '[mesh]');
  const snap = compileYaml(t, ns('other') + yaml);
  const gw = snap.ingress('edge/public');
  t.truthy(gw);
  t.is(gw?.serviceAccount, 'istio-gw');
  t.deepEqual(gw?.listeners.map((l) => [l.port, l.protocol, l.certificate]), [[443, 'HTTPS', 'edge/shop-cert'], [80, 'HTTP', undefined]]);
  const https = gw?.ports.find((p) => p.port === 443);
  t.deepEqual(https?.certificates, [{ hostname: '*.example.com', secret: 'edge/shop-cert' }]);
  // "shop/*.example.com" admits VirtualServices of namespace shop only.
  t.deepEqual(https?.routes.map((r) => `${r.source.name} ${r.matches[0]?.authority?.value} ${r.matches[0]?.path?.value}`), [`shop ${hostAuthorityMatch('shop.example.com')?.value} /api`]);
  // "*" on port 80 admits both, each restricted to its own host.
  t.deepEqual(gw?.ports.find((p) => p.port === 80)?.routes.map((r) => r.source.name), ['elsewhere', 'shop'], 'in Istio\'s order: oldest first, then by namespace and name');
  t.deepEqual([...new Set(snap.service('shop/web')?.routes.map((r) => r.source.name))], ['mesh-only'], 'a VirtualService bound only to a gateway does not route mesh traffic');
  const ds = analyzeYaml(ns('other') + yaml + vsYaml('lost', 'shop', '[x.example.com]', '[edge/nope]'));
  t.deepEqual(ds.filter((d) => d.code === 'AMBIT_SCHEMA_UNIMPLEMENTED').map((d) => d.message), ['VirtualService shop/lost: gateway "edge/nope": there is no Gateway (networking.istio.io) edge/nope, and without "mesh" in gateways this VirtualService does not apply to mesh traffic: nothing uses it']);
});
