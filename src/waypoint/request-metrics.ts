/**
 * Istio's four request metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
 * `istio_request_bytes`, `istio_response_bytes`) kept as plain per-series accumulators and
 * rendered by the registry at scrape time. prom-client's Counter and Histogram validate and hash
 * the 25-label object on every observation, which cost the waypoint more CPU per request than
 * routing it; here a request bumps a few numbers on a series it got once per label combination.
 *
 * Invariants: the exposition is the one prom-client's Counter and Histogram produce (same
 * names, types, `le` buckets with cumulative counts, `_sum` and `_count`), so dashboards cannot
 * tell the difference; series are never dropped (counters stay monotonic for the process's life);
 * label values come from bounded sets (the caller's responsibility, see metrics.ts).
 * A record names the metrics it counts (`mask`, default all four): a metric Telemetry disables
 * for a request is not counted, and a series that no request counted for a metric is not
 * rendered for it (so a disabled metric has no series; a metric whose tag overrides differ
 * counts into a series of its own labels). `clear` zeroes metrics of series that Telemetry
 * has since disabled, so their series disappear (a reset, as Prometheus sees it, if re-enabled).
 */
import type { Metric, Registry } from 'prom-client';

/** `mask` bits of RequestSeries.record: which of the four metrics a record counts. */
export const METRIC_COUNT = 1;
export const METRIC_DURATION = 2;
export const METRIC_REQUEST_SIZE = 4;
export const METRIC_RESPONSE_SIZE = 8;
export const ALL_METRICS = 15;

/** One label combination: counts and bucket counts of the three histograms. */
export class RequestSeries {
  requests = 0;
  durationCount = 0;
  requestBytesCount = 0;
  responseBytesCount = 0;
  readonly duration: Float64Array;
  durationSum = 0;
  readonly requestBytes: Float64Array;
  requestBytesSum = 0;
  readonly responseBytes: Float64Array;
  responseBytesSum = 0;

  constructor(readonly labels: Readonly<Record<string, string>>, private readonly owner: RequestMetrics) {
    this.duration = new Float64Array(owner.durationBuckets.length);
    this.requestBytes = new Float64Array(owner.sizeBuckets.length);
    this.responseBytes = new Float64Array(owner.sizeBuckets.length);
  }

  /** Records one finished request in the metrics `mask` names (default all four). */
  record(durationMs: number, requestBytes: number, responseBytes: number, mask = ALL_METRICS): void {
    if (mask === ALL_METRICS) {
      this.requests++;
      this.durationCount++;
      this.requestBytesCount++;
      this.responseBytesCount++;
      this.durationSum += durationMs;
      bump(this.duration, this.owner.durationBuckets, durationMs);
      this.requestBytesSum += requestBytes;
      bump(this.requestBytes, this.owner.sizeBuckets, requestBytes);
      this.responseBytesSum += responseBytes;
      bump(this.responseBytes, this.owner.sizeBuckets, responseBytes);
      return;
    }
    if ((mask & METRIC_COUNT) !== 0) this.requests++;
    if ((mask & METRIC_DURATION) !== 0) { this.durationCount++; this.durationSum += durationMs; bump(this.duration, this.owner.durationBuckets, durationMs); }
    if ((mask & METRIC_REQUEST_SIZE) !== 0) { this.requestBytesCount++; this.requestBytesSum += requestBytes; bump(this.requestBytes, this.owner.sizeBuckets, requestBytes); }
    if ((mask & METRIC_RESPONSE_SIZE) !== 0) { this.responseBytesCount++; this.responseBytesSum += responseBytes; bump(this.responseBytes, this.owner.sizeBuckets, responseBytes); }
  }
}

/** Zeroes the metrics `mask` names in one series. */
function clearSeries(s: RequestSeries, mask: number): void {
  if ((mask & METRIC_COUNT) !== 0) s.requests = 0;
  if ((mask & METRIC_DURATION) !== 0) { s.durationCount = 0; s.durationSum = 0; s.duration.fill(0); }
  if ((mask & METRIC_REQUEST_SIZE) !== 0) { s.requestBytesCount = 0; s.requestBytesSum = 0; s.requestBytes.fill(0); }
  if ((mask & METRIC_RESPONSE_SIZE) !== 0) { s.responseBytesCount = 0; s.responseBytesSum = 0; s.responseBytes.fill(0); }
}

