/**
 * ServiceEntry: Istio's validation rules on Istio-shaped YAML (what Istio accepts is accepted,
 * what it refuses is refused, its warnings are warnings), compilation of each host into a
 * service (VIPs, endpoints by resolution, workloadSelector), VIP auto-allocation (deterministic,
 * collision-free, from the configured range), analyze no longer reporting ServiceEntry hosts as
 * unknown, and incremental compiles equal to full ones.
 */
import test from 'ava';
import { allocateVips } from '../../../src/model/compile/service-entry.js';
import { applyChange, compile } from '../../../src/model/compile/compile.js';
import { analyzeYaml, compileYaml, ns, parseYaml, pod } from './helpers.js';

const RANGE = '198.18.224.0/20';
const OPTS = { serviceEntryVipRange: RANGE };

const se = (name: string, spec: string, extra = ''): string =>
  `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ${name}\n  namespace: app\n${extra}spec:\n${spec}---\n`;

const errors = (yaml: string): string[] => parseYaml(yaml).diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.path ?? ''}: ${d.message}`);
const warnings = (yaml: string): string[] => parseYaml(yaml).diagnostics.filter((d) => d.severity === 'warning').map((d) => `${d.path ?? ''}: ${d.message}`);

// ------------------------------------------------------------------------------ validation

test('valid Istio ServiceEntries of every resolution load without errors (v1, v1beta1, v1alpha3)', (t) => {
  const yaml = [
    se('external-dns', '  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  location: MESH_EXTERNAL\n  resolution: DNS\n'),
    se('static', '  hosts: [db.example.com]\n  addresses: [198.18.230.10]\n  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 6432}]\n  resolution: STATIC\n  endpoints:\n  - {address: 198.18.231.1, labels: {zone: a}}\n  - {address: 198.18.231.2, ports: {tcp-pg: 7432}}\n'),
    se('wild', '  hosts: ["*.wikipedia.org"]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: NONE\n  addresses: [198.18.232.0/24]\n'),
    se('dns-eps', '  hosts: [mirror.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: eu.mirror.example.com}]\n'),
    se('internal', '  hosts: [legacy.app.internal]\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  workloadSelector: {labels: {app: legacy}}\n'),
  ].join('').replace('networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: wild', 'networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n  name: wild')
    .replace('networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: dns-eps', 'networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: dns-eps');
  t.deepEqual(errors(yaml), []);
  t.is(parseYaml(yaml).resources.length, 5);
});

test('Istio\'s errors: no hosts, "*", selector with endpoints, CIDR with DNS, duplicate ports, endpoints with NONE, wildcard with DNS and no endpoints', (t) => {
  const cases: [string, RegExp][] = [
    ['  hosts: []\n  resolution: DNS\n', /at least one host/],
    ['  hosts: ["*"]\n  addresses: [198.18.230.1]\n', /host "\*" is not allowed/],
    ['  hosts: [a.example.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: [{address: 198.18.231.1}]\n', /only one of workloadSelector or endpoints/],
    ['  hosts: [a.example.com]\n  addresses: [198.18.230.0/24]\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n', /CIDR addresses are allowed only with resolution NONE or STATIC/],
    ['  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: 80, name: http}, {number: 80, name: http2}]\n', /port 80 is already defined/],
    ['  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: 80, name: http}, {number: 81, name: http}]\n', /port name "http" is already defined/],
    ['  hosts: [a.example.com]\n  addresses: [198.18.230.1]\n  resolution: NONE\n  endpoints: [{address: 198.18.231.1}]\n', /resolution NONE takes no endpoints/],
    ['  hosts: ["*.example.com"]\n  resolution: DNS\n  ports: [{number: 443, name: https, protocol: TLS}]\n', /hosts must be FQDNs when no endpoints are given for resolution DNS/],
    ['  hosts: [a.example.com]\n  resolution: STATIC\n  endpoints: [{address: db.example.com}]\n', /is not a valid IP address \(resolution STATIC\)/],
    ['  hosts: [a.example.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: x.example.com}, {address: y.example.com}]\n', /DNS_ROUND_ROBIN takes 0 or 1 endpoint/],
    ['  hosts: [a.example.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http}]\n  endpoints: [{address: 198.18.231.1, ports: {grpc: 9000}}]\n', /endpoint port "grpc" is not a port of the ServiceEntry/],
    ['  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n', /multiple hosts with a non-HTTP, non-TLS port/],
    ['  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: 80, name: Http_1}]\n', /invalid port name "Http_1"/],
    ['  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: QUIC}]\n', /unsupported protocol "QUIC"/],
    ['  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: 80, name: http}]\n  bogus: 1\n', /unknown field "bogus"/],
  ];
  for (const [spec, re] of cases) {
    const errs = errors(se('bad', spec));
    t.true(errs.some((e) => re.test(e)), `${spec}\n→ ${JSON.stringify(errs)}`);
  }
});

test('Istio\'s warnings stay warnings: partial wildcard, selector with NONE; ambit says when a host cannot be recognised or routed', (t) => {
  t.deepEqual(errors(se('w', '  hosts: ["foo*.example.com"]\n  addresses: [198.18.230.1]\n')), []);
  t.true(warnings(se('w', '  hosts: ["foo*.example.com"]\n  addresses: [198.18.230.1]\n')).some((w) => /partial wildcard/.test(w)));
  t.true(warnings(se('n', '  hosts: [a.example.com]\n  addresses: [198.18.230.1]\n  workloadSelector: {labels: {app: a}}\n')).some((w) => /workloadSelector should not be set with resolution NONE/.test(w)));
  t.true(warnings(se('n', '  hosts: [a.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n')).some((w) => /^spec.resolution: ServiceEntry app\/n: resolution NONE without addresses/.test(w)));
  t.true(warnings(se('s', '  hosts: [a.example.com]\n  resolution: STATIC\n')).some((w) => /STATIC without endpoints or workloadSelector/.test(w)));
});

// ------------------------------------------------------------------------------- compiling

const MESH = ns('app', { 'ambit.dev/dataplane-mode': 'ambient' })
  + pod('app', 'legacy-1', '198.19.1.5', { app: 'legacy' }) + pod('app', 'legacy-2', '198.19.1.6', { app: 'legacy' }) + pod('app', 'other', '198.19.1.7', { app: 'other' });

test('each host becomes a service: key namespace/host, its addresses as VIPs, endpoints per resolution', (t) => {
  const snap = compileYaml(t, MESH
    + se('static', '  hosts: [db.example.com]\n  addresses: [198.18.230.10]\n  ports: [{number: 5432, name: tcp-pg, targetPort: 6432}]\n  resolution: STATIC\n  endpoints:\n  - {address: 198.18.231.1}\n  - {address: 198.18.231.2, ports: {tcp-pg: 7432}}\n  - {address: 198.19.1.7}\n')
    + se('dns', '  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n')
    + se('internal', '  hosts: [legacy.app.internal]\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  workloadSelector: {labels: {app: legacy}}\n')
    + se('none', '  hosts: ["*.wikipedia.org"]\n  addresses: [198.18.232.0/24, 198.18.233.1]\n  ports: [{number: 443, name: https, protocol: TLS}]\n'), OPTS);

  const db = snap.service('app/db.example.com');
  t.is(db?.hostname, 'db.example.com');
  t.deepEqual(db?.vips, ['198.18.230.10']);
  t.deepEqual(db?.ports.map((p) => [p.port, p.targetPort, p.protocol]), [[5432, 6432, 'TCP']]);
  t.deepEqual(db?.endpoints.map((e) => [e.ip, e.ports[5432], e.workload, e.enrolled]), [
    ['198.18.231.1', 6432, '', false], ['198.18.231.2', 7432, '', false], ['198.19.1.7', 6432, '', false],
  ], 'MESH_EXTERNAL: even an address a mesh pod has is outside the mesh');
  t.deepEqual(db?.serviceEntry, { location: 'MESH_EXTERNAL', resolution: 'STATIC', addressRanges: [], autoAllocated: false });
  t.is(snap.serviceByVip('198.18.230.10')?.key, 'app/db.example.com');

  const api = snap.service('app/api.example.com');
  t.is(api?.vips.length, 1);
  t.true(api?.serviceEntry?.autoAllocated);
  t.regex(api?.vip ?? '', /^198\.18\.2(2[4-9]|3\d)\.\d+$/, 'inside the configured range');
  t.deepEqual(api?.endpoints.map((e) => [e.ip, e.hostname, e.ports[443]]), [['', 'api.example.com', 443]]);

  const pinned = compileYaml(t, MESH + se('pinned', '  hosts: [p.app.internal]\n  addresses: [198.18.230.11]\n  location: MESH_INTERNAL\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 198.19.1.7}, {address: 198.18.231.1}]\n'), OPTS);
  t.deepEqual(pinned.service('app/p.app.internal')?.endpoints.map((e) => [e.ip, e.workload, e.enrolled]), [['198.19.1.7', 'app/other', true], ['198.18.231.1', '', false]], 'MESH_INTERNAL: a pod address is that pod');

  const legacy = snap.service('app/legacy.app.internal');
  t.deepEqual(legacy?.endpoints.map((e) => [e.workload, e.ip, e.ports[80]]), [['app/legacy-1', '198.19.1.5', 8080], ['app/legacy-2', '198.19.1.6', 8080]]);
  t.is(legacy?.serviceEntry?.location, 'MESH_INTERNAL');

  const wiki = snap.service('app/*.wikipedia.org');
  t.deepEqual(wiki?.vips, ['198.18.233.1']);
  t.deepEqual(wiki?.serviceEntry?.addressRanges, ['198.18.232.0/24']);
  t.deepEqual(wiki?.endpoints, []);
});

test('VIP auto-allocation: deterministic from the host, independent of order, collisions probe to a free address, explicit addresses are avoided', (t) => {
  const hosts = Array.from({ length: 300 }, (_, i) => `h${i}.example.com`);
  const a = allocateVips(hosts, '198.18.250.0/24');
  const b = allocateVips([...hosts].reverse(), '198.18.250.0/24');
  t.deepEqual([...a.entries()].sort(), [...b.entries()].sort());
  const tiny = allocateVips(hosts.slice(0, 254), '198.18.250.0/24', new Set(['198.18.250.7']));
  t.is(new Set(tiny.values()).size, 253, 'every usable address once; .0, .255 and the taken .7 never');
  t.false([...tiny.values()].some((v) => v === '198.18.250.0' || v === '198.18.250.255' || v === '198.18.250.7'));
  // A host keeps its VIP when another host that does not collide with it comes or goes.
  const one = allocateVips(['x.example.com'], '198.18.250.0/24').get('x.example.com');
  const two = allocateVips(['x.example.com', 'y.example.com'], '198.18.250.0/24');
  t.is(two.get('x.example.com'), one);
  t.not(two.get('y.example.com'), one);
  t.throws(() => allocateVips(['x'], 'fd00::/64'), { instanceOf: RangeError });
  // The default range is Istio's.
  const snap = compileYaml(t, se('d', '  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n'));
  t.regex(snap.service('app/api.example.com')?.vip ?? '', /^240\.240\.\d+\.\d+$/);
});

test('auto-allocation only for entries without addresses, resolution other than NONE, not wildcards, without the opt-out label', (t) => {
  const snap = compileYaml(t,
    se('none', '  hosts: [n.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n')
    + se('wild', '  hosts: ["*.w.example.com"]\n  resolution: STATIC\n  endpoints: [{address: 198.18.231.1}]\n  ports: [{number: 443, name: https, protocol: TLS}]\n')
    + se('opt-out', '  hosts: [o.example.com]\n  resolution: DNS\n  ports: [{number: 443, name: https, protocol: TLS}]\n', '  labels: {networking.istio.io/enable-autoallocate-ip: "false"}\n'), OPTS);
  t.deepEqual(snap.service('app/n.example.com')?.vips, []);
  t.deepEqual(snap.service('app/*.w.example.com')?.vips, []);
  t.deepEqual(snap.service('app/o.example.com')?.vips, []);
});

test('analyze: VirtualService and DestinationRule hosts declared by a ServiceEntry (exact or wildcard) are not unknown hosts', (t) => {
  const routes = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: app}
spec:
  hosts: [api.example.com]
  http:
  - timeout: 3s
    route: [{destination: {host: api.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wiki, namespace: app}
spec:
  host: en.wikipedia.org
---
`;
  const unknown = (yaml: string) => analyzeYaml(yaml, OPTS).filter((d) => d.code === 'AMBIT_REF_UNKNOWN_HOST').map((d) => d.message);
  t.is(unknown(routes).length, 3, 'without the entries all three references are unknown');
  const entries = se('api', '  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n')
    + se('wiki', '  hosts: ["*.wikipedia.org"]\n  addresses: [198.18.232.0/24]\n  ports: [{number: 443, name: https, protocol: TLS}]\n');
  t.deepEqual(unknown(ns('app') + entries + routes), []);
  const snap = compileYaml(t, ns('app') + entries + routes, OPTS);
  t.is(snap.service('app/api.example.com')?.routes[0]?.timeoutMs, 3000, 'the VirtualService applies to the entry host');
  t.is(snap.serviceByHost('en.wikipedia.org')?.key, 'app/*.wikipedia.org');
});

