/**
 * JWKS documents for RequestAuthentication: parsing one into a jose key resolver, and the cache of
 * a fetched `jwksUri`, shared by every authenticator of a waypoint (one cache per URI).
 *
 * Invariants:
 * - Only public signing keys are ever handed to jose: entries carrying private key material
 *   (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`), symmetric (`oct`) keys, keys whose `use` is not
 *   `sig` or whose `key_ops` lack `verify`, and entries node:crypto cannot import are dropped,
 *   each with a note for the operator. A document without one usable key is an error.
 * - Key material and document contents never reach a log or an error message; only the URI, the
 *   entry's index and the reason do.
 * - One fetch per URI at a time: every caller that needs keys while a fetch is in flight waits for
 *   that fetch, which settles within `timeoutMs` whatever the server does, and bodies over 1 MiB
 *   are refused.
 * - A fetched set is used for `cacheMs`; a stale or cold set is refetched on demand. A token naming
 *   a key the set lacks refetches at most once per `minRefetchMs`, so forged `kid`s cannot hammer
 *   the issuer. A failing fetch keeps the last good set and delays the next attempt exponentially
 *   (`backoffMs`, doubling, up to `maxBackoffMs`).
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { createLocalJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import { WaypointError } from './errors.js';

/** A usable key set: jose's resolver over its keys. A new object for every fetch. */
export interface JwksKeys {
  readonly getKey: JWTVerifyGetKey;
  /** Number of usable keys. */
  readonly size: number;
}

export interface ParsedJwks {
  readonly keys: JwksKeys;
  /** Why entries were dropped, one line each (`key #2 carries private key material ...`). */
  readonly ignored: readonly string[];
}

const KEY_TYPES = new Set(['RSA', 'EC', 'OKP']);
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];
const MAX_JWKS_BYTES = 1024 * 1024;

function whyUnusable(k: unknown): string | undefined {
  if (k === null || typeof k !== 'object' || Array.isArray(k)) return 'is not a JSON object';
  const jwk = k as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) return 'carries private key material and is never used (the key is exposed: rotate it)';
  if (typeof jwk['kty'] !== 'string' || !KEY_TYPES.has(jwk['kty'])) return 'is not an RSA, EC or OKP public key';
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return 'is not for signatures (use is not "sig")';
  const ops = jwk['key_ops'];
  if (ops !== undefined && !(Array.isArray(ops) && ops.includes('verify'))) return 'is not for verification (key_ops lacks "verify")';
  try {
    createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    return 'cannot be imported (malformed key parameters)';
  }
  return undefined;
}

