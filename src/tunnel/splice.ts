/**
 * Splices an HTTP/2 CONNECT stream and an upstream byte stream both ways.
 *
 * Invariants:
 * - Backpressure: each direction is a pipe(), so a slow reader pauses the writer on the other
 *   side instead of buffering without bound (HTTP/2 flow control carries it to the peer).
 * - Half-close: the end of one side's input ends the other side's output and nothing else
 *   (client END_STREAM -> upstream FIN; the reply keeps flowing until upstream ends too).
 *   Upstream sockets must therefore be created with `allowHalfOpen: true`.
 * - An error or reset on either side destroys the other (an HTTP/2 stream is reset with
 *   CONNECT_ERROR, RFC 9113 §8.5), and `done` is called exactly once when both are closed.
 */
import { constants as h2 } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Http2Stream } from 'node:http2';

export function splice(stream: Http2Stream, upstream: Duplex, done: (err?: Error) => void): void {
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

  stream.pipe(upstream);
  upstream.pipe(stream);
}
