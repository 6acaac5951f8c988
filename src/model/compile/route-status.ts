/**
 * Gateway API route status as ambit would write it: per parentRef, the `Accepted` and
 * `ResolvedRefs` conditions with the reasons the Gateway API spec defines. Computed from a
 * snapshot (the Services that exist, the waypoints, the ReferenceGrants), shown by
 * `ambit analyze`.
 *
 * - Accepted: True (Accepted) for a parent Service that exists and has the parentRef's port;
 *   False NoMatchingParent for a Service that does not exist or lacks that port. For a Gateway
 *   parent: True when a listener of that ingress Gateway (class `ambit`) took the route; False
 *   NotAllowedByListeners when none did, or when it is a waypoint (whose listeners take no
 *   routes: routes attach to its Services, GAMMA); False NoMatchingParent when there is no such
 *   Gateway or it is of another class. Any other kind of parent: False NotAllowedByListeners.
 * - ResolvedRefs (the same for every parent, as backends are per route): False with the first
 *   problem found, in rule and backend order: InvalidKind (not a core Service), RefNotPermitted
 *   (another namespace's Service without a ReferenceGrant), BackendNotFound (no such Service);
 *   True (ResolvedRefs) otherwise. The message lists every problem.
 */
import type { ResourceRef } from '../diagnostics.js';
import { INGRESS_GATEWAY_CLASS, WAYPOINT_GATEWAY_CLASS, type ParentRefSpec } from '../kinds/gateway-api.js';
import { backendRefProblem, GATEWAY_GROUP, type ReferenceGrants } from './reference-grants.js';
import type { MeshService } from './types.js';

/** The controller name ambit writes in `status.parents[].controllerName`. */
export const ROUTE_CONTROLLER_NAME = 'ambit.dev/waypoint';

export type AcceptedReason = 'Accepted' | 'NoMatchingParent' | 'NotAllowedByListeners';
export type ResolvedRefsReason = 'ResolvedRefs' | 'RefNotPermitted' | 'BackendNotFound' | 'InvalidKind';

export interface RouteCondition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: AcceptedReason | ResolvedRefsReason;
  readonly message: string;
}

export interface RouteParentStatus {
  readonly parentRef: ParentRefSpec;
  readonly controllerName: string;
  /**
   * ambit is the controller of this parent: false only for a Gateway of another class, whose
   * status entry belongs to that class's controller (ambit computes it, and writes nothing).
   */
  readonly managed: boolean;
  readonly conditions: readonly RouteCondition[];
}

export interface RouteStatus {
  readonly route: ResourceRef;
  readonly parents: readonly RouteParentStatus[];
}

/** What a route's status is computed from. */
export interface RouteStatusInput {
  readonly ref: ResourceRef;
  readonly parentRefs: readonly ParentRefSpec[];
  /** Every backendRef (rules' and RequestMirror filters'), with the path to show in messages. */
  readonly backendRefs: readonly { readonly ref: { group?: string; kind?: string; name: string; namespace?: string }; readonly path: string }[];
}

export interface RouteStatusLookups {
  service(key: string): MeshService | undefined;
  /** A Gateway by `namespace/name`: its class, and whether one of its listeners took the route (default: none exist). */
  gateway?(key: string): { readonly gatewayClassName: string; attached(route: ResourceRef): boolean } | undefined;
  readonly grants: ReferenceGrants;
}

