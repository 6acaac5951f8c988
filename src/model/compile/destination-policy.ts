/**
 * DestinationRules normalised into the traffic policy of a Service: load balancing, connection
 * pool, outlier detection, per port, and subsets.
 *
 * Istio's merge rules are kept: a subset's (or a port's) setting replaces the top-level setting
 * of the same group (`connectionPool` as a whole, not field by field; `loadBalancer` as a whole,
 * so a subset's `simple` drops an inherited `consistentHash`); `LEAST_CONN` is the old name of
 * `LEAST_REQUEST`; outlier detection defaults to interval 10s, base ejection 30s, max ejection
 * 10%, consecutive 5xx 5; consistent hashing defaults to a ring of 1024 entries (Maglev: a table
 * of 65537), and the deprecated `consistentHash.minimumRingSize` is `ringHash.minimumRingSize`.
 * When several DestinationRules name the same host the oldest wins (exact host before wildcard).
 * `tls` (SIMPLE, MUTUAL) is a group of its own, replaced as a whole like the others; its SNI
 * defaults to the host the policy is compiled for; DISABLE and ISTIO_MUTUAL originate nothing.
 */
import { parseDurationMs } from '../duration.js';
import type { ClientTlsSpec, ConsistentHashSpec, DestinationRuleResource, PortTrafficPolicySpec, TrafficPolicySpec } from '../kinds/networking.js';
import { hostMatches, isWildcard, resolveHost } from './hosts.js';
import { compareAge } from './selectors.js';
import type { ConnectionPoolPolicy, ConsistentHashPolicy, DestinationPolicy, LoadBalancerPolicy, OutlierDetectionPolicy, TlsOriginationPolicy, TrafficPolicy } from './types.js';

type Group = Omit<TrafficPolicy, 'ports'>;

function loadBalancer(spec: PortTrafficPolicySpec['loadBalancer']): LoadBalancerPolicy | undefined {
  switch (spec?.simple) {
    case 'ROUND_ROBIN':
      return 'ROUND_ROBIN';
    case 'RANDOM':
      return 'RANDOM';
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      return 'LEAST_REQUEST';
    default:
      return undefined;
  }
}

const ms = (d: string | undefined): number | undefined => (d === undefined ? undefined : parseDurationMs(d));

/** Envoy's defaults: RingHashLbConfig.minimum_ring_size and MaglevLbConfig.table_size. */
const DEFAULT_RING_SIZE = 1024;
const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

function consistentHash(spec: ConsistentHashSpec | undefined): ConsistentHashPolicy | undefined {
  if (spec === undefined) return undefined;
  const out: { -readonly [K in keyof ConsistentHashPolicy]: ConsistentHashPolicy[K] } = {};
  if (spec.httpHeaderName !== undefined) out.httpHeaderName = spec.httpHeaderName.toLowerCase();
  else if (spec.httpCookie !== undefined) {
    const ttlMs = ms(spec.httpCookie.ttl);
    out.httpCookie = { name: spec.httpCookie.name, ...(ttlMs !== undefined ? { ttlMs } : {}), ...(spec.httpCookie.path !== undefined ? { path: spec.httpCookie.path } : {}) };
  } else if (spec.useSourceIp === true) out.useSourceIp = true;
  else if (spec.httpQueryParameterName !== undefined) out.httpQueryParameterName = spec.httpQueryParameterName;
  if (spec.maglev !== undefined) out.maglev = { tableSize: spec.maglev.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE };
  else out.ringHash = { minimumRingSize: spec.ringHash?.minimumRingSize ?? spec.minimumRingSize ?? DEFAULT_RING_SIZE };
  return out;
}

function connectionPool(spec: PortTrafficPolicySpec['connectionPool']): ConnectionPoolPolicy | undefined {
  if (spec === undefined) return undefined;
  return {
    maxConnections: spec.tcp?.maxConnections,
    connectTimeoutMs: ms(spec.tcp?.connectTimeout),
    maxConnectionDurationMs: ms(spec.tcp?.maxConnectionDuration),
    tcpIdleTimeoutMs: ms(spec.tcp?.idleTimeout),
    http1MaxPendingRequests: spec.http?.http1MaxPendingRequests,
    http2MaxRequests: spec.http?.http2MaxRequests,
    maxRequestsPerConnection: spec.http?.maxRequestsPerConnection,
    maxRetries: spec.http?.maxRetries,
    httpIdleTimeoutMs: ms(spec.http?.idleTimeout),
    maxConcurrentStreams: spec.http?.maxConcurrentStreams,
  };
}

