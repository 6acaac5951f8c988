/**
 * The immutable, indexed snapshot of the mesh: what `compile()` returns and `applyChange()`
 * derives a new one from. Agents, waypoints and the control plane query it; nothing mutates it.
 *
 * Invariants:
 * - Every index agrees with a full compile of `resources` (tests check this after many kinds
 *   of change).
 * - Lists returned by queries are frozen and sorted by key; lookups are O(1).
 * - Duplicate pod IPs are kept (the analyzer reports them); `workloadByIp` returns the pod with
 *   the smallest `namespace/name`.
 */
import type { AuthzPolicy } from '../authz/types.js';
import { buildAuthzPolicySet, type AuthzPolicySet } from '../authz/policy-set.js';
import type { Diagnostic, ResourceRef } from '../diagnostics.js';
import type { CheckDelta, CrossCheckResult } from './cross-check.js';
import type { NamespaceResource, NodeResource } from '../kinds/core.js';
import { refKey, type Resource } from '../resource.js';
import { hostMatches, isWildcard, resolveHost } from './hosts.js';
import type { ResolvedOptions } from './options.js';
import type { PersistentMap } from './persistent-map.js';
import { KIND_GRPC_ROUTE, KIND_HTTP_ROUTE, KIND_NAMESPACE, KIND_NODE, KIND_REFERENCE_GRANT, KIND_TCP_ROUTE, KIND_TLS_ROUTE, type ResourceIndex } from './resource-index.js';
import { ReferenceGrants } from './reference-grants.js';
import { routeBackendRefs, routeStatus, type RouteStatus } from './route-status.js';
import type { ParentRefSpec } from '../kinds/gateway-api.js';
import type { ReferenceGrantResource } from '../kinds/gateway-routes.js';
import { isEmptySelector, matchesLabels } from './selectors.js';
import type { EffectiveMtlsMode, MeshService, Waypoint, Workload } from './types.js';
import { serviceSelects } from './workload.js';
import { KIND_GATEWAY, KIND_HTTP_ROUTE as KIND_INGRESS_ROUTE } from './resource-index.js';
import type { GatewayResource, HttpRouteResource } from '../kinds/gateway-api.js';
import type { SecretResource } from '../kinds/core.js';
import { buildIngresses, secretKey, type IngressGateway } from './ingress.js';
import type { IstioGatewayResource } from '../kinds/istio-gateway.js';
import type { VirtualServiceResource } from '../kinds/networking.js';

/** What the last `applyChange` recomputed (keys), for pushing deltas. */
export interface SnapshotChanges {
  readonly resources: readonly string[];
  readonly workloads: readonly string[];
  readonly services: readonly string[];
  readonly waypoints: readonly string[];
}

/** Internal state; built by compile.ts. */
export interface SnapshotState {
  readonly options: ResolvedOptions;
  readonly version: number;
  readonly changes: SnapshotChanges | undefined;
  readonly resources: ResourceIndex;
  readonly authz: ReadonlyMap<string, AuthzPolicy>;
  readonly workloads: PersistentMap<string, Workload>;
  readonly workloadsByIp: PersistentMap<string, readonly string[]>;
  readonly workloadsByNode: PersistentMap<string, readonly Workload[]>;
  readonly workloadsByNamespace: PersistentMap<string, readonly Workload[]>;
  readonly workloadsByIdentity: PersistentMap<string, readonly Workload[]>;
  readonly services: PersistentMap<string, MeshService>;
  readonly servicesByVip: PersistentMap<string, readonly string[]>;
  readonly servicesByNamespace: PersistentMap<string, readonly MeshService[]>;
  /** Keys (`namespace/host`) of the services compiled from ServiceEntry hosts. */
  readonly serviceEntryKeys: ReadonlySet<string>;
  readonly waypoints: ReadonlyMap<string, Waypoint>;
}

const NONE: readonly never[] = Object.freeze([]);

/** How a snapshot computes its cross-reference diagnostics (cross-check.ts). @internal */
export interface DiagnosticsChecker {
  full(s: Snapshot): CrossCheckResult;
  since(s: Snapshot, base: Snapshot, prior: CrossCheckResult, delta: CheckDelta): CrossCheckResult;
}

