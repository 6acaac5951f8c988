/**
 * One real-YAML case per documented diagnostic code, and a check that the table covers every
 * code in DIAGNOSTIC_CODES: a new code without a test fails here.
 */
import test from 'ava';
import { closeSync, ftruncateSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIAGNOSTIC_CODES, type Diagnostic, type DiagnosticCode, type Severity } from '../../../src/model/diagnostics.js';
import { loadPaths } from '../../../src/model/load/load-paths.js';
import { analyzeYaml, node, ns, pod, service, tempDir } from './helpers.js';

const ROOT_NS = ns('istio-system');
const BASE = ns('app', { 'ambit.dev/dataplane-mode': 'ambient' }) + node('node-1', '198.18.0.1');
const WEB = BASE + pod('app', 'web-1', '198.19.1.1', { app: 'web', version: 'v1' }) + service('app', 'web', '198.18.128.1', { app: 'web' });

type Case = string | ((dir: string) => Promise<Diagnostic[]>);

const CASES: Record<DiagnosticCode, Case> = {
  AMBIT_INPUT_TOO_LARGE: async (dir) => {
    const f = join(dir, 'big.yaml');
    const fd = openSync(f, 'w');
    ftruncateSync(fd, 2048);
    closeSync(fd);
    return (await loadPaths([f], { maxFileBytes: 1024 })).diagnostics;
  },
  AMBIT_INPUT_NOT_YAML: async (dir) => {
    writeFileSync(join(dir, 'x.yaml'), Buffer.from([1, 2, 0, 3]));
    return (await loadPaths([dir])).diagnostics;
  },
  AMBIT_INPUT_NOT_OBJECT: 'hello world\n',
  AMBIT_YAML_SYNTAX: 'a: [1, 2\n',
  AMBIT_YAML_DUPLICATE_KEY: 'a: 1\na: 2\n',
  AMBIT_YAML_TOO_DEEP: `a: ${'{b: '.repeat(80)}1${'}'.repeat(80)}\n`,
  AMBIT_YAML_ALIAS_LIMIT: `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [${'*a, '.repeat(10)}*a]\nc: [${'*b, '.repeat(20)}*b]\n`,
  AMBIT_OBJECT_NO_KIND: 'apiVersion: v1\nmetadata: {name: a}\n',
  AMBIT_OBJECT_UNKNOWN_KIND: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n',
  AMBIT_OBJECT_UNSUPPORTED_VERSION: 'apiVersion: v2\nkind: Pod\nmetadata: {name: a}\n',
  AMBIT_OBJECT_DUPLICATE: ns('x') + ns('x'),
  AMBIT_SCHEMA_TYPE: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: [x]}\n',
  AMBIT_SCHEMA_REQUIRED: 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {subsets: []}\n',
  AMBIT_SCHEMA_ENUM: 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {mtls: {mode: strict}}\n',
  AMBIT_SCHEMA_UNKNOWN_FIELD: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a, lables: {}}\n',
  AMBIT_SCHEMA_UNIMPLEMENTED: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: CUSTOM, provider: {name: ext}, rules: [{}]}\n',
  AMBIT_SCHEMA_DEPRECATED: `${WEB}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: app}\nspec:\n  hosts: [web]\n  http:\n  - route: [{destination: {host: web}}]\n    mirror: {host: web}\n    mirror_percent: 5\n`,
  AMBIT_SCHEMA_RANGE: 'apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 0}]}\n',
  AMBIT_SCHEMA_FORMAT: 'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 300.1.1.1}\n',
  AMBIT_SCHEMA_DURATION: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [web]\n  http: [{route: [{destination: {host: web}}], timeout: 10}]\n`,
  AMBIT_SCHEMA_NAME: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n',
  AMBIT_SCHEMA_LABEL: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {app: "two words"}}\n',
  AMBIT_SCHEMA_ONE_OF: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [web]\n  http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: web}}]}]\n`,
  AMBIT_SCHEMA_WEIGHT_SUM: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [web]\n  http: [{route: [{destination: {host: web}, weight: 0}, {destination: {host: web}}]}]\n`,
  AMBIT_SCHEMA_NOT_APPLIED: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: web\n  trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 30s}}}}\n`,
  AMBIT_SCHEMA_DUPLICATE_ITEM: 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: web, subsets: [{name: v1}, {name: v1}]}\n',
  AMBIT_SCHEMA_INVALID: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    __proto__: x\n',
  AMBIT_TELEMETRY_EXPRESSION: 'apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: a}\nspec:\n  accessLogging: [{filter: {expression: "size(request.path) > 3"}}]\n',
  AMBIT_REF_UNKNOWN_HOST: `${WEB}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: app}\nspec:\n  hosts: [web]\n  http: [{route: [{destination: {host: web.app}}]}]\n`,
  AMBIT_REF_UNKNOWN_SUBSET: `${WEB}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: app}\nspec:\n  hosts: [web]\n  http: [{route: [{destination: {host: web, subset: v9}}]}]\n`,
  AMBIT_REF_UNKNOWN_SERVICE: `${WEB}apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: app}\nspec:\n  parentRefs: [{group: "", kind: Service, name: nope}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n`,
  AMBIT_REF_UNKNOWN_PORT: `${WEB}apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: app}\nspec:\n  parentRefs: [{group: "", kind: Service, name: web}]\n  rules: [{backendRefs: [{name: web, port: 81}]}]\n`,
  AMBIT_REF_NOT_PERMITTED: `${WEB}${ns('other')}apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: other}\nspec:\n  parentRefs: [{group: "", kind: Service, name: web, namespace: app}]\n  rules: [{backendRefs: [{name: web, namespace: app, port: 80}]}]\n`,
  AMBIT_REF_SELECTOR_NO_MATCH: `${WEB}apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: app}\nspec: {selector: {matchLabels: {app: nothing}}}\n`,
  AMBIT_REF_SERVICE_NO_PODS: BASE + service('app', 'lonely', '198.18.128.9', { app: 'none' }),
  AMBIT_REF_SUBSET_NO_PODS: `${WEB}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: app}\nspec: {host: web, subsets: [{name: v2, labels: {version: v2}}]}\n`,
  AMBIT_REF_UNKNOWN_WAYPOINT: ns('other', { 'ambit.dev/use-waypoint': 'missing' }),
  AMBIT_REF_WAYPOINT_NO_PODS: `${BASE}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: app}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n`,
  AMBIT_REF_UNKNOWN_NODE: BASE + pod('app', 'p', '198.19.1.1', { a: 'b' }, { node: 'node-9' }),
  AMBIT_REF_UNKNOWN_NAMESPACE: node('node-1', '198.18.0.1') + pod('ghost', 'p', '198.19.1.1', { a: 'b' }),
  AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT: BASE + pod('app', 'p', '198.19.1.1', { a: 'b' }, { sa: 'robot' }),
  AMBIT_REF_DUPLICATE_IP: BASE + pod('app', 'p1', '198.19.1.1', { a: 'b' }) + pod('app', 'p2', '198.19.1.1', { a: 'b' }),
  AMBIT_REF_UNKNOWN_TARGET_PORT: BASE + pod('app', 'p1', '198.19.1.1', { app: 'x' }, { ports: { grpc: 9000 } }) + service('app', 'x', '198.18.128.3', { app: 'x' }),
  AMBIT_REF_DELEGATE_UNUSED: `${WEB}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orphan, namespace: app}\nspec: {http: [{route: [{destination: {host: web}}]}]}\n`,
  AMBIT_REF_CONFLICT: `${WEB}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: app}\nspec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b, namespace: app}\nspec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}\n`,
  AMBIT_POLICY_MULTIPLE_MESH_PEER_AUTHN: `${ROOT_NS}apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: b, namespace: istio-system}\nspec: {mtls: {mode: PERMISSIVE}}\n`,
  AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT: `${WEB}apiVersion: ambit.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: a, namespace: app}\nspec: {targetRefs: [{kind: Service, name: web}], tokenBucket: {maxTokens: 1, fillInterval: 1s}}\n`,
  AMBIT_POLICY_L7_WITHOUT_WAYPOINT: `${WEB}apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: app}\nspec: {selector: {matchLabels: {app: web}}, rules: [{to: [{operation: {methods: [GET]}}]}]}\n`,
  AMBIT_POLICY_PORT_LEVEL_WITHOUT_SELECTOR: 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {portLevelMtls: {"8080": {mode: DISABLE}}}\n',
  AMBIT_POLICY_AUTHZ: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{when: [{key: bogus.key, values: [x]}]}]}\n',
};

