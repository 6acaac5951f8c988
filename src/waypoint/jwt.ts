/**
 * RequestAuthentication at the waypoint: finds the request's JWTs (jwt-location.ts), verifies each
 * with jose against its issuer's JWKS (inline, or fetched and cached by jwks-cache.ts), and turns
 * the result into `request.auth.*` for authorization: the principal is `<iss>/<sub>`, the claims
 * feed `when` conditions, and `outputPayloadToHeader` / `outputClaimToHeaders` name headers to add.
 *
 * Istio's semantics, kept:
 * - No token: `none`; an AuthorizationPolicy decides whether that is acceptable. A token that is
 *   present but invalid (bad signature, expired, unknown issuer, wrong audience) is `invalid`: 401.
 * - A token is verified only against the rules that named the location it was found in; its
 *   unverified `iss` picks among them, and none matching is "Jwt issuer is not configured".
 * - Several tokens: every one must be valid, and the identity is the first one's (Envoy's order).
 * - Empty `audiences` accept any `aud`; `exp` and `nbf` allow `clockSkewSeconds`.
 *
 * Invariants:
 * - authenticate() never throws, whatever the input, and its reasons are fixed texts (Envoy's):
 *   nothing of a token, its issuer or its kid is echoed. Tokens, keys and claims are never logged.
 * - Only RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA verify; `none` and HS* are refused
 *   before any key is looked up, RSA keys under 2048 bits are refused (jose), and so are unknown
 *   `crit` parameters and `b64: false`.
 * - Work per token is bounded: a token over `maxTokenLength`, or with a segment that is not
 *   canonical base64url (padding, whitespace, stray bits), is refused before it is parsed.
 * - The proxy deletes `outputHeaderNames` from every request before verification, so the output
 *   headers upstream only ever carry verified values; claim values that are not printable ASCII
 *   (CR, LF, NUL, other controls, non-ASCII) are left out rather than written.
 */
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { Logger } from 'pino';
import { parseDurationMs } from '../model/duration.js';
import type { RequestAuthenticationSpec } from '../model/kinds/security.js';
import { JwksCache, parseJwks, type JwksKeys } from './jwks-cache.js';
import { TokenLocations, type FoundToken, type JwtRequest, type TokenSource } from './jwt-location.js';

export type { JwtRequest, TokenSource } from './jwt-location.js';

export type JwtRuleSpec = NonNullable<RequestAuthenticationSpec['jwtRules']>[number];

/** Authenticated request attributes (Istio `request.auth.*`). */
export interface JwtIdentity {
  readonly principal: string;
  readonly issuer: string;
  readonly subject: string | undefined;
  readonly audiences: readonly string[];
  readonly presenter: string | undefined;
  readonly claims: Readonly<Record<string, unknown>>;
  /** Headers to set upstream, from every verified token (lower case; all in `outputHeaderNames`). */
  readonly outputHeaders: Readonly<Record<string, string>>;
  /** Where this identity's token came from, and whether its rule sets forwardOriginalToken. */
  readonly source: TokenSource & { readonly forward: boolean };
  /** Headers (lower case) holding verified tokens whose rule does not forward them: delete upstream. */
  readonly removeHeaders: readonly string[];
  /** Query parameters holding such tokens (Envoy rewrites the path without them). */
  readonly removeParams: readonly string[];
}

export type JwtResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly identity: JwtIdentity }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface JwtAuthenticatorOptions {
  /** Allowed clock difference for exp and nbf, seconds (default 60, as Istio). */
  clockSkewSeconds?: number;
  /** How long a fetched JWKS is used before refetching, ms (default 20 min, as istiod). */
  jwksCacheMs?: number;
  /** Least time between two refetches caused by unknown key ids, ms (default 60,000). */
  minRefetchMs?: number;
  /** Delay before retrying a failed JWKS fetch, ms, doubling per failure (default 1,000). */
  jwksBackoffMs?: number;
  /** Longest delay between JWKS fetch attempts while the issuer fails, ms (default 300,000). */
  maxJwksBackoffMs?: number;
  /** Longest token accepted, characters (default 16,384). */
  maxTokenLength?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** JWKS fetch (default global fetch); the rule's `timeout` (default 5 s) bounds each fetch. */
  fetch?: typeof fetch;
  logger?: Logger;
}

