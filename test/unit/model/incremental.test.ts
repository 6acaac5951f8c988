/**
 * applyChange must equal a full compile: for each kind of change, the incremental snapshot's
 * canonical dump (every index) and its diagnostics are compared with compiling the changed
 * resource set from scratch. Changes are also chained, and the recomputed set is checked to
 * stay small for a one-pod change.
 *
 * Diagnostics after applyChange are themselves incremental (only what a change can affect is
 * rechecked): they must equal a full recheck of the same snapshot, in the same order, for every
 * kind of change, on a mesh with findings in every check (so findings appear and disappear),
 * along chains, and along long random chains where diagnostics are read only now and then.
 */
import test from 'ava';
import { applyChange, compile, type Change } from '../../../src/model/compile/compile.js';
import { crossCheck } from '../../../src/model/compile/cross-check.js';
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
---
apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: wp-limit, namespace: a}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp}]
  tokenBucket: {maxTokens: 10, fillInterval: 1s}
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
  'add ServiceEntries bound to the waypoint (namespace label; istio.io/use-waypoint from another namespace)': () => ({
    upsert: [
      one('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext-a, namespace: a}\nspec: {hosts: [api.external.test], ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}], location: MESH_EXTERNAL, resolution: STATIC, endpoints: [{address: 198.18.200.10}]}\n'),
      one('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext-b, namespace: b, labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: a}}\nspec: {hosts: [b.external.test], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n'),
    ],
  }),
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
  'consistent hash on a header': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: a}\nspec: {host: web, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}, subsets: [{name: v1, labels: {version: v1}}]}\n')] }),
  'add a Service rate limit for one route': () => ({ upsert: [one('apiVersion: ambit.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: api-limit, namespace: b}\nspec: {targetRefs: [{kind: Service, name: api}], routeName: r1, tokenBucket: {maxTokens: 5, tokensPerFill: 2, fillInterval: 250ms}, statusCode: 503}\n')] }),
  'retarget the waypoint rate limit to one Service': () => ({ upsert: [one('apiVersion: ambit.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: wp-limit, namespace: a}\nspec: {targetRefs: [{kind: Service, name: db}], tokenBucket: {maxTokens: 10, fillInterval: 1s}}\n')] }),
  'delete the waypoint rate limit': () => ({ delete: [ref('ambit.dev', 'LocalRateLimit', 'a', 'wp-limit')] }),
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

// ------------------------------------------------------------------ incremental diagnostics

/** BASE plus objects that give every cross-reference check something to report. */
const BROKEN =
  BASE +
  '---\n' +
  ns('c', AMBIENT) +
  pod('a', 'lost-1', '198.19.1.20', { app: 'lost' }, { node: 'node-9', sa: 'ghost' }) +
  pod('b', 'twin-1', '198.19.2.2', { app: 'twin' }, { node: 'node-2' }) +
  pod('c', 'bound-1', '198.19.3.1', { app: 'bound', 'ambit.dev/use-waypoint': 'nowhere' }) +
  pod('c', 'named-1', '198.19.3.2', { app: 'named' }, { ports: { grpc: 9090 } }) +
  pod('zz', 'stray-1', '198.19.3.9', { app: 'stray' }) +
  service('a', 'empty', '198.18.128.10', { app: 'nothing' }) +
  service('b', 'twin-vip', '198.18.128.3', { app: 'twin' }) +
  service('c', 'named', '198.18.128.11', { app: 'named' }, '[{name: http, port: 80, targetPort: http}]') +
  `apiVersion: v1
kind: Namespace
metadata: {name: d, labels: {ambit.dev/use-waypoint: missing}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: idle, namespace: c}
spec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: b}
spec:
  hosts: [nowhere, api]
  http: [{route: [{destination: {host: api, subset: nope, port: {number: 81}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orphan, namespace: b}
spec:
  http: [{route: [{destination: {host: api}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: b}
spec: {host: api, subsets: [{name: v9, labels: {version: v9}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: b}
spec: {host: ghost}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: dangling, namespace: c}
spec:
  parentRefs: [{group: "", kind: Service, name: named, port: 81}]
  rules: [{backendRefs: [{name: absent, port: 80}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nobody, namespace: b}
spec: {selector: {matchLabels: {app: nobody}}, rules: [{from: [{source: {namespaces: [a]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-absent, namespace: b}
spec: {targetRefs: [{kind: Service, group: "", name: absent}, {kind: Gateway, group: gateway.networking.k8s.io, name: absent}], rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: c}
spec: {selector: {matchLabels: {app: named}}, rules: [{to: [{operation: {methods: [GET]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-get, namespace: istio-system}
spec: {selector: {matchLabels: {app: api}}, rules: [{to: [{operation: {paths: ["/x"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: one, namespace: c}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: two, namespace: c}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: unenforced, namespace: c}
spec: {targetRefs: [{kind: Service, name: named}, {kind: Service, name: absent}], tokenBucket: {maxTokens: 1, fillInterval: 1s}}
---
apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: db-limit, namespace: a}
spec: {targetRefs: [{kind: Service, name: db}], tokenBucket: {maxTokens: 1, fillInterval: 1s}}
---
`;

