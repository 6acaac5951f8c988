/**
 * Splices an HTTP/2 CONNECT stream and a plain byte stream (the upstream socket on the server,
 * the captured client socket on the client) both ways.
 *
 * Invariants:
 * - Backpressure: a direction stops reading when its destination's buffer is full and resumes
 *   on 'drain', so a slow reader pauses the writer on the other side instead of buffering
 *   without bound (HTTP/2 flow control carries it to the peer).
 * - Write batching where it saves syscalls: HTTP/2 delivers one chunk per DATA frame (16 KiB)
 *   and one socket read often yields several, so writes into the plain socket made in the same
 *   turn of the event loop are corked and flushed together (one writev instead of one syscall
 *   per frame). Writes into the HTTP/2 stream are not corked: the session already coalesces
 *   every frame queued in a turn into one TLS write, and a cork would only hold a small request
 *   back for an extra turn of the loop (measured: bench/tunnel.ts p50 at 1,000 req/s).
 * - Half-close: the end of one side's input ends the other side's output and nothing else
 *   (client END_STREAM -> upstream FIN; the reply keeps flowing until upstream ends too).
 *   Plain sockets must therefore be created with `allowHalfOpen: true`.
 * - An error or reset on either side destroys the other (an HTTP/2 stream is reset with
 *   CONNECT_ERROR, RFC 9113 §8.5), and `done` is called exactly once when both are closed.
 */
import { constants as h2 } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Http2Stream } from 'node:http2';

/**
 * Bytes a direction may have queued in its destination before it stops reading (default
 * 1 MiB). Node's streams default to 16 KiB, which for an HTTP/2 stream means one socket read in
 * flight at a time and an idle pipeline between completions. Measured with iperf3 through an
 * ambit pair (bench/tunnel.ts, 2 cores): 16 KiB ~2.0 Gbit/s, 256 KiB ~2.5-3.4, 1 MiB ~3.5-4.7,
 * 4 MiB ~2.7-4.0. Bulk memory per stream is bounded by this per direction.
 */
export const DEFAULT_SPLICE_BUFFER_BYTES = 1024 * 1024;

export interface SpliceOptions {
  /** Default DEFAULT_SPLICE_BUFFER_BYTES (1 MiB). */
  maxBufferedBytes?: number;
}

/**
 * Copies `src` into `dst` with backpressure; ends `dst` at the end of `src`. With `batch`
 * (default true) the writes of one event-loop turn are corked and flushed together by a
 * setImmediate; pass false when `dst` batches by itself (an HTTP/2 stream).
 */
export function pump(src: Duplex, dst: Duplex, maxBufferedBytes = DEFAULT_SPLICE_BUFFER_BYTES, batch = true): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    dst.uncork();
  };
  const onDrain = () => src.resume();
  dst.on('drain', onDrain);
  src.on('data', (chunk: Buffer) => {
    if (batch && !corked) {
      corked = true;
      dst.cork();
      setImmediate(uncork);
    }
    // write() returning false only means "above 16 KiB"; keep going up to our own limit.
    // 'drain' follows once the queue empties, because write() did return false.
    if (!dst.write(chunk) && dst.writableLength >= maxBufferedBytes) src.pause();
  });
  src.once('end', () => {
    dst.off('drain', onDrain);
    if (corked) uncork();
    if (!dst.destroyed) dst.end();
  });
}

export function splice(stream: Http2Stream, upstream: Duplex, done: (err?: Error) => void, options: SpliceOptions = {}): void {
  let firstError: Error | undefined;
  let closed = 0;
  const onClosed = () => {
    if (++closed === 2) done(firstError);
  };
  const fail = (err: Error | undefined) => {
    if (err !== undefined && firstError === undefined) firstError = err;
  };

  upstream.on('error', (err: Error) => {
    fail(err);
    if (!stream.destroyed) stream.close(h2.NGHTTP2_CONNECT_ERROR);
  });
  stream.on('error', (err: Error) => {
    fail(err);
    upstream.destroy();
  });
  stream.on('aborted', () => upstream.destroy());
  upstream.on('close', () => {
    // Closed without both directions finishing: the other side cannot complete either.
    if (!upstream.readableEnded || !upstream.writableFinished) {
      if (!stream.destroyed) stream.close(h2.NGHTTP2_CONNECT_ERROR);
    }
    onClosed();
  });
  stream.on('close', () => {
    const reset = stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR;
    if (reset || !stream.readableEnded || !upstream.readableEnded) {
      upstream.destroy();
    } else if (!upstream.destroyed) {
      // Both directions ended cleanly: let upstream flush its last bytes, then release it
      // (a generic Duplex may not close by itself).
      if (upstream.writableFinished) upstream.destroy();
      else upstream.once('finish', () => upstream.destroy());
    }
    onClosed();
  });

  pump(stream, upstream, options.maxBufferedBytes, true);
  pump(upstream, stream, options.maxBufferedBytes, false);
}
