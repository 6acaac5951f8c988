/**
 * RequestAuthentication at the waypoint: finds a JWT in the request (Authorization: Bearer and
 * the `access_token` query parameter by default, or the rule's fromHeaders / fromParams /
 * fromCookies), verifies it (RS256/384/512, ES256/384 with node:crypto) against the issuer's
 * JWKS (inline, or fetched over http(s) and cached), and checks issuer, audiences, exp and nbf
 * with a clock skew. The outcome feeds authorization: `request.auth.principal` is `<iss>/<sub>`,
 * and the claims feed `when` conditions.
 *
 * Istio's semantics, kept exactly:
 * - A request without any token passes unauthenticated (no principal); an AuthorizationPolicy
 *   decides whether that is acceptable. A token that is present but invalid (bad signature,
 *   expired, unknown issuer, wrong audience) is refused with 401.
 * - Several rules: the token's `iss` selects the rule; no rule for that issuer is a 401.
 *
 * Invariants: tokens, keys and JWKS contents are never logged (only issuer, kid and reason);
 * a fetched JWKS is cached for `jwksCacheMs` and refetched early when a token names an unknown
 * `kid`, at most once per `minRefetchMs`, so a flood of forged kids cannot hammer the issuer; a
 * failing fetch keeps the last good JWKS.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject, type JsonWebKey } from 'node:crypto';
import type { Logger } from 'pino';
import { parseDurationMs } from '../model/duration.js';
import type { RequestAuthenticationSpec } from '../model/kinds/security.js';
import { WaypointError } from './errors.js';

export type JwtRuleSpec = NonNullable<RequestAuthenticationSpec['jwtRules']>[number];

/** Authenticated request attributes (Istio `request.auth.*`). */
export interface JwtIdentity {
  readonly principal: string;
  readonly issuer: string;
  readonly subject: string | undefined;
  readonly audiences: readonly string[];
  readonly presenter: string | undefined;
  readonly claims: Readonly<Record<string, unknown>>;
  /** Headers to add upstream (outputPayloadToHeader, outputClaimToHeaders). */
  readonly outputHeaders: Readonly<Record<string, string>>;
  /** Header (lower case) or query parameter the token came from, to strip unless forwarded. */
  readonly source: { readonly header?: string; readonly param?: string; readonly forward: boolean };
}

export type JwtResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly identity: JwtIdentity }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface JwtRequest {
  header(name: string): string | undefined;
  /** Query parameter by name. */
  param(name: string): string | undefined;
}

export interface JwtAuthenticatorOptions {
  /** Allowed clock difference for exp/nbf/iat, seconds (default 60, as Istio). */
  clockSkewSeconds?: number;
  /** How long a fetched JWKS is used before refetching, ms (default 20 min, as istiod). */
  jwksCacheMs?: number;
  /** Least time between two refetches caused by unknown key ids, ms (default 60,000). */
  minRefetchMs?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** JWKS fetch (default global fetch). */
  fetch?: typeof fetch;
  logger?: Logger;
}

const ALGS: Record<string, { hash: string; kty: 'RSA' | 'EC'; crv?: string; size?: number }> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256', size: 32 },
  ES384: { hash: 'sha384', kty: 'EC', crv: 'P-384', size: 48 },
};

interface KeySet {
  keys: { kid: string | undefined; kty: string; crv: string | undefined; alg: string | undefined; key: KeyObject }[];
}

