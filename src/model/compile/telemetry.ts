/**
 * The effective Telemetry of a workload (agent) or of a waypoint's requests to one service, with
 * Istio's precedence: workload over namespace over mesh. Agents and waypoints call this with the
 * Telemetry specs they were pushed, so the semantics live here, once.
 *
 * Levels, least specific first:
 * - mesh: the root namespace, no selector and no targetRefs;
 * - namespace: the workload's (the waypoint's own) namespace, no selector and no targetRefs;
 * - workload: agents, a selector in the workload's namespace matching its labels; waypoints,
 *   targetRefs naming the waypoint Gateway, then (more specific) the Service of the request.
 * Several Telemetries at one level are taken oldest first, then by name (Istio: undefined).
 *
 * How levels combine (as Istio merges them):
 * - accessLogging, per mode (CLIENT, SERVER): the most specific level with an entry whose
 *   match.mode covers the mode decides (its first such entry): `disabled`, and `filter`.
 *   With none, the log is on without filter (ambit's default).
 * - metrics: every level's overrides apply in order, mesh first: for each metric and mode that
 *   an override matches, `disabled` (when set) replaces the earlier value and each tag override
 *   replaces the earlier one for that tag.
 * - tracing: randomSamplingPercentage of the most specific level that sets it (first entry).
 *
 * Invariant: expressions are compiled here, once per effective setting; the result holds
 * closures, so a proxy applies a filter or tag value per request without parsing.
 */
import type { MetricName, TelemetrySpec } from '../kinds/telemetry.js';
import { compileExpression, type CompiledExpression } from '../telemetry/expression.js';
import { isEmptySelector, matchesLabels } from './selectors.js';

/** A Telemetry as distributed: the validated spec as written. */
export interface TelemetryPolicy {
  readonly namespace: string;
  readonly name: string;
  readonly spec: TelemetrySpec;
  /** metadata.creationTimestamp, for tie-breaks (default: by name only). */
  readonly creationTimestamp?: string;
}

export type TelemetryMode = 'client' | 'server';
/** The metrics a proxy emits (ALL_METRICS expanded; gRPC message counts are not emitted). */
export type ConcreteMetric = Exclude<MetricName, 'ALL_METRICS' | 'GRPC_REQUEST_MESSAGES' | 'GRPC_RESPONSE_MESSAGES'>;
export const CONCRETE_METRICS: readonly ConcreteMetric[] = [
  'REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE',
  'TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES',
];

export interface AccessLogSetting {
  readonly enabled: boolean;
  /** Write a line only when this is true (an evaluation error counts as false). */
  readonly filter: CompiledExpression | undefined;
  /** `namespace/name` of the deciding Telemetry (absent: the default). */
  readonly source?: string;
}

export type TagAction = { readonly remove: true } | { readonly remove: false; readonly value: CompiledExpression };

export interface MetricSetting {
  readonly disabled: boolean;
  /** Tag overrides by label name, in the order they were written. */
  readonly tags: ReadonlyMap<string, TagAction>;
}

export interface ModeTelemetry {
  readonly accessLog: AccessLogSetting;
  readonly metrics: Readonly<Record<ConcreteMetric, MetricSetting>>;
  /** True when no metric has an override (the proxy's fast path). */
  readonly metricsDefault: boolean;
  /** True when none of the four request metrics (the waypoint's) has an override. */
  readonly requestMetricsDefault: boolean;
  /** True when none of the four TCP metrics (the agent's) has an override. */
  readonly tcpMetricsDefault: boolean;
}

export interface EffectiveTelemetry {
  readonly client: ModeTelemetry;
  readonly server: ModeTelemetry;
  /** Percent of new traces sampled (undefined: no Telemetry says; the proxy's default). */
  readonly samplingPercentage: number | undefined;
  /** Nothing applies: every setting is the default. */
  readonly isDefault: boolean;
}

const NO_TAGS: ReadonlyMap<string, TagAction> = new Map();
const METRIC_DEFAULT: MetricSetting = Object.freeze({ disabled: false, tags: NO_TAGS });
const LOG_DEFAULT: AccessLogSetting = Object.freeze({ enabled: true, filter: undefined });
const MODE_DEFAULT: ModeTelemetry = Object.freeze({
  accessLog: LOG_DEFAULT,
  metrics: Object.freeze(Object.fromEntries(CONCRETE_METRICS.map((m) => [m, METRIC_DEFAULT])) as Record<ConcreteMetric, MetricSetting>),
  metricsDefault: true,
  requestMetricsDefault: true,
  tcpMetricsDefault: true,
});
export const DEFAULT_TELEMETRY: EffectiveTelemetry = Object.freeze({ client: MODE_DEFAULT, server: MODE_DEFAULT, samplingPercentage: undefined, isDefault: true });

