/**
 * Enrollment: keeps the set of captured local pods equal to what the view asks for.
 *
 * Desired = workloads of this node that the model marks `enrolled` (namespace or pod labelled
 * ambient, not opted out, not host-network), that have an address and a network namespace
 * (annotation `ambit.dev/netns` in file mode; in Kubernetes mode `netnsOf`, which finds the pod's
 * netns from its UID in the node's /proc, see src/agent/kube/), and that do not serve a waypoint
 * (a waypoint terminates HBONE itself).
 *
 * Invariants:
 * - One reconcile runs at a time; changes that arrive meanwhile trigger exactly one more pass.
 * - A pod is enrolled in this order: its certificate is obtained first (so the HBONE listener can
 *   answer the moment sk_lookup steers to it), then Capture.enroll creates the listeners and
 *   registers the netns, then the proxies start serving those listeners.
 * - Release stops capture first (no new connect is redirected), then stops the listeners from
 *   accepting; connections already open keep working until they end.
 * - A pod that changed address or netns is released and enrolled again.
 * - Failures are logged, counted, and retried with backoff; they never stop the other pods. A pod
 *   whose netns cannot be found yet (Kubernetes mode: in the view before its sandbox runs on the
 *   node) is retried the same way, so pods and agent may start in any order.
 * - A restarted agent enrolls pods the previous one pinned by adopting their sk_lookup links
 *   (Capture does that inside enroll), and releases pinned pods that are no longer desired.
 * - An upgraded agent serves the very listeners its predecessor handed over (`inherited`), so a
 *   pod is never without a listener; a frozen enrollment (the predecessor's) changes nothing.
 */
import type { Server } from 'node:net';
import type { Logger } from '../util/log.js';
import type { InheritedPodListeners, PodCapture, PodListeners } from '../ebpf/capture.js';
import { ANNOTATION_NETNS } from '../model/compile/types.js';
import type { CredentialSource } from '../identity/manager.js';
import type { MeshState, WorkloadView } from './mesh-state.js';
import type { OutboundProxy } from './outbound.js';
import type { InboundHbone, PodHboneServer } from './inbound.js';
import type { InboundPlaintext } from './inbound-plaintext.js';
import type { AgentMetrics } from './metrics.js';

/** The part of src/ebpf Capture enrollment uses. */
export interface CaptureBackend {
  enroll(pod: PodCapture, inherited?: InheritedPodListeners): Promise<PodListeners>;
  release(podId: string): boolean;
  pods(): { id: string; enrolled: boolean }[];
}

export interface EnrolledPod {
  key: string;
  address: string;
  netnsPath: string;
  identity: string;
  netnsCookie: string;
  enrolledAt: Date;
  servers: Server[];
  hbone: PodHboneServer;
  /** The listener fds the servers serve (handed to the next agent on upgrade). */
  listeners: PodListeners;
}

export interface EnrollmentOptions {
  capture: CaptureBackend;
  credentials: CredentialSource & { forget?(identity: string): void };
  outbound: OutboundProxy;
  inbound: InboundHbone;
  plaintext: InboundPlaintext;
  metrics: AgentMetrics;
  log: Logger;
  /** First retry delay after a failed enroll, ms (default 1000), doubled up to 30 s. */
  retryMs?: number;
  /**
   * Finds a pod's netns when it has no `ambit.dev/netns` annotation (Kubernetes mode:
   * PodLocator.netnsPath by pod UID). Default: none, the annotation is required (file mode).
   */
  netnsOf?: NetnsLookup;
  /** Listeners a previous agent handed over for a pod (upgrade, src/agent/handover.ts); default none. */
  inherited?: (podId: string) => InheritedPodListeners | undefined;
}

/** A pod's netns path, or why it cannot be found (yet: `retry` true). */
export type NetnsLookup = (w: WorkloadView) => { path: string } | { reason: string; retry: boolean };

function captureFor(w: WorkloadView, netnsOf: NetnsLookup | undefined): { pod: PodCapture } | { reason: string; retry: boolean } {
  if (!w.enrolled) return { reason: 'not in the ambient mesh', retry: false };
  if (w.waypointFor !== undefined) return { reason: 'serves a waypoint', retry: false };
  if (w.ip === undefined) return { reason: 'has no address yet', retry: false };
  const netns = w.annotations[ANNOTATION_NETNS];
  if (netns !== undefined && netns !== '') return { pod: { id: w.key, netnsPath: netns, address: w.ip } };
  if (netnsOf === undefined) return { reason: `has no ${ANNOTATION_NETNS} annotation (file mode needs the pod's netns path)`, retry: false };
  const found = netnsOf(w);
  if ('path' in found) return { pod: { id: w.key, netnsPath: found.path, address: w.ip } };
  return found;
}

/** What enrollment wants for one workload, or why not. */
export function desiredCapture(w: WorkloadView, netnsOf?: NetnsLookup): PodCapture | string {
  const c = captureFor(w, netnsOf);
  return 'pod' in c ? c.pod : c.reason;
}

export class Enrollment {
  private readonly pods = new Map<string, EnrolledPod>();
  private running: Promise<void> | undefined;
  private again = false;
  private state: MeshState | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private readonly warned = new Set<string>();
  /** Reconcile passes completed (readiness: at least one). */
  passes = 0;

  constructor(private readonly opts: EnrollmentOptions) {}

  enrolled(): EnrolledPod[] {
    return [...this.pods.values()];
  }

