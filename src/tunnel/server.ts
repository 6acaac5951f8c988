/**
 * HBONE server: accepts mTLS HTTP/2 CONNECT streams (docs/architecture.md#hbone), decides each one
 * through caller hooks, and splices the accepted ones to an upstream.
 *
 * Invariants:
 * - TLS 1.3 only, ALPN h2 only, and a client certificate that chains to the current trust bundle
 *   and carries exactly one SPIFFE ID is required before any HTTP/2 byte is parsed: the TLS
 *   layer is a plain tls.Server, and only sockets that pass `verifiedPeer` are handed to the
 *   HTTP/2 layer. Every refusal is logged with its reason and counted; no key material is logged.
 * - Answers: 405 (not CONNECT), 400 (bad `:authority`, or CONNECT with :path/:scheme),
 *   401 (authorization hook denied), 503 (upstream connect failed), 200 then splice.
 * - The server's own certificate follows the CredentialSource: on rotation the secure context is
 *   replaced, so new handshakes use the new certificate and trust bundle while established
 *   sessions keep theirs.
 * - Every accepted TLS connection offers the configured key-exchange groups (`tlsGroups`, also
 *   after a certificate rotation); the group it negotiated is read from OpenSSL's session
 *   (tls-groups.ts), counted in `ambit_tls_handshakes_total{role="server"}` and handed to the
 *   hooks with each CONNECT.
 * - Garbage, slowloris (handshake timeout) and abrupt resets cost one socket each and never
 *   the process.
 */
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { createServer as createH2Server, constants as h2, type Http2Server, type ServerHttp2Stream, type ServerHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect, type AddressInfo, type ListenOptions, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { childLogger } from '../util/log.js';
import type { CredentialSource, WorkloadCertificate } from '../identity/manager.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { parseAuthority, type Authority } from './authority.js';
import { TunnelError } from './errors.js';
import { isTraceparent, parseForwardedFor } from './headers.js';
import { ALPN_H2, verifiedPeer, workloadContextOptions, type PeerIdentity } from './tls-config.js';
import { DEFAULT_TLS_GROUPS, negotiatedGroup } from './tls-groups.js';
import { splice } from './splice.js';
import { tunnelMetrics, type TunnelMetrics } from './metrics.js';
import { DEFAULT_SESSION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES, DEFAULT_MAX_FRAME_SIZE } from './windows.js';

/** What the hooks learn about one CONNECT. */
export interface ConnectContext {
  /** Verified SPIFFE ID of the client (the source workload). */
  peerIdentity: string;
  /** Serial of the client's leaf certificate. */
  peerSerial: string;
  /** Requested destination. */
  authority: Authority;
  /** The CONNECT request headers. */
  headers: IncomingHttpHeaders;
  /** TCP peer of the tunnel (the source node), not the original client. */
  remoteAddress: string;
  remotePort: number;
  /** Original client from `forwarded: for=`, when present and valid. */
  forwardedFor: Authority | undefined;
  /** W3C traceparent of the CONNECT, when present and valid. */
  traceparent: string | undefined;
  /** Key-exchange group of the tunnel's TLS connection (e.g. X25519MLKEM768, or `unknown`). */
  tlsGroup: string;
}

export type AuthorizeDecision = { allow: true } | { allow: false; reason: string };

export interface HboneServerOptions {
  /** The identity this server presents (the destination workload's SPIFFE ID). */
  identity: string;
  /** Where the server's certificate comes from; rotations are followed. */
  credentials: CredentialSource;
  /** Decides each CONNECT; a rejection or throw answers 401 (required: no implicit allow-all). */
  authorize: (ctx: ConnectContext) => Promise<AuthorizeDecision> | AuthorizeDecision;
  /**
   * Opens the upstream for an allowed CONNECT; a throw answers 503. Sockets should be created
   * with `allowHalfOpen: true` so half-close propagates. Default: TCP connect to the authority.
   */
  connectUpstream?: (ctx: ConnectContext) => Promise<Duplex>;
  /** Key-exchange groups offered, in order, validated by parseTlsGroups (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  /** Only clients of this trust domain are accepted (default: the server identity's). */
  trustDomain?: string;
  /** TLS handshake deadline in ms; slow or silent clients are dropped (default 10,000). */
  handshakeTimeoutMs?: number;
  /** Upstream connect deadline in ms for the default connector (default 5,000). */
  upstreamConnectTimeoutMs?: number;
  /** Concurrent streams per session advertised to clients (default 1,000). */
  maxConcurrentStreams?: number;
  /** HTTP/2 initial stream window in bytes (default 4 MiB). */
  streamWindowBytes?: number;
  /** HTTP/2 connection window in bytes (default 16 MiB). */
  sessionWindowBytes?: number;
  /** Largest HTTP/2 frame we accept (default 16 KiB). */
  maxFrameSize?: number;
  /** Sessions idle this long in ms are closed (default 300,000; 0 disables). */
  sessionIdleTimeoutMs?: number;
  /** nghttp2 memory cap per session in MiB (default 64). */
  maxSessionMemoryMiB?: number;
  /** Bytes queued per splice direction before reading pauses (default 1 MiB, see splice.ts). */
  spliceBufferBytes?: number;
  /** Logger (default child `tunnel.server`). */
  logger?: Logger;
  /** Registry for `ambit_tunnel_server_*` metrics (default: none). */
  registry?: Registry;
}

/** Classifies a handshake error for the metrics label without unbounded values. */
function refusalClass(reason: string): string {
  if (/expired/i.test(reason)) return 'expired';
  if (/timeout|timed out/i.test(reason)) return 'timeout';
  if (/no certificate|peer did not return a certificate|certificate required/i.test(reason)) return 'no_certificate';
  if (/rejected|verify|issuer|self.signed|unknown ca/i.test(reason)) return 'untrusted';
  if (/SPIFFE|URI SAN|identity|trust domain/i.test(reason)) return 'identity';
  if (/ALPN|protocol/i.test(reason)) return 'protocol';
  return 'other';
}

export class HboneServer {
  readonly identity: string;
  private readonly opts: HboneServerOptions;
  private readonly log: Logger;
  private readonly metrics: TunnelMetrics | undefined;
  private readonly tls: TlsServer;
  private readonly h2: Http2Server;
  private readonly peers = new WeakMap<ServerHttp2Session, PeerIdentity & { tlsGroup: string }>();
  /** Peer of the socket being handed to HTTP/2 (its 'session' event fires synchronously). */
  private handingOver: (PeerIdentity & { tlsGroup: string }) | undefined;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly sockets = new Set<TLSSocket>();
  private readonly trustDomain: string;
  private readonly sessionWindow: number;
  private unsubscribe: (() => void) | undefined;
  private closing = false;
  private stopped: Promise<void> | undefined;
  private current: WorkloadCertificate;
  private readonly groups: readonly string[];

  private constructor(opts: HboneServerOptions, cert: WorkloadCertificate) {
    this.opts = opts;
    this.identity = opts.identity;
    this.current = cert;
    this.groups = opts.tlsGroups ?? DEFAULT_TLS_GROUPS;
    this.trustDomain = opts.trustDomain ?? parseSpiffeId(opts.identity).trustDomain;
    this.log = opts.logger ?? childLogger('tunnel.server');
    this.metrics = opts.registry === undefined ? undefined : tunnelMetrics(opts.registry);
    this.sessionWindow = opts.sessionWindowBytes ?? DEFAULT_SESSION_WINDOW_BYTES;

    this.tls = createTlsServer({
      ...workloadContextOptions(cert, this.groups),
      requestCert: true,
      // Verification result is checked in onSecureConnection so the refusal can be logged with
      // its reason; Node would otherwise drop the socket silently.
      rejectUnauthorized: false,
      ALPNProtocols: [ALPN_H2],
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      // Small frames (WINDOW_UPDATE, SETTINGS ACK, responses) must not wait behind Nagle.
      noDelay: true,
    });
    this.h2 = createH2Server({
      settings: {
        initialWindowSize: opts.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES,
        maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000,
        maxFrameSize: opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
        enablePush: false,
      },
      maxSessionMemory: opts.maxSessionMemoryMiB ?? 64,
    });
    this.tls.on('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket));
    this.tls.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      const reason = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? `TLS handshake not completed within ${opts.handshakeTimeoutMs ?? 10_000} ms (slow or silent client)` : `${err.code ?? 'ERR'}: ${err.message}`;
      this.refuse(socket, reason);
    });
    this.tls.on('connection', (raw: Socket) => {
      raw.on('error', () => {}); // resets before the TLS layer exists
    });
    this.h2.on('session', (session: ServerHttp2Session) => this.onSession(session));
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      this.onStream(stream, headers).catch((err: unknown) => {
        this.log.error({ err: { message: (err as Error).message } }, 'unexpected error handling CONNECT');
        if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
      });
    });
  }

  /** Obtains the server certificate, then builds the server (not yet listening). */
  static async create(opts: HboneServerOptions): Promise<HboneServer> {
    parseSpiffeId(opts.identity);
    const cert = await opts.credentials.credentials(opts.identity);
    const server = new HboneServer(opts, cert);
    server.unsubscribe = opts.credentials.onRotated((next) => {
      if (next.identity === opts.identity) server.useCertificate(next);
    });
    return server;
  }

  /** Listens (e.g. `{ port: 0, host: '127.0.0.1' }`, or `{ fd }` for a socket made in a pod netns). */
  async listen(options: ListenOptions): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.tls.once('error', onError);
      this.tls.listen(options, () => {
        this.tls.off('error', onError);
        resolve();
      });
    });
    const addr = this.address();
    this.log.info({ identity: this.identity, address: addr.address, port: addr.port }, 'HBONE server listening');
    return addr;
  }

  address(): AddressInfo {
    const a = this.tls.address();
    if (a === null || typeof a === 'string') throw new TunnelError('AMBIT_ERR_TUNNEL_CLOSED', 'HBONE server is not listening');
    return a;
  }

  /** Serial of the certificate new handshakes present. */
  certificateSerial(): string {
    return this.current.serial;
  }

  /**
   * Sends GOAWAY to every open session but keeps listening: open streams finish, and clients
   * open new sessions for new streams (e.g. to pick up a new server certificate at once).
   */
  drain(): void {
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  /**
   * Closes the listening socket only: no new handshakes, while open sessions and their streams
   * carry on. Resolves once the listener is closed and every session has ended.
   */
  stopAccepting(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => this.tls.close(() => resolve()));
    return this.stopped;
  }

  /** Open HTTP/2 sessions. */
  sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Stops accepting, sends GOAWAY to every session, and waits for open streams to finish for up
   * to `graceMs` (default 5,000) before destroying what is left.
   */
  async close(graceMs = 5_000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.unsubscribe?.();
    const closed = this.stopAccepting();
    for (const s of this.sessions) s.close();
    const deadline = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
      for (const s of this.sockets) s.destroy();
    }, graceMs);
    deadline.unref();
    // `session.closed` turns true as soon as close() was called; a session is finished only once
    // it is destroyed (its last stream ended), which is what the 'close' event reports.
    await Promise.all([...this.sessions].map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))));
    for (const s of this.sockets) s.destroy();
    await closed;
    clearTimeout(deadline);
  }

  private useCertificate(cert: WorkloadCertificate): void {
    this.current = cert;
    this.tls.setSecureContext(workloadContextOptions(cert, this.groups));
    this.log.info({ identity: this.identity, serial: cert.serial }, 'HBONE server switched to a renewed certificate for new connections');
  }

  private refuse(socket: TLSSocket, reason: string): void {
    const result = refusalClass(reason);
    this.metrics?.serverHandshakes.inc({ result });
    this.log.warn({ remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, reason }, 'refused HBONE connection');
    socket.destroy();
  }

  private onSecureConnection(socket: TLSSocket): void {
    const v = verifiedPeer(socket, this.trustDomain);
    if (!v.ok) {
      this.refuse(socket, v.reason);
      return;
    }
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.metrics?.serverHandshakes.inc({ result: 'accepted' });
    const tlsGroup = negotiatedGroup(socket);
    this.metrics?.tlsHandshakes.inc({ group: tlsGroup, role: 'server' });
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (err: Error & { code?: string }) => {
      this.log.debug({ remoteAddress: socket.remoteAddress, peer: v.peer.identity, reason: err.code ?? err.message }, 'HBONE connection error');
    });
    this.log.debug({ remoteAddress: socket.remoteAddress, peer: v.peer.identity, serial: v.peer.serial, tlsGroup }, 'accepted HBONE connection');
    this.handingOver = { ...v.peer, tlsGroup };
    try {
      this.h2.emit('connection', socket);
    } finally {
      this.handingOver = undefined;
    }
  }

  private onSession(session: ServerHttp2Session): void {
    if (this.handingOver === undefined) {
      // Only sockets that passed verification reach the HTTP/2 layer; anything else is a bug.
      session.destroy();
      return;
    }
    this.peers.set(session, this.handingOver);
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', (err: Error & { code?: string }) => {
      this.log.debug({ reason: err.code ?? err.message }, 'HBONE session error');
    });
    const idle = this.opts.sessionIdleTimeoutMs ?? 300_000;
    if (idle > 0) session.setTimeout(idle, () => session.close());
    const apply = () => {
      try {
        session.setLocalWindowSize(this.sessionWindow);
      } catch {
        // session already gone
      }
    };
    if (session.connecting) session.once('connect', apply);
    else apply();
  }

  private async onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => {}); // resets are normal; splice handles the rest
    const session = stream.session as ServerHttp2Session | undefined;
    const socket = session?.socket;
    const peer = session === undefined ? undefined : this.peers.get(session);
    const answer = (status: number, why: string, extra: Record<string, unknown> = {}) => {
      this.metrics?.serverStreams.inc({ code: String(status) });
      this.log.info({ status, peer: peer?.identity, authority: headers[':authority'], remoteAddress: socket?.remoteAddress, reason: why, ...extra }, 'refused HBONE CONNECT');
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
    };
    if (peer === undefined) {
      stream.close(h2.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      answer(405, `method ${String(method)} is not CONNECT`);
      return;
    }
    if (headers[':path'] !== undefined || headers[':scheme'] !== undefined || headers[':protocol'] !== undefined) {
      answer(400, 'CONNECT must not carry :path, :scheme or :protocol');
      return;
    }
    let authority: Authority;
    try {
      authority = parseAuthority(String(headers[':authority'] ?? ''));
    } catch (err) {
      answer(400, (err as Error).message);
      return;
    }
    const tp = headers['traceparent'];
    const ctx: ConnectContext = {
      peerIdentity: peer.identity,
      peerSerial: peer.serial,
      authority,
      headers,
      remoteAddress: socket?.remoteAddress ?? '',
      remotePort: socket?.remotePort ?? 0,
      forwardedFor: parseForwardedFor(headers['forwarded']),
      traceparent: isTraceparent(tp) ? tp : undefined,
      tlsGroup: peer.tlsGroup,
    };
    let decision: AuthorizeDecision;
    try {
      decision = await this.opts.authorize(ctx);
    } catch (err) {
      decision = { allow: false, reason: `authorization hook failed: ${(err as Error).message}` };
    }
    if (!decision.allow) {
      answer(401, decision.reason, { traceparent: ctx.traceparent });
      return;
    }
    if (stream.destroyed) return; // client gave up meanwhile
    let upstream: Duplex;
    try {
      upstream = await (this.opts.connectUpstream ?? ((c: ConnectContext) => connectTcp(c.authority, this.opts.upstreamConnectTimeoutMs ?? 5_000)))(ctx);
    } catch (err) {
      answer(503, `upstream ${authority.host}:${authority.port} unavailable: ${(err as Error).message}`, { traceparent: ctx.traceparent });
      return;
    }
    if (stream.destroyed) {
      upstream.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    this.metrics?.serverStreams.inc({ code: '200' });
    this.metrics?.serverActiveStreams.inc();
    const started = Date.now();
    splice(stream, upstream, (err) => {
      this.metrics?.serverActiveStreams.dec();
      const up = upstream as Partial<Socket>;
      if (this.metrics !== undefined && typeof up.bytesWritten === 'number' && typeof up.bytesRead === 'number') {
        this.metrics.serverBytes.inc({ direction: 'to_upstream' }, up.bytesWritten);
        this.metrics.serverBytes.inc({ direction: 'from_upstream' }, up.bytesRead);
      }
      this.log.debug({ peer: peer.identity, authority: headers[':authority'], durationMs: Date.now() - started, reason: err?.message, traceparent: ctx.traceparent }, 'HBONE stream closed');
    }, this.opts.spliceBufferBytes === undefined ? {} : { maxBufferedBytes: this.opts.spliceBufferBytes });
  }
}

/** TCP connect to `authority`, half-open capable, failing after `timeoutMs`. */
export function connectTcp(authority: Authority, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: authority.host, port: authority.port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      sock.on('error', () => {}); // the splice attaches the real handler
      resolve(sock);
    });
    sock.once('error', onError);
  });
}
