/**
 * The inbound decision for a local workload, shared by HBONE inbound (15008), plaintext inbound
 * (15006) and in-process delivery between two pods of this node: effective PeerAuthentication
 * for the port, then the L4 AuthorizationPolicy evaluation of the model
 * (`evaluateAuthorization(..., { layer: 'L4' })`), and the Istio labels of the connection.
 *
 * A denial always names what decided it: the policy `namespace/name` (or the PeerAuthentication
 * for STRICT), and the evaluator's reason.
 */
import { evaluateAuthorization } from '../model/authz/evaluate.js';
import type { Decision } from '../model/authz/types.js';
import type { EffectiveMtlsMode } from '../model/compile/types.js';
import { type MeshState, type ServiceView, type WorkloadView } from './mesh-state.js';
import { canonicalRevision, canonicalService, workloadApp, workloadCluster, workloadName, workloadVersion } from '../metrics/workload-name.js';
import type { TcpLabels } from './metrics.js';

export interface InboundPeer {
  /** Verified SPIFFE ID of the client (absent for plaintext). */
  principal: string | undefined;
  /** The client's address (original client, not the tunnel peer). */
  ip: string;
}

export type InboundVerdict =
  | { allow: true; decision: Decision | undefined }
  | { allow: false; reason: string; policy: string; kind: 'authorization' | 'strict_mtls' };

/** Effective mTLS mode for one port of a workload (port-level setting first). */
export function mtlsModeFor(state: MeshState, w: WorkloadView, port: number): { mode: EffectiveMtlsMode; policy: string } {
  const m = state.mtlsFor(w);
  const mode = m.ports[port] ?? m.mode;
  const p = m.source.policy;
  return { mode, policy: p === undefined ? `${m.source.level} default` : `${p.namespace}/${p.name}` };
}

/** PeerAuthentication (plaintext only) then L4 authorization for a connection to `w`:`port`. */
export function decideInbound(state: MeshState, w: WorkloadView, ip: string, port: number, peer: InboundPeer): InboundVerdict {
  if (peer.principal === undefined) {
    const m = mtlsModeFor(state, w, port);
    if (m.mode === 'STRICT') {
      return { allow: false, kind: 'strict_mtls', policy: m.policy, reason: `plaintext connection refused: PeerAuthentication ${m.policy} requires mutual TLS (STRICT) for ${w.key} port ${port}` };
    }
  }
  const policies = state.policiesFor(w);
  if (policies.length === 0) return { allow: true, decision: undefined };
  const decision = evaluateAuthorization(policies, {
    source: { ...(peer.principal !== undefined ? { principal: peer.principal } : {}), ip: peer.ip },
    destination: { ip, port, namespace: w.namespace, labels: w.labels },
  }, { layer: 'L4', rootNamespace: state.rootNamespace });
  if (decision.allow) return { allow: true, decision };
  const policy = decision.policy === undefined ? '-' : `${decision.policy.namespace}/${decision.policy.name}`;
  return { allow: false, kind: 'authorization', policy, reason: decision.reason };
}

/**
 * Whether the HBONE peer `peerIdentity` may name `ip` as the connection's original source
 * (`forwarded: for=`). The address decides source-IP policy (ipBlocks, remoteIpBlocks), the
 * metrics' source workload and, with source address preservation, the address the app sees, so
 * it is taken only from a peer entitled to speak for it:
 * - the identity of the workload that has that address (a node agent tunnels a pod's connection
 *   under the pod's own identity), or
 * - a waypoint's identity (a waypoint forwards the address of the client it proxies).
 * Anything else is a peer claiming another workload's address (or one no workload has): refused.
 */
export function forwardedSourceProblem(state: MeshState, peerIdentity: string | undefined, ip: string): string | undefined {
  if (peerIdentity === undefined) return `a connection without a peer identity may not name a source address (forwarded for=${ip})`;
  const owner = state.workloadsByIp.get(ip);
  if (owner !== undefined && owner.identity === peerIdentity) return undefined;
  for (const wp of state.waypoints.values()) if (state.waypointIdentity(wp) === peerIdentity) return undefined;
  return `peer ${peerIdentity} may not speak for source address ${ip} (${owner !== undefined ? `it belongs to ${owner.key}, identity ${owner.identity}` : 'no workload has that address'}): only the workload's own identity or a waypoint may forward a source address`;
}

/** The service a destination workload serves on `port` (for `destination_service`), if any. */
export function serviceOf(state: MeshState, w: WorkloadView | undefined, port: number): ServiceView | undefined {
  if (w === undefined) return undefined;
  for (const s of state.services.values()) {
    if (s.namespace !== w.namespace) continue;
    if (s.endpoints.some((e) => e.workload === w.key && Object.values(e.ports).includes(port))) return s;
  }
  return undefined;
}

/** Istio labels of a connection. */
export function tcpLabels(init: {
  reporter: 'source' | 'destination';
  source: WorkloadView | undefined;
  sourcePrincipal: string | undefined;
  destination: WorkloadView | undefined;
  destinationPrincipal: string | undefined;
  service: ServiceView | undefined;
  mtls: boolean;
  flags?: string;
}): TcpLabels {
  const { source: src, destination: dst, service: svc } = init;
  return {
    reporter: init.reporter,
    source_workload: workloadName(src),
    source_workload_namespace: src?.namespace ?? 'unknown',
    source_principal: init.sourcePrincipal ?? 'unknown',
    source_app: workloadApp(src),
    source_version: workloadVersion(src),
    source_canonical_service: canonicalService(src),
    source_canonical_revision: canonicalRevision(src),
    source_cluster: workloadCluster(src),
    destination_workload: workloadName(dst),
    destination_workload_namespace: dst?.namespace ?? 'unknown',
    destination_principal: init.destinationPrincipal ?? 'unknown',
    destination_app: workloadApp(dst),
    destination_version: workloadVersion(dst),
    destination_canonical_service: canonicalService(dst),
    destination_canonical_revision: canonicalRevision(dst),
    destination_cluster: workloadCluster(dst),
    destination_service: svc?.hostname ?? 'unknown',
    destination_service_name: svc?.name ?? 'unknown',
    destination_service_namespace: svc?.namespace ?? 'unknown',
    request_protocol: 'tcp',
    connection_security_policy: init.mtls ? 'mutual_tls' : 'none',
    response_flags: init.flags ?? '-',
  };
}
