/**
 * Capture self-check (docs/operations.md#troubleshooting): in the demo mesh, detaching one pod's
 * sk_lookup link by hand (`bpftool link detach id N`, the link found with `bpftool link show` by
 * the pod's netns inode) is reported within 5 s by `ambit_capture_healthy{pod}`, one log line
 * naming the detached link, /config_dump, `ambit status` and the agent's readiness (15021);
 * re-enrolling the pod clears every one of them. Everything is removed after, even on failure.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { DemoMesh } from '../../src/demo/mesh.js';
import { CONTROL_ADDRESS, execIn } from '../../src/demo/cluster.js';
import { AMBIT, NEEDS, curl, servedBy } from './helpers.js';

const NEEDS_BPFTOOL = { ...NEEDS, paths: [...NEEDS.paths, '/usr/sbin/bpftool'] };
const MESH_PODS = ['client', 'echo-1', 'echo-2', 'tcp-echo'];

let mesh: DemoMesh;
let stateDir: string | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (privilegeGap(NEEDS_BPFTOOL) === undefined) {
  test.before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-check-'));
    const prefix = `k${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    try {
      // Admin on 0.0.0.0 so `ambit status` can reach every agent from the control netns.
      mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, agentArgs: ['--drain-ms', '1000', '--admin-host', '0.0.0.0'] });
    } catch (err) {
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      throw err;
    }
    await mesh.waitCaptured(MESH_PODS, true);
  });
  test.after.always(async () => {
    await mesh?.down();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });
}

interface CheckDump { captureCheck?: { pods: { pod: string; healthy: boolean; missing: string[]; linkId?: number }[] }; localPods: { pod: string; captured: boolean; captureHealthy?: boolean }[] }
interface Status { healthy: boolean; problems: string[]; agents: { node: string; pods?: { captureBroken?: string[] } }[] }

async function dump(node: string): Promise<CheckDump> {
  const r = await mesh.httpGet(mesh.cluster.node(node).netns, 'http://127.0.0.1:15000/config_dump');
  return JSON.parse(r.body) as CheckDump;
}

function healthGauge(metrics: string, pod: string): string | undefined {
  return metrics.split('\n').find((l) => l.startsWith(`ambit_capture_healthy{pod="${pod}"}`))?.split(' ').pop();
}

async function status(): Promise<Status> {
  const [cmd, ...pre] = AMBIT;
  const r = await execIn({ netns: mesh.cluster.controlNetns }, cmd as string, [...pre, 'status', '--control', `http://${CONTROL_ADDRESS}:15014`, '--output', 'json'], { timeoutMs: 30_000 });
  return JSON.parse(r.stdout) as Status;
}

function brokenLogLines(node: string, pod?: string): { msg: string; missing?: string[] }[] {
  const text = readFileSync(join(stateDir as string, 'logs', `agent-${node}.log`), 'utf8');
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l) as { msg: string; pod?: string; missing?: string[] }; } catch { return { msg: '' }; } })
    .filter((l) => (pod === undefined || (l as { pod?: string }).pod === pod) && /^capture of pod .* is broken/.test(l.msg));
}

/** Polls `probe` until it returns true; the ms it took. */
async function within(ms: number, what: string, probe: () => Promise<boolean> | boolean): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`${what}: not seen within ${ms} ms`);
    await sleep(100);
  }
}