/** Reasons of an `invalid` result: fixed texts, Envoy's where Envoy has one. */
export const JWT_REASONS = {
  tooLarge: 'Jwt is too large',
  badFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  headerBase64: 'Jwt header is an invalid Base64url encoded',
  headerJson: 'Jwt header is an invalid JSON',
  badAlg: 'Jwt header [alg] field is required and must be a string',
  algNotSupported: 'Jwt header [alg] is not supported',
  badKid: 'Jwt header [kid] field is not a string',
  payloadBase64: 'Jwt payload is an invalid Base64url encoded',
  payloadJson: 'Jwt payload is an invalid JSON',
  issNotString: 'Jwt payload [iss] field is not a string',
  signatureBase64: 'Jwt signature is an invalid Base64url encoded',
  unknownIssuer: 'Jwt issuer is not configured',
  audience: 'Audiences in Jwt are not allowed',
  expired: 'Jwt is expired',
  notYetValid: 'Jwt not yet valid',
  noKey: "Jwks doesn't have key to match kid or alg from Jwt",
  noValidKeys: "Jwks doesn't have valid keys",
  jwksFetch: 'Jwks remote fetch is failed',
  signature: 'Jwt verification fails (signature does not verify)',
  verification: 'Jwt verification fails',
} as const;
const R = JWT_REASONS;

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const ALGORITHM_SET = new Set(ALGORITHMS);
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const PRINTABLE = /^[\t\x20-\x7e]+$/;
const NONE: JwtResult = { kind: 'none' };

interface CompiledRule {
  readonly spec: JwtRuleSpec;
  readonly inline: JwksKeys | undefined;
  readonly remote: JwksCache | undefined;
}

type Outcome = { readonly ok: true; readonly payload: JWTPayload } | { readonly ok: false; readonly reason: string; readonly noKey: boolean };

interface Verified {
  readonly found: FoundToken;
  readonly rule: CompiledRule;
  readonly payload: JWTPayload;
  readonly payload64: string;
}

function isCanonicalBase64url(s: string): boolean {
  return BASE64URL.test(s) && Buffer.from(s, 'base64url').toString('base64url') === s;
}

/** Shape checks before jose: the unverified `iss`, or the reason to refuse. */
function precheck(token: string, maxChars: number): { iss: string; payload64: string } | string {
  if (token.length > maxChars) return R.tooLarge;
  const parts = token.split('.');
  if (parts.length !== 3) return R.badFormat;
  const [h, p, s] = parts as [string, string, string];
  if (!isCanonicalBase64url(h)) return R.headerBase64;
  if (!isCanonicalBase64url(p)) return R.payloadBase64;
  if (!isCanonicalBase64url(s)) return R.signatureBase64;
  let header: Record<string, unknown>;
  let claims: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return R.headerJson;
  }
  if (typeof header['alg'] !== 'string') return R.badAlg;
  if (!ALGORITHM_SET.has(header['alg'])) return R.algNotSupported;
  if (header['kid'] !== undefined && typeof header['kid'] !== 'string') return R.badKid;
  try {
    claims = decodeJwt(token);
  } catch {
    return R.payloadJson;
  }
  if (claims.iss === undefined) return R.unknownIssuer;
  if (typeof claims.iss !== 'string') return R.issNotString;
  return { iss: claims.iss, payload64: p };
}

function refused(err: unknown): Outcome {
  let reason: string = R.verification;
  if (err instanceof errors.JWTExpired) reason = R.expired;
  else if (err instanceof errors.JWTClaimValidationFailed && err.reason === 'check_failed') {
    reason = err.claim === 'nbf' ? R.notYetValid : err.claim === 'aud' ? R.audience : err.claim === 'iss' ? R.unknownIssuer : R.verification;
  } else if (err instanceof errors.JWKSNoMatchingKey) reason = R.noKey;
  else if (err instanceof errors.JOSEAlgNotAllowed) reason = R.algNotSupported;
  else if (err instanceof errors.JWSSignatureVerificationFailed) reason = R.signature;
  return { ok: false, reason, noKey: err instanceof errors.JWKSNoMatchingKey };
}

/** Failures that another key of the set might not have (a wrong key, a key jose refuses). */
function keyDependent(err: unknown): boolean {
  return err instanceof errors.JWSSignatureVerificationFailed || !(err instanceof errors.JOSEError);
}

