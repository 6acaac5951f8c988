/**
 * `ambit demo` as a user runs it, in a child process with its own state directory and prefix:
 *   - in the foreground, `ambit demo status` from the machine's own netns (no flags but the
 *     state dir) reaches the control plane and both agents, and reports the mesh healthy;
 *   - SIGHUP (the terminal went away) removes everything the demo made, as Ctrl-C does:
 *     processes, network namespaces, cgroups, BPF pins and the state directory;
 *   - SIGTERM while the demo is still being built removes what it had made so far.
 * Whatever happens, `after.always` sweeps every name with the test's prefix.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { privilegedTest } from '../helpers/privileged.js';
import { cgroup2Root, destroyCgroup, destroyCluster, pidAlive, sh } from '../../src/demo/cluster.js';
import { REPO_ROOT } from '../../src/demo/mesh.js';
import { NEEDS, AMBIT } from './helpers.js';

const execFileP = promisify(execFile);
const prefixes: string[] = [];
const stateDirs: string[] = [];
const children: ChildProcess[] = [];

/** Starts `ambit demo` in the foreground (L4 only) in a child; its output accumulates in `out()`. */
function startDemo(): { child: ChildProcess; prefix: string; stateDir: string; out: () => string } {
  const prefix = `d${(process.pid % 46656).toString(36)}${prefixes.length}`;
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-demo-cli-'));
  prefixes.push(prefix);
  stateDirs.push(stateDir);
  const [cmd, ...pre] = AMBIT;
  const child = spawn(cmd as string, [...pre, 'demo', '--state-dir', stateDir, '--prefix', prefix, '--no-waypoint'], {
    cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, prefix, stateDir, out: () => out };
}

async function until(what: string, cond: () => boolean, timeoutMs: number, out: () => string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: the demo exited (${child.exitCode ?? child.signalCode}); its output:\n${out()}`);
    if (Date.now() > deadline) throw new Error(`${what} after ${timeoutMs} ms; demo output:\n${out()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The child's exit code once it exited and its output was read to the end ('close', not 'exit'). */
function exited(child: ChildProcess, timeoutMs: number): Promise<number | null | 'timeout'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    child.once('close', (code) => { clearTimeout(timer); resolve(code); });
  });
}

function recordedPids(stateDir: string): number[] {
  try {
    return Object.values(JSON.parse(readFileSync(join(stateDir, 'pids.json'), 'utf8')) as Record<string, number>);
  } catch {
    return [];
  }
}

/** What is left of everything named with `prefix`: netns, the cgroup subtree, the BPF pins. */
async function leftovers(prefix: string): Promise<string[]> {
  const left: string[] = [];
  const netns = (await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
  left.push(...netns.map((n) => `netns ${n}`));
  const cg = join(cgroup2Root(), `ambit-${prefix}`);
  if (existsSync(cg)) left.push(`cgroup ${cg}`);
  const pins = `/sys/fs/bpf/ambit-${prefix}`;
  if (existsSync(pins)) left.push(`pins ${pins}`);
  return left;
}

async function assertGone(t: ExecutionContext, demo: { prefix: string; stateDir: string }, pids: number[]): Promise<void> {
  t.deepEqual(await leftovers(demo.prefix), [], 'netns, cgroups and pins are removed');
  t.deepEqual(pids.filter((p) => pidAlive(p)), [], 'every process the demo started is gone');
  t.false(existsSync(demo.stateDir), 'the state directory is removed');
}

test.after.always(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const dir of stateDirs) {
    await destroyCluster(dir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  for (const prefix of prefixes) {
    const listed = await sh('ip', ['netns', 'list']).catch(() => '');
    for (const n of listed.split('\n').map((l) => l.split(' ')[0] ?? '').filter((x) => x.startsWith(`${prefix}-`))) await sh('ip', ['netns', 'delete', n]).catch(() => undefined);
    await destroyCgroup(join(cgroup2Root(), `ambit-${prefix}`)).catch(() => undefined);
    rmSync(`/sys/fs/bpf/ambit-${prefix}`, { recursive: true, force: true });
  }
});

privilegedTest('ambit demo status reaches the foreground demo from the host; SIGHUP then removes everything', async (t: ExecutionContext) => {
  t.timeout(240_000);
  const demo = startDemo();
  await until('the demo did not reach the foreground', () => demo.out().includes('running in the foreground'), 150_000, demo.out, demo.child);
  // The foreground demo stays up by itself (it once exited here, leaving its mesh running).
  await new Promise((r) => setTimeout(r, 1000));
  t.is(demo.child.exitCode, null, 'the demo stays in the foreground');
  t.regex(demo.out(), /demo status/, 'the printed hints use `ambit demo status`');

  const [cmd, ...pre] = AMBIT;
  const r = await execFileP(cmd as string, [...pre, 'demo', 'status', '--state-dir', demo.stateDir, '--output', 'json'], { cwd: REPO_ROOT, timeout: 60_000 })
    .catch((err: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: err.stdout ?? '', stderr: `${err.stderr ?? ''} (exit ${err.code})` }));
  const report = JSON.parse(r.stdout || '{}') as { healthy?: boolean; control?: { reachable: boolean }; agents?: { node: string; reachable: boolean }[]; problems?: string[] };
  t.true(report.control?.reachable, `control plane reachable: ${r.stdout}${r.stderr}`);
  t.deepEqual((report.agents ?? []).map((a) => `${a.node} ${a.reachable ? 'reachable' : 'UNREACHABLE'}`), ['node-1 reachable', 'node-2 reachable'], r.stdout);
  t.true(report.healthy, `healthy: ${JSON.stringify(report.problems)}`);

  const pids = recordedPids(demo.stateDir);
  t.true(pids.length >= 5, `the demo recorded its processes: ${pids.join(', ')}`);
  demo.child.kill('SIGHUP');
  const code = await exited(demo.child, 90_000);
  t.is(code, 0, demo.out());
  t.regex(demo.out(), /SIGHUP: stopping[\s\S]*done: processes, namespaces, cgroups and BPF pins removed/);
  await assertGone(t, demo, pids);
}, NEEDS);

privilegedTest('SIGTERM while the demo is being built removes what it had made', async (t: ExecutionContext) => {
  t.timeout(180_000);
  const demo = startDemo();
  // Signalled while the control plane starts: the cluster and its pods exist, more is on the way.
  await until('the demo did not start its control plane', () => demo.out().includes('control plane: reading'), 120_000, demo.out, demo.child);
  await new Promise((r) => setTimeout(r, 300));
  t.true(existsSync(join(demo.stateDir, 'cluster.json')), 'the cluster was being built');
  const pids = recordedPids(demo.stateDir);
  demo.child.kill('SIGTERM');
  const code = await exited(demo.child, 90_000);
  t.is(code, 0, demo.out());
  t.regex(demo.out(), /SIGTERM: stopping/);
  await assertGone(t, demo, [...pids, ...recordedPids(demo.stateDir)]);
}, NEEDS);