/**
 * The severity each case must carry, stated here rather than read back from DIAGNOSTIC_CODES:
 * `error` where Kubernetes or Istio refuses the object (or it cannot be applied as written),
 * `warning` where it is accepted but does not act as written, `info` where it works as written.
 */
const SEVERITY: Record<DiagnosticCode, Severity> = {
  // Not a Kubernetes object at all: nothing to load.
  AMBIT_INPUT_TOO_LARGE: 'error',
  AMBIT_INPUT_NOT_YAML: 'error',
  AMBIT_INPUT_NOT_OBJECT: 'error',
  AMBIT_YAML_SYNTAX: 'error',
  AMBIT_YAML_DUPLICATE_KEY: 'error',
  AMBIT_YAML_TOO_DEEP: 'error',
  AMBIT_YAML_ALIAS_LIMIT: 'error',
  AMBIT_OBJECT_NO_KIND: 'error',
  // A kind ambit does not model is ignored, not refused.
  AMBIT_OBJECT_UNKNOWN_KIND: 'warning',
  AMBIT_OBJECT_UNSUPPORTED_VERSION: 'error',
  AMBIT_OBJECT_DUPLICATE: 'error',
  // What the API server or Istio's validation refuses.
  AMBIT_SCHEMA_TYPE: 'error',
  AMBIT_SCHEMA_REQUIRED: 'error',
  AMBIT_SCHEMA_ENUM: 'error',
  AMBIT_SCHEMA_UNKNOWN_FIELD: 'error',
  AMBIT_SCHEMA_RANGE: 'error',
  AMBIT_SCHEMA_FORMAT: 'error',
  AMBIT_SCHEMA_DURATION: 'error',
  AMBIT_SCHEMA_NAME: 'error',
  AMBIT_SCHEMA_LABEL: 'error',
  AMBIT_SCHEMA_ONE_OF: 'error',
  AMBIT_SCHEMA_WEIGHT_SUM: 'error',
  AMBIT_SCHEMA_DUPLICATE_ITEM: 'error',
  AMBIT_SCHEMA_INVALID: 'error',
  AMBIT_TELEMETRY_EXPRESSION: 'error',
  // Valid Istio that ambit accepts without acting on it: a field it does not implement is a
  // warning; a deprecated field still works, and an HTTP/2 keepalive setting weakens no policy.
  AMBIT_SCHEMA_UNIMPLEMENTED: 'warning',
  AMBIT_SCHEMA_DEPRECATED: 'info',
  AMBIT_SCHEMA_NOT_APPLIED: 'info',
  // A reference to something that does not exist cannot be routed or enforced.
  AMBIT_REF_UNKNOWN_HOST: 'error',
  AMBIT_REF_UNKNOWN_SUBSET: 'error',
  AMBIT_REF_UNKNOWN_SERVICE: 'error',
  AMBIT_REF_UNKNOWN_PORT: 'error',
  AMBIT_REF_UNKNOWN_WAYPOINT: 'error',
  AMBIT_REF_UNKNOWN_NODE: 'error',
  // Gateway API: the reference is not permitted, and the backend is not used.
  AMBIT_REF_NOT_PERMITTED: 'error',
  AMBIT_REF_DUPLICATE_IP: 'error',
  // Valid, but matches nothing or does nothing (istioctl analyze warns about these).
  AMBIT_REF_SELECTOR_NO_MATCH: 'warning',
  AMBIT_REF_SERVICE_NO_PODS: 'warning',
  AMBIT_REF_SUBSET_NO_PODS: 'warning',
  AMBIT_REF_WAYPOINT_NO_PODS: 'warning',
  AMBIT_REF_UNKNOWN_NAMESPACE: 'warning',
  AMBIT_REF_UNKNOWN_TARGET_PORT: 'warning',
  AMBIT_REF_DELEGATE_UNUSED: 'warning',
  // Istio resolves a conflict deterministically (the oldest wins): a warning.
  AMBIT_REF_CONFLICT: 'warning',
  // A pod's identity still works without a ServiceAccount object in the input.
  AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT: 'info',
  AMBIT_POLICY_MULTIPLE_MESH_PEER_AUTHN: 'error',
  // Istio's validation refuses portLevelMtls without a selector.
  AMBIT_POLICY_PORT_LEVEL_WITHOUT_SELECTOR: 'error',
  // A policy that nothing enforces as written.
  AMBIT_POLICY_L7_WITHOUT_WAYPOINT: 'warning',
  AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT: 'warning',
  // The case's unknown `when` key is refused by Istio's validation.
  AMBIT_POLICY_AUTHZ: 'error',
};