async function verifyWith(token: string, getKey: JWTVerifyGetKey, opts: JWTVerifyOptions): Promise<Outcome> {
  try {
    return { ok: true, payload: (await jwtVerify(token, getKey, opts)).payload };
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) return refused(err);
    // No kid, or several keys share it: try each candidate, as Envoy does.
    let last: unknown = err;
    for await (const key of err as AsyncIterable<CryptoKey>) {
      try {
        return { ok: true, payload: (await jwtVerify(token, key, opts)).payload };
      } catch (e) {
        last = e;
        if (!keyDependent(e)) break;
      }
    }
    // `last` is still `err` when no candidate could be imported.
    return refused(last === err ? undefined : last);
  }
}

function claimAt(payload: JWTPayload, path: string): unknown {
  if (Object.hasOwn(payload, path)) return payload[path];
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** A claim as a header value, as Envoy writes it; undefined for other types and unsafe text. */
function claimHeaderValue(v: unknown): string | undefined {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'boolean') s = String(v);
  else if (typeof v === 'number' && Number.isFinite(v)) s = Number.isInteger(v) && v >= 0 && v < 2 ** 64 ? BigInt(v).toString() : Math.abs(v) < 1e21 ? v.toFixed(6) : String(v);
  else return undefined;
  return PRINTABLE.test(s) ? s : undefined;
}

function outputHeadersOf(v: Verified): [string, string][] {
  const out: [string, string][] = [];
  const spec = v.rule.spec;
  if (spec.outputPayloadToHeader !== undefined) out.push([spec.outputPayloadToHeader.toLowerCase(), v.payload64]);
  for (const o of spec.outputClaimToHeaders ?? []) {
    const value = claimHeaderValue(claimAt(v.payload, o.claim));
    if (value !== undefined) out.push([o.header.toLowerCase(), value]);
  }
  return out;
}

/** Validates JWTs for one set of RequestAuthentication rules. */
export class JwtAuthenticator {
  private readonly rules: readonly CompiledRule[];
  private readonly locations: TokenLocations;
  private readonly skewSeconds: number;
  private readonly maxTokenChars: number;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  /** Rules that cannot verify anything (unusable inline JWKS, no JWKS at all): their tokens are refused. */
  readonly problems: string[] = [];
  /** Lower-case names of every header the rules output; client-sent copies are forged identity. */
  readonly outputHeaderNames: ReadonlySet<string>;

  constructor(specs: readonly JwtRuleSpec[], o: JwtAuthenticatorOptions = {}, caches: Map<string, unknown> = new Map()) {
    this.now = o.now ?? Date.now;
    this.log = o.logger;
    this.skewSeconds = o.clockSkewSeconds ?? 60;
    this.maxTokenChars = o.maxTokenLength ?? 16 * 1024;
    this.locations = new TokenLocations(specs);
    this.rules = specs.map((spec) => this.compile(spec, o, caches));
    this.outputHeaderNames = new Set(
      specs.flatMap((s) => [...(s.outputPayloadToHeader !== undefined ? [s.outputPayloadToHeader] : []), ...(s.outputClaimToHeaders ?? []).map((c) => c.header)]).map((h) => h.toLowerCase()),
    );
  }

