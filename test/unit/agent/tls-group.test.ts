/**
 * The negotiated TLS key-exchange group as an operator sees it on an agent: in `/connections`
 * (the real admin server) while a connection is open, in its access-log line when it closes, and
 * in `ambit_tls_handshakes_total`, between two agents' proxies over loopback with real TLS. One
 * source node offers ambit's default groups, the other is classical-only (X25519), so the
 * destination agent sees both.
 */
import test from 'ava';
import { connect, type Server, type Socket } from 'node:net';
import { OutboundProxy } from '../../../src/agent/outbound.js';
import { InboundHbone, type PodHboneServer } from '../../../src/agent/inbound.js';
import { adminServer, closeHttp, listenHttp } from '../../../src/agent/admin.js';
import type { ConnectionRecord } from '../../../src/agent/connections.js';
import type { WorkloadView } from '../../../src/agent/mesh-state.js';
import { destinationBox, echoApp, freePort, makeIdentities, metricText, stateFromYaml, testNode, waitIdle, type TestNode } from './helpers.js';

const A = '127.0.0.3';
const CLIENT = '127.0.0.2';
const CLIENT2 = '127.0.0.6';

function meshYaml(app: number): string {
  const pod = (name: string, node: string, sa: string, ip: string, label: string) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${label} } }
spec: { nodeName: ${node}, serviceAccountName: ${sa}, containers: [{ name: c, image: x, ports: [{ containerPort: ${app} }] }] }
status: { phase: Running, podIP: ${ip} }
`;
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
kind: Node
metadata: { name: node-3 }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { ambit.dev/dataplane-mode: ambient } }
${pod('client', 'node-1', 'client', CLIENT, 'client')}${pod('legacy-client', 'node-3', 'legacy', CLIENT2, 'legacy')}${pod('echo-a', 'node-2', 'echo', A, 'echo')}`;
}

interface Ctx { app: number; pq: TestNode; classical: TestNode; dst: TestNode; outPq: number; outClassical: number; admin: Record<string, number>; box: ReturnType<typeof destinationBox>; closers: (() => unknown)[] }
let c: Ctx;

test.before(async () => {
  const closers: (() => unknown)[] = [];
  const ids = await makeIdentities();
  closers.push(() => ids.close());
  const app = await freePort([A]);
  const hb = await freePort([A]);
  const yaml = meshYaml(app);
  const pq = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-1'), { metrics: true });
  const classical = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-3'), { metrics: true, tlsGroups: ['X25519'] });
  const dst = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-2'));
  closers.push(() => pq.close(), () => classical.close(), () => dst.close());
  const wl = (n: TestNode, key: string) => n.ctx.state().workloads.get(key) as WorkloadView;
  const servers: Server[] = [await echoApp('echo-a', A, app)];
  const hbone: PodHboneServer = await new InboundHbone(dst.ctx, dst.registry).listen(wl(dst, 'shop/echo-a'), { host: A, port: hb });
  const box = destinationBox();
  const o1 = await new OutboundProxy(pq.ctx, box.lookup).listen(wl(pq, 'shop/client'), { host: CLIENT, port: 0 });
  const o2 = await new OutboundProxy(classical.ctx, box.lookup).listen(wl(classical, 'shop/legacy-client'), { host: CLIENT2, port: 0 });
  servers.push(o1, o2);
  const admin: Record<string, number> = {};
  for (const [name, n] of [['pq', pq], ['classical', classical], ['dst', dst]] as const) {
    const s = adminServer({ registry: n.registry, configDump: () => ({}), certs: () => ({}), connections: () => n.tracker.list(), ready: () => ({ ready: true, reason: 'ready' }) });
    admin[name] = await listenHttp(s, 0, '127.0.0.1');
    closers.push(() => closeHttp(s));
  }
  closers.push(async () => { for (const s of servers) s.close(); await hbone.close(100); });
  const port = (s: Server) => (s.address() as { port: number }).port;
  c = { app, pq, classical, dst, outPq: port(o1), outClassical: port(o2), admin, box, closers };
});

