/**
 * HBONE client pool: opens CONNECT streams to HBONE servers, sharing HTTP/2 sessions.
 *
 * The following invariants apply to this pool:
 * - Sessions are keyed by (source identity, its certificate serial, expected destination
 *   identity, destination address). A session verified for one destination identity is never
 *   used for another, and a stream always goes out under the source's current certificate.
 * - A session carries at most `maxStreamsPerSession` streams (and never more than the server's
 *   SETTINGS_MAX_CONCURRENT_STREAMS); the next stream opens another session. Slots are reserved
 *   synchronously, so concurrent callers never overshoot the cap while a session is connecting.
 * - A session that received GOAWAY, errored, or whose certificate was superseded by a renewal is
 *   never picked again; it is closed once its last stream ends (open streams are not broken).
 *   A CONNECT the server refused unprocessed (REFUSED_STREAM, racing its GOAWAY) is sent once
 *   more on a fresh session: nothing of it reached the destination.
 * - A session without streams for `idleTimeoutMs` is closed.
 * - Concurrent callers for a key share one connecting session.
 * - Every session offers the configured key-exchange groups (`tlsGroups`); the group it
 *   negotiated is counted once in `ambit_tls_handshakes_total{role="client"}` and kept with the
 *   session (stats(), tlsGroupOf()).
 */
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { constants as h2 } from 'node:http2';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { childLogger } from '../util/log.js';
import type { CredentialSource, WorkloadCertificate } from '../identity/manager.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { formatAuthority, parseAuthority } from './authority.js';
import { TunnelError } from './errors.js';
import { formatForwarded, isTraceparent, newTraceparent } from './headers.js';
import { openSession } from './client-session.js';
import { workloadSecureContext } from './tls-config.js';
import { DEFAULT_TLS_GROUPS } from './tls-groups.js';
import { tunnelMetrics, type TunnelMetrics } from './metrics.js';
import { DEFAULT_MAX_FRAME_SIZE, DEFAULT_SESSION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES } from './windows.js';

export interface HboneConnectRequest {
  /** Our SPIFFE ID: the client certificate presented. */
  source: string;
  /** The HBONE server to dial (e.g. the destination pod's address, port 15008). */
  address: { host: string; port: number };
  /** SPIFFE ID the server must prove; anything else is refused. */
  destinationIdentity: string;
  /** The CONNECT target `ip:port` (`[v6]:port`) the server should reach. */
  authority: string;
  /** Original client address, sent as `forwarded: for="ip:port"` (default: header omitted). */
  forwardedFor?: { host: string; port: number };
  /** W3C traceparent to send (default: a new random one). */
  traceparent?: string;
}

export interface HbonePoolOptions {
  /** Where client certificates come from. */
  credentials: CredentialSource;
  /** Streams per session before another session is opened (default 100). */
  maxStreamsPerSession?: number;
  /** A session with no streams is closed after this many ms (default 30,000). */
  idleTimeoutMs?: number;
  /** TCP + TLS handshake deadline in ms (default 5,000). */
  connectTimeoutMs?: number;
  /** Deadline for the answer to a CONNECT in ms (default 10,000). */
  responseTimeoutMs?: number;
  /** HTTP/2 initial stream window in bytes (default 4 MiB). */
  streamWindowBytes?: number;
  /** HTTP/2 connection window in bytes (default 16 MiB). */
  sessionWindowBytes?: number;
  /** Largest HTTP/2 frame we accept (default 16 KiB). */
  maxFrameSize?: number;
  /** nghttp2 memory cap per session in MiB (default 64). */
  maxSessionMemoryMiB?: number;
  /** Key-exchange groups offered, in order, validated by parseTlsGroups (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  /** Logger (default child `tunnel.pool`). */
  logger?: Logger;
  /** Registry for `ambit_tunnel_client_*` metrics (default: none). */
  registry?: Registry;
}

type State = 'connecting' | 'ready' | 'draining' | 'closed';

