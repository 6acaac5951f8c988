/**
 * `ambit why` agrees with what the cluster actually does. In the demo cluster
 * (real control plane, two agents, apps), each case asks `ambit why` (against the running control
 * plane, and against the mesh folder) and then sends the same traffic from the pod: the verdict,
 * the deciding policy and the mTLS mode must match what happened.
 *
 * L4 cases: mesh pod to pod across nodes, to a service VIP, same-node delivery, a DENY policy for
 * one service account (and another account that still gets through), STRICT PeerAuthentication
 * refusing a pod outside the mesh. The L7 cases run where the demo cluster has its waypoint:
 * test/e2e/waypoint.test.ts checks `ambit why` against the waypoint's own 403 and 200.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { ECHO_VIP, REPO_ROOT } from '../../src/demo/mesh.js';
import { CONTROL_ADDRESS, execIn } from '../../src/demo/cluster.js';
import { AMBIT, NEEDS, curl, servedBy, startMesh } from './helpers.js';

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true });
    mesh = m.mesh;
    cleanup = m.cleanup;
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
  });
  test.after.always(async () => { await cleanup?.(); });
}

interface Why { verdict: string; layer: string; decidedBy?: string; mtls: boolean; steps: string[] }

async function why(args: string[], from: 'control' | 'folder' = 'control'): Promise<Why> {
  const [cmd, ...pre] = AMBIT;
  const src = from === 'control' ? ['--control', `http://${CONTROL_ADDRESS}:15014`] : ['--config', mesh.meshDir];
  const r = await execIn({ netns: mesh.cluster.controlNetns }, cmd as string, [...pre, 'why', ...src, '--output', 'json', ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ambit why ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Why;
}

/** Both sources of the mesh give the same answer (the folder is what the control plane serves). */
async function whyBoth(t: ExecutionContext, args: string[]): Promise<Why> {
  const a = await why(args, 'control');
  const b = await why(args, 'folder');
  t.deepEqual({ ...b, steps: b.steps.length }, { ...a, steps: a.steps.length }, `control plane and folder agree for ${args.join(' ')}`);
  t.log(`why ${args.join(' ')}:\n  ${a.steps.join('\n  ')}`);
  return a;
}

/** Waits for `what` (the mesh applies a folder change within a second or two). */
const applied = (what: string, f: () => Promise<boolean>): Promise<void> => eventually(what, f, { timeoutMs: 15_000, intervalMs: 250 });

privilegedTest('allow at L4 with mutual TLS: pod to pod across nodes, to a service VIP, and on the same node', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const cross = await whyBoth(t, ['demo/client', `demo/echo-2:8080`]);
  t.like(cross, { verdict: 'allow', mtls: true });
  t.true(cross.steps.some((s) => s.includes('HBONE')), 'explains the HBONE hop');
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'the cluster allows it');
  const metrics = await mesh.agentMetrics('node-2');
  t.true(metrics.split('\n').some((l) => l.startsWith('istio_tcp_connections_opened_total') && l.includes('source_principal="spiffe://cluster.local/ns/demo/sa/client"') && l.includes('connection_security_policy="mutual_tls"')), 'and it was mutual TLS');

  const vip = await whyBoth(t, ['demo/client', 'echo.demo:80']);
  t.like(vip, { verdict: 'allow', mtls: true });
  t.true(vip.steps.some((s) => s.includes('service demo/echo')));
  t.true(['echo-1', 'echo-2'].includes(servedBy(await curl(mesh, 'client', `http://${ECHO_VIP}/`))));

  const local = await whyBoth(t, ['client', 'echo-1:8080']);
  t.like(local, { verdict: 'allow', mtls: true });
  t.true(local.steps.some((s) => s.includes('same node')));
  t.is(servedBy(await curl(mesh, 'client', `http://${mesh.cluster.pod('echo-1').ip}:8080/`)), 'echo-1');
}, NEEDS);

privilegedTest('deny at L4: a DENY policy for one service account — why names the policy, the cluster refuses exactly that client', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  mesh.setResource('60-deny-client.yaml', readFileSync(join(REPO_ROOT, 'examples', 'demo', 'try', 'deny-client.yaml'), 'utf8'));
  t.teardown(() => mesh.setResource('60-deny-client.yaml', undefined));
  await applied('the control plane to serve the policy (why says deny)', async () => (await why(['demo/client', 'demo/echo-2:8080'])).verdict === 'deny');
  const denied = await whyBoth(t, ['demo/client', 'demo/echo-2:8080']);
  t.like(denied, { verdict: 'deny', layer: 'L4', decidedBy: 'demo/deny-client' });
  await applied('the cluster to refuse it', async () => (await curl(mesh, 'client', `http://${echo2}:8080/`)).startsWith('ERR'));
  const log = readFileSync(join(mesh.stateDir, 'logs', 'agent-node-2.log'), 'utf8');
  t.true(log.includes('"policy":"demo/deny-client"'), 'the agent names the same policy');

  const other = await whyBoth(t, ['demo/echo-1', 'demo/echo-2:8080']);
  t.like(other, { verdict: 'allow', mtls: true });
  t.is(servedBy(await curl(mesh, 'echo-1', `http://${echo2}:8080/`)), 'echo-2', 'another service account gets through, as why says');

  const viaVip = await whyBoth(t, ['demo/client', `${ECHO_VIP}:80`]);
  t.like(viaVip, { verdict: 'deny', decidedBy: 'demo/deny-client' });
  t.true((await curl(mesh, 'client', `http://${ECHO_VIP}/`)).startsWith('ERR'), 'through the VIP too');
}, NEEDS);

privilegedTest('STRICT mTLS: plaintext from outside the mesh is refused, as why says; PERMISSIVE admits it', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const permissive = await whyBoth(t, ['legacy/outside', `demo/echo-2:8080`]);
  t.like(permissive, { verdict: 'allow', mtls: false });
  t.true(permissive.steps.some((s) => s.includes('not captured')));
  t.is(servedBy(await curl(mesh, 'outside', `http://${echo2}:8080/`)), 'echo-2');

  mesh.setResource('60-strict.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: strict, namespace: demo }\nspec: { mtls: { mode: STRICT } }\n');
  t.teardown(() => mesh.setResource('60-strict.yaml', undefined));
  await applied('the control plane to serve STRICT (why says deny)', async () => (await why(['legacy/outside', 'demo/echo-2:8080'])).verdict === 'deny');
  const strict = await whyBoth(t, ['legacy/outside', 'demo/echo-2:8080']);
  t.like(strict, { verdict: 'deny', layer: 'L4', decidedBy: 'demo/strict', mtls: false });
  await applied('the cluster to refuse plaintext', async () => (await curl(mesh, 'outside', `http://${echo2}:8080/`)).startsWith('ERR'));
  const meshed = await whyBoth(t, ['demo/client', 'demo/echo-2:8080']);
  t.like(meshed, { verdict: 'allow', mtls: true });
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'mesh traffic still flows under STRICT');
}, NEEDS);
