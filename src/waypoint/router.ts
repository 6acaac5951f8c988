/**
 * Route matching: picks the first route (in the model's evaluation order) one of whose matches
 * holds for a request, the way Envoy evaluates a VirtualService or HTTPRoute. Within a match every
 * present condition must hold (path, method, authority, scheme, headers, query parameters, port).
 *
 * Invariants:
 * - Regexes are full-string matches (RE2 semantics as Istio documents them: `^(?:re)$`), compiled
 *   once per StringMatch object and cached; an invalid regex never matches (the model's analyzer
 *   reports it) instead of throwing on the request path.
 * - Path matching sees the path without its query string; query parameters are decoded.
 * - A route with no matches matches everything.
 */
import type { HeaderMatch, Route, RouteMatch, StringMatch } from '../model/compile/types.js';

/** What matching reads from a request. */
export interface RouteRequest {
  readonly method: string;
  /** Path with query string, as received. */
  readonly path: string;
  /** `:authority` / Host. */
  readonly authority: string;
  readonly scheme: string;
  /** Request header by lower-case name (several values joined with `,`). */
  header(name: string): string | undefined;
  /** Destination service port. */
  readonly port: number;
}

const regexCache = new WeakMap<StringMatch, RegExp | null>();

function regexOf(m: StringMatch, ignoreCase: boolean): RegExp | null {
  let re = regexCache.get(m);
  if (re === undefined) {
    try {
      re = new RegExp(`^(?:${m.value})$`, ignoreCase ? 'i' : '');
    } catch {
      re = null;
    }
    regexCache.set(m, re);
  }
  return re;
}

/** Does `value` satisfy `m`? */
export function stringMatches(m: StringMatch, value: string, ignoreCase = false): boolean {
  switch (m.type) {
    case 'exact':
      return ignoreCase ? value.toLowerCase() === m.value.toLowerCase() : value === m.value;
    case 'prefix':
      return ignoreCase ? value.toLowerCase().startsWith(m.value.toLowerCase()) : value.startsWith(m.value);
    case 'regex':
      return regexOf(m, ignoreCase)?.test(value) ?? false;
  }
}

/** Splits a request target into path and decoded query parameters (first value wins). */
export function splitPath(target: string): { path: string; query: Map<string, string> } {
  const q = target.indexOf('?');
  const hash = target.indexOf('#');
  const end = hash === -1 ? target.length : hash;
  if (q === -1 || q > end) return { path: target.slice(0, end), query: new Map() };
  const query = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(target.slice(q + 1, end))) if (!query.has(k)) query.set(k, v);
  return { path: target.slice(0, q), query };
}

function headerHolds(h: HeaderMatch, value: string | undefined): boolean {
  const hit = value !== undefined && (h.match === undefined || stringMatches(h.match, value));
  return h.invert ? !hit : hit;
}

/** True when every condition of `m` holds for the request. */
export function matchHolds(m: RouteMatch, req: RouteRequest, path: string, query: Map<string, string>): boolean {
  if (m.port !== undefined && m.port !== req.port) return false;
  if (m.path !== undefined && !stringMatches(m.path, path, m.ignorePathCase)) return false;
  if (m.method !== undefined && !stringMatches(m.method, req.method)) return false;
  if (m.authority !== undefined && !stringMatches(m.authority, req.authority)) return false;
  if (m.scheme !== undefined && !stringMatches(m.scheme, req.scheme)) return false;
  for (const h of m.headers) if (!headerHolds(h, req.header(h.name.toLowerCase()))) return false;
  for (const p of m.queryParams) if (!headerHolds(p, query.get(p.name))) return false;
  return true;
}

export interface RouteChoice {
  readonly route: Route;
  /** Position of the route in the list. */
  readonly index: number;
  /** The match that held (undefined for a route without matches). */
  readonly match: RouteMatch | undefined;
}

/** The first route that matches, or undefined (Envoy answers 404 NR). */
export function selectRoute(routes: readonly Route[], req: RouteRequest): RouteChoice | undefined {
  const { path, query } = splitPath(req.path);
  for (let i = 0; i < routes.length; i++) {
    const route = routes[i] as Route;
    if (route.matches.length === 0) return { route, index: i, match: undefined };
    for (const m of route.matches) if (matchHolds(m, req, path, query)) return { route, index: i, match: m };
  }
  return undefined;
}
