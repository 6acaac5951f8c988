/**
 * Observability (docs/architecture.md#observability): a real Prometheus (Debian's
 * /usr/bin/prometheus) scrapes the demo cluster's agents and PromQL over its HTTP API shows
 * per-node TCP byte counters and denials that exist and increase as traffic flows and a policy
 * refuses it. Prometheus runs in the cluster's control netns with a private config and a temporary
 * storage directory, listening on that netns's loopback; the operator commands `ambit status` and
 * `ambit top --once` run against the same cluster. Everything is removed after, even on failure.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import { DemoMesh, REPO_ROOT } from '../../src/demo/mesh.js';
import { CONTROL_ADDRESS, execIn } from '../../src/demo/cluster.js';
import { AMBIT, NEEDS as MESH_NEEDS, curl, servedBy } from './helpers.js';
import { PROMETHEUS_BIN, Prometheus, agentJob, byNode } from './prometheus-server.js';

const NEEDS = { ...MESH_NEEDS, paths: [...MESH_NEEDS.paths, PROMETHEUS_BIN] };

let mesh: DemoMesh;
let stateDir: string | undefined;
let prom: Prometheus | undefined;


if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-prom-'));
    const prefix = `p${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    try {
      // Admin on 0.0.0.0 so `ambit status` can reach every agent from the control netns.
      mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, agentArgs: ['--drain-ms', '1000', '--admin-host', '0.0.0.0'] });
    } catch (err) {
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      throw err;
    }
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    prom = Prometheus.start(mesh, [agentJob(mesh)]);
  });
  test.after.always(async () => {
    await prom?.stop();
    if (stateDir !== undefined) {
      await DemoMesh.attach({ prefix: 'x', stateDir }).down().catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
}

const query = (q: string) => (prom as Prometheus).query(q);

/** Waits until `q` returns a value per node satisfying `ok`. */
async function until(q: string, ok: (v: Record<string, number>) => boolean, timeoutMs = 20_000): Promise<Record<string, number>> {
  return byNode(await (prom as Prometheus).until(q, (v) => ok(byNode(v)), timeoutMs));
}

privilegedTest('Prometheus scrapes every agent: per-node TCP byte counters exist and increase with traffic', async (t: ExecutionContext) => {
  await until('up{job="ambit-agent"}', (v) => v['node-1'] === 1 && v['node-2'] === 1);
  const echo1 = mesh.cluster.pod('echo-1').ip;
  const echo2 = mesh.cluster.pod('echo-2').ip;
  // Cross-node traffic in both directions of the fabric: client (node-1) -> echo-2 (node-2).
  for (let i = 0; i < 3; i++) t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`, 'x'.repeat(2000))), 'echo-2');
  t.is(servedBy(await curl(mesh, 'echo-2', `http://${echo1}:8080/`, 'y'.repeat(2000))), 'echo-1');
  const bytes = 'sum by (node) (istio_tcp_sent_bytes_total) + sum by (node) (istio_tcp_received_bytes_total)';
  const first = await until(bytes, (v) => (v['node-1'] ?? 0) > 0 && (v['node-2'] ?? 0) > 0);
  t.log(`bytes by node: ${JSON.stringify(first)}`);
  const opened = await until('sum by (node) (istio_tcp_connections_opened_total{connection_security_policy="mutual_tls"})', (v) => (v['node-1'] ?? 0) > 0 && (v['node-2'] ?? 0) > 0);
  t.true(opened['node-2'] !== undefined);
  for (let i = 0; i < 3; i++) await curl(mesh, 'client', `http://${echo2}:8080/`, 'z'.repeat(5000));
  for (let i = 0; i < 2; i++) await curl(mesh, 'echo-2', `http://${echo1}:8080/`, 'z'.repeat(5000));
  const second = await until(bytes, (v) => (v['node-1'] ?? 0) > (first['node-1'] ?? 0) && (v['node-2'] ?? 0) > (first['node-2'] ?? 0));
  t.true((second['node-1'] as number) > (first['node-1'] as number), 'node-1 bytes increased');
  t.true((second['node-2'] as number) > (first['node-2'] as number), 'node-2 bytes increased');
  const rate = byNode(await query('sum by (node) (rate(istio_tcp_sent_bytes_total[30s]))'));
  t.true((rate['node-2'] ?? 0) > 0, 'rate() over the byte counter is positive');
}, NEEDS);

