/**
 * Local rate limiting (the `ambit.dev/v1alpha1` LocalRateLimit kind): a token bucket per limit
 * resource (and per route when the limit names one), refilled by `tokensPerFill` every
 * `fillInterval` up to `maxTokens`; a request takes one token or is answered 429 (or the
 * configured status) with response flag RL.
 *
 * Invariants: refill is computed from elapsed time on each take (no timers), in whole fill
 * intervals as Envoy does, so the long-run rate is exactly tokensPerFill / fillInterval; a bucket
 * starts full; buckets are kept by limit key and survive config updates that leave the limit's
 * spec unchanged.
 */
import { parseDurationMs } from '../model/duration.js';
import type { LocalRateLimitSpec } from '../model/kinds/ambit-rate-limit.js';
import { WaypointError } from './errors.js';

export class TokenBucket {
  private tokens: number;
  private lastFill: number;

  constructor(
    readonly maxTokens: number,
    readonly tokensPerFill: number,
    readonly fillIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(maxTokens >= 1) || !(tokensPerFill >= 1) || !(fillIntervalMs >= 1)) {
      throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `token bucket needs maxTokens >= 1, tokensPerFill >= 1 and fillInterval >= 1ms (got ${maxTokens}, ${tokensPerFill}, ${fillIntervalMs}ms)`);
    }
    this.tokens = maxTokens;
    this.lastFill = now();
  }

  /** Takes a token; false when the bucket is empty. */
  tryTake(): boolean {
    const t = this.now();
    const fills = Math.floor((t - this.lastFill) / this.fillIntervalMs);
    if (fills > 0) {
      this.tokens = Math.min(this.maxTokens, this.tokens + fills * this.tokensPerFill);
      this.lastFill += fills * this.fillIntervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  get available(): number {
    return this.tokens;
  }
}

export interface RateLimitVerdict {
  readonly allowed: boolean;
  /** The limit that refused, `namespace/name`. */
  readonly limit?: string;
  readonly status?: number;
}

const ALLOWED: RateLimitVerdict = { allowed: true };

/** Buckets of every LocalRateLimit the waypoint enforces. */
export class LocalRateLimiter {
  private readonly buckets = new Map<string, { sig: string; bucket: TokenBucket }>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Takes a token from every limit that applies to a request matched to `routeName`; the first
   * empty bucket refuses it.
   */
  check(limits: readonly { readonly key: string; readonly spec: LocalRateLimitSpec }[], routeName: string | undefined): RateLimitVerdict {
    for (const l of limits) {
      if (l.spec.routeName !== undefined && l.spec.routeName !== routeName) continue;
      if (!this.bucket(l.key, l.spec).tryTake()) return { allowed: false, limit: l.key, status: l.spec.statusCode ?? 429 };
    }
    return ALLOWED;
  }

  private bucket(key: string, spec: LocalRateLimitSpec): TokenBucket {
    const tb = spec.tokenBucket;
    const sig = `${tb.maxTokens}|${tb.tokensPerFill ?? 1}|${tb.fillInterval}`;
    const hit = this.buckets.get(key);
    if (hit !== undefined && hit.sig === sig) return hit.bucket;
    const interval = parseDurationMs(tb.fillInterval);
    if (interval === undefined) throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `LocalRateLimit ${key}: fillInterval ${JSON.stringify(tb.fillInterval)} is not a duration`);
    const bucket = new TokenBucket(tb.maxTokens, tb.tokensPerFill ?? 1, interval, this.now);
    this.buckets.set(key, { sig, bucket });
    return bucket;
  }
}
