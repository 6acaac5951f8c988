/**
 * Telemetry resources applied by the agent, over real sockets: two agents on loopback (client on
 * node-1, echo on node-2), HBONE with real TLS, and the view the control plane distributes for
 * the YAML (model compile → projection → LocalView). Each case starts fresh agents, so metrics
 * and access lines are those of the case only.
 */
import test from 'ava';
import { connect, type Server } from 'node:net';
import { OutboundProxy } from '../../../src/agent/outbound.js';
import { InboundHbone, type PodHboneServer } from '../../../src/agent/inbound.js';
import type { WorkloadView } from '../../../src/agent/mesh-state.js';
import { destinationBox, echoApp, freePort, makeIdentities, metricText, stateFromYaml, testNode, waitIdle, type TestNode } from './helpers.js';

const A = '127.0.0.3';
const CLIENT = '127.0.0.2';

function meshYaml(app: number, telemetry: string): string {
  const pod = (name: string, node: string, sa: string, ip: string, app2: string) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${app2}, version: v1 } }
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
metadata: { name: istio-system }
---
${pod('client', 'node-1', 'client', CLIENT, 'client')}
${pod('echo-a', 'node-2', 'echo', A, 'echo')}
${telemetry}`;
}

interface Mesh { n1: TestNode; n2: TestNode; app: number; send(data: string): Promise<string>; close(): Promise<void> }

let ids: Awaited<ReturnType<typeof makeIdentities>>;
test.before(async () => { ids = await makeIdentities(); });
test.after.always(async () => { await ids?.close(); });

/** Two fresh agents for `telemetry` (YAML of Telemetry objects). */
async function mesh(telemetry: string): Promise<Mesh> {
  const app = await freePort([A]);
  const hb = await freePort([A]);
  const yaml = meshYaml(app, telemetry);
  const n1 = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-1'));
  const n2 = testNode(ids.identities, hb, stateFromYaml(yaml, 'node-2'));
  const echo = await echoApp('echo-a', A, app);
  const wl = (n: TestNode, key: string) => n.ctx.state().workloads.get(key) as WorkloadView;
  const hbone: PodHboneServer = await new InboundHbone(n2.ctx).listen(wl(n2, 'shop/echo-a'), { host: A, port: hb });
  const box = destinationBox();
  box.set({ address: A, port: app });
  const out: Server = await new OutboundProxy(n1.ctx, box.lookup).listen(wl(n1, 'shop/client'), { host: CLIENT, port: 0 });
  const port = (out.address() as { port: number }).port;
  return {
    n1, n2, app,
    send: (data) => new Promise((resolve, reject) => {
      const sock = connect({ host: CLIENT, port, localAddress: CLIENT });
      sock.on('connect', () => sock.write(data));
      sock.once('data', (d) => { sock.end(); resolve(d.toString()); });
      sock.on('error', reject);
    }),
    close: async () => {
      await waitIdle(n1, n2);
      out.close(); echo.close(); await hbone.close(100);
      await n1.close(); await n2.close();
    },
  };
}

const access = (n: TestNode) => n.lines().filter((l) => l['msg'] === 'access');

function telemetry(name: string, namespace: string, spec: string): string {
  return `---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec.replace(/^/gm, '  ')}
`;
}

test.serial('without Telemetry both agents log the connection and count it', async (t) => {
  const m = await mesh('');
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  t.is(access(m.n1).length, 1);
  t.is(access(m.n2).length, 1);
  t.is((await metricText(m.n1.registry, 'istio_tcp_connections_opened_total')).length, 1);
  t.is((await metricText(m.n2.registry, 'istio_tcp_connections_opened_total')).length, 1);
});

test.serial('accessLogging disabled: true for the namespace stops both agents\' lines, not the metrics', async (t) => {
  const m = await mesh(telemetry('quiet', 'shop', 'accessLogging: [{ disabled: true }]'));
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  t.deepEqual(access(m.n1), []);
  t.deepEqual(access(m.n2), []);
  t.is((await metricText(m.n2.registry, 'istio_tcp_connections_closed_total')).length, 1, 'metrics are still counted');
});

test.serial('an access-log filter writes a line only where it holds; a mode limits an entry to one side', async (t) => {
  const m = await mesh(
    telemetry('mesh', 'istio-system', 'accessLogging: [{ filter: { expression: "destination.port == 1" } }]') +
    telemetry('server-mtls', 'shop', `selector: { matchLabels: { app: echo } }
