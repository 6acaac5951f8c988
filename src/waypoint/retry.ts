/**
 * Retries: which attempt outcomes are retriable under Istio's `retryOn` conditions, the backoff
 * between attempts, and a retry budget in the manner of Linkerd's: retries may add at most
 * `ratio` of the requests seen over a sliding window, plus `minPerSecond` so that low-traffic
 * services can still retry. When a backend fails completely, the budget keeps a retry storm from
 * multiplying the load by `attempts`.
 *
 * Invariants:
 * - A budget is a sliding window of `windowMs` split in 10 buckets; deposits (requests) and
 *   withdrawals (retries) age out together, so the ratio holds over any window-long period.
 * - `tryWithdraw` never allows more than `minPerSecond * windowSeconds + ratio * requests`
 *   retries inside one window.
 * - Unknown `retryOn` tokens are ignored (the model's analyzer reports them), never retried on.
 */

/** What one attempt came to. */
export type AttemptOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus: number | undefined }
  | { readonly kind: 'connect-failure' }
  | { readonly kind: 'refused-stream' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'protocol-error' }
  | { readonly kind: 'per-try-timeout' };

const GRPC: Record<string, number> = { cancelled: 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, internal: 13, unavailable: 14 };

/** Istio's default conditions (when a route sets none, or has no retry policy at all). */
export const DEFAULT_RETRY_ON: readonly string[] = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'];
/** Istio's default attempts when a route has no retry policy. */
export const DEFAULT_RETRY_ATTEMPTS = 2;

/** The `retryOn` conditions that can hold for an HTTP status, precomputed per condition list. */
interface StatusConditions {
  /** No condition looks at a response status or gRPC status. */
  readonly none: boolean;
  readonly any5xx: boolean;
  readonly gateway: boolean;
  readonly statuses: ReadonlySet<number>;
  readonly grpc: ReadonlySet<number>;
}

const compiled = new WeakMap<readonly string[], StatusConditions>();

function statusConditions(retryOn: readonly string[], retriableStatusCodes: readonly number[]): StatusConditions {
  let c = retriableStatusCodes === DEFAULT_RETRIABLE_CODES ? compiled.get(retryOn) : undefined;
  if (c !== undefined) return c;
  let any5xx = false;
  let gateway = false;
  const statuses = new Set<number>();
  const grpc = new Set<number>();
  for (const raw of retryOn) {
    const cond = raw.trim().toLowerCase();
    if (cond === '5xx') any5xx = true;
    else if (cond === 'gateway-error') gateway = true;
    else if (cond === 'retriable-4xx') statuses.add(409);
    else if (cond === 'envoy-ratelimited') statuses.add(429);
    else if (cond === 'retriable-status-codes') for (const s of retriableStatusCodes) statuses.add(s);
    else if (/^\d{3}$/.test(cond)) statuses.add(Number(cond));
    else if (GRPC[cond] !== undefined) grpc.add(GRPC[cond] as number);
  }
  c = { none: !any5xx && !gateway && statuses.size === 0 && grpc.size === 0, any5xx, gateway, statuses, grpc };
  if (retriableStatusCodes === DEFAULT_RETRIABLE_CODES) compiled.set(retryOn, c);
  return c;
}

const DEFAULT_RETRIABLE_CODES: readonly number[] = [503];

/** Whether `outcome` is retriable under the `retryOn` conditions (Envoy's x-envoy-retry-on semantics). */
export function isRetriable(retryOn: readonly string[], outcome: AttemptOutcome, retriableStatusCodes: readonly number[] = DEFAULT_RETRIABLE_CODES): boolean {
  if (outcome.kind === 'response') {
    // The hot path (every answered request): conditions compiled once per route's list.
    const c = statusConditions(retryOn, retriableStatusCodes);
    if (c.none) return false;
    const s = outcome.status;
    if (c.any5xx && s >= 500) return true;
    if (c.gateway && (s === 502 || s === 503 || s === 504)) return true;
    if (c.statuses.has(s)) return true;
    return outcome.grpcStatus !== undefined && c.grpc.has(outcome.grpcStatus);
  }
  for (const raw of retryOn) {
    const cond = raw.trim().toLowerCase();
    switch (outcome.kind) {
      case 'connect-failure':
        if (cond === 'connect-failure' || cond === '5xx' || cond === 'gateway-error' || cond === 'reset') return true;
        break;
      case 'refused-stream':
        if (cond === 'refused-stream' || cond === '5xx' || cond === 'reset') return true;
        break;
      case 'reset':
        if (cond === 'reset' || cond === '5xx') return true;
        break;
      case 'per-try-timeout':
      case 'protocol-error':
        if (cond === '5xx' || cond === 'gateway-error') return true;
        break;
    }
  }
  return false;
}

/**
 * Envoy's backoff: exponential from `baseMs` (default 25), capped at 10x base, with full jitter.
 * `retry` counts from 1.
 */
export function backoffMs(retry: number, baseMs = 25, rand: () => number = Math.random): number {
  const cap = baseMs * 10;
  const ceiling = Math.min(cap, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(rand() * ceiling);
}

export interface RetryBudgetOptions {
  /** Retries allowed as a share of requests (default 0.2, Linkerd's default). */
  ratio?: number;
  /** Retries always allowed per second regardless of traffic (default 10). */
  minPerSecond?: number;
  /** Window over which requests and retries are counted, ms (default 10,000). */
  windowMs?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
}

const BUCKETS = 10;

export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
  private readonly now: () => number;
  private readonly deposits = new Float64Array(BUCKETS);
  private readonly withdrawals = new Float64Array(BUCKETS);
  private bucket = 0;
  private bucketStart: number;

  constructor(o: RetryBudgetOptions = {}) {
    this.ratio = o.ratio ?? 0.2;
    this.minPerSecond = o.minPerSecond ?? 10;
    this.windowMs = o.windowMs ?? 10_000;
    this.now = o.now ?? Date.now;
    this.bucketStart = this.now();
    if (!(this.ratio >= 0) || !(this.minPerSecond >= 0) || !(this.windowMs > 0)) {
      throw new RangeError(`retry budget needs ratio >= 0, minPerSecond >= 0 and windowMs > 0 (got ${this.ratio}, ${this.minPerSecond}, ${this.windowMs})`);
    }
  }

  private advance(): void {
    const width = this.windowMs / BUCKETS;
    const t = this.now();
    let steps = Math.floor((t - this.bucketStart) / width);
    if (steps <= 0) return;
    if (steps > BUCKETS) steps = BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.bucket = (this.bucket + 1) % BUCKETS;
      this.deposits[this.bucket] = 0;
      this.withdrawals[this.bucket] = 0;
    }
    this.bucketStart = t - ((t - this.bucketStart) % width);
  }

  private sum(a: Float64Array): number {
    let s = 0;
    for (const x of a) s += x;
    return s;
  }

  /** Records one original request. */
  deposit(): void {
    this.advance();
    this.deposits[this.bucket] = (this.deposits[this.bucket] ?? 0) + 1;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryWithdraw(): boolean {
    this.advance();
    const allowed = this.minPerSecond * (this.windowMs / 1000) + this.ratio * this.sum(this.deposits);
    if (this.sum(this.withdrawals) + 1 > allowed) return false;
    this.withdrawals[this.bucket] = (this.withdrawals[this.bucket] ?? 0) + 1;
    return true;
  }
}