interface PooledSession {
  id: number;
  key: string;
  group: string;
  serial: string;
  state: State;
  /** Reserved + open streams. */
  streams: number;
  ready: Promise<ClientHttp2Session>;
  session: ClientHttp2Session | undefined;
  /** Serial of the server certificate this session verified. */
  peerSerial: string;
  /** Key-exchange group negotiated ('' while connecting). */
  tlsGroup: string;
  idleTimer: NodeJS.Timeout | undefined;
}

/** One row of `stats()`. */
export interface PoolSessionStats {
  id: number;
  address: string;
  source: string;
  destinationIdentity: string;
  /** Our certificate's serial on this session. */
  serial: string;
  /** The server certificate's serial on this session ('' while connecting). */
  peerSerial: string;
  /** Key-exchange group the session's handshake negotiated ('' while connecting). */
  tlsGroup: string;
  state: State;
  streams: number;
}

let nextSessionId = 0;

export class HbonePool {
  private readonly opts: Required<Omit<HbonePoolOptions, 'logger' | 'registry'>>;
  private readonly log: Logger;
  private readonly metrics: TunnelMetrics | undefined;
  /** By group (source|destination identity|address): every live session, oldest first. */
  private readonly groups = new Map<string, PooledSession[]>();
  private readonly contexts = new Map<string, { serial: string; ctx: SecureContext }>();
  private readonly bySession = new WeakMap<ClientHttp2Session, PooledSession>();
  private closed = false;

  constructor(options: HbonePoolOptions) {
    this.opts = {
      credentials: options.credentials,
      maxStreamsPerSession: options.maxStreamsPerSession ?? 100,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
      responseTimeoutMs: options.responseTimeoutMs ?? 10_000,
      streamWindowBytes: options.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES,
      sessionWindowBytes: options.sessionWindowBytes ?? DEFAULT_SESSION_WINDOW_BYTES,
      maxFrameSize: options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
      maxSessionMemoryMiB: options.maxSessionMemoryMiB ?? 64,
      tlsGroups: options.tlsGroups ?? DEFAULT_TLS_GROUPS,
    };
    if (!(this.opts.maxStreamsPerSession >= 1)) {
      throw new TunnelError('AMBIT_ERR_TUNNEL_INVALID_ARGUMENT', `maxStreamsPerSession must be at least 1, got ${this.opts.maxStreamsPerSession}`);
    }
    this.log = options.logger ?? childLogger('tunnel.pool');
    this.metrics = options.registry === undefined ? undefined : tunnelMetrics(options.registry);
  }

  /**
   * Opens a CONNECT stream to `req.authority` through the HBONE server at `req.address`.
   * Resolves with the stream (a Duplex: write to send, `end()` to half-close; `splice()` it to a
   * socket) once the server answered 200; rejects with a TunnelError otherwise.
   */
  async connect(req: HboneConnectRequest): Promise<ClientHttp2Stream> {
    const started = process.hrtime.bigint();
    try {
      let stream: ClientHttp2Stream;
      try {
        stream = await this.open(req);
      } catch (err) {
        // A stream the server refused unprocessed (it sent GOAWAY: draining, or an agent upgrade)
        // reached nobody: one more try goes out on a fresh session.
        if ((err as { refused?: boolean }).refused !== true) throw err;
        stream = await this.open(req);
      }
      this.metrics?.clientStreams.inc({ result: 'ok' });
      this.metrics?.clientSetupSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      return stream;
    } catch (err) {
      this.metrics?.clientStreams.inc({ result: (err as { code?: string }).code ?? 'error' });
      throw err;
    }
  }

  /**
   * The key-exchange group of the session carrying `stream` (a stream this pool opened), or
   * undefined when the stream is not (or no longer) attached to one of its sessions.
   */
  tlsGroupOf(stream: ClientHttp2Stream): string | undefined {
    const session = stream.session;
    if (session === undefined) return undefined;
    const pooled = this.bySession.get(session as ClientHttp2Session);
    return pooled === undefined || pooled.tlsGroup === '' ? undefined : pooled.tlsGroup;
  }