/** Parses a JWKS document; keys that cannot be imported or are not for signing are skipped. */
export function parseJwks(text: string, what: string): KeySet {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} is not valid JSON: ${(err as Error).message}`);
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} has no "keys" array`);
  const out: KeySet['keys'] = [];
  for (const k of keys as JsonWebKey[]) {
    if (k === null || typeof k !== 'object') continue;
    if (k['use'] !== undefined && k['use'] !== 'sig') continue;
    if (k.kty !== 'RSA' && k.kty !== 'EC') continue;
    try {
      const key = createPublicKey({ key: k, format: 'jwk' });
      out.push({ kid: typeof k['kid'] === 'string' ? k['kid'] : undefined, kty: k.kty, crv: k.crv, alg: typeof k['alg'] === 'string' ? k['alg'] : undefined, key });
    } catch {
      // a malformed key is skipped; the others still work
    }
  }
  if (out.length === 0) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} holds no usable RSA or EC signing key`);
  return { keys: out };
}

function b64urlJson(part: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

class JwksCache {
  private set: KeySet | undefined;
  private fetchedAt = 0;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | undefined;

  constructor(
    private readonly uri: string,
    private readonly timeoutMs: number,
    private readonly o: Required<Pick<JwtAuthenticatorOptions, 'jwksCacheMs' | 'minRefetchMs' | 'now' | 'fetch'>> & { logger: Logger | undefined },
  ) {}

  async keys(forceForKid: boolean): Promise<KeySet | undefined> {
    const now = this.o.now();
    const sinceAttempt = now - this.lastAttempt;
    if (this.set === undefined) {
      // Nothing usable yet: fetch, but not more than once a second while the issuer fails.
      if (sinceAttempt >= 1000) await this.refresh();
    } else if (now - this.fetchedAt >= this.o.jwksCacheMs) {
      await this.refresh();
    } else if (forceForKid && sinceAttempt >= this.o.minRefetchMs) {
      await this.refresh();
    }
    return this.set;
  }

  private refresh(): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttempt = this.o.now();
      try {
        const res = await this.o.fetch(this.uri, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'follow' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const text = await res.text();
        this.set = parseJwks(text, `JWKS from ${this.uri}`);
        this.fetchedAt = this.o.now();
      } catch (err) {
        this.o.logger?.warn({ jwksUri: this.uri, reason: (err as Error).message }, 'JWKS fetch failed; keeping the last good key set');
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }
}

interface CompiledRule {
  spec: JwtRuleSpec;
  inline: KeySet | undefined;
  remote: JwksCache | undefined;
}

/** Validates JWTs for one set of RequestAuthentication rules. */
export class JwtAuthenticator {
  private readonly rules: CompiledRule[];
  private readonly skewMs: number;
  private readonly now: () => number;
  /** Unusable inline JWKS documents (their issuers' tokens are all refused). */
  readonly problems: string[] = [];

  constructor(specs: readonly JwtRuleSpec[], o: JwtAuthenticatorOptions = {}, caches: Map<string, unknown> = new Map()) {
    this.now = o.now ?? Date.now;
    this.skewMs = (o.clockSkewSeconds ?? 60) * 1000;
    const cacheOpts = { jwksCacheMs: o.jwksCacheMs ?? 20 * 60_000, minRefetchMs: o.minRefetchMs ?? 60_000, now: this.now, fetch: o.fetch ?? fetch, logger: o.logger };
    this.rules = specs.map((spec) => {
      if (spec.jwks !== undefined) {
        try {
          return { spec, inline: parseJwks(spec.jwks, `inline jwks of issuer ${spec.issuer}`), remote: undefined };
        } catch (err) {
          // Fail closed: tokens of this issuer find no key and are refused with 401.
          this.problems.push((err as Error).message);
          return { spec, inline: { keys: [] }, remote: undefined };
        }
      }
      if (spec.jwksUri !== undefined) {
        let c = caches.get(spec.jwksUri) as JwksCache | undefined;
        if (c === undefined) {
          c = new JwksCache(spec.jwksUri, parseDurationMs(spec.timeout ?? '5s') ?? 5000, cacheOpts);
          caches.set(spec.jwksUri, c);
        }
        return { spec, inline: undefined, remote: c };
      }
      return { spec, inline: undefined, remote: undefined };
    });
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  private locate(req: JwtRequest): { token: string; header?: string; param?: string } | undefined {
    const seen = new Set<string>();
    for (const r of this.rules) {
      const headers = r.spec.fromHeaders ?? (r.spec.fromParams === undefined && r.spec.fromCookies === undefined ? [{ name: 'authorization', prefix: 'Bearer ' }] : []);
      for (const h of headers) {
        const name = h.name.toLowerCase();
        const v = req.header(name);
        if (v === undefined || seen.has(`h:${name}`)) continue;
        seen.add(`h:${name}`);
        const prefix = h.prefix ?? '';
        if (prefix !== '' && !v.toLowerCase().startsWith(prefix.toLowerCase())) continue;
        return { token: v.slice(prefix.length).trim(), header: name };
      }
      const params = r.spec.fromParams ?? (r.spec.fromHeaders === undefined && r.spec.fromCookies === undefined ? ['access_token'] : []);
      for (const p of params) {
        const v = req.param(p);
        if (v !== undefined) return { token: v, param: p };
      }
      for (const c of r.spec.fromCookies ?? []) {
        for (const part of (req.header('cookie') ?? '').split(/;\s*/)) {
          const eq = part.indexOf('=');
          if (eq > 0 && part.slice(0, eq) === c) return { token: part.slice(eq + 1) };
        }
      }
    }
    return undefined;
  }

  /** Authenticates a request (no rules: always `none`). */
  async authenticate(req: JwtRequest): Promise<JwtResult> {
    if (this.rules.length === 0) return { kind: 'none' };
    const found = this.locate(req);
    if (found === undefined) return { kind: 'none' };
    const parts = found.token.split('.');
    if (parts.length !== 3) return { kind: 'invalid', reason: 'token is not a compact JWS (three dot-separated parts)' };
    const [h64, p64, s64] = parts as [string, string, string];
    const header = b64urlJson(h64);
    const payload = b64urlJson(p64);
    if (header === undefined || payload === undefined) return { kind: 'invalid', reason: 'token header or payload is not base64url JSON' };
    const alg = header['alg'];
    const algo = typeof alg === 'string' ? ALGS[alg] : undefined;
    if (algo === undefined) return { kind: 'invalid', reason: `unsupported alg ${JSON.stringify(alg)} (RS256/384/512, ES256/384 are accepted)` };
    const iss = payload['iss'];
    if (typeof iss !== 'string') return { kind: 'invalid', reason: 'token has no iss claim' };
    const rule = this.rules.find((r) => r.spec.issuer === iss);
    if (rule === undefined) return { kind: 'invalid', reason: `issuer ${JSON.stringify(iss)} is not configured by any RequestAuthentication` };
    const kid = typeof header['kid'] === 'string' ? header['kid'] : undefined;
    const signature = Buffer.from(s64, 'base64url');
    const data = Buffer.from(`${h64}.${p64}`);
    const fits = (set: KeySet | undefined) =>
      (set?.keys ?? []).filter((k) => k.kty === algo.kty && (algo.crv === undefined || k.crv === algo.crv) && (k.alg === undefined || k.alg === alg) && (kid === undefined || k.kid === kid));
    let candidates = fits(rule.inline ?? (await rule.remote?.keys(false)));
    if (candidates.length === 0 && rule.remote !== undefined) candidates = fits(await rule.remote.keys(true));
    if (candidates.length === 0) return { kind: 'invalid', reason: `no key${kid === undefined ? '' : ` with kid ${JSON.stringify(kid)}`} for ${alg} in the JWKS of ${iss}` };
    if (algo.kty === 'EC' && signature.length !== 2 * (algo.size ?? 0)) return { kind: 'invalid', reason: 'ECDSA signature has the wrong length' };
    const ok = candidates.some((k) => {
      try {
        return cryptoVerify(algo.hash, data, algo.kty === 'EC' ? { key: k.key, dsaEncoding: 'ieee-p1363' } : k.key, signature);
      } catch {
        return false;
      }
    });
    if (!ok) return { kind: 'invalid', reason: `signature does not verify with the JWKS of ${iss}` };
    const now = this.now();
    const exp = payload['exp'];
    if (exp !== undefined && (typeof exp !== 'number' || exp * 1000 + this.skewMs < now)) return { kind: 'invalid', reason: 'token is expired' };
    const nbf = payload['nbf'];
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf * 1000 - this.skewMs > now)) return { kind: 'invalid', reason: 'token is not valid yet (nbf)' };
    const audClaim = payload['aud'];
    const audiences = typeof audClaim === 'string' ? [audClaim] : Array.isArray(audClaim) ? audClaim.filter((a): a is string => typeof a === 'string') : [];
    const wanted = rule.spec.audiences ?? [];
    if (wanted.length > 0 && !audiences.some((a) => wanted.includes(a))) return { kind: 'invalid', reason: `audience ${JSON.stringify(audiences)} is not one of ${JSON.stringify(wanted)}` };
    const sub = typeof payload['sub'] === 'string' ? payload['sub'] : undefined;
    const outputHeaders: Record<string, string> = {};
    if (rule.spec.outputPayloadToHeader !== undefined) outputHeaders[rule.spec.outputPayloadToHeader.toLowerCase()] = p64;
    for (const o of rule.spec.outputClaimToHeaders ?? []) {
      const v = payload[o.claim];
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') outputHeaders[o.header.toLowerCase()] = String(v);
    }
    return {
      kind: 'valid',
      identity: {
        principal: `${iss}/${sub ?? ''}`,
        issuer: iss,
        subject: sub,
        audiences,
        presenter: typeof payload['azp'] === 'string' ? payload['azp'] : undefined,
        claims: payload,
        outputHeaders,
        source: { ...(found.header !== undefined ? { header: found.header } : {}), ...(found.param !== undefined ? { param: found.param } : {}), forward: rule.spec.forwardOriginalToken === true },
      },
    };
  }
}
