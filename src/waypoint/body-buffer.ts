/**
 * Keeps a request body replayable for retries and mirroring while streaming it to the current
 * attempt: chunks are kept in memory up to `limit` bytes; past that the copy is dropped and the
 * body can only go to the attempt that is already reading it (no more retries, no mirror), as
 * Envoy does with its per-request buffer limit.
 *
 * Invariants:
 * - Backpressure: the source is paused while a sink that asked for backpressure is full, and
 *   resumed on its `drain`; sinks without backpressure (mirrors) never slow the request.
 * - A sink attached late first receives every buffered chunk in order, then follows live.
 * - Memory held is at most `limit` bytes plus the chunk in hand.
 */
import type { Readable, Writable } from 'node:stream';

interface Sink {
  dst: Writable;
  backpressure: boolean;
}

export class BodyBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private overflowed = false;
  private done = false;
  private failed = false;
  private readonly sinks = new Set<Sink>();
  private waitingDrain = 0;
  /** Bytes received from the client so far. */
  bytes = 0;

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
    hasBody: boolean,
  ) {
    if (!hasBody) {
      this.done = true;
      // A bodiless HTTP/1.1 request has nothing to drain (its stream ends only when read).
      if ((source as { bodiless?: boolean }).bodiless !== true) source.resume();
      return;
    }
    source.on('data', (c: Buffer | string) => this.onData(typeof c === 'string' ? Buffer.from(c) : c));
    source.on('end', () => {
      this.done = true;
      for (const s of this.sinks) s.dst.end();
      this.sinks.clear();
    });
    const fail = () => {
      if (this.done) return;
      this.failed = true;
      for (const s of this.sinks) s.dst.destroy(new Error('client aborted the request body'));
      this.sinks.clear();
    };
    source.on('error', fail);
    source.on('aborted', fail);
  }

  /** The whole body has arrived. */
  get complete(): boolean {
    return this.done;
  }

  /** Another attempt (or a mirror) can still get the body from its first byte. */
  get replayable(): boolean {
    return !this.overflowed && !this.failed;
  }

  private onData(c: Buffer): void {
    this.bytes += c.length;
    if (!this.overflowed) {
      this.size += c.length;
      if (this.size > this.limit) {
        this.overflowed = true;
        this.chunks = [];
      } else {
        this.chunks.push(c);
      }
    }
    for (const s of this.sinks) {
      if (!s.dst.write(c) && s.backpressure) {
        this.waitingDrain++;
        this.source.pause();
        s.dst.once('drain', () => {
          if (--this.waitingDrain === 0) this.source.resume();
        });
      }
    }
  }

  /**
   * Sends the body to `dst` (buffered part first, then live, then `end()`). Returns false (and
   * sends nothing) when the body can no longer be replayed from its start.
   */
  attach(dst: Writable, backpressure = true): boolean {
    if (this.failed) return false;
    if (this.overflowed && this.bytes > 0) return false;
    for (const c of this.chunks) dst.write(c);
    if (this.done) {
      dst.end();
      return true;
    }
    const sink = { dst, backpressure };
    this.sinks.add(sink);
    dst.once('close', () => this.sinks.delete(sink));
    return true;
  }

  /** Stops feeding `dst` (an attempt that was abandoned). */
  detach(dst: Writable): void {
    for (const s of this.sinks) if (s.dst === dst) this.sinks.delete(s);
    if (this.waitingDrain > 0 && ![...this.sinks].some((s) => s.backpressure && s.dst.writableNeedDrain)) {
      this.waitingDrain = 0;
      this.source.resume();
    }
  }
}
