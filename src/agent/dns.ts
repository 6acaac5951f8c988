/**
 * The agent's DNS service: ties DNS capture (src/ebpf/dns-capture.ts) and the DNS proxy
 * (dns-proxy.ts) to the agent's view and enrolled pods. Enabled by `--dns-capture` (default
 * true, as Istio ambient's DNS capture in recent releases; `--dns-capture=false` turns it off and
 * detaches a previous agent's DNS programs).
 *
 * Invariants:
 * - The pods whose DNS is captured are exactly the pods enrollment captured (`sync()` after each
 *   enrollment pass): a pod gets its DNS socket after its TCP capture, and loses it when released.
 * - The name table follows the view in force (`sync()` swaps it when the view changed).
 * - DNS failures never fail enrollment: a pod whose DNS socket cannot be bound keeps its TCP
 *   capture and resolves through its own resolver (retried at the next pass).
 */
import dgram from 'node:dgram';
import { createServer, type Server } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import { DnsCapture } from '../ebpf/dns-capture.js';
import { DnsNameTable } from './dns-names.js';
import { DnsProxy } from './dns-proxy.js';
import { createDnsMetrics, registerDnsCaptureMetrics } from './dns-metrics.js';
import type { MeshState } from './mesh-state.js';

export interface AgentDnsOptions {
  pinDir: string;
  cgroupPath: string;
  /** Capture pods' DNS (default true); false detaches a previous agent's DNS programs. */
  enabled?: boolean;
  /** DNS listener port (UDP and TCP) on 127.0.0.1 in each pod netns (default 15053). */
  port?: number;
  /** Capture's outbound listener port in each pod netns (default 15001). */
  capturePort?: number;
  /** Kubernetes cluster domain (default cluster.local). */
  clusterDomain?: string;
  registry: Registry;
  logger: Logger;
}

interface DnsPod {
  netnsPath: string;
  socket: dgram.Socket;
  tcp: Server | undefined;
}

export class AgentDns {
  readonly #capture: DnsCapture;
  readonly #proxy: DnsProxy;
  readonly #pods = new Map<string, DnsPod>();
  readonly #clusterDomain: string;
  readonly #log: Logger;
  #state: MeshState | undefined;
  #busy: Promise<void> = Promise.resolve();
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;

  private constructor(capture: DnsCapture, proxy: DnsProxy, clusterDomain: string, log: Logger) {
    this.#capture = capture;
    this.#proxy = proxy;
    this.#clusterDomain = clusterDomain;
    this.#log = log;
  }

  /**
   * Opens DNS capture, or (enabled false) removes a previous agent's and returns undefined. A
   * DNS capture that cannot be opened (kernel without the hooks, object not built) is logged and
   * the agent runs without it (undefined): pods then resolve through their own resolvers, as DNS
   * capture fails open anyway; connection capture is not affected.
   */
  static async open(opts: AgentDnsOptions): Promise<AgentDns | undefined> {
    let capture: DnsCapture | undefined;
    try {
      capture = await DnsCapture.open({
        pinDir: opts.pinDir, cgroupPath: opts.cgroupPath, logger: opts.logger,
        ...(opts.enabled !== undefined ? { enabled: opts.enabled } : {}),
        ...(opts.port !== undefined ? { port: opts.port } : {}),
        ...(opts.capturePort !== undefined ? { capturePort: opts.capturePort } : {}),
      });
    } catch (err) {
      opts.logger.error({ component: 'agent.dns', code: (err as { code?: string }).code, err: (err as Error).message }, 'DNS capture unavailable; pods resolve through their own resolvers (--dns-capture=false silences this)');
      return undefined;
    }
    if (capture === undefined) return undefined;
    const proxy = new DnsProxy({ metrics: createDnsMetrics(opts.registry), logger: opts.logger });
    const open = capture;
    registerDnsCaptureMetrics(opts.registry, () => open.stats());
    return new AgentDns(capture, proxy, opts.clusterDomain ?? 'cluster.local', proxy.log);
  }