function outlierDetection(spec: PortTrafficPolicySpec['outlierDetection']): OutlierDetectionPolicy | undefined {
  if (spec === undefined) return undefined;
  const c5 = spec.consecutive5xxErrors ?? spec.consecutiveErrors;
  return {
    consecutive5xxErrors: c5 ?? (spec.consecutiveGatewayErrors === undefined ? 5 : undefined),
    consecutiveGatewayErrors: spec.consecutiveGatewayErrors,
    intervalMs: ms(spec.interval) ?? 10_000,
    baseEjectionTimeMs: ms(spec.baseEjectionTime) ?? 30_000,
    maxEjectionPercent: spec.maxEjectionPercent ?? 10,
    minHealthPercent: spec.minHealthPercent ?? 0,
  };
}

function tlsOrigination(spec: ClientTlsSpec, host: string): TlsOriginationPolicy | undefined {
  const mode = spec.mode ?? 'DISABLE';
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL') return undefined;
  const sni = spec.sni ?? (host.includes('*') ? undefined : host);
  return {
    mode,
    ...(spec.caCertificates !== undefined ? { caCertificates: spec.caCertificates } : {}),
    ...(mode === 'MUTUAL' && spec.clientCertificate !== undefined ? { clientCertificate: spec.clientCertificate } : {}),
    ...(mode === 'MUTUAL' && spec.privateKey !== undefined ? { privateKey: spec.privateKey } : {}),
    ...(sni !== undefined ? { sni } : {}),
    subjectAltNames: spec.subjectAltNames ?? [],
  };
}

function group(spec: Pick<TrafficPolicySpec, 'loadBalancer' | 'connectionPool' | 'outlierDetection' | 'tls'> | undefined, host: string, base?: Group): Group {
  const lbSet = spec?.loadBalancer !== undefined;
  const hash = lbSet ? consistentHash(spec.loadBalancer?.consistentHash) : base?.consistentHash;
  const tls = spec?.tls !== undefined ? tlsOrigination(spec.tls, host) : base?.tls;
  return {
    ...(tls !== undefined ? { tls } : {}),
    loadBalancer: lbSet ? loadBalancer(spec.loadBalancer) : base?.loadBalancer,
    ...(hash !== undefined ? { consistentHash: hash } : {}),
    connectionPool: spec?.connectionPool !== undefined ? connectionPool(spec.connectionPool) : base?.connectionPool,
    outlierDetection: spec?.outlierDetection !== undefined ? outlierDetection(spec.outlierDetection) : base?.outlierDetection,
  };
}

function trafficPolicy(spec: TrafficPolicySpec | undefined, host: string, base?: TrafficPolicy): TrafficPolicy {
  const top = group(spec, host, base);
  const ports: Record<number, Group> = {};
  if (base !== undefined) for (const [p, g] of Object.entries(base.ports)) ports[Number(p)] = group(spec, host, g);
  for (const pl of spec?.portLevelSettings ?? []) {
    if (pl.port !== undefined) ports[pl.port.number] = group(pl, host, top);
  }
  return { ...top, ports };
}

export function destinationPolicy(dr: DestinationRuleResource, hostname: string): DestinationPolicy {
  const top = trafficPolicy(dr.spec.trafficPolicy, hostname);
  return {
    source: dr.ref,
    host: hostname,
    trafficPolicy: top,
    subsets: (dr.spec.subsets ?? []).map((s) => ({ name: s.name, labels: s.labels ?? {}, trafficPolicy: s.trafficPolicy === undefined ? top : trafficPolicy(s.trafficPolicy, hostname, top) })),
  };
}

/** DestinationRules that name `hostname`: exact hosts first, then wildcards, oldest first. */
export function destinationRulesFor(all: readonly DestinationRuleResource[], hostname: string, clusterDomain: string): DestinationRuleResource[] {
  const exact: DestinationRuleResource[] = [];
  const wild: DestinationRuleResource[] = [];
  for (const dr of all) {
    const full = resolveHost(dr.spec.host, dr.ref.namespace, clusterDomain);
    if (full === hostname) exact.push(dr);
    else if (isWildcard(full) && hostMatches(full, hostname)) wild.push(dr);
  }
  return [...exact.sort(compareAge), ...wild.sort(compareAge)];
}
