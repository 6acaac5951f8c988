/**
 * Istio's validation semantics on Istio-shaped YAML: what Istio accepts is accepted (with its
 * meaning: relative weights, bare service accounts, trust domains, delegate VirtualServices,
 * fields ambit accepts without applying), and what Istio refuses is refused (unknown fields),
 * with file, line and field path. Kinds ambit does not model are warned once per kind.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluateAuthorization } from '../../../src/model/authz/evaluate.js';
import { loadPaths, parseObjects } from '../../../src/model/load/load-paths.js';
import { analyzeYaml, codes, compileYaml, node, ns, parseYaml, pod, service, tempDir } from './helpers.js';
import { ctx, policiesFromYaml } from './authz/helpers.js';

const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };
const MESH = ns('app', AMBIENT) + node('node-1', '198.18.0.1')
  + pod('app', 'web-v1', '198.19.1.1', { app: 'web', version: 'v1' }) + pod('app', 'web-v2', '198.19.1.2', { app: 'web', version: 'v2' })
  + service('app', 'web', '198.18.128.1', { app: 'web' })
  + 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: app}\nspec:\n  host: web\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n';

const allow = (yaml: string, principal: string | undefined): boolean =>
  evaluateAuthorization(policiesFromYaml(yaml), ctx(principal === undefined ? {} : { principal }), { layer: 'L4' }).allow;

// ------------------------------------------------------------------------- route weights

test('route weights are relative: 1 and 3 are normalised to 25 and 75, with no diagnostic', (t) => {
  const yaml = `${MESH}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: app}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: web, subset: v1}
      weight: 1
    - destination: {host: web, subset: v2}
      weight: 3
`;
  t.deepEqual(analyzeYaml(yaml).map((d) => `${d.code} ${d.message}`), []);
  const action = compileYaml(t, yaml).service('app/web')?.routes[0]?.action;
  t.deepEqual(action?.type === 'forward' ? action.destinations.map((d) => `${d.subset}:${d.weight}`) : [], ['v1:25', 'v2:75']);
});

test('weights summing to more than 100, and one destination with a weight, are valid', (t) => {
  const yaml = `${MESH}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: app}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /a}}]
    route:
    - {destination: {host: web, subset: v1}, weight: 150}
    - {destination: {host: web, subset: v2}, weight: 50}
  - route:
    - {destination: {host: web, subset: v2}, weight: 30}
`;
  t.deepEqual(analyzeYaml(yaml).map((d) => d.code), []);
  const routes = compileYaml(t, yaml).service('app/web')?.routes ?? [];
  const weights = routes.map((r) => (r.action.type === 'forward' ? r.action.destinations.map((d) => d.weight) : []));
  t.deepEqual(weights, [[75, 25], [100]]);
});

test('several destinations that all weigh 0 are refused (Istio: total destination weight = 0)', (t) => {
  const d = parseYaml(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: app}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web, subset: v1}, weight: 0}
    - {destination: {host: web, subset: v2}}
`).diagnostics;
  t.deepEqual(d.map((x) => `${x.severity} ${x.code} ${x.path} ${x.line}`), ['error AMBIT_SCHEMA_WEIGHT_SUM spec.http[0].route 8']);
});

// --------------------------------------------------------------- delegate VirtualServices

const ROOT_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: app}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: web-api}
  - route: [{destination: {host: web}}]
---
`;
const DELEGATE_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-api, namespace: app}
spec:
  http:
  - route: [{destination: {host: web, subset: v2}}]
`;

test('a delegate VirtualService without hosts is valid when another VirtualService delegates to it', (t) => {
  const ds = analyzeYaml(MESH + ROOT_VS + DELEGATE_VS);
  t.deepEqual(ds.filter((d) => d.severity === 'error').map((d) => d.message), []);
  t.false(codes(ds).includes('AMBIT_REF_DELEGATE_UNUSED'));
  t.false(codes(ds).includes('AMBIT_SCHEMA_REQUIRED'), 'hosts is not required');
  // Delegation itself is not implemented: the root says so, at its delegate field.
  const unimpl = ds.find((d) => d.code === 'AMBIT_SCHEMA_UNIMPLEMENTED');
  t.is(unimpl?.path, 'spec.http[0].delegate');
  t.is(unimpl?.severity, 'warning');
  const s = compileYaml(t, MESH + ROOT_VS + DELEGATE_VS);
  t.true(s.resources('networking.istio.io/VirtualService').some((r) => r.ref.name === 'web-api'), 'the delegate is loaded');
});

test('a VirtualService without hosts that nobody delegates to is warned; a delegate must not carry gateways, tls, tcp or delegate', (t) => {
  const unused = analyzeYaml(MESH + DELEGATE_VS).filter((d) => d.code === 'AMBIT_REF_DELEGATE_UNUSED');
  t.is(unused.length, 1);
  t.is(unused[0]?.severity, 'warning');
  t.is(unused[0]?.line, MESH.split('\n').length - 1 + 5, 'points at the spec (its first line)');
  const bad = parseYaml(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: d, namespace: app}
spec:
  gateways: [mesh]
  tcp: [{route: [{destination: {host: web}}]}]
  http:
  - delegate: {name: other}
`).diagnostics.filter((d) => d.code === 'AMBIT_SCHEMA_INVALID');
  t.deepEqual(bad.map((d) => `${d.path} ${d.line}`), ['spec.gateways 5', 'spec.tcp 6', 'spec.http[0].delegate 8']);
});

// ------------------------------------------------------------ AuthorizationPolicy sources

test('serviceAccounts: a bare name is a service account of the policy namespace', (t) => {
  const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: app}
spec:
  rules:
  - from:
    - source:
        serviceAccounts: [web, ops/admin]
`;
  t.deepEqual(analyzeYaml(policy).filter((d) => d.severity === 'error').map((d) => d.message), []);
  t.true(allow(policy, 'cluster.local/ns/app/sa/web'), 'bare "web" is app/web');
  t.true(allow(policy, 'cluster.local/ns/ops/sa/admin'));
  t.false(allow(policy, 'cluster.local/ns/other/sa/web'), 'web of another namespace is not app/web');
  t.false(allow(policy, 'cluster.local/ns/ops/sa/web'));
  t.false(allow(policy, undefined), 'a plaintext peer has no service account');
  const not = policy.replace('serviceAccounts: [web, ops/admin]', 'notServiceAccounts: [web]');
  t.false(allow(not, 'cluster.local/ns/app/sa/web'));
  t.true(allow(not, 'cluster.local/ns/other/sa/web'));
});

test('trustDomains: a source with only trust domains is parsed and enforced on the SPIFFE trust domain', (t) => {
  const policy = (field: string, values: string): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partners, namespace: app}
spec:
  rules:
  - from:
    - source:
        ${field}: ${values}
`;
  const exact = policy('trustDomains', '[partner.example]');
  const ds = analyzeYaml(ns('app') + exact);
  t.deepEqual(ds.map((d) => `${d.code} ${d.message}`), [], 'no unknown field, no "matches everyone"');
  t.true(allow(exact, 'partner.example/ns/x/sa/y'));
  t.true(allow(exact, 'spiffe://partner.example/ns/x/sa/y'), 'with the spiffe:// scheme too');
  t.false(allow(exact, 'cluster.local/ns/x/sa/y'));
  t.false(allow(exact, 'partner.example.evil/ns/x/sa/y'), 'the whole trust domain, not a prefix');
  t.false(allow(exact, 'evil/partner.example/ns/x'), 'the trust domain is before the first "/"');
  t.false(allow(exact, undefined), 'a plaintext peer has no trust domain');
  const any = policy('trustDomains', '["*"]');
  t.true(allow(any, 'anything.example/ns/x/sa/y'));
  t.false(allow(any, undefined), '"*" is any peer with an identity');
  const suffix = policy('trustDomains', '["*.corp.example"]');
  t.true(allow(suffix, 'eu.corp.example/ns/x/sa/y'));
  t.false(allow(suffix, 'corp.example.other/ns/x/sa/y'));
  const prefix = policy('trustDomains', '["td-*"]');
  t.true(allow(prefix, 'td-east/ns/x/sa/y'));
  t.false(allow(prefix, 'east-td/ns/x/sa/y'));
  const not = policy('notTrustDomains', '[cluster.local]');
  t.true(allow(not, 'partner.example/ns/x/sa/y'));
  t.false(allow(not, 'cluster.local/ns/x/sa/y'));
  t.true(allow(not, undefined), 'notTrustDomains passes a peer without identity, as every not-field does');
  const bad = analyzeYaml(ns('app') + policy('trustDomains', '["cluster.local/ns/app"]'));
  t.deepEqual(bad.map((d) => `${d.severity} ${d.path}`), ['error spec.rules[0].from[0].source.trustDomains[0]']);
  t.regex(bad[0]?.message ?? '', /AMBIT_AUTHZ_INVALID_TRUST_DOMAIN/);
});

// ------------------------------------------------- fields accepted, applied or not applied

test('websocketUpgrade, http2KeepAlive, presence and spaceDelimitedClaims are accepted, never unknown', (t) => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ws, namespace: app}
spec:
  hosts: [web]
  http:
  - websocketUpgrade: true
    route: [{destination: {host: web}}]
  - websocketUpgrade: false
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: keepalive, namespace: app}
spec:
  host: web
  trafficPolicy:
    connectionPool:
      http:
        http2KeepAlive: {interval: 30s, timeout: 5s}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: app}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{"keys": []}'
    presence: OPTIONAL
    spaceDelimitedClaims: [scope]
  - issuer: https://other.example
    jwks: '{"keys": []}'
    presence: REQUIRED
`;
  const p = parseYaml(yaml);
  t.false(codes(p.diagnostics).includes('AMBIT_SCHEMA_UNKNOWN_FIELD'));
  t.is(p.resources.length, 3, 'every resource is kept');
  const rows = p.diagnostics.map((d) => `${d.severity} ${d.code} ${d.path} ${d.line}`);
  t.deepEqual(rows, [
    'info AMBIT_SCHEMA_NOT_APPLIED spec.http[1].websocketUpgrade 9',
    'info AMBIT_SCHEMA_NOT_APPLIED spec.trafficPolicy.connectionPool.http.http2KeepAlive 20',
    'info AMBIT_SCHEMA_NOT_APPLIED spec.jwtRules[0].spaceDelimitedClaims 30',
    'warning AMBIT_SCHEMA_NOT_APPLIED spec.jwtRules[1].presence 33',
  ]);
  for (const d of p.diagnostics) t.regex(d.message, /accepted, not applied: \S.{20,}/, 'says why');
  t.regex(p.diagnostics[3]?.message ?? '', /requestPrincipals/, 'presence REQUIRED says how to require a token');
});

// ------------------------------------------------------------------------ unknown fields

const TYPO = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: app}
spec:
  host: web
  trafficPolicy:
    circuitBreaker:
      maxConnections: 10
`;

test('an unknown field is an error naming the field path and line; the resource is refused', (t) => {
  const p = parseYaml(TYPO);
  t.deepEqual(p.diagnostics.map((d) => `${d.severity} ${d.code} ${d.path} ${d.file}:${d.line}:${d.column}`), [
    'error AMBIT_SCHEMA_UNKNOWN_FIELD spec.trafficPolicy.circuitBreaker test.yaml:7:5',
  ]);
  t.regex(p.diagnostics[0]?.message ?? '', /^DestinationRule app\/web: unknown field "circuitBreaker": .*refused.*--allow-unknown-fields/);
  t.deepEqual(p.resources, []);
  const near = parseYaml(TYPO.replace('circuitBreaker', 'outlierDetecton')).diagnostics[0];
  t.regex(near?.message ?? '', /did you mean "outlierDetection"\?/);
  const top = parseYaml('apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\nspc: {}\n').diagnostics[0];
  t.is(`${top?.severity} ${top?.path} ${top?.line}`, 'error spc 4');
  t.regex(top?.message ?? '', /did you mean "spec"/);
});

test('allowUnknownFields makes an unknown field a warning and keeps the resource without it', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'dr.yaml'), TYPO);
  const strict = await loadPaths([dir]);
  t.deepEqual(strict.diagnostics.map((d) => d.severity), ['error']);
  t.is(strict.resources.length, 0);
  const lax = await loadPaths([dir], { allowUnknownFields: true });
  t.deepEqual(lax.diagnostics.map((d) => `${d.severity} ${d.code} ${d.path} ${d.line}`), ['warning AMBIT_SCHEMA_UNKNOWN_FIELD spec.trafficPolicy.circuitBreaker 7']);
  t.regex(lax.diagnostics[0]?.message ?? '', /it is ignored/);
  t.deepEqual(lax.resources[0]?.spec, { host: 'web', trafficPolicy: {} });
});

test('AuthorizationPolicy unknown fields follow the same rule (the linter does not turn them back into errors)', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'ap.yaml'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: app}\nspec:\n  rules:\n  - from:\n    - source: {principals: [x], principal: [y]}\n');
  const strict = await loadPaths([dir]);
  t.deepEqual(strict.diagnostics.map((d) => `${d.severity} ${d.path}`), ['error spec.rules[0].from[0].source.principal']);
  const lax = await loadPaths([dir], { allowUnknownFields: true });
  t.deepEqual(lax.diagnostics.map((d) => `${d.severity} ${d.path}`), ['warning spec.rules[0].from[0].source.principal']);
  t.is(lax.resources.length, 1);
});

test('objects from the Kubernetes API warn on unknown fields (the API server validated them), unless told otherwise', (t) => {
  const obj = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'app' }, spec: { containers: [{ name: 'c' }], newerField: true } };
  const r = parseObjects([obj]);
  t.deepEqual(r.diagnostics.map((d) => `${d.severity} ${d.path}`), ['warning spec.newerField']);
  t.is(r.resources.length, 1);
  t.deepEqual(parseObjects([obj], { allowUnknownFields: false }).resources, []);
});

// -------------------------------------------------------------------- unmodelled kinds

test('kinds ambit does not model: one warning per kind, saying why, at the first object', async (t) => {
  const dir = tempDir(t);
  const se = (n: string): string => `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: ${n}, namespace: app}\nspec: {egress: [{hosts: ["./*"]}]}\n---\n`;
  writeFileSync(join(dir, 'a.yaml'), se('one') + se('two') + 'apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: istio-system}\nspec: {address: 198.18.7.1}\n');
  writeFileSync(join(dir, 'b.yaml'), se('three') + 'apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f, namespace: app}\nspec: {}\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: g, namespace: app}\nspec: {}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n');
  const r = await loadPaths([dir]);
  const rows = r.diagnostics.map((d) => `${d.severity} ${d.code} ${d.ignoredKind} ${d.count} ${d.file?.slice(dir.length + 1)}:${d.line}`);
  t.deepEqual(rows, [
    'warning AMBIT_OBJECT_UNKNOWN_KIND networking.istio.io/Sidecar 3 a.yaml:2',
    'warning AMBIT_OBJECT_UNKNOWN_KIND networking.istio.io/WorkloadEntry 1 a.yaml:12',
    'warning AMBIT_OBJECT_UNKNOWN_KIND networking.istio.io/EnvoyFilter 1 b.yaml:7',
    'warning AMBIT_OBJECT_UNKNOWN_KIND gateway.networking.k8s.io/UDPRoute 1 b.yaml:12',
    'warning AMBIT_OBJECT_UNKNOWN_KIND example.com/Widget 1 b.yaml:17',
  ]);
  const [seMsg, gwMsg, efMsg, udpMsg, widgetMsg] = r.diagnostics.map((d) => d.message);
  t.regex(seMsg ?? '', /Sidecar .*ignored: ambient mode has no sidecars.*\(3 objects; this is the first\)$/);
  t.regex(gwMsg ?? '', /only Pods are workloads/);
  t.regex(efMsg ?? '', /LocalRateLimit/);
  t.regex(udpMsg ?? '', /ambit carries TCP only/);
  t.regex(widgetMsg ?? '', /ambit does not model Widget \(example\.com\)/);
  t.deepEqual(r.resources, []);
});

test('unknown status fields (written by controllers) only warn: a newer kubelet does not get a Pod refused', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: app}\nspec: {containers: [{name: c}]}\nstatus:\n  podIP: 198.19.1.1\n  newKubeletField: {x: 1}\n');
  t.deepEqual(p.diagnostics.map((d) => `${d.severity} ${d.code} ${d.path} ${d.line}`), ['warning AMBIT_SCHEMA_UNKNOWN_FIELD status.newKubeletField 7']);
  t.is(p.resources.length, 1);
});

test('a VirtualService bound only to ingress gateways does not route mesh traffic (as in Istio), and its hosts are not checked', (t) => {
  const vs = (gateways: string): string => `${MESH}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress, namespace: app}
spec:
  hosts: [web, shop.example.com]
  gateways: ${gateways}
  http:
  - route: [{destination: {host: web, subset: v2}}]
`;
  const ingressOnly = analyzeYaml(vs('[istio-system/public-gateway]'));
  t.deepEqual(ingressOnly.map((d) => `${d.severity} ${d.code} ${d.path}`), ['warning AMBIT_SCHEMA_UNIMPLEMENTED spec.gateways[0]'], 'no unknown-host error for shop.example.com');
  t.regex(ingressOnly[0]?.message ?? '', /without "mesh" in gateways this VirtualService does not apply to mesh traffic/);
  t.deepEqual(compileYaml(t, vs('[istio-system/public-gateway]')).service('app/web')?.routes, [], 'the mesh keeps its default route');
  const both = compileYaml(t, vs('[mesh, istio-system/public-gateway]').replace('shop.example.com', 'web.app.svc.cluster.local'));
  const action = both.service('app/web')?.routes[0]?.action;
  t.deepEqual(action?.type === 'forward' ? action.destinations.map((d) => d.subset) : [], ['v2'], 'with "mesh" listed it routes');
  t.regex(analyzeYaml(vs('[mesh, gw]')).find((d) => d.code === 'AMBIT_SCHEMA_UNIMPLEMENTED')?.message ?? '', /routes mesh traffic only/);
});
