/**
 * The waypoint's side toward endpoints: how a byte stream to an endpoint is opened (HBONE with
 * the waypoint's own identity for enrolled endpoints, plain TCP for endpoints outside the mesh),
 * and the HTTP/1.1 and HTTP/2 clients that run over those streams.
 *
 * Invariants:
 * - An enrolled endpoint is only ever reached over HBONE, its server proving the endpoint
 *   workload's SPIFFE identity; plaintext is used only for endpoints the mesh does not capture.
 * - HTTP/1.1: one keep-alive connection pool per endpoint (a CONNECT stream carries one HTTP/1.1
 *   connection and is reused across requests); no request ever shares a connection with another
 *   in flight. HTTP/2: one session per endpoint, multiplexed, replaced when it closes.
 * - Failures are classified for retries and outlier detection: `connect-failure` (the stream could
 *   not be opened), `refused-stream` (HTTP/2 REFUSED_STREAM), `reset` (anything after that).
 *   A request that fails on a reused keep-alive connection before any response byte is retried once
 *   on a fresh connection, transparently (the server closed an idle connection: a race, not an
 *   endpoint failure).
 */
import { Agent, request as httpRequest, type ClientRequest, type ClientRequestArgs, type IncomingMessage, type OutgoingHttpHeaders, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { HbonePool } from '../tunnel/pool.js';
import { formatAuthority } from '../tunnel/authority.js';
import { WaypointError } from './errors.js';
import type { AttemptOutcome } from './retry.js';

/** An endpoint to reach. */
export interface UpstreamTarget {
  /** `ip:port`, unique per endpoint. */
  readonly key: string;
  readonly ip: string;
  /** Target (container) port. */
  readonly port: number;
  /** SPIFFE ID of the endpoint's workload when it is in the mesh (reach it over HBONE). */
  readonly identity: string | undefined;
}

export interface ConnectMeta {
  /** Original client, sent as HBONE `forwarded` (default none). */
  forwardedFor?: { host: string; port: number };
  traceparent?: string;
}

/** Opens byte streams to endpoints. */
export interface Connector {
  connect(target: UpstreamTarget, meta: ConnectMeta): Promise<Duplex>;
  /** Releases pooled sessions (default: nothing to release). */
  close?(): Promise<void>;
}

/** Plain TCP, for endpoints outside the mesh (and the plaintext benchmark). */
export class TcpConnector implements Connector {
  /** @param connectTimeoutMs connect deadline (default 5,000) */
  constructor(private readonly connectTimeoutMs = 5_000) {}

  connect(target: UpstreamTarget): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: target.ip, port: target.port, noDelay: true });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new WaypointError('AMBIT_ERR_WAYPOINT_CONNECT', `connect to ${target.key} timed out after ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(sock);
      });
      sock.once('error', (err: Error & { code?: string }) => {
        clearTimeout(timer);
        reject(new WaypointError('AMBIT_ERR_WAYPOINT_CONNECT', `connect to ${target.key} failed: ${err.code ?? err.message}`, { cause: err }));
      });
    });
  }
}

export interface HboneConnectorOptions {
  pool: HbonePool;
  /** The waypoint's own SPIFFE ID (its client certificate toward endpoints). */
  identity: string;
  /** HBONE port of endpoints (default 15008). */
  hbonePort?: number;
  /** Reaches endpoints outside the mesh (default plain TCP). */
  plaintext?: Connector;
}

/** HBONE for enrolled endpoints, `plaintext` for the others. */
export class HboneConnector implements Connector {
  private readonly plaintext: Connector;
  constructor(private readonly o: HboneConnectorOptions) {
    this.plaintext = o.plaintext ?? new TcpConnector();
  }

  async connect(target: UpstreamTarget, meta: ConnectMeta): Promise<Duplex> {
    if (target.identity === undefined) return this.plaintext.connect(target, meta);
    try {
      return await this.o.pool.connect({
        source: this.o.identity,
        address: { host: target.ip, port: this.o.hbonePort ?? 15008 },
        destinationIdentity: target.identity,
        authority: formatAuthority(target.ip, target.port),
        ...(meta.forwardedFor !== undefined ? { forwardedFor: meta.forwardedFor } : {}),
        ...(meta.traceparent !== undefined ? { traceparent: meta.traceparent } : {}),
      });
    } catch (err) {
      throw new WaypointError('AMBIT_ERR_WAYPOINT_CONNECT', `HBONE connect to ${target.key} (${target.identity}) failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Lower-case names, no pseudo or hop-by-hop headers. */
  readonly headers: OutgoingHttpHeaders;
  readonly protocol: 'http1' | 'http2';
  /** Writes the request body to the given stream (and ends it); absent: no body. */
  readonly writeBody: ((dst: import('node:stream').Writable) => boolean) | undefined;
  readonly meta: ConnectMeta;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** Trailers, available once `body` ended. */
  trailers(): Record<string, string | string[] | undefined> | undefined;
  /** Abandons the response (the connection is not reused). */
  abort(): void;
  /** The response was HEADERS with END_STREAM (gRPC trailers-only), HTTP/2 only. */
  readonly endAfterHeaders: boolean;
}

