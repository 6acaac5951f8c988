/**
 * The one splice of ambit: copies bytes both ways between two streams, for an HTTP/2 CONNECT
 * stream and a plain byte stream (`splice`: HBONE on both ends of the tunnel) and for two plain
 * streams (`spliceStreams`: the agent's passthrough, in-process and inbound-plaintext paths, the
 * waypoint's upgraded and TCP connections).
 *
 * Invariants (both forms):
 * - Backpressure: a direction stops reading when its destination holds `maxBufferedBytes` and
 *   resumes on 'drain', so a slow reader pauses the writer on the other side instead of buffering
 *   without bound (for HTTP/2, flow control carries it to the peer).
 * - Half-close: the end of one side's input ends the other side's output and nothing else (client
 *   FIN or END_STREAM -> upstream FIN; the reply keeps flowing until upstream ends too). That needs
 *   sockets created with `allowHalfOpen: true`; a socket without it ends its own output when its
 *   input ends, and then the rule below tears the pair down, as a proxy without half-close would.
 * - When one side closes, the other is destroyed unless both directions had finished cleanly; if
 *   they had, it is released once its last writes are flushed (allowHalfOpen keeps it otherwise).
 * - An error or reset on either side destroys the other (an HTTP/2 stream is reset with
 *   CONNECT_ERROR, RFC 9113 §8.5), and `done` is called exactly once, when both are closed, with
 *   the first error.
 * - Write batching where it saves syscalls: HTTP/2 delivers one chunk per DATA frame (16 KiB)
 *   and one socket read often yields several, so writes into the plain socket made in the same
 *   turn of the event loop are corked and flushed together (one writev instead of one syscall
 *   per frame). Writes into the HTTP/2 stream, and between two plain streams (one read, one
 *   chunk), are not corked: a cork would only hold a small request back for an extra turn of
 *   the loop (measured: bench/tunnel.ts p50 at 1,000 req/s).
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
  // Like pipe(): start a source that was explicitly paused (pauseOnConnect, or paused by the
  // HTTP/1.1 server while it switched protocols); a 'data' listener alone would not.
  src.resume();
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

/** Splices two plain streams (sockets, in-memory duplexes) both ways; see the module rules. */
export function spliceStreams(a: Duplex, b: Duplex, done: (err?: Error) => void, options: SpliceOptions = {}): void {
  let firstError: Error | undefined;
  let closed = 0;
  const onError = (other: Duplex) => (err: Error) => {
    if (firstError === undefined) firstError = err;
    other.destroy();
  };
  a.on('error', onError(b));
  b.on('error', onError(a));
  const onClose = (self: Duplex, other: Duplex) => () => {
    if (!other.destroyed) {
      // `self` takes and gives no more bytes. Clean only if both directions ended: everything
      // `self` sent reached `other`, and everything `other` will ever send reached `self`.
      const clean = self.readableEnded && self.writableFinished && other.readableEnded;
      if (!clean) other.destroy();
      else if (other.writableFinished) other.destroy();
      else other.once('finish', () => other.destroy());
    }
    if (++closed === 2) done(firstError);
  };
  a.once('close', onClose(a, b));
  b.once('close', onClose(b, a));
  // Once both directions ended, release both (allowHalfOpen keeps them open otherwise).
  const maybeRelease = () => {
    if (a.readableEnded && b.readableEnded && a.writableFinished && b.writableFinished) {
      a.destroy();
      b.destroy();
    }
  };
  for (const s of [a, b]) {
    s.on('end', maybeRelease);
    s.on('finish', maybeRelease);
  }
  pump(a, b, options.maxBufferedBytes, false);
  pump(b, a, options.maxBufferedBytes, false);
}
