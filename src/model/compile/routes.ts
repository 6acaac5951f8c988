/**
 * VirtualService http routes and HTTPRoute rules normalised into one `Route` type, and the
 * per-Service route tables built from them.
 *
 * Semantics kept from the sources:
 * - VirtualService: route weights are relative, as Istio treats them: they are normalised to
 *   percentages (1 and 3 become 25 and 75); one destination takes all the traffic.
 * - VirtualService: only those that apply to the mesh (`gateways` absent, empty or listing
 *   "mesh") route; one bound only to ingress gateways is ignored, as Istio ignores it for mesh
 *   traffic.
 * - VirtualService: routes apply in the order written; the first match wins. When several
 *   VirtualServices name the same host, the oldest wins (Istio does not merge them); exact
 *   hosts beat wildcards.
 * - HTTPRoute (GAMMA): a rule attaches to the Services named by `parentRefs` (kind Service).
 *   Each match becomes its own Route, sorted by Gateway API precedence: Exact path, then longest
 *   prefix, method, most headers, most query params, then oldest route and rule order. A rule
 *   without backendRefs answers 500, as the spec says.
 * - A Service with HTTPRoutes uses them (Istio ambient prefers the Gateway API); its
 *   VirtualService is then reported as a conflict.
 */
import type { ResourceRef } from '../diagnostics.js';
import { formatPath } from '../diagnostics.js';
import { parseDurationMs } from '../duration.js';
import type { HttpRouteFilterSpec, HttpRouteResource, HttpRouteRuleSpec, ParentRefSpec, RequestMirrorSpec } from '../kinds/gateway-api.js';
import { vsAppliesToMesh, type VirtualServiceResource, type VsDestinationSpec, type VsHeadersSpec, type VsHttpMatchSpec, type VsHttpRouteSpec } from '../kinds/networking.js';
import type { StringMatchSpec } from '../schema/common.js';
import { hostMatches, isWildcard, resolveHost, serviceHostname } from './hosts.js';
import { backendRefProblem, GATEWAY_GROUP, NO_GRANTS, type ReferenceGrants } from './reference-grants.js';
import { compareAge } from './selectors.js';
import type { HeaderMatch, HeaderOperations, MirrorPolicy, RetryPolicy, Route, RouteAction, RouteDestination, RouteMatch, StringMatch } from './types.js';

/** Istio's default retry conditions when `retries` is set without `retryOn`. */
export const DEFAULT_RETRY_ON: readonly string[] = Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes']);
/** Istio's default attempts when `retries` is set without `attempts`. */
export const DEFAULT_RETRY_ATTEMPTS = 2;

const EMPTY_RECORD: Readonly<Record<string, string>> = Object.freeze({});

export interface HostContext {
  /** Cluster DNS domain (`cluster.local`). */
  clusterDomain: string;
  /** ReferenceGrants for Gateway API backendRefs (default none: same-namespace references only). */
  grants?: ReferenceGrants;
}

function stringMatch(m: StringMatchSpec | undefined): StringMatch | undefined {
  if (m === undefined) return undefined;
  if (m.exact !== undefined) return { type: 'exact', value: m.exact };
  if (m.prefix !== undefined) return { type: 'prefix', value: m.prefix };
  if (m.regex !== undefined) return { type: 'regex', value: m.regex };
  return undefined;
}

function headerMatches(rec: Readonly<Record<string, StringMatchSpec>> | undefined, invert: boolean, lower: boolean): HeaderMatch[] {
  if (rec === undefined) return [];
  return Object.keys(rec).map((name) => ({ name: lower ? name.toLowerCase() : name, match: stringMatch(rec[name]), invert }));
}

function vsMatch(m: VsHttpMatchSpec): RouteMatch {
  return {
    path: stringMatch(m.uri),
    ignorePathCase: m.ignoreUriCase === true,
    method: stringMatch(m.method),
    authority: stringMatch(m.authority),
    scheme: stringMatch(m.scheme),
    headers: [...headerMatches(m.headers, false, true), ...headerMatches(m.withoutHeaders, true, true)],
    queryParams: headerMatches(m.queryParams, false, false),
    port: m.port,
  };
}

function destination(d: VsDestinationSpec, namespace: string, weight: number, ctx: HostContext): RouteDestination {
  const host = resolveHost(d.host, namespace, ctx.clusterDomain);
  return { host, subset: d.subset, port: d.port?.number, weight };
}

/**
 * VirtualService weights as percentages of their sum (Istio's relative weights); a single
 * destination gets 100, an absent weight counts as 0. All-zero weights of several destinations
 * are refused by the schema; here they stay 0 (the waypoint then uses the first).
 */
