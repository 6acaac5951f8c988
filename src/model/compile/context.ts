/**
 * Everything a workload or Service build needs besides its own object, computed once per
 * compile (or per incremental change) and memoised: policies grouped by namespace, the
 * PeerAuthentication scope of each namespace, the set of existing waypoints, route sources.
 * Small collections (policies, routes, gateways) are regrouped per change: they are a few
 * thousand objects at most, while pods and Services are indexed incrementally.
 */
import { compileAuthorizationPolicy } from '../authz/compile.js';
import type { AuthzPolicy } from '../authz/types.js';
import type { GatewayResource, HttpRouteResource } from '../kinds/gateway-api.js';
import { WAYPOINT_GATEWAY_CLASS } from '../kinds/gateway-api.js';
import type { NamespaceResource } from '../kinds/core.js';
import type { AuthorizationPolicyResource, PeerAuthenticationResource } from '../kinds/security.js';
import { vsAppliesToMesh, type DestinationRuleResource, type VirtualServiceResource } from '../kinds/networking.js';
import type { LocalRateLimitResource } from '../kinds/ambit-rate-limit.js';
import { refKey, type Resource } from '../resource.js';
import type { ResolvedOptions } from './options.js';
import { httpRouteParents, virtualServicesFor } from './routes.js';
import { destinationRulesFor } from './destination-policy.js';
import { isWildcard, resolveHost } from './hosts.js';
import type { Workload } from './types.js';
import { peerAuthnScope, type PeerAuthnScope } from './peer-authentication.js';
import {
  KIND_AUTHORIZATION_POLICY,
  KIND_DESTINATION_RULE,
  KIND_GATEWAY,
  KIND_GRPC_ROUTE,
  KIND_HTTP_ROUTE,
  KIND_REFERENCE_GRANT,
  KIND_TCP_ROUTE,
  KIND_TLS_ROUTE,
  KIND_LOCAL_RATE_LIMIT,
  KIND_NAMESPACE,
  KIND_PEER_AUTHENTICATION,
  KIND_VIRTUAL_SERVICE,
  type ResourceIndex,
} from './resource-index.js';
import { rateLimitTargets } from './rate-limits.js';
import { ReferenceGrants } from './reference-grants.js';
import type { GrpcRouteResource, ReferenceGrantResource, TcpRouteResource, TlsRouteResource } from '../kinds/gateway-routes.js';

/** Authorization policies of one namespace that select workloads (no targetRefs). */
export interface AuthzGroup {
  /** Without selector: the whole namespace (the mesh, from the root namespace). */
  readonly namespaceWide: readonly AuthzPolicy[];
  /** With a selector. */
  readonly selected: readonly AuthzPolicy[];
}

const EMPTY_GROUP: AuthzGroup = Object.freeze({ namespaceWide: Object.freeze([]), selected: Object.freeze([]) });

/** Compiles an AuthorizationPolicy resource; a spec the evaluator cannot compile becomes undefined. */
export function compileAuthz(r: AuthorizationPolicyResource): AuthzPolicy | undefined {
  try {
    return compileAuthorizationPolicy({ namespace: r.ref.namespace, name: r.ref.name }, r.spec);
  } catch {
    return undefined; // reported by the loader's lint; never reached for loaded resources
  }
}

export class BuildContext {
  private authzGroups: Map<string, AuthzGroup> | undefined;
  private readonly paScopes = new Map<string, PeerAuthnScope>();
  private peerAuthns: PeerAuthenticationResource[] | undefined;
  private waypointKeys: Set<string> | undefined;
  private vs: VirtualServiceResource[] | undefined;
  private dr: DestinationRuleResource[] | undefined;
  private hr: HttpRouteResource[] | undefined;
  private hrByService: Map<string, HttpRouteResource[]> | undefined;
  private rlByTarget: Map<string, LocalRateLimitResource[]> | undefined;
  private readonly gwRoutesByService = new Map<string, Map<string, Resource[]>>();
  private grants: ReferenceGrants | undefined;
  private readonly namespaces = new Map<string, NamespaceResource | undefined>();
  private readonly labelIndexes = new WeakMap<readonly Workload[], Map<string, Workload[]>>();

  constructor(
    readonly options: ResolvedOptions,
    readonly resources: ResourceIndex,
    /** Compiled AuthorizationPolicies by resource key. */
    readonly authz: ReadonlyMap<string, AuthzPolicy>,
  ) {}

  namespace(name: string): NamespaceResource | undefined {
    if (this.namespaces.has(name)) return this.namespaces.get(name);
    const ns = this.resources.getByKey(KIND_NAMESPACE, refKey({ group: '', kind: 'Namespace', namespace: '', name })) as NamespaceResource | undefined;
    this.namespaces.set(name, ns);
    return ns;
  }

