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
 * - ROUTE, DESTINATION_RULE (waypoints bound to the service): the compiled routes and
 *   destination policy of one service, keyed by the service.
 *
 * Invariant: projecting the same model object twice yields the identical MeshResource object
 * (cached by object identity), so an unchanged resource costs a map lookup, not a serialization.
 */
import type { Resource } from '../model/resource.js';
import type { MeshService, Waypoint, Workload } from '../model/compile/types.js';
import type { MeshResource, Selection } from './mesh-resource.js';

/** The parts of the model's compiled snapshot the control plane distributes. */
export interface CompiledMesh {
  readonly workloads: Iterable<Workload>;
  readonly services: Iterable<MeshService>;
  readonly waypoints: Iterable<Waypoint>;
}

export interface ProjectionOptions {
  /** Istio root namespace: its selector-less policies are mesh-wide (default `istio-system`). */
  rootNamespace?: string;
}

type TargetRef = { group?: string; kind?: string; name?: string; namespace?: string };

export class Projector {
  /** Model object → its projection; `null` for resources that are not distributed (pods, nodes, ...). */
  private readonly one = new WeakMap<object, MeshResource | null>();
  private readonly two = new WeakMap<object, MeshResource[]>();
  private readonly root: string;

  constructor(opts: ProjectionOptions = {}) {
    this.root = opts.rootNamespace ?? 'istio-system';
  }

  /** Every MeshResource for a compiled mesh and the validated resources it was compiled from. */
  project(mesh: CompiledMesh, resources: Iterable<Resource>): MeshResource[] {
    const out: MeshResource[] = [];
    for (const w of mesh.workloads) out.push(this.workload(w));
    const bound = new Map<string, string[]>();
    for (const s of mesh.services) {
      out.push(...this.service(s));
      if (s.waypoint !== undefined) {
        const k = `${s.waypoint.namespace}/${s.waypoint.name}`;
        let list = bound.get(k);
        if (list === undefined) { list = []; bound.set(k, list); }
        list.push(s.key);
      }
    }
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
    for (const r of resources) {
      const m = this.resource(r);
      if (m !== undefined) out.push(m);
    }
    return out;
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
    const { routes, routeSources, destinationPolicy, ...rest } = s;
    const out: MeshResource[] = [{ kind: 'SERVICE', name: s.key, json: JSON.stringify(rest) }];
    const select: Selection = { waypointServices: [s.key] };
    if (routes.length > 0) {
      out.push({ kind: 'ROUTE', name: s.key, json: JSON.stringify({ service: s.key, hostname: s.hostname, routes, sources: routeSources }), select });
    }
    if (destinationPolicy !== undefined) {
      out.push({ kind: 'DESTINATION_RULE', name: s.key, json: JSON.stringify({ service: s.key, hostname: s.hostname, policy: destinationPolicy }), select });
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

  private build(r: Resource): MeshResource | undefined {
    const ns = r.ref.namespace;
    const name = `${ns}/${r.ref.name}`;
    const spec = r.spec as { selector?: { matchLabels?: Record<string, string> }; targetRef?: TargetRef; targetRefs?: TargetRef[] };
    const json = () => JSON.stringify({ namespace: ns, name: r.ref.name, labels: r.metadata.labels ?? {}, spec: r.spec });
    if (r.group === '' && r.kind === 'Namespace') {
      return { kind: 'NAMESPACE', name: r.ref.name, json: JSON.stringify({ name: r.ref.name, labels: r.metadata.labels ?? {} }) };
    }
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
