/**
 * Zero-downtime upgrade (docs/operations.md#upgrades): `ambit demo upgrade-agent node-2` and then
 * `... node-1` (the CLI, attached to the mesh from another process, as a user runs it) while
 *   - one TCP connection from `client` to `tcp-echo` sends a numbered line every 50 ms and checks
 *     each echo: it is opened before the first upgrade and stays open until both old agents are
 *     draining (each keeps its established connections until they end; the connection then
 *     ends cleanly and both old agents exit), with every line echoed in order;
 *   - a loop of new HTTP requests (a new connection each) from `client` to `echo-2` runs the
 *     whole time and sees no failure;
 * and bpftool shows the same cgroup attachments and the same pinned links (same link ids: the
 * pins were adopted, nothing re-attached) before and after.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { TCP_ECHO_VIP, REPO_ROOT } from '../../src/demo/mesh.js';
import { NEEDS, AMBIT, startMesh } from './helpers.js';

let mesh: DemoMesh;
let stateDir: string;
let cleanup: (() => Promise<void>) | undefined;
const spawned: ChildProcess[] = [];

/** Starts the held TCP line connection and the HTTP request loop from `client`; resolves once lines echo. */
async function startTraffic(): Promise<{ lines: ChildProcess; linesOut: ReturnType<typeof collect>; requests: ChildProcess; requestsOut: ReturnType<typeof collect> }> {
  const lines = mesh.spawnInPod('client', process.execPath, ['-e', LINES, TCP_ECHO_VIP]);
  spawned.push(lines);
  const linesOut = collect(lines);
  const requests = mesh.spawnInPod('client', process.execPath, ['-e', REQUESTS, mesh.cluster.pod('echo-2').ip]);
  spawned.push(requests);
  const requestsOut = collect(requests);
  await until('the held connection echoes', () => lastProgress(linesOut.out()).echoed >= 10, 20_000);
  return { lines, linesOut, requests, requestsOut };
}

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true, agentArgs: ['--drain-seconds', '30', '--handover-wait-seconds', '10'] });
    mesh = m.mesh;
    stateDir = m.stateDir;
    cleanup = m.cleanup;
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
  });
  test.after.always(async () => {
    for (const c of spawned) c.kill('SIGKILL');
    if (process.env['AMBIT_E2E_KEEP_LOGS'] !== undefined) cpSync(join(stateDir, 'logs'), process.env['AMBIT_E2E_KEEP_LOGS'], { recursive: true });
    await cleanup?.();
  });
}

// Runs in the client pod: a numbered line every 50 ms, each answer checked; SIGTERM stops
// sending, waits for the outstanding answers, ends the connection and prints a summary.
const LINES = `
const s = require('net').connect(9000, process.argv[1]);
let sent = 0, echoed = 0, buf = '', closed = false, stopping = false; const errors = [];
s.on('connect', () => { const t = setInterval(() => { if (stopping) return clearInterval(t); s.write(++sent + '\\n'); }, 50); });
s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); if (l !== 'tcp-echo: ' + (echoed + 1)) errors.push(l); echoed++; } });
s.on('error', (e) => errors.push('error ' + e.code));
s.on('close', () => { closed = true; });
setInterval(() => process.stdout.write(JSON.stringify({ sent, echoed }) + '\\n'), 200);
process.on('SIGTERM', () => { stopping = true; const t0 = Date.now(); const w = setInterval(() => { if (echoed >= sent || closed || Date.now() - t0 > 5000) { clearInterval(w); const early = closed; s.end(); process.stdout.write('DONE ' + JSON.stringify({ sent, echoed, errors, closedEarly: early }) + '\\n'); setTimeout(() => process.exit(0), 100); } }, 20); });
`;

// Runs in the client pod: new HTTP requests back to back (a new connection each).
const REQUESTS = `
const http = require('http'); let ok = 0, failed = 0, stop = false; const errors = [];
const one = () => { if (stop) return done(); const r = http.get({ host: process.argv[1], port: 8080, path: '/', agent: false, timeout: 4000 }, (res) => { res.resume(); res.on('end', () => { if (res.statusCode === 200) ok++; else { failed++; errors.push('status ' + res.statusCode); } setTimeout(one, 20); }); }); r.on('timeout', () => r.destroy(new Error('timeout'))); r.on('error', (e) => { failed++; errors.push(e.code || e.message); setTimeout(one, 20); }); };
const done = () => { process.stdout.write('DONE ' + JSON.stringify({ ok, failed, errors: errors.slice(0, 20) }) + '\\n'); process.exit(0); };
process.on('SIGTERM', () => { stop = true; });
one();
`;

