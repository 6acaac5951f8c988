/**
 * Forwarding a request that admission let through: a weighted destination, mirrors,
 * connection-pool limits (503 UO), load balancing over non-ejected endpoints, retries under a
 * retry budget with per-try timeouts, the route timeout (504 UT), and the upstream answer
 * streamed back to the client.
 *
 * Invariants:
 * - Nothing is retried once response bytes went to the client, nor when the body can no longer
 *   be replayed; a retry never goes over the retry budget, and a retry avoids endpoints this
 *   request already tried when another is available.
 * - Every pool slot and in-flight count taken is given back exactly once, whatever happens to
 *   the client or the upstream (finally blocks and close handlers, never the happy path only).
 * - The route timeout bounds the whole exchange, retries and the streamed body included.
 * - Every attempt's outcome is told to the cluster's outlier detection.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Logger } from 'pino';
import type { Route, RouteMatch } from '../model/compile/types.js';
import { hashKeyOf } from './balancer.js';
import type { BodyBuffer } from './body-buffer.js';
import type { CancelSignal } from './cancel.js';
import type { Cluster, ClusterEndpoint, ClusterManager } from './cluster.js';
import { portProtocol, type ServiceBinding, type WaypointConfig } from './config.js';
import { sleep } from './fault.js';
import { FLAG, type ResponseFlag } from './flags.js';
import type { H1IncomingRequest, H1ServerResponse } from './h1-server.js';
import type { JwtIdentity } from './jwt.js';
import { localReply } from './local-reply.js';
import type { WaypointMetrics } from './metrics.js';
import { sendMirror } from './mirror.js';
import { spliceUpgrade } from './passthrough.js';
import { firstHeader, HOP_BY_HOP, type DownstreamRequest, type DownstreamResponse, type RequestState } from './request-state.js';
import { backoffMs, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_ON, isRetriable, type AttemptOutcome } from './retry.js';
import { applyHeaderOps, pickDestination, rewritePath, type HeaderMap } from './route-action.js';
import type { Telemetry } from './telemetry.js';
import type { AttemptError, UpstreamClients, UpstreamRequest, UpstreamResponse } from './upstream.js';

/** Istio's retry policy for routes without one (when `defaultRetries` is on). */
const DEFAULT_POLICY: NonNullable<Route['retries']> = { attempts: DEFAULT_RETRY_ATTEMPTS, perTryTimeoutMs: undefined, retryOn: DEFAULT_RETRY_ON, backoffMs: undefined };

export interface ForwarderOptions {
  clusters: ClusterManager;
  clients: UpstreamClients;
  telemetry: Telemetry;
  /** Retry and budget counters (default: none). */
  metrics: WaypointMetrics | undefined;
  logger: Logger;
  /** Random source in [0,1) for splits, mirrors, backoff. */
  rand: () => number;
  /** Clock in ms. */
  now: () => number;
  /** Mirror request deadline, ms (default 10,000). */
  mirrorTimeoutMs?: number;
  /** Apply Istio's default retry policy to routes without one (default true). */
  defaultRetries?: boolean;
}

/** One per proxy: sends admitted requests upstream and relays the answers. */
export class Forwarder {
  private readonly clusters: ClusterManager;
  private readonly clients: UpstreamClients;
  private readonly telemetry: Telemetry;
  private readonly metrics: WaypointMetrics | undefined;
  private readonly log: Logger;
  private readonly rand: () => number;
  private readonly now: () => number;
  private readonly mirrorTimeoutMs: number;
  private readonly defaultRetries: boolean;

  constructor(o: ForwarderOptions) {
    this.clusters = o.clusters;
    this.clients = o.clients;
    this.telemetry = o.telemetry;
    this.metrics = o.metrics;
    this.log = o.logger;
    this.rand = o.rand;
    this.now = o.now;
    this.mirrorTimeoutMs = o.mirrorTimeoutMs ?? 10_000;
    this.defaultRetries = o.defaultRetries !== false;
  }

