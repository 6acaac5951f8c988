/**
 * The waypoint's Prometheus metrics: Istio's standard request metrics with `reporter="waypoint"`
 * and Istio's label set (so Grafana's Istio dashboards and Kiali read them unchanged), plus
 * ambit's own `ambit_waypoint_*` counters for what Istio has no metric for (retries and the
 * retry budget, outlier ejections, refused downstream connections, internal errors caught).
 *
 * Invariants: metrics are registered once per Registry (a second call returns the same
 * objects); label values are bounded (workload and service names, status codes, flags), never
 * paths or ids.
 */
import { Counter, type Registry } from 'prom-client';
import { RequestMetrics } from './request-metrics.js';

/** Istio's standard labels of request metrics. */
export const ISTIO_REQUEST_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
] as const;

export type IstioRequestLabels = Record<(typeof ISTIO_REQUEST_LABELS)[number], string>;

/** Istio's duration buckets (ms). */
const DURATION_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's size buckets (bytes). */
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

export interface WaypointMetrics {
  /** `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`. */
  requests: RequestMetrics;
  /** Retries sent, by destination service. */
  retries: Counter<'destination_service'>;
  /** Retries not sent because the retry budget was spent. */
  budgetExhausted: Counter<'destination_service'>;
  /** Endpoints ejected by outlier detection. */
  ejections: Counter<'destination_service'>;
  /** Downstream connections or requests refused before routing (malformed, oversized, slow). */
  refused: Counter<'reason'>;
  /** Internal errors caught instead of ending the process or the request (`where` it was caught). */
  internalErrors: Counter<'where'>;
}

const cache = new WeakMap<Registry, WaypointMetrics>();

/** The waypoint's metrics registered into `registry` (once per registry). */
export function waypointMetrics(registry: Registry): WaypointMetrics {
  const hit = cache.get(registry);
  if (hit !== undefined) return hit;
  const registers = [registry];
  const m: WaypointMetrics = {
    requests: new RequestMetrics(registry, { durationBuckets: DURATION_BUCKETS, sizeBuckets: SIZE_BUCKETS }),
    retries: new Counter({ name: 'ambit_waypoint_retries_total', help: 'Retries sent to upstreams', labelNames: ['destination_service'], registers }),
    budgetExhausted: new Counter({ name: 'ambit_waypoint_retry_budget_exhausted_total', help: 'Retries skipped because the retry budget was spent', labelNames: ['destination_service'], registers }),
    ejections: new Counter({ name: 'ambit_waypoint_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', labelNames: ['destination_service'], registers }),
    refused: new Counter({ name: 'ambit_waypoint_refused_total', help: 'Downstream connections or requests refused before routing', labelNames: ['reason'], registers }),
    internalErrors: new Counter({ name: 'ambit_waypoint_internal_errors_total', help: 'Internal errors caught by a last-resort handler instead of ending the waypoint', labelNames: ['where'], registers }),
  };
  cache.set(registry, m);
  return m;
}