test.after.always(async () => {
  for (const f of (c?.closers ?? []).reverse()) await f();
});

async function connections(node: string): Promise<ConnectionRecord[]> {
  const res = await fetch(`http://127.0.0.1:${c.admin[node]}/connections`);
  return (await res.json()) as ConnectionRecord[];
}

/** Opens a connection through `client`'s outbound listener and waits for the echo. */
async function held(client: string, port: number): Promise<Socket> {
  const sock = connect({ host: client, port });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', () => sock.write('hi'));
    sock.once('data', () => resolve());
  });
  return sock;
}

test.serial('two agents: X25519MLKEM768 in /connections on both ends, then in both access-log lines and the handshake counters', async (t) => {
  c.box.set({ address: A, port: c.app });
  const sock = await held(CLIENT, c.outPq);
  const out = (await connections('pq')).find((r) => r.direction === 'outbound');
  const inb = (await connections('dst')).find((r) => r.direction === 'inbound' && r.source.address === CLIENT);
  t.is(out?.protocol, 'hbone');
  t.is(out?.tlsGroup, 'X25519MLKEM768');
  t.is(inb?.tlsGroup, 'X25519MLKEM768');
  sock.end();
  await waitIdle(c.pq, c.dst);
  t.is(c.pq.lines().find((l) => l['msg'] === 'access')?.['tls_group'], 'X25519MLKEM768');
  t.is(c.dst.lines().find((l) => l['msg'] === 'access' && l['src_addr'] === `${CLIENT}:${out?.source.port}`)?.['tls_group'], 'X25519MLKEM768');
  t.deepEqual(await metricText(c.pq.registry, 'ambit_tls_handshakes_total{'), ['ambit_tls_handshakes_total{group="X25519MLKEM768",role="client"} 1']);
  t.true((await metricText(c.dst.registry, 'ambit_tls_handshakes_total{')).includes('ambit_tls_handshakes_total{group="X25519MLKEM768",role="server"} 1'));
});

test.serial('a classical-only source agent still connects; both ends report X25519', async (t) => {
  c.box.set({ address: A, port: c.app });
  const sock = await held(CLIENT2, c.outClassical);
  t.is((await connections('classical')).find((r) => r.direction === 'outbound')?.tlsGroup, 'X25519');
  t.is((await connections('dst')).find((r) => r.direction === 'inbound' && r.source.address === CLIENT2)?.tlsGroup, 'X25519');
  sock.end();
  await waitIdle(c.classical, c.dst);
  t.is(c.classical.lines().find((l) => l['msg'] === 'access')?.['tls_group'], 'X25519');
  t.deepEqual(await metricText(c.classical.registry, 'ambit_tls_handshakes_total{'), ['ambit_tls_handshakes_total{group="X25519",role="client"} 1']);
  t.true((await metricText(c.dst.registry, 'ambit_tls_handshakes_total{')).includes('ambit_tls_handshakes_total{group="X25519",role="server"} 1'));
});

test.serial('a connection without TLS (passthrough) reports no group', async (t) => {
  const outside = await echoApp('outside', '127.0.0.5', c.app);
  t.teardown(() => { outside.close(); });
  c.box.set({ address: '127.0.0.5', port: c.app });
  const sock = await held(CLIENT, c.outPq);
  const rec = (await connections('pq')).find((r) => r.direction === 'outbound');
  t.is(rec?.protocol, 'passthrough');
  t.false(rec !== undefined && 'tlsGroup' in rec, '/connections omits the field (undefined) for a plaintext connection');
  sock.end();
  await waitIdle(c.pq);
  t.is(c.pq.lines().filter((l) => l['msg'] === 'access').at(-1)?.['tls_group'], undefined);
});
