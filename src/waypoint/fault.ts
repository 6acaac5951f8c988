/**
 * Fault injection (VirtualService `fault`): a delay before forwarding and/or an abort answered by
 * the waypoint itself, each applied to a percentage of requests, decided independently per
 * request as Envoy does. Aborts are decided after delays, so a request may be both delayed and
 * aborted.
 */
import type { FaultPolicy } from '../model/compile/types.js';
import type { CancelSignal } from './cancel.js';

export interface FaultDecision {
  /** Delay to wait before going on, ms (0: none). */
  readonly delayMs: number;
  /** Status to answer instead of forwarding (undefined: forward). */
  readonly abortStatus: number | undefined;
}

const NONE: FaultDecision = { delayMs: 0, abortStatus: undefined };

/** Decides the faults of one request; `rand` in [0,1). */
export function decideFault(fault: FaultPolicy | undefined, rand: () => number = Math.random): FaultDecision {
  if (fault === undefined) return NONE;
  const delay = fault.delay !== undefined && rand() * 100 < fault.delay.percent ? fault.delay.ms : 0;
  const abort = fault.abort !== undefined && rand() * 100 < fault.abort.percent ? fault.abort.httpStatus : undefined;
  return delay === 0 && abort === undefined ? NONE : { delayMs: delay, abortStatus: abort };
}

/** Resolves after `ms`, or at once when `signal` aborts (the client went away). */
export function sleep(ms: number, signal?: CancelSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted === true) {
      resolve();
      return;
    }
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
