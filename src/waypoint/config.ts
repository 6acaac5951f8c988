/**
 * What the waypoint knows about the mesh: the services it serves (with routes, destination
 * policy, L7 authorization, JWT rules and rate limits) and the services and workloads routes may
 * send to. It is an immutable value built either from the discovery view (view-config.ts) or
 * directly (tests, tools); the proxy swaps whole configs atomically, so a request sees one
 * consistent version from start to end.
 *
 * Invariants: lookups are O(1); nothing here is mutated after construction; the proxy never reads
 * resources, only this.
 */
import type { AuthzPolicy } from '../model/authz/types.js';
import type { DestinationPolicy, Endpoint, L4Route, Route, ServicePort } from '../model/compile/types.js';
import type { RequestAuthenticationSpec } from '../model/kinds/security.js';
import type { LocalRateLimitSpec } from '../model/kinds/ambit-rate-limit.js';
import { DEFAULT_TELEMETRY, type EffectiveTelemetry } from '../model/compile/telemetry.js';
import { WaypointError } from './errors.js';
import { isPathNormalization, PATH_NORMALIZATIONS, type PathNormalization } from './request-target.js';

/** A Service as the waypoint uses it. */
export interface WaypointServiceInfo {
  /** `namespace/name`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  /** `name.namespace.svc.<domain>`. */
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly ServicePort[];
  readonly endpoints: readonly Endpoint[];
  readonly labels: Readonly<Record<string, string>>;
}

/** Everything attached to one service. */
export interface ServiceBinding {
  readonly service: WaypointServiceInfo;
  /** L7 routes in evaluation order; empty: everything goes to the service itself. */
  readonly routes: readonly Route[];
  /** TCPRoute and TLSRoute rules in evaluation order (l4-route.ts); absent or empty: none. */
  readonly l4Routes?: readonly L4Route[];
  readonly destinationPolicy: DestinationPolicy | undefined;
  /** AuthorizationPolicies enforced for this service (targeting it or the waypoint). */
  readonly authorization: readonly AuthzPolicy[];
  /** RequestAuthentication specs that apply (targeting it, the waypoint, or namespace-wide). */
  readonly requestAuthentication: readonly RequestAuthenticationSpec[];
  /** LocalRateLimit specs that apply, with their `namespace/name`. */
  readonly rateLimits: readonly { readonly key: string; readonly spec: LocalRateLimitSpec }[];
}

/** A workload as the waypoint needs it to reach an endpoint. */
export interface WorkloadInfo {
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  /** SPIFFE ID the endpoint's HBONE server must prove. */
  readonly identity: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Captured by the mesh: reached over HBONE; otherwise plain TCP. */
  readonly enrolled: boolean;
  /** Pod address, when it has one (names the source of requests in metrics). */
  readonly ip?: string;
}

export interface WaypointConfigData {
  /** Services bound to this waypoint. */
  readonly bound: readonly ServiceBinding[];
  /** Every other service a route may name as destination (default none). */
  readonly others?: readonly WaypointServiceInfo[];
  readonly workloads: readonly WorkloadInfo[];
  /** Version label for logs (default `static`). */
  readonly version?: string;
  /**
   * Istio MeshConfig `pathNormalization.normalization`: how request paths are normalized before
   * routing and authorization (request-target.ts; default `BASE`, Istio's default).
   */
  readonly pathNormalization?: PathNormalization;
  /**
   * Effective Telemetry (src/model/compile/telemetry.ts) of the requests this waypoint handles:
   * `waypoint` for requests no bound service claims and services without their own, `services`
   * per bound service key (default: DEFAULT_TELEMETRY, every line and series, no sampling).
   */
  readonly telemetry?: { readonly waypoint: EffectiveTelemetry; readonly services?: ReadonlyMap<string, EffectiveTelemetry> };
}

export class WaypointConfig {
  readonly version: string;
  /** Path normalization of every request target (default `BASE`). */
  readonly pathNormalization: PathNormalization;
  /** VIP, then port (no key string to build on the per-request lookup). */
  private readonly byAddress = new Map<string, Map<number, ServiceBinding>>();
  private readonly byHost = new Map<string, WaypointServiceInfo>();
  private readonly bindings = new Map<string, ServiceBinding>();
  private readonly workloadsByKey = new Map<string, WorkloadInfo>();
  private readonly workloadsByIp = new Map<string, WorkloadInfo>();
  private readonly telemetryDefault: EffectiveTelemetry;
  private readonly telemetryByService: ReadonlyMap<string, EffectiveTelemetry>;
  /** Some Telemetry sets a sampling percentage (else the per-request lookup is skipped). */
  private readonly sampling: boolean;

