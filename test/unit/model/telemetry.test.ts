/**
 * Telemetry (telemetry.istio.io): Istio-shaped YAML through the real loader, the precedence of
 * mesh, namespace and workload Telemetry, the CEL subset (what evaluates how, and what is
 * refused with a diagnostic naming the construct), and fields accepted but not applied.
 */
import test from 'ava';
import { analyzeYaml, ns, node, parseYaml, pod } from './helpers.js';
import type { TelemetryResource } from '../../../src/model/kinds/telemetry.js';
import { describeTelemetry, effectiveTelemetry, waypointLevels, workloadLevels, type TelemetryPolicy } from '../../../src/model/compile/telemetry.js';
import { compileExpression, ExpressionError, type Attributes, type Value } from '../../../src/model/telemetry/expression.js';

function policies(yaml: string): TelemetryPolicy[] {
  const p = parseYaml(yaml);
  const errors = p.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(errors.map((d) => `${d.code} ${d.message}`).join('; '));
  return p.resources.filter((r) => r.kind === 'Telemetry').map((r) => {
    const t = r as TelemetryResource;
    return { namespace: t.ref.namespace, name: t.ref.name, spec: t.spec, ...(t.metadata.creationTimestamp !== undefined ? { creationTimestamp: t.metadata.creationTimestamp } : {}) };
  });
}

function attrs(values: Record<string, Value>, headers: Record<string, string> = {}): Attributes {
  return { get: (n) => values[n], header: (n) => headers[n] };
}

const MESH = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
  tracing: [{randomSamplingPercentage: 10}]
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS}
      tagOverrides: {source_version: {operation: REMOVE}}
---
`;
const NAMESPACE = `apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: errors-only, namespace: shop}
spec:
  accessLogging:
  - filter: {expression: "response.code >= 400"}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
---
`;
const WORKLOAD = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-quiet, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging: [{disabled: true}]
  tracing: [{randomSamplingPercentage: 100}]
  metrics:
  - overrides:
    - match: {metric: TCP_OPENED_CONNECTIONS, mode: SERVER}
      disabled: true
    - tagOverrides: {destination_app: {value: "'reviews-renamed'"}}
`;

test('precedence: the workload over the namespace over the mesh; metric overrides merge in order', (t) => {
  const all = policies(MESH + NAMESPACE + WORKLOAD);
  const reviews = effectiveTelemetry(workloadLevels(all, { namespace: 'shop', labels: { app: 'reviews' } }, 'istio-system'));
  t.false(reviews.server.accessLog.enabled, 'the workload Telemetry disables the log');
  t.is(reviews.server.accessLog.source, 'shop/reviews-quiet');
  t.is(reviews.samplingPercentage, 100);
  t.true(reviews.server.metrics.TCP_OPENED_CONNECTIONS.disabled, 'SERVER mode override');
  t.false(reviews.client.metrics.TCP_OPENED_CONNECTIONS.disabled, 'not for CLIENT');
  t.true(reviews.client.metrics.REQUEST_COUNT.disabled, 'the namespace override still applies');
  const tags = reviews.server.metrics.TCP_SENT_BYTES.tags;
  t.deepEqual([...tags.keys()], ['source_version', 'destination_app'], 'mesh REMOVE, then workload UPSERT');

  const ratings = effectiveTelemetry(workloadLevels(all, { namespace: 'shop', labels: { app: 'ratings' } }, 'istio-system'));
  t.true(ratings.server.accessLog.enabled);
  t.is(ratings.server.accessLog.source, 'shop/errors-only');
  const filter = ratings.server.accessLog.filter;
  t.truthy(filter);
  t.true(filter?.evaluate(attrs({ 'response.code': 503 })));
  t.false(filter?.evaluate(attrs({ 'response.code': 200 })));
  t.is(ratings.samplingPercentage, 10, 'the mesh sampling, no more specific one');

  const other = effectiveTelemetry(workloadLevels(all, { namespace: 'other', labels: { app: 'reviews' } }, 'istio-system'));
  t.is(other.server.accessLog.source, 'istio-system/mesh-default', 'another namespace only gets the mesh level');
  t.is(other.server.accessLog.filter, undefined);
  t.false(other.client.metrics.REQUEST_COUNT.disabled);

  const none = effectiveTelemetry(workloadLevels([], { namespace: 'shop', labels: {} }, 'istio-system'));
  t.true(none.isDefault);
  t.deepEqual(describeTelemetry(none), { default: true });
  t.deepEqual(describeTelemetry(ratings).server, { accessLog: 'filter: response.code >= 400', accessLogFrom: 'shop/errors-only', metrics: Object.fromEntries(['REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE', 'TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES'].map((m) => [m, { source_version: 'REMOVE' }])) });
  t.like(describeTelemetry(reviews), { client: { accessLog: 'disabled', metrics: { REQUEST_COUNT: 'disabled', TCP_OPENED_CONNECTIONS: { source_version: 'REMOVE', destination_app: "'reviews-renamed'" } } }, server: { metrics: { TCP_OPENED_CONNECTIONS: 'disabled' } }, samplingPercentage: 100 });
});

