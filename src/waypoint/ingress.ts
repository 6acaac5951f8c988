/**
 * The ingress gateway (`ambit waypoint --ingress`): the waypoint engine behind plain listening
 * sockets for clients outside the mesh. Each listener port of the Gateway is a TCP server
 * (HTTPS: TLS terminated here with the listener's certificate, picked by SNI, ALPN h2 and
 * http/1.1); each connection is served by the waypoint's HTTP/1.1 and HTTP/2 fronts, routed by
 * Host and path with the routes bound to the Gateway, authorized with the client's address, and
 * forwarded to endpoints over HBONE with the gateway's own SPIFFE identity, so destination
 * agents apply their L4 policy to the gateway.
 *
 * Invariants:
 * - The listening ports follow the configuration: a port the view adds is opened, one it drops
 *   is closed; a changed certificate replaces the secure context without closing the port
 *   (connections in flight keep the one they started with).
 * - Clients are never trusted for an identity: requests carry no peer identity, and the client
 *   address is the TCP peer's.
 * - Certificates and keys are never logged; logs name the Secret.
 * - `close()` stops accepting, lets open connections finish for the grace period, then closes
 *   upstream sessions.
 */
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type SecureContext, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CredentialSource } from '../identity/manager.js';
import { HbonePool } from '../tunnel/pool.js';
import { childLogger } from '../util/log.js';
import { StreamDispatcher } from './dispatch.js';
import type { FrontLimits } from './http1-front.js';
import type { IngressCertificate, IngressConfig, IngressPortConfig } from './ingress-config.js';
import { guardProcess } from './last-resort.js';
import { waypointMetrics } from './metrics.js';
import { WaypointProxy, type WaypointProxyOptions } from './proxy.js';
import { HboneConnector, type Connector } from './upstream.js';
import { WaypointError } from './errors.js';

export interface IngressOptions extends Omit<WaypointProxyOptions, 'connector' | 'logger' | 'name' | 'config'> {
  /** `namespace/name` of the ingress Gateway. */
  name: string;
  /** SPIFFE ID the ingress presents to endpoints. */
  identity: string;
  credentials: CredentialSource;
  /** Address the listeners bind (default 0.0.0.0); also the destination address of the bindings. */
  host?: string;
  /**
   * The local port for a listener port (default: the listener port itself); tests map to 0 and
   * read `address(port)`.
   */
  localPort?: (listenerPort: number) => number;
  /** HBONE port of endpoints (default 15008). */
  endpointHbonePort?: number;
  /** Endpoint connector (default HBONE for enrolled endpoints, TCP for others). */
  connector?: Connector;
  limits?: FrontLimits;
  /** Grace period for open connections on close, ms (default 5,000). */
  drainMs?: number;
  /** TLS key-exchange groups offered on HBONE (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  logger?: Logger;
  registry?: Registry;
}

interface OpenPort {
  readonly server: Server;
  readonly protocol: 'HTTP' | 'HTTPS';
  /** HTTPS: contexts by SNI host (null: the default), most specific first. */
  contexts: { hostname: string | null; context: SecureContext }[];
  fingerprint: string;
  readonly sockets: Set<Socket>;
}

function sniMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

function certFingerprint(certs: readonly IngressCertificate[]): string {
  return certs.map((c) => `${c.hostname ?? ''}\u0000${c.certPem}\u0000${c.keyPem}`).join('\u0001');
}

export class Ingress {
  readonly proxy: WaypointProxy;
  private readonly dispatcher: StreamDispatcher;
  private readonly log: Logger;
  private readonly host: string;
  private readonly open = new Map<number, OpenPort>();
  private pool: HbonePool | undefined;
  private readonly unguard: () => void;
  private closed = false;

  private constructor(private readonly o: IngressOptions, connector: Connector, initial: IngressConfig) {
    this.log = o.logger ?? childLogger('ingress');
    this.host = o.host ?? '0.0.0.0';
    const metrics = o.registry === undefined ? undefined : waypointMetrics(o.registry);
    this.unguard = guardProcess(this.log.child({ component: 'ingress.guard' }), metrics?.internalErrors);
    this.proxy = new WaypointProxy({ ...o, config: initial.waypoint, connector, name: o.name, logger: this.log.child({ component: 'ingress.proxy' }) });
    this.dispatcher = new StreamDispatcher(this.proxy, this.log, { ...(o.limits !== undefined ? { limits: o.limits } : {}), ...(metrics !== undefined ? { metrics } : {}) });
  }

  /** Builds the ingress and opens the listeners of `config`. */
  static async start(o: IngressOptions, config: IngressConfig): Promise<Ingress> {
    const groups = o.tlsGroups !== undefined ? { tlsGroups: o.tlsGroups } : {};
    const pool = o.connector === undefined ? new HbonePool({ credentials: o.credentials, ...groups, ...(o.registry !== undefined ? { registry: o.registry } : {}) }) : undefined;
    const connector = o.connector ?? new HboneConnector({ pool: pool as HbonePool, identity: o.identity, ...(o.endpointHbonePort !== undefined ? { hbonePort: o.endpointHbonePort } : {}) });
    const ing = new Ingress(o, connector, config);
    ing.pool = pool;
    await ing.setConfig(config);
    return ing;
  }

