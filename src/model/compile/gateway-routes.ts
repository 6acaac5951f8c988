/**
 * GRPCRoute, TCPRoute and TLSRoute rules compiled for the Service they attach to (GAMMA).
 *
 * - GRPCRoute rules become ordinary `Route`s, as Istio compiles them: a method match is a path
 *   match (`/service/method` exact; service only: prefix `/service/`; method only or
 *   RegularExpression: the regex `/<service|[^/]+>/<method|[^/]+>`), header matches and filters as
 *   an HTTPRoute's. Order is Gateway API's GRPCRoute precedence: the longest service, then the
 *   longest method, then most header matches, then oldest route and rule order. A Service with
 *   both GRPCRoutes and HTTPRoutes evaluates the GRPCRoute rules first.
 * - TCPRoute and TLSRoute rules become `L4Route`s: TLSRoutes (by SNI) before TCPRoutes, oldest
 *   first, rule order kept. The waypoint applies them (passthrough.ts).
 * - Backends another namespace holds are used only when a ReferenceGrant permits it (as for
 *   HTTPRoutes, routes.ts `usableBackends`).
 */
import { formatPath } from '../diagnostics.js';
import type { GrpcRouteResource, GrpcRouteRuleSpec, TcpRouteResource, TlsRouteResource } from '../kinds/gateway-routes.js';
import { gwBackend, gwHeaderOps, gwMirrors, httpRouteParents, usableBackends, type HostContext, type Ranked } from './routes.js';
import { compareAge } from './selectors.js';
import type { L4Route, Route, RouteAction, RouteMatch, StringMatch } from './types.js';

/** The path match of a GRPCRoute method match (undefined: any path). */
export function grpcMethodPath(m: { type?: 'Exact' | 'RegularExpression'; service?: string; method?: string } | undefined): StringMatch | undefined {
  if (m === undefined || (m.service === undefined && m.method === undefined)) return undefined;
  if ((m.type ?? 'Exact') === 'Exact') {
    if (m.service !== undefined && m.method !== undefined) return { type: 'exact', value: `/${m.service}/${m.method}` };
    if (m.service !== undefined) return { type: 'prefix', value: `/${m.service}/` };
    return { type: 'regex', value: `/[^/]+/${escapeRegex(m.method as string)}` };
  }
  return { type: 'regex', value: `/${m.service ?? '[^/]+'}/${m.method ?? '[^/]+'}` };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function grpcRule(route: GrpcRouteResource, ruleIndex: number, matchIndex: number | undefined, rule: GrpcRouteRuleSpec, parentPort: number | undefined, ctx: HostContext): Route {
  const ns = route.ref.namespace;
  const filters = rule.filters ?? [];
  const m = matchIndex === undefined ? undefined : rule.matches?.[matchIndex];
  const matches: RouteMatch[] = [];
  if (m !== undefined || parentPort !== undefined) {
    matches.push({
      path: grpcMethodPath(m?.method),
      ignorePathCase: false,
      method: undefined,
      authority: undefined,
      scheme: undefined,
      headers: (m?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), match: { type: h.type === 'RegularExpression' ? 'regex' : 'exact', value: h.value }, invert: false })),
      queryParams: [],
      port: parentPort,
    });
  }
  const backends = usableBackends(route, rule.backendRefs ?? [], ctx);
  const action: RouteAction =
    backends.length === 0 ? { type: 'direct-response', status: 500, body: undefined } : { type: 'forward', destinations: backends.map((b) => gwBackend(b, ns, b.weight ?? 1, ctx)) };
  return {
    source: route.ref,
    path: formatPath(matchIndex === undefined ? ['spec', 'rules', ruleIndex] : ['spec', 'rules', ruleIndex, 'matches', matchIndex]),
    name: rule.name,
    matches,
    action,
    timeoutMs: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: gwMirrors(route, filters, ctx),
    rewrite: undefined,
    requestHeaders: gwHeaderOps(filters.find((f) => f.type === 'RequestHeaderModifier')?.requestHeaderModifier),
    responseHeaders: gwHeaderOps(filters.find((f) => f.type === 'ResponseHeaderModifier')?.responseHeaderModifier),
  };
}

function grpcPrecedence(route: GrpcRouteResource, rule: GrpcRouteRuleSpec, matchIndex: number | undefined): number[] {
  const m = matchIndex === undefined ? undefined : rule.matches?.[matchIndex];
  return [m?.method?.service?.length ?? 0, m?.method?.method?.length ?? 0, m?.headers?.length ?? 0];
}

/** All GRPCRoute rules attached to one Service, in GRPCRoute precedence order. */
export function grpcRouteTable(routes: readonly GrpcRouteResource[], serviceKey: string, ctx: HostContext): Route[] {
  const ranked: Ranked[] = [];
  for (const gr of [...routes].sort(compareAge)) {
    for (const parent of httpRouteParents(gr)) {
      if (parent.service !== serviceKey) continue;
      (gr.spec.rules ?? []).forEach((rule, ri) => {
        const count = rule.matches?.length ?? 0;
        if (count === 0) ranked.push({ route: grpcRule(gr, ri, undefined, rule, parent.port, ctx), rank: grpcPrecedence(gr, rule, undefined) });
        for (let mi = 0; mi < count; mi++) ranked.push({ route: grpcRule(gr, ri, mi, rule, parent.port, ctx), rank: grpcPrecedence(gr, rule, mi) });
      });
    }
  }
  ranked.sort((a, b) => {
    for (let i = 0; i < a.rank.length; i++) {
      const d = (b.rank[i] ?? 0) - (a.rank[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  });
  return ranked.map((r) => r.route);
}

/** TLSRoute and TCPRoute rules attached to one Service, in evaluation order. */
export function l4RouteTable(tls: readonly TlsRouteResource[], tcp: readonly TcpRouteResource[], serviceKey: string, ctx: HostContext): L4Route[] {
  const out: L4Route[] = [];
  const add = (r: TlsRouteResource | TcpRouteResource, protocol: 'tls' | 'tcp', hostnames: readonly string[]) => {
    for (const parent of httpRouteParents(r)) {
      if (parent.service !== serviceKey) continue;
      r.spec.rules.forEach((rule, ri) => {
        const backends = usableBackends(r, rule.backendRefs, ctx);
        out.push(
          Object.freeze({
            source: r.ref,
            path: formatPath(['spec', 'rules', ri]),
            name: rule.name,
            protocol,
            port: parent.port,
            sniHosts: Object.freeze(hostnames.map((h) => h.toLowerCase())),
            destinations: Object.freeze(backends.map((b) => gwBackend(b, r.ref.namespace, b.weight ?? 1, ctx))),
          }),
        );
      });
    }
  };
  for (const r of [...tls].sort(compareAge)) add(r, 'tls', r.spec.hostnames ?? []);
  for (const r of [...tcp].sort(compareAge)) add(r, 'tcp', []);
  return out;
}
