/**
 * Connection-pool limits of one destination (DestinationRule `connectionPool`), Envoy's circuit
 * breakers: at most `maxConnections` requests in flight toward HTTP/1.1 upstreams (one request
 * per connection) or `http2MaxRequests` toward HTTP/2 ones, up to `http1MaxPendingRequests`
 * waiting for a slot, and anything beyond that refused at once: the proxy answers 503 with
 * response flag UO instead of queueing without bound.
 *
 * Invariants: `inFlight <= capacity` at all times; waiters are served first come first served;
 * a release hands the slot straight to the oldest waiter; a waiter that gives up (client gone,
 * timeout) leaves the queue without taking a slot.
 */
import type { ConnectionPoolPolicy } from '../model/compile/types.js';
import type { CancelSignal } from './cancel.js';

/** Envoy's defaults: effectively unlimited connections and requests, 1024 pending. */
const UNLIMITED = 2 ** 31 - 1;
const DEFAULT_PENDING = 1024;

export type Acquired = { readonly ok: true; release(): void } | { readonly ok: false };

export class PoolLimiter {
  readonly capacity: number;
  readonly maxPending: number;
  private inFlightCount = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(policy: ConnectionPoolPolicy | undefined, protocol: 'http1' | 'http2') {
    const conns = policy?.maxConnections;
    const reqs = policy?.http2MaxRequests;
    const cap = protocol === 'http2' ? (reqs ?? UNLIMITED) : Math.min(conns ?? UNLIMITED, reqs ?? UNLIMITED);
    this.capacity = cap > 0 ? cap : UNLIMITED;
    const pending = policy?.http1MaxPendingRequests;
    this.maxPending = pending === undefined || pending <= 0 ? DEFAULT_PENDING : pending;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  get pending(): number {
    return this.waiters.length;
  }

  /** A slot at once when one is free and nobody waits; undefined otherwise (then `acquire`). */
  tryAcquire(): Acquired | undefined {
    if (this.inFlightCount >= this.capacity || this.waiters.length > 0) return undefined;
    this.inFlightCount++;
    return this.slot();
  }

  /** A slot, after waiting if needed; `{ok:false}` when the pending queue is full (overflow). */
  acquire(signal?: CancelSignal): Promise<Acquired> {
    if (this.inFlightCount < this.capacity) {
      this.inFlightCount++;
      return Promise.resolve(this.slot());
    }
    if (this.waiters.length >= this.maxPending) return Promise.resolve({ ok: false });
    return new Promise((resolve) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.slot());
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i !== -1) this.waiters.splice(i, 1);
        resolve({ ok: false });
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private slot(): Acquired {
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        const next = this.waiters.shift();
        if (next !== undefined) next(); // the slot passes on; inFlight unchanged
        else this.inFlightCount--;
      },
    };
  }
}
