/**
 * What the model compiles for waypoints beyond routes: DestinationRule consistent hashing
 * (`trafficPolicy.loadBalancer.consistentHash`) and LocalRateLimits attached to Services or to
 * their waypoint Gateway.
 */
import test from 'ava';
import { analyzeYaml, compileYaml, node, ns, pod, service } from './helpers.js';

const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };

const MESH =
  ns('a', { ...AMBIENT, 'ambit.dev/use-waypoint': 'wp' }) +
  ns('b', { ...AMBIENT, 'ambit.dev/use-waypoint': 'wp', 'ambit.dev/use-waypoint-namespace': 'a' }) +
  ns('c', AMBIENT) +
  node('node-1', '198.18.0.1') +
  pod('a', 'web-1', '198.19.1.1', { app: 'web', version: 'v1' }) +
  pod('a', 'web-2', '198.19.1.2', { app: 'web', version: 'v2' }) +
  pod('a', 'wp-0', '198.19.1.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }) +
  pod('b', 'api-1', '198.19.1.3', { app: 'api' }) +
  pod('c', 'db-1', '198.19.1.4', { app: 'db' }) +
  service('a', 'web', '198.18.128.1', { app: 'web' }) +
  service('b', 'api', '198.18.128.2', { app: 'api' }) +
  service('c', 'db', '198.18.128.3', { app: 'db' }) +
  `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: a}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
`;

const dr = (trafficPolicy: string, subsets = ''): string =>
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: a}\nspec:\n  host: web\n  trafficPolicy: ${trafficPolicy}\n${subsets}---\n`;

test('consistentHash on a header compiles with the default ring and is not reported as unimplemented', (t) => {
  const y = MESH + dr('{loadBalancer: {consistentHash: {httpHeaderName: X-User}}}');
  t.deepEqual(analyzeYaml(y).filter((d) => d.code.startsWith('AMBIT_SCHEMA')).map((d) => d.code), []);
  const tp = compileYaml(t, y).service('a/web')!.destinationPolicy!.trafficPolicy;
  t.is(tp.loadBalancer, undefined);
  t.deepEqual(tp.consistentHash, { httpHeaderName: 'x-user', ringHash: { minimumRingSize: 1024 } });
  t.deepEqual(JSON.parse(JSON.stringify(tp.consistentHash)), tp.consistentHash, 'survives a JSON round trip unchanged');
});

test('consistentHash: cookie, source IP, maglev, deprecated minimumRingSize; subsets and ports replace the loadBalancer group', (t) => {
  const y =
    MESH +
    dr(
      `\n    loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 30s, path: /}, minimumRingSize: 4096}}\n    portLevelSettings:\n      - port: {number: 80}\n        loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 251}}}`,
      '  subsets:\n    - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n    - {name: v2, labels: {version: v2}, trafficPolicy: {connectionPool: {tcp: {maxConnections: 5}}}}\n',
    );
  const p = compileYaml(t, y).service('a/web')!.destinationPolicy!;
  t.deepEqual(p.trafficPolicy.consistentHash, { httpCookie: { name: 'session', ttlMs: 30_000, path: '/' }, ringHash: { minimumRingSize: 4096 } });
  t.deepEqual(p.trafficPolicy.ports[80]?.consistentHash, { useSourceIp: true, maglev: { tableSize: 251 } });
  const [v1, v2] = p.subsets;
  t.is(v1?.trafficPolicy.loadBalancer, 'RANDOM');
  t.is(v1?.trafficPolicy.consistentHash, undefined, "a subset's loadBalancer replaces the inherited consistentHash");
  t.deepEqual(v2?.trafficPolicy.consistentHash, p.trafficPolicy.consistentHash, 'a subset without loadBalancer inherits it');
  t.is(v2?.trafficPolicy.connectionPool?.maxConnections, 5);
  t.deepEqual(v2?.trafficPolicy.ports[80]?.consistentHash, { useSourceIp: true, maglev: { tableSize: 251 } });
});

test('consistentHash: what the waypoint does not do is still reported, and bad shapes are errors', (t) => {
  const report = (lb: string): string[] => analyzeYaml(MESH + dr(`{loadBalancer: ${lb}}`)).filter((d) => d.code.startsWith('AMBIT_SCHEMA')).map((d) => `${d.code} ${d.path}`);
  t.deepEqual(report('{consistentHash: {httpQueryParameterName: user}}'), ['AMBIT_SCHEMA_UNIMPLEMENTED spec.trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName']);
  t.deepEqual(report('{consistentHash: {httpCookie: {name: s, ttl: 10s}}}'), ['AMBIT_SCHEMA_UNIMPLEMENTED spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl']);
  t.deepEqual(report('{simple: ROUND_ROBIN, localityLbSetting: {enabled: true}}'), ['AMBIT_SCHEMA_UNIMPLEMENTED spec.trafficPolicy.loadBalancer.localityLbSetting']);
  t.deepEqual(report('{simple: RANDOM, consistentHash: {useSourceIp: true}}'), ['AMBIT_SCHEMA_ONE_OF spec.trafficPolicy.loadBalancer']);
  t.deepEqual(report('{consistentHash: {httpHeaderName: a, useSourceIp: true}}'), ['AMBIT_SCHEMA_ONE_OF spec.trafficPolicy.loadBalancer.consistentHash']);
  t.deepEqual(report('{consistentHash: {ringHash: {}}}'), ['AMBIT_SCHEMA_ONE_OF spec.trafficPolicy.loadBalancer.consistentHash']);
  t.deepEqual(report('{consistentHash: {useSourceIp: false}}'), ['AMBIT_SCHEMA_INVALID spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp']);
  t.deepEqual(report('{consistentHash: {httpHeaderName: a, maglev: {tableSize: 1000}}}'), ['AMBIT_SCHEMA_INVALID spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize']);
  t.deepEqual(report('{consistentHash: {httpHeaderName: "bad header"}}'), ['AMBIT_SCHEMA_FORMAT spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName']);
  const msg = analyzeYaml(MESH + dr('{loadBalancer: {consistentHash: {httpQueryParameterName: user}}}')).find((d) => d.code === 'AMBIT_SCHEMA_UNIMPLEMENTED')?.message ?? '';
  t.regex(msg, /balanced round robin/);
});

const limit = (name: string, namespace: string, targets: string, extra = ''): string =>
  `apiVersion: ambit.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec:\n  targetRefs: ${targets}\n  tokenBucket: {maxTokens: 10, fillInterval: 1.5s}\n${extra}---\n`;

test('LocalRateLimits compile per Service: own targets, then the waypoint Gateway (shared across namespaces), defaults filled', (t) => {
  const y =
    MESH +
    limit('web-limit', 'a', '[{kind: Service, name: web}, {group: gateway.networking.k8s.io, kind: Gateway, name: wp}]', '  routeName: v2-only\n  statusCode: 503\n') +
    limit('all', 'a', '[{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]') +
    limit('db-limit', 'c', '[{kind: Service, name: db}]') +
    limit('elsewhere', 'c', '[{kind: Service, name: web}]');
  const findings = analyzeYaml(y).filter((d) => d.resource?.kind === 'LocalRateLimit').map((d) => `${d.code} ${d.message}`);
  t.deepEqual(findings, [
    'AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT LocalRateLimit c/db-limit: targets Service c/db, which is not bound to a waypoint, so nothing enforces this limit; bind one (label ambit.dev/use-waypoint on the Service or its namespace)',
    'AMBIT_REF_UNKNOWN_SERVICE LocalRateLimit c/elsewhere: targetRef Service c/web does not exist',
  ]);
  const s = compileYaml(t, y);
  const web = s.service('a/web')!.rateLimits;
  t.deepEqual(web.map((l) => [l.key, l.via]), [['a/web-limit', 'service'], ['a/all', 'waypoint']]);
  t.like(web[0], { routeName: 'v2-only', maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 1500, statusCode: 503, source: { group: 'ambit.dev', kind: 'LocalRateLimit', namespace: 'a', name: 'web-limit' } });
  t.is(web[1]?.statusCode, 429);
  t.false('routeName' in (web[1] ?? {}), 'no routeName: the limit covers every route');
  t.deepEqual(s.service('b/api')!.rateLimits.map((l) => [l.key, l.via]), [['a/all', 'waypoint'], ['a/web-limit', 'waypoint']], 'a Service in another namespace bound to the waypoint (by name)');
  t.deepEqual(s.service('c/db')!.rateLimits.map((l) => l.key), ['c/db-limit'], 'no waypoint: only its own targets');
  t.true(Object.isFrozen(web) && Object.isFrozen(web[0]));
});