  private compile(spec: JwtRuleSpec, o: JwtAuthenticatorOptions, caches: Map<string, unknown>): CompiledRule {
    if (spec.jwks !== undefined) {
      try {
        const parsed = parseJwks(spec.jwks, `inline jwks of issuer ${spec.issuer}`);
        for (const note of parsed.ignored) this.log?.warn({ issuer: spec.issuer, reason: note }, 'JWKS entry ignored');
        return { spec, inline: parsed.keys, remote: undefined };
      } catch (err) {
        this.problems.push((err as Error).message);
        return { spec, inline: undefined, remote: undefined };
      }
    }
    if (spec.jwksUri !== undefined) {
      let cache = caches.get(spec.jwksUri) as JwksCache | undefined;
      if (cache === undefined) {
        cache = new JwksCache(spec.jwksUri, {
          cacheMs: o.jwksCacheMs ?? 20 * 60_000,
          minRefetchMs: o.minRefetchMs ?? 60_000,
          timeoutMs: parseDurationMs(spec.timeout ?? '5s') ?? 5000,
          backoffMs: o.jwksBackoffMs ?? 1000,
          maxBackoffMs: o.maxJwksBackoffMs ?? 300_000,
          now: this.now,
          fetch: o.fetch ?? fetch,
          logger: o.logger,
        });
        caches.set(spec.jwksUri, cache);
      }
      return { spec, inline: undefined, remote: cache };
    }
    this.problems.push(`the jwtRule of issuer ${spec.issuer} has neither jwks nor jwksUri (ambit does not discover JWKS through OpenID discovery; set jwksUri)`);
    return { spec, inline: undefined, remote: undefined };
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Authenticates a request (no rules: always `none`). Never throws. */
  async authenticate(req: JwtRequest): Promise<JwtResult> {
    if (this.rules.length === 0) return NONE;
    try {
      const found = this.locations.find(req);
      if (found.length === 0) return NONE;
      const verified: Verified[] = [];
      for (const f of found) {
        const v = await this.verifyToken(f);
        if (typeof v === 'string') return { kind: 'invalid', reason: v };
        verified.push(v);
      }
      return { kind: 'valid', identity: this.identity(verified) };
    } catch (err) {
      // Only the error's code or class: messages can quote token content.
      this.log?.warn({ error: (err as { code?: unknown }).code ?? (err as Error).name }, 'JWT authentication failed unexpectedly; the token is refused');
      return { kind: 'invalid', reason: R.verification };
    }
  }

  /** One token against the rules of its location: what was verified, or the reason to refuse. */
  private async verifyToken(found: FoundToken): Promise<Verified | string> {
    const pre = precheck(found.token, this.maxTokenChars);
    if (typeof pre === 'string') return pre;
    const rules = found.rules.map((i) => this.rules[i] as CompiledRule).filter((r) => r.spec.issuer === pre.iss);
    let first: string | undefined;
    for (const rule of rules) {
      const out = await this.verifyWithRule(rule, found.token);
      if (out.ok) return { found, rule, payload: out.payload, payload64: pre.payload64 };
      first ??= out.reason;
    }
    return first ?? R.unknownIssuer;
  }

  private async verifyWithRule(rule: CompiledRule, token: string): Promise<Outcome> {
    const keys = rule.inline ?? (await rule.remote?.keys());
    if (keys === undefined) return { ok: false, reason: rule.remote !== undefined ? R.jwksFetch : R.noValidKeys, noKey: false };
    const audiences = rule.spec.audiences ?? [];
    const opts: JWTVerifyOptions = {
      algorithms: ALGORITHMS,
      issuer: rule.spec.issuer,
      ...(audiences.length > 0 ? { audience: audiences } : {}),
      clockTolerance: this.skewSeconds,
      currentDate: new Date(this.now()),
    };
    const out = await verifyWith(token, keys.getKey, opts);
    if (out.ok || !out.noKey || rule.remote === undefined) return out;
    // The issuer may have rotated keys: look again with a newer set, if one can be had.
    const newer = await rule.remote.newerThan(keys);
    return newer === undefined ? out : verifyWith(token, newer.getKey, opts);
  }

  private identity(verified: readonly Verified[]): JwtIdentity {
    const first = verified[0] as Verified;
    const p = first.payload;
    const outputs = new Map<string, string>();
    const removeHeaders = new Set<string>();
    const removeParams = new Set<string>();
    for (const v of verified) {
      for (const [k, value] of outputHeadersOf(v)) if (!outputs.has(k)) outputs.set(k, value);
      if (v.rule.spec.forwardOriginalToken === true) continue;
      if (v.found.source.header !== undefined) removeHeaders.add(v.found.source.header);
      if (v.found.source.param !== undefined) removeParams.add(v.found.source.param);
    }
    const aud = p.aud;
    const sub = typeof p.sub === 'string' ? p.sub : undefined;
    return {
      principal: `${p.iss as string}/${sub ?? ''}`,
      issuer: p.iss as string,
      subject: sub,
      audiences: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [],
      presenter: typeof p['azp'] === 'string' ? p['azp'] : undefined,
      claims: p,
      outputHeaders: Object.fromEntries(outputs),
      source: { ...first.found.source, forward: first.rule.spec.forwardOriginalToken === true },
      removeHeaders: [...removeHeaders],
      removeParams: [...removeParams],
    };
  }
}
