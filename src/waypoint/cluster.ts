/**
 * Per-destination runtime state: for each (service host, subset, port) the endpoints that belong
 * to it, their in-flight counts, the load balancer, outlier detector and pool limiter built from
 * the destination's traffic policy, and per service the retry budget. The state outlives config
 * updates: an update that leaves a destination's endpoints and policy unchanged keeps its
 * counters, ejections and buckets; a changed policy rebuilds only what derives from it.
 *
 * Invariants: an endpoint belongs to a destination only when it is ready, matches the subset's
 * labels, and resolves the service port to a target port; endpoints of enrolled workloads carry
 * the workload's SPIFFE identity (reached over HBONE), others none (plain TCP).
 */
import type { DestinationPolicy, OutlierDetectionPolicy, TrafficPolicy } from '../model/compile/types.js';
import { createBalancer, type Balancer, type ConsistentHashPolicy } from './balancer.js';
import type { WaypointConfig, WaypointServiceInfo } from './config.js';
import { OutlierDetector } from './outlier.js';
import { PoolLimiter } from './pool-limits.js';
import { RetryBudget, type RetryBudgetOptions } from './retry.js';
import { poolKey, type UpstreamTarget } from './upstream.js';
import { loadOrigination, type OriginationTls } from './tls-origination.js';

export interface ClusterEndpoint extends UpstreamTarget {
  active: number;
  /** `namespace/name` of the workload. */
  readonly workload: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * The traffic policy group as the waypoint reads it: the model's, with `consistentHash` (compiled
 * by the model from `loadBalancer.consistentHash`) read as the balancer's own policy type.
 */
type PolicyGroup = Omit<TrafficPolicy, 'ports'> & { readonly consistentHash?: ConsistentHashPolicy };

export class Cluster {
  /** Envoy-style name `outbound|port|subset|host`. */
  readonly name: string;
  endpoints: ClusterEndpoint[] = [];
  balancer!: Balancer<ClusterEndpoint>;
  outlier: OutlierDetector | undefined;
  limiter!: PoolLimiter;
  consistentHash: ConsistentHashPolicy | undefined;
  /** TLS originated to endpoints outside the mesh (DestinationRule tls), files loaded. */
  private tls: OriginationTls | undefined;
  private policySig = '\u0000';
  private endpointSig = '\u0000';
  private lastSweep = 0;
  /** The config the cluster was last updated from. */
  seen: WaypointConfig | undefined;

  constructor(
    readonly service: WaypointServiceInfo,
    readonly subset: string | undefined,
    readonly port: number,
    readonly protocol: 'http1' | 'http2',
    readonly budget: RetryBudget,
    private readonly now: () => number,
    private readonly onEject: (c: Cluster, key: string, untilMs: number) => void,
    private readonly rand: () => number,
  ) {
    this.name = `outbound|${port}|${subset ?? ''}|${service.hostname}`;
  }

  /** Applies the current service and policy; cheap when nothing changed. */
  update(service: WaypointServiceInfo, policy: DestinationPolicy | undefined, config: WaypointConfig): void {
    const subset = policy?.subsets.find((s) => s.name === this.subset);
    const top: TrafficPolicy | undefined = subset?.trafficPolicy ?? policy?.trafficPolicy;
    const group: PolicyGroup | undefined = top === undefined ? undefined : ((top.ports[this.port] as PolicyGroup | undefined) ?? top);
    const psig = JSON.stringify([group?.loadBalancer, group?.consistentHash, group?.connectionPool, group?.outlierDetection, group?.tls]);
    if (psig !== this.policySig) {
      this.policySig = psig;
      this.tls = group?.tls === undefined ? undefined : loadOrigination(group.tls);
      this.consistentHash = group?.consistentHash;
      this.balancer = createBalancer<ClusterEndpoint>({ ...(group?.loadBalancer !== undefined ? { policy: group.loadBalancer } : {}), ...(group?.consistentHash !== undefined ? { consistentHash: group.consistentHash } : {}), rand: this.rand });
      this.limiter = new PoolLimiter(group?.connectionPool, this.protocol);
      const od: OutlierDetectionPolicy | undefined = group?.outlierDetection;
      this.outlier = od === undefined ? undefined : new OutlierDetector(od, this.now, (key, until) => this.onEject(this, key, until));
    }
    const labels = subset?.labels ?? {};
    const eps: ClusterEndpoint[] = [];
    for (const e of service.endpoints) {
      if (!e.ready) continue;
      let ok = true;
      for (const [k, v] of Object.entries(labels)) if (e.labels[k] !== v) ok = false;
      if (!ok) continue;
      const port = e.ports[this.port];
      if (port === undefined) continue;
      const w = config.workload(e.workload);
      const identity = e.enrolled ? w?.identity : undefined;
      // A ServiceEntry DNS endpoint has a name instead of an address; the connect resolves it.
      const ip = e.hostname ?? e.ip;
      // TLS is originated only to endpoints outside the mesh; mesh endpoints are reached over HBONE.
      const tls = identity === undefined ? this.tls : undefined;
      eps.push({ key: `${ip}:${port}`, ip, port, identity, ...(tls !== undefined ? { tls } : {}), workload: e.workload, labels: e.labels, active: 0 });
    }
    const esig = eps.map((e) => poolKey(e)).join(',');
    if (esig !== this.endpointSig) {
      this.endpointSig = esig;
      const old = new Map(this.endpoints.map((e) => [e.key, e]));
      this.endpoints = eps.map((e) => {
        const prev = old.get(e.key);
        if (prev !== undefined) e.active = prev.active;
        return e;
      });
      this.outlier?.retain(this.endpoints.map((e) => e.key));
    }
  }