  /** The pool's sessions, for admin endpoints and tests. */
  stats(): PoolSessionStats[] {
    const out: PoolSessionStats[] = [];
    for (const list of this.groups.values()) {
      for (const s of list) {
        const [source = '', destinationIdentity = '', address = ''] = s.group.split('|');
        out.push({ id: s.id, address, source, destinationIdentity, serial: s.serial, peerSerial: s.peerSerial, tlsGroup: s.tlsGroup, state: s.state, streams: s.streams });
      }
    }
    return out;
  }

  /** Stops new streams; closes sessions gracefully (open streams finish) and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.groups.values()].flat();
    await Promise.all(all.map(async (s) => {
      const session = await s.ready.catch(() => undefined);
      if (session === undefined || session.closed || session.destroyed) return;
      const done = new Promise<void>((r) => session.once('close', () => r()));
      s.state = 'draining';
      session.close();
      await done;
    }));
  }

  /** Tears every session down at once (streams are reset). */
  destroy(): void {
    this.closed = true;
    for (const s of [...this.groups.values()].flat()) s.session?.destroy();
  }

  private async open(req: HboneConnectRequest): Promise<ClientHttp2Stream> {
    if (this.closed) throw new TunnelError('AMBIT_ERR_TUNNEL_CLOSED', 'HBONE pool is closed');
    const source = parseSpiffeId(req.source).uri;
    const destinationIdentity = parseSpiffeId(req.destinationIdentity).uri;
    const authority = parseAuthority(req.authority);
    const address = formatAuthority(req.address.host, req.address.port);
    const headers: Record<string, string> = {
      ':method': 'CONNECT',
      ':authority': formatAuthority(authority.host, authority.port),
      traceparent: req.traceparent !== undefined && isTraceparent(req.traceparent) ? req.traceparent : newTraceparent(),
    };
    if (req.forwardedFor !== undefined) headers['forwarded'] = formatForwarded(req.forwardedFor.host, req.forwardedFor.port);

    const cert = await this.opts.credentials.credentials(source);
    const group = `${source}|${destinationIdentity}|${address}`;
    const pooled = this.reserve(group, cert, req.address, destinationIdentity);
    let session: ClientHttp2Session;
    try {
      session = await pooled.ready;
    } catch (err) {
      this.release(pooled);
      throw err;
    }
    if (session.closed || session.destroyed) {
      this.release(pooled);
      throw new TunnelError('AMBIT_ERR_TUNNEL_RESET', `HBONE session to ${address} closed before the CONNECT to ${headers[':authority']} could be sent`);
    }
    return this.request(pooled, session, headers, address);
  }

  /** Picks a session with a free slot for `group` under `cert`, or starts one; takes a slot. */
  private reserve(group: string, cert: WorkloadCertificate, address: { host: string; port: number }, destinationIdentity: string): PooledSession {
    let list = this.groups.get(group);
    if (list === undefined) {
      list = [];
      this.groups.set(group, list);
    }
    let chosen: PooledSession | undefined;
    for (const s of list) {
      if (s.serial !== cert.serial) {
        // Superseded by a renewal: new streams go out under the new certificate.
        if (s.state === 'connecting' || s.state === 'ready') this.drain(s, 'certificate renewed');
        continue;
      }
      if ((s.state === 'connecting' || s.state === 'ready') && s.streams < this.capacity(s)) {
        chosen = s;
        break;
      }
    }
    if (chosen === undefined) {
      chosen = this.startSession(group, cert, address, destinationIdentity);
      list.push(chosen);
    }
    chosen.streams++;
    if (chosen.idleTimer !== undefined) {
      clearTimeout(chosen.idleTimer);
      chosen.idleTimer = undefined;
    }
    this.metrics?.clientActiveStreams.inc();
    return chosen;
  }

