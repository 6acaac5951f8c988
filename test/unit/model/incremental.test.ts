/**
 * applyChange must equal a full compile: for each kind of change, the incremental snapshot's
 * canonical dump (every index) and its diagnostics are compared with compiling the changed
 * resource set from scratch. Changes are also chained, and the recomputed set is checked to
 * stay small for a one-pod change.
 */
import test from 'ava';
import { applyChange, compile, type Change } from '../../../src/model/compile/compile.js';
import type { Snapshot } from '../../../src/model/compile/snapshot.js';
import type { ResourceRef } from '../../../src/model/diagnostics.js';
import type { Resource } from '../../../src/model/resource.js';
import { InvalidChangeError } from '../../../src/model/errors.js';
import { node, ns, parseYaml, pod, service } from './helpers.js';

const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };

const BASE =
  ns('istio-system') +
  ns('a', { ...AMBIENT, 'ambit.dev/use-waypoint': 'wp' }) +
  ns('b', AMBIENT) +
  node('node-1', '198.18.0.1') +
  node('node-2', '198.18.0.2') +
  pod('a', 'web-1', '198.19.1.1', { app: 'web', version: 'v1' }) +
  pod('a', 'web-2', '198.19.2.1', { app: 'web', version: 'v2' }, { node: 'node-2' }) +
  pod('a', 'db-1', '198.19.1.2', { app: 'db' }) +
  pod('a', 'wp-0', '198.19.1.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }) +
  pod('b', 'api-1', '198.19.2.2', { app: 'api' }, { node: 'node-2', sa: 'api' }) +
  service('a', 'web', '198.18.128.1', { app: 'web' }) +
  service('a', 'db', '198.18.128.2', { app: 'db' }) +
  service('b', 'api', '198.18.128.3', { app: 'api' }) +
  `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: a}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-allow, namespace: a}
spec: {selector: {matchLabels: {app: web}}, rules: [{from: [{source: {namespaces: [b]}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: a}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: v1}, weight: 90}, {destination: {host: web, subset: v2}, weight: 10}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec: {host: web, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: b}
spec:
  parentRefs: [{group: "", kind: Service, name: api}]
  rules: [{backendRefs: [{name: api, port: 80}]}]
`;

function resources(yaml: string): Resource[] {
  const p = parseYaml(yaml);
  const errors = p.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('; '));
  return p.resources;
}

function one(yaml: string): Resource {
  const [r] = resources(yaml);
  if (r === undefined) throw new Error('no resource');
  return r;
}

function applyToList(list: readonly Resource[], change: Change): Resource[] {
  const m = new Map(list.map((r) => [r.key, r]));
  for (const d of change.delete ?? []) for (const [k, r] of m) if (r.kind === d.kind && r.ref.namespace === d.namespace && r.ref.name === d.name && r.group === d.group) m.delete(k);
  for (const u of change.upsert ?? []) m.set(u.key, u);
  return [...m.values()];
}

const sortDiags = (s: Snapshot): string[] => s.diagnostics().map((d) => `${d.code} ${d.path ?? ''} ${d.message}`).sort();

function assertSame(t: import('ava').ExecutionContext, inc: Snapshot, list: readonly Resource[], what: string): void {
  const full = compile(list);
  t.deepEqual(JSON.parse(JSON.stringify(inc.toJSON())), JSON.parse(JSON.stringify(full.toJSON())), `${what}: indexes equal a full compile`);
  t.deepEqual(sortDiags(inc), sortDiags(full), `${what}: diagnostics equal a full compile`);
}

const ref = (group: string, kind: string, namespace: string, name: string): ResourceRef => ({ group, kind, namespace, name });

