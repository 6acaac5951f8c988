/**
 * What a matched route does to a request besides choosing where it goes: path and authority
 * rewrites, redirects, header set/add/remove on requests and responses, and the weighted choice
 * among destinations.
 *
 * Invariants:
 * - A prefix rewrite replaces only the prefix that matched (VirtualService `rewrite.uri` after a
 *   prefix match, HTTPRoute ReplacePrefixMatch); otherwise it replaces the whole path. The query
 *   string is always kept.
 * - Header operations apply in Envoy's order: remove, then set (replace), then add (append); names
 *   are compared in lower case; pseudo-headers and hop-by-hop headers are never touched.
 * - Weighted choice is proportional to the weights (any scale); zero-weight destinations are never
 *   chosen unless all weights are zero, in which case the first destination is used.
 */
import type { HeaderOperations, RouteAction, RouteDestination, RouteMatch } from '../model/compile/types.js';

export type HeaderMap = Record<string, string | string[] | undefined>;

const PROTECTED = new Set(['host', 'connection', 'transfer-encoding', 'upgrade', 'te', 'keep-alive', 'proxy-connection', 'content-length']);

/** Applies header operations in place (remove, set, add). */
export function applyHeaderOps(headers: HeaderMap, ops: HeaderOperations | undefined): void {
  if (ops === undefined) return;
  for (const name of ops.remove) {
    const n = name.toLowerCase();
    if (!n.startsWith(':') && !PROTECTED.has(n)) delete headers[n];
  }
  for (const [name, value] of Object.entries(ops.set)) {
    const n = name.toLowerCase();
    if (!n.startsWith(':') && !PROTECTED.has(n)) headers[n] = value;
  }
  for (const [name, value] of Object.entries(ops.add)) {
    const n = name.toLowerCase();
    if (n.startsWith(':') || PROTECTED.has(n)) continue;
    const cur = headers[n];
    if (cur === undefined) headers[n] = value;
    else headers[n] = [...(Array.isArray(cur) ? cur : [cur]), value];
  }
}

/** Rewrites `target` (path with query) per the route's rewrite and the match that selected it. */
export function rewritePath(target: string, rewrite: { path: string | undefined; prefixPath: string | undefined }, match: RouteMatch | undefined): string {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  if (rewrite.path !== undefined) return rewrite.path + query;
  if (rewrite.prefixPath !== undefined) {
    const prefix = match?.path?.type === 'prefix' ? match.path.value : undefined;
    if (prefix !== undefined && path.startsWith(prefix)) {
      let rest = path.slice(prefix.length);
      let head = rewrite.prefixPath;
      // Gateway API: replacing "/foo" with "/" on "/foo/bar" gives "/bar", not "//bar".
      if (head.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
      if (head === '' && !rest.startsWith('/')) head = '/';
      return head + rest + query;
    }
    return rewrite.prefixPath + query;
  }
  return target;
}

/** The `Location` of a redirect action for a request. */
export function redirectLocation(
  action: Extract<RouteAction, { type: 'redirect' }>,
  req: { scheme: string; authority: string; path: string },
  match: RouteMatch | undefined,
): string {
  const scheme = action.scheme ?? req.scheme;
  let host = req.authority;
  let port: string | undefined;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(req.authority);
  if (m !== null) {
    host = m[1] as string;
    port = m[2];
  }
  if (action.host !== undefined) host = action.host;
  if (action.port !== undefined) port = String(action.port);
  if (action.scheme !== undefined && action.port === undefined) port = undefined;
  if ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443')) port = undefined;
  const path = rewritePath(req.path, { path: action.path, prefixPath: action.prefixPath }, match);
  return `${scheme}://${host}${port === undefined ? '' : `:${port}`}${path}`;
}

/** Weighted choice among destinations; `rand` in [0,1). */
export function pickDestination(destinations: readonly RouteDestination[], rand: number = Math.random()): RouteDestination | undefined {
  if (destinations.length <= 1) return destinations[0];
  let total = 0;
  for (const d of destinations) total += Math.max(0, d.weight);
  if (total <= 0) return destinations[0];
  let x = rand * total;
  for (const d of destinations) {
    const w = Math.max(0, d.weight);
    if (x < w) return d;
    x -= w;
  }
  return destinations[destinations.length - 1];
}