  /** Keys of every endpoint. */
  keys(): string[] {
    return this.endpoints.map((e) => e.key);
  }

  /** Picks an endpoint not in `tried` and not ejected (unless in panic mode). */
  pick(tried: ReadonlySet<string>, hashKey: string | undefined): ClusterEndpoint | undefined {
    const od = this.outlier;
    let enforcing = false;
    if (od !== undefined) {
      const t = this.now();
      if (t - this.lastSweep >= od.policy.intervalMs) {
        this.lastSweep = t;
        od.sweep();
      }
      enforcing = od.enforcing(this.keys());
    }
    const eligible = (e: ClusterEndpoint) => !tried.has(e.key) && !(enforcing && od !== undefined && od.isEjected(e.key));
    const first = this.balancer.pick(this.endpoints, eligible, hashKey);
    if (first !== undefined || tried.size === 0) return first;
    // Every endpoint was tried already: a retry may go back to one (never to an ejected one).
    return this.balancer.pick(this.endpoints, (e) => !(enforcing && od !== undefined && od.isEjected(e.key)), hashKey);
  }
}

export interface ClusterManagerOptions {
  retryBudget?: RetryBudgetOptions;
  now?: () => number;
  rand?: () => number;
  onEject?: (c: Cluster, key: string, untilMs: number) => void;
}

/** All destinations the waypoint has sent to, keyed by host, subset and port. */
export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();
  /** The same clusters by service object (one config's), found without building a key. */
  private readonly byService = new WeakMap<WaypointServiceInfo, Cluster[]>();
  private readonly budgets = new Map<string, RetryBudget>();
  private readonly now: () => number;

  constructor(private readonly o: ClusterManagerOptions = {}) {
    this.now = o.now ?? Date.now;
  }

  /** The up-to-date cluster for a destination. */
  get(config: WaypointConfig, service: WaypointServiceInfo, subset: string | undefined, port: number, protocol: 'http1' | 'http2'): Cluster {
    let known = this.byService.get(service);
    if (known !== undefined) {
      for (const c of known) {
        if (c.port === port && c.subset === subset && c.protocol === protocol && c.seen === config) return c;
      }
    } else {
      known = [];
      this.byService.set(service, known);
    }
    const key = `${service.hostname}|${subset ?? ''}|${port}|${protocol}`;
    let c = this.clusters.get(key);
    if (c === undefined) {
      let budget = this.budgets.get(service.hostname);
      if (budget === undefined) {
        budget = new RetryBudget({ ...this.o.retryBudget, ...(this.o.now !== undefined ? { now: this.o.now } : {}) });
        this.budgets.set(service.hostname, budget);
      }
      c = new Cluster(service, subset, port, protocol, budget, this.now, this.o.onEject ?? (() => {}), this.o.rand ?? Math.random);
      this.clusters.set(key, c);
    }
    if (c.seen !== config) {
      c.update(service, config.binding(service.key)?.destinationPolicy, config);
      c.seen = config;
    }
    if (!known.includes(c)) known.push(c);
    return c;
  }

  /** Endpoint keys in use, for pruning idle upstream connections. */
  endpointKeys(): Set<string> {
    const out = new Set<string>();
    for (const c of this.clusters.values()) for (const e of c.endpoints) out.add(poolKey(e));
    return out;
  }
}
