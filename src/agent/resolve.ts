/**
 * Outbound destination resolution: where a captured connection goes, given its source pod and
 * original destination. The answer is an ordered list of candidates to try (the first is the
 * load-balancing pick; the rest are used only when connecting to an earlier one fails before any
 * byte was sent).
 *
 * Rules (ztunnel's, with ambit's data):
 * - A service VIP with a served port: through the service's waypoint when it has one (HBONE to
 *   the waypoint, authority = VIP:port), else over its ready endpoints, round robin per service.
 *   A VIP port the service does not serve, or a service without ready endpoints, has no route.
 * - A pod address: through the pod's waypoint when it has one, else that pod.
 * - An endpoint or pod in the mesh (enrolled) is reached by HBONE on its address:15008, with the
 *   authority = pod address:target port and the pod's identity as the expected peer; on this
 *   node it is delivered in-process (the node's own address is not steered by sk_lookup, so a
 *   local HBONE hop is impossible and would be a wasted TLS handshake anyway).
 * - A ServiceEntry host (its VIP, or an address in one of its CIDR blocks) on a port it declares:
 *   resolution NONE goes to the address the client dialed (by HBONE when that is a mesh pod and
 *   the entry is MESH_INTERNAL);
 *   the others over the entry's endpoints, a DNS endpoint passing through to its name, which the
 *   agent resolves when it connects. On a port the entry does not declare, the address counts as
 *   outside the registry.
 * - Anything else (outside the registry: no service, pod or ServiceEntry) passes through as plain
 *   TCP under outboundTrafficPolicy ALLOW_ANY, and has no route under REGISTRY_ONLY (Istio's
 *   BlackHoleCluster; `blackhole` is set so the proxy counts and logs it as such).
 * - A waypoint never sends its own traffic back to itself.
 *
 * Round robin state is per service and lives in the Resolver (not in the immutable MeshState), so
 * it survives view updates.
 */
import type { MeshState, ServiceView, WaypointView, WorkloadView } from './mesh-state.js';

export interface Destination {
  address: string;
  port: number;
}

/** One way to reach the destination. */
export type Candidate =
  | {
      kind: 'hbone';
      /** The HBONE server to dial. */
      address: Destination;
      /** `ip:port` of the CONNECT. */
      authority: Destination;
      /** SPIFFE ID the server must present. */
      identity: string;
      /** The workload behind it (absent for a waypoint). */
      workload: WorkloadView | undefined;
      waypoint: WaypointView | undefined;
    }
  | {
      /** An enrolled pod on this node: authorize and deliver in-process. */
      kind: 'local';
      target: Destination;
      workload: WorkloadView;
    }
  | {
      kind: 'passthrough';
      target: Destination;
      workload: WorkloadView | undefined;
    };

export interface Resolution {
  /** Candidates in the order to try; empty when there is no route. */
  candidates: Candidate[];
  /** The service the destination belongs to (for `destination_service`). */
  service: ServiceView | undefined;
  /** Why there is no route (when `candidates` is empty). */
  reason?: string;
  /** Refused because the destination is outside the registry under REGISTRY_ONLY. */
  blackhole?: boolean;
}

export interface ResolverOptions {
  /** HBONE port of every agent (default 15008). */
  hbonePort?: number;
  /** Most candidates returned for a service (default 3: the pick plus two retries). */
  maxAttempts?: number;
}

export class Resolver {
  private readonly rr = new Map<string, number>();
  private readonly hbonePort: number;
  private readonly maxAttempts: number;

  constructor(opts: ResolverOptions = {}) {
    this.hbonePort = opts.hbonePort ?? 15008;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
  }

  resolve(state: MeshState, source: Pick<WorkloadView, 'key' | 'waypointFor' | 'namespace'> | undefined, dst: Destination): Resolution {
    const svc = state.serviceByAddress(dst.address);
    if (svc !== undefined && svc.serviceEntry === undefined) return this.viaService(state, source, svc, dst);
    if (svc !== undefined) {
      const r = this.viaEntry(state, source, svc, dst);
      if (r !== undefined) return r;
    }
    const w = state.workloadsByIp.get(dst.address);
    if (w !== undefined) {
      const wp = this.waypointOf(state, source, w.waypoint);
      if (wp !== undefined) return { candidates: [this.toWaypoint(state, wp, dst)], service: undefined };
      return { candidates: [this.toWorkload(state, w, dst.address, dst.port)], service: undefined };
    }
    if (state.outboundTrafficPolicy === 'REGISTRY_ONLY') {
      const at = svc !== undefined ? `ServiceEntry host ${svc.hostname} does not declare port ${dst.port}` : 'no service, pod or ServiceEntry has this address';
      return { candidates: [], service: undefined, blackhole: true, reason: `${dst.address}:${dst.port} is outside the mesh registry (${at}) and outboundTrafficPolicy is REGISTRY_ONLY (BlackHoleCluster); declare it with a ServiceEntry to allow it` };
    }
    return { candidates: [{ kind: 'passthrough', target: dst, workload: undefined }], service: undefined };
  }