const policy = (name: string, namespace: string, spec: string): string => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: ${namespace}}\nspec: ${spec}\n`;

/** Changes that make findings appear or go away in each check. */
const DIAG_CHANGES: Record<string, () => Change> = {
  ...CHANGES,
  'define the missing node': () => ({ upsert: [one(node('node-9', '198.18.0.9'))] }),
  'remove a node pods run on': () => ({ delete: [ref('', 'Node', '', 'node-2')] }),
  'define the missing ServiceAccount': () => ({ upsert: [one('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ghost, namespace: a}\n')] }),
  'remove the duplicate-IP twin': () => ({ delete: [ref('', 'Pod', 'b', 'twin-1')] }),
  'move the original off the shared IP': () => ({ upsert: [one(pod('b', 'api-1', '198.19.2.50', { app: 'api' }, { node: 'node-2', sa: 'api' }))] }),
  'a third pod on the shared IP, sorting first': () => ({ upsert: [one(pod('a', 'aaa', '198.19.2.2', { app: 'x' }))] }),
  'free the shared VIP': () => ({ upsert: [one(service('b', 'twin-vip', '198.18.128.30', { app: 'twin' }))] }),
  'a Service takes an existing VIP, sorting first': () => ({ upsert: [one(service('a', 'aaa', '198.18.128.1', { app: 'web' }))] }),
  'a pod joins the empty Service': () => ({ upsert: [one(pod('a', 'nothing-1', '198.19.1.30', { app: 'nothing' }))] }),
  'the last pod leaves a Service': () => ({ delete: [ref('', 'Pod', 'a', 'db-1')] }),
  'named port appears on the pod': () => ({ upsert: [one(pod('c', 'named-1', '198.19.3.2', { app: 'named' }, { ports: { http: 8080 } }))] }),
  'create the waypoint the namespace wants': () => ({ upsert: [one('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: missing, namespace: d}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n')] }),
  'create the waypoint the pod wants': () => ({ upsert: [one('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: nowhere, namespace: c}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n')] }),
  'a pod starts serving the idle waypoint': () => ({ upsert: [one(pod('c', 'idle-0', '198.19.3.40', { 'gateway.networking.k8s.io/gateway-name': 'idle' }))] }),
  'define the stray namespace': () => ({ upsert: [one(ns('zz'))] }),
  'another object in the stray namespace, sorting first': () => ({ upsert: [one('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: zz}\n')] }),
  'a new object in a new undefined namespace': () => ({ upsert: [one(service('yy', 'lone', '198.18.128.40', { app: 'lone' }))] }),
  'delete the namespace objects of enrolled pods': () => ({ delete: [ref('', 'Namespace', '', 'c')] }),
  'a pod matches the policy that matched nothing': () => ({ upsert: [one(pod('b', 'nobody-1', '198.19.2.60', { app: 'nobody' }))] }),
  'the root policy loses its only match': () => ({ upsert: [one(pod('b', 'api-1', '198.19.2.2', { app: 'api2' }, { node: 'node-2', sa: 'api' }))] }),
  'create the Service a targetRef names': () => ({ upsert: [one(service('b', 'absent', '198.18.128.41', { app: 'api' }))] }),
  'create the Gateway a targetRef names': () => ({ upsert: [one('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: absent, namespace: b}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n')] }),
  'resolve the PeerAuthentication conflict': () => ({ delete: [ref('security.istio.io', 'PeerAuthentication', 'c', 'two')] }),
  'a second mesh-wide PeerAuthentication': () => ({ upsert: [one('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: extra, namespace: istio-system}\nspec: {mtls: {mode: PERMISSIVE}}\n')] }),
  'bind the L7 policy workloads to a waypoint': () => ({ upsert: [one(ns('c', { ...AMBIENT, 'ambit.dev/use-waypoint': 'idle' }))] }),
  'a Service binds the L7 workloads to a waypoint': () => ({ upsert: [one(service('c', 'named', '198.18.128.11', { app: 'named' }, '[{name: http, port: 80, targetPort: http}]', { 'ambit.dev/use-waypoint': 'idle' }))] }),
  'another pod falls under the root L7 policy': () => ({ upsert: [one(pod('a', 'api-9', '198.19.1.90', { app: 'api' }))] }),
  'an L7 policy appears': () => ({ upsert: [one(policy('l7', 'a', '{selector: {matchLabels: {app: db}}, rules: [{to: [{operation: {methods: [POST]}}]}]}'))] }),
  'fix the broken VirtualService': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: b}\nspec:\n  hosts: [api]\n  http: [{route: [{destination: {host: api}}]}]\n')] }),
  'a root VirtualService delegates to the orphan delegate': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root, namespace: b}\nspec:\n  hosts: [api]\n  http: [{delegate: {name: orphan}}]\n')] }),
  'the delegate gets hosts': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orphan, namespace: b}\nspec:\n  hosts: [api]\n  http: [{route: [{destination: {host: api}}]}]\n')] }),
  'a second orphan delegate': () => ({ upsert: [one('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: orphan-2, namespace: a}\nspec:\n  http: [{route: [{destination: {host: web}}]}]\n')] }),
  'a subset gets a pod': () => ({ upsert: [one(pod('b', 'api-v9', '198.19.2.90', { app: 'api', version: 'v9' }))] }),
  'create the Service a DestinationRule names': () => ({ upsert: [one(service('b', 'ghost', '198.18.128.42', { app: 'api' }))] }),
  'create the HTTPRoute backend and port': () => ({ upsert: [one(service('c', 'absent', '198.18.128.43', { app: 'named' })), one(service('c', 'named', '198.18.128.11', { app: 'named' }, '[{name: http, port: 81, targetPort: http}]'))] }),
  'delete every pod of a namespace': () => ({ delete: [ref('', 'Pod', 'c', 'bound-1'), ref('', 'Pod', 'c', 'named-1')] }),
};

/** Incremental diagnostics equal a full recheck of the same snapshot, exactly (order too). */
function assertDiagnostics(t: import('ava').ExecutionContext, inc: Snapshot, list: readonly Resource[], what: string): void {
  t.deepEqual(inc.diagnostics(), crossCheck(inc), `${what}: incremental diagnostics equal a full recheck`);
  t.deepEqual(sortDiags(inc), sortDiags(compile(list)), `${what}: diagnostics equal a full compile`);
}

test('the broken mesh has a finding in every cross-reference check', (t) => {
  const codes = new Set(compile(resources(BROKEN)).diagnostics().map((d) => d.code));
  for (const c of ['AMBIT_REF_UNKNOWN_HOST', 'AMBIT_REF_UNKNOWN_SUBSET', 'AMBIT_REF_UNKNOWN_PORT', 'AMBIT_REF_SUBSET_NO_PODS', 'AMBIT_REF_UNKNOWN_SERVICE',
    'AMBIT_REF_SERVICE_NO_PODS', 'AMBIT_REF_DUPLICATE_IP', 'AMBIT_REF_UNKNOWN_TARGET_PORT', 'AMBIT_REF_UNKNOWN_WAYPOINT', 'AMBIT_REF_WAYPOINT_NO_PODS',
    'AMBIT_REF_UNKNOWN_NODE', 'AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT', 'AMBIT_REF_UNKNOWN_NAMESPACE', 'AMBIT_REF_SELECTOR_NO_MATCH', 'AMBIT_REF_CONFLICT',
    'AMBIT_POLICY_L7_WITHOUT_WAYPOINT', 'AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT', 'AMBIT_REF_DELEGATE_UNUSED'] as const) {
    t.true(codes.has(c), c);
  }
});

for (const [name, make] of Object.entries(DIAG_CHANGES)) {
  test(`incremental diagnostics == full recheck: ${name}`, (t) => {
    const base = resources(BROKEN);
    const snap = compile(base);
    snap.diagnostics(); // the base of the incremental check
    const change = make();
    const inc = applyChange(snap, change);
    assertDiagnostics(t, inc, applyToList(base, change), name);
    t.deepEqual(snap.diagnostics(), crossCheck(snap), 'the old snapshot keeps its own diagnostics');
  });
}

test('incremental diagnostics == full recheck after every step of a chain of all changes', (t) => {
  let list = resources(BROKEN);
  let snap = compile(list);
  for (const [name, make] of Object.entries(DIAG_CHANGES)) {
    const change = make();
    snap = applyChange(snap, change);
    list = applyToList(list, change);
    assertDiagnostics(t, snap, list, `after "${name}"`);
  }
});

/** A small deterministic PRNG (mulberry32), so a failing sequence can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random change over a small space of names, IPs and labels, so objects collide often. */
function randomChange(r: () => number): Change {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const nss = ['a', 'b', 'c', 'zz'];
  const apps = ['web', 'db', 'api', 'named', 'nobody', 'x'];
  const n = pick(nss);
  const kind = Math.floor(r() * 12);
  switch (kind) {
    case 0:
    case 1:
    case 2:
      return { upsert: [one(pod(n, `p-${Math.floor(r() * 6)}`, `198.19.9.${Math.floor(r() * 5)}`, { app: pick(apps), ...(r() < 0.3 ? { version: pick(['v1', 'v2', 'v9']) } : {}) }, { node: pick(['node-1', 'node-2', 'node-9']), sa: pick(['default', 'api', 'ghost']), ...(r() < 0.3 ? { ports: { grpc: 9090 } } : {}), ...(r() < 0.2 ? { phase: 'Pending' } : {}) }))] };
    case 3:
      return { delete: [ref('', 'Pod', n, `p-${Math.floor(r() * 6)}`)] };
    case 4:
      return { upsert: [one(service(n, `s-${Math.floor(r() * 3)}`, `198.18.128.${90 + Math.floor(r() * 3)}`, { app: pick(apps) }, r() < 0.5 ? undefined : '[{name: http, port: 80, targetPort: http}]', r() < 0.3 ? { 'ambit.dev/use-waypoint': pick(['wp', 'idle', 'gone']) } : {}))] };
    case 5:
      return { delete: [ref('', 'Service', n, `s-${Math.floor(r() * 3)}`)] };
    case 6:
      return r() < 0.5 ? { upsert: [one(ns(n, r() < 0.5 ? AMBIENT : { ...AMBIENT, 'ambit.dev/use-waypoint': pick(['wp', 'idle']) }))] } : { delete: [ref('', 'Namespace', '', n)] };
    case 7:
      return r() < 0.5 ? { upsert: [one(node(pick(['node-1', 'node-2', 'node-9']), '198.18.0.7'))] } : { delete: [ref('', 'Node', '', pick(['node-1', 'node-2', 'node-9']))] };
    case 8:
      return r() < 0.5
        ? { upsert: [one(policy(`r-${Math.floor(r() * 3)}`, pick([...nss, 'istio-system']), r() < 0.5 ? `{selector: {matchLabels: {app: ${pick(apps)}}}, rules: [{to: [{operation: {methods: [GET]}}]}]}` : `{selector: {matchLabels: {app: ${pick(apps)}}}}`))] }
        : { delete: [ref('security.istio.io', 'AuthorizationPolicy', pick([...nss, 'istio-system']), `r-${Math.floor(r() * 3)}`)] };
    case 9:
      return r() < 0.5
        ? { upsert: [one(`apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: ${pick(['idle', 'gone'])}, namespace: ${n}}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n`)] }
        : { delete: [ref('gateway.networking.k8s.io', 'Gateway', n, pick(['idle', 'gone']))] };
    case 10:
      return r() < 0.5
        ? { upsert: [one(`apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa-${Math.floor(r() * 2)}, namespace: ${n}}\nspec: {mtls: {mode: STRICT}}\n`)] }
        : { upsert: [one(`apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ${pick(['api', 'ghost'])}, namespace: ${n}}\n`)] };
    default:
      return r() < 0.5
        ? { upsert: [one(`apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: ${n}}\nspec: {host: ${pick(['s-0', 's-1', 'web', 'api'])}, subsets: [{name: v9, labels: {version: v9}}]}\n`)] }
        : { upsert: [one(`apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: ${n}}\nspec:\n  hosts: [${pick(['s-0', 's-1', 'web'])}]\n  http: [{route: [{destination: {host: ${pick(['s-0', 's-2', 'web'])}, subset: v9}}]}]\n`)] };
  }
}

for (const [seed, every] of [[1, 1], [2, 1], [3, 3], [4, 7]] as const) {
  test(`random chain (seed ${seed}, diagnostics read every ${every} step${every > 1 ? 's' : ''}): incremental == full recheck`, (t) => {
    const r = rng(seed);
    let list = resources(BROKEN);
    let snap = compile(list);
    snap.diagnostics();
    for (let i = 1; i <= 150; i++) {
      const change = randomChange(r);
      snap = applyChange(snap, change);
      list = applyToList(list, change);
      if (i % every === 0) t.deepEqual(snap.diagnostics(), crossCheck(snap), `seed ${seed}, step ${i}: ${JSON.stringify(change.upsert?.map((u) => u.key) ?? change.delete)}`);
    }
    assertDiagnostics(t, snap, list, `seed ${seed}, end`);
  });
}