  /** Forwards a request whose route action is `forward`; answers it whatever happens. Never throws on upstream failures. */
  async forward(
    config: WaypointConfig,
    binding: ServiceBinding,
    route: Route,
    match: RouteMatch | undefined,
    jwt: JwtIdentity | undefined,
    req: DownstreamRequest,
    res: DownstreamResponse,
    st: RequestState,
    body: BodyBuffer,
    header: (n: string) => string | undefined,
    signal: CancelSignal,
  ): Promise<void> {
    if (route.action.type !== 'forward') return;
    const dest = pickDestination(route.action.destinations, this.rand());
    if (dest === undefined) {
      localReply(this.telemetry, st, res, 500, undefined, `route ${st.route} has no destination`);
      return;
    }
    const svc = dest.host === binding.service.hostname ? binding.service : config.serviceByHost(dest.host);
    if (svc === undefined) {
      localReply(this.telemetry, st, res, 503, FLAG.NO_HEALTHY_UPSTREAM, `destination ${dest.host} is not a known service`);
      return;
    }
    const port = dest.port ?? (svc === binding.service ? st.down.destinationPort : (svc.ports.length === 1 ? svc.ports[0]?.port : undefined) ?? st.down.destinationPort);
    const sp = svc.ports.find((p) => p.port === port);
    const declared = sp === undefined ? 'detect' : portProtocol(sp);
    // An upgrade (only HTTP/1.1 requests have one) goes over HTTP/1.1, on a connection of its own.
    const upgrade = req.httpVersion === '2.0' ? undefined : (req as H1IncomingRequest).upgrade;
    const protocol: 'http1' | 'http2' = upgrade === undefined && (declared === 'http2' || (declared === 'detect' && st.grpc)) ? 'http2' : 'http1';
    const cluster = this.clusters.get(config, svc, dest.subset, port, protocol);
    st.upstreamCluster = cluster.name;

    // Upstream request headers.
    const headers: HeaderMap = {};
    const inHeaders = req.headers as IncomingHttpHeaders;
    for (const k in inHeaders) {
      const v = inHeaders[k];
      if (v === undefined || k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k)) continue;
      if (k === 'te' && v !== 'trailers') continue;
      headers[k] = v;
    }
    headers['traceparent'] = st.trace.traceparent;
    headers['x-request-id'] = st.requestId;
    headers['x-forwarded-proto'] = 'http';
    if (jwt !== undefined) {
      for (const h of jwt.removeHeaders) delete headers[h];
      for (const [k, v] of Object.entries(jwt.outputHeaders)) headers[k] = v;
    }
    applyHeaderOps(headers, route.requestHeaders);
    // A token in a query parameter whose rule does not forward it stays here (as Envoy).
    const target = jwt !== undefined && jwt.removeParams.length > 0 ? withoutParams(st.target, jwt.removeParams) : st.target;
    const path = route.rewrite !== undefined ? rewritePath(target, route.rewrite, match) : target;
    const authority = route.rewrite?.authority ?? st.authority;
    const meta = { forwardedFor: { host: st.down.sourceIp, port: st.down.sourcePort }, traceparent: st.trace.traceparent };
    const upgradeValue = upgrade === undefined ? undefined : firstHeader(req.headers.upgrade);
    const base: Omit<UpstreamRequest, 'writeBody'> = { method: st.method, path, authority, headers: headers as OutgoingHttpHeaders, protocol, meta, upgrade: upgradeValue };
    const hasBody = !body.complete || body.bytes > 0;

    for (const m of upgrade === undefined ? route.mirrors : []) {
      if (this.rand() * 100 >= m.percent) continue;
      const msvc = config.serviceByHost(m.destination.host);
      if (msvc === undefined) continue;
      const mport = m.destination.port ?? (msvc.ports.length === 1 ? (msvc.ports[0]?.port ?? port) : port);
      const mc = this.clusters.get(config, msvc, m.destination.subset, mport, protocol);
      sendMirror(this.clients, mc, { ...base, writeBody: hasBody ? (dst) => body.attach(dst, false) : undefined }, this.mirrorTimeoutMs, this.log);
    }

    const policy = route.retries ?? (this.defaultRetries ? DEFAULT_POLICY : undefined);
    const maxAttempts = upgrade !== undefined ? 1 : 1 + Math.max(0, policy?.attempts ?? 0);
    const retryOn = policy?.retryOn ?? [];
    cluster.budget.deposit();
    const hashKey = hashKeyOf(cluster.consistentHash, { header, sourceIp: st.down.sourceIp });
    const tried = new Set<string>();

