/**
 * Capture self-check: every `intervalMs` the agent reads back from the kernel what capture of each
 * enrolled pod depends on (src/ebpf/capture-inspect.ts) and reports the pods whose capture is
 * broken, so an operator learns that traffic may bypass or miss the mesh before users do:
 * - the cgroup programs (connect4/6, sockops, getsockopt) are still attached to the capture
 *   cgroup, and their links and the maps are still pinned under the pin dir (a pod depends on them
 *   all, so their loss breaks every pod);
 * - the pod's sk_lookup link is still attached, to the pod's own netns, and still pinned;
 * - the pod's record (its netns cookie) is in `ambit_pods`, and its address in `ambit_podaddrs`
 *   (without it sk_lookup lets inbound to the pod reach the app around the agent);
 * - its inbound plaintext and HBONE listeners are in `ambit_inbound` and its outbound capture
 *   listener in `ambit_outbound` (without them the pod's traffic is refused, fail closed), and
 *   they are the sockets that were there when the pod was enrolled (a replaced entry steers the
 *   pod's traffic elsewhere).
 *
 * It reports through `ambit_capture_healthy{pod}` (1 healthy, 0 broken), one log line per
 * transition (broken, with what is missing; what is missing changed; healthy again), `dump()` for
 * /config_dump (and so `ambit status`), and `broken()` for readiness.
 *
 * Invariants: the check only reads (repair is enrollment's business); a pod is judged only
 * while enrollment lists it as enrolled, so enrolling and releasing pods are never reported;
 * labels of pods that left are removed from the gauge.
 */
import { statSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import type { CaptureKernelState, PodKernelState } from '../ebpf/capture-inspect.js';

/** What the check needs to know about an enrolled pod. */
export interface CheckedPod {
  key: string;
  netnsPath: string;
  enrolledAt: Date;
}

export interface CaptureCheckOptions {
  /** Reads the kernel's capture state (Capture.inspect). */
  inspect: () => CaptureKernelState;
  /** The pods enrollment has captured (Enrollment.enrolled). */
  pods: () => CheckedPod[];
  registry: Registry;
  log: Logger;
  /** Period of the check, ms (default 1000). */
  intervalMs?: number;
  /** Inode of a netns path, undefined when it is gone (default: stat(2) of the path). */
  netnsInode?: (path: string) => number | undefined;
}

export interface PodCaptureHealth {
  pod: string;
  healthy: boolean;
  /** What is missing or wrong, in an operator's words; empty when healthy. */
  missing: string[];
  /** When the pod entered its current state. */
  since: Date;
  /** The pod's sk_lookup link id (as `bpftool link show` lists it), when readable. */
  linkId?: number;
}

type Listeners = PodKernelState['listeners'];

function statInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Problems every pod shares: cgroup programs and map pins. */
export function nodeProblems(view: CaptureKernelState): string[] {
  const out: string[] = [];
  for (const c of view.cgroupPrograms) {
    if (c.error !== undefined) out.push(`cgroup program ${c.program}: link unreadable (${c.error})`);
    else if (!c.attached) out.push(`cgroup program ${c.program} (link ${c.id}) is not attached to ${view.cgroupPath}`);
    if (!c.pinned) out.push(`cgroup link pin ${c.pin} is missing`);
  }
  for (const m of view.maps) if (!m.pinned) out.push(`map pin ${m.pin} is missing`);
  return out;
}

/**
 * What is wrong with one pod's capture. `netnsIno` is the inode of the pod's netns (undefined
 * when the path is gone); `enrolled` the listener cookies seen when it was first checked.
 */
export function podProblems(s: PodKernelState | undefined, netnsIno: number | undefined, enrolled?: Listeners): string[] {
  if (s === undefined) return ['capture holds no sk_lookup link or record for the pod (released underneath the agent?)'];
  const out: string[] = [];
  const l = s.link;
  if (l.error !== undefined) out.push(`sk_lookup link unreadable (${l.error})`);
  else if (!l.attached) out.push(`sk_lookup link ${l.id} is detached from the pod's netns`);
  else if (netnsIno === undefined) out.push(`the pod's netns is gone (sk_lookup link ${l.id} points at netns inode ${l.netnsIno})`);
  else if (l.netnsIno !== netnsIno) out.push(`sk_lookup link ${l.id} is attached to netns inode ${l.netnsIno}, not the pod's (${netnsIno})`);
  if (!l.pinned) out.push(`sk_lookup link pin ${l.pin} is missing`);
  if (!s.record) out.push(`netns cookie ${s.netnsCookie} is missing from ambit_pods (outbound connects are not captured)`);
  if (s.addressCookie === null) out.push(`address ${s.address} is missing from ambit_podaddrs (inbound to the pod bypasses the agent)`);
  else if (s.addressCookie !== undefined && s.addressCookie !== s.netnsCookie) out.push(`address ${s.address} in ambit_podaddrs belongs to netns cookie ${s.addressCookie}, not the pod's (${s.netnsCookie})`);
  const listener = (name: string, map: string, now: bigint | null | undefined, then: bigint | null | undefined) => {
    if (now === undefined) return;
    if (now === null) out.push(`${name} listener of ${s.address} is missing from ${map}`);
    else if (then !== undefined && then !== null && now !== then) out.push(`${name} listener of ${s.address} in ${map} was replaced (socket cookie ${now}, enrolled ${then})`);
  };
  listener('inbound plaintext', 'ambit_inbound', s.listeners.plaintext, enrolled?.plaintext);
  listener('inbound HBONE', 'ambit_inbound', s.listeners.hbone, enrolled?.hbone);
  listener('outbound capture', 'ambit_outbound', s.listeners.outbound, enrolled?.outbound);
  return out;
}

export class CaptureCheck {
  private readonly gauge: Gauge<'pod'>;
  private readonly health = new Map<string, PodCaptureHealth>();
  /** Listener cookies first seen per enrollment (key + enrolledAt). */
  private readonly baseline = new Map<string, Listeners>();
  private timer: NodeJS.Timeout | undefined;
  private lastCheck: Date | undefined;
  private readonly netnsInode: (path: string) => number | undefined;

  constructor(private readonly opts: CaptureCheckOptions) {
    this.netnsInode = opts.netnsInode ?? statInode;
    this.gauge = new Gauge({
      name: 'ambit_capture_healthy',
      help: '1 while every kernel object capturing the pod is in place (cgroup programs, sk_lookup link, listeners in the maps, pins), 0 while something is missing (see the agent log and /config_dump)',
      labelNames: ['pod'],
      registers: [opts.registry],
    });
  }

  get intervalMs(): number {
    return this.opts.intervalMs ?? 1000;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Runs one check now and returns every enrolled pod's health. */
  check(now = new Date()): PodCaptureHealth[] {
    const pods = this.opts.pods();
    let view: CaptureKernelState | undefined;
    let unreadable: string | undefined;
    try {
      view = this.opts.inspect();
    } catch (err) {
      unreadable = `capture state unreadable (${(err as Error).message})`;
    }
    const shared = view === undefined ? [unreadable ?? 'capture state unreadable'] : nodeProblems(view);
    const byId = new Map((view?.pods ?? []).map((p) => [p.id, p]));
    const seen = new Set<string>();
    for (const pod of pods) {
      seen.add(pod.key);
      const s = byId.get(pod.key);
      const epoch = `${pod.key}@${pod.enrolledAt.getTime()}`;
      if (s !== undefined && !this.baseline.has(epoch) && Object.values(s.listeners).every((c) => c !== null)) {
        this.baseline.set(epoch, { ...s.listeners });
      }
      const missing = view === undefined ? shared : [...shared, ...podProblems(s, this.netnsInode(pod.netnsPath), this.baseline.get(epoch))];
      this.record(pod.key, missing, s?.link.id, now);
    }
    for (const key of [...this.health.keys()]) {
      if (seen.has(key)) continue;
      this.health.delete(key);
      this.gauge.remove({ pod: key });
    }
    const epochs = new Set(pods.map((p) => `${p.key}@${p.enrolledAt.getTime()}`));
    for (const e of [...this.baseline.keys()]) if (!epochs.has(e)) this.baseline.delete(e);
    this.lastCheck = now;
    return [...this.health.values()];
  }

  private record(pod: string, missing: string[], linkId: number | undefined, now: Date): void {
    const prev = this.health.get(pod);
    const healthy = missing.length === 0;
    const changed = prev === undefined ? !healthy : prev.healthy !== healthy || prev.missing.join('\n') !== missing.join('\n');
    const since = prev === undefined || prev.healthy !== healthy ? now : prev.since;
    this.health.set(pod, { pod, healthy, missing, since, ...(linkId !== undefined && linkId !== 0 ? { linkId } : {}) });
    this.gauge.set({ pod }, healthy ? 1 : 0);
    if (!changed) return;
    if (!healthy) {
      this.opts.log.error({ pod, missing, ...(linkId ? { link: linkId } : {}) }, `capture of pod ${pod} is broken: ${missing.join('; ')}`);
    } else {
      this.opts.log.info({ pod, brokenForMs: prev === undefined ? 0 : now.getTime() - prev.since.getTime() }, `capture of pod ${pod} is healthy again`);
    }
  }

  /**
   * Pods whose capture is broken, with what is missing (readiness fails while any is). A pod
   * enrolled since the last tick is checked now, so readiness never vouches for an unchecked pod.
   */
  broken(): PodCaptureHealth[] {
    if (this.opts.pods().some((p) => !this.health.has(p.key))) this.check();
    return [...this.health.values()].filter((h) => !h.healthy);
  }

  /** The last verdict on one pod (undefined before its first check). */
  podHealth(pod: string): PodCaptureHealth | undefined {
    return this.health.get(pod);
  }

  /** For /config_dump. */
  dump(): { intervalMs: number; lastCheck: string | null; pods: PodCaptureHealth[] } {
    return { intervalMs: this.intervalMs, lastCheck: this.lastCheck?.toISOString() ?? null, pods: [...this.health.values()] };
  }
}