test('waypoints: targetRefs to the Gateway and to a Service are the most specific levels', (t) => {
  const all = policies(`${MESH}${NAMESPACE}apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: wp, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  tracing: [{randomSamplingPercentage: 0}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-svc, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: reviews}]
  accessLogging: [{disabled: true}]
`);
  const own = effectiveTelemetry(waypointLevels(all, 'shop/waypoint', undefined, 'istio-system'));
  t.is(own.samplingPercentage, 0);
  t.is(own.server.accessLog.source, 'shop/errors-only');
  const reviews = effectiveTelemetry(waypointLevels(all, 'shop/waypoint', 'shop/reviews', 'istio-system'));
  t.false(reviews.server.accessLog.enabled);
  const elsewhere = effectiveTelemetry(waypointLevels(all, 'other/waypoint', 'other/reviews', 'istio-system'));
  t.is(elsewhere.samplingPercentage, 10);
});

test('the CEL subset: what Istio users write for access-log filters evaluates as CEL defines it', (t) => {
  const req = attrs({ 'response.code': 404, 'request.path': '/api/v1/items?x=1', 'request.method': 'GET', 'connection.mtls': true, 'destination.port': 8080 }, { 'x-user': 'alice' });
  const cases: [string, boolean | undefined][] = [
    ['response.code >= 400', true],
    ['response.code == 404', true],
    ['response.code != 404', false],
    ['connection.mtls', true],
    ['!connection.mtls', false],
    ["request.path.startsWith('/api')", true],
    ['request.path.endsWith("x=1")', true],
    ["request.path.contains('/v1/') && request.method == 'GET'", true],
    ["request.path.matches('^/api/v[0-9]+/')", true],
    ['response.code in [500, 503]', false],
    ["request.method in ['GET', 'HEAD']", true],
    ["request.headers['X-User'] == 'alice'", true],
    ["'x-user' in request.headers", true],
    ["request.headers['x-missing'] == 'a'", undefined],
    ['(response.code >= 500 || destination.port == 8080) && connection.mtls', true],
    ['request.host == "a"', undefined],
    ['request.host == "a" || response.code == 404', true],
    ['request.host == "a" && response.code == 200', false],
  ];
  for (const [src, want] of cases) t.is(compileExpression(src, 'bool').evaluate(req), want, src);
  t.deepEqual(compileExpression("request.path.startsWith('/api') && response.code >= 400", 'bool').httpAttributes, ['request.path', 'response.code']);
  t.is(compileExpression("request.headers['x-tenant']", 'scalar').evaluate(req), undefined);
  t.is(compileExpression('destination.port', 'scalar').evaluate(req), 8080);
});

test('expressions outside the subset are refused, naming the construct', (t) => {
  const cases: [string, RegExp][] = [
    ['size(request.path) > 3', /function size\(\) is not supported/],
    ['response.code > 400 ? true : false', /conditional operator \?: is not supported/],
    ["response.code == '404'", /compares int with string/],
    ['response.code + 1 > 400', /arithmetic \(\+\) is not supported/],
    ['response.duration > 10', /unknown attribute 'response.duration'/],
    ['xds.cluster_name == "a"', /unknown attribute 'xds'/],
    ['response.code >= 1.5', /floating-point number 1.5/],
    ["request.path.lowerAscii() == 'a'", /method lowerAscii\(\) is not supported/],
    ['has(request.headers.x)', /function has\(\) is not supported/],
    ['response.code', /is a int; a bool is needed/],
    ["request.path.matches('(')", /invalid regular expression/],
  ];
  for (const [src, re] of cases) {
    const err = t.throws(() => compileExpression(src, 'bool'), { instanceOf: ExpressionError }, src);
    t.regex(err?.message ?? '', re, src);
    t.is(err?.code, 'AMBIT_ERR_TELEMETRY_EXPRESSION');
  }
});