export function normalizeWeights(weights: readonly (number | undefined)[]): number[] {
  if (weights.length === 1) return [100];
  const sum = weights.reduce<number>((a, w) => a + (w ?? 0), 0);
  return weights.map((w) => (sum === 0 ? 0 : ((w ?? 0) * 100) / sum));
}

function headerOps(h: { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] } | undefined): HeaderOperations | undefined {
  if (h === undefined) return undefined;
  return { set: h.set ?? EMPTY_RECORD, add: h.add ?? EMPTY_RECORD, remove: h.remove ?? [] };
}

function vsHeaders(h: VsHeadersSpec | undefined): [HeaderOperations | undefined, HeaderOperations | undefined] {
  return [headerOps(h?.request), headerOps(h?.response)];
}

function ms(d: string | undefined): number | undefined {
  return d === undefined ? undefined : parseDurationMs(d);
}

function vsRoute(vs: VirtualServiceResource, index: number, r: VsHttpRouteSpec, ctx: HostContext): Route {
  const ns = vs.ref.namespace;
  let action: RouteAction;
  if (r.redirect !== undefined) {
    action = {
      type: 'redirect',
      scheme: r.redirect.scheme,
      host: r.redirect.authority,
      port: r.redirect.port,
      path: r.redirect.uri,
      prefixPath: undefined,
      status: r.redirect.redirectCode ?? 301,
    };
  } else if (r.directResponse !== undefined) {
    const b = r.directResponse.body;
    action = { type: 'direct-response', status: r.directResponse.status, body: b?.string ?? (b?.bytes !== undefined ? Buffer.from(b.bytes, 'base64').toString('utf8') : undefined) };
  } else {
    const dests = r.route ?? [];
    const weights = normalizeWeights(dests.map((d) => d.weight));
    action = { type: 'forward', destinations: dests.map((d, i) => destination(d.destination, ns, weights[i] ?? 0, ctx)) };
  }
  const mirrors: MirrorPolicy[] = [];
  if (r.mirror !== undefined) mirrors.push({ destination: destination(r.mirror, ns, 100, ctx), percent: r.mirrorPercentage?.value ?? r.mirrorPercent ?? r.mirror_percent ?? 100 });
  for (const m of r.mirrors ?? []) mirrors.push({ destination: destination(m.destination, ns, 100, ctx), percent: m.percentage?.value ?? 100 });
  let retries: RetryPolicy | undefined;
  if (r.retries !== undefined) {
    retries = {
      attempts: r.retries.attempts ?? DEFAULT_RETRY_ATTEMPTS,
      perTryTimeoutMs: ms(r.retries.perTryTimeout),
      retryOn: r.retries.retryOn !== undefined ? r.retries.retryOn.split(',').map((s) => s.trim()) : DEFAULT_RETRY_ON,
      backoffMs: ms(r.retries.backoff),
    };
  }
  const f = r.fault;
  const [requestHeaders, responseHeaders] = vsHeaders(r.headers);
  return {
    source: vs.ref,
    path: formatPath(['spec', 'http', index]),
    name: r.name,
    matches: (r.match ?? []).map(vsMatch),
    action,
    timeoutMs: ms(r.timeout),
    retries,
    fault:
      f === undefined
        ? undefined
        : {
            delay: f.delay?.fixedDelay !== undefined ? { ms: ms(f.delay.fixedDelay) ?? 0, percent: f.delay.percentage?.value ?? f.delay.percent ?? 100 } : undefined,
            abort: f.abort?.httpStatus !== undefined ? { httpStatus: f.abort.httpStatus, percent: f.abort.percentage?.value ?? 100 } : undefined,
          },
    mirrors,
    rewrite: r.rewrite === undefined ? undefined : { path: undefined, prefixPath: r.rewrite.uri, authority: r.rewrite.authority },
    requestHeaders,
    responseHeaders,
  };
}

/** Routes of one VirtualService, in order. */
export function virtualServiceRoutes(vs: VirtualServiceResource, ctx: HostContext): Route[] {
  return (vs.spec.http ?? []).map((r, i) => vsRoute(vs, i, r, ctx));
}

// ---------------------------------------------------------------------------- HTTPRoute

export function gwHeaderOps(m: { set?: { name: string; value: string }[]; add?: { name: string; value: string }[]; remove?: string[] } | undefined): HeaderOperations | undefined {
  if (m === undefined) return undefined;
  const rec = (l: { name: string; value: string }[] | undefined): Record<string, string> => Object.fromEntries((l ?? []).map((h) => [h.name.toLowerCase(), h.value]));
  return { set: rec(m.set), add: rec(m.add), remove: (m.remove ?? []).map((s) => s.toLowerCase()) };
}

