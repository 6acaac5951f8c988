/**
 * The agent's data path on loopback, with real sockets, real TLS and a real CA, and the view the
 * control plane would distribute for the YAML below: outbound resolution (pod address, VIP round
 * robin, retry on a dead endpoint, passthrough, no route), HBONE inbound with L4 authorization,
 * in-process delivery to a pod of the same node, plaintext inbound under STRICT and PERMISSIVE,
 * Istio metrics and access-log lines. Capture is not involved: the original destination is
 * supplied by the test, as Capture.originalDestination would.
 */
import test from 'ava';
import { connect, type Server } from 'node:net';
import { OutboundProxy } from '../../../src/agent/outbound.js';
import { InboundHbone, type PodHboneServer } from '../../../src/agent/inbound.js';
import { InboundPlaintext } from '../../../src/agent/inbound-plaintext.js';
import type { WorkloadView } from '../../../src/agent/mesh-state.js';
import { destinationBox, echoApp, freePort, makeIdentities, metricText, roundTrip, stateFromYaml, testNode, waitIdle, type TestNode } from './helpers.js';

const A = '127.0.0.3';
const B = '127.0.0.4';
const DEAD = '127.0.0.8';
const CLIENT = '127.0.0.2';
const CLIENT2 = '127.0.0.6';
const LOCAL = '127.0.0.7';
const OUTSIDE = '127.0.0.5';
const VIP = '198.18.128.1';

function meshYaml(app: number, extra = ''): string {
  const pod = (name: string, node: string, sa: string, ip: string, ns = 'shop', app2 = 'echo') => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${app2} } }
spec: { nodeName: ${node}, serviceAccountName: ${sa}, containers: [{ name: c, image: x, ports: [{ containerPort: ${app} }] }] }
status: { phase: Running, podIP: ${ip} }
---`;
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
kind: Namespace
metadata: { name: shop, labels: { ambit.dev/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
${pod('client', 'node-1', 'client', CLIENT, 'shop', 'client')}
${pod('client2', 'node-1', 'other', CLIENT2, 'shop', 'client2')}
${pod('local', 'node-1', 'echo', LOCAL, 'shop', 'local')}
${pod('echo-a', 'node-2', 'echo', A)}
${pod('echo-b', 'node-2', 'echo', B)}
${pod('echo-c', 'node-2', 'echo', DEAD)}
${pod('outside', 'node-2', 'default', OUTSIDE, 'legacy', 'outside')}
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: shop }
spec: { clusterIP: ${VIP}, selector: { app: echo }, ports: [{ name: tcp, port: 80, targetPort: ${app} }] }
${extra}`;
}