    // Route timeout: the whole exchange, retries included.
    let timedOut = false;
    let onRouteTimeout: (() => void) | undefined;
    const routeTimer = route.timeoutMs !== undefined && route.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          onRouteTimeout?.();
        }, route.timeoutMs)
      : undefined;
    const clearRouteTimer = () => {
      if (routeTimer !== undefined) clearTimeout(routeTimer);
    };

    let lastFailure: { status: number; flag: ResponseFlag; detail: string } = { status: 503, flag: FLAG.NO_HEALTHY_UPSTREAM, detail: 'no healthy upstream' };
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (attempt > 0) {
        await sleep(backoffMs(attempt, policy?.backoffMs ?? 25, this.rand), signal);
        if (signal.aborted || timedOut) break;
      }
      const slot = cluster.limiter.tryAcquire() ?? await cluster.limiter.acquire(signal);
      if (!slot.ok) {
        if (signal.aborted) return this.endAborted(st, res, clearRouteTimer);
        clearRouteTimer();
        localReply(this.telemetry, st, res, 503, FLAG.UPSTREAM_OVERFLOW, `connection pool of ${cluster.name} is full (${cluster.limiter.inFlight} in flight, ${cluster.limiter.pending} pending)`);
        return;
      }
      if (timedOut || signal.aborted) {
        slot.release();
        break;
      }
      const ep = cluster.pick(tried, hashKey);
      if (ep === undefined) {
        slot.release();
        lastFailure = { status: 503, flag: FLAG.NO_HEALTHY_UPSTREAM, detail: `no healthy endpoint in ${cluster.name}` };
        break;
      }
      tried.add(ep.key);
      ep.active++;
      st.endpoint = ep;
      st.upstreamHost = ep.key;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        ep.active--;
        slot.release();
      };
      const sent = this.now();
      const ureq: UpstreamRequest = { method: base.method, path, authority, headers: base.headers, protocol, meta, upgrade: upgradeValue, writeBody: hasBody ? (dst) => body.attach(dst) : undefined };
      const result = await this.attempt(cluster, ep, ureq, policy?.perTryTimeoutMs, signal, (cancel) => {
        onRouteTimeout = cancel;
      });
      onRouteTimeout = undefined;
      if (signal.aborted || timedOut) {
        if (result.kind === 'response') result.res.abort();
        release();
        if (signal.aborted) return this.endAborted(st, res, clearRouteTimer);
        break;
      }
      const outcome: AttemptOutcome = result.kind === 'response'
        ? { kind: 'response', status: result.res.status, grpcStatus: grpcOf(result.res.headers) }
        : result.outcome;
      recordOutlier(cluster, ep, outcome);
      let retry = false;
      if (attempt < maxAttempts - 1 && isRetriable(retryOn, outcome) && body.replayable) {
        if (cluster.budget.tryWithdraw()) retry = true;
        else {
          this.metrics?.budgetExhausted.inc({ destination_service: svc.hostname });
          st.detail = 'retry budget exhausted';
        }
      }
      if (retry) {
        if (result.kind === 'response') result.res.abort();
        release();
        st.retries++;
        this.metrics?.retries.inc({ destination_service: svc.hostname });
        lastFailure = failureOf(outcome, ep.key);
        continue;
      }
      if (attempt > 0 && result.kind === 'failure') st.flags.add(FLAG.UPSTREAM_RETRY_LIMIT);
      if (result.kind === 'failure') {
        release();
        lastFailure = failureOf(outcome, ep.key);
        break;
      }
      // The final answer, even a 5xx: relayed as the upstream gave it.
      st.upstreamServiceTimeMs = this.now() - sent;
      if (result.res.switched !== undefined) {
        // The upstream switched protocols: a spliced connection now, the route timeout no longer applies.
        clearRouteTimer();
        spliceUpgrade(this.telemetry, st, res as H1ServerResponse, result.res, upgrade ?? [], route, release);
        return;
      }
      this.streamResponse(st, res, result.res, route, release, clearRouteTimer, (cancel) => {
        onRouteTimeout = cancel;
      });
      return;
    }
    clearRouteTimer();
    if (timedOut) {
      localReply(this.telemetry, st, res, 504, FLAG.UPSTREAM_REQUEST_TIMEOUT, `upstream request timeout after ${route.timeoutMs} ms`);
      return;
    }
    localReply(this.telemetry, st, res, lastFailure.status, lastFailure.flag === FLAG.UPSTREAM_RETRY_LIMIT ? undefined : lastFailure.flag, st.detail ?? lastFailure.detail);
  }

  private endAborted(st: RequestState, res: DownstreamResponse, clearRouteTimer: () => void): void {
    clearRouteTimer();
    st.flags.add(FLAG.DOWNSTREAM_TERMINATION);
    this.telemetry.finish(st, res);
  }

  /** One attempt, bounded by the per-try timeout and cancellable by the route timeout. */
  private attempt(
    cluster: Cluster,
    ep: ClusterEndpoint,
    ureq: UpstreamRequest,
    perTryMs: number | undefined,
    signal: CancelSignal,
    setCancel: (cancel: () => void) => void,
  ): Promise<{ kind: 'response'; res: UpstreamResponse } | { kind: 'failure'; outcome: Exclude<AttemptOutcome, { kind: 'response' }> }> {
    return new Promise((resolve) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (v: { kind: 'response'; res: UpstreamResponse } | { kind: 'failure'; outcome: Exclude<AttemptOutcome, { kind: 'response' }> }) => {
        if (done) {
          if (v.kind === 'response') v.res.abort();
          return;
        }
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onAbort = () => settle({ kind: 'failure', outcome: { kind: 'reset' } });
      signal.addEventListener('abort', onAbort, { once: true });
      setCancel(() => settle({ kind: 'failure', outcome: { kind: 'per-try-timeout' } }));
      if (perTryMs !== undefined && perTryMs > 0) timer = setTimeout(() => settle({ kind: 'failure', outcome: { kind: 'per-try-timeout' } }), perTryMs);
      this.clients.exchange(
        ep,
        ureq,
        (res) => settle({ kind: 'response', res }),
        (err: AttemptError) => {
          this.log.debug({ cluster: cluster.name, endpoint: ep.key, outcome: err.outcome.kind, reason: err.message }, 'upstream attempt failed');
          settle({ kind: 'failure', outcome: err.outcome });
        },
      );
    });
  }

  private streamResponse(
    st: RequestState,
    res: DownstreamResponse,
    up: UpstreamResponse,
    route: Route,
    release: () => void,
    clearRouteTimer: () => void,
    setCancel: (cancel: () => void) => void,
  ): void {
    const headers: HeaderMap = {};
    const upHeaders = up.headers;
    for (const k in upHeaders) {
      const v = upHeaders[k];
      if (v === undefined || k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k)) continue;
      headers[k] = v;
    }
    applyHeaderOps(headers, route.responseHeaders);
    st.status = up.status;
    const g = grpcOf(up.headers);
    if (g !== undefined) st.grpcStatus = String(g);
    let finished = false;
    const end = (ok: boolean) => {
      if (finished) return;
      finished = true;
      clearRouteTimer();
      release();
      if (!ok) {
        st.flags.add(FLAG.UPSTREAM_RESET);
        up.abort();
        res.destroy();
      }
      this.telemetry.finish(st, res);
    };
    // The route timeout still runs while the body streams: past it the exchange is cut.
    setCancel(() => {
      st.flags.add(FLAG.UPSTREAM_REQUEST_TIMEOUT);
      end(false);
    });
    // The client went away: the upstream exchange is cut too (never left open behind it).
    st.onClientGone = () => end(false);
    const h2res = res as Http2ServerResponse;
    // gRPC puts grpc-status in the first HEADERS only in a Trailers-Only response.
    const trailersOnly = up.endAfterHeaders || (st.grpc && up.headers['grpc-status'] !== undefined);
    if (trailersOnly && st.protocol === 'HTTP/2' && h2res.stream !== undefined && !h2res.stream.destroyed) {
      // Trailers-only (a gRPC status without a body) stays trailers-only.
      try {
        h2res.stream.respond({ ...(headers as OutgoingHttpHeaders), ':status': up.status }, { endStream: true });
      } catch {
        end(false);
        return;
      }
      up.body.resume();
      end(true);
      return;
    }
    try {
      res.writeHead(up.status, headers as OutgoingHttpHeaders);
    } catch (err) {
      this.log.warn({ requestId: st.requestId, reason: (err as Error).message }, 'upstream response headers cannot be relayed');
      end(false);
      return;
    }
    const whole = up.complete;
    if (whole !== undefined) {
      // The body came whole with the head (no trailers: it was not chunked): one write.
      st.bytesSent += whole.length;
      res.once('finish', () => end(true));
      if (whole.length > 0) res.end(whole);
      else res.end();
      return;
    }
    const out = res as H1ServerResponse;
    up.body.on('data', (c: Buffer) => {
      st.bytesSent += c.length;
      if (!out.write(c)) {
        up.body.pause();
        res.once('drain', () => up.body.resume());
      }
    });
    up.body.on('end', () => {
      const t = up.trailers();
      if (t !== undefined) {
        const trailers: Record<string, string> = {};
        for (const [k, v] of Object.entries(t)) if (v !== undefined && !k.startsWith(':')) trailers[k] = Array.isArray(v) ? v.join(',') : v;
        if (trailers['grpc-status'] !== undefined) st.grpcStatus = trailers['grpc-status'];
        if (Object.keys(trailers).length > 0) res.addTrailers(trailers);
      }
      res.end();
      res.once('finish', () => end(true));
    });
    up.body.on('error', () => end(false));
    up.body.on('close', () => {
      if (!up.body.readableEnded) end(false);
    });
  }
}