test('incremental: adding, editing and removing a ServiceEntry, and a selected pod, equal a full compile', (t) => {
  const base = parseYaml(MESH).resources;
  const entry = parseYaml(se('internal', '  hosts: [legacy.app.internal]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: legacy}}\n')).resources;
  const edited = parseYaml(se('internal', '  hosts: [legacy.app.internal, l2.app.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: legacy}}\n')).resources;
  const newPod = parseYaml(pod('app', 'legacy-3', '198.19.1.8', { app: 'legacy' })).resources;
  let snap = compile(base, OPTS);
  snap = applyChange(snap, { upsert: entry });
  t.deepEqual(snap.toJSON(), compile([...base, ...entry], OPTS).toJSON());
  t.deepEqual(snap.changes?.services, ['app/legacy.app.internal']);
  snap = applyChange(snap, { upsert: newPod });
  t.deepEqual(snap.service('app/legacy.app.internal')?.endpoints.map((e) => e.workload), ['app/legacy-1', 'app/legacy-2', 'app/legacy-3']);
  t.deepEqual(snap.toJSON(), compile([...base, ...entry, ...newPod], OPTS).toJSON());
  snap = applyChange(snap, { upsert: edited });
  t.deepEqual(snap.toJSON(), compile([...base, ...edited, ...newPod], OPTS).toJSON());
  snap = applyChange(snap, { delete: [edited[0]!.ref] });
  t.is(snap.service('app/legacy.app.internal'), undefined);
  t.deepEqual(snap.toJSON(), compile([...base, ...newPod], OPTS).toJSON());
});