const CHANGES: Record<string, () => Change> = {
  'add a pod (joins a Service and a subset)': () => ({ upsert: [one(pod('a', 'web-3', '198.19.1.3', { app: 'web', version: 'v2' }))] }),
  'remove a pod': () => ({ delete: [ref('', 'Pod', 'a', 'web-1')] }),
  'relabel a pod out of its Service': () => ({ upsert: [one(pod('a', 'web-2', '198.19.2.1', { app: 'other', version: 'v2' }, { node: 'node-2' }))] }),
  'move a pod to another node and IP': () => ({ upsert: [one(pod('a', 'db-1', '198.19.2.7', { app: 'db' }, { node: 'node-2' }))] }),
  'give a pod a duplicate IP': () => ({ upsert: [one(pod('b', 'dup', '198.19.1.1', { app: 'api' }))] }),
  'pod becomes not ready': () => ({ upsert: [one(pod('a', 'web-1', '198.19.1.1', { app: 'web', version: 'v1' }, { phase: 'Pending' }))] }),
  'waypoint pod goes away': () => ({ delete: [ref('', 'Pod', 'a', 'wp-0')] }),
  'relabel a namespace (unenroll, drop waypoint)': () => ({ upsert: [one(ns('a'))] }),
  'enroll a namespace with a waypoint in another namespace': () => ({ upsert: [one(ns('b', { ...AMBIENT, 'ambit.dev/use-waypoint': 'wp', 'ambit.dev/use-waypoint-namespace': 'a' }))] }),
  'change a policy selector': () => ({ upsert: [one('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: web-allow, namespace: a}\nspec: {selector: {matchLabels: {app: db}}}\n')] }),
  'add a mesh-wide policy': () => ({ upsert: [one('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-ext, namespace: istio-system}\nspec: {action: DENY, rules: [{from: [{source: {ipBlocks: [203.0.113.0/24]}}]}]}\n')] }),
  'delete a policy': () => ({ delete: [ref('security.istio.io', 'AuthorizationPolicy', 'a', 'web-allow')] }),
  'mesh mTLS to PERMISSIVE and a namespace override': () => ({
    upsert: [
      one('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: PERMISSIVE}}\n'),
      one('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: b}\nspec: {mtls: {mode: DISABLE}}\n'),
    ],
  }),
  'workload PeerAuthentication with port level': () => ({ upsert: [one('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: db, namespace: a}\nspec: {selector: {matchLabels: {app: db}}, portLevelMtls: {"8080": {mode: DISABLE}}}\n')] }),
  'change a Service selector': () => ({ upsert: [one(service('a', 'web', '198.18.128.1', { version: 'v2' }))] }),
  'change a Service VIP and bind it to a waypoint': () => ({ upsert: [one(service('a', 'db', '198.18.128.20', { app: 'db' }, undefined, { 'ambit.dev/use-waypoint': 'wp' }))] }),
  'delete a Service': () => ({ delete: [ref('', 'Service', 'a', 'db')] }),
  'add a Service over existing pods': () => ({ upsert: [one(service('a', 'all', '198.18.128.9', { version: 'v1' }))] }),
  'change VirtualService weights': () => ({
    upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: a}\nspec:\n  hosts: [web]\n  http: [{route: [{destination: {host: web, subset: v1}, weight: 50}, {destination: {host: web, subset: v2}, weight: 50}]}]\n')],
  }),
  'VirtualService moves to another host': () => ({
    upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: a}\nspec:\n  hosts: [db]\n  http: [{route: [{destination: {host: db}}], timeout: 1s}]\n')],
  }),
  'wildcard DestinationRule': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: all, namespace: a}\nspec: {host: "*.cluster.local", trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n')] }),
  'delete a DestinationRule': () => ({ delete: [ref('networking.istio.io', 'DestinationRule', 'a', 'web')] }),
  'HTTPRoute changes parent': () => ({ upsert: [one('apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api, namespace: b}\nspec:\n  parentRefs: [{group: "", kind: Service, name: web, namespace: a}]\n  rules: [{backendRefs: [{name: web, namespace: a, port: 80}]}]\n')] }),
  'delete the waypoint Gateway': () => ({ delete: [ref('gateway.networking.k8s.io', 'Gateway', 'a', 'wp')] }),
  'add a Node and a ServiceAccount': () => ({ upsert: [one(node('node-3', '198.18.0.3')), one('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: b}\n')] }),
  'delete a namespace object': () => ({ delete: [ref('', 'Namespace', '', 'b')] }),
  'delete something that does not exist': () => ({ delete: [ref('', 'Pod', 'a', 'ghost')] }),
  'upsert an identical object': () => ({ upsert: [one(service('b', 'api', '198.18.128.3', { app: 'api' }))] }),
};

for (const [name, make] of Object.entries(CHANGES)) {
  test(`incremental == full compile: ${name}`, (t) => {
    const base = resources(BASE);
    const snap = compile(base);
    const change = make();
    const inc = applyChange(snap, change);
    assertSame(t, inc, applyToList(base, change), name);
    t.is(inc.version, snap.version + 1);
    assertSame(t, snap, base, 'the old snapshot is unchanged');
  });
}

test('incremental == full compile after every step of a chain of all changes', (t) => {
  let list = resources(BASE);
  let snap = compile(list);
  for (const [name, make] of Object.entries(CHANGES)) {
    const change = make();
    snap = applyChange(snap, change);
    list = applyToList(list, change);
    assertSame(t, snap, list, `after "${name}"`);
  }
});

test('a one-pod change recomputes only that pod and the Services that select it', (t) => {
  const snap = compile(resources(BASE));
  const inc = applyChange(snap, CHANGES['add a pod (joins a Service and a subset)']!());
  t.deepEqual(inc.changes?.workloads, ['a/web-3']);
  t.deepEqual(inc.changes?.services, ['a/web']);
  t.deepEqual(inc.changes?.waypoints, []);
  t.deepEqual(inc.changes?.resources, ['core/Pod/a/web-3']);
  t.deepEqual(inc.service('a/web')?.endpoints.map((e) => e.workload), ['a/web-1', 'a/web-2', 'a/web-3']);
  t.is(inc.service('a/db'), snap.service('a/db'), 'untouched Services are shared, not rebuilt');
  t.is(inc.workload('b/api-1'), snap.workload('b/api-1'));
});

test('many single-pod changes in a row stay equal to a full compile (persistent index compaction)', (t) => {
  let list = resources(BASE);
  let snap = compile(list);
  for (let i = 0; i < 120; i++) {
    const change: Change = i % 3 === 2 ? { delete: [ref('', 'Pod', 'b', `n-${i - 1}`)] } : { upsert: [one(pod('b', `n-${i}`, `198.19.3.${i}`, { app: i % 2 === 0 ? 'api' : 'x' }))] };
    snap = applyChange(snap, change);
    list = applyToList(list, change);
  }
  assertSame(t, snap, list, 'after 120 changes');
});

test('bad changes are refused with AMBIT_ERR_MODEL_INVALID_CHANGE', (t) => {
  const snap = compile(resources(BASE));
  t.throws(() => applyChange(snap, { upsert: [{ kind: 'Pod' } as unknown as Resource] }), { instanceOf: InvalidChangeError, message: /parseObject/ });
  t.throws(() => applyChange(snap, { delete: [{ group: '', kind: '', namespace: 'a', name: 'x' }] }), { instanceOf: InvalidChangeError });
});
