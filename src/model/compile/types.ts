/**
 * The compiled view of the mesh that the control plane serves to agents and waypoints. All of
 * it is derived from resources; none of it refers back to YAML. Every object here is frozen.
 *
 * Durations are milliseconds, ports numbers, hosts fully qualified
 * (`name.namespace.svc.cluster.local`).
 */
import type { AuthzPolicy } from '../authz/types.js';
import type { ResourceRef } from '../diagnostics.js';
import type { MtlsMode } from '../kinds/security.js';

/** Labels and annotations the model reads. */
export const LABEL_DATAPLANE_MODE = 'ambit.dev/dataplane-mode';
export const LABEL_USE_WAYPOINT = 'ambit.dev/use-waypoint';
export const LABEL_USE_WAYPOINT_NAMESPACE = 'ambit.dev/use-waypoint-namespace';
/** Istio's waypoint labels, honoured on ServiceEntries and their namespaces (egress waypoints). */
export const LABEL_ISTIO_USE_WAYPOINT = 'istio.io/use-waypoint';
export const LABEL_ISTIO_USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
export const ANNOTATION_NETNS = 'ambit.dev/netns';

/** Effective mTLS mode: PeerAuthentication's modes after inheritance (never UNSET). */
export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

/** Where an effective mode came from. */
export interface MtlsSource {
  readonly level: 'workload' | 'namespace' | 'mesh' | 'default';
  /** The PeerAuthentication that set it (absent for `default`). */
  readonly policy?: ResourceRef;
}

export interface EffectiveMtls {
  /** Mode for ports without a port-level setting. */
  readonly mode: EffectiveMtlsMode;
  readonly source: MtlsSource;
  /** Port-level modes (container port → mode), from the workload's PeerAuthentication. */
  readonly ports: Readonly<Record<number, EffectiveMtlsMode>>;
}

/** A reference to a waypoint Gateway and how the binding was made. */
export interface WaypointBinding {
  readonly namespace: string;
  readonly name: string;
  /** The object whose label made the binding. */
  readonly via: 'pod' | 'namespace' | 'service' | 'service-entry';
}

/** A pod as the mesh sees it. */
export interface Workload {
  /** `namespace/name`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly uid: string | undefined;
  /** `status.podIP` (absent until the pod has an address). */
  readonly ip: string | undefined;
  /** All pod IPs (`status.podIPs`, else `[podIP]`). */
  readonly ips: readonly string[];
  readonly node: string | undefined;
  readonly serviceAccount: string;
  /** `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>`. */
  readonly identity: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Running (or phase unknown) and not marked NotReady. */
  readonly ready: boolean;
  /** Captured by the mesh: namespace or pod label ambient, not opted out, not host-network. */
  readonly enrolled: boolean;
  /** Named container ports (name → port), for Service targetPort resolution. */
  readonly namedPorts: Readonly<Record<string, number>>;
  /** Waypoint requested by the pod or namespace label, whether or not it exists. */
  readonly waypointTarget: WaypointBinding | undefined;
  /** `waypointTarget` when that waypoint exists. */
  readonly waypoint: WaypointBinding | undefined;
  /** This pod serves a waypoint (label gateway.networking.k8s.io/gateway-name). */
  readonly waypointFor: string | undefined;
  readonly mtls: EffectiveMtls;
  /**
   * AuthorizationPolicies enforced for this workload by its node agent: root-namespace
   * policies without selector, then the workload namespace's without selector, then selector
   * matches (root namespace first), each group by name. targetRef policies are not here (they
   * apply at waypoints: `Snapshot.waypointAuthorization`).
   */
  readonly authorization: readonly AuthzPolicy[];
  readonly source: ResourceRef;
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  /** Number or container-port name (defaults to `port`). */
  readonly targetPort: number | string;
  readonly protocol: 'TCP' | 'UDP' | 'SCTP';
  readonly appProtocol: string | undefined;
}