test('waypoint binding (egress waypoint): istio.io/use-waypoint or ambit.dev/use-waypoint on the entry, else its namespace\'s; none opts out; bound only while the Gateway exists; incremental equals full', (t) => {
  const gw = 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: egress, namespace: app}\nspec: {gatewayClassName: ambit-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\n';
  const spec = (h: string) => `  hosts: [${h}]\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]\n  resolution: STATIC\n  endpoints: [{address: 198.18.200.10}]\n`;
  const yaml =
    ns('app', { 'istio.io/use-waypoint': 'egress' }) +
    gw +
    se('own', spec('a.external.test'), '  labels: {istio.io/use-waypoint: egress}\n') +
    se('inherited', spec('b.external.test')) +
    se('opted-out', spec('c.external.test'), '  labels: {istio.io/use-waypoint: none}\n') +
    se('missing', spec('d.external.test'), '  labels: {ambit.dev/use-waypoint: nope}\n');
  const snap = compileYaml(t, yaml, OPTS);
  t.deepEqual(snap.service('app/a.external.test')?.waypoint, { namespace: 'app', name: 'egress', via: 'service-entry' });
  t.deepEqual(snap.service('app/b.external.test')?.waypoint, { namespace: 'app', name: 'egress', via: 'namespace' });
  t.is(snap.service('app/c.external.test')?.waypoint, undefined);
  t.deepEqual(snap.service('app/d.external.test')?.waypointTarget, { namespace: 'app', name: 'nope', via: 'service-entry' });
  t.is(snap.service('app/d.external.test')?.waypoint, undefined, 'no such Gateway: not bound');

  const list = parseYaml(yaml).resources;
  const gwRef = list.find((r) => r.kind === 'Gateway')!.ref;
  let inc = applyChange(compile(list, OPTS), { delete: [gwRef] });
  const withoutGw = list.filter((r) => r.kind !== 'Gateway');
  t.deepEqual(inc.toJSON(), compile(withoutGw, OPTS).toJSON(), 'Gateway deleted');
  t.is(inc.service('app/a.external.test')?.waypoint, undefined);
  const relabelled = parseYaml(ns('app')).resources;
  inc = applyChange(inc, { upsert: [...relabelled, ...parseYaml(gw).resources] });
  const expected = [...withoutGw.filter((r) => r.kind !== 'Namespace'), ...relabelled, ...parseYaml(gw).resources];
  t.deepEqual(inc.toJSON(), compile(expected, OPTS).toJSON(), 'namespace label removed, Gateway back');
  t.is(inc.service('app/b.external.test')?.waypoint, undefined);
  t.deepEqual(inc.service('app/a.external.test')?.waypoint?.name, 'egress');
});