test('an invalid filter refuses the Telemetry with a diagnostic at its line; never a filter that is silently true', (t) => {
  const p = parseYaml(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: bad, namespace: shop}
spec:
  accessLogging:
  - filter:
      expression: "response.code >= 400 && size(request.path) > 1"
`);
  t.is(p.resources.length, 0, 'no Telemetry without its filter');
  const d = p.diagnostics.find((x) => x.code === 'AMBIT_TELEMETRY_EXPRESSION');
  t.truthy(d);
  t.is(d?.severity, 'error');
  t.is(d?.path, 'spec.accessLogging[0].filter.expression');
  t.is(d?.line, 7);
  t.regex(d?.message ?? '', /function size\(\) is not supported/);
  const tag = parseYaml(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: bad-tag, namespace: shop}
spec:
  metrics: [{overrides: [{tagOverrides: {destination_app: {value: "request.nope"}}}]}]
`);
  t.is(tag.resources.length, 0);
  t.regex(tag.diagnostics.find((x) => x.code === 'AMBIT_TELEMETRY_EXPRESSION')?.message ?? '', /unknown attribute 'request.nope'/);
});

test('fields ambit cannot apply are accepted and reported as not applied', (t) => {
  const p = parseYaml(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: everything, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 50
    disableSpanReporting: true
    customTags:
      team: {literal: {value: payments}}
      user: {header: {name: x-user, defaultValue: none}}
  accessLogging:
  - providers: [{name: otel}]
  metrics:
  - providers: [{name: prometheus}]
    reportingInterval: 15s
    overrides:
    - match: {customMetric: my_metric}
      disabled: true
    - tagOverrides: {my_new_dimension: {value: "'x'"}}
`);
  t.is(p.resources.length, 1, 'the Telemetry is accepted');
  const notApplied = p.diagnostics.filter((d) => d.code === 'AMBIT_SCHEMA_NOT_APPLIED').map((d) => `${d.severity} ${d.path}`);
  t.deepEqual(notApplied.sort(), [
    'info spec.accessLogging[0].providers',
    'info spec.metrics[0].overrides[0].match.customMetric',
    'info spec.metrics[0].providers',
    'info spec.metrics[0].reportingInterval',
    'info spec.tracing[0].customTags',
    'info spec.tracing[0].disableSpanReporting',
    'info spec.tracing[0].providers',
    'warning spec.metrics[0].overrides[1].tagOverrides.my_new_dimension',
  ]);
  t.false(p.diagnostics.some((d) => d.severity === 'error'));
  t.false(p.diagnostics.some((d) => d.code === 'AMBIT_OBJECT_UNKNOWN_KIND'), 'Telemetry is no longer an ignored kind');
  const typo = parseYaml(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: typo, namespace: shop}
spec:
  accessLoging: [{disabled: true}]
`);
  t.is(typo.resources.length, 0);
  t.regex(typo.diagnostics.find((d) => d.code === 'AMBIT_SCHEMA_UNKNOWN_FIELD')?.message ?? '', /did you mean "accessLogging"/);
});

test('a selector that matches no pod and a targetRef to nothing are reported, as for policies', (t) => {
  const base = ns('istio-system') + ns('shop', { 'ambit.dev/dataplane-mode': 'ambient' }) + node('node-1', '198.18.0.1') + pod('shop', 'web-1', '198.19.1.1', { app: 'web' });
  const tel = (name: string, namespace: string, spec: string) => `apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec: ${spec}\n---\n`;
  const ds = analyzeYaml(base +
    tel('web', 'shop', '{selector: {matchLabels: {app: web}}, accessLogging: [{disabled: true}]}') +
    tel('typo', 'shop', '{selector: {matchLabels: {app: wbe}}, accessLogging: [{disabled: true}]}') +
    tel('root-sel', 'istio-system', '{selector: {matchLabels: {app: web}}, accessLogging: [{disabled: true}]}') +
    tel('gone', 'shop', '{targetRefs: [{kind: Service, name: nope}], accessLogging: [{disabled: true}]}') +
    tel('no-wp', 'shop', '{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}], accessLogging: [{disabled: true}]}'));
  const refs = ds.filter((d) => d.code.startsWith('AMBIT_REF_') && d.code !== 'AMBIT_REF_UNKNOWN_NAMESPACE').map((d) => `${d.code} ${d.path ?? ''}`);
  t.deepEqual(refs.sort(), [
    'AMBIT_REF_SELECTOR_NO_MATCH spec.selector.matchLabels',
    'AMBIT_REF_SELECTOR_NO_MATCH spec.selector.matchLabels',
    'AMBIT_REF_UNKNOWN_SERVICE spec.targetRefs[0].name',
    'AMBIT_REF_UNKNOWN_WAYPOINT spec.targetRefs[0].name',
  ], ds.map((d) => `${d.code} ${d.message}`).join('\n'));
  t.true(ds.some((d) => d.code === 'AMBIT_REF_SELECTOR_NO_MATCH' && /wbe/.test(d.message)));
  t.true(ds.some((d) => d.code === 'AMBIT_REF_SELECTOR_NO_MATCH' && /web/.test(d.message)), 'a root-namespace selector selects the root namespace\'s pods only');
});