  /** Aligns capture with `state` (coalesces calls made while a pass is running). */
  update(state: MeshState): Promise<void> {
    this.state = state;
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async pass(): Promise<void> {
    const state = this.state;
    if (state === undefined || this.stopped) return;
    const desired = new Map<string, { pod: PodCapture; w: WorkloadView }>();
    let waiting = 0;
    for (const w of state.localWorkloads()) {
      const d = captureFor(w, this.opts.netnsOf);
      if (!('pod' in d)) {
        if (d.retry) waiting++;
        if (w.enrolled && !this.warned.has(`${w.key}:${d.reason}`)) {
          this.warned.add(`${w.key}:${d.reason}`);
          this.opts.log.warn({ pod: w.key, reason: d.reason }, d.retry ? 'pod is in the mesh but not located on this node yet; will retry' : 'pod is in the mesh but cannot be captured');
        }
        continue;
      }
      desired.set(w.key, { pod: d.pod, w });
    }
    // Releases first: a pod that moved netns or address is released, then enrolled below.
    for (const [key, p] of [...this.pods]) {
      const want = desired.get(key);
      if (want === undefined || want.pod.address !== p.address || want.pod.netnsPath !== p.netnsPath || want.w.identity !== p.identity) {
        this.releasePod(p, want === undefined ? 'no longer in the mesh on this node' : 'address, netns or identity changed');
      }
    }
    // Pods pinned by a previous agent that are not wanted any more.
    for (const p of this.opts.capture.pods()) {
      if (!p.enrolled && !desired.has(p.id)) {
        this.opts.capture.release(p.id);
        this.opts.log.info({ pod: p.id }, 'released a pod pinned by the previous agent: no longer in the mesh');
      }
    }
    let failed = 0;
    for (const [key, { pod, w }] of desired) {
      if (this.pods.has(key) || this.stopped) continue;
      try {
        await this.enrollPod(pod, w);
      } catch (err) {
        failed++;
        this.opts.metrics.enrollFailures.inc();
        this.opts.log.error({ pod: key, netns: pod.netnsPath, code: (err as { code?: string }).code, err: (err as Error).message }, 'cannot enroll pod; will retry');
      }
    }
    this.forgetUnusedIdentities(state);
    this.opts.metrics.enrolledPods.set(this.pods.size);
    this.passes++;
    clearTimeout(this.retryTimer);
    if ((failed > 0 || waiting > 0) && !this.stopped) {
      const delay = Math.min(30_000, (this.opts.retryMs ?? 1000) * 2 ** this.failures++);
      this.retryTimer = setTimeout(() => { if (this.state !== undefined) void this.update(this.state); }, delay);
      this.retryTimer.unref();
    } else {
      this.failures = 0;
    }
  }

  private async enrollPod(pod: PodCapture, w: WorkloadView): Promise<void> {
    await this.opts.credentials.credentials(w.identity);
    const inherited = this.opts.inherited?.(pod.id);
    if (inherited !== undefined) this.opts.log.info({ pod: w.key }, 'serving the listeners the previous agent handed over');
    const l = await this.opts.capture.enroll(pod, inherited);
    const servers: Server[] = [];
    let hbone: PodHboneServer | undefined;
    try {
      servers.push(await this.opts.outbound.listen(w, { fd: l.outbound }));
      if (l.outbound6 !== undefined) servers.push(await this.opts.outbound.listen(w, { fd: l.outbound6 }));
      servers.push(await this.opts.plaintext.listen(w, { fd: l.inboundPlain }));
      hbone = await this.opts.inbound.listen(w, { fd: l.inboundHbone });
    } catch (err) {
      this.opts.capture.release(pod.id);
      for (const s of servers) s.close();
      hbone?.stopAccepting();
      throw err;
    }
    this.pods.set(w.key, { key: w.key, address: pod.address, netnsPath: pod.netnsPath, identity: w.identity, netnsCookie: String(l.netnsCookie), enrolledAt: new Date(), servers, hbone, listeners: l });
    this.opts.log.info({ pod: w.key, address: pod.address, identity: w.identity }, 'pod captured');
  }

  private releasePod(p: EnrolledPod, why: string): void {
    try {
      this.opts.capture.release(p.key);
    } catch (err) {
      this.opts.log.error({ pod: p.key, err: (err as Error).message }, 'capture release failed');
    }
    for (const s of p.servers) s.close();
    p.hbone.stopAccepting();
    this.pods.delete(p.key);
    this.opts.log.info({ pod: p.key, reason: why }, 'pod released; its open connections continue');
  }

  private forgetUnusedIdentities(state: MeshState): void {
    const forget = this.opts.credentials.forget;
    if (forget === undefined) return;
    const used = new Set([...this.pods.values()].map((p) => p.identity));
    for (const w of state.localWorkloads()) used.add(w.identity);
    const ids = (this.opts.credentials as { identities?: () => string[] }).identities?.() ?? [];
    for (const id of ids) if (!used.has(id)) forget.call(this.opts.credentials, id);
  }

  /**
   * No more passes (a newer agent took the listeners over): capture is left exactly as it is,
   * and the listeners keep accepting until stop().
   */
  freeze(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  /** Stops the listeners of every pod (drain); capture stays pinned for the next agent. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.running?.catch(() => {});
    const closing: Promise<void>[] = [];
    for (const p of this.pods.values()) {
      for (const s of p.servers) closing.push(new Promise((r) => s.close(() => r())));
      closing.push(p.hbone.close(graceMs).catch(() => {}));
    }
    // net.Server#close resolves once its connections end; the drain deadline is the caller's.
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }
}