privilegedTest('denials are counted per node and policy, and increase with each refused connection', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  mesh.setResource('60-deny-client.yaml', readFileSync(join(REPO_ROOT, 'examples', 'demo', 'try', 'deny-client.yaml'), 'utf8'));
  t.teardown(() => mesh.setResource('60-deny-client.yaml', undefined));
  await eventually('the policy to refuse the client', async () => (await curl(mesh, 'client', `http://${echo2}:8080/`)).startsWith('ERR'), { timeoutMs: 10_000, intervalMs: 250 });
  const q = 'sum by (node, policy) (ambit_agent_denials_total{policy="demo/deny-client"})';
  const first = await until(q, (v) => (v['node-2'] ?? 0) > 0);
  for (let i = 0; i < 3; i++) t.true((await curl(mesh, 'client', `http://${echo2}:8080/`)).startsWith('ERR'));
  const second = await until(q, (v) => (v['node-2'] ?? 0) >= (first['node-2'] ?? 0) + 3);
  t.log(`denials on node-2 for demo/deny-client: ${first['node-2']} -> ${second['node-2']}`);
  const flagged = await query('sum by (node) (istio_tcp_connections_closed_total{response_flags="DENY"})');
  t.true(flagged.some((v) => v.metric['node'] === 'node-2' && Number(v.value[1]) > 0), 'closed connections carry response_flags="DENY"');
}, NEEDS);

async function ambitIn(netns: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, ...pre] = AMBIT;
  return execIn({ netns }, cmd as string, [...pre, ...args], { timeoutMs: 60_000 });
}

privilegedTest('ambit status sees the control plane, both agents with their view versions, enrolled pods and certificate expiries', async (t: ExecutionContext) => {
  const r = await ambitIn(mesh.cluster.controlNetns, ['status', '--control', `http://${CONTROL_ADDRESS}:15014`, '--output', 'json']);
  t.is(r.stderr, '');
  const s = JSON.parse(r.stdout) as { healthy: boolean; problems: string[]; control: { reachable: boolean; ready: boolean; version: number; servingCertificate: { identity?: string; expiresInSeconds: number } }; agents: { node: string; reachable: boolean; connected: boolean; viewVersion: number; ackedVersion: number; pods: { enrolled: number }; certificates: { expiresInSeconds: number }[] }[] };
  t.true(s.control.reachable && s.control.ready);
  t.is(s.control.servingCertificate.identity, 'spiffe://cluster.local/ns/ambit-system/sa/ambit-control');
  t.true(s.control.servingCertificate.expiresInSeconds > 3600);
  t.deepEqual(s.agents.map((a) => a.node), ['node-1', 'node-2']);
  for (const a of s.agents) {
    t.true(a.reachable && a.connected, `${a.node} reachable and connected`);
    t.true(a.pods.enrolled >= 2, `${a.node} has its demo pods enrolled`);
    t.true(a.certificates.length > 0 && a.certificates.every((c) => c.expiresInSeconds > 3600), `${a.node} certificates`);
    t.is(a.viewVersion, a.ackedVersion, `${a.node} applied what it acked`);
  }
  t.true(s.healthy, s.problems.join('; '));
  t.is(r.code, 0);
  const text = await ambitIn(mesh.cluster.controlNetns, ['status', '--control', `http://${CONTROL_ADDRESS}:15014`]);
  t.regex(text.stdout, /control plane .* ready/);
  t.regex(text.stdout, /node-1 .*ready/);
}, NEEDS);

privilegedTest('ambit top --once shows both nodes within 80 columns and names an unreachable agent', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const load = (async () => { for (let i = 0; i < 6; i++) await curl(mesh, 'client', `http://${echo2}:8080/`, 'q'.repeat(3000)); })();
  const r = await ambitIn(mesh.cluster.controlNetns, ['top', '--once', '--interval', '3000', '--width', '80', '--control', `http://${CONTROL_ADDRESS}:15014`, '--agent', 'node-9=198.18.0.9:15020']);
  await load;
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  for (const l of lines) t.true(l.length <= 80, `fits 80 columns: '${l}'`);
  t.true(lines.some((l) => l.startsWith('node-1 ')));
  t.true(lines.some((l) => l.startsWith('node-2 ')));
  t.true(lines.some((l) => l.startsWith('node-9') && l.includes('UNREACHABLE')), r.stdout);
  t.regex(r.stdout, /top talkers/);
}, NEEDS);
