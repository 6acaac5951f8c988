/**
 * From the model's compiled mesh to the resources discovery distributes, one MeshResource per
 * distributable thing, so a one-pod change is a one-workload (plus its Services') delta.
 *
 * What goes where and why:
 * - WORKLOAD (everyone): the compiled Workload without `authorization` and `mtls`. Those two
 *   depend on policies, and an agent only needs them for its own pods; carrying them in every
 *   workload would turn one policy edit into a push of every workload to every node.
 * - SERVICE (everyone): the compiled Service with its endpoints and waypoint, without routes and
 *   destination policy (only waypoints use those).
 * - WAYPOINT_BINDING (everyone): a waypoint, its addresses, and the services bound to it; this
 *   is also what a waypoint's scoped view is computed from.
 * - NAMESPACE (everyone): name and labels (enrollment and waypoint labels).
 * - AUTHORIZATION_POLICY, PEER_AUTHENTICATION (agents whose pods they select; targetRef'd
 *   AuthorizationPolicies and RequestAuthentications go to the waypoints they target): the
 *   validated spec as written. Agents evaluate them with the model's own functions
 *   (src/model/authz, src/model/compile/peer-authentication.ts), so semantics stay in one place.
 * - ROUTE, DESTINATION_RULE, RATE_LIMIT (waypoints bound to the service): the compiled routes
 *   (`routes`, and `l4Routes` from TCPRoutes and TLSRoutes when there are some), destination
 *   policy and LocalRateLimits of one service, keyed by the service. Rate limits are compiled
 *   per service (a limit on the waypoint Gateway appears under each bound service,
 *   with the same key, so the waypoint keeps one bucket for it); agents never receive them.
 * - TELEMETRY: the validated spec as written (with its creationTimestamp for tie-breaks), to
 *   agents as a PeerAuthentication goes (a selector: the agents of matching workloads; none:
 *   the namespace's, every agent from the root namespace) and to waypoints (targetRefs: the
 *   waypoints they name or that serve the named Service; none: the waypoints in the namespace,
 *   all of them from the root namespace). Subscribers resolve precedence with the model's
 *   src/model/compile/telemetry.ts.
 *
 * - WAYPOINT_BINDING of an ingress gateway (everyone): its key, service account and no services,
 *   so the CA signs its identity, agents believe the client address it forwards, and nothing is
 *   ever routed through it as a waypoint.
 * - INGRESS (that ingress only, `select.waypoints`): its listener ports, routes, the
 *   AuthorizationPolicies that select its pods, and TLS certificates with their private keys,
 *   read from the Secrets its listeners name. This is the
 *   only resource that carries key material; no other subscriber selects it, and it is never
 *   logged.
 *
 * Invariant: projecting the same model object twice yields the identical MeshResource object
 * (cached by object identity), so an unchanged resource costs a map lookup, not a serialization.
 * `projectChanges` yields, for what one compile changed, the upserts and removals that turn the
 * previous `project` (or `projectChanges`) output into this compile's `project` output.
 */
import type { Resource, ResourceRef } from '../model/resource.js';
import type { MeshService, Waypoint, Workload } from '../model/compile/types.js';
import type { IngressGateway } from '../model/compile/ingress.js';
import { secretValue, type SecretResource } from '../model/kinds/core.js';
import { resourceKey, type MeshKind, type MeshResource, type Selection } from './mesh-resource.js';
import type { MeshChanges } from './model-port.js';

/** The parts of the model's compiled snapshot the control plane distributes. */
export interface CompiledMesh {
  readonly workloads: Iterable<Workload>;
  readonly services: Iterable<MeshService>;
  readonly waypoints: Iterable<Waypoint>;
  /** Lookups by `namespace/name`; needed by `projectChanges` (optional for `project`). */
  workloadByKey?(key: string): Workload | undefined;
  serviceByKey?(key: string): MeshService | undefined;
  /** Ingress gateways (Gateways of class `ambit`) (default none). */
  readonly ingresses?: Iterable<IngressGateway>;
  /** A Secret by namespace and name: the TLS certificates of ingress listeners (default none). */
  secret?(namespace: string, name: string): SecretResource | undefined;
}

/** A delta for the resource table: MeshResources to upsert, and resourceKey()s to remove. */
export interface ProjectedChanges {
  upserts: MeshResource[];
  removals: string[];
}

/** The MeshKind a distributed resource kind projects to (the others are not distributed as such). */
function distributedKind(ref: ResourceRef): MeshKind | undefined {
  if (ref.group === '' && ref.kind === 'Namespace') return 'NAMESPACE';
  if (ref.group === 'telemetry.istio.io' && ref.kind === 'Telemetry') return 'TELEMETRY';
  if (ref.group !== 'security.istio.io') return undefined;
  switch (ref.kind) {
    case 'AuthorizationPolicy': return 'AUTHORIZATION_POLICY';
    case 'PeerAuthentication': return 'PEER_AUTHENTICATION';
    case 'RequestAuthentication': return 'REQUEST_AUTHENTICATION';
    default: return undefined;
  }
}

