/**
 * outboundTrafficPolicy and ServiceEntry on the agent's outbound path, over real sockets on
 * loopback, with the view the control plane would push (model → projection → LocalView, plus the
 * MESH_CONFIG resource): under REGISTRY_ONLY a destination outside the registry is reset, logged
 * with its reason, counted, and labelled BlackHoleCluster, while ServiceEntry destinations (a
 * STATIC VIP, a NONE address, a DNS endpoint resolved at connect time) pass; under ALLOW_ANY (and
 * with no MESH_CONFIG at all, as from an older control plane) everything passes. Capture is not
 * involved: the test supplies the original destination, as Capture.originalDestination would.
 * The agent's DNS proxy, with the name table it builds from the same view, answers ServiceEntry
 * hosts with their VIPs over real UDP. A MESH_INTERNAL entry whose workloadSelector picks a pod of
 * another node is reached by HBONE and authorized by that node's agent, like any service.
 */
import test from 'ava';
import type { Server } from 'node:net';
import { OutboundProxy } from '../../../src/agent/outbound.js';
import { InboundHbone, type PodHboneServer } from '../../../src/agent/inbound.js';
import type { WorkloadView } from '../../../src/agent/mesh-state.js';
import { DnsNameTable } from '../../../src/agent/dns-names.js';
import { DnsProxy } from '../../../src/agent/dns-proxy.js';
import { createDnsMetrics } from '../../../src/agent/dns-metrics.js';
import dgram from 'node:dgram';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { destinationBox, echoApp, freePort, makeIdentities, metricText, roundTrip, stateFromYaml, testNode, waitIdle, type TestNode } from './helpers.js';

const CLIENT = '127.0.0.2';
const STATIC_EP = '127.0.0.9';
const NONE_ADDR = '127.0.0.10';
const UNREGISTERED = '127.0.0.11';
const DNS_EP = '127.0.0.1'; // what "localhost" resolves to
const LEGACY = '127.0.0.12';
const SE_VIP = '198.18.129.1';
const INTERNAL_VIP = '198.18.129.2';
const RANGE = '198.18.224.0/20';

function yaml(app: number, extra = ''): string {
  return `
apiVersion: v1
kind: Node
metadata: { name: node-1 }
---
apiVersion: v1
kind: Node
metadata: { name: node-2 }
---
apiVersion: v1
kind: Pod
metadata: { name: legacy, namespace: shop, labels: { app: legacy } }
spec: { nodeName: node-2, serviceAccountName: legacy, containers: [{ name: c, image: x }] }
status: { phase: Running, podIP: ${LEGACY} }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: legacy, namespace: shop }
spec:
  hosts: [legacy.shop.internal]
  addresses: [${INTERNAL_VIP}]
  ports: [{ number: 80, name: http, protocol: HTTP, targetPort: ${app} }]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: { labels: { app: legacy } }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { ambit.dev/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec: { nodeName: node-1, serviceAccountName: client, containers: [{ name: c, image: x }] }
status: { phase: Running, podIP: ${CLIENT} }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: payments, namespace: shop }
spec:
  hosts: [api.payments.example.com]
  addresses: [${SE_VIP}]
  ports: [{ number: 443, name: tls, protocol: TLS, targetPort: ${app} }]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{ address: ${STATIC_EP} }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: legacy-db, namespace: shop }
spec:
  hosts: [db.legacy.example.com]
  addresses: [${NONE_ADDR}/32]
  ports: [{ number: ${app}, name: tcp, protocol: TCP }]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: by-name, namespace: shop }
spec:
  hosts: [mirror.example.com]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: DNS
  endpoints: [{ address: localhost, ports: { http: ${app} } }]
${extra}`;
}