test('every documented code has a case here', (t) => {
  t.deepEqual(Object.keys(CASES).sort(), Object.keys(DIAGNOSTIC_CODES).sort());
});

for (const [code, input] of Object.entries(CASES) as [DiagnosticCode, Case][]) {
  test(`produces ${code}`, async (t) => {
    const ds = typeof input === 'string' ? analyzeYaml(input) : await input(tempDir(t));
    const hit = ds.find((d) => d.code === code);
    t.truthy(hit, `expected ${code}, got ${ds.map((d) => `${d.code}: ${d.message}`).join(' | ') || 'nothing'}`);
    if (hit === undefined) return;
    t.true(hit.message.length > 10, 'the message explains the problem');
    t.notRegex(hit.message, /\n\s+at /, 'no stack trace in the message');
    t.truthy(hit.file, 'the diagnostic names the file');
    t.true((hit.line ?? 0) >= 1 && (hit.column ?? 0) >= 1, 'and a position');
    t.is(hit.severity, SEVERITY[code]);
  });
}

test('enum typo suggests the right case', (t) => {
  const d = analyzeYaml(CASES.AMBIT_SCHEMA_ENUM as string).find((x) => x.code === 'AMBIT_SCHEMA_ENUM');
  t.regex(d?.message ?? '', /did you mean STRICT\?/);
});

test('dotted short host names get a hint to write the FQDN', (t) => {
  const d = analyzeYaml(CASES.AMBIT_REF_UNKNOWN_HOST as string).find((x) => x.code === 'AMBIT_REF_UNKNOWN_HOST');
  t.regex(d?.message ?? '', /web\.app\.svc\.cluster\.local/);
  t.is(d?.path, 'spec.http[0].route[0].destination.host');
});

test('a binding to a missing waypoint points at the label', (t) => {
  const d = analyzeYaml(CASES.AMBIT_REF_UNKNOWN_WAYPOINT as string).find((x) => x.code === 'AMBIT_REF_UNKNOWN_WAYPOINT');
  t.is(d?.path, 'metadata["labels"]["ambit.dev/use-waypoint"]'.replace('metadata["labels"]', 'metadata.labels'));
  t.is(d?.line, 5);
});
