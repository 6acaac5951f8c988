/**
 * Two in-memory Duplex streams wired back to back (what one writes the other reads), with
 * half-close and backpressure: the HBONE server hands one end to its splice and the waypoint's
 * HTTP server reads the other, so an HTTP server runs on a CONNECT stream as on a socket.
 * (Kept rather than `stream.duplexPair`: the waypoint needs `remoteAddress`/`remotePort` on each
 * end, and a write callback that waits for the reader rather than for the push.)
 *
 * Invariants: `end()` on one side ends the other's readable side only; destroying one side
 * destroys the other; a write's callback runs when the peer has consumed the chunk, so the
 * writer sees the reader's backpressure.
 */
import { Duplex } from 'node:stream';

class Half extends Duplex {
  peer!: Half;
  private pendingCallback: ((err?: Error | null) => void) | undefined;
  remoteAddress: string | undefined;
  remotePort: number | undefined;

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _read(): void {
    const cb = this.peer.pendingCallback;
    if (cb !== undefined) {
      this.peer.pendingCallback = undefined;
      cb();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.touch();
    this.peer.touch();
    if (this.peer.destroyed) {
      cb(new Error('peer closed'));
      return;
    }
    if (this.peer.push(chunk)) cb();
    else this.pendingCallback = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.peer.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const p = this.pendingCallback;
    this.pendingCallback = undefined;
    p?.(err ?? new Error('closed'));
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (!this.peer.destroyed) this.peer.destroy();
    cb(err);
  }

  /** Sockets have this; HTTP servers call it. */
  setTimeout(ms: number, cb?: () => void): this {
    if (cb !== undefined) this.once('timeout', cb);
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleMs = ms;
    if (ms > 0) this.armIdle();
    return this;
  }

  private idleTimer: NodeJS.Timeout | undefined;
  private idleMs = 0;

  /** Activity: restarts the idle timer if one is set. */
  touch(): void {
    if (this.idleMs > 0 && !this.destroyed) this.armIdle();
  }

  private armIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs);
    this.idleTimer.unref();
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}

/** A pair of connected in-memory duplex streams. */
export function duplexPair(): [Duplex, Duplex] {
  const a = new Half();
  const b = new Half();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Sets the peer address an HTTP server reports for the end it serves. */
export function setRemote(d: Duplex, address: string, port: number): void {
  const h = d as unknown as { remoteAddress?: string; remotePort?: number };
  h.remoteAddress = address;
  h.remotePort = port;
}
