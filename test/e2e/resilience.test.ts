/**
 * Resilience: the control plane killed (existing and new connections keep
 * working from the last good view), an agent killed and restarted (capture resumes for new
 * connections, re-adopting its pinned programs without a second attachment), and garbage on every
 * agent port (15001, 15006, 15008, 15000, 15020) leaving the agent serving.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { ECHO_VIP, TCP_ECHO_VIP } from '../../src/demo/mesh.js';
import { NEEDS, startMesh, curl, servedBy, HeldConnection, garbage } from './helpers.js';

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
const held: HeldConnection[] = [];

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true });
    mesh = m.mesh;
    cleanup = m.cleanup;
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
  });
  test.after.always(async () => {
    for (const h of held) h.stop();
    await cleanup?.();
  });
}

function cgroupPrograms(path: string): { attach_type: string; name: string }[] {
  return JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', path], { encoding: 'utf8' }).trim() || '[]') as { attach_type: string; name: string }[];
}

privilegedTest('control plane killed: existing and new connections keep working', async (t: ExecutionContext) => {
  const conn = new HeldConnection(mesh, 'client', `${TCP_ECHO_VIP}:9000`);
  held.push(conn);
  await conn.more(3);
  await mesh.stop('control', 'SIGKILL');
  await conn.more(5);
  const served = new Set<string>();
  for (let i = 0; i < 4; i++) served.add(servedBy(await curl(mesh, 'client', `http://${ECHO_VIP}/`)));
  t.deepEqual([...served].sort(), ['echo-1', 'echo-2'], 'new connections still reach both nodes');
  t.true((await mesh.agentMetrics('node-1')).includes('ambit_agent_control_plane_connected 0'));
  await mesh.startControl();
  await conn.more(3);
}, NEEDS);

privilegedTest('agent killed and restarted: capture resumes without duplicate BPF attachments', async (t: ExecutionContext) => {
  const node = mesh.cluster.node('node-2');
  const before = cgroupPrograms(node.cgroup);
  t.true(before.length >= 3, 'cgroup programs attached');
  await mesh.stop('agent-node-2', 'SIGKILL');
  await mesh.startAgent('node-2');
  await mesh.waitAgentReady('node-2');
  await mesh.waitCaptured(['echo-2', 'tcp-echo'], true);
  const after = cgroupPrograms(node.cgroup);
  t.deepEqual(after.map((p) => `${p.attach_type}/${p.name}`).sort(), before.map((p) => `${p.attach_type}/${p.name}`).sort(), 'same attachments, none duplicated');
  const echo2 = mesh.cluster.pod('echo-2').ip;
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'inbound to the restarted node is captured and delivered');
  const r = await mesh.exec('tcp-echo', 'curl', ['-s', '-m', '4', `http://${ECHO_VIP}/`]);
  t.true(['echo-1', 'echo-2'].includes(servedBy(r.stdout)), 'outbound from the restarted node is captured and delivered');
  const m = await mesh.agentMetrics('node-2');
  t.true(m.split('\n').some((l) => l.startsWith('istio_tcp_connections_opened_total') && l.includes('reporter="source"') && l.includes('source_workload="tcp-echo"') && l.includes('mutual_tls')), 'the new connection was tunnelled');
}, NEEDS);

privilegedTest('garbage on every agent port leaves the agent serving', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const n2 = mesh.cluster.node('node-2');
  const outside = mesh.cluster.podPlace('outside') as { netns: string; cgroup?: string };
  const client = mesh.cluster.podPlace('client') as { netns: string; cgroup?: string };
  await garbage(client, '127.0.0.1', 15001); // the client's outbound listener, not a captured connect
  await garbage(outside, echo2, 15006);
  await garbage(outside, echo2, 15008);
  await garbage(outside, echo2, 8080); // steered to 15006, delivered (garbage to the app)
  await garbage({ netns: n2.netns }, '127.0.0.1', 15000);
  await garbage({ netns: n2.netns }, '127.0.0.1', 15020);
  await garbage({ netns: n2.netns }, '127.0.0.1', 15021);
  for (const node of mesh.cluster.nodes) await mesh.waitAgentReady(node.name, 5000);
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'mesh traffic still flows');
  t.is(servedBy(await curl(mesh, 'outside', `http://${echo2}:8080/`)), 'echo-2', 'plaintext inbound still flows');
  t.true((await mesh.agentMetrics('node-2')).includes('istio_tcp_connections_opened_total'), 'metrics still served');
  t.true((await mesh.agentDump('node-2')).localPods.length > 0, 'admin still served');
}, NEEDS);
