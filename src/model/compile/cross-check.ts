/**
 * Cross-reference checks over a compiled Snapshot: the problems no single object shows. Each
 * diagnostic points at the field that makes the reference (a route's `destination.host`, a
 * namespace's `ambit.dev/use-waypoint` label) when the object came from a file.
 *
 * Checks: routes and DestinationRules to unknown hosts, subsets and ports; HTTPRoute parents and
 * backends; policy selectors matching nothing; Services selecting no pods; named targetPorts a
 * pod lacks; bindings to missing waypoints; waypoints without pods; more than one mesh-wide
 * PeerAuthentication; competing VirtualServices/DestinationRules/PeerAuthentications; pods on
 * unknown nodes; duplicate pod and Service IPs; namespaces and ServiceAccounts not defined;
 * selector policies with L7 rules on workloads without a waypoint; LocalRateLimits on Services
 * without a waypoint (nothing would enforce them).
 *
 * Diagnostics are computed in groups, one per (check, subject): the findings about one
 * VirtualService, one Service, one pod, one undefined namespace, and so on. A full check
 * computes every group; `crossCheckSince` starts from an older snapshot's groups and recomputes
 * only the groups a change can affect, so a one-pod edit in a 10,000-pod mesh rechecks that pod,
 * the pods sharing its IP, and the Services and policies whose selectors matched it before or
 * after. What each check reads, and so what makes its groups stale:
 *
 * | check (section)            | subject        | reads                                                        |
 * |----------------------------|----------------|--------------------------------------------------------------|
 * | VirtualService             | the VS         | VSes, DRs, HTTPRoutes, Service and ServiceEntry resources (hosts, ports, route sources) |
 * | DestinationRule            | the DR         | DRs, its host's Service or ServiceEntry host (existence, selector, endpoints) |
 * | HTTPRoute                  | the route      | HTTPRoutes, Service resources (existence, ports)             |
 * | Service                    | the Service    | itself (selector matches, endpoints, binding), Services sharing a VIP; for a ServiceEntry host, its entry |
 * | Namespace waypoint label   | the Namespace  | itself, Gateways                                             |
 * | waypoint without pods      | the waypoint   | itself                                                       |
 * | pod                        | the workload   | itself, its Node, its ServiceAccount, workloads sharing an IP |
 * | namespace not defined      | the namespace  | Namespaces, every resource in that namespace                 |
 * | policy selector/targetRefs | the policy     | itself, workloads its selector matches, Services (and, for a LocalRateLimit, their waypoint binding), waypoints |
 * | PeerAuthentication conflict| the namespace  | PeerAuthentications                                          |
 * | L7 rules without waypoint  | the policy     | compiled policies, workloads and Services of its namespace (all for the root namespace) |
 *
 * Invariant: for any snapshot, `crossCheckSince(snap, base, ...)` equals `crossCheckFull(snap)`,
 * diagnostic for diagnostic and in the same order (tests compare them after many kinds of
 * change). Order: by check in the order of the table above, then by subject key.
 */
import { describeRef, formatPath, severityOf, type Diagnostic, type DiagnosticCode, type FieldPath, type Severity } from '../diagnostics.js';
import type { HttpRouteResource, GatewayResource } from '../kinds/gateway-api.js';
import type { ReferenceGrantResource } from '../kinds/gateway-routes.js';
import { backendRefProblem, ReferenceGrants } from './reference-grants.js';
import { WAYPOINT_GATEWAY_CLASS } from '../kinds/gateway-api.js';
import type { PodResource, ServiceResource, NamespaceResource } from '../kinds/core.js';
import { vsAppliesToMesh, type DestinationRuleResource, type VirtualServiceResource, type VsDestinationSpec } from '../kinds/networking.js';
import type { PeerAuthenticationResource } from '../kinds/security.js';
import type { Resource } from '../resource.js';
import { destinationRulesFor } from './destination-policy.js';
import { isWildcard, resolveHost, shortFormHint, hostMatches } from './hosts.js';
import {
  KIND_AUTHORIZATION_POLICY,
  KIND_DESTINATION_RULE,
  KIND_GATEWAY,
  KIND_HTTP_ROUTE,
  KIND_GRPC_ROUTE,
  KIND_TCP_ROUTE,
  KIND_TLS_ROUTE,
  KIND_REFERENCE_GRANT,
  KIND_LOCAL_RATE_LIMIT,
  KIND_NAMESPACE,
  KIND_NODE,
  KIND_PEER_AUTHENTICATION,
  KIND_POD,
  KIND_REQUEST_AUTHENTICATION,
  KIND_SERVICE,
  KIND_SERVICE_ACCOUNT,
  KIND_SERVICE_ENTRY,
  KIND_VIRTUAL_SERVICE,
} from './resource-index.js';
import { virtualServicesFor } from './routes.js';
import { compareAge, isEmptySelector, matchesLabels } from './selectors.js';
import type { Snapshot, SnapshotState } from './snapshot.js';
import { LABEL_USE_WAYPOINT, type MeshService, type WaypointBinding, type Workload } from './types.js';
import { spiffeIdentity } from './workload.js';

/** Namespaces Kubernetes always has; objects in them need no Namespace object. */
const BUILTIN_NAMESPACES = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease']);

/** Section codes: group keys sort by section first, in the order of the module header's table. */
const S_VS = '01';
const S_DR = '02';
const S_HR = '03';
const S_SVC = '04';
const S_NS = '05';
const S_WP = '06';
const S_POD = '07';
const S_UNDEFINED_NS = '08';
const S_SELECTOR = '09';
const S_PA = '10';
const S_L7 = '11';
const SECTIONS = [S_VS, S_DR, S_HR, S_SVC, S_NS, S_WP, S_POD, S_UNDEFINED_NS, S_SELECTOR, S_PA, S_L7] as const;
type Section = (typeof SECTIONS)[number];

const SEP = '\u0000';
const groupKey = (section: Section, subject: string): string => `${section}${SEP}${subject}`;