privilegedTest('a detached sk_lookup link is reported within 5 s by the metric, the log, /config_dump, ambit status and readiness; re-enrolling clears it', async (t: ExecutionContext) => {
  const info = mesh.cluster.pod('echo-2');
  const pod = `${info.namespace}/echo-2`;
  const node = info.node;
  const netns = mesh.cluster.node(node).netns;
  const ready = async () => (await mesh.httpGet(netns, 'http://127.0.0.1:15021/healthz/ready')).status;

  // Healthy to begin with, everywhere.
  t.is(healthGauge(await mesh.agentMetrics(node), pod), '1');
  const before = (await dump(node)).captureCheck?.pods.find((p) => p.pod === pod);
  t.true(before?.healthy, JSON.stringify(before));
  t.true((await dump(node)).localPods.find((p) => p.pod === pod)?.captureHealthy);
  t.deepEqual(brokenLogLines('node-1'), [], 'no pod was ever reported broken on node-1');
  t.deepEqual(brokenLogLines(node), [], 'nor on node-2');
  t.is(await ready(), 200);
  t.is(servedBy(await curl(mesh, 'client', `http://${info.ip}:8080/`)), 'echo-2', 'meshed traffic reaches echo-2 before the break');

  // The pod's sk_lookup link, as an operator finds it: bpftool, by the pod's netns inode.
  const ino = statSync(info.netnsPath).ino;
  const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { id: number; type: string; netns_ino?: number; attach_type?: string }[];
  const link = links.find((l) => l.type === 'netns' && l.netns_ino === ino);
  t.truthy(link, `an sk_lookup link in netns inode ${ino}`);
  t.is(link?.id, before?.linkId, '/config_dump names the same link');

  execFileSync('bpftool', ['link', 'detach', 'id', String(link?.id)]);
  const detachedAt = Date.now();

  const tMetric = await within(5000, 'metric 0', async () => healthGauge(await mesh.agentMetrics(node), pod) === '0');
  const tLog = await within(5000 - (Date.now() - detachedAt), 'log line', () => brokenLogLines(node, pod).length > 0);
  const tReady = await within(5000 - (Date.now() - detachedAt), 'readiness 503', async () => (await ready()) === 503);
  const r = await mesh.httpGet(netns, 'http://127.0.0.1:15021/healthz/ready');
  t.regex(r.body, new RegExp(`capture broken for ${pod}.*sk_lookup link ${link?.id} is detached`));
  const s = await status();
  t.true(Date.now() - detachedAt < 5000 + 3000, 'ambit status ran right after (it queries every agent)');
  t.false(s.healthy);
  t.true(s.problems.some((p) => p.includes(`agent ${node}: capture of pod ${pod}`) && p.includes(`sk_lookup link ${link?.id} is detached`)), s.problems.join(' | '));
  t.true(s.agents.find((a) => a.node === node)?.pods?.captureBroken?.length === 1);
  const d = (await dump(node)).captureCheck?.pods.find((p) => p.pod === pod);
  t.false(d?.healthy);
  t.false((await dump(node)).localPods.find((p) => p.pod === pod)?.captureHealthy);
  t.true(d?.missing.some((m) => m.includes('detached')), JSON.stringify(d));
  t.log(`reported after: metric ${tMetric} ms, log +${tLog} ms, readiness +${tReady} ms`);

  // Other pods stay healthy, and the log line is written once per transition, not every tick.
  const m = await mesh.agentMetrics(node);
  t.is(healthGauge(m, `${mesh.cluster.pod('tcp-echo').namespace}/tcp-echo`), '1', 'tcp-echo on the same node is healthy');
  await sleep(3000);
  const lines = brokenLogLines(node, pod);
  t.is(lines.length, 1, 'one log line for the transition');
  t.true(lines[0]?.missing?.some((x) => x.includes(`sk_lookup link ${link?.id} is detached`)), JSON.stringify(lines[0]));

  // Re-enrolling the pods (unlabel, label) attaches a new link and clears every report.
  mesh.setAmbient(false);
  await mesh.waitCaptured(MESH_PODS, false);
  mesh.setAmbient(true);
  await mesh.waitCaptured(MESH_PODS, true);
  await within(5000, 'metric back to 1', async () => healthGauge(await mesh.agentMetrics(node), pod) === '1');
  await within(5000, 'readiness 200', async () => (await ready()) === 200);
  t.true((await dump(node)).captureCheck?.pods.every((p) => p.healthy));
  const after = await status();
  t.false(after.problems.some((p) => p.includes('capture of pod')), after.problems.join(' | '));
  let answer = '';
  await within(5000, 'meshed traffic to the re-enrolled pod', async () => servedBy(answer = await curl(mesh, 'client', `http://${info.ip}:8080/`)) === 'echo-2').catch(() => undefined);
  t.is(servedBy(answer), 'echo-2', 'inbound to the re-enrolled pod is captured and delivered');
}, NEEDS_BPFTOOL);