export interface ProjectionOptions {
  /** Istio root namespace: its selector-less policies are mesh-wide (default `istio-system`). */
  rootNamespace?: string;
}

type TargetRef = { group?: string; kind?: string; name?: string; namespace?: string };

/** The resources one compiled Service projects to (see `Projector.service`). */
const SERVICE_PARTS = ['SERVICE', 'ROUTE', 'DESTINATION_RULE', 'RATE_LIMIT'] as const satisfies readonly MeshKind[];

export class Projector {
  /** Model object → its projection; `null` for resources that are not distributed (pods, nodes, ...). */
  private readonly one = new WeakMap<object, MeshResource | null>();
  private readonly two = new WeakMap<object, MeshResource[]>();
  private readonly root: string;
  /** Services bound to a waypoint in the last projection (key → waypoint key), and the bindings sent. */
  private boundServices = new Map<string, string>();
  private bindingKeys = new Set<string>();
  /** The ingress resources of the last projection, by resourceKey. */
  private ingressSent = new Map<string, MeshResource>();

  constructor(opts: ProjectionOptions = {}) {
    this.root = opts.rootNamespace ?? 'istio-system';
  }

  /** Every MeshResource for a compiled mesh and the validated resources it was compiled from. */
  project(mesh: CompiledMesh, resources: Iterable<Resource>): MeshResource[] {
    const out: MeshResource[] = [];
    for (const w of mesh.workloads) out.push(this.workload(w));
    for (const s of mesh.services) out.push(...this.service(s));
    out.push(...this.bindings(mesh));
    out.push(...this.ingressChanges(mesh).upserts);
    for (const r of resources) {
      const m = this.resource(r);
      if (m !== undefined) out.push(m);
    }
    return out;
  }

  /**
   * The table delta for one compile's `changes` (see the module header). Costs what changed,
   * plus one pass over Services and workloads when a waypoint or a waypoint-bound Service did.
   */
  projectChanges(mesh: CompiledMesh, changes: MeshChanges): ProjectedChanges {
    const upserts: MeshResource[] = [];
    const removals: string[] = [];
    const workloadByKey = mesh.workloadByKey?.bind(mesh);
    const serviceByKey = mesh.serviceByKey?.bind(mesh);
    if (workloadByKey === undefined || serviceByKey === undefined) throw new TypeError('projectChanges needs a mesh with workloadByKey and serviceByKey');
    for (const key of changes.workloads) {
      const w = workloadByKey(key);
      if (w !== undefined) upserts.push(this.workload(w)); else removals.push(resourceKey('WORKLOAD', key));
    }
    let bindingsStale = changes.waypoints.length > 0;
    for (const key of changes.services) {
      const s = serviceByKey(key);
      const parts = s === undefined ? [] : this.service(s);
      upserts.push(...parts);
      for (const kind of SERVICE_PARTS) if (!parts.some((m) => m.kind === kind)) removals.push(resourceKey(kind, key));
      if (this.boundServices.has(key) || s?.waypoint !== undefined) bindingsStale = true;
    }
    if (bindingsStale) {
      const next = this.bindings(mesh);
      upserts.push(...next);
      const live = new Set(next.map((m) => m.name));
      for (const k of this.bindingKeys) if (!live.has(k)) removals.push(resourceKey('WAYPOINT_BINDING', k));
      this.bindingKeys = live;
    }
    const ingress = this.ingressChanges(mesh);
    upserts.push(...ingress.upserts);
    removals.push(...ingress.removals);
    for (const r of changes.upserted) {
      const m = this.resource(r);
      if (m !== undefined) upserts.push(m);
    }
    for (const ref of changes.removed) {
      const kind = distributedKind(ref);
      if (kind !== undefined) removals.push(resourceKey(kind, kind === 'NAMESPACE' ? ref.name : `${ref.namespace}/${ref.name}`));
    }
    return { upserts, removals };
  }

