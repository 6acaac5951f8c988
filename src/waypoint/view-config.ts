/**
 * Builds the waypoint's WaypointConfig from its discovery view
 * (docs/architecture.md#the-control-protocol): SERVICE and WORKLOAD (global), WAYPOINT_BINDING
 * (which services are bound to this waypoint), ROUTE and DESTINATION_RULE and RATE_LIMIT (compiled
 * by the model, per service), AUTHORIZATION_POLICY and REQUEST_AUTHENTICATION (specs as written,
 * compiled here with the model's own compiler so the semantics stay in src/model/authz).
 *
 * Which policies apply to a bound service, as in Istio ambient: those whose targetRef(s) name
 * the service or this waypoint's Gateway; RequestAuthentications without targetRefs apply
 * namespace-wide (or mesh-wide from the root namespace). Selector-based AuthorizationPolicies
 * are the agent's business (the waypoint never receives them).
 *
 * Telemetry (TELEMETRY): resolved here with the model's precedence (waypointLevels: mesh, the
 * waypoint's namespace, targetRefs to its Gateway, then to the Service), once per bound service,
 * with the expressions compiled; the proxy applies the result per request.
 *
 * Invariant: a view that cannot be fully understood throws (the discovery client then nacks the
 * push and the waypoint keeps serving the last good config); nothing is half applied.
 */
import { compileAuthorizationPolicy } from '../model/authz/compile.js';
import type { AuthorizationPolicySpec, AuthzPolicy } from '../model/authz/types.js';
import type { DestinationPolicy, L4Route, MeshService, RateLimitPolicy, Route, Workload } from '../model/compile/types.js';
import type { LocalRateLimitSpec } from '../model/kinds/ambit-rate-limit.js';
import { effectiveTelemetry, waypointLevels, type EffectiveTelemetry, type TelemetryPolicy } from '../model/compile/telemetry.js';
import type { RequestAuthenticationSpec } from '../model/kinds/security.js';
import type { LocalView } from '../discovery/local-view.js';
import { WaypointConfig, type ServiceBinding, type WaypointServiceInfo, type WorkloadInfo } from './config.js';
import { WaypointError } from './errors.js';
import type { PathNormalization } from './request-target.js';

type TargetRef = { group?: string; kind?: string; name?: string; namespace?: string };
interface PolicyPayload<S> { namespace: string; name: string; spec: S & { targetRef?: TargetRef; targetRefs?: TargetRef[]; selector?: { matchLabels?: Record<string, string> } } }

function refsOf(spec: { targetRef?: TargetRef; targetRefs?: TargetRef[] }): TargetRef[] {
  return [...(spec.targetRef !== undefined ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])];
}

function targets(p: PolicyPayload<unknown>, serviceKey: string, waypointKey: string): boolean {
  return refsOf(p.spec).some((r) => {
    const key = `${r.namespace ?? p.namespace}/${r.name ?? ''}`;
    if (r.kind === 'Service') return key === serviceKey;
    if (r.kind === 'Gateway') return key === waypointKey;
    return false;
  });
}

const positive = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 1;

/**
 * A service's compiled RATE_LIMIT payload as the limiter takes it: the LocalRateLimit's key and a
 * spec with the model's defaults filled in (fillInterval in ms). Undefined when malformed.
 */
function rateLimitsOf(payload: { limits?: unknown } | undefined, serviceName: string, waypointName: string): ServiceBinding['rateLimits'] | undefined {
  if (payload === undefined) return [];
  if (!Array.isArray(payload.limits)) return undefined;
  const out: { key: string; spec: LocalRateLimitSpec }[] = [];
  for (const l of payload.limits as Partial<RateLimitPolicy>[]) {
    const status = l.statusCode;
    if (typeof l.key !== 'string' || !positive(l.maxTokens) || !positive(l.tokensPerFill) || !positive(l.fillIntervalMs)) return undefined;
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 599) return undefined;
    if (l.routeName !== undefined && typeof l.routeName !== 'string') return undefined;
    const target = l.via === 'waypoint' ? { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: waypointName } : { kind: 'Service', name: serviceName };
    out.push({
      key: l.key,
      spec: {
        targetRefs: [target],
        ...(l.routeName !== undefined ? { routeName: l.routeName } : {}),
        tokenBucket: { maxTokens: l.maxTokens, tokensPerFill: l.tokensPerFill, fillInterval: `${l.fillIntervalMs}ms` },
        statusCode: status,
      },
    });
  }
  return out;
}

/**
 * The WaypointConfigData `telemetry` of a waypoint (`namespace/name`) serving `services` (keys).
 * Throws ExpressionError on an expression outside the supported subset.
 */
export function waypointTelemetry(policies: readonly TelemetryPolicy[], waypoint: string, services: Iterable<string>, rootNamespace = 'istio-system'): { waypoint: EffectiveTelemetry; services: Map<string, EffectiveTelemetry> } {
  const own = effectiveTelemetry(waypointLevels(policies, waypoint, undefined, rootNamespace));
  const out = new Map<string, EffectiveTelemetry>();
  if (policies.length > 0) for (const s of services) out.set(s, effectiveTelemetry(waypointLevels(policies, waypoint, s, rootNamespace)));
  return { waypoint: own, services: out };
}