function accepted(route: RouteStatusInput, p: ParentRefSpec, look: RouteStatusLookups): RouteCondition {
  const group = p.group ?? GATEWAY_GROUP;
  const kind = p.kind ?? 'Gateway';
  const no = (reason: AcceptedReason, message: string): RouteCondition => ({ type: 'Accepted', status: 'False', reason, message });
  if ((group === '' || group === 'core') && kind === 'Service') {
    const key = `${p.namespace ?? route.ref.namespace}/${p.name}`;
    const svc = look.service(key);
    if (svc === undefined) return no('NoMatchingParent', `parent Service ${key} does not exist`);
    if (p.port !== undefined && !svc.ports.some((sp) => sp.port === p.port)) return no('NoMatchingParent', `Service ${key} has no port ${p.port} (ports: ${svc.ports.map((sp) => sp.port).join(', ')})`);
    if (p.sectionName !== undefined && !svc.ports.some((sp) => sp.name === p.sectionName)) return no('NoMatchingParent', `Service ${key} has no port named ${p.sectionName}`);
    return { type: 'Accepted', status: 'True', reason: 'Accepted', message: `attached to Service ${key}; applied by its waypoint` };
  }
  if (group === GATEWAY_GROUP && kind === 'Gateway') {
    const key = `${p.namespace ?? route.ref.namespace}/${p.name}`;
    const gw = look.gateway?.(key);
    if (gw === undefined) return no('NoMatchingParent', `Gateway ${key} does not exist`);
    if (gw.gatewayClassName === WAYPOINT_GATEWAY_CLASS) return no('NotAllowedByListeners', `Gateway ${key} is a waypoint: its listeners take no routes; attach the route to a Service bound to it (GAMMA)`);
    if (gw.gatewayClassName !== INGRESS_GATEWAY_CLASS) return no('NoMatchingParent', `Gateway ${key} has gatewayClassName ${gw.gatewayClassName}, which is not ambit's (${INGRESS_GATEWAY_CLASS}, ${WAYPOINT_GATEWAY_CLASS})`);
    if (gw.attached(route.ref)) return { type: 'Accepted', status: 'True', reason: 'Accepted', message: `attached to a listener of ingress Gateway ${key}` };
    return no('NotAllowedByListeners', `no listener of ingress Gateway ${key} takes this ${route.ref.kind} (protocol, port, sectionName, hostnames or allowedRoutes)`);
  }
  return no('NotAllowedByListeners', `parentRef ${kind} ${p.name}: only Service parents are implemented`);
}

function managed(route: RouteStatusInput, p: ParentRefSpec, look: RouteStatusLookups): boolean {
  if ((p.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (p.kind ?? 'Gateway') !== 'Gateway') return true;
  const cls = look.gateway?.(`${p.namespace ?? route.ref.namespace}/${p.name}`)?.gatewayClassName;
  return cls === undefined || cls === INGRESS_GATEWAY_CLASS || cls === WAYPOINT_GATEWAY_CLASS;
}

function resolvedRefs(route: RouteStatusInput, look: RouteStatusLookups): RouteCondition {
  const from = { group: GATEWAY_GROUP, kind: route.ref.kind, namespace: route.ref.namespace };
  const problems: { reason: ResolvedRefsReason; message: string }[] = [];
  for (const { ref, path } of route.backendRefs) {
    const key = `${ref.namespace ?? route.ref.namespace}/${ref.name}`;
    const p = backendRefProblem(ref, from, look.grants);
    if (p === 'InvalidKind') problems.push({ reason: p, message: `${path}: ${ref.group ?? ''}/${ref.kind ?? ''} ${ref.name} is not a Service` });
    else if (p === 'RefNotPermitted') problems.push({ reason: p, message: `${path}: Service ${key} is in another namespace and no ReferenceGrant in ${ref.namespace} lets ${route.ref.kind}s from ${route.ref.namespace} refer to it` });
    else if (look.service(key) === undefined) problems.push({ reason: 'BackendNotFound', message: `${path}: Service ${key} does not exist` });
  }
  const first = problems[0];
  if (first === undefined) return { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all backend references resolved' };
  return { type: 'ResolvedRefs', status: 'False', reason: first.reason, message: problems.map((p) => p.message).join('; ') };
}

/** The status of one route, one entry per parentRef. */
export function routeStatus(route: RouteStatusInput, look: RouteStatusLookups): RouteStatus {
  const refs = resolvedRefs(route, look);
  return Object.freeze({
    route: route.ref,
    parents: Object.freeze(route.parentRefs.map((p) => Object.freeze({ parentRef: p, controllerName: ROUTE_CONTROLLER_NAME, managed: managed(route, p, look), conditions: Object.freeze([accepted(route, p, look), refs]) }))),
  });
}

/** The backendRefs of a route's rules and their RequestMirror filters, with their paths. */
export function routeBackendRefs(rules: readonly { backendRefs?: readonly { group?: string; kind?: string; name: string; namespace?: string }[] | undefined; filters?: readonly { type: string; requestMirror?: { backendRef: { group?: string; kind?: string; name: string; namespace?: string } } | undefined }[] | undefined }[]): RouteStatusInput['backendRefs'] {
  const out: { ref: { group?: string; kind?: string; name: string; namespace?: string }; path: string }[] = [];
  rules.forEach((rule, ri) => {
    (rule.backendRefs ?? []).forEach((b, bi) => out.push({ ref: b, path: `spec.rules[${ri}].backendRefs[${bi}]` }));
    (rule.filters ?? []).forEach((f, fi) => {
      if (f.type === 'RequestMirror' && f.requestMirror !== undefined) out.push({ ref: f.requestMirror.backendRef, path: `spec.rules[${ri}].filters[${fi}].requestMirror.backendRef` });
    });
  });
  return out;
}