  /** Every waypoint binding (a waypoint, its addresses, its service account, the Services bound to it). */
  private bindings(mesh: CompiledMesh): MeshResource[] {
    const bound = new Map<string, string[]>();
    const boundServices = new Map<string, string>();
    for (const s of mesh.services) {
      if (s.waypoint === undefined) continue;
      const k = `${s.waypoint.namespace}/${s.waypoint.name}`;
      boundServices.set(s.key, k);
      let list = bound.get(k);
      if (list === undefined) { list = []; bound.set(k, list); }
      list.push(s.key);
    }
    this.boundServices = boundServices;
    const out: MeshResource[] = [];
    const waypoints = [...mesh.waypoints];
    const wls = new Map<string, Workload>();
    if (waypoints.length > 0) for (const w of mesh.workloads) if (w.waypointFor !== undefined) wls.set(w.key, w);
    for (const wp of waypoints) {
      const services = (bound.get(wp.key) ?? []).sort();
      const sa = wp.workloads.map((k) => wls.get(k)?.serviceAccount).find((x) => x !== undefined) ?? wp.name;
      out.push({
        kind: 'WAYPOINT_BINDING', name: wp.key,
        json: JSON.stringify({ key: wp.key, name: wp.name, namespace: wp.namespace, ports: wp.ports, addresses: wp.addresses, workloads: wp.workloads, serviceAccount: sa, services }),
        binding: { waypoint: wp.key, serviceAccount: sa, services },
      });
    }
    this.bindingKeys = new Set(out.map((m) => m.name));
    return out;
  }

  /**
   * The ingress resources (a WAYPOINT_BINDING and an INGRESS per ingress gateway), compared with
   * the last projection by payload: ingresses are few and their Secrets are not tracked by the
   * model's change sets, so they are rebuilt on every compile and only what differs is sent.
   */
  private ingressChanges(mesh: CompiledMesh): ProjectedChanges {
    const next = new Map<string, MeshResource>();
    for (const g of mesh.ingresses ?? []) {
      const binding = { waypoint: g.key, serviceAccount: g.serviceAccount, services: [] as string[] };
      next.set(resourceKey('WAYPOINT_BINDING', g.key), {
        kind: 'WAYPOINT_BINDING', name: g.key,
        json: JSON.stringify({ key: g.key, name: g.name, namespace: g.namespace, ports: g.ports.map((p) => p.port), addresses: [], workloads: g.workloads, serviceAccount: g.serviceAccount, services: [], ingress: true }),
        binding,
      });
      const ports = g.ports.map((p) => ({
        port: p.port,
        protocol: p.protocol,
        routes: p.routes,
        certificates: p.certificates.flatMap((c) => {
          const slash = c.secret.indexOf('/');
          const s = mesh.secret?.(c.secret.slice(0, slash), c.secret.slice(slash + 1));
          const certPem = s === undefined ? undefined : secretValue(s.spec, 'tls.crt');
          const keyPem = s === undefined ? undefined : secretValue(s.spec, 'tls.key');
          return certPem === undefined || keyPem === undefined ? [] : [{ hostname: c.hostname ?? null, secret: c.secret, certPem, keyPem }];
        }),
      }));
      // AuthorizationPolicies on the gateway's own pods (selector, namespace- or mesh-wide), as
      // written: agents never enforce them for it, since its pods are not captured.
      const policies = new Map<string, { namespace: string; name: string; spec: unknown }>();
      for (const wk of g.workloads) for (const p of mesh.workloadByKey?.(wk)?.authorization ?? []) policies.set(p.key, { namespace: p.ref.namespace, name: p.ref.name, spec: p.spec });
      next.set(resourceKey('INGRESS', g.key), {
        kind: 'INGRESS', name: g.key,
        json: JSON.stringify({ key: g.key, name: g.name, namespace: g.namespace, listeners: g.listeners, ports, policies: [...policies.values()], sources: g.routeSources }),
        select: { waypoints: [g.key] },
      });
    }
    const upserts: MeshResource[] = [];
    const removals: string[] = [];
    for (const [k, m] of next) if (this.ingressSent.get(k)?.json !== m.json) upserts.push(m);
    for (const k of this.ingressSent.keys()) if (!next.has(k)) removals.push(k);
    this.ingressSent = next;
    return { upserts, removals };
  }

  private workload(w: Workload): MeshResource {
    const hit = this.one.get(w);
    if (hit) return hit;
    const { authorization: _a, mtls: _m, ...rest } = w;
    const m: MeshResource = {
      kind: 'WORKLOAD', name: w.key, json: JSON.stringify(rest),
      workload: { node: w.node ?? '', namespace: w.namespace, serviceAccount: w.serviceAccount, labels: w.labels },
    };
    this.one.set(w, m);
    return m;
  }