function byAge(a: TelemetryPolicy, b: TelemetryPolicy): number {
  const ta = a.creationTimestamp ?? '';
  const tb = b.creationTimestamp ?? '';
  if (ta !== tb) return ta === '' ? 1 : tb === '' ? -1 : ta < tb ? -1 : 1;
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

type TargetRef = { kind: string; name: string; namespace?: string | undefined };
function refsOf(p: TelemetryPolicy): TargetRef[] {
  return [...(p.spec.targetRef !== undefined ? [p.spec.targetRef] : []), ...(p.spec.targetRefs ?? [])];
}
const wide = (p: TelemetryPolicy): boolean => isEmptySelector(p.spec.selector?.matchLabels) && refsOf(p).length === 0;

/** The Telemetries of a workload, least specific level first (see the module header). */
export function workloadLevels(all: readonly TelemetryPolicy[], w: { namespace: string; labels: Readonly<Record<string, string>> }, rootNamespace: string): TelemetryPolicy[][] {
  const sorted = [...all].sort(byAge);
  return [
    sorted.filter((p) => p.namespace === rootNamespace && wide(p)),
    w.namespace === rootNamespace ? [] : sorted.filter((p) => p.namespace === w.namespace && wide(p)),
    sorted.filter((p) => p.namespace === w.namespace && !isEmptySelector(p.spec.selector?.matchLabels) && matchesLabels(p.spec.selector?.matchLabels ?? {}, w.labels)),
  ];
}

/** The Telemetries of a waypoint's requests to `service` (`namespace/name`, or undefined), least specific first. */
export function waypointLevels(all: readonly TelemetryPolicy[], waypoint: string, service: string | undefined, rootNamespace: string): TelemetryPolicy[][] {
  const sorted = [...all].sort(byAge);
  const wpNs = waypoint.slice(0, waypoint.indexOf('/'));
  const targets = (p: TelemetryPolicy, kind: string, key: string | undefined): boolean =>
    key !== undefined && refsOf(p).some((r) => r.kind === kind && `${r.namespace ?? p.namespace}/${r.name}` === key);
  return [
    sorted.filter((p) => p.namespace === rootNamespace && wide(p)),
    wpNs === rootNamespace ? [] : sorted.filter((p) => p.namespace === wpNs && wide(p)),
    sorted.filter((p) => targets(p, 'Gateway', waypoint)),
    sorted.filter((p) => targets(p, 'Service', service)),
  ];
}

const covers = (mode: string | undefined, m: TelemetryMode): boolean => mode === undefined || mode === 'CLIENT_AND_SERVER' || (m === 'client' ? mode === 'CLIENT' : mode === 'SERVER');

function accessLogFor(levels: readonly TelemetryPolicy[][], m: TelemetryMode): AccessLogSetting {
  for (let i = levels.length - 1; i >= 0; i--) {
    for (const p of levels[i] as TelemetryPolicy[]) {
      const e = (p.spec.accessLogging ?? []).find((x) => covers(x.match?.mode, m));
      if (e === undefined) continue;
      const expr = e.filter?.expression;
      return { enabled: e.disabled !== true, filter: expr === undefined ? undefined : compileExpression(expr, 'bool'), source: `${p.namespace}/${p.name}` };
    }
  }
  return LOG_DEFAULT;
}

function metricsFor(levels: readonly TelemetryPolicy[][], m: TelemetryMode): { metrics: Record<ConcreteMetric, MetricSetting>; isDefault: boolean } {
  const disabled = new Map<ConcreteMetric, boolean>();
  const tags = new Map<ConcreteMetric, Map<string, TagAction>>();
  let touched = false;
  for (const level of levels) {
    for (const p of level) {
      for (const entry of p.spec.metrics ?? []) {
        for (const o of entry.overrides ?? []) {
          if (!covers(o.match?.mode, m) || o.match?.customMetric !== undefined) continue;
          const name = o.match?.metric ?? 'ALL_METRICS';
          const which = name === 'ALL_METRICS' ? CONCRETE_METRICS : CONCRETE_METRICS.filter((c) => c === name);
          for (const c of which) {
            if (o.disabled !== undefined) { disabled.set(c, o.disabled); touched = true; }
            for (const [tag, t] of Object.entries(o.tagOverrides ?? {})) {
              let mt = tags.get(c);
              if (mt === undefined) tags.set(c, (mt = new Map()));
              mt.delete(tag);
              if ((t.operation ?? 'UPSERT') === 'REMOVE') mt.set(tag, { remove: true });
              else if (t.value !== undefined) mt.set(tag, { remove: false, value: compileExpression(t.value, 'scalar') });
              touched = true;
            }
          }
        }
      }
    }
  }
  const metrics = {} as Record<ConcreteMetric, MetricSetting>;
  for (const c of CONCRETE_METRICS) {
    const d = disabled.get(c) === true;
    const t = tags.get(c);
    metrics[c] = !d && (t === undefined || t.size === 0) ? METRIC_DEFAULT : { disabled: d, tags: t ?? NO_TAGS };
  }
  return { metrics, isDefault: !touched || CONCRETE_METRICS.every((c) => metrics[c] === METRIC_DEFAULT) };
}

function samplingFor(levels: readonly TelemetryPolicy[][]): number | undefined {
  for (let i = levels.length - 1; i >= 0; i--) {
    for (const p of levels[i] as TelemetryPolicy[]) {
      const v = p.spec.tracing?.[0]?.randomSamplingPercentage;
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

/** The effective settings of levels from `workloadLevels` or `waypointLevels`. Throws ExpressionError on an expression outside the subset. */
export function effectiveTelemetry(levels: readonly TelemetryPolicy[][]): EffectiveTelemetry {
  if (levels.every((l) => l.length === 0)) return DEFAULT_TELEMETRY;
  const mode = (m: TelemetryMode): ModeTelemetry => {
    const accessLog = accessLogFor(levels, m);
    const { metrics, isDefault } = metricsFor(levels, m);
    if (accessLog === LOG_DEFAULT && isDefault) return MODE_DEFAULT;
    const untouched = (names: readonly ConcreteMetric[]): boolean => isDefault || names.every((c) => metrics[c] === METRIC_DEFAULT);
    return {
      accessLog, metrics, metricsDefault: isDefault,
      requestMetricsDefault: untouched(['REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE']),
      tcpMetricsDefault: untouched(['TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES']),
    };
  };
  const client = mode('client');
  const server = mode('server');
  const samplingPercentage = samplingFor(levels);
  if (client === MODE_DEFAULT && server === MODE_DEFAULT && samplingPercentage === undefined) return DEFAULT_TELEMETRY;
  return { client, server, samplingPercentage, isDefault: false };
}

/**
 * Applies a metric's tag overrides to a label set: removed labels are left out (prom-client
 * renders a series without them; its label names stay registered), upserted ones take their
 * expression's value (`unknown` when it is an evaluation error, as Istio does).
 */
export function applyTagOverrides<L extends Record<string, string>>(labels: L, setting: MetricSetting, attributes: Parameters<CompiledExpression['evaluate']>[0]): Partial<L> {
  if (setting.tags.size === 0) return labels;
  const out: Record<string, string> = { ...labels };
  for (const [tag, t] of setting.tags) {
    if (t.remove) delete out[tag];
    else if (tag in labels) {
      const v = t.value.evaluate(attributes);
      out[tag] = v === undefined ? 'unknown' : String(v);
    }
  }
  return out as Partial<L>;
}

/** A JSON summary of effective settings for config dumps: what differs from the defaults. */
export function describeTelemetry(t: EffectiveTelemetry): Record<string, unknown> {
  const mode = (m: ModeTelemetry): Record<string, unknown> => {
    const l = m.accessLog;
    const metrics: Record<string, unknown> = {};
    for (const c of CONCRETE_METRICS) {
      const s = m.metrics[c];
      if (s === METRIC_DEFAULT) continue;
      metrics[c] = s.disabled ? 'disabled' : Object.fromEntries([...s.tags].map(([tag, a]) => [tag, a.remove ? 'REMOVE' : a.value.source]));
    }
    return {
      accessLog: !l.enabled ? 'disabled' : l.filter !== undefined ? `filter: ${l.filter.source}` : 'enabled',
      ...(l.source !== undefined ? { accessLogFrom: l.source } : {}),
      ...(Object.keys(metrics).length > 0 ? { metrics } : {}),
    };
  };
  if (t.isDefault) return { default: true };
  return { client: mode(t.client), server: mode(t.server), ...(t.samplingPercentage !== undefined ? { samplingPercentage: t.samplingPercentage } : {}) };
}