/** Changes since a snapshot whose diagnostics are known; the base of an incremental check. */
interface PendingCheck {
  readonly base: Snapshot;
  readonly delta: { resources: Set<string>; workloads: Set<string>; services: Set<string>; waypoints: Set<string> };
}

/**
 * Past this many changed keys since the last checked snapshot (or a quarter of the resources,
 * if more), a full check is cheaper than tracking, and the old snapshot is let go.
 */
const MAX_PENDING_KEYS = 4096;

/** Workload → its indexed policies; weak, so dropped with the last snapshot holding the workload. */
const POLICY_SETS = new WeakMap<Workload, AuthzPolicySet>();

export class Snapshot {
  /** @internal */
  readonly state: SnapshotState;
  private checked: CrossCheckResult | undefined;
  private pending: PendingCheck | undefined;
  private ingressCache: readonly IngressGateway[] | undefined;

  /**
   * @internal use `compile()` or `applyChange()`. `prev`: the snapshot this one was derived
   * from; its diagnostics (or the base it was going to check from) make this one's incremental.
   */
  constructor(state: SnapshotState, private readonly checker: DiagnosticsChecker, prev?: Snapshot) {
    this.state = state;
    Object.freeze(this.state);
    const ch = state.changes;
    if (prev === undefined || ch === undefined) return;
    const base = prev.checked !== undefined ? prev : prev.pending?.base;
    if (base === undefined) return;
    const carried = prev.checked !== undefined ? undefined : prev.pending?.delta;
    const delta = {
      resources: new Set([...(carried?.resources ?? []), ...ch.resources]),
      workloads: new Set([...(carried?.workloads ?? []), ...ch.workloads]),
      services: new Set([...(carried?.services ?? []), ...ch.services]),
      waypoints: new Set([...(carried?.waypoints ?? []), ...ch.waypoints]),
    };
    const size = delta.resources.size + delta.workloads.size + delta.services.size + delta.waypoints.size;
    if (size > Math.max(MAX_PENDING_KEYS, state.workloads.size >> 2)) return;
    this.pending = { base, delta };
  }

  get options(): ResolvedOptions {
    return this.state.options;
  }

  /** 1 for a full compile, +1 per `applyChange`. */
  get version(): number {
    return this.state.version;
  }

  /** Keys recomputed by the `applyChange` that made this snapshot (undefined after a full compile). */
  get changes(): SnapshotChanges | undefined {
    return this.state.changes;
  }

  // ------------------------------------------------------------------------- resources

  resource(ref: ResourceRef): Resource | undefined {
    return this.state.resources.get(ref);
  }

