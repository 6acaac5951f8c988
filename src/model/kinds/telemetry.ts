/**
 * Istio's Telemetry (telemetry.istio.io v1 and v1alpha1): access logging, metric overrides and
 * trace sampling, for the mesh (root namespace, no selector), a namespace (no selector) or
 * workloads (selector, or targetRefs naming a waypoint Gateway or a Service at a waypoint).
 * Precedence and merging are in src/model/compile/telemetry.ts; the expression subset in
 * src/model/telemetry/expression.ts.
 *
 * What ambit applies: accessLogging (disabled, filter.expression, match.mode) in the agent's
 * and the waypoint's access log; metrics overrides (disabled, tagOverrides on Istio's standard
 * labels, match.mode) on the agent's TCP metrics and the waypoint's request metrics;
 * tracing randomSamplingPercentage at the waypoint (the sampled flag of the traces it starts).
 * What it accepts and does not apply is reported as info (ambit has one access log, one
 * Prometheus registry and no span exporter).
 */
import { arr, bool, duration, enumOf, notApplied, num, obj, opt, record, req, str, type Infer } from '../schema/dsl.js';
import { policyTargetRef, workloadSelector } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { compileExpression, ExpressionError, type ValueType } from '../telemetry/expression.js';
import { defineKind } from './kind.js';

/** Istio's standard metric labels (TCP and request metrics): the tags an override may name. */
export const STANDARD_TAGS: ReadonlySet<string> = new Set([
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
]);