/** Policy kinds whose selectors and targetRefs are checked. */
/** Telemetry (telemetry.istio.io): its selector and targetRefs are checked as a policy's. */
const KIND_TELEMETRY = 'telemetry.istio.io/Telemetry';
const SELECTOR_POLICY_KINDS = [KIND_PEER_AUTHENTICATION, KIND_AUTHORIZATION_POLICY, KIND_REQUEST_AUTHENTICATION, KIND_LOCAL_RATE_LIMIT, KIND_TELEMETRY] as const;

type PolicySpec = { selector?: { matchLabels?: Record<string, string> }; targetRef?: { kind: string; name: string; group?: string }; targetRefs?: { kind: string; name: string; group?: string }[] };

/** The cross-reference diagnostics of one snapshot, kept by group for the next incremental check. */
export interface CrossCheckResult {
  /** Non-empty groups by group key (section, NUL, subject). */
  readonly groups: ReadonlyMap<string, readonly Diagnostic[]>;
  /** Keys of `groups`, sorted. */
  readonly order: readonly string[];
  /** Every diagnostic, in group order. */
  readonly diagnostics: readonly Diagnostic[];
}

/** What changed between a checked snapshot and a later one: keys as in `SnapshotChanges`. */
export interface CheckDelta {
  /** Resource keys (`group/Kind/namespace/name`) upserted or deleted. */
  readonly resources: ReadonlySet<string>;
  /** Workload, Service and waypoint keys (`namespace/name`) that were recomputed. */
  readonly workloads: ReadonlySet<string>;
  readonly services: ReadonlySet<string>;
  readonly waypoints: ReadonlySet<string>;
}

class Reporter {
  readonly out: Diagnostic[] = [];

  add(r: Resource, path: FieldPath, code: DiagnosticCode, message: string, severity: Severity = severityOf(code)): void {
    const d: Diagnostic = { severity, code, message: `${describeRef(r.ref)}: ${message}`, resource: r.ref };
    if (path.length > 0) d.path = formatPath(path);
    if (r.origin !== undefined) {
      d.file = r.origin.file;
      const pos = r.origin.locate(path, code === 'AMBIT_REF_UNKNOWN_WAYPOINT');
      d.line = pos?.line ?? r.origin.line;
      d.column = pos?.column ?? r.origin.column;
    }
    this.out.push(d);
  }
}

const byKey = <R extends { key: string }>(l: R[]): R[] => l.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

/** `group/Kind` of a resource key `group/Kind/namespace/name` (group and Kind never contain `/`). */
function kindOfKey(key: string): string {
  return key.slice(0, key.indexOf('/', key.indexOf('/') + 1));
}

/** The namespace part of a resource key (`''` for cluster-scoped kinds). */
function namespaceOfKey(key: string): string {
  const a = key.indexOf('/', key.indexOf('/') + 1);
  return key.slice(a + 1, key.indexOf('/', a + 1));
}

/** The checks, one subject at a time, with what several subjects share computed once. */
class Checker {
  private readonly st: SnapshotState;
  private readonly domain: string;
  private readonly root: string;
  private drList: DestinationRuleResource[] | undefined;
  private vsList: VirtualServiceResource[] | undefined;

  constructor(private readonly snap: Snapshot) {
    this.st = snap.state;
    this.domain = snap.options.clusterDomain;
    this.root = snap.options.rootNamespace;
  }

  private drs(): DestinationRuleResource[] {
    return (this.drList ??= byKey(this.st.resources.list<DestinationRuleResource>(KIND_DESTINATION_RULE)));
  }

  private vss(): VirtualServiceResource[] {
    return (this.vsList ??= byKey(this.st.resources.list<VirtualServiceResource>(KIND_VIRTUAL_SERVICE)));
  }

  /** Every subject of a section in the current snapshot (for a full check of that section). */
  subjects(section: Section): string[] {
    const res = this.st.resources;
    const keysOf = (kind: string): string[] => res.list(kind).map((r) => r.key);
    switch (section) {
      case S_VS: return keysOf(KIND_VIRTUAL_SERVICE);
      case S_DR: return keysOf(KIND_DESTINATION_RULE);
      case S_HR: return [KIND_HTTP_ROUTE, KIND_GRPC_ROUTE, KIND_TCP_ROUTE, KIND_TLS_ROUTE].flatMap(keysOf);
      case S_SVC: return [...this.st.services.keys()];
      case S_NS: return keysOf(KIND_NAMESPACE);
      case S_WP: return [...this.st.waypoints.keys()];
      case S_POD: return [...this.st.workloads.keys()];
      case S_SELECTOR: return SELECTOR_POLICY_KINDS.flatMap(keysOf);
      case S_L7: return [...this.st.authz.keys()];
      case S_UNDEFINED_NS:
      case S_PA:
        return []; // computed per section, see `sectionGroups`
    }
  }

  /** Diagnostics of one group. */
  group(section: Section, subject: string): Diagnostic[] {
    switch (section) {
      case S_VS: return this.virtualService(subject);
      case S_DR: return this.destinationRule(subject);
      case S_HR: return this.httpRoute(subject);
      case S_SVC: return this.service(subject);
      case S_NS: return this.namespaceBinding(subject);
      case S_WP: return this.waypoint(subject);
      case S_POD: return this.pod(subject);
      case S_SELECTOR: return this.policySelector(subject);
      case S_L7: return this.l7WithoutWaypoint(subject);
      case S_UNDEFINED_NS: return this.undefinedNamespaces(new Set([subject])).get(subject) ?? [];
      case S_PA: return this.peerAuthnConflicts().get(subject) ?? [];
    }
  }

