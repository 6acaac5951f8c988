/**
 * One access-log line per request, as JSON through pino (component `waypoint.access`), with the
 * fields of Istio's default access log that an operator greps for: method, path, protocol,
 * response code and flags, route, upstream endpoint and cluster, retries, durations, bytes,
 * authority, source principal, trace and request ids, and for a denial the policy that decided.
 *
 * Invariants: never logs headers wholesale, tokens or bodies; the path is logged without its
 * query string (queries often carry tokens, e.g. `access_token`).
 */
import type { Logger } from 'pino';
import { childLogger } from '../util/log.js';

export interface AccessLogEntry {
  startTime: string;
  method: string;
  path: string;
  protocol: string;
  responseCode: number;
  responseFlags: string;
  /** `namespace/name` of the route's resource and the rule (`spec.http[1]`), or `-`. */
  route: string;
  /** Endpoint that answered (`ip:port`) or `-`. */
  upstreamHost: string;
  /** `outbound|port|subset|host`, Envoy's cluster name. */
  upstreamCluster: string;
  retries: number;
  durationMs: number;
  /** Time to first upstream response byte, ms (-1 when none). */
  upstreamServiceTimeMs: number;
  bytesReceived: number;
  bytesSent: number;
  authority: string;
  sourcePrincipal: string;
  sourceAddress: string;
  userAgent: string;
  requestId: string;
  traceId: string;
  /** Why the waypoint answered itself (denial reason, no route...), when it did. */
  detail?: string;
  /** Deciding AuthorizationPolicy (`namespace/name`) of a denial. */
  policy?: string;
  /** Deciding LocalRateLimit of a 429. */
  rateLimit?: string;
}

export interface AccessLogOptions {
  /** Logger (default child `waypoint.access`). */
  logger?: Logger;
  /** Also hand each entry to this function, e.g. to ship it elsewhere (default none). */
  sink?: (e: AccessLogEntry) => void;
  /** Turn the log line off, keeping `sink` (default false). */
  disabled?: boolean;
}

export class AccessLog {
  private readonly log: Logger;
  constructor(private readonly o: AccessLogOptions = {}) {
    this.log = o.logger ?? childLogger('waypoint.access');
  }

  /** False when neither the log line nor a sink wants entries (callers skip building them). */
  get enabled(): boolean {
    return this.o.disabled !== true || this.o.sink !== undefined;
  }

  write(e: AccessLogEntry): void {
    if (this.o.disabled !== true) this.log.info(e, 'request');
    this.o.sink?.(e);
  }
}

/** Path without query string or fragment, for logs. */
export function logPath(target: string): string {
  const i = target.search(/[?#]/);
  return i === -1 ? target : target.slice(0, i);
}