/** A ready (or `publishNotReadyAddresses`) pod behind a Service. */
export interface Endpoint {
  readonly workload: string;
  readonly ip: string;
  readonly node: string | undefined;
  readonly ready: boolean;
  readonly enrolled: boolean;
  /** Service port → resolved target port on this pod (named ports resolved per pod). */
  readonly ports: Readonly<Record<number, number>>;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * A ServiceEntry DNS endpoint: the name the agent resolves when it connects (`ip` is then
   * empty). Absent for every other endpoint.
   */
  readonly hostname?: string;
}

/** What a service compiled from a ServiceEntry host adds (absent for Kubernetes Services). */
export interface ServiceEntryFacts {
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  readonly resolution: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'DYNAMIC_DNS';
  /** CIDR blocks of `addresses` (plain addresses are the service's `vips`). */
  readonly addressRanges: readonly string[];
  /** The VIP was auto-allocated (the entry has no `addresses`). */
  readonly autoAllocated: boolean;
}

export interface MeshService {
  /** `namespace/name`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  /** `name.namespace.svc.<domain>`. */
  readonly hostname: string;
  /** The cluster IP, absent for headless Services. */
  readonly vip: string | undefined;
  readonly vips: readonly string[];
  readonly ports: readonly ServicePort[];
  readonly selector: Readonly<Record<string, string>> | undefined;
  readonly labels: Readonly<Record<string, string>>;
  /** Endpoints sorted by workload key. */
  readonly endpoints: readonly Endpoint[];
  readonly waypointTarget: WaypointBinding | undefined;
  readonly waypoint: WaypointBinding | undefined;
  /** L7 routes in evaluation order (empty: default route to the Service). */
  readonly routes: readonly Route[];
  /** Which objects provided `routes`. */
  readonly routeSources: readonly ResourceRef[];
  /**
   * TCPRoute and TLSRoute rules attached to this Service, in evaluation order; absent or empty:
   * L4 traffic goes to the Service itself. Present only when there are some.
   */
  readonly l4Routes?: readonly L4Route[];
  readonly destinationPolicy: DestinationPolicy | undefined;
  /**
   * LocalRateLimits enforced for this Service by its waypoint: those targeting the Service, then
   * those targeting the waypoint Gateway it is bound to, each group by name.
   */
  readonly rateLimits: readonly RateLimitPolicy[];
  readonly source: ResourceRef;
  /**
   * Present for a host of a ServiceEntry (then `key` is `namespace/host`, `name` and `hostname`
   * the host, `source` the ServiceEntry); absent for a Kubernetes Service.
   */
  readonly serviceEntry?: ServiceEntryFacts;
}

export interface Waypoint {
  /** `namespace/name`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  /** Listener ports of the Gateway. */
  readonly ports: readonly number[];
  /** Pods serving it (label gateway.networking.k8s.io/gateway-name), by key. */
  readonly workloads: readonly string[];
  /** Addresses of ready serving pods. */
  readonly addresses: readonly string[];
  readonly source: ResourceRef;
}

// --------------------------------------------------------------------------------- routes

export type StringMatchType = 'exact' | 'prefix' | 'regex';

export interface StringMatch {
  readonly type: StringMatchType;
  readonly value: string;
}

export interface HeaderMatch {
  readonly name: string;
  /** Absent: the header must be present (any value). */
  readonly match: StringMatch | undefined;
  /** True: the request must NOT have a matching header. */
  readonly invert: boolean;
}

/** One way a request can match a route; all present conditions must hold. */
export interface RouteMatch {
  readonly path: StringMatch | undefined;
  readonly ignorePathCase: boolean;
  readonly method: StringMatch | undefined;
  readonly authority: StringMatch | undefined;
  readonly scheme: StringMatch | undefined;
  readonly headers: readonly HeaderMatch[];
  readonly queryParams: readonly HeaderMatch[];
  readonly port: number | undefined;
}

export interface RouteDestination {
  /** Fully qualified host. */
  readonly host: string;
  readonly subset: string | undefined;
  readonly port: number | undefined;
  /** Relative weight (VirtualService: percent; HTTPRoute: any scale). */
  readonly weight: number;
}