  /**
   * The workloads of `inNamespace` that may match `selector`: those carrying its first label
   * (an index built once per namespace list), or all of them for an empty selector.
   */
  selectorCandidates(inNamespace: readonly Workload[], selector: Readonly<Record<string, string>> | undefined): readonly Workload[] {
    let first: string | undefined;
    for (const k in selector) {
      first = `${k}=${selector[k]}`;
      break;
    }
    if (first === undefined) return inNamespace;
    let index = this.labelIndexes.get(inNamespace);
    if (index === undefined) {
      index = new Map();
      for (const w of inNamespace) {
        for (const k in w.labels) {
          const lk = `${k}=${w.labels[k]}`;
          const l = index.get(lk);
          if (l === undefined) index.set(lk, [w]);
          else l.push(w);
        }
      }
      this.labelIndexes.set(inNamespace, index);
    }
    return index.get(first) ?? [];
  }

  /** Workload-selecting AuthorizationPolicies of a namespace, each list sorted by name. */
  authzGroup(namespace: string): AuthzGroup {
    if (this.authzGroups === undefined) {
      const groups = new Map<string, { namespaceWide: AuthzPolicy[]; selected: AuthzPolicy[] }>();
      for (const p of this.authz.values()) {
        if (p.hasTargetRefs) continue;
        let g = groups.get(p.ref.namespace);
        if (g === undefined) groups.set(p.ref.namespace, (g = { namespaceWide: [], selected: [] }));
        (Object.keys(p.matchLabels).length === 0 ? g.namespaceWide : g.selected).push(p);
      }
      const byName = (a: AuthzPolicy, b: AuthzPolicy): number => (a.ref.name < b.ref.name ? -1 : a.ref.name > b.ref.name ? 1 : 0);
      for (const g of groups.values()) {
        g.namespaceWide.sort(byName);
        g.selected.sort(byName);
      }
      this.authzGroups = groups;
    }
    return this.authzGroups.get(namespace) ?? EMPTY_GROUP;
  }

  peerAuthnScope(namespace: string): PeerAuthnScope {
    let s = this.paScopes.get(namespace);
    if (s === undefined) {
      this.peerAuthns ??= this.resources.list<PeerAuthenticationResource>(KIND_PEER_AUTHENTICATION);
      s = peerAuthnScope(this.peerAuthns, namespace, this.options.rootNamespace);
      this.paScopes.set(namespace, s);
    }
    return s;
  }

  /** True when `namespace/name` is a Gateway with gatewayClassName ambit-waypoint. */
  waypointExists(namespace: string, name: string): boolean {
    if (this.waypointKeys === undefined) {
      this.waypointKeys = new Set();
      for (const g of this.resources.list<GatewayResource>(KIND_GATEWAY)) {
        if (g.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS) this.waypointKeys.add(`${g.ref.namespace}/${g.ref.name}`);
      }
    }
    return this.waypointKeys.has(`${namespace}/${name}`);
  }

  private vsIndex: HostIndex<VirtualServiceResource> | undefined;
  private drIndex: HostIndex<DestinationRuleResource> | undefined;

  /** VirtualServices naming `hostname`, in precedence order (see routes.ts). */
  virtualServicesFor(hostname: string): readonly VirtualServiceResource[] {
    this.vsIndex ??= new HostIndex(this.virtualServices(), (vs) => (vsAppliesToMesh(vs.spec) ? vs.spec.hosts ?? [] : []), this.options.clusterDomain, virtualServicesFor);
    return this.vsIndex.lookup(hostname);
  }

  /** DestinationRules naming `hostname`, in precedence order (see destination-policy.ts). */
  destinationRulesFor(hostname: string): readonly DestinationRuleResource[] {
    this.drIndex ??= new HostIndex(this.destinationRules(), (dr) => [dr.spec.host], this.options.clusterDomain, destinationRulesFor);
    return this.drIndex.lookup(hostname);
  }

  virtualServices(): readonly VirtualServiceResource[] {
    return (this.vs ??= this.resources.list<VirtualServiceResource>(KIND_VIRTUAL_SERVICE));
  }

  destinationRules(): readonly DestinationRuleResource[] {
    return (this.dr ??= this.resources.list<DestinationRuleResource>(KIND_DESTINATION_RULE));
  }

  httpRoutes(): readonly HttpRouteResource[] {
    return (this.hr ??= this.resources.list<HttpRouteResource>(KIND_HTTP_ROUTE));
  }

  /** HTTPRoutes with a parentRef to the Service `namespace/name`. */
  httpRoutesFor(serviceKey: string): readonly HttpRouteResource[] {
    if (this.hrByService === undefined) {
      this.hrByService = new Map();
      for (const hr of this.httpRoutes()) {
        for (const key of new Set(httpRouteParents(hr).map((p) => p.service))) {
          const l = this.hrByService.get(key);
          if (l === undefined) this.hrByService.set(key, [hr]);
          else l.push(hr);
        }
      }
    }
    return this.hrByService.get(serviceKey) ?? [];
  }

