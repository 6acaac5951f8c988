/**
 * The HTTP/2 front end (h2c prior knowledge inside HBONE, as a client that knows the port speaks
 * HTTP/2 or gRPC sends it), feeding requests to the proxy through node:http2's compatibility API.
 * gRPC works end to end: trailers are relayed, and the proxy's local replies are gRPC statuses.
 *
 * Invariants: header lists over `maxHeaderBytes` are refused by nghttp2 (the stream is reset,
 * the session survives); a session that sends no complete request within `headersTimeoutMs` of
 * opening, or idles past `keepAliveTimeoutMs`, is closed; protocol errors tear down only their own
 * session.
 */
import { createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { FrontLimits } from './http1-front.js';
import type { WaypointMetrics } from './metrics.js';
import type { DownstreamInfo, WaypointProxy } from './proxy.js';

export class Http2Front {
  private readonly server: Http2Server;
  private readonly info = new WeakMap<object, DownstreamInfo>();
  private readonly sessions = new Set<ServerHttp2Session>();
  /** Info of the stream being handed over (the 'session' event fires synchronously). */
  private handing: DownstreamInfo | undefined;
  private readonly sessionInfo = new WeakMap<ServerHttp2Session, DownstreamInfo>();

  constructor(proxy: WaypointProxy, private readonly limits: FrontLimits, private readonly log: Logger, metrics: WaypointMetrics | undefined) {
    this.server = createServer({
      maxSessionMemory: 32,
      settings: { maxHeaderListSize: limits.maxHeaderBytes ?? 16_384, enablePush: false, maxConcurrentStreams: 1000 },
    });
    this.server.on('session', (session: ServerHttp2Session) => {
      const down = this.handing;
      if (down === undefined) {
        session.destroy();
        return;
      }
      this.sessionInfo.set(session, down);
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', (err: Error & { code?: string }) => {
        metrics?.refused.inc({ reason: 'h2_protocol' });
        this.log.warn({ reason: err.code ?? err.message, source: down.peerIdentity ?? down.sourceIp }, 'HTTP/2 session error');
      });
      session.on('frameError', () => metrics?.refused.inc({ reason: 'h2_frame' }));
      // A session that never sends a request (slowloris) or idles is closed.
      const first = setTimeout(() => session.destroy(), limits.headersTimeoutMs ?? 10_000);
      first.unref();
      session.once('stream', () => clearTimeout(first));
      session.once('close', () => clearTimeout(first));
      session.setTimeout(limits.keepAliveTimeoutMs ?? 60_000, () => session.close());
    });
    this.server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      const down = this.sessionInfo.get(req.stream.session as ServerHttp2Session);
      if (down === undefined) {
        res.stream.close();
        return;
      }
      req.stream.on('error', () => {});
      void proxy.handle(req, res, down);
    });
  }

  /** Serves HTTP/2 on `stream` (which must not have been read from). */
  serve(stream: Duplex, down: DownstreamInfo): void {
    this.info.set(stream, down);
    this.handing = down;
    try {
      this.server.emit('connection', stream);
    } finally {
      this.handing = undefined;
    }
  }

  get connections(): number {
    return this.sessions.size;
  }

  close(): void {
    this.server.close();
    for (const s of this.sessions) s.destroy();
    void this.limits;
  }
}