function collect(c: ChildProcess): { out: () => string } {
  let out = '';
  c.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  return { out: () => out };
}

/** Waits for `what` (output of the children, checked every 50 ms). */
const until = (what: string, ok: () => boolean, timeoutMs: number): Promise<void> => eventually(what, ok, { timeoutMs, intervalMs: 50 });

function summary<T>(text: string): T | undefined {
  const line = text.split('\n').find((l) => l.startsWith('DONE '));
  return line === undefined ? undefined : JSON.parse(line.slice(5)) as T;
}

function lastProgress(text: string): { sent: number; echoed: number } {
  const lines = text.split('\n').filter((l) => l.startsWith('{'));
  return lines.length === 0 ? { sent: 0, echoed: 0 } : JSON.parse(lines[lines.length - 1] as string) as { sent: number; echoed: number };
}

/** What bpftool shows of the mesh: cgroup attachments per node, and every pinned link with its id. */
function attachments(): { cgroups: string[]; links: string[] } {
  const cgroups: string[] = [];
  const links: string[] = [];
  for (const node of mesh.cluster.nodes) {
    const progs = JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', node.cgroup], { encoding: 'utf8' }).trim() || '[]') as { attach_type: string; name: string }[];
    for (const p of progs) cgroups.push(`${node.name} ${p.attach_type}/${p.name}`);
    const dir = join(node.pinDir, 'links');
    for (const f of readdirSync(dir)) {
      const info = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show', 'pinned', join(dir, f)], { encoding: 'utf8' })) as { id: number; type: string };
      links.push(`${node.name} ${f} id=${info.id} ${info.type}`);
    }
  }
  return { cgroups: cgroups.sort(), links: links.sort() };
}

