/**
 * Hands each client byte stream to the right front end: the bound service port's declared
 * protocol decides (http, http2/grpc, tcp; a port with a TCPRoute or TLSRoute is tcp), otherwise
 * the first bytes are sniffed (the HTTP/2 connection preface, an HTTP/1 request line) and a client
 * that sends nothing within `sniffTimeoutMs` (a server-first protocol such as MySQL) is carried
 * as TCP.
 *
 * Invariants: bytes read while sniffing are given back to the stream before the front end sees
 * it; a declared HTTP port never falls back to TCP (garbage gets the HTTP/1 parser's 400); the
 * dispatcher works on any Duplex (HBONE streams, plain sockets).
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { portProtocol } from './config.js';
import { l4RoutesFor } from './l4-route.js';
import { duplexPair } from './duplex-pair.js';
import { Http1Front, type FrontLimits } from './http1-front.js';
import { Http2Front } from './http2-front.js';
import type { WaypointMetrics } from './metrics.js';
import type { DownstreamInfo, WaypointProxy } from './proxy.js';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const H1_REQUEST_LINE = /^[A-Z][A-Z-]{1,19} /;

export type StreamProtocol = 'http1' | 'http2' | 'tcp';

/** Which protocol a connection's first bytes speak (undefined: need more bytes). */
export function sniffProtocol(first: Buffer): StreamProtocol | undefined {
  const n = Math.min(first.length, H2_PREFACE.length);
  if (first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return first.length >= H2_PREFACE.length ? 'http2' : undefined;
  const text = first.subarray(0, 21).toString('latin1');
  if (H1_REQUEST_LINE.test(text)) return 'http1';
  if (first.length < 21 && /^[A-Z][A-Z-]*$/.test(text)) return undefined;
  return 'tcp';
}

/**
 * nghttp2 reads a real socket straight from its handle and would miss the bytes sniffing put
 * back; such a socket is served through an in-memory pair so those bytes come first.
 */
function bridged(stream: Duplex): Duplex {
  if ((stream as { _handle?: unknown })._handle == null) return stream;
  const [near, far] = duplexPair();
  stream.pipe(near);
  near.pipe(stream);
  const kill = () => {
    stream.destroy();
    near.destroy();
  };
  stream.once('close', kill);
  near.once('close', kill);
  stream.on('error', kill);
  near.on('error', kill);
  return far;
}

export interface DispatcherOptions {
  limits?: FrontLimits;
  /** Wait for a client's first bytes before treating an undeclared port as TCP, ms (default 1,000). */
  sniffTimeoutMs?: number;
  metrics?: WaypointMetrics;
}

export class StreamDispatcher {
  private readonly http1: Http1Front;
  private readonly http2: Http2Front;
  private readonly sniffTimeoutMs: number;
  private readonly headersTimeoutMs: number;

  constructor(private readonly proxy: WaypointProxy, log: Logger, o: DispatcherOptions = {}) {
    const limits = o.limits ?? {};
    this.http1 = new Http1Front(proxy, limits, log, o.metrics);
    this.http2 = new Http2Front(proxy, limits, log, o.metrics);
    this.sniffTimeoutMs = o.sniffTimeoutMs ?? 1_000;
    this.headersTimeoutMs = limits.headersTimeoutMs ?? 10_000;
  }

  /** Serves one client stream to `down.destinationIp:destinationPort`. */
  serve(stream: Duplex, down: DownstreamInfo): void {
    const b = this.proxy.currentConfig.bindingByAddress(down.destinationIp, down.destinationPort);
    const port = b?.service.ports.find((p) => p.port === down.destinationPort);
    const declared = port === undefined ? 'detect' : portProtocol(port);
    // A TCPRoute or TLSRoute on the port makes it TCP, whatever the port's name says.
    if (declared === 'tcp' || (b?.l4Routes !== undefined && l4RoutesFor(b.l4Routes, down.destinationPort).length > 0)) {
      void this.proxy.handleTcp(stream, down);
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    let decided = false;
    const decide = (p: StreamProtocol) => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.pause();
      if (buf.length > 0) stream.unshift(buf);
      const chosen: StreamProtocol = p === 'tcp' && declared !== 'detect' ? 'http1' : p;
      if (chosen === 'http2') this.http2.serve(bridged(stream), down);
      else if (chosen === 'http1') this.http1.serve(stream, down);
      else void this.proxy.handleTcp(stream, down);
      stream.resume();
    };
    const onData = (c: Buffer) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      const p = sniffProtocol(buf);
      if (p !== undefined) decide(p);
    };
    const onEnd = () => decide(declared === 'detect' ? 'tcp' : 'http1');
    const timer = setTimeout(() => decide('tcp'), declared === 'detect' ? this.sniffTimeoutMs : this.headersTimeoutMs);
    timer.unref();
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', () => clearTimeout(timer));
    stream.once('close', () => clearTimeout(timer));
  }

  close(): void {
    this.http1.close();
    this.http2.close();
  }
}
