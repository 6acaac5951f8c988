/**
 * Splices two TCP sockets both ways (passthrough, in-process delivery, inbound plaintext). The
 * HTTP/2 stream case is src/tunnel/splice.ts.
 *
 * Invariants:
 * - Backpressure: each direction is a pipe(), so a slow reader pauses the other side's reads.
 * - Half-close: FIN from one side ends the other side's output only (both sockets must be
 *   created with `allowHalfOpen: true`); the reverse direction keeps flowing until it ends too.
 * - An error or reset on either side destroys the other; `done` runs once, when both are closed.
 */
import type { Socket } from 'node:net';

export function spliceSockets(a: Socket, b: Socket, done: (err?: Error) => void): void {
  let closed = 0;
  let firstError: Error | undefined;
  const onError = (other: Socket) => (err: Error) => {
    if (firstError === undefined) firstError = err;
    other.destroy();
  };
  a.on('error', onError(b));
  b.on('error', onError(a));
  const onClose = (self: Socket, other: Socket) => () => {
    // Closed before both directions finished (reset, destroy): the other side cannot finish either.
    if (!self.readableEnded || !self.writableFinished) other.destroy();
    else if (other.readableEnded && !other.destroyed) other.destroy();
    if (++closed === 2) done(firstError);
  };
  a.once('close', onClose(a, b));
  b.once('close', onClose(b, a));
  // Once both directions ended, release the sockets (allowHalfOpen keeps them otherwise).
  const maybeEnd = () => {
    if (a.readableEnded && b.readableEnded && a.writableFinished && b.writableFinished) {
      a.destroy();
      b.destroy();
    }
  };
  a.on('end', maybeEnd);
  b.on('end', maybeEnd);
  a.on('finish', maybeEnd);
  b.on('finish', maybeEnd);
  a.pipe(b);
  b.pipe(a);
}
