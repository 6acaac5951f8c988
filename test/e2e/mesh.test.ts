/**
 * The mesh end to end, in a two-node cluster of network namespaces running the real
 * control plane, two agents and the demo apps: plaintext before labelling; HBONE (no plaintext on
 * the wire, `mutual_tls` in the metrics) after; connections opened before a label change keep
 * working across it; unlabelling releases the pods; VIP load balancing across both nodes; a DENY
 * policy for one service account stops exactly that client and the log names the policy;
 * STRICT refuses the pod outside the mesh and PERMISSIVE admits it.
 */
import test, { type ExecutionContext } from 'ava';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { ECHO_VIP, TCP_ECHO_VIP, REPO_ROOT } from '../../src/demo/mesh.js';
import { NEEDS, startMesh, curl, servedBy, HeldConnection, captureFabric } from './helpers.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
const held: HeldConnection[] = [];
const MESH_PODS = ['client', 'echo-1', 'echo-2', 'tcp-echo'];

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: false });
    mesh = m.mesh;
    cleanup = m.cleanup;
  });
  test.after.always(async () => {
    for (const h of held) h.stop();
    await cleanup?.();
  });
}

const marker = () => `AMBIT-MARKER-${Math.random().toString(36).slice(2)}`;

privilegedTest('plaintext before labelling, HBONE after: no marker on the wire, mutual_tls in the metrics, old connections survive', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const tcpEcho = mesh.cluster.pod('tcp-echo').ip;
  // Before: plaintext, the marker crosses the link between the nodes in clear.
  let cap = await captureFabric(mesh);
  let m = marker();
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`, m)), 'echo-2');
  t.true((await cap.stop()).includes(m), 'before labelling the payload is visible on the wire');
  const before = new HeldConnection(mesh, 'client', `${tcpEcho}:9000`);
  held.push(before);
  await before.more(3);

  mesh.setAmbient(true);
  await mesh.waitCaptured(MESH_PODS, true);
  await before.more(5);

  cap = await captureFabric(mesh);
  m = marker();
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`, m)), 'echo-2');
  const wire = await cap.stop();
  t.false(wire.includes(m), 'after labelling the payload is not visible on the wire');
  t.true(wire.includes('15008'), 'traffic went to the HBONE port');
  const metrics = await mesh.agentMetrics('node-2');
  t.true(metrics.split('\n').some((l) => l.startsWith('istio_tcp_connections_opened_total') && l.includes('reporter="destination"') && l.includes('source_principal="spiffe://cluster.local/ns/demo/sa/client"') && l.includes('connection_security_policy="mutual_tls"')), 'destination agent reports mutual_tls');

  const during = new HeldConnection(mesh, 'client', `${TCP_ECHO_VIP}:9000`);
  held.push(during);
  await during.more(3);
  mesh.setAmbient(false);
  await mesh.waitCaptured(MESH_PODS, false);
  await before.more(5);
  await during.more(5);
  const dump = await mesh.agentDump('node-1');
  t.false(dump.localPods.some((p) => p.captured), 'unlabelling released every pod');
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'plaintext again after unlabelling');
  mesh.setAmbient(true);
  await mesh.waitCaptured(MESH_PODS, true);
  await before.more(3);
  await during.more(3);
}, NEEDS);

privilegedTest('a service VIP spreads connections across endpoints on both nodes', async (t: ExecutionContext) => {
  const served = new Set<string>();
  for (let i = 0; i < 6; i++) served.add(servedBy(await curl(mesh, 'client', `http://${ECHO_VIP}/`)));
  t.deepEqual([...served].sort(), ['echo-1', 'echo-2']);
}, NEEDS);

privilegedTest('a DENY policy for one service account stops exactly that client, naming the policy in the log', async (t: ExecutionContext) => {
  mesh.setResource('60-deny-client.yaml', readFileSync(join(REPO_ROOT, 'examples', 'demo', 'try', 'deny-client.yaml'), 'utf8'));
  const echo2 = mesh.cluster.pod('echo-2').ip;
  await eventually('the client to be refused', async () => (await curl(mesh, 'client', `http://${echo2}:8080/`)).startsWith('ERR'), { timeoutMs: 10_000, intervalMs: 250 });
  t.is(servedBy(await curl(mesh, 'echo-1', `http://${echo2}:8080/`)), 'echo-2', 'another service account still gets through');
  const log = readFileSync(join(mesh.stateDir, 'logs', 'agent-node-2.log'), 'utf8');
  t.true(log.split('\n').some((l) => l.includes('inbound HBONE connection denied') && l.includes('"policy":"demo/deny-client"')));
  t.true((await mesh.agentMetrics('node-2')).includes('ambit_agent_denials_total{reason="authorization",policy="demo/deny-client",direction="inbound"}'));
  mesh.setResource('60-deny-client.yaml', undefined);
  await eventually('the client to be allowed again once the policy is removed', async () => servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)) === 'echo-2', { timeoutMs: 10_000, intervalMs: 250 });
}, NEEDS);

privilegedTest('STRICT mTLS refuses the pod outside the mesh; PERMISSIVE admits it', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  t.is(servedBy(await curl(mesh, 'outside', `http://${echo2}:8080/`)), 'echo-2', 'PERMISSIVE (the default) admits plaintext');
  const strict = 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: strict, namespace: demo }\nspec: { mtls: { mode: STRICT } }\n';
  mesh.setResource('60-strict.yaml', strict);
  await eventually('STRICT to refuse plaintext', async () => (await curl(mesh, 'outside', `http://${echo2}:8080/`)).startsWith('ERR'), { timeoutMs: 10_000, intervalMs: 250 });
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'mesh traffic still flows under STRICT');
  const log = readFileSync(join(mesh.stateDir, 'logs', 'agent-node-2.log'), 'utf8');
  t.true(log.includes('"policy":"demo/strict"'));
  mesh.setResource('60-strict.yaml', strict.replace('STRICT', 'PERMISSIVE'));
  await eventually('PERMISSIVE to admit plaintext again', async () => servedBy(await curl(mesh, 'outside', `http://${echo2}:8080/`)) === 'echo-2', { timeoutMs: 10_000, intervalMs: 250 });
  mesh.setResource('60-strict.yaml', undefined);
}, NEEDS);