/** Parses a JWKS document (`what` names it in messages); throws AMBIT_ERR_WAYPOINT_JWKS when no key is usable. */
export function parseJwks(text: string, what: string): ParsedJwks {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the input; keep the document out of logs.
    throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} is not valid JSON`);
  }
  const entries = doc !== null && typeof doc === 'object' ? (doc as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(entries)) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} has no "keys" array (is the URL or field a JWKS document?)`);
  const usable: JWK[] = [];
  const ignored: string[] = [];
  entries.forEach((k: unknown, i) => {
    const why = whyUnusable(k);
    if (why === undefined) usable.push(k as JWK);
    else ignored.push(`key #${i} of ${what} ${why}`);
  });
  if (usable.length === 0) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} holds no usable public signing key (${entries.length} entries, all dropped)`);
  const set: JSONWebKeySet = { keys: usable };
  return { keys: { getKey: createLocalJWKSet(set), size: usable.length }, ignored };
}

async function readCapped(res: Response, what: string): Promise<string> {
  if (Number(res.headers.get('content-length') ?? 0) > MAX_JWKS_BYTES) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} is larger than 1 MiB`);
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    if (bytes > MAX_JWKS_BYTES) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what} is larger than 1 MiB`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** GETs `uri` and returns its body; rejects within `timeoutMs` even if `f` ignores the abort signal. */
async function fetchJwksText(uri: string, f: typeof fetch, timeoutMs: number): Promise<string> {
  const what = `JWKS from ${uri}`;
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const err = new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what}: no complete answer within ${timeoutMs} ms (is the issuer reachable from the waypoint?)`);
      ac.abort(err);
      reject(err);
    }, timeoutMs);
  });
  const get = async () => {
    const res = await f(uri, { signal: ac.signal, redirect: 'follow', headers: { accept: 'application/json' } });
    if (!res.ok) throw new WaypointError('AMBIT_ERR_WAYPOINT_JWKS', `${what}: HTTP ${res.status}`);
    return readCapped(res, what);
  };
  try {
    return await Promise.race([get(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export interface JwksCacheOptions {
  /** How long a fetched set is used before it is refetched, ms. */
  readonly cacheMs: number;
  /** Least time between two refetches caused by unknown key ids, ms. */
  readonly minRefetchMs: number;
  /** Bound of one fetch, body included, ms. */
  readonly timeoutMs: number;
  /** Delay before the first retry after a failed fetch, ms; doubles with each failure. */
  readonly backoffMs: number;
  /** Longest delay between attempts while the issuer keeps failing, ms. */
  readonly maxBackoffMs: number;
  readonly now: () => number;
  readonly fetch: typeof fetch;
  readonly logger: Logger | undefined;
}

/** The cached key set of one `jwksUri`. */
export class JwksCache {
  private current: JwksKeys | undefined;
  private fetchedAt = -Infinity;
  private lastAttempt = -Infinity;
  private failures = 0;
  private retryAt = -Infinity;
  private inflight: Promise<void> | undefined;

  constructor(
    readonly uri: string,
    private readonly o: JwksCacheOptions,
  ) {}

  /**
   * The set to verify with. A cold or stale cache waits for a fetch (joining one in flight);
   * while backing off after failures it answers at once with the last good set, if any.
   */
  async keys(): Promise<JwksKeys | undefined> {
    const now = this.o.now();
    if (this.current === undefined || now - this.fetchedAt >= this.o.cacheMs) {
      if (this.inflight !== undefined) await this.inflight;
      else if (now >= this.retryAt) await this.refresh();
    }
    return this.current;
  }

  /**
   * A token names a key that `seen` lacks: a newer set, after waiting for the fetch in flight or
   * refetching (unless one was attempted less than `minRefetchMs` ago, or backing off), or
   * undefined when there is no newer set.
   */
  async newerThan(seen: JwksKeys): Promise<JwksKeys | undefined> {
    if (this.current !== seen) return this.current;
    const now = this.o.now();
    if (this.inflight !== undefined) await this.inflight;
    else if (now - this.lastAttempt >= this.o.minRefetchMs && now >= this.retryAt) await this.refresh();
    return this.current !== seen ? this.current : undefined;
  }

  private refresh(): Promise<void> {
    this.inflight ??= this.fetchOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchOnce(): Promise<void> {
    this.lastAttempt = this.o.now();
    try {
      const parsed = parseJwks(await fetchJwksText(this.uri, this.o.fetch, this.o.timeoutMs), `JWKS from ${this.uri}`);
      for (const note of parsed.ignored) this.o.logger?.warn({ jwksUri: this.uri, reason: note }, 'JWKS entry ignored');
      this.current = parsed.keys;
      this.fetchedAt = this.o.now();
      this.failures = 0;
      this.retryAt = -Infinity;
    } catch (err) {
      this.failures++;
      const delay = Math.min(this.o.backoffMs * 2 ** (this.failures - 1), this.o.maxBackoffMs);
      this.retryAt = this.o.now() + delay;
      const code = (err as { cause?: { code?: unknown } }).cause?.code;
      const reason = `${(err as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`;
      this.o.logger?.warn({ jwksUri: this.uri, reason, failures: this.failures, retryInMs: delay, keepsLastGood: this.current !== undefined }, 'JWKS fetch failed');
    }
  }
}