export interface ViewConfigOptions {
  /** `namespace/name` of this waypoint. */
  waypoint: string;
  /** Istio root namespace (default `istio-system`). */
  rootNamespace?: string;
  /** Istio MeshConfig `pathNormalization.normalization` (default `BASE`); an unknown value throws. */
  pathNormalization?: PathNormalization;
}

/** The WaypointConfig of a discovery view; throws WaypointError on a payload it cannot use. */
export function configFromView(view: LocalView, o: ViewConfigOptions): WaypointConfig {
  const root = o.rootNamespace ?? 'istio-system';
  const bad = (what: string, name: string): never => {
    throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `discovery view: ${what} '${name}' is not in the expected shape; keeping the previous configuration`);
  };
  const binding = view.get('WAYPOINT_BINDING', o.waypoint) as { services?: string[] } | undefined;
  const boundKeys = new Set(binding?.services ?? []);
  const services: WaypointServiceInfo[] = [];
  for (const [name, v] of view.all('SERVICE')) {
    const s = v as Partial<MeshService>;
    if (typeof s.hostname !== 'string' || !Array.isArray(s.ports) || !Array.isArray(s.endpoints)) bad('SERVICE', name);
    services.push({ key: s.key ?? name, name: s.name ?? '', namespace: s.namespace ?? '', hostname: s.hostname as string, vips: s.vips ?? [], ports: s.ports ?? [], endpoints: s.endpoints ?? [], labels: s.labels ?? {} });
  }
  const workloads: WorkloadInfo[] = [];
  for (const [name, v] of view.all('WORKLOAD')) {
    const w = v as Partial<Workload>;
    if (typeof w.identity !== 'string') bad('WORKLOAD', name);
    workloads.push({ key: w.key ?? name, name: w.name ?? '', namespace: w.namespace ?? '', identity: w.identity as string, labels: w.labels ?? {}, enrolled: w.enrolled === true, ...(typeof w.ip === 'string' ? { ip: w.ip } : {}) });
  }
  const authz: { payload: PolicyPayload<AuthorizationPolicySpec>; compiled: AuthzPolicy }[] = [];
  for (const [name, v] of view.all('AUTHORIZATION_POLICY')) {
    const p = v as PolicyPayload<AuthorizationPolicySpec>;
    if (typeof p.namespace !== 'string' || typeof p.name !== 'string') bad('AUTHORIZATION_POLICY', name);
    authz.push({ payload: p, compiled: compileAuthorizationPolicy({ namespace: p.namespace, name: p.name }, p.spec) });
  }
  const authn = [...view.all('REQUEST_AUTHENTICATION').values()] as PolicyPayload<RequestAuthenticationSpec>[];
  const bound: ServiceBinding[] = [];
  for (const svc of services) {
    if (!boundKeys.has(svc.key)) continue;
    const route = view.get('ROUTE', svc.key) as { routes?: Route[]; l4Routes?: L4Route[] } | undefined;
    if (route?.l4Routes !== undefined && !Array.isArray(route.l4Routes)) bad('ROUTE', svc.key);
    const dr = view.get('DESTINATION_RULE', svc.key) as { policy?: DestinationPolicy } | undefined;
    const rateLimits = rateLimitsOf(view.get('RATE_LIMIT', svc.key) as { limits?: unknown } | undefined, svc.name, o.waypoint.slice(o.waypoint.indexOf('/') + 1)) ?? bad('RATE_LIMIT', svc.key);
    bound.push({
      service: svc,
      routes: route?.routes ?? [],
      ...(route?.l4Routes !== undefined && route.l4Routes.length > 0 ? { l4Routes: route.l4Routes } : {}),
      destinationPolicy: dr?.policy,
      authorization: authz.filter((a) => targets(a.payload, svc.key, o.waypoint)).map((a) => a.compiled).sort((a, b) => (a.key < b.key ? -1 : 1)),
      requestAuthentication: authn
        .filter((p) => {
          if (refsOf(p.spec).length > 0) return targets(p, svc.key, o.waypoint);
          const sel = p.spec.selector?.matchLabels;
          if (sel !== undefined && Object.keys(sel).length > 0) return false;
          return p.namespace === svc.namespace || p.namespace === root;
        })
        .map((p) => p.spec),
      rateLimits,
    });
  }
  const telemetries: TelemetryPolicy[] = [];
  for (const [name, v] of view.all('TELEMETRY')) {
    const p = v as TelemetryPolicy;
    if (typeof p?.namespace !== 'string' || typeof p.name !== 'string' || typeof p.spec !== 'object' || p.spec === null) bad('TELEMETRY', name);
    telemetries.push(p);
  }
  let telemetry: ReturnType<typeof waypointTelemetry>;
  try {
    telemetry = waypointTelemetry(telemetries, o.waypoint, bound.map((b) => b.service.key), root);
  } catch (err) {
    throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `discovery view: a Telemetry cannot be applied (${(err as Error).message}); keeping the previous configuration`);
  }
  return new WaypointConfig({ bound, others: services.filter((s) => !boundKeys.has(s.key)), workloads, version: `${view.epoch}@${view.version}`, pathNormalization: o.pathNormalization, telemetry });
}