privilegedTest('no pod is reported broken across an agent crash and restart (adopted pins pass the check)', async (t: ExecutionContext) => {
  const node = 'node-2';
  const linesBefore = brokenLogLines(node).length;
  await mesh.stop(`agent-${node}`, 'SIGKILL');
  await mesh.startAgent(node);
  try {
    await mesh.waitAgentReady(node);
  } catch (err) {
    t.log(readFileSync(join(stateDir as string, 'logs', `agent-${node}.log`), 'utf8').split('\n').slice(-15).join('\n'));
    throw err;
  }
  await mesh.waitCaptured(['echo-2', 'tcp-echo'], true);
  await sleep(2500);
  const d = await dump(node);
  t.true((d.captureCheck?.pods.length ?? 0) >= 2, JSON.stringify(d.captureCheck));
  t.true(d.captureCheck?.pods.every((p) => p.healthy), JSON.stringify(d.captureCheck));
  t.is(brokenLogLines(node).length, linesBefore, 'no broken line from the restarted agent');
  t.is((await mesh.httpGet(mesh.cluster.node(node).netns, 'http://127.0.0.1:15021/healthz/ready')).status, 200);
}, NEEDS_BPFTOOL);

privilegedTest('no pod is reported broken across a hand-over to a second agent (same sockets, same pins)', async (t: ExecutionContext) => {
  const node = 'node-2';
  const linesBefore = brokenLogLines(node).length;
  const pids = JSON.parse(readFileSync(join(stateDir as string, 'pids.json'), 'utf8')) as Record<string, number>;
  const old = pids[`agent-${node}`];
  t.truthy(old, 'the running agent');
  await mesh.startAgent(node);
  const netns = mesh.cluster.node(node).netns;
  // Both agents accept on the node ports until the old one drains: wait for the new one's dump.
  await within(30_000, 'the new agent serves', async () => {
    const r = await mesh.httpGet(netns, 'http://127.0.0.1:15000/config_dump');
    return r.status === 200 && (JSON.parse(r.body) as { ready: { ready: boolean } }).ready.ready;
  });
  process.kill(old as number, 'SIGTERM');
  await within(15_000, 'the old agent exits', () => { try { process.kill(old as number, 0); return false; } catch { return true; } });
  await sleep(2500);
  const d = await dump(node);
  t.true((d.captureCheck?.pods.length ?? 0) >= 2, JSON.stringify(d.captureCheck));
  t.true(d.captureCheck?.pods.every((p) => p.healthy), JSON.stringify(d.captureCheck));
  t.is(brokenLogLines(node).length, linesBefore, 'neither agent logged a broken pod');
  t.is((await mesh.httpGet(netns, 'http://127.0.0.1:15021/healthz/ready')).status, 200);
}, NEEDS_BPFTOOL);

privilegedTest('a detached cgroup program breaks every pod of its node; an agent restart re-attaches it and clears the report', async (t: ExecutionContext) => {
  const node = 'node-1';
  const n = mesh.cluster.node(node);
  const pods = MESH_PODS.filter((p) => mesh.cluster.pod(p).node === node).map((p) => `${mesh.cluster.pod(p).namespace}/${p}`);
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', n.cgroup], { encoding: 'utf8' }).trim() || '[]') as { id: number; attach_type: string; name: string }[];
  // Capture's connect4, not DNS capture's (ambit_dns_connect4, attached to the same hook).
  const connect4 = progs.find((p) => (p.attach_type === 'cgroup_inet4_connect' || p.attach_type === 'connect4') && p.name === 'ambit_connect4');
  t.truthy(connect4, JSON.stringify(progs));
  const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { id: number; type: string; prog_id: number }[];
  const link = links.find((l) => l.type === 'cgroup' && l.prog_id === connect4?.id);
  t.truthy(link);
  execFileSync('bpftool', ['link', 'detach', 'id', String(link?.id)]);
  await within(5000, 'every pod of the node broken', async () => {
    const m = await mesh.agentMetrics(node);
    return pods.every((p) => healthGauge(m, p) === '0');
  });
  const d = (await dump(node)).captureCheck?.pods ?? [];
  t.true(d.every((p) => p.missing.some((x) => x.includes(`cgroup program ambit_connect4 (link ${link?.id}) is not attached`))), JSON.stringify(d));
  t.is((await mesh.httpGet(n.netns, 'http://127.0.0.1:15021/healthz/ready')).status, 503);
  await mesh.stop(`agent-${node}`, 'SIGTERM');
  await mesh.startAgent(node);
  await mesh.waitAgentReady(node);
  const m = await mesh.agentMetrics(node);
  t.true(pods.every((p) => healthGauge(m, p) === '1'), m.split('\n').filter((l) => l.startsWith('ambit_capture_healthy')).join('\n'));
}, NEEDS_BPFTOOL);