export interface HeaderOperations {
  readonly set: Readonly<Record<string, string>>;
  readonly add: Readonly<Record<string, string>>;
  readonly remove: readonly string[];
}

export interface RetryPolicy {
  readonly attempts: number;
  readonly perTryTimeoutMs: number | undefined;
  /** Retry conditions (`5xx`, `connect-failure`, `503`, ...). */
  readonly retryOn: readonly string[];
  readonly backoffMs: number | undefined;
}

export interface FaultPolicy {
  readonly delay: { readonly ms: number; readonly percent: number } | undefined;
  readonly abort: { readonly httpStatus: number; readonly percent: number } | undefined;
}

export interface MirrorPolicy {
  readonly destination: RouteDestination;
  readonly percent: number;
}

export type RouteAction =
  | { readonly type: 'forward'; readonly destinations: readonly RouteDestination[] }
  | {
      readonly type: 'redirect';
      readonly scheme: string | undefined;
      readonly host: string | undefined;
      readonly port: number | undefined;
      readonly path: string | undefined;
      readonly prefixPath: string | undefined;
      readonly status: number;
    }
  | { readonly type: 'direct-response'; readonly status: number; readonly body: string | undefined };

/** A VirtualService http route or an HTTPRoute rule, normalised. */
export interface Route {
  readonly source: ResourceRef;
  /** Path of the rule inside its resource (`spec.http[1]`, `spec.rules[0]`). */
  readonly path: string;
  readonly name: string | undefined;
  /** Empty: matches every request. */
  readonly matches: readonly RouteMatch[];
  readonly action: RouteAction;
  readonly timeoutMs: number | undefined;
  readonly retries: RetryPolicy | undefined;
  readonly fault: FaultPolicy | undefined;
  readonly mirrors: readonly MirrorPolicy[];
  readonly rewrite: { readonly path: string | undefined; readonly prefixPath: string | undefined; readonly authority: string | undefined } | undefined;
  readonly requestHeaders: HeaderOperations | undefined;
  readonly responseHeaders: HeaderOperations | undefined;
}

/**
 * A TCPRoute or TLSRoute rule as the waypoint applies it to a connection. The waypoint takes the
 * first whose `port` (if set) is the destination port and whose `sniHosts` (TLSRoute; if set)
 * match the ClientHello's server name, then picks one destination by weight. Backends that are
 * refused (no ReferenceGrant, not a Service) are left out of `destinations`; none left: the
 * connection is closed.
 */
export interface L4Route {
  readonly source: ResourceRef;
  /** Path of the rule inside its resource (`spec.rules[0]`). */
  readonly path: string;
  readonly name: string | undefined;
  readonly protocol: 'tcp' | 'tls';
  /** The parentRef's port; absent: every port of the Service. */
  readonly port: number | undefined;
  /** TLSRoute hostnames, lower case (`*.example.com` matches one or more labels); empty: any. */
  readonly sniHosts: readonly string[];
  readonly destinations: readonly RouteDestination[];
}

// --------------------------------------------------------------------- destination policy

export type LoadBalancerPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

/**
 * Istio `LoadBalancerSettings.ConsistentHashLB`: exactly one hash key (header, cookie, source IP
 * or query parameter) and exactly one algorithm (`ringHash` or `maglev`, defaults filled in).
 * Absent keys are absent, never `undefined`, so the object survives a JSON round trip unchanged.
 */
export interface ConsistentHashPolicy {
  /** Request header to hash (lower case). */
  readonly httpHeaderName?: string;
  /** Cookie to hash; `ttlMs` and `path` describe the cookie Envoy would issue when absent. */
  readonly httpCookie?: { readonly name: string; readonly ttlMs?: number; readonly path?: string };
  /** Hash the downstream source address. */
  readonly useSourceIp?: boolean;
  /** Query parameter to hash. */
  readonly httpQueryParameterName?: string;
  /** Ketama ring with at least this many entries (default algorithm; default size 1024). */
  readonly ringHash?: { readonly minimumRingSize: number };
  /** Maglev lookup table of this (prime) size (default 65537). */
  readonly maglev?: { readonly tableSize: number };
}

