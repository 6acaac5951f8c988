/**
 * Where a request's JWTs are looked for, with the extraction semantics of Envoy's jwt_authn filter
 * (what Istio's RequestAuthentication configures):
 * - A rule's locations are its `fromHeaders`, `fromParams` and `fromCookies`; a rule naming none
 *   uses the `Authorization` header with prefix `Bearer ` and the `access_token` query parameter.
 * - A location is a header name with a prefix (one header with two prefixes is two locations), a
 *   query parameter or a cookie. It remembers the rules that named it: a token found there is
 *   verified against those rules only, never against another rule's issuer or keys.
 * - Header with a prefix: the prefix is searched for case-sensitively anywhere in the value, and
 *   the token starts at the first base64url or `.` character after it (the whole value when there
 *   is none); a value without the prefix holds no token. Without a prefix the value is the token.
 * - Every location holding a value yields a token, in Envoy's order: headers (by name + prefix),
 *   then query parameters, then cookies (each by name).
 */
import type { JwtRuleSpec } from './jwt.js';

/** What the authenticator reads of a request. */
export interface JwtRequest {
  /** Header by lower-case name (several values joined with `,`). */
  header(name: string): string | undefined;
  /** Query parameter by name: its first value, percent-decoded. */
  param(name: string): string | undefined;
  /** Cookie by name: its first occurrence, surrounding quotes removed. Default: parsed from `header('cookie')`. */
  cookie?(name: string): string | undefined;
}

/** Where a token was found: exactly one of the three. */
export interface TokenSource {
  /** Lower-case header name. */
  readonly header?: string;
  readonly param?: string;
  readonly cookie?: string;
}

export interface FoundToken {
  readonly token: string;
  readonly source: TokenSource;
  /** Indexes of the rules that named this location, in rule order. */
  readonly rules: readonly number[];
}

interface Location {
  readonly kind: 'header' | 'param' | 'cookie';
  readonly name: string;
  readonly prefix: string;
  readonly rules: number[];
}

const JWT_CHAR = /[A-Za-z0-9_.-]/;
const KIND_ORDER = { header: 0, param: 1, cookie: 2 } as const;

/** Parses a Cookie header value (`a=1; b="2"`); the first occurrence of a name wins. */
export function parseCookies(value: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (value ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    let v = part.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    if (name !== '' && !out.has(name)) out.set(name, v);
  }
  return out;
}

function afterPrefix(value: string, prefix: string): string | undefined {
  if (prefix === '') return value;
  const at = value.indexOf(prefix);
  if (at < 0) return undefined;
  for (let i = at + prefix.length; i < value.length; i++) if (JWT_CHAR.test(value[i] as string)) return value.slice(i);
  return value;
}

/** The token locations of one set of rules. */
export class TokenLocations {
  private readonly locations: readonly Location[];

  constructor(rules: readonly JwtRuleSpec[]) {
    const byKey = new Map<string, Location>();
    const add = (kind: Location['kind'], name: string, prefix: string, rule: number) => {
      const key = `${kind}\0${name}\0${prefix}`;
      let loc = byKey.get(key);
      if (loc === undefined) byKey.set(key, (loc = { kind, name, prefix, rules: [] }));
      if (!loc.rules.includes(rule)) loc.rules.push(rule);
    };
    rules.forEach((r, i) => {
      for (const h of r.fromHeaders ?? []) add('header', h.name.toLowerCase(), h.prefix ?? '', i);
      for (const p of r.fromParams ?? []) add('param', p, '', i);
      for (const c of r.fromCookies ?? []) add('cookie', c, '', i);
      if ((r.fromHeaders ?? []).length === 0 && (r.fromParams ?? []).length === 0 && (r.fromCookies ?? []).length === 0) {
        add('header', 'authorization', 'Bearer ', i);
        add('param', 'access_token', '', i);
      }
    });
    const sortKey = (l: Location) => l.name + l.prefix;
    this.locations = [...byKey.values()].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
  }

  /** Every token the request carries, with the rules each is to be verified against. */
  find(req: JwtRequest): FoundToken[] {
    const found: FoundToken[] = [];
    let cookies: Map<string, string> | undefined;
    for (const loc of this.locations) {
      if (loc.kind === 'header') {
        const v = req.header(loc.name);
        const token = v === undefined ? undefined : afterPrefix(v, loc.prefix);
        if (token !== undefined) found.push({ token, source: { header: loc.name }, rules: loc.rules });
      } else if (loc.kind === 'param') {
        const token = req.param(loc.name);
        if (token !== undefined) found.push({ token, source: { param: loc.name }, rules: loc.rules });
      } else {
        let token: string | undefined;
        if (req.cookie !== undefined) token = req.cookie(loc.name);
        else token = (cookies ??= parseCookies(req.header('cookie'))).get(loc.name);
        if (token !== undefined) found.push({ token, source: { cookie: loc.name }, rules: loc.rules });
      }
    }
    return found;
  }
}