export const METRIC_NAMES = [
  'ALL_METRICS', 'REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE',
  'TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES',
  'GRPC_REQUEST_MESSAGES', 'GRPC_RESPONSE_MESSAGES',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

const expression = (want: ValueType | 'scalar') =>
  str({
    minLength: 1,
    format: 'a CEL expression',
    code: 'AMBIT_TELEMETRY_EXPRESSION',
    check: (s) => {
      try {
        compileExpression(s, want);
        return undefined;
      } catch (err) {
        if (err instanceof ExpressionError) return `${JSON.stringify(s)}: ${err.message}`;
        throw err;
      }
    },
  });

const workloadMode = enumOf(['CLIENT_AND_SERVER', 'CLIENT', 'SERVER']);
const modeNote = 'CLIENT: the agent\'s outbound side (reporter=source); SERVER: the agent\'s inbound side (reporter=destination) and the waypoint; default CLIENT_AND_SERVER';
const provider = obj({ name: req(str({ minLength: 1 })) });
const NO_PROVIDERS = 'ambit has one sink of each kind (its JSON access log, its Prometheus registry); provider names do not select another one';

const accessLogging = obj({
  match: opt(obj({ mode: opt(workloadMode) }), modeNote),
  providers: notApplied(arr(provider), NO_PROVIDERS),
  disabled: opt(bool(), 'true stops the access log of the selected workloads (agent: their connections; waypoint: its requests)'),
  filter: opt(obj({ expression: req(expression('bool'), 'CEL subset: response.code, request.method/path/url_path/host/protocol/useragent/id/headers[...], connection.mtls, connection.uri_san_peer_certificate, source/destination.address/port; == != < <= > >= && || ! in, startsWith endsWith contains matches; a line is written only when it is true') })),
});

const tagOverride = obj(
  {
    operation: opt(enumOf(['UPSERT', 'REMOVE']), 'default UPSERT'),
    value: opt(expression('scalar'), 'a string literal (\'"v1"\') or an attribute (request.host, request.headers[\'x-tenant\'], destination.port, ...); `unknown` when the attribute is absent'),
  },
  {
    check(o, path, ctx) {
      if ((o.operation ?? 'UPSERT') === 'UPSERT' && o.value === undefined) ctx.report('AMBIT_SCHEMA_REQUIRED', 'an UPSERT tag override needs a value', path);
    },
  },
);

const metricsOverride = obj({
  match: opt(
    obj({
      metric: opt(enumOf(METRIC_NAMES, { unimplemented: ['GRPC_REQUEST_MESSAGES', 'GRPC_RESPONSE_MESSAGES'], note: 'ambit does not count gRPC messages' }), 'default ALL_METRICS'),
      customMetric: notApplied(str(), 'ambit emits only Istio\'s standard metrics'),
      mode: opt(workloadMode, modeNote),
    }, { atMostOne: [['metric', 'customMetric']] }),
  ),
  disabled: opt(bool(), 'true removes the metric\'s series for the selected workloads'),
  tagOverrides: opt(
    record(tagOverride),
    'REMOVE drops the label from the series; UPSERT sets a standard label\'s value (the label stays registered: prom-client keeps fixed label names, and a series simply lacks a removed label)',
  ),
});

const metrics = obj({
  providers: notApplied(arr(provider), NO_PROVIDERS),
  overrides: opt(arr(metricsOverride)),
  reportingInterval: notApplied(duration({ minMs: 1 }), 'TCP byte counters are brought up to date at each scrape; nothing is pushed on an interval'),
});

const customTag = obj({
  literal: opt(obj({ value: req(str()) })),
  environment: opt(obj({ name: req(str({ minLength: 1 })), defaultValue: opt(str()) })),
  header: opt(obj({ name: req(str({ minLength: 1 })), defaultValue: opt(str()) })),
}, { exactlyOne: [['literal', 'environment', 'header']] });

const NO_SPANS = 'ambit propagates W3C trace context and decides the sampled flag, but reports no spans (there is no tracing provider)';

const tracing = obj({
  match: notApplied(obj({ mode: opt(workloadMode) }), 'sampling is decided where a trace starts, at the waypoint'),
  providers: notApplied(arr(provider), NO_SPANS),
  customTags: notApplied(record(customTag), NO_SPANS),
  randomSamplingPercentage: opt(num({ min: 0, max: 100 }), 'the waypoint sets the sampled flag of the traces it starts with this probability; a traceparent that comes with the request keeps its flag'),
  disableSpanReporting: notApplied(bool(), NO_SPANS),
  useRequestIdForTraceSampling: notApplied(bool(), 'sampling is random per trace'),
  enableIstioTags: notApplied(bool(), NO_SPANS),
});

const telemetrySpec = obj(
  {
    selector: opt(workloadSelector, 'workloads of the namespace (agents); a waypoint is selected by targetRefs'),
    targetRef: opt(policyTargetRef, 'as targetRefs'),
    targetRefs: opt(arr(policyTargetRef), 'kind Gateway (a waypoint: its requests) or Service (requests to it at its waypoint)'),
    accessLogging: opt(arr(accessLogging)),
    metrics: opt(arr(metrics)),
    tracing: opt(arr(tracing), 'the first entry is used'),
  },
  {
    atMostOne: [['selector', 'targetRef', 'targetRefs']],
    check(spec, path, ctx) {
      for (const [i, m] of (spec.metrics ?? []).entries()) {
        for (const [j, o] of (m.overrides ?? []).entries()) {
          for (const tag of Object.keys(o.tagOverrides ?? {})) {
            if (!STANDARD_TAGS.has(tag)) {
              ctx.report(
                'AMBIT_SCHEMA_NOT_APPLIED',
                `tag ${JSON.stringify(tag)} is accepted, not applied: ambit's series carry Istio's standard labels only, so a new dimension cannot be added (override or remove one of ${[...STANDARD_TAGS].join(', ')})`,
                [...path, 'metrics', i, 'overrides', j, 'tagOverrides', tag],
                { atKey: true, severity: 'warning' },
              );
            }
          }
        }
      }
      for (const [i, r] of [...(spec.targetRef !== undefined ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])].entries()) {
        if (r.kind !== 'Gateway' && r.kind !== 'Service') {
          ctx.report('AMBIT_SCHEMA_NOT_APPLIED', `a targetRef of kind ${r.kind} is accepted, not applied: Telemetry attaches to a waypoint Gateway or a Service`, [...path, spec.targetRef !== undefined ? 'targetRef' : 'targetRefs', ...(spec.targetRef !== undefined ? [] : [i])], { severity: 'warning' });
        }
      }
    },
  },
);

export const telemetryKind = defineKind({
  group: 'telemetry.istio.io',
  kind: 'Telemetry',
  versions: ['v1', 'v1alpha1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: telemetrySpec,
  attachment: 'workload-selector',
  summary: 'access logging (disable, CEL filter), metric overrides (disable, tag overrides) and trace sampling, mesh-, namespace- or workload-wide',
});
export type TelemetrySpec = Infer<typeof telemetrySpec>;
export type TelemetryResource = Resource<TelemetrySpec, undefined>;