function upgrade(node: string): { child: ChildProcess; out: () => string; exit: Promise<number | null> } {
  const [cmd, ...pre] = AMBIT;
  const child = spawn(cmd as string, [...pre, 'demo', 'upgrade-agent', node, '--state-dir', stateDir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(child);
  const o = collect(child);
  return { child, out: o.out, exit: new Promise((r) => child.once('exit', (code) => r(code))) };
}

privilegedTest('upgrade-agent node-2 then node-1: a held TCP connection echoes every line, new HTTP requests never fail, same BPF attachments', async (t: ExecutionContext) => {
  t.timeout(180_000);
  const before = attachments();
  t.true(before.cgroups.length >= 6, 'cgroup programs attached on both nodes');
  t.true(before.links.some((l) => l.includes(' pod_')), 'pod sk_lookup links pinned');
  const agents = { 'node-1': mesh.agentPid('node-1'), 'node-2': mesh.agentPid('node-2') };

  const { lines, linesOut, requests, requestsOut } = await startTraffic();

  // node-2 first; its old agent keeps the held connection while draining.
  const u2 = upgrade('node-2');
  await until('node-2: old agent SIGTERMed', () => u2.out().includes('sent SIGTERM'), 60_000);
  let mark = lastProgress(linesOut.out()).echoed;
  await until('lines echoed after the node-2 hand-over', () => lastProgress(linesOut.out()).echoed >= mark + 20, 10_000);
  // node-1 while node-2's old agent still drains the held connection.
  const u1 = upgrade('node-1');
  await until('node-1: old agent SIGTERMed', () => u1.out().includes('sent SIGTERM'), 60_000);
  mark = lastProgress(linesOut.out()).echoed;
  await until('lines echoed after the node-1 hand-over', () => lastProgress(linesOut.out()).echoed >= mark + 20, 10_000);
  t.true(u2.out().includes('new agent ready') && u1.out().includes('new agent ready'), 'both nodes have a new, ready agent');

  // The connection ends cleanly; both old agents then finish draining and exit.
  lines.kill('SIGTERM');
  await until('the held connection summary', () => summary(linesOut.out()) !== undefined, 15_000);
  const held = summary<{ sent: number; echoed: number; errors: string[]; closedEarly: boolean }>(linesOut.out())!;
  t.false(held.closedEarly, 'the held connection stayed open through both upgrades');
  t.deepEqual(held.errors, [], 'every echo was the line sent, in order');
  t.is(held.echoed, held.sent, 'every line was echoed');
  t.true(held.sent >= 60, `lines sent: ${held.sent}`);

  t.is(await u2.exit, 0, `upgrade-agent node-2: ${u2.out()}`);
  t.is(await u1.exit, 0, `upgrade-agent node-1: ${u1.out()}`);
  for (const n of ['node-1', 'node-2'] as const) {
    const old = agents[n];
    t.truthy(old);
    t.throws(() => process.kill(old as number, 0), undefined, `the old agent of ${n} is gone`);
  }
  await new Promise((r) => setTimeout(r, 1000)); // requests after both old agents exited
  requests.kill('SIGTERM');
  await until('the request loop summary', () => summary(requestsOut.out()) !== undefined, 10_000);
  const loop = summary<{ ok: number; failed: number; errors: string[] }>(requestsOut.out())!;
  t.is(loop.failed, 0, `request failures: ${loop.errors.join(', ')}`);
  t.true(loop.ok >= 20, `requests served: ${loop.ok}`);

  const after = attachments();
  t.deepEqual(after.cgroups, before.cgroups, 'same cgroup attachments, none duplicated');
  t.deepEqual(after.links, before.links, 'same pinned links (same ids): adopted, not re-attached');
  for (const n of ['node-1', 'node-2'] as const) {
    await mesh.waitAgentReady(n, 5000);
    const dump = await mesh.agentDump(n) as unknown as { handover?: { takenFromPid?: number } };
    t.is(dump.handover?.takenFromPid, agents[n], `${n}: /config_dump names the agent it took over from`);
  }
}, NEEDS);

privilegedTest('SIGTERM before the new agent took over (a surge pod found ready by the old agent): the old one waits for the hand-over, nothing fails', async (t: ExecutionContext) => {
  t.timeout(120_000);
  const before = attachments();
  const oldPid = mesh.agentPid('node-2');
  t.truthy(oldPid);
  const { lines, linesOut, requests, requestsOut } = await startTraffic();
  // The kubelet's order when readiness came from the old agent: the old pod is stopped first.
  process.kill(oldPid as number, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const child = await mesh.startAgent('node-2');
  let ready: { status: number; body: string } | undefined;
  await eventually('the new agent on node-2 to be ready', async () => (ready = await mesh.httpGet(mesh.cluster.node('node-2').netns, 'http://127.0.0.1:15021/healthz/ready', 2000)).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 100,
    detail: () => `${ready?.status} ${ready?.body}`,
  });
  const mark = lastProgress(linesOut.out()).echoed;
  await until('lines echoed after the late hand-over', () => lastProgress(linesOut.out()).echoed >= mark + 20, 10_000);
  lines.kill('SIGTERM');
  await until('the held connection summary', () => summary(linesOut.out()) !== undefined, 15_000);
  const held = summary<{ sent: number; echoed: number; errors: string[]; closedEarly: boolean }>(linesOut.out())!;
  t.false(held.closedEarly, 'the held connection stayed open');
  t.deepEqual(held.errors, []);
  t.is(held.echoed, held.sent, 'every line was echoed');
  await until('the old agent exits', () => { try { process.kill(oldPid as number, 0); return false; } catch { return true; } }, 40_000);
  t.truthy(child.pid);
  t.notThrows(() => process.kill(child.pid as number, 0), 'the new agent runs');
  requests.kill('SIGTERM');
  await until('the request loop summary', () => summary(requestsOut.out()) !== undefined, 10_000);
  const loop = summary<{ ok: number; failed: number; errors: string[] }>(requestsOut.out())!;
  t.is(loop.failed, 0, `request failures: ${loop.errors.join(', ')}`);
  t.true(loop.ok >= 20, `requests served: ${loop.ok}`);
  const after = attachments();
  t.deepEqual(after.cgroups, before.cgroups);
  t.deepEqual(after.links, before.links);
}, NEEDS);
