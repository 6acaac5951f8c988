/**
 * Time and timers behind an interface, so renewal schedules can be driven by a fake clock in
 * tests instead of waiting twelve hours.
 */

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds; returns a handle for clearTimeout. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Largest delay Node's setTimeout honours (about 24.8 days); longer delays fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock. Timers are unref'd so a pending renewal never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
