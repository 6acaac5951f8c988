/**
 * Kinds that ambit knows of and does not model: Istio, Gateway API and Kubernetes kinds that
 * real mesh YAML carries next to the ones ambit reads. Each is ignored with one warning per kind
 * (not per object) that says why and what to use instead, so a folder of Istio YAML analyzes
 * without a flood, and nobody believes an EnvoyFilter or a Sidecar is in force.
 *
 * Invariant: no kind here is also in all-kinds.ts (a test checks it); matching is on API group
 * and kind, whatever the version.
 */
import { kindKey } from '../resource.js';

export interface UnmodelledKind {
  /** API group, `''` for core. */
  readonly group: string;
  readonly kind: string;
  /** What ambit does with such objects and what to use instead (one sentence, no trailing dot). */
  readonly note: string;
}

const INGRESS = 'ambit\'s ingress gateways are Gateway API Gateways with gatewayClassName ambit (HTTPRoutes bound to them); waypoints are gatewayClassName ambit-waypoint; egress gateways are not implemented';
const CONTROLLER = 'workloads are Pods: ambit reads the Pods this controller creates, not the controller';

export const UNMODELLED_KINDS: readonly UnmodelledKind[] = [
  // networking.istio.io
  { group: 'networking.istio.io', kind: 'WorkloadEntry', note: 'only Pods are workloads (VMs and other non-Kubernetes workloads are not supported)' },
  { group: 'networking.istio.io', kind: 'WorkloadGroup', note: 'only Pods are workloads (VMs and other non-Kubernetes workloads are not supported)' },
  { group: 'networking.istio.io', kind: 'EnvoyFilter', note: 'ambit has no Envoy to patch; for local rate limits use LocalRateLimit (ambit.dev/v1alpha1)' },
  { group: 'networking.istio.io', kind: 'Sidecar', note: 'ambient mode has no sidecars; every Service is visible mesh-wide' },
  { group: 'networking.istio.io', kind: 'ProxyConfig', note: 'ambit has no Envoy proxies to configure; the agent and waypoint take their settings from flags' },
  // other Istio groups
  { group: 'extensions.istio.io', kind: 'WasmPlugin', note: 'ambit runs no Wasm extensions' },
  { group: 'install.istio.io', kind: 'IstioOperator', note: 'it installs Istio, not ambit' },
  // gateway.networking.k8s.io
  { group: 'gateway.networking.k8s.io', kind: 'GatewayClass', note: 'a waypoint is named by gatewayClassName ambit-waypoint on the Gateway; the GatewayClass object is not needed' },
  { group: 'gateway.networking.k8s.io', kind: 'UDPRoute', note: 'ambit carries TCP only' },
  { group: 'gateway.networking.k8s.io', kind: 'BackendTLSPolicy', note: 'mTLS between workloads is automatic (HBONE); TLS origination to backends is not implemented' },
  { group: 'gateway.networking.k8s.io', kind: 'ListenerSet', note: INGRESS },
  // Kubernetes
  { group: 'apps', kind: 'Deployment', note: CONTROLLER },
  { group: 'apps', kind: 'StatefulSet', note: CONTROLLER },
  { group: 'apps', kind: 'DaemonSet', note: CONTROLLER },
  { group: 'apps', kind: 'ReplicaSet', note: CONTROLLER },
  { group: 'batch', kind: 'Job', note: CONTROLLER },
  { group: 'batch', kind: 'CronJob', note: CONTROLLER },
  { group: '', kind: 'Endpoints', note: 'ambit computes endpoints from the Pods a Service selects' },
  { group: 'discovery.k8s.io', kind: 'EndpointSlice', note: 'ambit computes endpoints from the Pods a Service selects' },
  { group: '', kind: 'ConfigMap', note: 'ambit reads no ConfigMaps' },
  { group: 'networking.k8s.io', kind: 'NetworkPolicy', note: 'the CNI enforces NetworkPolicy; ambit enforces AuthorizationPolicy' },
  { group: 'networking.k8s.io', kind: 'Ingress', note: INGRESS },
];

const BY_KEY = new Map<string, UnmodelledKind>(UNMODELLED_KINDS.map((k) => [kindKey(k.group, k.kind), k]));

/** The entry for `group/kind`, if ambit knows it and does not model it. */
export function findUnmodelledKind(group: string, kind: string): UnmodelledKind | undefined {
  return BY_KEY.get(kindKey(group, kind));
}
