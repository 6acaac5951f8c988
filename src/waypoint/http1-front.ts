/**
 * The HTTP/1.1 front end: an HTTP server (node:http) that runs on any byte stream handed to it
 * (an HBONE CONNECT stream, or a plain socket), with keep-alive, chunked bodies and Upgrade
 * pass-through, feeding requests to the proxy.
 *
 * Invariants (one bad client never affects others):
 * - Malformed requests are answered 400 and the connection closed; headers over `maxHeaderBytes`
 *   get 431; a client that does not finish its headers within `headersTimeoutMs` (slowloris) gets
 *   408 and is closed. Each refusal is logged and counted by reason, and touches nothing but its
 *   own connection.
 * - Connections idle between requests close after `keepAliveTimeoutMs`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WaypointMetrics } from './metrics.js';
import type { DownstreamInfo, WaypointProxy } from './proxy.js';

export interface FrontLimits {
  /** Largest request head accepted, bytes (default 16,384; larger gets 431). */
  maxHeaderBytes?: number;
  /** Time to receive a complete request head, ms (default 10,000; slower gets 408). */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, ms (default 300,000; 0 disables). */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections close after this, ms (default 60,000). */
  keepAliveTimeoutMs?: number;
  /** How often header/request deadlines are checked, ms (default 1,000). */
  checkIntervalMs?: number;
}

export class Http1Front {
  private readonly server: Server;
  private readonly info = new WeakMap<object, DownstreamInfo>();
  private readonly open = new Set<Duplex>();

  constructor(proxy: WaypointProxy, limits: FrontLimits, private readonly log: Logger, metrics: WaypointMetrics | undefined) {
    this.server = createServer({
      maxHeaderSize: limits.maxHeaderBytes ?? 16_384,
      headersTimeout: limits.headersTimeoutMs ?? 10_000,
      requestTimeout: limits.requestTimeoutMs ?? 300_000,
      keepAliveTimeout: limits.keepAliveTimeoutMs ?? 60_000,
      connectionsCheckingInterval: limits.checkIntervalMs ?? 1_000,
      noDelay: true,
    } as Parameters<typeof createServer>[0]);
    // The server never listens (streams are handed to it), so start the periodic header and
    // request deadline checks that node:http otherwise starts on 'listening'.
    this.server.emit('listening');
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const down = this.info.get(req.socket);
      if (down === undefined) {
        res.destroy();
        return;
      }
      void proxy.handle(req, res, down);
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const down = this.info.get(req.socket);
      if (down === undefined) {
        socket.destroy();
        return;
      }
      void proxy.handleUpgrade(req, socket, head, down);
    });
    this.server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      const code = err.code ?? '';
      const [status, reason] =
        code === 'HPE_HEADER_OVERFLOW' ? [431, 'header_overflow'] :
        code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'HPE_HEADER_TIMEOUT' ? [408, 'slow_client'] :
        code === 'ECONNRESET' ? [0, 'reset'] :
        [400, 'malformed'];
      const down = this.info.get(socket);
      if (status !== 0) {
        metrics?.refused.inc({ reason });
        this.log.warn({ reason, code, source: down?.peerIdentity ?? down?.sourceIp, message: err.message }, 'refused HTTP/1.1 client');
      }
      const text = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
      if (status !== 0 && socket.writable && !(socket as { _httpMessage?: ServerResponse })._httpMessage?.headersSent) {
        socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      }
      socket.destroy();
    });
  }

  /** Serves HTTP/1.1 on `stream` (which must not have been read from). */
  serve(stream: Duplex, down: DownstreamInfo): void {
    this.info.set(stream, down);
    this.open.add(stream);
    stream.once('close', () => this.open.delete(stream));
    this.server.emit('connection', stream);
  }

  /** Open connections. */
  get connections(): number {
    return this.open.size;
  }

  close(): void {
    this.server.close();
    for (const s of this.open) s.destroy();
    this.server.closeAllConnections();
  }
}