export interface ConnectionPoolPolicy {
  readonly maxConnections: number | undefined;
  readonly connectTimeoutMs: number | undefined;
  readonly maxConnectionDurationMs: number | undefined;
  readonly tcpIdleTimeoutMs: number | undefined;
  readonly http1MaxPendingRequests: number | undefined;
  readonly http2MaxRequests: number | undefined;
  readonly maxRequestsPerConnection: number | undefined;
  readonly maxRetries: number | undefined;
  readonly httpIdleTimeoutMs: number | undefined;
  readonly maxConcurrentStreams: number | undefined;
}

export interface OutlierDetectionPolicy {
  readonly consecutive5xxErrors: number | undefined;
  readonly consecutiveGatewayErrors: number | undefined;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  readonly minHealthPercent: number;
}

export interface TrafficPolicy {
  /** Simple policy; undefined when unset (the waypoint's default) or when `consistentHash` is set. */
  readonly loadBalancer: LoadBalancerPolicy | undefined;
  /**
   * Consistent hashing (`loadBalancer.consistentHash`), present only when set. Part of the
   * `loadBalancer` group: a subset's or port's `loadBalancer` replaces it as a whole.
   */
  readonly consistentHash?: ConsistentHashPolicy;
  readonly connectionPool: ConnectionPoolPolicy | undefined;
  readonly outlierDetection: OutlierDetectionPolicy | undefined;
  /** TLS the waypoint originates to the endpoints (`tls` SIMPLE or MUTUAL); absent: plain. */
  readonly tls?: TlsOriginationPolicy;
  /** Per service port overrides (already merged over the fields above). */
  readonly ports: Readonly<Record<number, Omit<TrafficPolicy, 'ports'>>>;
}

/** DestinationRule `trafficPolicy.tls` as a waypoint originates it; files are read by the waypoint. */
export interface TlsOriginationPolicy {
  readonly mode: 'SIMPLE' | 'MUTUAL';
  /** CA file (default: the system roots). */
  readonly caCertificates?: string;
  /**
   * CA certificates as PEM text, for policies whose CA travels in the view rather than as a file
   * on the waypoint (a BackendTLSPolicy's ConfigMap). When set, `caCertificates` is not read
   * (default: none).
   */
  readonly caCertificatePem?: string;
  /** Where the CA came from, for messages, never the material (default: the file paths). */
  readonly caSource?: string;
  readonly clientCertificate?: string;
  readonly privateKey?: string;
  /** SNI (default: the DestinationRule host, when not a wildcard). */
  readonly sni?: string;
  readonly subjectAltNames: readonly string[];
}

export interface Subset {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The subset's policy merged over the DestinationRule's top-level policy. */
  readonly trafficPolicy: TrafficPolicy;
}

export interface DestinationPolicy {
  readonly source: ResourceRef;
  readonly host: string;
  readonly trafficPolicy: TrafficPolicy;
  readonly subsets: readonly Subset[];
}

// --------------------------------------------------------------------------- rate limits

/** A LocalRateLimit (`ambit.dev/v1alpha1`) as it applies to one Service, defaults filled in. */
export interface RateLimitPolicy {
  /** `namespace/name` of the LocalRateLimit: the identity of its token bucket at a waypoint. */
  readonly key: string;
  readonly source: ResourceRef;
  /** How it attached: a targetRef to the Service, or to the waypoint Gateway the Service is bound to. */
  readonly via: 'service' | 'waypoint';
  /** Only requests matched to the route of this name; absent: every request. */
  readonly routeName?: string;
  /** Bucket size (burst), >= 1. */
  readonly maxTokens: number;
  /** Tokens added every `fillIntervalMs` (default 1). */
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
  /** Status of a refused request (default 429). */
  readonly statusCode: number;
}