  private capacity(s: PooledSession): number {
    const remote = s.session?.remoteSettings.maxConcurrentStreams;
    return Math.min(this.opts.maxStreamsPerSession, remote === undefined || remote <= 0 ? Infinity : remote);
  }

  private secureContext(cert: WorkloadCertificate): SecureContext {
    const cached = this.contexts.get(cert.identity);
    if (cached !== undefined && cached.serial === cert.serial) return cached.ctx;
    const ctx = workloadSecureContext(cert, this.opts.tlsGroups);
    this.contexts.set(cert.identity, { serial: cert.serial, ctx });
    return ctx;
  }

  private startSession(group: string, cert: WorkloadCertificate, address: { host: string; port: number }, destinationIdentity: string): PooledSession {
    const pooled: PooledSession = {
      id: ++nextSessionId,
      key: `${group}|${cert.serial}`,
      group,
      serial: cert.serial,
      state: 'connecting',
      streams: 0,
      session: undefined,
      peerSerial: '',
      tlsGroup: '',
      idleTimer: undefined,
      ready: openSession({
        host: address.host,
        port: address.port,
        secureContext: this.secureContext(cert),
        expectedIdentity: destinationIdentity,
        sourceIdentity: cert.identity,
        connectTimeoutMs: this.opts.connectTimeoutMs,
        streamWindowBytes: this.opts.streamWindowBytes,
        sessionWindowBytes: this.opts.sessionWindowBytes,
        maxFrameSize: this.opts.maxFrameSize,
        maxSessionMemoryMiB: this.opts.maxSessionMemoryMiB,
      }).then((opened) => {
        pooled.peerSerial = opened.peerSerial;
        pooled.tlsGroup = opened.tlsGroup;
        return opened.session;
      }),
    };
    const where = formatAuthority(address.host, address.port);
    pooled.ready.then(
      (session) => {
        pooled.session = session;
        this.bySession.set(session, pooled);
        this.metrics?.clientSessionsOpened.inc({ result: 'ok' });
        this.metrics?.tlsHandshakes.inc({ group: pooled.tlsGroup, role: 'client' });
        this.metrics?.clientSessions.inc();
        this.log.debug({ session: pooled.id, address: where, source: cert.identity, destination: destinationIdentity, serial: cert.serial, tlsGroup: pooled.tlsGroup }, 'opened HBONE session');
        if (pooled.state === 'connecting') pooled.state = 'ready';
        session.on('goaway', (code: number) => {
          this.log.debug({ session: pooled.id, address: where, code }, 'HBONE session received GOAWAY');
          this.drain(pooled, 'GOAWAY');
        });
        session.on('error', (err: Error & { code?: string }) => {
          this.log.debug({ session: pooled.id, address: where, reason: err.code ?? err.message }, 'HBONE session error');
          this.drain(pooled, 'error');
        });
        session.once('close', () => {
          this.metrics?.clientSessions.dec();
          this.forgetSession(pooled);
        });
        if (pooled.state === 'draining') this.maybeClose(pooled);
      },
      (err: Error & { code?: string }) => {
        this.metrics?.clientSessionsOpened.inc({ result: err.code ?? 'error' });
        this.log.warn({ address: where, source: cert.identity, destination: destinationIdentity, code: err.code, reason: err.message }, 'cannot open HBONE session');
        this.forgetSession(pooled);
      },
    );
    return pooled;
  }

  private forgetSession(pooled: PooledSession): void {
    pooled.state = 'closed';
    if (pooled.idleTimer !== undefined) clearTimeout(pooled.idleTimer);
    const list = this.groups.get(pooled.group);
    if (list === undefined) return;
    const i = list.indexOf(pooled);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.groups.delete(pooled.group);
  }

  private drain(pooled: PooledSession, why: string): void {
    if (pooled.state === 'closed' || pooled.state === 'draining') return;
    pooled.state = 'draining';
    this.log.debug({ session: pooled.id, why }, 'draining HBONE session');
    this.maybeClose(pooled);
  }

