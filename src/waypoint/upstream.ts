/**
 * The waypoint's side toward endpoints: how a byte stream to an endpoint is opened (HBONE with
 * the waypoint's own identity for enrolled endpoints, plain TCP for endpoints outside the mesh),
 * and the HTTP/1.1 and HTTP/2 clients that run over those streams.
 *
 * Invariants:
 * - An enrolled endpoint is only ever reached over HBONE, its server proving the endpoint
 *   workload's SPIFFE identity; plaintext is used only for endpoints the mesh does not capture.
 * - HTTP/1.1: one keep-alive connection pool per endpoint (h1-client.ts, the waypoint's own
 *   codec; a CONNECT stream carries one HTTP/1.1 connection and is reused across requests); no
 *   request ever shares a connection with another in flight. HTTP/2: one session per endpoint,
 *   multiplexed, replaced when it closes.
 * - Failures are classified for retries and outlier detection: `connect-failure` (the stream could
 *   not be opened), `refused-stream` (HTTP/2 REFUSED_STREAM), `reset` (anything after that).
 *   A request that fails on a reused keep-alive connection before any response byte is retried once
 *   on a fresh connection, transparently (the server closed an idle connection: a race, not an
 *   endpoint failure).
 */
import type { OutgoingHttpHeaders, IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { HbonePool } from '../tunnel/pool.js';
import { formatAuthority } from '../tunnel/authority.js';
import { WaypointError } from './errors.js';
import { connectDirect } from './direct-read.js';
import { H1Failure, H1Pool } from './h1-client.js';
import type { AttemptOutcome } from './retry.js';
import type { OriginationTls } from './tls-origination.js';

/** An endpoint to reach. */
export interface UpstreamTarget {
  /** `ip:port`, unique per endpoint. */
  readonly key: string;
  readonly ip: string;
  /** Target (container) port. */
  readonly port: number;
  /** SPIFFE ID of the endpoint's workload when it is in the mesh (reach it over HBONE). */
  readonly identity: string | undefined;
  /** TLS the waypoint originates to this endpoint outside the mesh (tls-origination.ts); absent: plain. */
  readonly tls?: OriginationTls | undefined;
}

/** The key of an endpoint's pooled connections: a change of identity or TLS settings never reuses a connection. */
export function poolKey(target: UpstreamTarget): string {
  return target.key + (target.identity ?? '') + (target.tls === undefined ? '' : `|tls:${target.tls.tag}`);
}

export interface ConnectMeta {
  /** Original client, sent as HBONE `forwarded` (default none). */
  forwardedFor?: { host: string; port: number };
  traceparent?: string;
  /**
   * The caller reads the stream through direct-read.ts `takeReads` when it can (default false):
   * plain TCP sockets are then opened with `connectDirect`. Other streams ignore it.
   */
  directReads?: boolean;
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

  connect(target: UpstreamTarget, meta?: ConnectMeta): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const sock = meta?.directReads === true
        ? connectDirect({ host: target.ip, port: target.port, noDelay: true })
        : netConnect({ host: target.ip, port: target.port, noDelay: true });
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
  /** An HTTP/1.1 Upgrade to ask for (the `Upgrade` value): sent on a connection of its own. */
  readonly upgrade?: string | undefined;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * The whole body when it arrived with the head (HTTP/1.1, empty or length-framed): nothing
   * more to read, and `body` need not be touched. Undefined when the body streams.
   */
  readonly complete: Buffer | undefined;
  readonly body: Readable;
  /** Trailers, available once `body` ended. */
  trailers(): Record<string, string | string[] | undefined> | undefined;
  /** Abandons the response (the connection is not reused). */
  abort(): void;
  /** The response was HEADERS with END_STREAM (gRPC trailers-only), HTTP/2 only. */
  readonly endAfterHeaders: boolean;
  /** A 101 to an upgrade: the upstream connection, now the caller's, and the bytes after the head. */
  readonly switched?: { readonly socket: Duplex; readonly head: Buffer } | undefined;
}

/** A failed attempt: what it came to, for retries and outlier detection. */
export class AttemptError extends Error {
  constructor(readonly outcome: Exclude<AttemptOutcome, { kind: 'response' }>, message: string) {
    super(message);
    this.name = 'AttemptError';
  }
}

export interface UpstreamClientsOptions {
  connector: Connector;
  /** Idle keep-alive connections are closed after this many ms (default 60,000). */
  idleTimeoutMs?: number;
}

/** HTTP clients to every endpoint, keyed by endpoint. */
export class UpstreamClients {
  private readonly h1 = new Map<string, H1Pool>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private closed = false;

  constructor(private readonly o: UpstreamClientsOptions) {}

  /** Sends one request; resolves at response headers; rejects with AttemptError. */
  send(target: UpstreamTarget, req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => this.exchange(target, req, resolve, reject));
  }

  /**
   * `send` with callbacks (exactly one is called, once): the proxy's hot path, which spares
   * HTTP/1.1 requests the promises between the pool and the proxy.
   */
  exchange(target: UpstreamTarget, req: UpstreamRequest, resolve: (r: UpstreamResponse) => void, reject: (e: AttemptError) => void): void {
    if (this.closed) {
      reject(new AttemptError({ kind: 'connect-failure' }, 'waypoint is closing'));
      return;
    }
    if (req.protocol === 'http2') {
      this.sendH2(target, req).then(resolve, (err: unknown) => reject(err instanceof AttemptError ? err : new AttemptError({ kind: 'reset' }, (err as Error).message)));
      return;
    }
    // A request that met a connection the server had just closed goes again on a fresh one
    // when its body can be written again (none, or a method that carries none by meaning).
    const retryStale = req.writeBody === undefined || req.method === 'GET' || req.method === 'HEAD';
    const failed = (err: H1Failure) => {
      if (err.kind === 'connect-failure') reject(new AttemptError({ kind: 'connect-failure' }, err.message));
      else if (err.kind === 'protocol') reject(new AttemptError({ kind: 'protocol-error' }, `upstream ${target.key}: ${err.message}`));
      else reject(new AttemptError({ kind: 'reset' }, `upstream ${target.key} reset the request: ${err.message}`));
    };
    const pool = this.h1Pool(target, req.meta);
    if (req.upgrade !== undefined) pool.upgrade(req, resolve, failed);
    else pool.send(req, retryStale, resolve, failed);
  }

  private h1Pool(target: UpstreamTarget, meta: ConnectMeta): H1Pool {
    const key = poolKey(target);
    let p = this.h1.get(key);
    if (p === undefined) {
      // The first request's metadata (original client, trace) goes on the HBONE CONNECT of each
      // new connection, as Envoy does for pooled upstream connections.
      // The pool's connections read plain sockets without the stream layer (direct-read.ts).
      const connector = this.o.connector;
      const m: ConnectMeta = { ...meta, directReads: true };
      p = new H1Pool({ open: () => connector.connect(target, m), idleTimeoutMs: this.o.idleTimeoutMs ?? 60_000 });
      this.h1.set(key, p);
    }
    return p;
  }

  private session(target: UpstreamTarget, meta: ConnectMeta): Promise<ClientHttp2Session> {
    const key = poolKey(target);
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
        resolve({ status: Number(h[':status']), headers, complete: undefined, body: stream, trailers: () => trailers, endAfterHeaders: stream.endAfterHeaders, abort: () => stream.close(h2.NGHTTP2_CANCEL) });
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
    for (const [k, p] of this.h1) if (!keys.has(k)) { p.close(); this.h1.delete(k); }
    for (const [k, p] of this.sessions) if (!keys.has(k)) { this.sessions.delete(k); p.then((s) => s.close(), () => {}); }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.h1.values()) p.close();
    this.h1.clear();
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((p) => p.then((s) => new Promise<void>((r) => { s.close(() => r()); setTimeout(() => { s.destroy(); r(); }, 1000).unref(); }), () => {})));
  }
}