  constructor(data: WaypointConfigData) {
    this.version = data.version ?? 'static';
    this.telemetryDefault = data.telemetry?.waypoint ?? DEFAULT_TELEMETRY;
    this.telemetryByService = data.telemetry?.services ?? new Map();
    this.sampling = this.telemetryDefault.samplingPercentage !== undefined || [...this.telemetryByService.values()].some((t) => t.samplingPercentage !== undefined);
    const pn: unknown = data.pathNormalization ?? 'BASE';
    if (!isPathNormalization(pn)) {
      throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `pathNormalization.normalization: unknown value ${JSON.stringify(pn)}; expected one of ${PATH_NORMALIZATIONS.join(', ')} (Istio MeshConfig names, upper case)`);
    }
    this.pathNormalization = pn;
    for (const s of data.others ?? []) this.byHost.set(s.hostname, s);
    for (const b of data.bound) {
      this.bindings.set(b.service.key, b);
      this.byHost.set(b.service.hostname, b.service);
      for (const vip of b.service.vips) {
        let ports = this.byAddress.get(vip);
        if (ports === undefined) this.byAddress.set(vip, (ports = new Map()));
        for (const p of b.service.ports) ports.set(p.port, b);
      }
    }
    for (const w of data.workloads) {
      this.workloadsByKey.set(w.key, w);
      if (w.ip !== undefined) this.workloadsByIp.set(w.ip, w);
    }
  }

  /** The bound service whose VIP and port the HBONE authority names. */
  bindingByAddress(ip: string, port: number): ServiceBinding | undefined {
    return this.byAddress.get(ip)?.get(port);
  }

  binding(serviceKey: string): ServiceBinding | undefined {
    return this.bindings.get(serviceKey);
  }

  bound(): IterableIterator<ServiceBinding> {
    return this.bindings.values();
  }

  /** Any known service by fully qualified host name. */
  serviceByHost(hostname: string): WaypointServiceInfo | undefined {
    return this.byHost.get(hostname);
  }

  /** Some Telemetry applies to this waypoint's requests. */
  get hasTelemetry(): boolean {
    return !this.telemetryDefault.isDefault || [...this.telemetryByService.values()].some((t) => !t.isDefault);
  }

  /** The effective Telemetry of a request to `service` (the waypoint's own when none). */
  telemetryFor(service: WaypointServiceInfo | undefined): EffectiveTelemetry {
    if (service === undefined || this.telemetryByService.size === 0) return this.telemetryDefault;
    return this.telemetryByService.get(service.key) ?? this.telemetryDefault;
  }

  /** Percent of the new traces of a request to this address to sample (undefined: none set). */
  samplingPercent(ip: string, port: number): number | undefined {
    if (!this.sampling) return undefined;
    return this.telemetryFor(this.bindingByAddress(ip, port)?.service).samplingPercentage;
  }

  workload(key: string): WorkloadInfo | undefined {
    return this.workloadsByKey.get(key);
  }

  /**
   * The workload a request came from: the pod at the client address the HBONE `forwarded` header
   * names, believed only when its identity is the verified peer identity (a peer cannot claim
   * another identity's pod).
   */
  sourceWorkload(ip: string, peerIdentity: string | undefined): WorkloadInfo | undefined {
    const w = this.workloadsByIp.get(ip);
    return w !== undefined && peerIdentity !== undefined && w.identity === peerIdentity ? w : undefined;
  }
}

/** Protocol of a service port: declared by `appProtocol` or the port name's prefix, else sniffed. */
export type PortProtocol = 'http' | 'http2' | 'tcp' | 'detect';

const protocols = new WeakMap<ServicePort, PortProtocol>();

/** Istio's protocol selection: `appProtocol`, then the port name (`http-web`, `grpc`, `tcp-db`). */
export function portProtocol(port: ServicePort): PortProtocol {
  let p = protocols.get(port);
  if (p === undefined) {
    p = selectProtocol(port);
    protocols.set(port, p);
  }
  return p;
}

function selectProtocol(port: ServicePort): PortProtocol {
  const declared = (port.appProtocol ?? port.name?.split('-')[0] ?? '').toLowerCase();
  switch (declared) {
    case 'http':
    case 'http1':
    case 'kubernetes.io/http':
      return 'http';
    case 'http2':
    case 'grpc':
    case 'grpc-web':
    case 'h2c':
    case 'kubernetes.io/h2c':
      return 'http2';
    case 'tcp':
    case 'tls':
    case 'https':
    case 'mongo':
    case 'mysql':
    case 'redis':
    case 'kubernetes.io/ws':
    case 'kubernetes.io/wss':
      return 'tcp';
    default:
      return 'detect';
  }
}