  /** A ServiceEntry host; undefined when it does not declare the port (then it is not the registry's). */
  private viaEntry(state: MeshState, source: Pick<WorkloadView, 'key' | 'waypointFor' | 'namespace'> | undefined, svc: ServiceView, dst: Destination): Resolution | undefined {
    if (!svc.ports.some((p) => p.port === dst.port && p.protocol === 'TCP')) return undefined;
    if (svc.serviceEntry?.resolution === 'NONE' || svc.serviceEntry?.resolution === 'DYNAMIC_DNS') {
      const w = svc.serviceEntry.location === 'MESH_INTERNAL' ? state.workloadsByIp.get(dst.address) : undefined;
      return { candidates: [w !== undefined ? this.toWorkload(state, w, dst.address, dst.port) : { kind: 'passthrough', target: dst, workload: undefined }], service: svc };
    }
    return this.viaService(state, source, svc, dst);
  }

  private viaService(state: MeshState, source: Pick<WorkloadView, 'key' | 'waypointFor' | 'namespace'> | undefined, svc: ServiceView, dst: Destination): Resolution {
    const port = svc.ports.find((p) => p.port === dst.port && p.protocol === 'TCP');
    if (port === undefined) {
      return { candidates: [], service: svc, reason: `service ${svc.key} (${dst.address}) does not serve TCP port ${dst.port}` };
    }
    const wp = this.waypointOf(state, source, svc.waypoint);
    if (wp !== undefined) return { candidates: [this.toWaypoint(state, wp, dst)], service: svc };
    const ready = svc.endpoints.filter((e) => e.ready && e.ports[dst.port] !== undefined);
    if (ready.length === 0) {
      return { candidates: [], service: svc, reason: `service ${svc.key} has no ready endpoint for port ${dst.port}` };
    }
    const next = this.rr.get(svc.key) ?? 0;
    this.rr.set(svc.key, (next + 1) % ready.length);
    const out: Candidate[] = [];
    for (let i = 0; i < Math.min(this.maxAttempts, ready.length); i++) {
      const e = ready[(next + i) % ready.length];
      if (e === undefined) continue;
      const w = state.workloads.get(e.workload);
      const target = e.ports[dst.port] as number;
      if (w === undefined) out.push({ kind: 'passthrough', target: { address: e.hostname ?? e.ip, port: target }, workload: undefined });
      else out.push(this.toWorkload(state, w, e.ip, target));
    }
    return { candidates: out, service: svc };
  }

  private waypointOf(state: MeshState, source: Pick<WorkloadView, 'key' | 'waypointFor' | 'namespace'> | undefined, binding: { namespace: string; name: string } | undefined): WaypointView | undefined {
    const wp = state.waypointFor(binding);
    if (wp === undefined) return undefined;
    // A waypoint's own upstream traffic goes straight to the endpoints.
    if (source !== undefined && source.waypointFor === wp.name && source.namespace === wp.namespace) return undefined;
    return wp;
  }

  private toWaypoint(state: MeshState, wp: WaypointView, dst: Destination): Candidate {
    const i = this.rr.get(`waypoint:${wp.key}`) ?? 0;
    this.rr.set(`waypoint:${wp.key}`, (i + 1) % wp.addresses.length);
    const address = wp.addresses[i % wp.addresses.length] as string;
    return { kind: 'hbone', address: { address, port: this.hbonePort }, authority: dst, identity: state.waypointIdentity(wp), workload: undefined, waypoint: wp };
  }

  private toWorkload(state: MeshState, w: WorkloadView, ip: string, port: number): Candidate {
    if (!w.enrolled) return { kind: 'passthrough', target: { address: ip, port }, workload: w };
    if (w.node === state.node) return { kind: 'local', target: { address: ip, port }, workload: w };
    return { kind: 'hbone', address: { address: ip, port: this.hbonePort }, authority: { address: ip, port }, identity: w.identity, workload: w, waypoint: undefined };
  }
}