test('incremental diagnostics: adding the ServiceEntry a VirtualService names clears its unknown host, removing it brings it back, as a full check', (t) => {
  const vs = parseYaml(`apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: api, namespace: app}\nspec:\n  hosts: [api.example.com]\n  http: [{route: [{destination: {host: api.example.com}}]}]\n---\n`).resources;
  const base = [...parseYaml(ns('app')).resources, ...vs];
  const entry = parseYaml(se('api', '  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n')).resources;
  const codesOf = (ds: readonly { code: string; message: string }[]) => ds.map((d) => `${d.code} ${d.message}`);
  let snap = compile(base, OPTS);
  t.is(snap.diagnostics().filter((d) => d.code === 'AMBIT_REF_UNKNOWN_HOST').length, 2);
  snap = applyChange(snap, { upsert: entry });
  t.deepEqual(codesOf(snap.diagnostics()), codesOf(compile([...base, ...entry], OPTS).diagnostics()));
  t.false(snap.diagnostics().some((d) => d.code === 'AMBIT_REF_UNKNOWN_HOST'));
  snap = applyChange(snap, { delete: [entry[0]!.ref] });
  t.deepEqual(codesOf(snap.diagnostics()), codesOf(compile(base, OPTS).diagnostics()));
  t.is(snap.diagnostics().filter((d) => d.code === 'AMBIT_REF_UNKNOWN_HOST').length, 2);
});

