/**
 * Opening one HBONE client session: TCP + TLS 1.3 (ALPN h2, our workload certificate, the
 * server verified against the trust bundle and the expected SPIFFE ID) + HTTP/2 with large
 * windows. Failures become TunnelErrors that tell an operator where to look.
 *
 * Invariant: the returned session is only "ready" once the server's SETTINGS arrived. The server
 * sends them only after it accepted our certificate, so a refused client certificate (which
 * TLS 1.3 reports only after the client's handshake has completed) is an error here rather than
 * a mysterious reset of the first stream.
 * The key-exchange groups offered are those of the secure context (tls-config.ts); the group the
 * handshake negotiated is reported with the session.
 */
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { formatAuthority } from './authority.js';
import { TunnelError, type TunnelErrorCode } from './errors.js';
import { ALPN_H2, spiffeServerIdentityCheck, TLS_VERSION } from './tls-config.js';
import { negotiatedGroup, UNKNOWN_GROUP } from './tls-groups.js';

export interface OpenSessionOptions {
  host: string;
  port: number;
  /** Secure context with our key, chain, trust bundle and the groups to offer. */
  secureContext: SecureContext;
  /** SPIFFE ID the server must present. */
  expectedIdentity: string;
  /** Our identity, for error messages. */
  sourceIdentity: string;
  connectTimeoutMs: number;
  streamWindowBytes: number;
  sessionWindowBytes: number;
  maxFrameSize: number;
  maxSessionMemoryMiB: number;
}

const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Maps a socket/TLS error while opening a session to an operator-facing TunnelError. */
export function sessionError(err: unknown, opts: Pick<OpenSessionOptions, 'host' | 'port' | 'expectedIdentity' | 'sourceIdentity' | 'connectTimeoutMs'>): TunnelError {
  if (err instanceof TunnelError) return err;
  const e = err as Error & { code?: string };
  const where = formatAuthority(opts.host, opts.port);
  const code = e.code ?? '';
  let tc: TunnelErrorCode;
  let msg: string;
  if (code === 'ERR_AMBIT_PEER_IDENTITY') {
    tc = 'AMBIT_ERR_TUNNEL_PEER_IDENTITY';
    msg = `HBONE server ${where}: ${e.message}; the destination is not the workload we meant to reach (stale endpoint or address reuse?)`;
  } else if (UNTRUSTED_CODES.has(code)) {
    tc = 'AMBIT_ERR_TUNNEL_PEER_UNTRUSTED';
    msg = code === 'CERT_HAS_EXPIRED'
      ? `HBONE server ${where} presented an expired certificate; its agent is not renewing (can it reach the control plane?)`
      : `HBONE server ${where} presented a certificate we do not trust (${code}); do both sides share a root? (a CA rotation not yet distributed?)`;
  } else if (code === 'ETIMEDOUT' || code === 'ERR_AMBIT_CONNECT_TIMEOUT') {
    tc = 'AMBIT_ERR_TUNNEL_CONNECT_TIMEOUT';
    msg = `connection to ${where} timed out after ${opts.connectTimeoutMs} ms, maybe a NetworkPolicy is blocking HBONE port ${opts.port}`;
  } else if (code === 'ECONNREFUSED') {
    tc = 'AMBIT_ERR_TUNNEL_CONNECT_REFUSED';
    msg = `connection to ${where} refused: is the ambit agent running there and listening on HBONE port ${opts.port}?`;
  } else if (code.startsWith('ERR_SSL_') || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_AMBIT_CLOSED_EARLY' || code === 'ERR_HTTP2_ERROR' || code === 'ERR_HTTP2_SESSION_ERROR') {
    tc = 'AMBIT_ERR_TUNNEL_HANDSHAKE';
    msg = `HBONE server ${where} closed the connection during the handshake (${code || e.message}); it probably refused our certificate for ${opts.sourceIdentity} (expired, or signed by a root it does not trust): check that server's log`;
  } else {
    tc = 'AMBIT_ERR_TUNNEL_CONNECT_FAILED';
    msg = `connection to ${where} failed: ${code ? `${code}: ` : ''}${e.message}`;
  }
  return new TunnelError(tc, msg, { cause: err });
}

export interface OpenedSession {
  session: ClientHttp2Session;
  /** Serial of the server's leaf certificate (upper-case hex). */
  peerSerial: string;
  /** Key-exchange group the TLS handshake negotiated (e.g. X25519MLKEM768, or `unknown`). */
  tlsGroup: string;
}

/** Opens a verified, ready HTTP/2 session. */
export function openSession(opts: OpenSessionOptions): Promise<OpenedSession> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: TLSSocket | undefined;
    const authority = formatAuthority(opts.host, opts.port);
    const session = h2Connect(`https://${authority}`, {
      createConnection: () => {
        socket = tlsConnect({
          host: opts.host,
          port: opts.port,
          secureContext: opts.secureContext,
          minVersion: TLS_VERSION,
          maxVersion: TLS_VERSION,
          ALPNProtocols: [ALPN_H2],
          rejectUnauthorized: true,
          checkServerIdentity: spiffeServerIdentityCheck(opts.expectedIdentity),
        });
        socket.setNoDelay(true);
        return socket;
      },
      settings: {
        initialWindowSize: opts.streamWindowBytes,
        maxFrameSize: opts.maxFrameSize,
        enablePush: false,
      },
      maxSessionMemory: opts.maxSessionMemoryMiB,
    });
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      reject(sessionError(err, opts));
    };
    const timer = setTimeout(() => fail(Object.assign(new Error('timed out'), { code: 'ERR_AMBIT_CONNECT_TIMEOUT' })), opts.connectTimeoutMs);
    session.on('error', fail);
    session.once('close', () => fail(Object.assign(new Error('connection closed before the server sent its HTTP/2 settings'), { code: 'ERR_AMBIT_CLOSED_EARLY' })));
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(opts.sessionWindowBytes);
      } catch (err) {
        fail(err);
      }
    });
    session.once('remoteSettings', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ session, peerSerial: socket?.getPeerX509Certificate()?.serialNumber.toUpperCase() ?? '', tlsGroup: socket === undefined ? UNKNOWN_GROUP : negotiatedGroup(socket) });
    });
  });
}
