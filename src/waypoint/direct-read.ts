/**
 * Socket reads without the stream layer, for the waypoint's own HTTP/1.1 client: TCP sockets
 * opened here read into one shared buffer (node:net's `onread`) and hand each read to a sink
 * function, instead of allocating a Buffer per read and passing it through Readable's push,
 * flow and 'data' machinery. On the proxy's hot path that bookkeeping (an ArrayBuffer per read,
 * its sweeping, the stream state updates) costs as much as parsing the bytes.
 *
 * Invariants:
 * - A sink sees each read exactly once, in order, as a view into the shared buffer that is valid
 *   only until the sink returns: a sink copies whatever it keeps (reads run one at a time on the
 *   event-loop thread, so one buffer serves every socket).
 * - Until a sink takes the socket over (`takeReads`), and after it lets go, reads are copied
 *   and pushed into the socket as an ordinary Readable: any consumer of the socket ('data',
 *   pipe) works unchanged, only one copy per read slower.
 * - Flow control, 'end', 'error' and 'close' are node:net's: pause() stops reading from the
 *   kernel, resume() starts again.
 */
import { connect, type Socket } from 'node:net';

/** Receives one read; `view` is valid only during the call. */
export type ReadSink = (view: Buffer) => void;

const SINK = Symbol('ambit.directRead.sink');
type DirectSocket = Socket & { [SINK]?: ReadSink | undefined };

/** Size of the shared read buffer (what one read can return at most), bytes. */
const READ_BUFFER_BYTES = 65_536;
let shared: Buffer | undefined;

function readBuffer(): Buffer {
  shared ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
  return shared;
}

export interface DirectConnectOptions {
  host: string;
  port: number;
  /** Disable Nagle's algorithm (default true). */
  noDelay?: boolean;
}

/** Opens a TCP connection whose reads can be taken over by `takeReads`. */
export function connectDirect(o: DirectConnectOptions): Socket {
  const sock: DirectSocket = connect({
    host: o.host,
    port: o.port,
    noDelay: o.noDelay ?? true,
    onread: {
      buffer: readBuffer(),
      callback: (nread: number, buf: Uint8Array): boolean => {
        const view = (buf as Buffer).subarray(0, nread);
        const sink = sock[SINK];
        if (sink !== undefined) {
          sink(view);
          return true;
        }
        // Nobody took the reads over: an ordinary stream (false stops reading until drained).
        return sock.push(Buffer.from(view));
      },
    },
  });
  sock[SINK] = undefined;
  return sock;
}

/** Whether `s` was opened by connectDirect (its reads can be taken over). */
export function isDirect(s: object): s is Socket {
  return SINK in s;
}

/**
 * Sends every later read of `s` to `sink` (undefined: back to the stream). False when `s` was
 * not opened by connectDirect, or already holds bytes read as a stream (read it as a stream
 * then, so that nothing is skipped).
 */
export function takeReads(s: object, sink: ReadSink | undefined): boolean {
  if (!isDirect(s) || (sink !== undefined && s.readableLength > 0)) return false;
  (s as DirectSocket)[SINK] = sink;
  return true;
}