test('analyze: a workloadSelector with no ready pod, and an address another service has, are warnings on the entry; incremental equals full', (t) => {
  const svc = `apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: app}\nspec: {clusterIP: 198.18.128.9, selector: {app: db}, ports: [{name: tcp, port: 5432}]}\n---\n`;
  const entries = se('legacy', '  hosts: [legacy.app.internal]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: nothing}}\n')
    + se('clash', '  hosts: [db.example.com]\n  addresses: [198.18.128.9]\n  ports: [{number: 5432, name: tcp}]\n  resolution: STATIC\n  endpoints: [{address: 198.18.231.1}]\n')
    + se('two', '  hosts: [x.example.com, y.example.com]\n  addresses: [198.18.230.20]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 198.18.231.2}]\n');
  const found = (ds: readonly { code: string; message: string; path?: string; severity: string }[]) =>
    ds.filter((d) => d.message.startsWith('ServiceEntry')).map((d) => `${d.severity} ${d.code} ${d.path}: ${d.message}`);
  const full = found(analyzeYaml(ns('app') + svc + entries, OPTS));
  t.deepEqual(full, [
    'warning AMBIT_REF_DUPLICATE_IP spec.addresses: ServiceEntry app/clash: address 198.18.128.9 of host db.example.com is also used by Service app/db; agents send connections to it to only one of them',
    'warning AMBIT_REF_SERVICE_NO_PODS spec.workloadSelector: ServiceEntry app/legacy: workloadSelector {"app":"nothing"} selects no ready pod in namespace app, so host legacy.app.internal has no endpoint and its connections are refused',
  ], 'two hosts of one entry sharing its address are fine');
  // Incremental: the entries arrive after the rest, then a pod the selector picks.
  const base = parseYaml(ns('app') + svc).resources;
  const added = parseYaml(entries).resources;
  const newPod = parseYaml(pod('app', 'n-1', '198.19.1.9', { app: 'nothing' })).resources;
  let snap = compile(base, OPTS);
  snap.diagnostics();
  snap = applyChange(snap, { upsert: added });
  t.deepEqual(found(snap.diagnostics()), found(compile([...base, ...added], OPTS).diagnostics()));
  snap = applyChange(snap, { upsert: newPod });
  t.deepEqual(found(snap.diagnostics()), found(compile([...base, ...added, ...newPod], OPTS).diagnostics()));
  t.false(found(snap.diagnostics()).some((d) => d.includes('AMBIT_REF_SERVICE_NO_PODS')));
});
