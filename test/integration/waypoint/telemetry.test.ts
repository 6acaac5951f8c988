/**
 * Telemetry resources applied by the waypoint, over real loopback sockets: Istio-shaped
 * Telemetry YAML parsed and validated by the model, resolved for the waypoint as view-config
 * does (waypointTelemetry), and requests through the proxy to a real backend. Access-log
 * filters and disabling, request metrics disabled or relabelled, and trace sampling.
 */
import test from 'ava';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseYamlText } from '../../../src/model/load/yaml-text.js';
import { parseObject } from '../../../src/model/load/parse-object.js';
import type { TelemetryResource } from '../../../src/model/kinds/telemetry.js';
import type { TelemetryPolicy } from '../../../src/model/compile/telemetry.js';
import { waypointTelemetry } from '../../../src/waypoint/view-config.js';
import { backend, makeConfig, makeConfigWith, send, startProxy, type Backend, type Harness, type ServiceSpec } from './harness.js';

const WAYPOINT = 'shop/waypoint';

function policies(yaml: string): TelemetryPolicy[] {
  const out: TelemetryPolicy[] = [];
  for (const o of parseYamlText(yaml, 'telemetry.yaml').objects) {
    const r = parseObject(o.value, { origin: o.origin });
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0 || r.resource === undefined) throw new Error(`invalid fixture: ${errors.map((d) => d.message).join('; ')}`);
    const t = r.resource as TelemetryResource;
    out.push({ namespace: t.ref.namespace, name: t.ref.name, spec: t.spec });
  }
  return out;
}

function telemetry(name: string, namespace: string, spec: string): string {
  return `---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec.replace(/^/gm, '  ')}
`;
}

/** Answers /status/NNN with NNN, anything else 200; records each request's traceparent. */
function statusApp(seen: string[]): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    seen.push(String(req.headers['traceparent'] ?? ''));
    const m = /^\/status\/(\d{3})/.exec(req.url ?? '');
    res.writeHead(m ? Number(m[1]) : 200, { 'content-type': 'text/plain' });
    res.end('ok');
  };
}

async function start(t: import('ava').ExecutionContext, yaml: string): Promise<{ h: Harness; b: Backend; seen: string[] }> {
  const seen: string[] = [];
  const b = await backend(statusApp(seen));
  const services: ServiceSpec[] = [{ name: 'reviews', endpoints: [{ backend: b, labels: { app: 'reviews', version: 'v1' } }] }];
  const keys = [...makeConfig(services).bound()].map((x) => x.service.key);
  const config = makeConfigWith(services, { telemetry: waypointTelemetry(policies(yaml), WAYPOINT, keys) });
  const h = await startProxy(config);
  t.teardown(async () => { await h.close(); await b.close(); });
  return { h, b, seen };
}

const requestLines = (h: Harness) => h.logs.filter((l) => l['msg'] === 'request');
const series = async (h: Harness, name: string) => (await h.registry.metrics()).split('\n').filter((l) => l.startsWith(`${name}{`));

test('an access-log filter response.code >= 400 logs only the errors', async (t) => {
  const { h } = await start(t, telemetry('errors', 'shop', 'accessLogging: [{ filter: { expression: "response.code >= 400" } }]'));
  for (const path of ['/', '/status/404', '/a', '/status/503', '/status/201']) await send(h.port, { path });
  t.deepEqual(h.entries.map((e) => e.responseCode), [404, 503]);
  t.deepEqual(requestLines(h).map((l) => l['responseCode']), [404, 503], 'the log line and the sink agree');
  t.regex((await series(h, 'istio_requests_total')).join('\n'), /response_code="200"[^}]*\} 2/, 'metrics count every request');
});

test('a filter over the path, the method and a header', async (t) => {
  const { h } = await start(t, telemetry('api', 'istio-system', `accessLogging:
- filter: { expression: "request.url_path.startsWith('/api') && request.method == 'POST' || request.headers['x-debug'] == '1'" }`));
  await send(h.port, { path: '/api/items?x=1', method: 'POST', body: 'x' });
  await send(h.port, { path: '/api/items' });
  await send(h.port, { path: '/other', method: 'POST', body: 'x' });
  await send(h.port, { path: '/other', headers: { 'x-debug': '1' } });
  t.deepEqual(h.entries.map((e) => `${e.method} ${e.path}`), ['POST /api/items', 'GET /other']);
});

test('disabled: true stops the log (a Telemetry on the Service outranks the mesh-wide one)', async (t) => {
  const { h } = await start(t, telemetry('mesh', 'istio-system', 'accessLogging: [{ providers: [{ name: envoy }] }]') +
    telemetry('reviews-off', 'shop', 'targetRefs: [{ kind: Service, name: reviews }]\naccessLogging: [{ disabled: true }]'));
  for (let i = 0; i < 3; i++) t.is((await send(h.port, { path: '/status/500' })).status, 500);
  t.deepEqual(h.entries, []);
  t.deepEqual(requestLines(h), []);
  t.is((await series(h, 'istio_requests_total')).length, 1, 'metrics still count');
});