function isServiceRef(r: { group?: string | undefined; kind?: string | undefined }, defaultKind: string): boolean {
  const group = r.group ?? '';
  return (group === '' || group === 'core') && (r.kind ?? defaultKind) === 'Service';
}

export function gwBackend(b: { name: string; namespace?: string; port?: number; group?: string; kind?: string }, routeNs: string, weight: number, ctx: HostContext): RouteDestination {
  const host = isServiceRef(b, 'Service') ? serviceHostname(b.name, b.namespace ?? routeNs, ctx.clusterDomain) : b.name;
  return { host, subset: undefined, port: b.port, weight };
}

/**
 * A route's backendRefs that it may use: Services of its namespace, or of another one whose
 * ReferenceGrant lets it (reference-grants.ts). The others are left out; their share of the
 * traffic goes to the rest, and with none left the rule answers 500.
 */
export function usableBackends<B extends { group?: string; kind?: string; name: string; namespace?: string }>(route: { ref: ResourceRef }, backends: readonly B[], ctx: HostContext): B[] {
  const from = { group: GATEWAY_GROUP, kind: route.ref.kind, namespace: route.ref.namespace };
  return backends.filter((b) => backendRefProblem(b, from, ctx.grants ?? NO_GRANTS) === undefined);
}

/** The rule's RequestMirror filters whose backend the route may use. */
export function gwMirrors(route: { ref: ResourceRef }, filters: readonly { type: string; requestMirror?: RequestMirrorSpec | undefined }[], ctx: HostContext): MirrorPolicy[] {
  const mirrors: MirrorPolicy[] = [];
  for (const f of filters) {
    if (f.type !== 'RequestMirror' || f.requestMirror === undefined) continue;
    if (usableBackends(route, [f.requestMirror.backendRef], ctx).length === 0) continue;
    const fr = f.requestMirror.fraction;
    const percent = f.requestMirror.percent ?? (fr !== undefined ? (100 * fr.numerator) / (fr.denominator ?? 100) : 100);
    mirrors.push({ destination: gwBackend(f.requestMirror.backendRef, route.ref.namespace, 100, ctx), percent });
  }
  return mirrors;
}

/** One HTTPRoute rule as a Route: its match `matchIndex`, or the whole rule when that is undefined. */
export function gwRule(route: HttpRouteResource, ruleIndex: number, matchIndex: number | undefined, rule: HttpRouteRuleSpec, parentPort: number | undefined, ctx: HostContext): Route {
  const ns = route.ref.namespace;
  const backends = usableBackends(route, rule.backendRefs ?? [], ctx);
  const filters: HttpRouteFilterSpec[] = rule.filters ?? [];
  const m = matchIndex === undefined ? undefined : rule.matches?.[matchIndex];
  const matches: RouteMatch[] = [];
  if (m !== undefined || parentPort !== undefined) {
    const pathType = m?.path?.type ?? 'PathPrefix';
    const pathValue = m?.path?.value ?? '/';
    matches.push({
      path: m === undefined || (pathType === 'PathPrefix' && pathValue === '/') ? undefined : { type: pathType === 'Exact' ? 'exact' : pathType === 'PathPrefix' ? 'prefix' : 'regex', value: pathValue },
      ignorePathCase: false,
      method: m?.method !== undefined ? { type: 'exact', value: m.method } : undefined,
      authority: undefined,
      scheme: undefined,
      headers: (m?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), match: { type: h.type === 'RegularExpression' ? 'regex' : 'exact', value: h.value }, invert: false })),
      queryParams: (m?.queryParams ?? []).map((h) => ({ name: h.name, match: { type: h.type === 'RegularExpression' ? 'regex' : 'exact', value: h.value }, invert: false })),
      port: parentPort,
    });
  }
  const redirect = filters.find((f) => f.type === 'RequestRedirect')?.requestRedirect;
  let action: RouteAction;
  if (redirect !== undefined) {
    action = {
      type: 'redirect',
      scheme: redirect.scheme,
      host: redirect.hostname,
      port: redirect.port,
      path: redirect.path?.type === 'ReplaceFullPath' ? redirect.path.replaceFullPath : undefined,
      prefixPath: redirect.path?.type === 'ReplacePrefixMatch' ? redirect.path.replacePrefixMatch : undefined,
      status: redirect.statusCode ?? 302,
    };
  } else if (backends.length === 0) {
    action = { type: 'direct-response', status: 500, body: undefined };
  } else {
    action = { type: 'forward', destinations: backends.map((b) => gwBackend(b, ns, b.weight ?? 1, ctx)) };
  }
  const mirrors = gwMirrors(route, filters, ctx);
  const rw = filters.find((f) => f.type === 'URLRewrite')?.urlRewrite;
  const retry = rule.retry;
  return {
    source: route.ref,
    path: formatPath(matchIndex === undefined ? ['spec', 'rules', ruleIndex] : ['spec', 'rules', ruleIndex, 'matches', matchIndex]),
    name: rule.name,
    matches,
    action,
    timeoutMs: ms(rule.timeouts?.request),
    retries:
      retry === undefined
        ? undefined
        : { attempts: retry.attempts ?? DEFAULT_RETRY_ATTEMPTS, perTryTimeoutMs: ms(rule.timeouts?.backendRequest), retryOn: (retry.codes ?? []).length > 0 ? (retry.codes ?? []).map(String) : DEFAULT_RETRY_ON, backoffMs: ms(retry.backoff) },
    fault: undefined,
    mirrors,
    rewrite:
      rw === undefined
        ? undefined
        : {
            path: rw.path?.type === 'ReplaceFullPath' ? rw.path.replaceFullPath : undefined,
            prefixPath: rw.path?.type === 'ReplacePrefixMatch' ? rw.path.replacePrefixMatch : undefined,
            authority: rw.hostname,
          },
    requestHeaders: gwHeaderOps(filters.find((f) => f.type === 'RequestHeaderModifier')?.requestHeaderModifier),
    responseHeaders: gwHeaderOps(filters.find((f) => f.type === 'ResponseHeaderModifier')?.responseHeaderModifier),
  };
}

