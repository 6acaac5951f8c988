/**
 * Write batching across one turn of the event loop: a stream written to while handling I/O is
 * corked and uncorked once every I/O callback of that loop iteration has run (setImmediate
 * runs right after the poll phase). Under load the waypoint then writes to each peer (the
 * backend, the clients) in bursts: the first write of a burst wakes the peer up, the next ones
 * find it awake. Writing as each request is handled instead costs a cross-CPU wake-up per
 * write, which on virtual machines cost more than the proxy's own work on a request.
 *
 * Invariants:
 * - Bytes keep their order on each stream (corking buffers writes, it never reorders them), and
 *   everything written is handed to the kernel in the same loop iteration (no added timer
 *   delay, at most the rest of the iteration's I/O callbacks).
 * - A stream is uncorked exactly as many times as it was corked here (once per iteration), so
 *   a caller's own cork()/uncork() pairs keep working; a destroyed stream is skipped.
 */
import type { Writable } from 'node:stream';

/** Marks a stream corked here (a symbol property: cheaper than a WeakSet on every write). */
const HELD = Symbol('ambit.writeBatch.held');
type Holdable = Writable & { [HELD]?: boolean };

let pending: Holdable[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  const streams = pending;
  pending = [];
  for (const s of streams) {
    s[HELD] = false;
    if (!s.destroyed) s.uncork();
  }
}

/** Holds `s`'s writes until the current loop iteration's I/O callbacks have all run. */
export function holdWrites(s: Holdable): void {
  if (s[HELD] === true) return;
  s[HELD] = true;
  s.cork();
  pending.push(s);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}