  private service(s: MeshService): MeshResource[] {
    const hit = this.two.get(s);
    if (hit !== undefined) return hit;
    const { routes, routeSources, l4Routes, destinationPolicy, rateLimits, ...rest } = s;
    const out: MeshResource[] = [{ kind: 'SERVICE', name: s.key, json: JSON.stringify(rest) }];
    const select: Selection = { waypointServices: [s.key] };
    if (routes.length > 0 || (l4Routes?.length ?? 0) > 0) {
      const l4 = l4Routes !== undefined && l4Routes.length > 0 ? { l4Routes } : {};
      out.push({ kind: 'ROUTE', name: s.key, json: JSON.stringify({ service: s.key, hostname: s.hostname, routes, ...l4, sources: routeSources }), select });
    }
    if (destinationPolicy !== undefined) {
      out.push({ kind: 'DESTINATION_RULE', name: s.key, json: JSON.stringify({ service: s.key, hostname: s.hostname, policy: destinationPolicy }), select });
    }
    if (rateLimits.length > 0) {
      out.push({ kind: 'RATE_LIMIT', name: s.key, json: JSON.stringify({ service: s.key, hostname: s.hostname, limits: rateLimits }), select });
    }
    this.two.set(s, out);
    return out;
  }

  private resource(r: Resource): MeshResource | undefined {
    const hit = this.one.get(r);
    if (hit !== undefined) return hit ?? undefined;
    const m = this.build(r);
    this.one.set(r, m ?? null);
    return m;
  }

  private telemetry(r: Resource, name: string): MeshResource {
    const ns = r.ref.namespace;
    const spec = r.spec as { selector?: { matchLabels?: Record<string, string> }; targetRef?: TargetRef; targetRefs?: TargetRef[] };
    const targets = [...(spec.targetRef ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])];
    const selector = spec.selector?.matchLabels;
    const hasSelector = selector !== undefined && Object.keys(selector).length > 0;
    const ts = r.metadata.creationTimestamp;
    const json = JSON.stringify({ namespace: ns, name: r.ref.name, labels: r.metadata.labels ?? {}, ...(ts !== undefined ? { creationTimestamp: ts } : {}), spec: r.spec });
    let select: Selection;
    if (targets.length > 0) {
      const services: string[] = [];
      const waypoints: string[] = [];
      for (const t of targets) {
        const key = `${t.namespace ?? ns}/${t.name ?? ''}`;
        if (t.kind === 'Service') services.push(key);
        else if (t.kind === 'Gateway') waypoints.push(key);
      }
      select = { waypointServices: services, waypoints };
    } else if (hasSelector) {
      select = { agents: { namespace: ns, selector } };
    } else {
      const wide = ns === this.root;
      select = { agents: wide ? { meshWide: true } : { namespace: ns }, waypointsIn: wide ? { meshWide: true } : { namespace: ns } };
    }
    return { kind: 'TELEMETRY', name, json, select };
  }

  private build(r: Resource): MeshResource | undefined {
    const ns = r.ref.namespace;
    const name = `${ns}/${r.ref.name}`;
    const spec = r.spec as { selector?: { matchLabels?: Record<string, string> }; targetRef?: TargetRef; targetRefs?: TargetRef[] };
    const json = () => JSON.stringify({ namespace: ns, name: r.ref.name, labels: r.metadata.labels ?? {}, spec: r.spec });
    if (r.group === '' && r.kind === 'Namespace') {
      return { kind: 'NAMESPACE', name: r.ref.name, json: JSON.stringify({ name: r.ref.name, labels: r.metadata.labels ?? {} }) };
    }
    if (r.group === 'telemetry.istio.io' && r.kind === 'Telemetry') return this.telemetry(r, name);
    if (r.group !== 'security.istio.io') return undefined;
    const targets = [...(spec.targetRef ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])];
    const selector = spec.selector?.matchLabels;
    const hasSelector = selector !== undefined && Object.keys(selector).length > 0;
    const agents: Selection['agents'] = ns === this.root && !hasSelector ? { meshWide: true } : { namespace: ns, ...(hasSelector ? { selector } : {}) };
    const byTargets = (): Selection => {
      const services: string[] = [];
      const waypoints: string[] = [];
      for (const t of targets) {
        const tns = t.namespace ?? ns;
        if ((t.kind ?? '') === 'Service') services.push(`${tns}/${t.name ?? ''}`);
        else if ((t.kind ?? '') === 'Gateway') waypoints.push(`${tns}/${t.name ?? ''}`);
      }
      return { waypointServices: services, waypoints };
    };
    switch (r.kind) {
      case 'AuthorizationPolicy':
        return { kind: 'AUTHORIZATION_POLICY', name, json: json(), select: targets.length > 0 ? byTargets() : { agents } };
      case 'PeerAuthentication':
        return { kind: 'PEER_AUTHENTICATION', name, json: json(), select: { agents } };
      case 'RequestAuthentication':
        return { kind: 'REQUEST_AUTHENTICATION', name, json: json(), select: targets.length > 0 ? byTargets() : { waypointNamespaces: [ns] } };
      default:
        return undefined;
    }
  }
}
