/**
 * One pass over the node's /proc (mounted at /host/proc in the agent's DaemonSet): every process
 * that runs in a Kubernetes pod, grouped by pod UID, with the network namespace and the pod-level
 * cgroup of that pod.
 *
 * Why /proc and not the container runtime's API: it works with every runtime (containerd, CRI-O,
 * Docker), both cgroup drivers and both cgroup hierarchies, needs no socket mounted into the
 * agent, and gives exactly what capture needs: a path to the pod's netns (`/proc/<pid>/ns/net`)
 * that stays valid while the pod's sandbox (pause) process lives.
 *
 * Invariants:
 * - A pod's representative process is its oldest one (smallest start time, then smallest pid):
 *   the sandbox ("pause") process, which lives as long as the pod, so the netns path is stable
 *   across container restarts.
 * - Processes that share the node's own netns (hostNetwork pods) are reported with
 *   `hostNetwork: true`; capture never enrolls them.
 * - Processes that exit while being read are skipped silently (a scan races with the node);
 *   only an unreadable /proc itself is an error.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { podFromProcCgroup, type PodCgroup } from './cgroup-path.js';
import { PodDiscoveryError } from './errors.js';

/** Where one pod lives on this node. */
export interface PodLocation {
  /** Pod UID (`metadata.uid`). */
  podUid: string;
  /** The pod's representative (oldest) process, as numbered in `procRoot`. */
  pid: number;
  /** `<procRoot>/<pid>/ns/net`: what capture enrolls. */
  netnsPath: string;
  /** `net:[inode]` identity of the netns (two pods never share one unless hostNetwork). */
  netns: string;
  /** The pod-level cgroup (relative to its hierarchy), driver and hierarchy it was read from. */
  cgroup: Omit<PodCgroup, 'path' | 'containerId'>;
  /** Container IDs seen in the pod. */
  containers: string[];
  /** Every pid of the pod in `procRoot`. */
  pids: number[];
  /** True when the pod shares the node's netns (hostNetwork); never captured. */
  hostNetwork: boolean;
}

export interface ScanOptions {
  /** The node's procfs (default `/proc`; `/host/proc` in the DaemonSet). */
  procRoot?: string;
  /**
   * The node's own netns identity (`net:[inode]`) to recognise hostNetwork pods
   * (default: read from `<procRoot>/1/ns/net`, the node's init).
   */
  hostNetns?: string;
}

function startTime(procRoot: string, pid: string): number {
  // Field 22 of /proc/<pid>/stat, after the parenthesised command (which may contain spaces).
  const stat = readFileSync(join(procRoot, pid, 'stat'), 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[19]);
}

/** Reads `<procRoot>` once and returns the pods it finds, by UID. */
export function scanPods(opts: ScanOptions = {}): Map<string, PodLocation> {
  const procRoot = opts.procRoot ?? '/proc';
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch (err) {
    throw new PodDiscoveryError(`cannot read ${procRoot} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the agent needs the node's /proc mounted there (hostPath /proc at /host/proc)`, { cause: err });
  }
  let hostNetns = opts.hostNetns;
  if (hostNetns === undefined) {
    try { hostNetns = readlinkSync(join(procRoot, '1', 'ns', 'net')); } catch { hostNetns = undefined; }
  }
  const best = new Map<string, { loc: PodLocation; start: number }>();
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue;
    let pod: PodCgroup | undefined;
    let netns: string;
    let start: number;
    try {
      pod = podFromProcCgroup(readFileSync(join(procRoot, pid, 'cgroup'), 'utf8'));
      if (pod === undefined) continue;
      netns = readlinkSync(join(procRoot, pid, 'ns', 'net'));
      start = startTime(procRoot, pid);
    } catch {
      continue; // exited meanwhile, or a kernel thread
    }
    const n = Number(pid);
    const cur = best.get(pod.podUid);
    if (cur === undefined) {
      best.set(pod.podUid, {
        start,
        loc: {
          podUid: pod.podUid, pid: n, netnsPath: join(procRoot, pid, 'ns', 'net'), netns,
          cgroup: { podUid: pod.podUid, podPath: pod.podPath, driver: pod.driver, hierarchy: pod.hierarchy },
          containers: pod.containerId !== undefined ? [pod.containerId] : [], pids: [n], hostNetwork: netns === hostNetns,
        },
      });
      continue;
    }
    cur.loc.pids.push(n);
    if (pod.containerId !== undefined && !cur.loc.containers.includes(pod.containerId)) cur.loc.containers.push(pod.containerId);
    if (start < cur.start || (start === cur.start && n < cur.loc.pid)) {
      cur.start = start;
      cur.loc.pid = n;
      cur.loc.netnsPath = join(procRoot, pid, 'ns', 'net');
      cur.loc.netns = netns;
      cur.loc.hostNetwork = netns === hostNetns;
    }
  }
  const out = new Map<string, PodLocation>();
  for (const [uid, { loc }] of best) {
    loc.pids.sort((a, b) => a - b);
    out.set(uid, loc);
  }
  return out;
}
