/**
 * Reconnect delays: exponential with full jitter (AWS architecture blog, "Exponential Backoff And
 * Jitter"), so a control-plane restart is not met by every subscriber at the same instant.
 */
export interface BackoffOptions {
  /** First ceiling, ms (default 200). */
  initialMs?: number;
  /** Largest ceiling, ms (default 30000). */
  maxMs?: number;
  /** Ceiling growth per attempt (default 2). */
  factor?: number;
  /** Random source in [0, 1) (default Math.random). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions = {}) {}

  /** Delay before the next attempt: uniform in [0, min(max, initial * factor^attempt)]. */
  next(): number {
    const initial = this.opts.initialMs ?? 200;
    const ceiling = Math.min(this.opts.maxMs ?? 30_000, initial * (this.opts.factor ?? 2) ** this.attempt);
    this.attempt++;
    return Math.floor((this.opts.random ?? Math.random)() * ceiling);
  }

  reset(): void { this.attempt = 0; }
}