/** A failed attempt: what it came to, for retries and outlier detection. */
export class AttemptError extends Error {
  constructor(readonly outcome: Exclude<AttemptOutcome, { kind: 'response' }>, message: string) {
    super(message);
    this.name = 'AttemptError';
  }
}

type Socketish = Duplex & { setKeepAlive?: unknown; setNoDelay?: unknown; ref?: unknown; unref?: unknown };

/** Gives a generic Duplex the few net.Socket methods http.Agent calls on pooled sockets. */
function socketLike(d: Duplex): Duplex {
  const s = d as Socketish;
  if (typeof s.setKeepAlive !== 'function') s.setKeepAlive = () => s;
  if (typeof s.setNoDelay !== 'function') s.setNoDelay = () => s;
  if (typeof s.ref !== 'function') s.ref = () => s;
  if (typeof s.unref !== 'function') s.unref = () => s;
  return d;
}

class EndpointAgent extends Agent {
  constructor(private readonly connector: Connector, private readonly target: UpstreamTarget, idleMs: number) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, timeout: idleMs, scheduling: 'lifo' });
  }

  override createConnection(options: ClientRequestArgs, cb?: (err: Error | null, socket: Duplex) => void): undefined {
    this.connector.connect(this.target, (options as { meta?: ConnectMeta }).meta ?? {}).then(
      (s) => cb?.(null, socketLike(s)),
      (err: Error) => cb?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

export interface UpstreamClientsOptions {
  connector: Connector;
  /** Idle keep-alive connections are closed after this many ms (default 60,000). */
  idleTimeoutMs?: number;
}

/** HTTP clients to every endpoint, keyed by endpoint. */
export class UpstreamClients {
  private readonly agents = new Map<string, EndpointAgent>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private closed = false;

  constructor(private readonly o: UpstreamClientsOptions) {}

  /** Sends one request; resolves at response headers; rejects with AttemptError. */
  send(target: UpstreamTarget, req: UpstreamRequest): Promise<UpstreamResponse> {
    if (this.closed) return Promise.reject(new AttemptError({ kind: 'connect-failure' }, 'waypoint is closing'));
    return req.protocol === 'http2' ? this.sendH2(target, req) : this.sendH1(target, req, true);
  }

  private agent(target: UpstreamTarget): EndpointAgent {
    let a = this.agents.get(target.key + (target.identity ?? ''));
    if (a === undefined) {
      a = new EndpointAgent(this.o.connector, target, this.o.idleTimeoutMs ?? 60_000);
      this.agents.set(target.key + (target.identity ?? ''), a);
    }
    return a;
  }

  private sendH1(target: UpstreamTarget, req: UpstreamRequest, mayRetryStale: boolean): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      let cr: ClientRequest;
      const headers: OutgoingHttpHeaders = { ...req.headers, host: req.authority };
      try {
        cr = httpRequest({ agent: this.agent(target), method: req.method, path: req.path, headers, host: target.ip, port: target.port, meta: req.meta } as ClientRequestArgs);
      } catch (err) {
        reject(new AttemptError({ kind: 'reset' }, `invalid upstream request: ${(err as Error).message}`));
        return;
      }
      let settled = false;
      cr.on('response', (res: IncomingMessage) => {
        settled = true;
        resolve({
          status: res.statusCode ?? 502,
          headers: res.headers,
          body: res,
          trailers: () => res.trailers,
          endAfterHeaders: false,
          abort: () => {
            cr.destroy();
            res.destroy();
          },
        });
      });
      cr.on('error', (err: Error & { code?: string }) => {
        if (settled) return;
        settled = true;
        if (err instanceof WaypointError && err.code === 'AMBIT_ERR_WAYPOINT_CONNECT') {
          reject(new AttemptError({ kind: 'connect-failure' }, err.message));
        } else if (cr.reusedSocket && mayRetryStale && (req.writeBody === undefined || req.method === 'GET' || req.method === 'HEAD')) {
          this.sendH1(target, req, false).then(resolve, reject);
        } else {
          reject(new AttemptError({ kind: 'reset' }, `upstream ${target.key} reset the request: ${err.code ?? err.message}`));
        }
      });
      if (req.writeBody === undefined) cr.end();
      else if (!req.writeBody(cr)) {
        settled = true;
        cr.destroy();
        reject(new AttemptError({ kind: 'reset' }, 'request body can no longer be replayed'));
      }
    });
  }

  private session(target: UpstreamTarget, meta: ConnectMeta): Promise<ClientHttp2Session> {
    const key = target.key + (target.identity ?? '');
    let p = this.sessions.get(key);
    if (p === undefined) {
      p = this.o.connector.connect(target, meta).then(
        (sock) => {
          const s = h2connect(`http://${formatAuthority(target.ip, target.port)}`, { createConnection: () => sock });
          const drop = () => {
            if (this.sessions.get(key) === p) this.sessions.delete(key);
          };
          s.on('close', drop);
          s.on('goaway', drop);
          s.on('error', drop);
          s.setTimeout(this.o.idleTimeoutMs ?? 60_000, () => s.close());
          return s;
        },
        (err: Error) => {
          this.sessions.delete(key);
          throw new AttemptError({ kind: 'connect-failure' }, err.message);
        },
      );
      this.sessions.set(key, p);
    }
    return p;
  }

  private async sendH2(target: UpstreamTarget, req: UpstreamRequest): Promise<UpstreamResponse> {
    const session = await this.session(target, req.meta);
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(
          { ...req.headers, ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': 'http' },
          { endStream: req.writeBody === undefined },
        );
      } catch (err) {
        reject(new AttemptError({ kind: 'reset' }, `cannot open a stream to ${target.key}: ${(err as Error).message}`));
        return;
      }
      let settled = false;
      let trailers: Record<string, string | string[] | undefined> | undefined;
      stream.on('trailers', (t) => {
        trailers = t as Record<string, string | string[] | undefined>;
      });
      stream.on('response', (h) => {
        settled = true;
        const headers: IncomingHttpHeaders = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) headers[k] = v as string;
        resolve({ status: Number(h[':status']), headers, body: stream, trailers: () => trailers, endAfterHeaders: stream.endAfterHeaders, abort: () => stream.close(h2.NGHTTP2_CANCEL) });
      });
      const fail = () => {
        if (settled) return;
        settled = true;
        const refused = stream.rstCode === h2.NGHTTP2_REFUSED_STREAM;
        reject(new AttemptError(refused ? { kind: 'refused-stream' } : { kind: 'reset' }, `upstream ${target.key} reset the stream (code ${stream.rstCode ?? 'none'})`));
      };
      stream.on('error', fail);
      stream.on('close', fail);
      if (req.writeBody !== undefined && !req.writeBody(stream)) {
        stream.close(h2.NGHTTP2_CANCEL);
      }
    });
  }

  /** Forgets endpoints no longer present (closing their idle connections). */
  retain(keys: ReadonlySet<string>): void {
    for (const [k, a] of this.agents) if (!keys.has(k)) { a.destroy(); this.agents.delete(k); }
    for (const [k, p] of this.sessions) if (!keys.has(k)) { this.sessions.delete(k); p.then((s) => s.close(), () => {}); }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((p) => p.then((s) => new Promise<void>((r) => { s.close(() => r()); setTimeout(() => { s.destroy(); r(); }, 1000).unref(); }), () => {})));
  }
}
