/**
 * The prepared input of one evaluation: the request context plus lazily derived values (parsed
 * IPs, the namespace and service account inside a SPIFFE principal, the path without its query,
 * the lower-cased host), each computed at most once and only if some rule asks for it.
 *
 * Invariants: one EvalInput per evaluation, never shared across evaluations; it never mutates the
 * context it wraps. A value that cannot be derived (an unparsable IP, a principal that is not
 * `<td>/ns/<ns>/sa/<sa>`) is absent, and absent values match no pattern.
 */
import { parseIp, type ParsedIp } from '../../util/cidr.js';
import type { AuthzContext, AuthzLayer } from './types.js';

const UNSET = Symbol('unset');

/** Claims Istio always treats as space-delimited lists. */
const DEFAULT_SPACE_DELIMITED: ReadonlySet<string> = new Set(['scope', 'permission']);
type Lazy<T> = T | typeof UNSET;

/** Strips a leading `spiffe://`, which Istio policies never carry. */
function stripSpiffe(p: string | undefined): string | undefined {
  return p !== undefined && p.startsWith('spiffe://') ? p.slice(9) : p;
}

/** Extracts `<ns>` and `<sa>` from `<td>/ns/<ns>/sa/<sa>`. */
function splitPrincipal(p: string): { ns: string; sa: string } | undefined {
  const n = p.indexOf('/ns/');
  if (n === -1) return undefined;
  const s = p.indexOf('/sa/', n + 4);
  if (s === -1) return undefined;
  const ns = p.slice(n + 4, s);
  const sa = p.slice(s + 4);
  if (ns === '' || sa === '' || ns.includes('/') || sa.includes('/')) return undefined;
  return { ns, sa };
}

export class EvalInput {
  readonly ctx: AuthzContext;
  readonly layer: AuthzLayer;
  /** Source principal without `spiffe://`. */
  readonly principal: string | undefined;
  readonly port: number;

  private srcIpCache: Lazy<ParsedIp | undefined> = UNSET;
  private remoteIpCache: Lazy<ParsedIp | undefined> = UNSET;
  private dstIpCache: Lazy<ParsedIp | undefined> = UNSET;
  private namespaceCache: Lazy<string | undefined> = UNSET;
  private serviceAccountCache: Lazy<string | undefined> = UNSET;
  private pathCache: Lazy<string | undefined> = UNSET;
  private hostsCache: Lazy<readonly string[] | undefined> = UNSET;

  constructor(ctx: AuthzContext, layer: AuthzLayer) {
    this.ctx = ctx;
    this.layer = layer;
    this.principal = stripSpiffe(ctx.source.principal);
    this.port = ctx.destination.port;
  }

  srcIp(): ParsedIp | undefined {
    if (this.srcIpCache === UNSET) this.srcIpCache = parseIp(this.ctx.source.ip);
    return this.srcIpCache;
  }

  /** The original client IP (`remoteIp`), defaulting to the peer IP. */
  remoteIp(): ParsedIp | undefined {
    if (this.remoteIpCache === UNSET) {
      const r = this.ctx.source.remoteIp;
      this.remoteIpCache = r === undefined ? this.srcIp() : parseIp(r);
    }
    return this.remoteIpCache;
  }

  dstIp(): ParsedIp | undefined {
    if (this.dstIpCache === UNSET) this.dstIpCache = parseIp(this.ctx.destination.ip);
    return this.dstIpCache;
  }

  /** Source namespace: given, or derived from the principal. */
  namespace(): string | undefined {
    if (this.namespaceCache === UNSET) {
      const given = this.ctx.source.namespace;
      this.namespaceCache = given ?? (this.principal === undefined ? undefined : splitPrincipal(this.principal)?.ns);
    }
    return this.namespaceCache;
  }

  /**
   * Trust domain of the principal: the SPIFFE ID's authority, before the first `/`
   * (`cluster.local` of `cluster.local/ns/x/sa/y`); absent without a principal.
   */
  trustDomain(): string | undefined {
    const p = this.principal;
    if (p === undefined || p === '') return undefined;
    const slash = p.indexOf('/');
    return slash === -1 ? p : slash === 0 ? undefined : p.slice(0, slash);
  }

  /** `<ns>/<sa>` of the principal. */
  serviceAccount(): string | undefined {
    if (this.serviceAccountCache === UNSET) {
      const parts = this.principal === undefined ? undefined : splitPrincipal(this.principal);
      this.serviceAccountCache = parts === undefined ? undefined : `${parts.ns}/${parts.sa}`;
    }
    return this.serviceAccountCache;
  }

  /** Request path without query string or fragment (L7 only). */
  path(): string | undefined {
    if (this.pathCache === UNSET) {
      const p = this.ctx.request?.path;
      if (p === undefined) this.pathCache = undefined;
      else {
        const q = p.search(/[?#]/);
        this.pathCache = q === -1 ? p : p.slice(0, q);
      }
    }
    return this.pathCache;
  }

  /** The host as sent and, when it carries a port, the host without it (lower case). */
  hosts(): readonly string[] | undefined {
    if (this.hostsCache === UNSET) {
      const h = this.ctx.request?.host;
      if (h === undefined || h === '') this.hostsCache = undefined;
      else {
        const lower = h.toLowerCase();
        // "[v6]:port" or "name:port"; a bare IPv6 literal has several colons and no brackets.
        const m = /^(\[[^\]]+\]|[^:]+):[0-9]+$/.exec(lower);
        this.hostsCache = m === null ? [lower] : [lower, m[1] as string];
      }
    }
    return this.hostsCache;
  }

  method(): string | undefined {
    return this.ctx.request?.method;
  }

  /** Values of a request header (name compared in lower case). */
  header(name: string): readonly string[] | undefined {
    const headers = this.ctx.request?.headers;
    if (headers === undefined) return undefined;
    let v = headers[name];
    if (v === undefined) {
      for (const k of Object.keys(headers)) {
        if (k.toLowerCase() === name) {
          v = headers[k];
          break;
        }
      }
    }
    if (v === undefined) return undefined;
    return typeof v === 'string' ? [v] : v;
  }

  requestPrincipal(): string | undefined {
    return this.ctx.request?.principal;
  }

  audiences(): readonly string[] | undefined {
    return this.ctx.request?.audiences;
  }

  presenter(): string | undefined {
    return this.ctx.request?.presenter;
  }

  /**
   * A JWT claim by path (`[groups]`, `[a][b]`). Strings and lists of strings match, as in Istio;
   * other types (numbers, objects) never match. A top-level space-delimited claim (`scope`,
   * `permission`, and the request's `spaceDelimitedClaims`) matches word by word.
   */
  claim(path: readonly string[]): readonly string[] | undefined {
    const values = this.rawClaim(path);
    if (values === undefined || path.length !== 1) return values;
    const name = path[0] as string;
    if (!DEFAULT_SPACE_DELIMITED.has(name) && !(this.ctx.request?.spaceDelimitedClaims ?? []).includes(name)) return values;
    return values.flatMap((v) => v.split(' ').filter((w) => w !== ''));
  }

  private rawClaim(path: readonly string[]): readonly string[] | undefined {
    let cur: unknown = this.ctx.request?.claims;
    for (const seg of path) {
      if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
      if (!Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    }
    if (typeof cur === 'string') return [cur];
    if (Array.isArray(cur)) return cur.filter((x): x is string => typeof x === 'string');
    return undefined;
  }
}
