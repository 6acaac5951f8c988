/**
 * What the waypoint knows about one request while it runs: who sent it (from the HBONE CONNECT),
 * its head as read once at the start, and what it accumulates for its access-log line and
 * metrics (flags, route, endpoint, bytes, status).
 *
 * Invariants:
 * - The head values (method, target, authority, protocol, gRPC-ness, trace, request id) are read
 *   once in `newState` and never change; later steps read them from the state, not the headers.
 * - One state per request, one object of fixed shape (every field set in `newState`), so the
 *   hot path does not reshape it.
 */
import { randomUUID } from 'node:crypto';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { BodyBuffer } from './body-buffer.js';
import type { ClusterEndpoint } from './cluster.js';
import type { WaypointServiceInfo } from './config.js';
import type { ResponseFlag } from './flags.js';
import type { H1IncomingRequest, H1ServerResponse } from './h1-server.js';
import { traceFor, type TraceContext } from './trace.js';

export type DownstreamRequest = H1IncomingRequest | Http2ServerRequest;
export type DownstreamResponse = H1ServerResponse | Http2ServerResponse;

/** Who sent a request and where to: learned from the HBONE CONNECT (or the plain socket). */
export interface DownstreamInfo {
  /** Verified SPIFFE ID of the HBONE peer (absent for plaintext). */
  readonly peerIdentity: string | undefined;
  /** Original client address (HBONE `forwarded`, else the peer). */
  readonly sourceIp: string;
  readonly sourcePort: number;
  /** The CONNECT authority: service VIP and port. */
  readonly destinationIp: string;
  readonly destinationPort: number;
}

/** What one request accumulates for its log line and metrics. */
export interface RequestState {
  readonly start: number;
  startIso: string;
  readonly method: string;
  /** The request target: as received, then origin-form and normalized (request-target.ts). */
  target: string;
  authority: string;
  readonly protocol: string;
  readonly grpc: boolean;
  readonly trace: TraceContext;
  readonly requestId: string;
  readonly down: DownstreamInfo;
  /** The request's headers as received (read only by Telemetry expressions, never logged). */
  readonly headers: DownstreamRequest['headers'];
  flags: Set<ResponseFlag>;
  retries: number;
  route: string;
  upstreamHost: string;
  upstreamCluster: string;
  upstreamServiceTimeMs: number;
  bytesReceived: number;
  bytesSent: number;
  status: number;
  grpcStatus: string;
  detail: string | undefined;
  policy: string | undefined;
  rateLimit: string | undefined;
  service: WaypointServiceInfo | undefined;
  endpoint: ClusterEndpoint | undefined;
  /** Set when the response is complete or abandoned; guards the single log line. */
  logged: boolean;
  body: BodyBuffer | undefined;
  /** Cuts the upstream exchange whose answer is streaming, when the client goes away first. */
  onClientGone: (() => void) | undefined;
}

/** Request headers that are not forwarded, nor response headers relayed (hop-by-hop, RFC 9110 §7.6.1, and `host`). */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * A fresh state for a request that starts now (`now()`, the proxy's clock); a trace it starts is
 * sampled with probability `samplePercent` / 100 (default undefined: not sampled).
 */
export function newState(req: DownstreamRequest, down: DownstreamInfo, now: () => number, samplePercent?: number): RequestState {
  const h = req.headers;
  const ct = firstHeader(h['content-type']) ?? '';
  return {
    start: now(),
    startIso: '',
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    authority: firstHeader(h[':authority']) ?? firstHeader(h.host) ?? '',
    protocol: req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
    grpc: ct.startsWith('application/grpc'),
    trace: traceFor(h['traceparent'], samplePercent),
    requestId: firstHeader(h['x-request-id']) ?? randomUUID(),
    down,
    headers: h,
    flags: new Set(),
    retries: 0,
    route: '-',
    upstreamHost: '-',
    upstreamCluster: '-',
    upstreamServiceTimeMs: -1,
    bytesReceived: 0,
    bytesSent: 0,
    status: 0,
    grpcStatus: '',
    detail: undefined,
    policy: undefined,
    rateLimit: undefined,
    service: undefined,
    endpoint: undefined,
    logged: false,
    onClientGone: undefined,
    body: undefined,
  };
}

/** Whether a request has a body to read (HTTP/2: the stream did not end with its headers). */
export function hasBody(req: DownstreamRequest): boolean {
  if (req.httpVersion === '2.0') return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const cl = req.headers['content-length'];
  if (cl !== undefined) return cl !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}