  /** GRPCRoutes, TCPRoutes or TLSRoutes (by `kind`, a KIND_* key) with a parentRef to the Service `namespace/name`. */
  gatewayRoutesFor<R extends GrpcRouteResource | TcpRouteResource | TlsRouteResource>(kind: typeof KIND_GRPC_ROUTE | typeof KIND_TCP_ROUTE | typeof KIND_TLS_ROUTE, serviceKey: string): readonly R[] {
    let byService = this.gwRoutesByService.get(kind);
    if (byService === undefined) {
      byService = new Map();
      for (const r of this.resources.list<R>(kind)) {
        for (const key of new Set(httpRouteParents(r).map((p) => p.service))) {
          const l = byService.get(key);
          if (l === undefined) byService.set(key, [r]);
          else l.push(r);
        }
      }
      this.gwRoutesByService.set(kind, byService);
    }
    return (byService.get(serviceKey) ?? []) as R[];
  }

  /** Every ReferenceGrant, indexed by namespace. */
  referenceGrants(): ReferenceGrants {
    return (this.grants ??= new ReferenceGrants(this.resources.list<ReferenceGrantResource>(KIND_REFERENCE_GRANT)));
  }

  /**
   * LocalRateLimits whose targetRefs name the Service or the Gateway `namespace/name`
   * (`target` is `Service|ns/name` or `Gateway|ns/name`, see rate-limits.ts), sorted by name.
   */
  rateLimitsTargeting(target: string): readonly LocalRateLimitResource[] {
    if (this.rlByTarget === undefined) {
      this.rlByTarget = new Map();
      for (const rl of this.resources.list<LocalRateLimitResource>(KIND_LOCAL_RATE_LIMIT)) {
        for (const t of rateLimitTargets(rl)) {
          const l = this.rlByTarget.get(t);
          if (l === undefined) this.rlByTarget.set(t, [rl]);
          else l.push(rl);
        }
      }
      for (const l of this.rlByTarget.values()) l.sort((a, b) => (a.ref.name < b.ref.name ? -1 : a.ref.name > b.ref.name ? 1 : 0));
    }
    return this.rlByTarget.get(target) ?? [];
  }

  /** Compiled policies after replacing the changed AuthorizationPolicies. */
  static updateAuthz(prev: ReadonlyMap<string, AuthzPolicy>, changed: readonly { old?: Resource; new?: Resource }[]): ReadonlyMap<string, AuthzPolicy> {
    const relevant = changed.filter((c) => (c.old ?? c.new)?.kind === 'AuthorizationPolicy' && (c.old ?? c.new)?.group === 'security.istio.io');
    if (relevant.length === 0) return prev;
    const next = new Map(prev);
    for (const c of relevant) {
      const key = (c.old ?? c.new)?.key as string;
      next.delete(key);
      if (c.new !== undefined) {
        const p = compileAuthz(c.new as AuthorizationPolicyResource);
        if (p !== undefined) next.set(key, p);
      }
    }
    return next;
  }

  static compileAllAuthz(resources: ResourceIndex): ReadonlyMap<string, AuthzPolicy> {
    const m = new Map<string, AuthzPolicy>();
    for (const r of resources.list<AuthorizationPolicyResource>(KIND_AUTHORIZATION_POLICY)) {
      const p = compileAuthz(r);
      if (p !== undefined) m.set(r.key, p);
    }
    return m;
  }
}

/**
 * Objects by the hosts they name, so a Service finds its VirtualServices and DestinationRules
 * without scanning all of them; the precedence order is still decided by `order` over the few
 * candidates (exact-host objects plus every wildcard one).
 */
class HostIndex<R extends Resource> {
  private readonly exact = new Map<string, R[]>();
  private readonly wildcard: R[] = [];

  constructor(
    items: readonly R[],
    hostsOf: (r: R) => readonly string[],
    private readonly clusterDomain: string,
    private readonly order: (candidates: readonly R[], hostname: string, clusterDomain: string) => R[],
  ) {
    for (const r of items) {
      let wild = false;
      for (const h of new Set(hostsOf(r).map((x) => resolveHost(x, r.ref.namespace, clusterDomain)))) {
        if (isWildcard(h)) wild = true;
        else {
          const l = this.exact.get(h);
          if (l === undefined) this.exact.set(h, [r]);
          else l.push(r);
        }
      }
      if (wild) this.wildcard.push(r);
    }
  }

  lookup(hostname: string): readonly R[] {
    const exact = this.exact.get(hostname) ?? [];
    if (exact.length === 0 && this.wildcard.length === 0) return exact;
    const candidates = this.wildcard.length === 0 ? exact : [...new Set([...exact, ...this.wildcard])];
    return this.order(candidates, hostname, this.clusterDomain);
  }
}