  /**
   * Aligns the name table with `state` and the captured pods with `pods` (one sync at a time;
   * every enrollment pass calls it with the latest pods). Pods that failed are retried with the
   * latest arguments, after 1 s doubling up to 30 s.
   */
  sync(state: MeshState, pods: readonly { key: string; netnsPath: string }[]): Promise<void> {
    clearTimeout(this.#retryTimer);
    this.#busy = this.#busy.then(async () => {
      if (this.#closed) return;
      const failed = await this.#sync(state, pods);
      if (failed === 0 || this.#closed) {
        this.#failures = 0;
        return;
      }
      const delay = Math.min(30_000, 1000 * 2 ** this.#failures++);
      this.#retryTimer = setTimeout(() => { void this.sync(state, pods); }, delay);
      this.#retryTimer.unref();
    }).catch((err: unknown) => {
      this.#log.error({ err: (err as Error).message }, 'DNS sync failed');
    });
    return this.#busy;
  }

  /** Returns how many pods could not be captured. */
  async #sync(state: MeshState, pods: readonly { key: string; netnsPath: string }[]): Promise<number> {
    if (state !== this.#state) {
      this.#state = state;
      this.#proxy.setTable(DnsNameTable.fromServices(state.services.values(), { clusterDomain: this.#clusterDomain }));
    }
    const want = new Map(pods.map((p) => [p.key, p]));
    for (const [key, p] of [...this.#pods]) {
      if (want.get(key)?.netnsPath !== p.netnsPath) this.#release(key);
    }
    let failed = 0;
    for (const p of pods) {
      if (this.#pods.has(p.key)) continue;
      try {
        await this.#enroll(p, state.workloads.get(p.key)?.namespace);
      } catch (err) {
        failed++;
        this.#log.warn({ pod: p.key, code: (err as { code?: string }).code, err: (err as Error).message }, 'cannot capture the pod\'s DNS; it resolves through its own resolver until a retry succeeds');
      }
    }
    return failed;
  }

  async #enroll(p: { key: string; netnsPath: string }, namespace: string | undefined): Promise<void> {
    const l = await this.#capture.enroll({ id: p.key, netnsPath: p.netnsPath });
    const socket = dgram.createSocket('udp4');
    const tcp = l.tcpFd === undefined ? undefined : createServer({ allowHalfOpen: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ fd: l.fd }, () => { socket.off('error', reject); resolve(); });
      });
      if (tcp !== undefined) {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ fd: l.tcpFd }, () => { tcp.off('error', reject); resolve(); });
        });
      }
    } catch (err) {
      this.#capture.release(p.key);
      socket.close();
      tcp?.close();
      throw err;
    }
    const capture = this.#capture;
    const client = { id: p.key, ...(namespace !== undefined ? { namespace } : {}), upstream: () => capture.upstream(l.netnsCookie) };
    this.#proxy.serve(socket, client);
    if (tcp !== undefined) this.#proxy.serveTcp(tcp, client);
    this.#pods.set(p.key, { netnsPath: p.netnsPath, socket, tcp });
  }

  #release(key: string): void {
    const p = this.#pods.get(key);
    if (p === undefined) return;
    try { this.#capture.release(key); } catch (err) { this.#log.warn({ pod: key, err: (err as Error).message }, 'DNS release failed'); }
    p.socket.close();
    p.tcp?.close();
    this.#pods.delete(key);
  }

  /** For /config_dump. */
  dump(): Record<string, unknown> {
    let kernel: Record<string, number> | undefined;
    try { kernel = this.#capture.stats(); } catch { kernel = undefined; }
    return { port: this.#capture.port, names: this.#proxy.table.size, pods: [...this.#pods.keys()], kernel };
  }

  /** Closes the pods' DNS sockets; the programs stay pinned for the next agent unless `cleanup`. */
  async close(opts: { cleanup?: boolean } = {}): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    await this.#busy;
    this.#proxy.close();
    for (const key of [...this.#pods.keys()]) {
      if (opts.cleanup === true) this.#release(key);
      else { this.#pods.get(key)?.socket.close(); this.#pods.get(key)?.tcp?.close(); this.#pods.delete(key); }
    }
    this.#capture.close(opts);
  }
}
