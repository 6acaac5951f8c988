/**
 * The Kubernetes resources the control plane watches (docs/architecture.md#resources): core kinds,
 * EndpointSlices, and the mesh kinds (Istio security, networking and telemetry, Gateway API). Paths are
 * cluster-wide lists.
 */
export interface KubeKind {
  group: string;
  version: string;
  kind: string;
  plural: string;
  /** True for CRDs that may be absent from a cluster (404 means "not installed", not an error). */
  optional: boolean;
}

export function apiVersionOf(k: KubeKind): string {
  return k.group === '' ? k.version : `${k.group}/${k.version}`;
}

export function listPath(k: KubeKind): string {
  return k.group === '' ? `/api/${k.version}/${k.plural}` : `/apis/${k.group}/${k.version}/${k.plural}`;
}

export const WATCHED_KINDS: readonly KubeKind[] = [
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', optional: false },
  { group: '', version: 'v1', kind: 'Pod', plural: 'pods', optional: false },
  { group: '', version: 'v1', kind: 'Service', plural: 'services', optional: false },
  { group: '', version: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', optional: false },
  { group: '', version: 'v1', kind: 'Node', plural: 'nodes', optional: false },
  { group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', optional: false },
  { group: 'security.istio.io', version: 'v1', kind: 'PeerAuthentication', plural: 'peerauthentications', optional: true },
  { group: 'security.istio.io', version: 'v1', kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', optional: true },
  { group: 'security.istio.io', version: 'v1', kind: 'RequestAuthentication', plural: 'requestauthentications', optional: true },
  { group: 'networking.istio.io', version: 'v1', kind: 'VirtualService', plural: 'virtualservices', optional: true },
  { group: 'networking.istio.io', version: 'v1', kind: 'DestinationRule', plural: 'destinationrules', optional: true },
  { group: 'networking.istio.io', version: 'v1', kind: 'ServiceEntry', plural: 'serviceentries', optional: true },
  { group: 'telemetry.istio.io', version: 'v1', kind: 'Telemetry', plural: 'telemetries', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'HTTPRoute', plural: 'httproutes', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'GRPCRoute', plural: 'grpcroutes', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1alpha2', kind: 'TCPRoute', plural: 'tcproutes', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1alpha2', kind: 'TLSRoute', plural: 'tlsroutes', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1beta1', kind: 'ReferenceGrant', plural: 'referencegrants', optional: true },
  { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'Gateway', plural: 'gateways', optional: true },
];
