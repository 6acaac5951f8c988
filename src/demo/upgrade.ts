/**
 * `ambit demo upgrade-agent NODE`: the zero-downtime agent upgrade (docs/operations.md#upgrades)
 * exactly as a DaemonSet rollout with `maxSurge: 1, maxUnavailable: 0` performs it, in the demo
 * mesh:
 *
 *   1. start a second agent for the node (same --state-dir, so it takes the running agent's
 *      listeners over <state-dir>/handover.sock, src/agent/handover.ts, and adopts the pins);
 *   2. wait until *that* agent is ready: readiness on 15021 answers 200 with its own pid in
 *      `x-ambit-pid` (both agents accept on the same socket; the old one answers 503 once it
 *      handed over);
 *   3. SIGTERM the old agent (it stops accepting and drains, as the kubelet would make it);
 *   4. wait for it to exit.
 *
 * Invariants: at no step is a pod without a listener; if the new agent dies or is not ready in
 * time it is stopped and the old one stays the node's agent (the upgrade fails, nothing breaks).
 */
import type { ChildProcess } from 'node:child_process';
import { execIn } from './cluster.js';
import { ClusterError } from './cluster.js';
import type { DemoMesh } from './mesh.js';

export interface UpgradeOptions {
  /** How long the new agent may take to be ready, ms (default 30,000). */
  readyTimeoutMs?: number;
  /** How long the old agent may take to drain and exit, ms (default: its drain deadline + 15 s). */
  exitTimeoutMs?: number;
  progress?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** The drain deadline the mesh's agents run with (--drain-ms / --drain-seconds, default 30 s). */
export function drainMsOf(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = (args[i] as string).split('=', 2);
    const v = inline ?? args[i + 1];
    if (flag === '--drain-ms' && v !== undefined) return Number(v);
    if (flag === '--drain-seconds' && v !== undefined) return Number(v) * 1000;
  }
  return 30_000;
}

/** Readiness of the node's agent as one request sees it: status and the pid that answered. */
async function readiness(mesh: DemoMesh, node: string): Promise<{ status: number; pid: number }> {
  const script = `fetch('http://127.0.0.1:15021/healthz/ready',{signal:AbortSignal.timeout(2000)}).then(r=>process.stdout.write(r.status+' '+(r.headers.get('x-ambit-pid')??0)),()=>process.stdout.write('0 0'))`;
  const r = await execIn({ netns: mesh.cluster.node(node).netns }, process.execPath, ['-e', script], { timeoutMs: 7000 });
  const [status, pid] = r.stdout.trim().split(' ').map(Number);
  return { status: status ?? 0, pid: pid ?? 0 };
}

/** Performs the hand-over on `node`; resolves with both pids once the old agent is gone. */
export async function upgradeAgent(mesh: DemoMesh, node: string, opts: UpgradeOptions = {}): Promise<{ oldPid: number; newPid: number }> {
  const say = opts.progress ?? (() => {});
  mesh.cluster.node(node);
  const oldPid = mesh.agentPid(node);
  if (oldPid === undefined || !alive(oldPid)) throw new ClusterError(`no agent is running for ${node}: nothing to upgrade (start the demo first)`);
  say(`starting a new agent for ${node} next to the running one (pid ${oldPid})`);
  const child: ChildProcess = await mesh.startAgent(node);
  const newPid = child.pid;
  if (newPid === undefined) throw new ClusterError(`cannot start a new agent for ${node}`);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let last = { status: 0, pid: 0 };
  try {
    for (;;) {
      if (!alive(newPid) || child.exitCode !== null) throw new ClusterError(`the new agent of ${node} (pid ${newPid}) exited before it was ready; see ${mesh.stateDir}/logs/agent-${node}.log`);
      last = await readiness(mesh, node);
      if (last.status === 200 && last.pid === newPid) break;
      if (Date.now() > deadline) throw new ClusterError(`the new agent of ${node} (pid ${newPid}) is not ready after ${opts.readyTimeoutMs ?? 30_000} ms (last readiness: ${last.status} from pid ${last.pid})`);
      await sleep(100);
    }
  } catch (err) {
    try { process.kill(newPid, 'SIGTERM'); } catch { /* gone */ }
    mesh.setAgentPid(node, oldPid);
    throw err;
  }
  say(`new agent ready (pid ${newPid}); sent SIGTERM to the old agent (pid ${oldPid}): it stops accepting and drains`);
  process.kill(oldPid, 'SIGTERM');
  const exitBy = Date.now() + (opts.exitTimeoutMs ?? drainMsOf(mesh.agentArgs) + 15_000);
  while (alive(oldPid)) {
    if (Date.now() > exitBy) throw new ClusterError(`the old agent of ${node} (pid ${oldPid}) has not exited after its drain deadline`);
    await sleep(50);
  }
  say(`old agent (pid ${oldPid}) exited; ${node} is served by pid ${newPid}`);
  return { oldPid, newPid };
}