accessLogging:
- match: { mode: SERVER }
  filter: { expression: "connection.mtls && connection.uri_san_peer_certificate.endsWith('/sa/client')" }`),
  );
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  t.deepEqual(access(m.n1), [], 'the mesh-wide filter (destination.port == 1) is false for the client\'s connection');
  t.is(access(m.n2).length, 1, 'the workload filter on the server side holds: mTLS from the client identity');
  t.like(access(m.n2)[0], { direction: 'inbound', connection_security_policy: 'mutual_tls' });
  // HTTP attributes are absent on a TCP connection: `response.code >= 400` is an evaluation error, no line.
  const n = await mesh(telemetry('errors', 'shop', 'accessLogging: [{ filter: { expression: "response.code >= 400" } }]'));
  t.teardown(() => n.close());
  t.is(await n.send('hi'), 'echo-a:hi');
  await waitIdle(n.n1, n.n2);
  t.deepEqual([...access(n.n1), ...access(n.n2)], []);
});

test.serial('a metric disabled for a workload emits no series for it; the other side and other metrics still do', async (t) => {
  const m = await mesh(telemetry('client-no-opened', 'shop', `selector: { matchLabels: { app: client } }
metrics:
- overrides:
  - match: { metric: TCP_OPENED_CONNECTIONS, mode: CLIENT }
    disabled: true
  - match: { metric: TCP_RECEIVED_BYTES }
    disabled: true`));
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  t.deepEqual(await metricText(m.n1.registry, 'istio_tcp_connections_opened_total{'), [], 'no opened series on the client\'s agent');
  t.deepEqual(await metricText(m.n1.registry, 'istio_tcp_received_bytes_total{'), []);
  t.is((await metricText(m.n1.registry, 'istio_tcp_connections_closed_total{')).length, 1, 'the closed counter is not disabled');
  t.is((await metricText(m.n1.registry, 'istio_tcp_sent_bytes_total{')).length, 1);
  t.is((await metricText(m.n2.registry, 'istio_tcp_connections_opened_total{')).length, 1, 'the echo workload is not selected');
});

test.serial('tag overrides remove a label and set another from an expression', async (t) => {
  const m = await mesh(telemetry('tags', 'istio-system', `metrics:
- overrides:
  - match: { metric: ALL_METRICS, mode: CLIENT_AND_SERVER }
    tagOverrides:
      source_version: { operation: REMOVE }
      destination_app: { value: "'renamed'" }
  - match: { metric: TCP_CLOSED_CONNECTIONS, mode: SERVER }
    tagOverrides:
      destination_version: { value: "destination.port" }`));
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  for (const n of [m.n1, m.n2]) {
    const opened = await metricText(n.registry, 'istio_tcp_connections_opened_total{');
    t.is(opened.length, 1);
    t.false(opened[0]?.includes('source_version=') ?? true, opened[0]);
    t.true(opened[0]?.includes('destination_app="renamed"'), opened[0]);
    t.true(opened[0]?.includes('source_app="client"'), 'other labels as they were');
  }
  const closed = await metricText(m.n2.registry, 'istio_tcp_connections_closed_total{');
  t.true(closed[0]?.includes(`destination_version="${m.app}"`), closed[0]);
  const clientClosed = await metricText(m.n1.registry, 'istio_tcp_connections_closed_total{');
  t.true(clientClosed[0]?.includes('destination_version="v1"'), 'the SERVER override does not touch the client side');
});

test.serial('a view that disables a metric for a workload removes the series it already had', async (t) => {
  const m = await mesh('');
  t.teardown(() => m.close());
  t.is(await m.send('hi'), 'echo-a:hi');
  await waitIdle(m.n1, m.n2);
  t.is((await metricText(m.n1.registry, 'istio_tcp_connections_opened_total{')).length, 1);
  const yaml = meshYaml(m.app, telemetry('client-off', 'shop', `selector: { matchLabels: { app: client } }
metrics: [{ overrides: [{ match: { metric: TCP_OPENED_CONNECTIONS, mode: CLIENT }, disabled: true }] }]`));
  const next = stateFromYaml(yaml, 'node-1');
  m.n1.setState(next);
  t.is(await m.n1.tracker.pruneDisabled(next), 1);
  t.deepEqual(await metricText(m.n1.registry, 'istio_tcp_connections_opened_total{'), []);
  t.is((await metricText(m.n1.registry, 'istio_tcp_connections_closed_total{')).length, 1, 'other metrics keep their series');
  t.is(await m.send('again'), 'echo-a:again');
  await waitIdle(m.n1, m.n2);
  t.deepEqual(await metricText(m.n1.registry, 'istio_tcp_connections_opened_total{'), [], 'and new connections add none');
  const server = stateFromYaml(yaml, 'node-2');
  t.is(await m.n2.tracker.pruneDisabled(server), 0, 'the server side is not selected');
});