const DENY_CLIENT = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }] }]
`;
const STRICT = `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
`;

interface Ctx {
  app: number;
  hb: number;
  n1: TestNode;
  n2: TestNode;
  out: number;
  out2: number;
  plain: number;
  box: ReturnType<typeof destinationBox>;
  plainBox: ReturnType<typeof destinationBox>;
  closers: (() => unknown)[];
}

let c: Ctx;

test.before(async () => {
  const closers: (() => unknown)[] = [];
  const ids = await makeIdentities();
  closers.push(() => ids.close());
  const app = await freePort([A, B, LOCAL, OUTSIDE]);
  const hb = await freePort([A, B, DEAD]);
  const yaml = meshYaml(app);
  const n1 = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-1'));
  const n2 = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-2'));
  closers.push(() => n1.close(), () => n2.close());
  const servers: Server[] = [];
  for (const [name, ip] of [['echo-a', A], ['echo-b', B], ['local', LOCAL], ['outside', OUTSIDE]] as const) servers.push(await echoApp(name, ip, app));
  const wl = (n: TestNode, key: string) => n.ctx.state().workloads.get(key) as WorkloadView;
  const inbound = new InboundHbone(n2.ctx);
  const hbones: PodHboneServer[] = [];
  hbones.push(await inbound.listen(wl(n2, 'shop/echo-a'), { host: A, port: hb }));
  hbones.push(await inbound.listen(wl(n2, 'shop/echo-b'), { host: B, port: hb }));
  const box = destinationBox();
  const outbound = new OutboundProxy(n1.ctx, box.lookup);
  const o1 = await outbound.listen(wl(n1, 'shop/client'), { host: CLIENT, port: 0 });
  const o2 = await outbound.listen(wl(n1, 'shop/client2'), { host: CLIENT2, port: 0 });
  const plainBox = destinationBox();
  const p = await new InboundPlaintext(n2.ctx, plainBox.lookup).listen(wl(n2, 'shop/echo-a'), { host: A, port: 0 });
  servers.push(o1, o2, p);
  closers.push(() => { for (const s of servers) s.close(); for (const h of hbones) void h.close(100); });
  const port = (s: Server) => (s.address() as { port: number }).port;
  c = { app, hb, n1, n2, out: port(o1), out2: port(o2), plain: port(p), box, plainBox, closers };
});

test.after.always(async () => {
  for (const f of (c?.closers ?? []).reverse()) await f();
});

/** One request/reply from CLIENT, with the port the client's socket was bound to (the peer port Istio's src_addr names). */
function roundTripFromClient(port: number, data: string): Promise<{ reply: string; clientPort: number }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: CLIENT, port, localAddress: CLIENT });
    let clientPort = 0;
    sock.on('connect', () => { clientPort = sock.localPort ?? 0; sock.write(data); });
    sock.once('data', (d) => { sock.end(); resolve({ reply: d.toString(), clientPort }); });
    sock.on('error', reject);
  });
}

test.serial('a pod address in the mesh is reached by HBONE under both identities; metrics say mutual_tls', async (t) => {
  c.box.set({ address: A, port: c.app });
  const { reply, clientPort } = await roundTripFromClient(c.out, 'hi');
  t.is(reply, 'echo-a:hi');
  await waitIdle(c.n1, c.n2);
  const dst = await metricText(c.n2.registry, 'istio_tcp_connections_opened_total');
  t.true(dst.some((l) => l.includes('reporter="destination"') && l.includes('connection_security_policy="mutual_tls"') && l.includes('source_principal="spiffe://cluster.local/ns/shop/sa/client"') && l.includes('destination_workload="echo"') && l.includes('destination_service="echo.shop.svc.cluster.local"')), dst.join('\n'));
  // Istio's (ztunnel's) full TCP label set, each value derived from the workloads and service.
  t.true(dst.some((l) => ['source_app="client"', 'source_canonical_service="client"', 'source_cluster="Kubernetes"', 'destination_app="echo"', 'destination_version="unknown"',
    'destination_canonical_revision="latest"', 'destination_service_name="echo"', 'destination_service_namespace="shop"', 'request_protocol="tcp"'].every((x) => l.includes(x))), dst.join('\n'));
  // Istio's direction: received = during the request ('hi', 2 bytes), sent = during the response.
  const src = await metricText(c.n1.registry, 'istio_tcp_received_bytes_total');
  t.true(src.some((l) => l.includes('reporter="source"') && l.includes('source_workload="client"') && /\} 2$/.test(l)), src.join('\n'));
  const access = c.n2.lines().filter((l) => l['msg'] === 'access');
  t.like(access.at(-1), { direction: 'inbound', src_addr: `${CLIENT}:${clientPort}`, connection_security_policy: 'mutual_tls', response_flags: '-', bytes_sent: 2, bytes_received: 9 });
});

/** Sum of `name` over the series of `registry` with `reporter`. */
async function total(registry: TestNode['registry'], name: string, reporter: string): Promise<number> {
  return (await metricText(registry, name)).filter((l) => l.includes(`reporter="${reporter}"`)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

test.serial('a long-lived connection\'s bytes show at each scrape while it is open, and its close does not count them again', async (t) => {
  c.box.set({ address: A, port: c.app });
  const before = { src: await total(c.n1.registry, 'istio_tcp_received_bytes_total', 'source'), dst: await total(c.n2.registry, 'istio_tcp_sent_bytes_total', 'destination') };
  const sock = connect({ host: CLIENT, port: c.out, localAddress: CLIENT });
  t.teardown(() => sock.destroy());
  const reply = await new Promise<string>((resolve, reject) => {
    sock.on('connect', () => sock.write('hold'));
    sock.once('data', (d) => resolve(d.toString()));
    sock.on('error', reject);
  });
  t.is(reply, 'echo-a:hold');
  t.true(c.n1.tracker.size > 0 && c.n2.tracker.size > 0, 'the connection is still open on both agents');
  t.is(await total(c.n1.registry, 'istio_tcp_received_bytes_total', 'source') - before.src, 4, 'client to server bytes (received during the request), reported by the source while open');
  t.is(await total(c.n2.registry, 'istio_tcp_sent_bytes_total', 'destination') - before.dst, reply.length, 'server to client bytes (sent during the response), reported by the destination while open');
  sock.end();
  await waitIdle(c.n1, c.n2);
  t.is(await total(c.n1.registry, 'istio_tcp_received_bytes_total', 'source') - before.src, 4, 'the close adds nothing already reported');
  t.is(await total(c.n2.registry, 'istio_tcp_sent_bytes_total', 'destination') - before.dst, reply.length);
});

test.serial('a service VIP is spread round robin, and a dead endpoint is skipped by retrying another', async (t) => {
  c.box.set({ address: VIP, port: 80 });
  const replies: string[] = [];
  for (let i = 0; i < 6; i++) replies.push(await roundTrip(CLIENT, c.out, 'x'));
  t.deepEqual(replies.filter((r) => r !== 'echo-a:x' && r !== 'echo-b:x'), [], 'every connection reached an echo replica (the dead one was retried)');
  t.true(replies.includes('echo-a:x') && replies.includes('echo-b:x'), replies.join(','));
  await waitIdle(c.n1, c.n2);
  const flags = await metricText(c.n1.registry, 'istio_tcp_connections_closed_total');
  t.false(flags.some((l) => l.includes('destination_service="echo.shop.svc.cluster.local"') && !l.includes('response_flags="-"')), 'retried connections are not failures');
});

test.serial('outside the mesh is plain passthrough; an unserved VIP port has no route', async (t) => {
  c.box.set({ address: OUTSIDE, port: c.app });
  t.is(await roundTrip(CLIENT, c.out, 'p'), 'outside:p');
  c.box.set({ address: VIP, port: 81 });
  t.true(['ECONNRESET', 'CLOSED'].includes(await roundTrip(CLIENT, c.out, 'p')));
  await waitIdle(c.n1);
  const opened = await metricText(c.n1.registry, 'istio_tcp_connections_closed_total');
  t.true(opened.some((l) => l.includes('destination_workload="outside"') && l.includes('connection_security_policy="none"')));
  t.true(opened.some((l) => l.includes('response_flags="NR"')));
});

test.serial('a pod of the same node is authorized and delivered in-process', async (t) => {
  c.box.set({ address: LOCAL, port: c.app });
  t.is(await roundTrip(CLIENT, c.out, 'l'), 'local:l');
  await waitIdle(c.n1);
  const lines = await metricText(c.n1.registry, 'istio_tcp_connections_closed_total');
  t.true(lines.some((l) => l.includes('reporter="destination"') && l.includes('destination_workload="local"') && l.includes('mutual_tls')));
  t.true(lines.some((l) => l.includes('reporter="source"') && l.includes('destination_workload="local"') && l.includes('mutual_tls')));
});

test.serial('a DENY policy for one service account stops exactly that client, naming the policy', async (t) => {
  c.n2.setState(stateFromYaml(meshYaml(c.app, DENY_CLIENT), 'node-2'));
  c.n1.setState(stateFromYaml(meshYaml(c.app, DENY_CLIENT), 'node-1'));
  c.box.set({ address: A, port: c.app });
  t.not(await roundTrip(CLIENT, c.out, 'd'), 'echo-a:d');
  t.is(await roundTrip(CLIENT2, c.out2, 'd'), 'echo-a:d');
  c.box.set({ address: LOCAL, port: c.app });
  t.not(await roundTrip(CLIENT, c.out, 'd'), 'local:d', 'the in-process path enforces the same policy');
  await waitIdle(c.n1, c.n2);
  const denied = c.n2.lines().find((l) => l['msg'] === 'inbound HBONE connection denied');
  t.like(denied, { policy: 'shop/deny-client', peer: 'spiffe://cluster.local/ns/shop/sa/client' });
  t.true((await metricText(c.n2.registry, 'ambit_agent_denials_total')).some((l) => l.includes('policy="shop/deny-client"') && l.endsWith(' 1')));
  t.true((await metricText(c.n1.registry, 'istio_tcp_connections_closed_total')).some((l) => l.includes('reporter="source"') && l.includes('response_flags="DENY"')));
  c.n2.setState(stateFromYaml(meshYaml(c.app), 'node-2'));
  c.n1.setState(stateFromYaml(meshYaml(c.app), 'node-1'));
});

test.serial('plaintext inbound: PERMISSIVE admits it, STRICT refuses it naming the PeerAuthentication', async (t) => {
  c.plainBox.set({ address: A, port: c.app });
  t.is(await roundTrip(A, c.plain, 'q', 5000, OUTSIDE), 'echo-a:q');
  c.n2.setState(stateFromYaml(meshYaml(c.app, STRICT), 'node-2'));
  t.true(['ECONNRESET', 'CLOSED'].includes(await roundTrip(A, c.plain, 'q', 5000, OUTSIDE)));
  await waitIdle(c.n2);
  t.like(c.n2.lines().find((l) => l['msg'] === 'inbound plaintext connection denied'), { policy: 'shop/strict', pod: 'shop/echo-a' });
  t.true((await metricText(c.n2.registry, 'ambit_agent_denials_total')).some((l) => l.includes('reason="strict_mtls"')));
  c.box.set({ address: A, port: c.app });
  t.is(await roundTrip(CLIENT, c.out, 'm'), 'echo-a:m', 'HBONE still passes under STRICT');
  c.n2.setState(stateFromYaml(meshYaml(c.app), 'node-2'));
});