/** Services (`namespace/name`) a Gateway API route attaches to, with the parentRef port if any. */
export function httpRouteParents(route: { ref: ResourceRef; spec: { parentRefs?: ParentRefSpec[] | undefined } }): { service: string; port: number | undefined }[] {
  return (route.spec.parentRefs ?? [])
    .filter((p) => isServiceRef(p, 'Gateway'))
    .map((p) => ({ service: `${p.namespace ?? route.ref.namespace}/${p.name}`, port: p.port }));
}

export interface Ranked {
  route: Route;
  rank: readonly number[];
}

/** Gateway API precedence of a route's (only) match: larger sorts first, element by element. */
export function precedence(r: Route): number[] {
  const m = r.matches[0];
  const path = m?.path;
  return [
    path?.type === 'exact' ? 1 : 0,
    path?.type === 'prefix' ? path.value.length : path === undefined ? 1 : 0,
    m?.method !== undefined ? 1 : 0,
    m?.headers.length ?? 0,
    m?.queryParams.length ?? 0,
  ];
}

/** All HTTPRoute rules attached to one Service, in Gateway API precedence order. */
export function httpRouteTable(routes: readonly HttpRouteResource[], serviceKey: string, ctx: HostContext): Route[] {
  const ranked: Ranked[] = [];
  const ordered = [...routes].sort(compareAge);
  for (const hr of ordered) {
    for (const parent of httpRouteParents(hr)) {
      if (parent.service !== serviceKey) continue;
      (hr.spec.rules ?? []).forEach((rule, ri) => {
        const count = rule.matches?.length ?? 0;
        if (count === 0) {
          const route = gwRule(hr, ri, undefined, rule, parent.port, ctx);
          ranked.push({ route, rank: precedence(route) });
        }
        for (let mi = 0; mi < count; mi++) {
          const route = gwRule(hr, ri, mi, rule, parent.port, ctx);
          ranked.push({ route, rank: precedence(route) });
        }
      });
    }
  }
  // Stable sort: ties keep route age and rule order.
  ranked.sort((a, b) => {
    for (let i = 0; i < a.rank.length; i++) {
      const d = (b.rank[i] ?? 0) - (a.rank[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  });
  return ranked.map((r) => r.route);
}

/** The VirtualService that routes `hostname`: exact hosts before wildcards, then oldest. */
export function virtualServicesFor(all: readonly VirtualServiceResource[], hostname: string, clusterDomain: string): VirtualServiceResource[] {
  const exact: VirtualServiceResource[] = [];
  const wild: VirtualServiceResource[] = [];
  for (const vs of all) {
    if (!vsAppliesToMesh(vs.spec)) continue;
    let hit: 'exact' | 'wild' | undefined;
    for (const h of vs.spec.hosts ?? []) {
      const full = resolveHost(h, vs.ref.namespace, clusterDomain);
      if (full === hostname) hit = 'exact';
      else if (hit === undefined && isWildcard(full) && hostMatches(full, hostname)) hit = 'wild';
    }
    if (hit === 'exact') exact.push(vs);
    else if (hit === 'wild') wild.push(vs);
  }
  return [...exact.sort(compareAge), ...wild.sort(compareAge)];
}

/** References of resources, for `routeSources`. */
export function refsOf(resources: readonly { ref: ResourceRef }[]): ResourceRef[] {
  return resources.map((r) => r.ref);
}