  /** Resources of one kind, by `group/Kind` (`core/Pod`, `ambit.dev/LocalRateLimit`), sorted by key. */
  resources(kind: string): readonly Resource[] {
    return Object.freeze(this.state.resources.list(kind).sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  /** Every resource, sorted by key. */
  allResources(): readonly Resource[] {
    return Object.freeze([...this.state.resources.all()].sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  namespace(name: string): NamespaceResource | undefined {
    return this.state.resources.getByKey(KIND_NAMESPACE, refKey({ group: '', kind: 'Namespace', namespace: '', name })) as NamespaceResource | undefined;
  }

  node(name: string): NodeResource | undefined {
    return this.state.resources.getByKey(KIND_NODE, refKey({ group: '', kind: 'Node', namespace: '', name })) as NodeResource | undefined;
  }

  /** The node's InternalIP (else ExternalIP, else first address). */
  nodeAddress(name: string): string | undefined {
    const addrs = this.node(name)?.status?.addresses ?? [];
    return (addrs.find((a) => a.type === 'InternalIP') ?? addrs.find((a) => a.type === 'ExternalIP') ?? addrs[0])?.address;
  }

  // ------------------------------------------------------------------------- workloads

  workload(key: string): Workload | undefined {
    return this.state.workloads.get(key);
  }

  workloadByIp(ip: string): Workload | undefined {
    const keys = this.state.workloadsByIp.get(ip);
    return keys === undefined ? undefined : this.state.workloads.get(keys[0] as string);
  }

  /** Every workload with this IP (more than one only on a duplicate-IP error). */
  workloadsByIp(ip: string): readonly Workload[] {
    return (this.state.workloadsByIp.get(ip) ?? NONE).map((k) => this.state.workloads.get(k) as Workload);
  }

  workloadsOnNode(node: string): readonly Workload[] {
    return this.state.workloadsByNode.get(node) ?? NONE;
  }

  workloadsInNamespace(namespace: string): readonly Workload[] {
    return this.state.workloadsByNamespace.get(namespace) ?? NONE;
  }

  /** Workloads running as a SPIFFE identity (`spiffe://td/ns/x/sa/y`). */
  workloadsWithIdentity(identity: string): readonly Workload[] {
    return this.state.workloadsByIdentity.get(identity) ?? NONE;
  }

  /** All workloads, sorted by key. */
  workloads(): readonly Workload[] {
    return Object.freeze([...this.state.workloads.values()].sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  /** All workloads in no particular order, without copying or sorting (for passes over the whole mesh). */
  eachWorkload(): IterableIterator<Workload> {
    return this.state.workloads.values();
  }

  get workloadCount(): number {
    return this.state.workloads.size;
  }

  /** Effective mTLS mode of a workload on a container port. */
  mtlsMode(w: Workload, port?: number): EffectiveMtlsMode {
    return (port !== undefined ? w.mtls.ports[port] : undefined) ?? w.mtls.mode;
  }

  /** Services whose selector picks the workload. */
  servicesForWorkload(w: Workload): readonly MeshService[] {
    return this.servicesInNamespace(w.namespace).filter((s) => serviceSelects(s.selector, s.namespace, w));
  }

  /**
   * True when traffic to the workload passes a waypoint: its own binding (pod or namespace
   * label) or that of a Service selecting it. Without a waypoint, L7 rules of selector policies
   * cannot be enforced, and the agent denies what they would match at L4.
   */
  hasWaypoint(w: Workload): boolean {
    return w.waypoint !== undefined || this.servicesForWorkload(w).some((s) => s.waypoint !== undefined);
  }

  /**
   * AuthorizationPolicies the node agent enforces for a workload: mesh-wide (root namespace,
   * no selector), namespace-wide, then selector matches (root namespace's first), by name.
   */
  authorizationFor(w: Workload): readonly AuthzPolicy[] {
    return w.authorization;
  }

  /**
   * `authorizationFor(w)` as an indexed AuthzPolicySet (rules bucketed by required principal),
   * built on first use and cached per Workload object, so it survives incremental changes that
   * do not touch the workload. The agent's per-connection path.
   */
  authorizationSetFor(w: Workload): AuthzPolicySet {
    let set = POLICY_SETS.get(w);
    if (set === undefined) {
      set = buildAuthzPolicySet(w.authorization);
      POLICY_SETS.set(w, set);
    }
    return set;
  }

  /**
   * AuthorizationPolicies enforced at a waypoint through `targetRef(s)`: those naming the
   * waypoint's Gateway, the Service (when `service` is given), or the `ambit-waypoint`
   * GatewayClass from the root namespace. Sorted by namespace/name.
   */
  waypointAuthorization(waypointKey: string, serviceKey?: string): readonly AuthzPolicy[] {
    const [wns, wname] = waypointKey.split('/') as [string, string];
    const [sns, sname] = serviceKey !== undefined ? (serviceKey.split('/') as [string, string]) : ['', ''];
    const out: AuthzPolicy[] = [];
    for (const p of this.state.authz.values()) {
      if (!p.hasTargetRefs) continue;
      const refs = [...(p.spec.targetRefs ?? []), ...(p.spec.targetRef !== undefined ? [p.spec.targetRef] : [])];
      const ns = p.ref.namespace;
      const hit = refs.some((r) => {
        const group = r.group ?? '';
        if (r.kind === 'Gateway' && group === 'gateway.networking.k8s.io') return ns === wns && r.name === wname;
        if (r.kind === 'GatewayClass' && group === 'gateway.networking.k8s.io') return ns === this.options.rootNamespace && r.name === 'ambit-waypoint';
        if (r.kind === 'Service' && (group === '' || group === 'core')) return serviceKey !== undefined && ns === sns && r.name === sname;
        return false;
      });
      if (hit) out.push(p);
    }
    return Object.freeze(out.sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  /** Compiled AuthorizationPolicies by `namespace/name`. */
  authorizationPolicies(): readonly AuthzPolicy[] {
    return Object.freeze([...this.state.authz.values()].sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  /**
   * Resources of a kind with `attachment: 'workload-selector'` that apply to a workload, the
   * way Istio policies do (root namespace: mesh-wide; no selector: namespace-wide), sorted by
   * namespace (root first) then name. Kinds added later (a rate limit) use this unchanged.
   */
  attachedPolicies<R extends Resource = Resource>(kind: string, w: Workload): readonly R[] {
    const root = this.options.rootNamespace;
    const out: R[] = [];
    for (const r of this.state.resources.list<R>(kind)) {
      const ns = r.ref.namespace;
      if (ns !== root && ns !== w.namespace) continue;
      const spec = r.spec as { selector?: { matchLabels?: Record<string, string> }; targetRef?: unknown; targetRefs?: unknown[] };
      if (spec.targetRef !== undefined || (spec.targetRefs !== undefined && spec.targetRefs.length > 0)) continue;
      const sel = spec.selector?.matchLabels;
      if (!isEmptySelector(sel) && !matchesLabels(sel ?? {}, w.labels)) continue;
      out.push(r);
    }
    return Object.freeze(out.sort((a, b) => (a.ref.namespace === b.ref.namespace ? (a.ref.name < b.ref.name ? -1 : 1) : a.ref.namespace === root ? -1 : b.ref.namespace === root ? 1 : a.ref.namespace < b.ref.namespace ? -1 : 1)));
  }

  /**
   * Resources of a kind whose `spec.targetRef(s)` name a Service or a Gateway (Gateway API
   * policy attachment: same namespace as the policy), sorted by name. Works for any kind with
   * targetRefs (AuthorizationPolicy, RequestAuthentication, LocalRateLimit, kinds added later).
   */
  targetingResources<R extends Resource = Resource>(kind: string, target: { kind: 'Service' | 'Gateway'; namespace: string; name: string }): readonly R[] {
    const out: R[] = [];
    for (const r of this.state.resources.list<R>(kind)) {
      if (r.ref.namespace !== target.namespace) continue;
      const spec = r.spec as { targetRef?: { kind?: string; group?: string; name?: string }; targetRefs?: { kind?: string; group?: string; name?: string }[] };
      const refs = [...(spec.targetRefs ?? []), ...(spec.targetRef !== undefined ? [spec.targetRef] : [])];
      const hit = refs.some((t) => {
        const group = t.group ?? '';
        const groupOk = target.kind === 'Service' ? group === '' || group === 'core' : group === 'gateway.networking.k8s.io';
        return t.kind === target.kind && groupOk && t.name === target.name;
      });
      if (hit) out.push(r);
    }
    return Object.freeze(out.sort((a, b) => (a.ref.name < b.ref.name ? -1 : 1)));
  }

  // -------------------------------------------------------------------------- services

  service(key: string): MeshService | undefined {
    return this.state.services.get(key);
  }

  private routeStatusList: readonly RouteStatus[] | undefined;

  /**
   * Status of every HTTPRoute, GRPCRoute, TCPRoute and TLSRoute (route-status.ts), sorted by
   * resource key; computed on first call.
   */
  routeStatuses(): readonly RouteStatus[] {
    if (this.routeStatusList === undefined) {
      const res = this.state.resources;
      const grants = new ReferenceGrants(res.list<ReferenceGrantResource>(KIND_REFERENCE_GRANT));
      const gateway = (key: string) => {
        const slash = key.indexOf('/');
        const gw = res.getByKey(KIND_GATEWAY, refKey({ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: key.slice(0, slash), name: key.slice(slash + 1) })) as GatewayResource | undefined;
        if (gw === undefined) return undefined;
        const attached = new Set((this.ingress(key)?.routeSources ?? []).map(refKey));
        return { gatewayClassName: gw.spec.gatewayClassName, attached: (r: ResourceRef) => attached.has(refKey(r)) };
      };
      const look = { service: (k: string) => this.service(k), gateway, grants };
      const out: RouteStatus[] = [];
      for (const kind of [KIND_HTTP_ROUTE, KIND_GRPC_ROUTE, KIND_TCP_ROUTE, KIND_TLS_ROUTE]) {
        for (const r of res.list<Resource<{ parentRefs?: ParentRefSpec[]; rules?: Parameters<typeof routeBackendRefs>[0] }>>(kind)) {
          out.push(routeStatus({ ref: r.ref, parentRefs: r.spec.parentRefs ?? [], backendRefs: routeBackendRefs(r.spec.rules ?? []) }, look));
        }
      }
      out.sort((a, b) => (refKey(a.route) < refKey(b.route) ? -1 : 1));
      this.routeStatusList = Object.freeze(out);
    }
    return this.routeStatusList;
  }

  serviceByVip(ip: string): MeshService | undefined {
    const keys = this.state.servicesByVip.get(ip);
    return keys === undefined ? undefined : this.state.services.get(keys[0] as string);
  }

  /**
   * The Service of a host name: a FQDN (`reviews.bookinfo.svc.cluster.local`), or a short name
   * resolved Istio's way in `fromNamespace` (`reviews`). Wildcards are not services.
   */
  serviceByHost(host: string, fromNamespace?: string): MeshService | undefined {
    const fqdn = fromNamespace !== undefined ? resolveHost(host, fromNamespace, this.options.clusterDomain) : host;
    const suffix = `.svc.${this.options.clusterDomain}`;
    if (fqdn.endsWith(suffix)) {
      const parts = fqdn.slice(0, -suffix.length).split('.');
      const svc = parts.length === 2 ? this.state.services.get(`${parts[1]}/${parts[0]}`) : undefined;
      if (svc !== undefined) return svc;
    }
    return this.serviceEntryByHost(fqdn);
  }

  private entryHosts: Map<string, MeshService> | undefined;
  private entryWildcards: MeshService[] | undefined;

  /**
   * The ServiceEntry service of a host: an entry declaring exactly this host (the smallest key
   * when several namespaces do), else the longest wildcard entry host covering it.
   */
  serviceEntryByHost(fqdn: string): MeshService | undefined {
    if (this.entryHosts === undefined || this.entryWildcards === undefined) {
      const exact = new Map<string, MeshService>();
      const wild: MeshService[] = [];
      for (const key of [...this.state.serviceEntryKeys].sort()) {
        const s = this.state.services.get(key);
        if (s === undefined) continue;
        if (isWildcard(s.hostname)) wild.push(s);
        else if (!exact.has(s.hostname)) exact.set(s.hostname, s);
      }
      wild.sort((a, b) => b.hostname.length - a.hostname.length);
      this.entryHosts = exact;
      this.entryWildcards = wild;
    }
    return this.entryHosts.get(fqdn) ?? (isWildcard(fqdn) ? undefined : this.entryWildcards.find((s) => hostMatches(s.hostname, fqdn)));
  }

  /** Services whose hostname a (possibly wildcard) host covers. */
  servicesMatchingHost(host: string, fromNamespace: string): readonly MeshService[] {
    const full = resolveHost(host, fromNamespace, this.options.clusterDomain);
    if (!full.startsWith('*')) {
      const s = this.serviceByHost(full);
      return s === undefined ? NONE : [s];
    }
    return this.services().filter((s) => hostMatches(full, s.hostname));
  }

  servicesInNamespace(namespace: string): readonly MeshService[] {
    return this.state.servicesByNamespace.get(namespace) ?? NONE;
  }

  /** All Services, sorted by key. */
  services(): readonly MeshService[] {
    return Object.freeze([...this.state.services.values()].sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  /** All Services in no particular order, without copying or sorting. */
  eachService(): IterableIterator<MeshService> {
    return this.state.services.values();
  }

  // ------------------------------------------------------------------------- waypoints

  waypoint(key: string): Waypoint | undefined {
    return this.state.waypoints.get(key);
  }

  waypoints(): readonly Waypoint[] {
    return Object.freeze([...this.state.waypoints.values()].sort((a, b) => (a.key < b.key ? -1 : 1)));
  }

  // -------------------------------------------------------------------------- ingresses

  /**
   * Ingress gateways (Gateways of class `ambit`) with their listeners and routes, built on
   * first call from this snapshot's resources (they are few, and only the control plane asks).
   */
  ingresses(): readonly IngressGateway[] {
    if (this.ingressCache === undefined) {
      const res = this.state.resources;
      const gateways = res.list<GatewayResource>(KIND_GATEWAY);
      this.ingressCache = Object.freeze(
        gateways.length === 0 && res.list('networking.istio.io/Gateway').length === 0
          ? []
          : buildIngresses(
              {
                gateways,
                routes: res.list<HttpRouteResource>(KIND_INGRESS_ROUTE),
                istioGateways: res.list<IstioGatewayResource>('networking.istio.io/Gateway'),
                virtualServices: res.list<VirtualServiceResource>('networking.istio.io/VirtualService'),
                workloads: () => this.workloads(),
                secret: (ns, name) => res.getByKey('core/Secret', secretKey(ns, name)) as SecretResource | undefined,
                workloadsInNamespace: (ns) => this.workloadsInNamespace(ns),
              },
              { clusterDomain: this.options.clusterDomain, grants: new ReferenceGrants(res.list<ReferenceGrantResource>(KIND_REFERENCE_GRANT)) },
            ),
      );
    }
    return this.ingressCache;
  }

  ingress(key: string): IngressGateway | undefined {
    return this.ingresses().find((g) => g.key === key);
  }

  // ------------------------------------------------------------------------ diagnostics

  /**
   * Cross-reference problems of this snapshot (computed on first call). After `applyChange`
   * from a snapshot whose diagnostics were computed, only what the change can affect is
   * rechecked (cross-check.ts); the result equals a full check.
   */
  diagnostics(): readonly Diagnostic[] {
    if (this.checked === undefined) {
      const p = this.pending;
      this.checked = p !== undefined && p.base.checked !== undefined ? this.checker.since(this, p.base, p.base.checked, p.delta) : this.checker.full(this);
      this.pending = undefined;
    }
    return this.checked.diagnostics;
  }

  /**
   * A canonical plain-data dump of every derived index (sorted, JSON-safe): what tests compare
   * and `ambit config-dump` can print. Authorization policies appear by `namespace/name`.
   */
  toJSON(): unknown {
    const s = this.state;
    const sortedEntries = <V>(m: Iterable<[string, V]>, f: (v: V) => unknown): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1))) out[k] = f(v);
      return out;
    };
    return {
      options: s.options,
      resources: this.allResources().map((r) => r.key),
      authorizationPolicies: this.authorizationPolicies().map((p) => p.key),
      workloads: sortedEntries(s.workloads, (w) => ({ ...w, authorization: w.authorization.map((p) => p.key) })),
      workloadsByIp: sortedEntries(s.workloadsByIp, (v) => v),
      workloadsByNode: sortedEntries(s.workloadsByNode, (v) => v.map((w) => w.key)),
      workloadsByNamespace: sortedEntries(s.workloadsByNamespace, (v) => v.map((w) => w.key)),
      workloadsByIdentity: sortedEntries(s.workloadsByIdentity, (v) => v.map((w) => w.key)),
      services: sortedEntries(s.services, (v) => v),
      servicesByVip: sortedEntries(s.servicesByVip, (v) => v),
      servicesByNamespace: sortedEntries(s.servicesByNamespace, (v) => v.map((x) => x.key)),
      waypoints: sortedEntries(s.waypoints, (v) => v),
    };
  }
}

