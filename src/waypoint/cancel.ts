/**
 * A cancellation signal for one request: the subset of AbortSignal the waypoint's waits use
 * (`aborted`, `abort` listeners), without AbortController's EventTarget machinery, which cost
 * several microseconds per request on the hot path although almost no request is ever cancelled.
 *
 * Invariants: listeners run once, in the order added, when `cancel()` is first called; a
 * listener added after cancellation never runs (callers check `aborted` first, as with
 * AbortSignal); an AbortSignal can be passed wherever a `CancelSignal` is expected.
 */

/** What a wait needs from a signal (AbortSignal has this shape too). */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class RequestCancel implements CancelSignal {
  aborted = false;
  private listeners: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.listeners;
    if (l === undefined) return;
    const i = l.indexOf(listener);
    if (i !== -1) l.splice(i, 1);
  }

  /** Cancels: every listener runs once. */
  cancel(): void {
    if (this.aborted) return;
    this.aborted = true;
    const l = this.listeners;
    this.listeners = undefined;
    if (l !== undefined) for (const f of l) f();
  }
}
