/**
 * Outlier detection of one destination (DestinationRule `outlierDetection`), Envoy's
 * consecutive-errors detector: an endpoint that answers `consecutive5xxErrors` 5xx in a row (or
 * `consecutiveGatewayErrors` 502/503/504 or connect failures in a row) is ejected for
 * `baseEjectionTimeMs x (times ejected)`, and returns when that time is over. Successes reset
 * the counters; an endpoint that stays healthy for a whole ejection period while not ejected has
 * its ejection multiplier decreased, as Envoy does at each interval.
 *
 * Invariants:
 * - Never more than `maxEjectionPercent` of the endpoints are ejected at once (rounded down, but
 *   one endpoint can always be ejected when the percentage is above zero, as in Envoy);
 * - When the healthy share falls below `minHealthPercent`, ejection is suspended and every
 *   endpoint is eligible (panic mode), so a failing service degrades instead of going dark;
 * - Time comes from an injected clock; nothing here keeps timers alive (ejection ends lazily on
 *   the next check and at each `intervalMs` sweep run by `sweep()`).
 */
import type { OutlierDetectionPolicy } from '../model/compile/types.js';

export interface OutlierState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Times ejected (the multiplier of the base ejection time). */
  ejections: number;
  /** Ejected until this time (ms), 0 when not ejected. */
  ejectedUntil: number;
  lastSweep: number;
}

export type OutlierResult = 'success' | '5xx' | 'gateway-error' | 'connect-failure';

export class OutlierDetector {
  private readonly states = new Map<string, OutlierState>();

  constructor(
    readonly policy: OutlierDetectionPolicy,
    private readonly now: () => number = Date.now,
    /** Called when an endpoint is ejected (for metrics and logs). */
    private readonly onEject: (key: string, untilMs: number, times: number) => void = () => {},
  ) {}

  private state(key: string): OutlierState {
    let s = this.states.get(key);
    if (s === undefined) {
      s = { consecutive5xx: 0, consecutiveGateway: 0, ejections: 0, ejectedUntil: 0, lastSweep: this.now() };
      this.states.set(key, s);
    }
    return s;
  }

  /** True when the endpoint is ejected now. */
  isEjected(key: string): boolean {
    const s = this.states.get(key);
    if (s === undefined || s.ejectedUntil === 0) return false;
    if (this.now() >= s.ejectedUntil) {
      s.ejectedUntil = 0;
      return false;
    }
    return true;
  }

  /** Ejected endpoints among `keys`. */
  ejectedCount(keys: readonly string[]): number {
    let n = 0;
    for (const k of keys) if (this.isEjected(k)) n++;
    return n;
  }

  /**
   * Whether ejection is in force for this endpoint set: false in panic mode (healthy share below
   * `minHealthPercent`), so callers treat every endpoint as eligible.
   */
  enforcing(keys: readonly string[]): boolean {
    if (keys.length === 0 || this.policy.minHealthPercent <= 0) return true;
    const healthy = keys.length - this.ejectedCount(keys);
    return (healthy * 100) / keys.length >= this.policy.minHealthPercent;
  }

  /** Records the result of one request to `key` among the endpoint set `keys`. */
  record(key: string, result: OutlierResult, keys: readonly string[]): void {
    const s = this.state(key);
    if (result === 'success') {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
      return;
    }
    s.consecutive5xx++;
    if (result !== '5xx') s.consecutiveGateway++;
    else s.consecutiveGateway = 0;
    const c5 = this.policy.consecutive5xxErrors;
    const cg = this.policy.consecutiveGatewayErrors;
    const trip = (c5 !== undefined && c5 > 0 && s.consecutive5xx >= c5) || (cg !== undefined && cg > 0 && s.consecutiveGateway >= cg);
    if (!trip || this.isEjected(key)) return;
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    const max = this.policy.maxEjectionPercent;
    if (max <= 0) return;
    const allowed = Math.max(1, Math.floor((keys.length * max) / 100));
    if (this.ejectedCount(keys) >= allowed) return;
    s.ejections++;
    s.ejectedUntil = this.now() + this.policy.baseEjectionTimeMs * s.ejections;
    this.onEject(key, s.ejectedUntil, s.ejections);
  }

  /**
   * The interval sweep: ends ejections that are over and, for endpoints healthy (not ejected)
   * for a whole base ejection time, lowers the ejection multiplier by one.
   */
  sweep(): void {
    const t = this.now();
    for (const s of this.states.values()) {
      if (s.ejectedUntil !== 0 && t >= s.ejectedUntil) s.ejectedUntil = 0;
      if (s.ejectedUntil === 0 && s.ejections > 0 && t - s.lastSweep >= this.policy.baseEjectionTimeMs) {
        s.ejections--;
        s.lastSweep = t;
      }
    }
  }

  /** Forgets endpoints no longer in the set. */
  retain(keys: readonly string[]): void {
    const keep = new Set(keys);
    for (const k of this.states.keys()) if (!keep.has(k)) this.states.delete(k);
  }
}
