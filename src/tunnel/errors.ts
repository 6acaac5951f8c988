/**
 * Errors of the HBONE tunnel. Codes are stable (`AMBIT_ERR_TUNNEL_*`); messages name the peer
 * and suggest the likely cause, the way an operator debugging a broken mesh needs them
 * ("connection to 198.19.1.5:15008 timed out, maybe a NetworkPolicy is blocking HBONE port 15008").
 */
import { AmbitError } from '../util/errors.js';

export type TunnelErrorCode =
  /** TCP connect or TLS handshake did not finish in time. */
  | 'AMBIT_ERR_TUNNEL_CONNECT_TIMEOUT'
  /** Nothing listens on the HBONE port. */
  | 'AMBIT_ERR_TUNNEL_CONNECT_REFUSED'
  /** Other socket-level failure reaching the peer (unreachable, reset during connect...). */
  | 'AMBIT_ERR_TUNNEL_CONNECT_FAILED'
  /** The server's certificate does not chain to our trust bundle, or is expired. */
  | 'AMBIT_ERR_TUNNEL_PEER_UNTRUSTED'
  /** The server's certificate is trusted but certifies another identity than expected. */
  | 'AMBIT_ERR_TUNNEL_PEER_IDENTITY'
  /** The server closed the connection during or right after the handshake (refused our certificate?). */
  | 'AMBIT_ERR_TUNNEL_HANDSHAKE'
  /** The server answered 401: the authorization policy denies this connection. */
  | 'AMBIT_ERR_TUNNEL_DENIED'
  /** The server answered 400 or 405: it found our CONNECT malformed. */
  | 'AMBIT_ERR_TUNNEL_BAD_REQUEST'
  /** The server answered 503: it could not reach the destination behind it. */
  | 'AMBIT_ERR_TUNNEL_UPSTREAM_UNAVAILABLE'
  /** Any other non-200 answer. */
  | 'AMBIT_ERR_TUNNEL_STATUS'
  /** The stream or session was reset or closed before the CONNECT was answered. */
  | 'AMBIT_ERR_TUNNEL_RESET'
  /** No answer to the CONNECT in time. */
  | 'AMBIT_ERR_TUNNEL_RESPONSE_TIMEOUT'
  /** Bad arguments: authority, address, options. */
  | 'AMBIT_ERR_TUNNEL_INVALID_ARGUMENT'
  /** The pool or server is closed. */
  | 'AMBIT_ERR_TUNNEL_CLOSED';

export class TunnelError extends AmbitError {
  declare readonly code: TunnelErrorCode;
  /** HTTP status of the CONNECT answer, when there was one. */
  readonly status: number | undefined;

  constructor(code: TunnelErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    this.name = 'TunnelError';
    this.status = options?.status;
  }
}