  private maybeClose(pooled: PooledSession): void {
    if (pooled.streams === 0 && pooled.session !== undefined && !pooled.session.closed) pooled.session.close();
  }

  private release(pooled: PooledSession): void {
    pooled.streams--;
    this.metrics?.clientActiveStreams.dec();
    if (pooled.streams > 0) return;
    if (pooled.state === 'draining') {
      this.maybeClose(pooled);
    } else if (pooled.state === 'ready') {
      pooled.idleTimer = setTimeout(() => {
        pooled.idleTimer = undefined;
        if (pooled.streams === 0 && pooled.state === 'ready') {
          this.log.debug({ session: pooled.id }, 'closing idle HBONE session');
          this.drain(pooled, 'idle');
        }
      }, this.opts.idleTimeoutMs);
      pooled.idleTimer.unref();
    }
  }

  private request(pooled: PooledSession, session: ClientHttp2Session, headers: Record<string, string>, address: string): Promise<ClientHttp2Stream> {
    const target = headers[':authority'] ?? '';
    return new Promise<ClientHttp2Stream>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: false });
      } catch (err) {
        this.release(pooled);
        this.drain(pooled, 'request failed');
        reject(new TunnelError('AMBIT_ERR_TUNNEL_RESET', `cannot open a stream on the HBONE session to ${address}: ${(err as Error).message}`, { cause: err }));
        return;
      }
      let answered = false;
      const timer = setTimeout(() => {
        finish(new TunnelError('AMBIT_ERR_TUNNEL_RESPONSE_TIMEOUT', `HBONE server ${address} did not answer the CONNECT to ${target} within ${this.opts.responseTimeoutMs} ms (is the destination's upstream connect hanging?)`));
        stream.close(h2.NGHTTP2_CANCEL);
      }, this.opts.responseTimeoutMs);
      const finish = (err?: TunnelError) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        stream.off('response', onResponse);
        // REFUSED_STREAM: the server never processed it (it is going away: GOAWAY on drain or upgrade).
        if (err !== undefined && stream.rstCode === h2.NGHTTP2_REFUSED_STREAM) (err as TunnelError & { refused?: boolean }).refused = true;
        if (err === undefined) resolve(stream);
        else reject(err);
      };
      const onResponse = (h: IncomingHttpHeaders) => {
        const status = Number(h[':status']);
        if (status === 200) {
          finish();
          return;
        }
        stream.close(h2.NGHTTP2_CANCEL);
        finish(statusError(status, address, target));
      };
      stream.once('close', () => {
        this.release(pooled);
        finish(new TunnelError('AMBIT_ERR_TUNNEL_RESET', `HBONE stream to ${target} via ${address} was closed before the server answered (code ${stream.rstCode ?? 'none'}); the session may have been refused or torn down`));
      });
      stream.on('error', (err: Error & { code?: string }) => {
        finish(new TunnelError('AMBIT_ERR_TUNNEL_RESET', `HBONE stream to ${target} via ${address} failed before the server answered: ${err.code ?? err.message}`, { cause: err }));
      });
      stream.on('response', onResponse);
    });
  }
}

function statusError(status: number, address: string, target: string): TunnelError {
  switch (status) {
    case 401:
    case 403:
      return new TunnelError('AMBIT_ERR_TUNNEL_DENIED', `HBONE server ${address} denied the connection to ${target} (${status}): an authorization policy at the destination does not allow this source`, { status });
    case 400:
    case 405:
      return new TunnelError('AMBIT_ERR_TUNNEL_BAD_REQUEST', `HBONE server ${address} rejected the CONNECT to ${target} as malformed (${status})`, { status });
    case 503:
      return new TunnelError('AMBIT_ERR_TUNNEL_UPSTREAM_UNAVAILABLE', `HBONE server ${address} could not reach ${target} (503): is the destination workload listening on that port?`, { status });
    default:
      return new TunnelError('AMBIT_ERR_TUNNEL_STATUS', `HBONE server ${address} answered the CONNECT to ${target} with status ${status}`, { status });
  }
}
