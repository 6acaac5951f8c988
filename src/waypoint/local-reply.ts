/**
 * Answers made by the waypoint itself (401, 403, 404 NR, 429 RL, fault aborts, 503 UO/UH/UF,
 * 504 UT, redirects, direct responses), with Envoy's texts.
 *
 * Invariants:
 * - Local replies to gRPC requests are gRPC answers (HTTP 200, `grpc-status` mapped from the
 *   HTTP status) so gRPC clients see a status, not a protocol error.
 * - A reply that can no longer be sent (headers already out, or the stream gone) resets the
 *   stream instead; either way the request's telemetry is written once.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { ResponseFlag } from './flags.js';
import type { DownstreamResponse, RequestState } from './request-state.js';
import type { Telemetry } from './telemetry.js';

/** HTTP status → gRPC status for local replies (gRPC's HTTP mapping; 504 is a deadline). */
function grpcStatusOf(http: number): number {
  switch (http) {
    case 400: return 13;
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 429: return 14;
    case 504: return 4;
    case 502: case 503: return 14;
    default: return 2;
  }
}

/** Envoy's response body for a local reply with this flag. */
export const LOCAL_TEXT: Partial<Record<ResponseFlag, string>> = {
  NR: 'route not found',
  RBAC: 'RBAC: access denied',
  RL: 'local_rate_limited',
  FI: 'fault filter abort',
  UO: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
  UH: 'no healthy upstream',
  UF: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
  UT: 'upstream request timeout',
  UC: 'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
};

/** An answer made by the waypoint itself. */
export function localReply(telemetry: Telemetry, st: RequestState, res: DownstreamResponse, status: number, flag: ResponseFlag | undefined, detail: string, headers: OutgoingHttpHeaders = {}, rawBody = false): void {
  if (flag !== undefined) st.flags.add(flag);
  st.detail = detail;
  st.status = status;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    telemetry.finish(st, res);
    return;
  }
  const text = rawBody ? detail : ((flag !== undefined ? LOCAL_TEXT[flag] : undefined) ?? (status >= 400 ? detail : ''));
  if (st.grpc && status !== 200 && !rawBody) {
    const gs = grpcStatusOf(status);
    st.grpcStatus = String(gs);
    const h: OutgoingHttpHeaders = { ...headers, 'content-type': 'application/grpc', 'grpc-status': String(gs), 'grpc-message': encodeURIComponent(text) };
    const h2 = res as Http2ServerResponse;
    if (st.protocol === 'HTTP/2' && h2.stream !== undefined && !h2.stream.destroyed) {
      // Trailers-only response: HEADERS with END_STREAM, which gRPC clients read as the status.
      h2.stream.respond({ ':status': 200, ...h }, { endStream: true });
      st.status = 200;
      telemetry.finish(st, res);
      return;
    }
    st.status = 200;
    res.writeHead(200, h);
    res.end();
    telemetry.finish(st, res);
    return;
  }
  const body = Buffer.from(text);
  res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'content-length': String(body.length), 'x-request-id': st.requestId });
  res.end(body);
  st.bytesSent += body.length;
  res.once('finish', () => telemetry.finish(st, res));
}
