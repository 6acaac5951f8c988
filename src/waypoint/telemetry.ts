/**
 * The waypoint's telemetry of a request: one access-log line and Istio's request metrics
 * (`istio_requests_total`, duration and sizes) under the 25 standard labels.
 *
 * Invariants:
 * - Every request ends with one access-log line and one metrics record, however it ends
 *   (answered, replied locally, abandoned by the client): `RequestState.logged` guards both.
 * - Labels derive from the proxy's current config (`setConfig`); the series found under an
 *   older config are dropped when it changes.
 * - The series cache holds at most 10,000 label combinations; past that, series are looked
 *   up without being kept.
 * - Telemetry resources (the config's `telemetryFor`, SERVER mode: the waypoint serves the
 *   request) are applied with what the model precomputed: a disabled log or a false filter
 *   (compiled closure) skips the line, a disabled metric is not counted, tag overrides give a
 *   metric its own series (removed labels left out). Without Telemetry the path is unchanged.
 */
import { canonicalRevision, canonicalService, workloadApp, workloadCluster, workloadName, workloadVersion } from '../metrics/workload-name.js';
import { logPath, type AccessLog, type AccessLogEntry } from './access-log.js';
import type { ClusterEndpoint } from './cluster.js';
import type { WaypointConfig, WaypointServiceInfo } from './config.js';
import { formatFlags } from './flags.js';
import type { IstioRequestLabels, WaypointMetrics } from './metrics.js';
import type { DownstreamInfo, DownstreamResponse, RequestState } from './request-state.js';
import { METRIC_COUNT, METRIC_DURATION, METRIC_REQUEST_SIZE, METRIC_RESPONSE_SIZE, type RequestSeries } from './request-metrics.js';
import { applyTagOverrides, type ConcreteMetric, type ModeTelemetry } from '../model/compile/telemetry.js';
import type { Attributes, Value } from '../model/telemetry/expression.js';

/** The request metrics and their RequestSeries.record mask bits. */
const REQUEST_METRICS: readonly (readonly [ConcreteMetric, number])[] = [
  ['REQUEST_COUNT', METRIC_COUNT], ['REQUEST_DURATION', METRIC_DURATION], ['REQUEST_SIZE', METRIC_REQUEST_SIZE], ['RESPONSE_SIZE', METRIC_RESPONSE_SIZE],
];

/** Where one request is counted under Telemetry overrides: series and the metrics each takes. */
type Plan = readonly (readonly [RequestSeries, number])[];

/** What a Telemetry expression can read of a request. */
function requestAttributes(st: RequestState): Attributes {
  return {
    get(name): Value | undefined {
      switch (name) {
        case 'response.code': return st.status;
        case 'request.method': return st.method;
        case 'request.path': return st.target;
        case 'request.url_path': return logPath(st.target);
        case 'request.host': return st.authority;
        case 'request.protocol': return st.protocol;
        case 'request.useragent': return headerValue(st, 'user-agent');
        case 'request.id': return st.requestId;
        case 'connection.mtls': return st.down.peerIdentity !== undefined;
        case 'connection.uri_san_peer_certificate': return st.down.peerIdentity;
        case 'source.address': return st.down.sourceIp;
        case 'source.port': return st.down.sourcePort;
        case 'destination.address': return st.down.destinationIp;
        case 'destination.port': return st.down.destinationPort;
        default: return undefined;
      }
    },
    header: (n) => headerValue(st, n),
  };
}

