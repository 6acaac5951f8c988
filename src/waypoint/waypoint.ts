/**
 * The waypoint process core: an HBONE server (the waypoint's own identity) whose CONNECT streams
 * are served, by the bound service port's protocol, as HTTP/1.1, HTTP/2 (h2c) or TCP; an HBONE
 * client pool to reach endpoints with the same identity; and the L7 proxy between them.
 *
 * Invariants:
 * - Every CONNECT must name a service VIP:port bound to this waypoint; any other authority is
 *   refused at the tunnel (401), before a byte of HTTP is read.
 * - Protocol: declared by the service port, else sniffed (dispatch.ts).
 * - `close()` stops accepting, lets open streams finish for the grace period, then closes
 *   upstream sessions; nothing is left listening or pooled.
 */
import type { AddressInfo, ListenOptions } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CredentialSource } from '../identity/manager.js';
import { HbonePool } from '../tunnel/pool.js';
import { HboneServer, type ConnectContext } from '../tunnel/server.js';
import { childLogger } from '../util/log.js';
import { guardProcess } from './last-resort.js';
import type { WaypointConfig } from './config.js';
import { StreamDispatcher } from './dispatch.js';
import { duplexPair, setRemote } from './duplex-pair.js';
import type { FrontLimits } from './http1-front.js';
import { waypointMetrics } from './metrics.js';
import { WaypointProxy, type DownstreamInfo, type WaypointProxyOptions } from './proxy.js';
import { TlsOriginatingConnector } from './tls-origination.js';
import { HboneConnector, type Connector } from './upstream.js';

export interface WaypointOptions extends Omit<WaypointProxyOptions, 'connector' | 'logger' | 'name'> {
  /** `namespace/name` of the waypoint Gateway. */
  name: string;
  /** SPIFFE ID the waypoint presents to clients and endpoints. */
  identity: string;
  credentials: CredentialSource;
  /** Where the HBONE server listens (default `{ port: 15008, host: '0.0.0.0' }`). */
  listen?: ListenOptions;
  /** HBONE port of endpoints (default 15008). */
  endpointHbonePort?: number;
  /** Endpoint connector (default HBONE for enrolled endpoints, TCP for others). */
  connector?: Connector;
  /** Request limits of the front ends (defaults in http1-front.ts). */
  limits?: FrontLimits;
  /** Wait for a client's first bytes before treating an undeclared port as TCP, ms (default 1,000). */
  sniffTimeoutMs?: number;
  /** Grace period for open streams on close, ms (default 5,000). */
  drainMs?: number;
  /** TLS key-exchange groups offered on HBONE, both ways, as parseTlsGroups returns them (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  logger?: Logger;
  registry?: Registry;
}

export class Waypoint {
  readonly proxy: WaypointProxy;
  private readonly dispatcher: StreamDispatcher;
  private readonly log: Logger;
  private server: HboneServer | undefined;
  private pool: HbonePool | undefined;
  private readonly unguard: () => void;

  private constructor(private readonly o: WaypointOptions, connector: Connector) {
    this.log = o.logger ?? childLogger('waypoint');
    const metrics = o.registry === undefined ? undefined : waypointMetrics(o.registry);
    this.unguard = guardProcess(this.log.child({ component: 'waypoint.guard' }), metrics?.internalErrors);
    this.proxy = new WaypointProxy({ ...o, connector, name: o.name, logger: this.log.child({ component: 'waypoint.proxy' }) });
    this.dispatcher = new StreamDispatcher(this.proxy, this.log, {
      ...(o.limits !== undefined ? { limits: o.limits } : {}),
      ...(o.sniffTimeoutMs !== undefined ? { sniffTimeoutMs: o.sniffTimeoutMs } : {}),
      ...(metrics !== undefined ? { metrics } : {}),
    });
  }

  /** Builds the waypoint and starts its HBONE listener. */
  static async start(o: WaypointOptions): Promise<Waypoint> {
    const groups = o.tlsGroups !== undefined ? { tlsGroups: o.tlsGroups } : {};
    const pool = o.connector === undefined ? new HbonePool({ credentials: o.credentials, ...groups, ...(o.registry !== undefined ? { registry: o.registry } : {}) }) : undefined;
    // Endpoints whose DestinationRule asks for TLS get it originated over the inner connector's stream.
    const connector = new TlsOriginatingConnector(o.connector ?? new HboneConnector({ pool: pool as HbonePool, identity: o.identity, ...(o.endpointHbonePort !== undefined ? { hbonePort: o.endpointHbonePort } : {}) }));
    const w = new Waypoint(o, connector);
    w.pool = pool;
    w.server = await HboneServer.create({
      identity: o.identity,
      credentials: o.credentials,
      authorize: (ctx) => w.authorizeConnect(ctx),
      connectUpstream: async (ctx) => w.acceptStream(ctx),
      logger: w.log.child({ component: 'waypoint.hbone' }),
      ...groups,
      ...(o.registry !== undefined ? { registry: o.registry } : {}),
    });
    await w.server.listen(o.listen ?? { port: 15008, host: '0.0.0.0' });
    w.log.info({ waypoint: o.name, identity: o.identity, address: w.server.address() }, 'waypoint listening for HBONE');
    return w;
  }

  /** The HBONE listener's address. */
  address(): AddressInfo {
    if (this.server === undefined) throw new Error('waypoint is not listening');
    return this.server.address();
  }

  setConfig(config: WaypointConfig): void {
    this.proxy.setConfig(config);
  }

  private authorizeConnect(ctx: ConnectContext): { allow: true } | { allow: false; reason: string } {
    const b = this.proxy.currentConfig.bindingByAddress(ctx.authority.host, ctx.authority.port);
    if (b === undefined) return { allow: false, reason: `${ctx.authority.host}:${ctx.authority.port} is not a service port bound to waypoint ${this.o.name}` };
    return { allow: true };
  }

  private acceptStream(ctx: ConnectContext): Duplex {
    const [outer, inner] = duplexPair();
    // The client address the peer forwards is believed only when the pod that has it runs as the
    // peer's verified identity; otherwise a peer could borrow another pod's address for ipBlocks
    // policy and for what the endpoint is told. Unbelieved, the source is the tunnel peer.
    const claimed = ctx.forwardedFor;
    const believed = claimed !== undefined && this.proxy.currentConfig.sourceWorkload(claimed.host, ctx.peerIdentity) !== undefined ? claimed : undefined;
    const src = believed ?? { host: ctx.remoteAddress, port: ctx.remotePort };
    setRemote(inner, src.host, src.port);
    const down: DownstreamInfo = { peerIdentity: ctx.peerIdentity, sourceIp: src.host, sourcePort: src.port, destinationIp: ctx.authority.host, destinationPort: ctx.authority.port };
    this.serveConnection(inner, down);
    return outer;
  }

  /** Serves one client byte stream (HBONE streams; usable for any Duplex). */
  serveConnection(stream: Duplex, down: DownstreamInfo): void {
    this.dispatcher.serve(stream, down);
  }

  /** Stops listening, drains open streams for `drainMs`, and closes upstream sessions. */
  async close(): Promise<void> {
    await this.server?.close(this.o.drainMs ?? 5_000);
    this.dispatcher.close();
    await this.proxy.close();
    await this.pool?.close();
    this.unguard();
  }
}