test('a metric disabled for the waypoint emits no series; the other request metrics still do', async (t) => {
  const { h } = await start(t, telemetry('no-count', 'shop', `targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
metrics:
- overrides:
  - match: { metric: REQUEST_COUNT }
    disabled: true
  - match: { metric: REQUEST_SIZE, mode: SERVER }
    disabled: true
  - match: { metric: RESPONSE_SIZE, mode: CLIENT }
    disabled: true`));
  await send(h.port);
  await send(h.port, { path: '/status/404' });
  t.deepEqual(await series(h, 'istio_requests_total'), []);
  t.deepEqual(await series(h, 'istio_request_bytes_count'), []);
  t.deepEqual((await series(h, 'istio_request_duration_milliseconds_count')).map((l) => /response_code="(\d+)"[^}]*\} (\d+)$/.exec(l)?.slice(1).join(' ')).sort(), ['200 1', '404 1']);
  t.is((await series(h, 'istio_response_bytes_count')).length, 2, 'a CLIENT-mode override does not apply to the waypoint');
  t.is(h.entries.length, 2, 'the access log is untouched');
});

test('tag overrides remove a label and set one from the request; each metric keeps its own label set', async (t) => {
  const { h } = await start(t, telemetry('tags', 'shop', `metrics:
- overrides:
  - tagOverrides:
      source_principal: { operation: REMOVE }
      destination_version: { value: "request.headers['x-tenant']" }
  - match: { metric: REQUEST_DURATION }
    tagOverrides:
      response_code: { operation: REMOVE }`));
  await send(h.port, { headers: { 'x-tenant': 'acme' } });
  await send(h.port, { headers: { 'x-tenant': 'globex' } });
  await send(h.port, { headers: { 'x-tenant': 'acme' } });
  await send(h.port);
  const count = await series(h, 'istio_requests_total');
  t.is(count.length, 3, count.join('\n'));
  t.false(count.some((l) => l.includes('source_principal=')), 'removed from every series');
  t.true(count.some((l) => l.includes('destination_version="acme"') && l.endsWith(' 2')));
  t.true(count.some((l) => l.includes('destination_version="globex"') && l.endsWith(' 1')));
  t.true(count.some((l) => l.includes('destination_version="unknown"') && l.endsWith(' 1')), 'an absent header is unknown');
  t.true(count.every((l) => l.includes('response_code="200"') && l.includes('destination_service="reviews.shop.svc.cluster.local"')));
  const duration = await series(h, 'istio_request_duration_milliseconds_count');
  t.is(duration.length, 3);
  t.false(duration.some((l) => l.includes('response_code=')), 'only the duration histogram lost response_code');
});

test('sampling 100% marks every new trace sampled, 0% none; a caller\'s decision is kept', async (t) => {
  const all = await start(t, telemetry('all', 'shop', 'targetRefs: [{ kind: Service, name: reviews }]\ntracing: [{ randomSamplingPercentage: 100 }]'));
  for (let i = 0; i < 5; i++) await send(all.h.port);
  t.is(all.seen.length, 5);
  t.true(all.seen.every((tp) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/.test(tp)), all.seen.join('\n'));
  const caller = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
  await send(all.h.port, { headers: { traceparent: caller } });
  t.regex(all.seen.at(-1) ?? '', /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/, 'an unsampled caller stays unsampled');

  const none = await start(t, telemetry('none', 'istio-system', 'tracing: [{ randomSamplingPercentage: 0 }]'));
  for (let i = 0; i < 5; i++) await send(none.h.port);
  t.true(none.seen.every((tp) => tp.endsWith('-00')), none.seen.join('\n'));
  const sampledCaller = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  await send(none.h.port, { headers: { traceparent: sampledCaller } });
  t.regex(none.seen.at(-1) ?? '', /-01$/, 'a sampled caller stays sampled');
});

test('a new config that disables a metric removes the series it already had', async (t) => {
  const { h, b } = await start(t, '');
  await send(h.port);
  await send(h.port, { path: '/status/404' });
  t.is((await series(h, 'istio_requests_total')).length, 2);
  const services: ServiceSpec[] = [{ name: 'reviews', endpoints: [{ backend: b, labels: { app: 'reviews', version: 'v1' } }] }];
  const yaml = telemetry('off', 'shop', 'targetRefs: [{ kind: Service, name: reviews }]\nmetrics: [{ overrides: [{ match: { metric: REQUEST_COUNT }, disabled: true }] }]');
  h.proxy.setConfig(makeConfigWith(services, { telemetry: waypointTelemetry(policies(yaml), WAYPOINT, ['shop/reviews']) }));
  t.deepEqual(await series(h, 'istio_requests_total'), []);
  t.is((await series(h, 'istio_request_duration_milliseconds_count')).length, 2, 'the duration histogram keeps its series');
  await send(h.port);
  t.deepEqual(await series(h, 'istio_requests_total'), [], 'and new requests add none');
  t.regex((await series(h, 'istio_request_duration_milliseconds_count')).join('\n'), /response_code="200"[^}]*\} 2/);
});