const DENY_CLIENT = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: shop }
spec:
  selector: { matchLabels: { app: legacy } }
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }] }]
`;

interface Ctx {
  app: number;
  node: TestNode;
  node2: TestNode;
  out: number;
  box: ReturnType<typeof destinationBox>;
  mesh: string;
  closers: (() => unknown)[];
}

let c: Ctx;

test.before(async () => {
  const closers: (() => unknown)[] = [];
  const ids = await makeIdentities();
  closers.push(() => ids.close());
  const app = await freePort([STATIC_EP, NONE_ADDR, UNREGISTERED, DNS_EP, LEGACY]);
  const hb = await freePort([LEGACY]);
  const mesh = yaml(app);
  const node = testNode(ids.identities, hb, stateFromYaml(mesh, 'node-1', { compile: { serviceEntryVipRange: RANGE } }));
  const node2 = testNode(ids.identities, hb, stateFromYaml(mesh, 'node-2', { compile: { serviceEntryVipRange: RANGE } }));
  closers.push(() => node.close(), () => node2.close());
  const servers: Server[] = [];
  for (const [name, ip] of [['static', STATIC_EP], ['none', NONE_ADDR], ['unregistered', UNREGISTERED], ['dns', DNS_EP], ['legacy', LEGACY]] as const) servers.push(await echoApp(name, ip, app));
  const hbones: PodHboneServer[] = [await new InboundHbone(node2.ctx).listen(node2.ctx.state().workloads.get('shop/legacy') as WorkloadView, { host: LEGACY, port: hb })];
  closers.push(() => { for (const h of hbones) void h.close(100); });
  const box = destinationBox();
  const client = node.ctx.state().workloads.get('shop/client') as WorkloadView;
  const out = await new OutboundProxy(node.ctx, box.lookup).listen(client, { host: CLIENT, port: 0 });
  servers.push(out);
  closers.push(() => { for (const s of servers) s.close(); });
  c = { app, node, node2, out: (out.address() as { port: number }).port, box, mesh, closers };
});

test.after.always(async () => {
  for (const f of (c?.closers ?? []).reverse()) await f();
});

function setMode(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY' | undefined, extra = ''): void {
  const opts = { compile: { serviceEntryVipRange: RANGE }, ...(mode !== undefined ? { mesh: { outboundTrafficPolicy: { mode } } } : {}) };
  const mesh = extra === '' ? c.mesh : yaml(c.app, extra);
  c.node.setState(stateFromYaml(mesh, 'node-1', opts));
  c.node2.setState(stateFromYaml(mesh, 'node-2', opts));
}

async function dial(address: string, port: number): Promise<string> {
  c.box.set({ address, port });
  const r = await roundTrip(CLIENT, c.out, 'hi');
  await waitIdle(c.node, c.node2);
  return r;
}

test.serial('ALLOW_ANY (and no MESH_CONFIG at all): unregistered and ServiceEntry destinations all pass', async (t) => {
  for (const mode of [undefined, 'ALLOW_ANY'] as const) {
    setMode(mode);
    t.is(c.node.ctx.state().outboundTrafficPolicy, 'ALLOW_ANY');
    t.is(await dial(UNREGISTERED, c.app), 'unregistered:hi', `${mode ?? 'no MESH_CONFIG'}: passthrough`);
    t.is(await dial(SE_VIP, 443), 'static:hi', 'the STATIC entry VIP goes to its endpoint on the targetPort');
    t.is(await dial(NONE_ADDR, c.app), 'none:hi', 'resolution NONE goes to the address dialed');
    t.is(await dial(NONE_ADDR, c.app + 1 === 65536 ? 1 : c.app + 1), 'ECONNRESET', 'nothing listens there: the passthrough fails');
  }
});

test.serial('REGISTRY_ONLY: an unregistered destination is reset, logged with its reason, counted, labelled BlackHoleCluster', async (t) => {
  setMode('REGISTRY_ONLY');
  t.is(c.node.ctx.state().outboundTrafficPolicy, 'REGISTRY_ONLY');
  const before = c.node.lines().length;
  t.is(await dial(UNREGISTERED, c.app), 'ECONNRESET');
  const lines = c.node.lines().slice(before);
  const access = lines.find((l) => l['response_flags'] === 'NR');
  t.truthy(access, JSON.stringify(lines));
  t.regex(String(access?.['reason']), /^127\.0\.0\.11:\d+ is outside the mesh registry \(no service, pod or ServiceEntry has this address\) and outboundTrafficPolicy is REGISTRY_ONLY \(BlackHoleCluster\)/);
  t.true(lines.some((l) => /destination outside the mesh registry \(REGISTRY_ONLY\)/.test(String(l['msg']))), 'an agent log line says why');
  t.true((await metricText(c.node.registry, 'ambit_agent_denials_total')).some((l) => l.includes('reason="outbound_traffic_policy"') && l.includes('policy="REGISTRY_ONLY"') && l.endsWith(' 1')));
  t.true((await metricText(c.node.registry, 'istio_tcp_connections_closed_total')).some((l) => l.includes('destination_service="BlackHoleCluster"') && l.includes('response_flags="NR"')));
});

test.serial('REGISTRY_ONLY: ServiceEntry destinations pass (STATIC VIP, NONE address in a CIDR, DNS name resolved at connect time) with destination_service = the host', async (t) => {
  setMode('REGISTRY_ONLY');
  t.is(await dial(SE_VIP, 443), 'static:hi');
  t.is(await dial(NONE_ADDR, c.app), 'none:hi');
  t.is(await dial(c.node.ctx.state().services.get('shop/mirror.example.com')?.vip ?? '', 80), 'dns:hi', 'the auto-allocated VIP of a DNS entry reaches what its endpoint name resolves to');
  const closed = await metricText(c.node.registry, 'istio_tcp_connections_closed_total');
  for (const host of ['api.payments.example.com', 'db.legacy.example.com', 'mirror.example.com']) {
    t.true(closed.some((l) => l.includes(`destination_service="${host}"`) && l.includes('response_flags="-"')), host);
  }
  // A port the entry does not declare is outside the registry.
  t.is(await dial(SE_VIP, 444), 'ECONNRESET');
  t.true(c.node.lines().some((l) => l['response_flags'] === 'NR' && /ServiceEntry host api\.payments\.example\.com does not declare port 444/.test(String(l['reason']))));
});

test.serial('the auto-allocated VIP comes from the configured range, and the DNS name table answers ServiceEntry hosts with it', (t) => {
  setMode(undefined);
  const state = c.node.ctx.state();
  const vip = state.services.get('shop/mirror.example.com')?.vip ?? '';
  t.regex(vip, /^198\.18\.2(2[4-9]|3\d)\.\d+$/);
  t.is(state.serviceByAddress(vip)?.hostname, 'mirror.example.com');
  const table = DnsNameTable.fromServices(state.services.values());
  t.deepEqual(table.lookup('mirror.example.com.')?.ipv4, [vip]);
  t.deepEqual(table.lookup('API.payments.example.com')?.ipv4, [SE_VIP]);
  t.is(table.lookup('db.legacy.example.com'), undefined, 'an entry with only a CIDR block has no address to answer');
});

test.serial('the DNS proxy answers an A query for a ServiceEntry host with its VIP, and the client reaches it under REGISTRY_ONLY', async (t) => {
  setMode('REGISTRY_ONLY');
  const state = c.node.ctx.state();
  const proxy = new DnsProxy({ table: DnsNameTable.fromServices(state.services.values()), metrics: createDnsMetrics(new Registry()), forwardTimeoutMs: 300 });
  const server = dgram.createSocket('udp4');
  const client = dgram.createSocket('udp4');
  t.teardown(() => { proxy.close(); server.close(); client.close(); });
  server.bind(0, '127.0.0.1');
  client.bind(0, '127.0.0.1');
  await Promise.all([once(server, 'listening'), once(client, 'listening')]);
  proxy.serve(server, { id: 'shop/client', namespace: 'shop', upstream: () => null });
  let id = 1;
  const ask = (name: string) => new Promise<{ rcode: string; answers: { type: string; data: unknown }[] }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply for ${name}`)), 2000);
    client.once('message', (msg) => { clearTimeout(timer); const p = dnsPacket.decode(msg) as unknown as { rcode: string; answers?: { type: string; data: unknown }[] }; resolve({ rcode: p.rcode, answers: p.answers ?? [] }); });
    client.send(dnsPacket.encode({ type: 'query', id: id++, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name, class: 'IN' }] }), (server.address() as AddressInfo).port, '127.0.0.1');
  });
  const vip = state.services.get('shop/mirror.example.com')?.vip;
  const mirror = await ask('mirror.example.com');
  t.is(mirror.rcode, 'NOERROR');
  t.deepEqual(mirror.answers.map((a) => [a.type, a.data]), [['A', vip]]);
  t.deepEqual((await ask('api.payments.example.com')).answers.map((a) => a.data), [SE_VIP]);
  // Without an upstream the proxy cannot forward: a name the table does not hold gets SERVFAIL.
  t.is((await ask('mirror')).rcode, 'SERVFAIL', 'only the exact entry host is answered');
  // And the answered VIP is what the client then dials under REGISTRY_ONLY.
  t.is(await dial(vip ?? '', 80), 'dns:hi');
});