  /** The bound address of a listener port. */
  address(listenerPort: number): AddressInfo {
    const p = this.open.get(listenerPort);
    if (p === undefined) throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `ingress ${this.o.name} has no listener on port ${listenerPort}`);
    return p.server.address() as AddressInfo;
  }

  /** The listener ports open now. */
  ports(): number[] {
    return [...this.open.keys()].sort((a, b) => a - b);
  }

  /**
   * Applies a configuration: routes and policy at once, then the listening ports. A port that
   * cannot be opened (in use, no certificate) is logged and left closed; the others serve.
   */
  async setConfig(config: IngressConfig): Promise<void> {
    if (this.closed) return;
    this.proxy.setConfig(config.waypoint);
    const wanted = new Map(config.ports.map((p) => [p.port, p]));
    for (const [port, p] of this.open) {
      const w = wanted.get(port);
      if (w === undefined || w.protocol !== p.protocol) {
        this.open.delete(port);
        await this.stop(p, 0);
        this.log.info({ ingress: this.o.name, port }, 'ingress listener closed');
      }
    }
    for (const p of config.ports) {
      const cur = this.open.get(p.port);
      if (cur !== undefined) {
        if (p.protocol === 'HTTPS' && cur.fingerprint !== certFingerprint(p.certificates)) this.setCertificates(p.port, cur, p);
        continue;
      }
      try {
        await this.listen(p);
      } catch (err) {
        this.log.error({ ingress: this.o.name, port: p.port, reason: (err as Error).message }, 'ingress listener could not be opened');
      }
    }
  }

  private setCertificates(port: number, open: OpenPort, p: IngressPortConfig): void {
    open.contexts = p.certificates.map((c) => ({ hostname: c.hostname, context: createSecureContext({ cert: c.certPem, key: c.keyPem }) }));
    open.fingerprint = certFingerprint(p.certificates);
    const dflt = p.certificates.find((c) => c.hostname === null) ?? p.certificates[0];
    if (dflt !== undefined) (open.server as ReturnType<typeof createTlsServer>).setSecureContext({ cert: dflt.certPem, key: dflt.keyPem });
    this.log.info({ ingress: this.o.name, port, certificates: p.certificates.map((c) => ({ hostname: c.hostname ?? '*', secret: c.secret })) }, 'ingress certificates loaded');
  }

  private async listen(p: IngressPortConfig): Promise<void> {
    const sockets = new Set<Socket>();
    let server: Server;
    let entry: OpenPort;
    if (p.protocol === 'HTTPS') {
      const dflt = p.certificates.find((c) => c.hostname === null) ?? p.certificates[0];
      if (dflt === undefined) throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `HTTPS port ${p.port} has no certificate: none of its certificateRefs names an existing kubernetes.io/tls Secret`);
      const tlsServer = createTlsServer({
        cert: dflt.certPem,
        key: dflt.keyPem,
        ALPNProtocols: ['h2', 'http/1.1'],
        SNICallback: (servername, cb) => {
          const host = servername.toLowerCase();
          const hit = entry.contexts.find((c) => c.hostname !== null && sniMatches(c.hostname, host)) ?? entry.contexts.find((c) => c.hostname === null) ?? entry.contexts[0];
          cb(null, hit?.context);
        },
      });
      tlsServer.on('secureConnection', (s: TLSSocket) => this.accept(s, p.port));
      tlsServer.on('tlsClientError', (err, s) => {
        this.log.debug({ ingress: this.o.name, port: p.port, client: s.remoteAddress, reason: err.message }, 'TLS handshake with a client failed');
      });
      tlsServer.on('connection', (s: Socket) => this.track(sockets, s));
      server = tlsServer;
    } else {
      server = createTcpServer((s) => {
        this.track(sockets, s);
        this.accept(s, p.port);
      });
    }
    entry = { server, protocol: p.protocol, contexts: [], fingerprint: '', sockets };
    if (p.protocol === 'HTTPS') this.setCertificates(p.port, entry, p);
    const local = this.o.localPort?.(p.port) ?? p.port;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: local, host: this.host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ ingress: this.o.name, port: p.port, reason: err.message }, 'ingress listener error'));
    this.open.set(p.port, entry);
    this.log.info({ ingress: this.o.name, port: p.port, protocol: p.protocol, address: server.address() }, 'ingress listening');
  }

  private track(sockets: Set<Socket>, s: Socket): void {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  }

  private accept(s: Socket, port: number): void {
    s.on('error', () => s.destroy());
    const sourceIp = (s.remoteAddress ?? '0.0.0.0').replace(/^::ffff:/, '');
    this.dispatcher.serve(s, { peerIdentity: undefined, sourceIp, sourcePort: s.remotePort ?? 0, destinationIp: this.host, destinationPort: port });
  }

  private async stop(p: OpenPort, graceMs: number): Promise<void> {
    const done = new Promise<void>((r) => p.server.close(() => r()));
    if (graceMs > 0 && p.sockets.size > 0) {
      await Promise.race([done, new Promise<void>((r) => setTimeout(r, graceMs).unref())]);
    }
    for (const s of p.sockets) s.destroy();
    await done;
  }

  /** Stops listening, lets open connections finish for `drainMs`, and closes upstream sessions. */
  async close(): Promise<void> {
    this.closed = true;
    const ports = [...this.open.values()];
    this.open.clear();
    await Promise.all(ports.map((p) => this.stop(p, this.o.drainMs ?? 5_000)));
    this.dispatcher.close();
    await this.proxy.close();
    await this.pool?.close();
    this.unguard();
  }
}
