/**
 * Errors of the waypoint. Codes are stable (`AMBIT_ERR_WAYPOINT_*`); messages name the service,
 * endpoint or policy involved and suggest the likely cause. Request-level failures never throw
 * out of the proxy: they become HTTP answers with Envoy-style response flags (see flags.ts);
 * these classes are for configuration problems and for failures crossing module boundaries.
 */
import { AmbitError } from '../util/errors.js';

export type WaypointErrorCode =
  /** Bad waypoint options or resource contents (a rate limit without a bucket, a bad JWKS...). */
  | 'AMBIT_ERR_WAYPOINT_CONFIG'
  /** A JWKS could not be fetched or parsed. */
  | 'AMBIT_ERR_WAYPOINT_JWKS'
  /** No endpoint could be connected (connect refused, HBONE refused, timeout). */
  | 'AMBIT_ERR_WAYPOINT_CONNECT'
  /** TLS origination to an external endpoint failed (handshake, CA or name verification). */
  | 'AMBIT_ERR_WAYPOINT_TLS'
  /** The upstream reset or closed the request before a complete answer. */
  | 'AMBIT_ERR_WAYPOINT_UPSTREAM_RESET'
  /** An attempt exceeded its per-try timeout. */
  | 'AMBIT_ERR_WAYPOINT_PER_TRY_TIMEOUT'
  /** The waypoint is closed. */
  | 'AMBIT_ERR_WAYPOINT_CLOSED';

export class WaypointError extends AmbitError {
  declare readonly code: WaypointErrorCode;

  constructor(code: WaypointErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'WaypointError';
  }
}
