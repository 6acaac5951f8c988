/**
 * The HTTP/1.1 front end: the waypoint's own HTTP/1.1 codec (h1-server.ts) on any byte stream
 * handed to it (an HBONE CONNECT stream, or a plain socket), with keep-alive, chunked bodies and
 * Upgrades (spliced once the upstream switched protocols), feeding requests to the proxy.
 *
 * Invariants (one bad client never affects others):
 * - Malformed requests are answered 400 and the connection closed; headers over `maxHeaderBytes`
 *   get 431; a client that does not finish its headers within `headersTimeoutMs` (slowloris) gets
 *   408 and is closed. Each refusal is logged and counted by reason, and touches nothing but its
 *   own connection.
 * - Connections idle between requests close after `keepAliveTimeoutMs`.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { H1Server, type H1ServerLimits } from './h1-server.js';
import type { WaypointMetrics } from './metrics.js';
import type { DownstreamInfo, WaypointProxy } from './proxy.js';

/** Request limits of the front ends (HTTP/2 uses maxHeaderBytes, headersTimeoutMs and keepAliveTimeoutMs). */
export type FrontLimits = H1ServerLimits;

export class Http1Front {
  private readonly server: H1Server;
  private readonly info = new WeakMap<object, DownstreamInfo>();

  constructor(proxy: WaypointProxy, limits: FrontLimits, private readonly log: Logger, metrics: WaypointMetrics | undefined) {
    this.server = new H1Server({
      request: (req, res) => {
        const down = this.info.get(req.socket);
        if (down === undefined) {
          res.destroy();
          return;
        }
        proxy.handle(req, res, down).catch((err: unknown) => {
          metrics?.internalErrors.inc({ where: 'request' });
          this.log.error({ err: { message: (err as Error).message } }, 'request handler failed');
          res.destroy();
        });
      },
      refused: (stream, reason, status, detail) => {
        const down = this.info.get(stream);
        metrics?.refused.inc({ reason });
        if (status === 500) metrics?.internalErrors.inc({ where: 'http1_codec' });
        this.log.warn({ reason, status, source: down?.peerIdentity ?? down?.sourceIp, message: detail }, 'refused HTTP/1.1 client');
      },
    }, limits);
  }

  /** Serves HTTP/1.1 on `stream` (which must not have been read from). */
  serve(stream: Duplex, down: DownstreamInfo): void {
    this.info.set(stream, down);
    this.server.serve(stream);
  }

  /** Open connections. */
  get connections(): number {
    return this.server.connections;
  }

  close(): void {
    this.server.close();
  }
}