  // ---- VirtualServices: hosts, destinations, subsets, ports, conflicts
  private virtualService(key: string): Diagnostic[] {
    const vs = this.st.resources.getByKey(KIND_VIRTUAL_SERVICE, key) as VirtualServiceResource | undefined;
    if (vs === undefined) return [];
    const rep = new Reporter();
    const snap = this.snap;
    const domain = this.domain;
    const subsetsOf = (host: string): Set<string> | undefined => {
      const dr = destinationRulesFor(this.drs(), host, domain)[0];
      return dr === undefined ? undefined : new Set((dr.spec.subsets ?? []).map((s) => s.name));
    };
    const checkDestination = (d: VsDestinationSpec, path: FieldPath): void => {
      const host = resolveHost(d.host, vs.ref.namespace, domain);
      const svc = snap.serviceByHost(host);
      if (svc === undefined) {
        const hint = shortFormHint(d.host, domain);
        rep.add(vs, [...path, 'host'], 'AMBIT_REF_UNKNOWN_HOST', `destination host ${d.host}${host !== d.host ? ` (${host})` : ''} is neither a Service nor a ServiceEntry host in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
        return;
      }
      if (d.subset !== undefined) {
        const subsets = subsetsOf(host);
        if (subsets === undefined) rep.add(vs, [...path, 'subset'], 'AMBIT_REF_UNKNOWN_SUBSET', `subset ${d.subset} of ${host}: no DestinationRule defines subsets for this host`);
        else if (!subsets.has(d.subset)) rep.add(vs, [...path, 'subset'], 'AMBIT_REF_UNKNOWN_SUBSET', `subset ${d.subset} is not defined by the DestinationRule of ${host} (it has: ${[...subsets].join(', ') || 'none'})`);
      }
      if (d.port !== undefined && !svc.ports.some((p) => p.port === d.port?.number)) {
        rep.add(vs, [...path, 'port', 'number'], 'AMBIT_REF_UNKNOWN_PORT', `port ${d.port.number} is not a port of Service ${svc.key} (ports: ${svc.ports.map((p) => p.port).join(', ')})`);
      }
    };
    if ((vs.spec.hosts ?? []).length === 0) {
      // A delegate: it only means something when a root VirtualService names it.
      const named = this.vss().some((root) => (root.spec.http ?? []).some((r) => r.delegate !== undefined && r.delegate.name === vs.ref.name && (r.delegate.namespace ?? root.ref.namespace) === vs.ref.namespace));
      if (!named) rep.add(vs, ['spec'], 'AMBIT_REF_DELEGATE_UNUSED', 'a VirtualService without hosts is a delegate, and no VirtualService delegates to it (http[].delegate), so it routes nothing; set hosts if it is not a delegate');
    }
    const mesh = vsAppliesToMesh(vs.spec);
    (vs.spec.gateways ?? []).forEach((g, i) => {
      if (g === 'mesh') return;
      const slash = g.indexOf('/');
      const key = slash === -1 ? `${vs.ref.namespace}/${g}` : g;
      if (this.st.resources.getByKey('networking.istio.io/Gateway', `networking.istio.io/Gateway/${key}`) !== undefined) return;
      rep.add(vs, ['spec', 'gateways', i], 'AMBIT_SCHEMA_UNIMPLEMENTED', mesh
        ? `gateway ${JSON.stringify(g)}: there is no Gateway (networking.istio.io) ${key}; this VirtualService routes mesh traffic only`
        : `gateway ${JSON.stringify(g)}: there is no Gateway (networking.istio.io) ${key}, and without "mesh" in gateways this VirtualService does not apply to mesh traffic: nothing uses it`);
    });
    // Hosts of a VirtualService bound only to ingress gateways are external names: not checked.
    (vsAppliesToMesh(vs.spec) ? vs.spec.hosts ?? [] : []).forEach((h, i) => {
      const full = resolveHost(h, vs.ref.namespace, domain);
      if (isWildcard(full)) {
        let any = false;
        for (const s of this.st.services.values()) if (hostMatches(full, s.hostname)) { any = true; break; }
        if (!any) rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_UNKNOWN_HOST', `host ${h} matches no Service or ServiceEntry host in the mesh`);
        return;
      }
      const svc = snap.serviceByHost(full);
      if (svc === undefined) {
        const hint = shortFormHint(h, domain);
        rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_UNKNOWN_HOST', `host ${h}${full !== h ? ` (${full})` : ''} is neither a Service nor a ServiceEntry host in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
        return;
      }
      if (svc.routeSources.length > 0 && !svc.routeSources.some((r) => r.kind === 'VirtualService' && r.namespace === vs.ref.namespace && r.name === vs.ref.name)) {
        const winner = virtualServicesFor(this.vss(), full, domain)[0];
        const by = svc.routeSources[0];
        const why = by?.kind === 'HTTPRoute' || by?.kind === 'GRPCRoute' ? `${by.kind} ${by.namespace}/${by.name} routes it (Gateway API routes take precedence)` : `VirtualService ${winner?.ref.namespace}/${winner?.ref.name} is older and wins`;
        rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_CONFLICT', `host ${full} is ignored here: ${why}`);
      }
    });
    (vs.spec.http ?? []).forEach((r, i) => {
      (r.route ?? []).forEach((d, j) => checkDestination(d.destination, ['spec', 'http', i, 'route', j, 'destination']));
      if (r.mirror !== undefined) checkDestination(r.mirror, ['spec', 'http', i, 'mirror']);
      (r.mirrors ?? []).forEach((m, j) => checkDestination(m.destination, ['spec', 'http', i, 'mirrors', j, 'destination']));
    });
    return rep.out;
  }

