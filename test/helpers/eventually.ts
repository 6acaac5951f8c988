/**
 * The one polling wait of the test suite: for state that changes asynchronously and has no event
 * to await (a log line written, a pool that drains, a counter that moves). Prefer awaiting the
 * event itself where there is one. A wait that runs out throws an Error saying what was awaited
 * and after how long (and `detail()`, when given, for the state seen last), so the failing test
 * reads "timed out after 5000 ms waiting for the idle session to be released" instead of a bare
 * timeout.
 */

export interface EventuallyOptions {
  /** How long to wait before failing (default 5,000 ms). */
  timeoutMs?: number;
  /** Pause between two checks (default 10 ms). */
  intervalMs?: number;
  /** What to add to the timeout message: the state seen last (default nothing). */
  detail?: () => string;
}

/** Resolves once `cond()` holds; rejects with a message naming `what` after `timeoutMs`. */
export async function eventually(what: string, cond: () => boolean | Promise<boolean>, options: EventuallyOptions = {}): Promise<void> {
  const { timeoutMs = 5_000, intervalMs = 10, detail } = options;
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const seen = detail === undefined ? '' : `; last seen: ${detail()}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${seen}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