/** Counts `v` in the first bucket whose bound is >= v (values above every bound only in +Inf). */
function bump(counts: Float64Array, bounds: readonly number[], v: number): void {
  for (let i = 0; i < bounds.length; i++) {
    if (v <= (bounds[i] as number)) {
      counts[i] = (counts[i] as number) + 1;
      return;
    }
  }
}

interface Value { value: number; labels: Record<string, string | number>; metricName?: string }

/** A registry entry rendering one of the four metrics from the series. */
class View {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly values: () => Value[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }

  reset(): void {}
}

export interface RequestMetricsOptions {
  /** Bounds of the duration histogram, ms. */
  durationBuckets: readonly number[];
  /** Bounds of the size histograms, bytes. */
  sizeBuckets: readonly number[];
}

/** The four request metrics of one registry. */
export class RequestMetrics {
  readonly durationBuckets: readonly number[];
  readonly sizeBuckets: readonly number[];
  private readonly series = new Map<string, RequestSeries>();

  constructor(registry: Registry, o: RequestMetricsOptions) {
    this.durationBuckets = [...o.durationBuckets].sort((a, b) => a - b);
    this.sizeBuckets = [...o.sizeBuckets].sort((a, b) => a - b);
    const all = () => [...this.series.values()];
    const views = [
      new View('istio_requests_total', 'Requests handled, by Istio labels', 'counter', () => all().filter((s) => s.requests > 0).map((s) => ({ value: s.requests, labels: { ...s.labels } }))),
      new View('istio_request_duration_milliseconds', 'Request duration in ms', 'histogram', () => histogram('istio_request_duration_milliseconds', all(), this.durationBuckets, (s) => [s.duration, s.durationSum, s.durationCount])),
      new View('istio_request_bytes', 'Request size (headers and body) in bytes', 'histogram', () => histogram('istio_request_bytes', all(), this.sizeBuckets, (s) => [s.requestBytes, s.requestBytesSum, s.requestBytesCount])),
      new View('istio_response_bytes', 'Response size (headers and body) in bytes', 'histogram', () => histogram('istio_response_bytes', all(), this.sizeBuckets, (s) => [s.responseBytes, s.responseBytesSum, s.responseBytesCount])),
    ];
    // The registry renders anything with prom-client's metric shape (name, help, type, get()).
    for (const v of views) registry.registerMetric(v as unknown as Metric);
  }

  /** Zeroes, in every series, the metrics `mask(labels)` names (0: none); not on the request path. */
  clear(mask: (labels: Readonly<Record<string, string>>) => number): void {
    for (const s of this.series.values()) {
      const m = mask(s.labels);
      if (m !== 0) clearSeries(s, m);
    }
  }

  /** The series of a label combination (callers cache it: this builds a key of every value). */
  get(labels: Readonly<Record<string, string>>): RequestSeries {
    let key = '';
    for (const k of Object.keys(labels).sort()) key += `${k}\u0000${labels[k]}\u0001`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = new RequestSeries({ ...labels }, this);
      this.series.set(key, s);
    }
    return s;
  }
}

function histogram(name: string, series: RequestSeries[], bounds: readonly number[], pick: (s: RequestSeries) => [Float64Array, number, number]): Value[] {
  const out: Value[] = [];
  for (const s of series) {
    const [counts, sum, total] = pick(s);
    if (total === 0) continue;
    let acc = 0;
    for (let i = 0; i < bounds.length; i++) {
      acc += counts[i] as number;
      out.push({ value: acc, labels: { ...s.labels, le: bounds[i] as number }, metricName: `${name}_bucket` });
    }
    out.push({ value: total, labels: { ...s.labels, le: '+Inf' }, metricName: `${name}_bucket` });
    out.push({ value: sum, labels: { ...s.labels }, metricName: `${name}_sum` });
    out.push({ value: total, labels: { ...s.labels }, metricName: `${name}_count` });
  }
  return out;
}