test.serial('MESH_INTERNAL with workloadSelector: the selected pod of another node is reached by HBONE and authorized there like any service', async (t) => {
  setMode('REGISTRY_ONLY');
  t.is(await dial(INTERNAL_VIP, 80), 'legacy:hi');
  const src = await metricText(c.node.registry, 'istio_tcp_connections_closed_total');
  t.true(src.some((l) => l.includes('destination_service="legacy.shop.internal"') && l.includes('connection_security_policy="mutual_tls"') && l.includes('destination_workload="legacy"')), src.join('\n'));
  const dst = await metricText(c.node2.registry, 'istio_tcp_connections_closed_total');
  t.true(dst.some((l) => l.includes('reporter="destination"') && l.includes('destination_service="legacy.shop.internal"') && l.includes('source_principal="spiffe://cluster.local/ns/shop/sa/client"')), dst.join('\n'));
  // A DENY AuthorizationPolicy on the selected pod is enforced by its node's agent.
  setMode('REGISTRY_ONLY', DENY_CLIENT);
  t.is(await dial(INTERNAL_VIP, 80), 'ECONNRESET');
  t.true((await metricText(c.node2.registry, 'ambit_agent_denials_total')).some((l) => l.includes('reason="authorization"') && l.includes('policy="shop/deny-client"')));
  setMode('REGISTRY_ONLY');
});