  // ---- DestinationRules: host, subsets with no pods, conflicts
  private destinationRule(key: string): Diagnostic[] {
    const dr = this.st.resources.getByKey(KIND_DESTINATION_RULE, key) as DestinationRuleResource | undefined;
    if (dr === undefined) return [];
    const rep = new Reporter();
    const full = resolveHost(dr.spec.host, dr.ref.namespace, this.domain);
    if (isWildcard(full)) return [];
    const svc = this.snap.serviceByHost(full);
    if (svc === undefined) {
      const hint = shortFormHint(dr.spec.host, this.domain);
      rep.add(dr, ['spec', 'host'], 'AMBIT_REF_UNKNOWN_HOST', `host ${dr.spec.host}${full !== dr.spec.host ? ` (${full})` : ''} is neither a Service nor a ServiceEntry host in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
      return rep.out;
    }
    const winner = destinationRulesFor(this.drs(), full, this.domain)[0];
    if (winner !== undefined && winner.key !== dr.key) {
      rep.add(dr, ['spec', 'host'], 'AMBIT_REF_CONFLICT', `DestinationRule ${winner.ref.namespace}/${winner.ref.name} also configures ${full} and wins (older, or exact host); this one is ignored`);
    }
    const pods = svc.endpoints;
    (dr.spec.subsets ?? []).forEach((s, i) => {
      if (svc.selector !== undefined && !pods.some((e) => matchesLabels(s.labels ?? {}, e.labels))) {
        rep.add(dr, ['spec', 'subsets', i, 'labels'], 'AMBIT_REF_SUBSET_NO_PODS', `subset ${s.name} matches no ready pod of Service ${svc.key}`);
      }
    });
    return rep.out;
  }

  // ---- HTTPRoutes: parents and backends
  private httpRoute(key: string): Diagnostic[] {
    const kind = key.split('/', 2).join('/');
    const hr = this.st.resources.getByKey(kind, key) as HttpRouteResource | undefined;
    if (hr === undefined) return [];
    const grants = new ReferenceGrants(this.st.resources.list<ReferenceGrantResource>(KIND_REFERENCE_GRANT));
    const from = { group: 'gateway.networking.k8s.io', kind: hr.ref.kind, namespace: hr.ref.namespace };
    const rep = new Reporter();
    const snap = this.snap;
    (hr.spec.parentRefs ?? []).forEach((p, i) => {
      const kind = p.kind ?? 'Gateway';
      if (kind === 'Service' && (p.group ?? '') === '') {
        const key = `${p.namespace ?? hr.ref.namespace}/${p.name}`;
        const svc = snap.service(key);
        if (svc === undefined) rep.add(hr, ['spec', 'parentRefs', i, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `parent Service ${key} does not exist`);
        else if (p.port !== undefined && !svc.ports.some((sp) => sp.port === p.port)) rep.add(hr, ['spec', 'parentRefs', i, 'port'], 'AMBIT_REF_UNKNOWN_PORT', `Service ${key} has no port ${p.port}`);
      } else if (kind === 'Gateway' && (p.group ?? 'gateway.networking.k8s.io') === 'gateway.networking.k8s.io' && snap.ingress(`${p.namespace ?? hr.ref.namespace}/${p.name}`) !== undefined) {
        // An ingress gateway's route (src/model/compile/ingress.ts decides which listeners take it).
      } else {
        rep.add(hr, ['spec', 'parentRefs', i], 'AMBIT_SCHEMA_UNIMPLEMENTED', `parentRef ${kind} ${p.name}: only Service parents (GAMMA mesh routing) and ingress Gateways (gatewayClassName ambit) are implemented; this parent is ignored`);
      }
    });
    (hr.spec.rules ?? []).forEach((rule, ri) => {
      (rule.backendRefs ?? []).forEach((b, bi) => {
        const path = ['spec', 'rules', ri, 'backendRefs', bi];
        if ((b.kind ?? 'Service') !== 'Service' || (b.group ?? '') !== '') {
          rep.add(hr, path, 'AMBIT_SCHEMA_UNIMPLEMENTED', `backend ${b.kind ?? ''} ${b.name}: only Service backends are implemented`);
          return;
        }
        const key = `${b.namespace ?? hr.ref.namespace}/${b.name}`;
        if (backendRefProblem(b, from, grants) === 'RefNotPermitted') {
          rep.add(hr, [...path, 'namespace'], 'AMBIT_REF_NOT_PERMITTED', `backend Service ${key} is in another namespace and no ReferenceGrant in ${b.namespace ?? ''} lets ${hr.ref.kind}s from ${hr.ref.namespace} refer to it; the backend is not used (ResolvedRefs=False, RefNotPermitted)`);
          return;
        }
        const svc = snap.service(key);
        if (svc === undefined) rep.add(hr, [...path, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `backend Service ${key} does not exist`);
        else if (b.port === undefined) rep.add(hr, path, 'AMBIT_SCHEMA_REQUIRED', `backendRef to Service ${key} needs a port`);
        else if (!svc.ports.some((sp) => sp.port === b.port)) rep.add(hr, [...path, 'port'], 'AMBIT_REF_UNKNOWN_PORT', `Service ${key} has no port ${b.port} (ports: ${svc.ports.map((p) => p.port).join(', ')})`);
      });
    });
    return rep.out;
  }

  private checkBinding(rep: Reporter, r: Resource, target: WaypointBinding | undefined, resolved: WaypointBinding | undefined, via: WaypointBinding['via']): void {
    if (target === undefined || resolved !== undefined || target.via !== via) return;
    rep.add(r, ['metadata', 'labels', LABEL_USE_WAYPOINT], 'AMBIT_REF_UNKNOWN_WAYPOINT', `bound to waypoint ${target.namespace}/${target.name}, but there is no Gateway ${target.namespace}/${target.name} with gatewayClassName ${WAYPOINT_GATEWAY_CLASS}`);
  }

  // ---- Services: selectors matching nothing, named target ports, waypoints, duplicate VIPs
  private service(key: string): Diagnostic[] {
    const svc = this.st.services.get(key);
    if (svc?.serviceEntry !== undefined) return this.serviceEntryHost(svc);
    const r = svc === undefined ? undefined : (this.st.resources.getByKey(KIND_SERVICE, `${KIND_SERVICE}/${key}`) as ServiceResource | undefined);
    if (svc === undefined || r === undefined) return [];
    const rep = new Reporter();
    if (!isEmptySelector(svc.selector) && !this.snap.workloadsInNamespace(svc.namespace).some((w) => matchesLabels(svc.selector ?? {}, w.labels))) {
      rep.add(r, ['spec', 'selector'], 'AMBIT_REF_SERVICE_NO_PODS', `selector ${JSON.stringify(svc.selector)} matches no pod in namespace ${svc.namespace}`);
    }
    svc.ports.forEach((p, i) => {
      if (typeof p.targetPort !== 'string') return;
      const missing = svc.endpoints.filter((e) => e.ports[p.port] === undefined).map((e) => e.workload);
      if (missing.length > 0) rep.add(r, ['spec', 'ports', i, 'targetPort'], 'AMBIT_REF_UNKNOWN_TARGET_PORT', `targetPort ${p.targetPort} is not a named container port of ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}`);
    });
    this.checkBinding(rep, r, svc.waypointTarget, svc.waypoint, 'service');
    // A VIP belongs to the Service with the smallest key that has it; every other one is reported.
    const claimed = new Set<string>();
    for (const vip of svc.vips) {
      const first = this.st.servicesByVip.get(vip)?.[0];
      const other = first !== undefined && first !== svc.key ? first : claimed.has(vip) ? svc.key : undefined;
      if (other !== undefined) rep.add(r, ['spec', 'clusterIP'], 'AMBIT_REF_DUPLICATE_IP', `cluster IP ${vip} is also used by Service ${other}`);
      else claimed.add(vip);
    }
    return rep.out;
  }

  // ---- ServiceEntry hosts: a workloadSelector without ready pods, addresses another service has
  private serviceEntryHost(svc: MeshService): Diagnostic[] {
    const r = this.st.resources.get(svc.source);
    if (r === undefined) return [];
    const rep = new Reporter();
    if (svc.selector !== undefined && svc.endpoints.length === 0) {
      rep.add(r, ['spec', 'workloadSelector'], 'AMBIT_REF_SERVICE_NO_PODS', `workloadSelector ${JSON.stringify(svc.selector)} selects no ready pod in namespace ${svc.namespace}, so host ${svc.hostname} has no endpoint and its connections are refused`);
    }
    if (svc.serviceEntry?.autoAllocated !== true) {
      for (const vip of svc.vips) {
        // Hosts of one entry share its addresses by design.
        const sameEntry = (k: string): boolean => { const o = this.st.services.get(k)?.source; return o?.namespace === svc.source.namespace && o?.name === svc.source.name && o?.kind === svc.source.kind; };
        const other = (this.st.servicesByVip.get(vip) ?? []).find((k) => k !== svc.key && !sameEntry(k));
        if (other === undefined) continue;
        const what = this.st.serviceEntryKeys.has(other) ? 'ServiceEntry host' : 'Service';
        rep.add(r, ['spec', 'addresses'], 'AMBIT_REF_DUPLICATE_IP', `address ${vip} of host ${svc.hostname} is also used by ${what} ${other}; agents send connections to it to only one of them`, 'warning');
      }
    }
    return rep.out;
  }

  // ---- Namespaces: waypoint bindings
  private namespaceBinding(key: string): Diagnostic[] {
    const ns = this.st.resources.getByKey(KIND_NAMESPACE, key) as NamespaceResource | undefined;
    if (ns === undefined) return [];
    const label = ns.metadata.labels?.[LABEL_USE_WAYPOINT];
    if (label === undefined || label === 'none' || label === '') return [];
    const wns = ns.metadata.labels?.['ambit.dev/use-waypoint-namespace'] ?? ns.ref.name;
    const gw = this.st.resources.getByKey(KIND_GATEWAY, `gateway.networking.k8s.io/Gateway/${wns}/${label}`) as GatewayResource | undefined;
    if (gw !== undefined && gw.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS) return [];
    const rep = new Reporter();
    rep.add(ns, ['metadata', 'labels', LABEL_USE_WAYPOINT], 'AMBIT_REF_UNKNOWN_WAYPOINT', `bound to waypoint ${wns}/${label}, but there is no Gateway ${wns}/${label} with gatewayClassName ${WAYPOINT_GATEWAY_CLASS}`);
    return rep.out;
  }

  // ---- Waypoints without pods
  private waypoint(key: string): Diagnostic[] {
    const wp = this.st.waypoints.get(key);
    if (wp === undefined || wp.workloads.length > 0) return [];
    const gw = this.snap.resource(wp.source);
    if (gw === undefined) return [];
    const rep = new Reporter();
    rep.add(gw, ['metadata', 'name'], 'AMBIT_REF_WAYPOINT_NO_PODS', `no pod has label gateway.networking.k8s.io/gateway-name=${wp.name} in namespace ${wp.namespace}, so nothing serves this waypoint`);
    return rep.out;
  }

  // ---- Pods: nodes, duplicate IPs, service accounts, waypoint bindings
  private pod(key: string): Diagnostic[] {
    const w = this.st.workloads.get(key);
    const pod = w === undefined ? undefined : (this.st.resources.getByKey(KIND_POD, `${KIND_POD}/${key}`) as PodResource | undefined);
    if (w === undefined || pod === undefined) return [];
    const rep = new Reporter();
    if (w.node !== undefined && this.snap.node(w.node) === undefined) {
      rep.add(pod, ['spec', 'nodeName'], 'AMBIT_REF_UNKNOWN_NODE', `scheduled on node ${w.node}, which is not defined (no Node object)`);
    }
    for (const ip of w.ips) {
      const same = this.st.workloadsByIp.get(ip) ?? [];
      if (same.length > 1 && same[0] !== w.key) rep.add(pod, ['status', 'podIP'], 'AMBIT_REF_DUPLICATE_IP', `pod IP ${ip} is also used by pod ${same[0]}`);
    }
    if (w.serviceAccount !== 'default' && this.st.resources.getByKey(KIND_SERVICE_ACCOUNT, `${KIND_SERVICE_ACCOUNT}/${w.namespace}/${w.serviceAccount}`) === undefined) {
      rep.add(pod, ['spec', 'serviceAccountName'], 'AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT', `ServiceAccount ${w.serviceAccount} is not defined in namespace ${w.namespace}`);
    }
    this.checkBinding(rep, pod, w.waypointTarget, w.waypoint, 'pod');
    return rep.out;
  }

  // ---- Namespaces that are used but not defined: reported once, on the namespace's first resource by key
  undefinedNamespaces(only?: ReadonlySet<string>): Map<string, Diagnostic[]> {
    const out = new Map<string, Diagnostic[]>();
    const undefinedNs = (ns: string): boolean => ns !== '' && !BUILTIN_NAMESPACES.has(ns) && ns !== this.root && this.snap.namespace(ns) === undefined;
    if (only !== undefined && ![...only].some(undefinedNs)) return out;
    const first = new Map<string, Resource>();
    const verdict = new Map<string, boolean>();
    for (const r of this.st.resources.all()) {
      const ns = r.ref.namespace;
      if (only !== undefined && !only.has(ns)) continue;
      let u = verdict.get(ns);
      if (u === undefined) verdict.set(ns, (u = undefinedNs(ns)));
      if (!u) continue;
      const f = first.get(ns);
      if (f === undefined || r.key < f.key) first.set(ns, r);
    }
    for (const [ns, r] of first) {
      const rep = new Reporter();
      rep.add(r, ['metadata', 'namespace'], 'AMBIT_REF_UNKNOWN_NAMESPACE', `namespace ${ns} is not defined (no Namespace object): its pods are not enrolled and no waypoint is bound`);
      out.set(ns, rep.out);
    }
    return out;
  }

  // ---- Policy selectors and targetRefs
  private policySelector(key: string): Diagnostic[] {
    const p = this.st.resources.getByKey(kindOfKey(key), key) as Resource<PolicySpec> | undefined;
    if (p === undefined) return [];
    const rep = new Reporter();
    const sel = p.spec.selector?.matchLabels;
    if (!isEmptySelector(sel)) {
      const matches = (w: Workload): boolean => matchesLabels(sel ?? {}, w.labels);
      let any = false;
      // A root-namespace selector selects mesh-wide, except PeerAuthentication's and Telemetry's (the root namespace's own pods).
      if (p.ref.namespace === this.root && p.kind !== 'PeerAuthentication' && p.kind !== 'Telemetry') {
        for (const w of this.st.workloads.values()) if (matches(w)) { any = true; break; }
      } else {
        any = this.snap.workloadsInNamespace(p.ref.namespace).some(matches);
      }
      if (!any) {
        rep.add(p, ['spec', 'selector', 'matchLabels'], 'AMBIT_REF_SELECTOR_NO_MATCH', `selector ${JSON.stringify(sel)} matches no pod${p.ref.namespace === this.root ? '' : ` in namespace ${p.ref.namespace}`}`);
      }
    }
    const refs = p.spec.targetRefs ?? (p.spec.targetRef !== undefined ? [p.spec.targetRef] : []);
    refs.forEach((t, i) => {
      const path = p.spec.targetRefs !== undefined ? ['spec', 'targetRefs', i] : ['spec', 'targetRef'];
      const group = t.group ?? '';
      if (t.kind === 'Service' && (group === '' || group === 'core')) {
        const svc = this.snap.service(`${p.ref.namespace}/${t.name}`);
        if (svc === undefined) rep.add(p, [...path, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `targetRef Service ${p.ref.namespace}/${t.name} does not exist`);
        else if (p.kind === 'LocalRateLimit' && svc.waypoint === undefined) {
          rep.add(p, [...path, 'name'], 'AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT', `targets Service ${svc.key}, which is not bound to a waypoint, so nothing enforces this limit; bind one (label ${LABEL_USE_WAYPOINT} on the Service or its namespace)`);
        }
      } else if (t.kind === 'Gateway') {
        const atIngress = p.kind === 'AuthorizationPolicy' && this.snap.ingress(`${p.ref.namespace}/${t.name}`) !== undefined;
        if (!atIngress && this.snap.waypoint(`${p.ref.namespace}/${t.name}`) === undefined) rep.add(p, [...path, 'name'], 'AMBIT_REF_UNKNOWN_WAYPOINT', `targetRef Gateway ${p.ref.namespace}/${t.name} is not a waypoint (no Gateway with gatewayClassName ${WAYPOINT_GATEWAY_CLASS})`);
      }
    });
    return rep.out;
  }

  // ---- PeerAuthentication: mesh-wide uniqueness, namespace-level conflicts (grouped by namespace)
  peerAuthnConflicts(): Map<string, Diagnostic[]> {
    const out = new Map<string, Diagnostic[]>();
    const nsWide = new Map<string, PeerAuthenticationResource[]>();
    for (const pa of this.st.resources.list<PeerAuthenticationResource>(KIND_PEER_AUTHENTICATION)) {
      if (!isEmptySelector(pa.spec.selector?.matchLabels)) continue;
      const l = nsWide.get(pa.ref.namespace) ?? [];
      l.push(pa);
      nsWide.set(pa.ref.namespace, l);
    }
    for (const [ns, list] of nsWide) {
      if (list.length < 2) continue;
      const rep = new Reporter();
      const [first, ...rest] = list.sort(compareAge);
      for (const pa of rest) {
        if (ns === this.root) rep.add(pa, ['metadata', 'name'], 'AMBIT_POLICY_MULTIPLE_MESH_PEER_AUTHN', `more than one mesh-wide PeerAuthentication in ${this.root} (${first?.ref.name} is older and wins); keep one`);
        else rep.add(pa, ['metadata', 'name'], 'AMBIT_REF_CONFLICT', `namespace ${ns} has another namespace-wide PeerAuthentication (${first?.ref.name}, older, wins)`);
      }
      out.set(ns, rep.out);
    }
    return out;
  }

  // ---- L7 rules on selector policies for workloads without a waypoint
  private l7WithoutWaypoint(key: string): Diagnostic[] {
    const policy = this.st.authz.get(key);
    if (policy === undefined || policy.hasTargetRefs || !policy.hasL7) return [];
    const r = this.snap.resource({ group: 'security.istio.io', kind: 'AuthorizationPolicy', namespace: policy.ref.namespace, name: policy.ref.name });
    if (r === undefined) return [];
    const scope: Iterable<Workload> = policy.ref.namespace === this.root ? this.st.workloads.values() : this.snap.workloadsInNamespace(policy.ref.namespace);
    const affected: Workload[] = [];
    for (const w of scope) if (w.authorization.includes(policy) && !this.snap.hasWaypoint(w)) affected.push(w);
    if (affected.length === 0) return [];
    byKey(affected);
    const rep = new Reporter();
    const names = affected.slice(0, 3).map((w) => w.key).join(', ') + (affected.length > 3 ? ` and ${affected.length - 3} more` : '');
    const effect = policy.action === 'ALLOW' ? 'its L7 rules never match at L4, so they allow nothing' : policy.action === 'DENY' ? 'its L7 rules are enforced at L4 as if they matched (fail closed: connections are denied)' : 'its L7 rules cannot be evaluated';
    rep.add(r, ['spec', 'rules'], 'AMBIT_POLICY_L7_WITHOUT_WAYPOINT', `has L7 rules but ${names} ${affected.length === 1 ? 'has' : 'have'} no waypoint: ${effect}; bind a waypoint (label ambit.dev/use-waypoint) or use targetRefs`);
    return rep.out;
  }
}

function result(groups: Map<string, readonly Diagnostic[]>, order: string[]): CrossCheckResult {
  const diagnostics: Diagnostic[] = [];
  for (const k of order) diagnostics.push(...(groups.get(k) ?? []));
  return { groups, order: Object.freeze(order), diagnostics: Object.freeze(diagnostics) };
}

/** Every group of a snapshot, from scratch. */
export function crossCheckFull(snap: Snapshot): CrossCheckResult {
  const c = new Checker(snap);
  const groups = new Map<string, readonly Diagnostic[]>();
  const put = (section: Section, subject: string, ds: readonly Diagnostic[]): void => {
    if (ds.length > 0) groups.set(groupKey(section, subject), ds);
  };
  for (const section of SECTIONS) {
    if (section === S_UNDEFINED_NS) for (const [ns, ds] of c.undefinedNamespaces()) put(section, ns, ds);
    else if (section === S_PA) for (const [ns, ds] of c.peerAuthnConflicts()) put(section, ns, ds);
    else for (const subject of c.subjects(section)) put(section, subject, c.group(section, subject));
  }
  return result(groups, [...groups.keys()].sort());
}

/** Cross-reference diagnostics of a snapshot, computed from scratch. */
export function crossCheck(snap: Snapshot): Diagnostic[] {
  return [...crossCheckFull(snap).diagnostics];
}

/**
 * The groups of `snap`, recomputing from `prior` (the result for an earlier snapshot `base`)
 * only the groups that `delta`, everything that changed from `base` to `snap`, can affect (see
 * the module header). Equal to `crossCheckFull(snap)`.
 */
export function crossCheckSince(snap: Snapshot, base: Snapshot, prior: CrossCheckResult, delta: CheckDelta): CrossCheckResult {
  const c = new Checker(snap);
  const now = snap.state;
  const was = base.state;
  const res = now.resources;
  const root = snap.options.rootNamespace;
  /** Subjects to recompute, per section; `true` recomputes a whole section. */
  const stale = new Map<Section, Set<string> | true>();
  const mark = (section: Section, subject: string): void => {
    let s = stale.get(section);
    if (s === true) return;
    if (s === undefined) stale.set(section, (s = new Set()));
    s.add(subject);
  };
  const markAll = (section: Section): void => { stale.set(section, true); };

  // What changed, in terms the rules use.
  const kinds = new Set<string>();
  const changedNamespaces = new Set<string>();
  for (const key of delta.resources) {
    const kind = kindOfKey(key);
    kinds.add(kind);
    changedNamespaces.add(namespaceOfKey(key));
  }
  const changedOf = <V>(keys: ReadonlySet<string>, before: { get(k: string): V | undefined }, after: { get(k: string): V | undefined }): { key: string; old: V | undefined; new: V | undefined }[] => {
    const out: { key: string; old: V | undefined; new: V | undefined }[] = [];
    for (const key of keys) {
      const o = before.get(key);
      const n = after.get(key);
      if (o !== n) out.push({ key, old: o, new: n });
    }
    return out;
  };
  const workloads = changedOf(delta.workloads, was.workloads, now.workloads);
  const services = changedOf<MeshService>(delta.services, was.services, now.services);
  const waypointsExistence = [...delta.waypoints].some((k) => was.waypoints.has(k) !== now.waypoints.has(k));
  const touchedNamespaces = new Set<string>();
  for (const w of workloads) touchedNamespaces.add((w.new ?? w.old)?.namespace ?? '');
  for (const s of services) touchedNamespaces.add((s.new ?? s.old)?.namespace ?? '');

  // VirtualServices, DestinationRules, HTTPRoutes: few; rechecked together when what they read changed.
  if (kinds.has(KIND_VIRTUAL_SERVICE) || kinds.has(KIND_DESTINATION_RULE) || kinds.has(KIND_HTTP_ROUTE) || kinds.has(KIND_SERVICE) || kinds.has(KIND_SERVICE_ENTRY)) markAll(S_VS);
  if (kinds.has(KIND_DESTINATION_RULE) || kinds.has(KIND_SERVICE) || kinds.has(KIND_SERVICE_ENTRY)) markAll(S_DR);
  else if (services.length > 0) {
    const hosts = new Set(services.map((s) => (s.new ?? s.old)?.hostname));
    for (const dr of res.list<DestinationRuleResource>(KIND_DESTINATION_RULE)) {
      if (hosts.has(resolveHost(dr.spec.host, dr.ref.namespace, snap.options.clusterDomain))) mark(S_DR, dr.key);
    }
  }
  if (kinds.has(KIND_HTTP_ROUTE) || kinds.has(KIND_GRPC_ROUTE) || kinds.has(KIND_TCP_ROUTE) || kinds.has(KIND_TLS_ROUTE) || kinds.has(KIND_REFERENCE_GRANT) || kinds.has(KIND_SERVICE)) markAll(S_HR);

  // Services: recomputed ones, and every Service sharing a VIP with one (before or after); every
  // ServiceEntry host when a ServiceEntry changed (an unchanged host keeps its object, but its
  // diagnostics point into the edited resource).
  if (kinds.has(KIND_SERVICE_ENTRY)) for (const k of now.serviceEntryKeys) mark(S_SVC, k);
  for (const s of services) {
    mark(S_SVC, s.key);
    for (const vip of new Set([...(s.old?.vips ?? []), ...(s.new?.vips ?? [])])) for (const k of now.servicesByVip.get(vip) ?? []) mark(S_SVC, k);
  }

  // Namespaces' waypoint labels.
  if (kinds.has(KIND_GATEWAY)) markAll(S_NS);
  else for (const key of delta.resources) if (kindOfKey(key) === KIND_NAMESPACE) mark(S_NS, key);

  for (const key of delta.waypoints) mark(S_WP, key);

  // Pods: recomputed ones, those sharing an IP with one, those on a changed Node or running as a changed ServiceAccount.
  for (const w of workloads) {
    mark(S_POD, w.key);
    for (const ip of new Set([...(w.old?.ips ?? []), ...(w.new?.ips ?? [])])) for (const k of now.workloadsByIp.get(ip) ?? []) mark(S_POD, k);
  }
  for (const key of delta.resources) {
    const kind = kindOfKey(key);
    if (kind === KIND_NODE) {
      const name = key.slice(key.lastIndexOf('/') + 1);
      for (const w of snap.workloadsOnNode(name)) mark(S_POD, w.key);
    } else if (kind === KIND_SERVICE_ACCOUNT) {
      const name = key.slice(key.lastIndexOf('/') + 1);
      for (const w of snap.workloadsWithIdentity(spiffeIdentity(snap.options.trustDomain, namespaceOfKey(key), name))) mark(S_POD, w.key);
    }
  }

  // Undefined namespaces: those of every changed resource, and every changed Namespace.
  for (const ns of changedNamespaces) if (ns !== '') mark(S_UNDEFINED_NS, ns);
  for (const key of delta.resources) if (kindOfKey(key) === KIND_NAMESPACE) mark(S_UNDEFINED_NS, key.slice(key.lastIndexOf('/') + 1));

  // Policy selectors: changed policies; every policy with targetRefs when Services or waypoints
  // came or went; a selector policy when a changed workload matched it before or after.
  for (const key of delta.resources) if ((SELECTOR_POLICY_KINDS as readonly string[]).includes(kindOfKey(key))) mark(S_SELECTOR, key);
  const targetsChanged = kinds.has(KIND_SERVICE) || waypointsExistence;
  // A LocalRateLimit's finding also depends on its Services' waypoint binding, which Namespace
  // and Gateway changes move too: recheck every rate limit (they are few) when a Service did.
  if (services.length > 0) for (const r of res.list(KIND_LOCAL_RATE_LIMIT)) mark(S_SELECTOR, r.key);
  if (targetsChanged || workloads.length > 0) {
    for (const kind of SELECTOR_POLICY_KINDS) {
      for (const p of res.list<Resource<PolicySpec>>(kind)) {
        const hasTargets = p.spec.targetRef !== undefined || (p.spec.targetRefs?.length ?? 0) > 0;
        if (targetsChanged && hasTargets) { mark(S_SELECTOR, p.key); continue; }
        const sel = p.spec.selector?.matchLabels;
        if (isEmptySelector(sel)) continue;
        const meshWide = p.ref.namespace === root && p.kind !== 'PeerAuthentication';
        const hit = (w: Workload | undefined): boolean => w !== undefined && (meshWide || w.namespace === p.ref.namespace) && matchesLabels(sel ?? {}, w.labels);
        if (workloads.some((w) => hit(w.old) || hit(w.new))) mark(S_SELECTOR, p.key);
      }
    }
  }

  if (kinds.has(KIND_PEER_AUTHENTICATION)) markAll(S_PA);

  // L7 policies: all when any policy changed; else those whose namespace (any, for the root
  // namespace) had workloads or Services recomputed.
  if (was.authz !== now.authz) markAll(S_L7);
  else if (touchedNamespaces.size > 0) {
    for (const [key, p] of now.authz) {
      if (p.hasTargetRefs || !p.hasL7) continue;
      if (p.ref.namespace === root || touchedNamespaces.has(p.ref.namespace)) mark(S_L7, key);
    }
  }

  if (stale.size === 0) return prior;

  // Recompute the stale groups.
  const groups = new Map(prior.groups);
  const fresh: string[] = [];
  const dropped = new Set<string>();
  const put = (section: Section, subject: string, ds: readonly Diagnostic[]): void => {
    const k = groupKey(section, subject);
    if (prior.groups.has(k)) dropped.add(k);
    groups.delete(k);
    if (ds.length > 0) { groups.set(k, ds); fresh.push(k); }
  };
  for (const [section, subjects] of stale) {
    if (subjects === true) {
      const prefix = `${section}${SEP}`;
      for (const k of prior.order) if (k.startsWith(prefix)) { dropped.add(k); groups.delete(k); }
      if (section === S_UNDEFINED_NS) for (const [ns, ds] of c.undefinedNamespaces()) put(section, ns, ds);
      else if (section === S_PA) for (const [ns, ds] of c.peerAuthnConflicts()) put(section, ns, ds);
      else for (const subject of c.subjects(section)) put(section, subject, c.group(section, subject));
    } else if (section === S_UNDEFINED_NS) {
      const found = c.undefinedNamespaces(subjects);
      for (const ns of subjects) put(section, ns, found.get(ns) ?? []);
    } else if (section === S_PA) {
      const found = c.peerAuthnConflicts();
      for (const ns of subjects) put(section, ns, found.get(ns) ?? []);
    } else {
      for (const subject of subjects) put(section, subject, c.group(section, subject));
    }
  }
  // Merge the kept keys (already sorted) with the recomputed ones.
  fresh.sort();
  const order: string[] = [];
  let i = 0;
  for (const k of prior.order) {
    if (dropped.has(k)) continue;
    while (i < fresh.length && (fresh[i] as string) < k) order.push(fresh[i++] as string);
    order.push(k);
  }
  while (i < fresh.length) order.push(fresh[i++] as string);
  return result(groups, order);
}