/** The `grpc-status` of an upstream head, when it carries one. */
/** `target` without the query parameters named in `names` (the rest kept byte for byte). */
function withoutParams(target: string, names: readonly string[]): string {
  const q = target.indexOf('?');
  if (q === -1) return target;
  const kept = target.slice(q + 1).split('&').filter((p) => {
    const eq = p.indexOf('=');
    const raw = eq === -1 ? p : p.slice(0, eq);
    let name = raw;
    try {
      name = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      // an undecodable name is no token parameter
    }
    return !names.includes(name);
  });
  return kept.length === 0 ? target.slice(0, q) : `${target.slice(0, q)}?${kept.join('&')}`;
}

function grpcOf(h: IncomingHttpHeaders): number | undefined {
  const v = h['grpc-status'];
  if (v === undefined) return undefined;
  const n = Number(Array.isArray(v) ? v[0] : v);
  return Number.isInteger(n) ? n : undefined;
}

/** What the client is told when the last attempt failed this way. */
function failureOf(outcome: AttemptOutcome, ep: string): { status: number; flag: ResponseFlag; detail: string } {
  switch (outcome.kind) {
    case 'connect-failure':
      return { status: 503, flag: FLAG.UPSTREAM_CONNECT_FAILURE, detail: `cannot connect to ${ep}` };
    case 'per-try-timeout':
      return { status: 504, flag: FLAG.UPSTREAM_REQUEST_TIMEOUT, detail: `${ep} did not answer within the per-try timeout` };
    case 'protocol-error':
      return { status: 502, flag: FLAG.UPSTREAM_PROTOCOL_ERROR, detail: `${ep} sent a malformed response` };
    case 'refused-stream':
    case 'reset':
      return { status: 503, flag: FLAG.UPSTREAM_RESET, detail: `${ep} reset the request` };
    case 'response':
      return { status: outcome.status, flag: FLAG.UPSTREAM_RETRY_LIMIT, detail: `upstream answered ${outcome.status}` };
  }
}

/** Tells the cluster's outlier detection how an attempt went. */
function recordOutlier(cluster: Cluster, ep: ClusterEndpoint, outcome: AttemptOutcome): void {
  const od = cluster.outlier;
  if (od === undefined) return;
  if (outcome.kind === 'response') {
    const s = outcome.status;
    od.record(ep.key, s === 502 || s === 503 || s === 504 ? 'gateway-error' : s >= 500 ? '5xx' : 'success', cluster.keys());
  } else {
    od.record(ep.key, outcome.kind === 'connect-failure' ? 'connect-failure' : 'gateway-error', cluster.keys());
  }
}