function headerValue(st: RequestState, name: string): string | undefined {
  const v = st.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** What a connection's last request was counted under (see `series`). */
interface SeriesMemo {
  readonly config: WaypointConfig;
  readonly service: WaypointServiceInfo | undefined;
  readonly endpoint: ClusterEndpoint | undefined;
  readonly status: number;
  readonly grpcStatus: string;
  readonly grpc: boolean;
  readonly flags: string;
  readonly series: RequestSeries;
}

/** One per proxy: the access log, the metrics (when a registry was given) and the series cache. */
export class Telemetry {
  private config: WaypointConfig;
  private readonly seriesCache = new Map<string, RequestSeries>();
  /** The series each connection's last request went to (labels of one connection rarely vary). */
  private readonly lastSeries = new WeakMap<DownstreamInfo, SeriesMemo>();
  private seriesConfig: WaypointConfig | undefined;
  private readonly planCache = new Map<string, Plan>();

  constructor(
    config: WaypointConfig,
    private readonly accessLog: AccessLog,
    private readonly metrics: WaypointMetrics | undefined,
    private readonly now: () => number,
  ) {
    this.config = config;
  }

  /**
   * The config whose workloads label the series from now on. Request metrics its Telemetry
   * disables lose the series they had (by the series' destination_service).
   */
  setConfig(config: WaypointConfig): void {
    this.config = config;
    if (this.metrics === undefined || !config.hasTelemetry) return;
    this.metrics.requests.clear((labels) => {
      const host = labels['destination_service'];
      const m = config.telemetryFor(host === undefined ? undefined : config.serviceByHost(host)).server.metrics;
      let mask = 0;
      for (const [metric, bit] of REQUEST_METRICS) if (m[metric].disabled) mask |= bit;
      return mask;
    });
  }

  /** Writes the access-log line and metrics once per request. */
  finish(st: RequestState, res: DownstreamResponse): void {
    if (st.logged) return;
    st.logged = true;
    if (st.status === 0) st.status = res.headersSent ? res.statusCode : 0;
    if (st.body !== undefined) st.bytesReceived = st.body.bytes;
    const durationMs = this.now() - st.start;
    const tel = this.config.telemetryFor(st.service).server;
    if (this.accessLog.enabled && logs(tel, st)) this.writeEntry(st, durationMs);
    if (this.metrics !== undefined) this.record(st, tel, durationMs);
  }

  private record(st: RequestState, tel: ModeTelemetry, durationMs: number): void {
    if (tel.requestMetricsDefault) {
      this.series(st).record(durationMs, st.bytesReceived, st.bytesSent);
      return;
    }
    for (const [series, mask] of this.plan(st, tel)) series.record(durationMs, st.bytesReceived, st.bytesSent, mask);
  }

  /**
   * The series of a request under metric overrides: the label key of its values plus the values
   * of upserted tags (evaluated from the request) find a cached plan; a miss builds each
   * metric's labels and groups metrics with equal labels into one series.
   */
  private plan(st: RequestState, tel: ModeTelemetry): Plan {
    const flags = formatFlags(st.flags);
    let attributes: Attributes | undefined;
    let key = this.baseKey(st, flags);
    for (const [metric] of REQUEST_METRICS) {
      const s = tel.metrics[metric];
      if (s.disabled) { key += '|x'; continue; }
      for (const [, t] of s.tags) {
        if (!t.remove) key += `|${String(t.value.evaluate((attributes ??= requestAttributes(st))) ?? '')}`;
      }
    }
    this.checkConfig();
    const hit = this.planCache.get(key);
    if (hit !== undefined) return hit;
    const labels = this.labels(st);
    const groups = new Map<string, [Record<string, string>, number]>();
    for (const [metric, bit] of REQUEST_METRICS) {
      const s = tel.metrics[metric];
      if (s.disabled) continue;
      const l = applyTagOverrides(labels, s, (attributes ??= requestAttributes(st))) as Record<string, string>;
      const k = JSON.stringify(l);
      const g = groups.get(k);
      if (g !== undefined) g[1] |= bit;
      else groups.set(k, [l, bit]);
    }
    const requests = (this.metrics as WaypointMetrics).requests;
    const plan: Plan = [...groups.values()].map(([l, mask]) => [requests.get(l), mask] as const);
    if (this.planCache.size < 10_000) this.planCache.set(key, plan);
    return plan;
  }

  private checkConfig(): void {
    if (this.seriesConfig !== this.config) {
      // Labels derive from the config (workload names and labels): look them up again.
      this.seriesCache.clear();
      this.planCache.clear();
      this.seriesConfig = this.config;
    }
  }

  private writeEntry(st: RequestState, durationMs: number): void {
    st.startIso = new Date(Date.now() - durationMs).toISOString();
    const entry: AccessLogEntry = {
      startTime: st.startIso,
      method: st.method,
      path: logPath(st.target),
      protocol: st.protocol,
      responseCode: st.status,
      responseFlags: formatFlags(st.flags),
      route: st.route,
      upstreamHost: st.upstreamHost,
      upstreamCluster: st.upstreamCluster,
      retries: st.retries,
      durationMs,
      upstreamServiceTimeMs: st.upstreamServiceTimeMs,
      bytesReceived: st.bytesReceived,
      bytesSent: st.bytesSent,
      authority: st.authority,
      sourcePrincipal: st.down.peerIdentity ?? '-',
      sourceAddress: `${st.down.sourceIp}:${st.down.sourcePort}`,
      userAgent: '-',
      requestId: st.requestId,
      traceId: st.trace.traceId,
      ...(st.detail !== undefined ? { detail: st.detail } : {}),
      ...(st.policy !== undefined ? { policy: st.policy } : {}),
      ...(st.rateLimit !== undefined ? { rateLimit: st.rateLimit } : {}),
    };
    this.accessLog.write(entry);
  }

  /**
   * The request series of a label combination, found by the few values that vary (the 25-label
   * object is built once per combination, not per request).
   */
  private series(st: RequestState): RequestSeries {
    // Requests on one connection mostly land in the series of the one before: compared by
    // identity, without building the key string.
    const flags = formatFlags(st.flags);
    const memo = this.lastSeries.get(st.down);
    if (memo !== undefined && memo.config === this.config && memo.service === st.service && memo.endpoint === st.endpoint && memo.status === st.status && memo.grpcStatus === st.grpcStatus && memo.grpc === st.grpc && memo.flags === flags) {
      return memo.series;
    }
    const series = this.seriesByKey(st, flags);
    this.lastSeries.set(st.down, { config: this.config, service: st.service, endpoint: st.endpoint, status: st.status, grpcStatus: st.grpcStatus, grpc: st.grpc, flags, series });
    return series;
  }

  private baseKey(st: RequestState, flags: string): string {
    return `${st.down.peerIdentity ?? ''}|${st.service?.key ?? ''}|${st.endpoint?.workload ?? ''}|${st.endpoint?.identity ?? ''}|${st.status}|${st.grpcStatus}|${st.grpc ? 1 : 0}|${flags}`;
  }

  private seriesByKey(st: RequestState, flags: string): RequestSeries {
    const key = this.baseKey(st, flags);
    this.checkConfig();
    let s = this.seriesCache.get(key);
    if (s === undefined) {
      s = (this.metrics as WaypointMetrics).requests.get(this.labels(st));
      if (this.seriesCache.size < 10_000) this.seriesCache.set(key, s);
    }
    return s;
  }

  private labels(st: RequestState): IstioRequestLabels {
    const config = this.config;
    const src = st.down.peerIdentity;
    const m = src === undefined ? null : /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(src);
    const w = st.endpoint === undefined ? undefined : config.workload(st.endpoint.workload);
    const from = config.sourceWorkload(st.down.sourceIp, src);
    const svc = st.service;
    return {
      reporter: 'waypoint',
      source_workload: workloadName(from),
      source_workload_namespace: from?.namespace ?? m?.[1] ?? 'unknown',
      source_principal: src ?? 'unknown',
      source_app: workloadApp(from),
      source_version: workloadVersion(from),
      source_canonical_service: canonicalService(from),
      source_canonical_revision: canonicalRevision(from),
      source_cluster: workloadCluster(from),
      destination_workload: workloadName(w),
      destination_workload_namespace: w?.namespace ?? svc?.namespace ?? 'unknown',
      destination_principal: st.endpoint?.identity ?? 'unknown',
      destination_app: workloadApp(w),
      destination_version: workloadVersion(w),
      destination_service: svc?.hostname ?? 'unknown',
      destination_service_name: svc?.name ?? 'unknown',
      destination_service_namespace: svc?.namespace ?? 'unknown',
      destination_canonical_service: canonicalService(w),
      destination_canonical_revision: canonicalRevision(w),
      destination_cluster: workloadCluster(w),
      request_protocol: st.grpc ? 'grpc' : 'http',
      response_code: String(st.status),
      grpc_response_status: st.grpcStatus,
      response_flags: formatFlags(st.flags),
      connection_security_policy: src === undefined ? 'none' : 'mutual_tls',
    };
  }

  /** The access-log line and metrics of an upgraded (spliced) connection, once. */
  logUpgrade(st: RequestState): void {
    if (st.logged) return;
    st.logged = true;
    st.startIso = new Date(st.start).toISOString();
    const entry: AccessLogEntry = {
      startTime: st.startIso, method: st.method, path: logPath(st.target), protocol: st.protocol, responseCode: st.status,
      responseFlags: formatFlags(st.flags), route: st.route, upstreamHost: st.upstreamHost, upstreamCluster: st.upstreamCluster,
      retries: 0, durationMs: this.now() - st.start, upstreamServiceTimeMs: -1, bytesReceived: st.bytesReceived, bytesSent: st.bytesSent,
      authority: st.authority, sourcePrincipal: st.down.peerIdentity ?? '-', sourceAddress: `${st.down.sourceIp}:${st.down.sourcePort}`,
      userAgent: '-', requestId: st.requestId, traceId: st.trace.traceId,
      ...(st.detail !== undefined ? { detail: st.detail } : {}), ...(st.policy !== undefined ? { policy: st.policy } : {}),
    };
    const tel = this.config.telemetryFor(st.service).server;
    if (logs(tel, st)) this.accessLog.write(entry);
    if (this.metrics !== undefined) this.record(st, tel, entry.durationMs);
  }
}

/** Whether Telemetry lets the request's access-log line through (enabled, and its filter true). */
function logs(tel: ModeTelemetry, st: RequestState): boolean {
  const l = tel.accessLog;
  if (!l.enabled) return false;
  return l.filter === undefined || l.filter.evaluate(requestAttributes(st)) === true;
}
