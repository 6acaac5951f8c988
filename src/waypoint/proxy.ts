/**
 * The L7 request pipeline of the waypoint, independent of how requests arrive (HTTP/1.1 or
 * HTTP/2 front ends inside HBONE streams) and how endpoints are reached (connector). In Envoy's
 * filter order: trace context, JWT authentication (401), L7 authorization with the model's
 * evaluator (403, the deciding policy in the log), route match (404 NR), local rate limit (429
 * RL), fault injection (delay DI, abort FI), then redirect / direct response / forward with
 * weighted destinations, mirroring, connection-pool limits (503 UO), load balancing over
 * non-ejected endpoints, retries under a retry budget with per-try timeouts, and the route
 * timeout (504 UT). Every request ends with one access-log line and Istio's metrics.
 *
 * Invariants:
 * - A request sees one config version from start to end (`setConfig` swaps the whole value).
 * - Nothing is retried once response bytes went to the client, nor when the body can no longer
 *   be replayed; a retry never goes over the retry budget, and a retry avoids endpoints this
 *   request already tried when another is available.
 * - Every pool slot and in-flight count taken is given back exactly once, whatever happens to
 *   the client or the upstream (finally blocks and close handlers, never the happy path only).
 * - Local replies to gRPC requests are gRPC answers (HTTP 200, `grpc-status` mapped from the
 *   HTTP status) so gRPC clients see a status, not a protocol error.
 * - Request-level failures never throw out of `handle`; unexpected errors answer 500 and are
 *   logged.
 */
import { randomUUID } from 'node:crypto';
import type { OutgoingHttpHeaders, IncomingHttpHeaders } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { evaluateAuthorization } from '../model/authz/evaluate.js';
import type { Decision } from '../model/authz/types.js';
import type { Route, RouteMatch } from '../model/compile/types.js';
import { childLogger } from '../util/log.js';
import type { H1IncomingRequest, H1ServerResponse } from './h1-server.js';
import { AccessLog, logPath, type AccessLogEntry } from './access-log.js';
import { hashKeyOf } from './balancer.js';
import { BodyBuffer } from './body-buffer.js';
import { ClusterManager, type Cluster, type ClusterEndpoint } from './cluster.js';
import { portProtocol, type ServiceBinding, type WaypointConfig, type WaypointServiceInfo } from './config.js';
import { RequestCancel, type CancelSignal } from './cancel.js';
import { decideFault, sleep } from './fault.js';
import { FLAG, formatFlags, type ResponseFlag } from './flags.js';
import { JwtAuthenticator, type JwtAuthenticatorOptions, type JwtIdentity, type JwtResult } from './jwt.js';
import { waypointMetrics, type IstioRequestLabels, type WaypointMetrics } from './metrics.js';
import { sendMirror } from './mirror.js';
import type { RequestSeries } from './request-metrics.js';
import { LocalRateLimiter } from './rate-limit.js';
import { backoffMs, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_ON, isRetriable, type AttemptOutcome, type RetryBudgetOptions } from './retry.js';
import { applyHeaderOps, pickDestination, redirectLocation, rewritePath, type HeaderMap } from './route-action.js';
import { selectRoute, splitPath, type RouteChoice } from './router.js';
import { traceFor, type TraceContext } from './trace.js';
import { AttemptError, UpstreamClients, type Connector, type UpstreamRequest, type UpstreamResponse } from './upstream.js';
import { workloadName } from '../metrics/workload-name.js';

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

export interface WaypointProxyOptions {
  /** Opens streams to endpoints (HBONE or TCP). */
  connector: Connector;
  config: WaypointConfig;
  /** `namespace/name` of the waypoint, for logs (default `-`). */
  name?: string;
  /** Registry for Istio and ambit metrics (default: none). */
  registry?: Registry;
  logger?: Logger;
  /** Access log (default: a pino line per request under `waypoint.access`). */
  accessLog?: AccessLog;
  /** Retry budget per destination service (defaults: ratio 0.2, 10/s, 10 s window). */
  retryBudget?: RetryBudgetOptions;
  /** Request body kept for retries and mirrors, bytes (default 262,144). */
  bodyBufferBytes?: number;
  /** Apply Istio's default retry policy (2 attempts on connect-failure, refused-stream, 503) to routes without one (default true). */
  defaultRetries?: boolean;
  /** Mirror request deadline, ms (default 10,000). */
  mirrorTimeoutMs?: number;
  /** Idle upstream keep-alive connections close after this many ms (default 60,000). */
  upstreamIdleTimeoutMs?: number;
  /** JWT validation options (defaults in jwt.ts). */
  jwt?: JwtAuthenticatorOptions;
  /** Random source in [0,1) for splits, faults, balancing (default Math.random). */
  rand?: () => number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
}

/** What one request accumulates for its log line and metrics. */
interface RequestState {
  readonly start: number;
  startIso: string;
  readonly method: string;
  readonly target: string;
  readonly authority: string;
  readonly protocol: string;
  readonly grpc: boolean;
  readonly trace: TraceContext;
  readonly requestId: string;
  readonly down: DownstreamInfo;
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
}

/** What a connection's last request was counted under (see `series`). */
interface SeriesMemo {
  readonly config: WaypointConfig;
  readonly service: WaypointServiceInfo | undefined;
  readonly endpoint: ClusterEndpoint | undefined;
  readonly status: number;
  readonly grpcStatus: string;
  readonly grpc: boolean;
  readonly flags: string;
  readonly series: RequestSeries;
}

/** The outcome of the admission steps shared by plain requests and upgrades. */
type Admission =
  | { readonly ok: false; readonly status: number; readonly flag: ResponseFlag | undefined; readonly detail: string; readonly headers?: OutgoingHttpHeaders }
  | { readonly ok: true; readonly binding: ServiceBinding; readonly choice: RouteChoice; readonly jwt: JwtIdentity | undefined };

const NO_JWT: JwtResult = { kind: 'none' };

/** Istio's retry policy for routes without one (when `defaultRetries` is on). */
const DEFAULT_POLICY: NonNullable<Route['retries']> = { attempts: DEFAULT_RETRY_ATTEMPTS, perTryTimeoutMs: undefined, retryOn: DEFAULT_RETRY_ON, backoffMs: undefined };

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

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

const LOCAL_TEXT: Partial<Record<ResponseFlag, string>> = {
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

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function routeName(r: Route): string {
  return `${r.source.kind}/${r.source.namespace}/${r.source.name}${r.name !== undefined ? `#${r.name}` : ''}@${r.path}`;
}

/** The route a service without routes uses: everything to the service itself. */
function defaultRoute(svc: WaypointServiceInfo): Route {
  return {
    source: { group: '', kind: 'Service', namespace: svc.namespace, name: svc.name },
    path: 'default',
    name: undefined,
    matches: [],
    action: { type: 'forward', destinations: [{ host: svc.hostname, subset: undefined, port: undefined, weight: 100 }] },
    timeoutMs: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: [],
    rewrite: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
  };
}

export class WaypointProxy {
  private config: WaypointConfig;
  private readonly log: Logger;
  private readonly metrics: WaypointMetrics | undefined;
  private readonly accessLog: AccessLog;
  private readonly clusters: ClusterManager;
  private readonly clients: UpstreamClients;
  private readonly limiter: LocalRateLimiter;
  private readonly authenticators = new WeakMap<ServiceBinding, JwtAuthenticator>();
  private readonly jwksCaches = new Map<string, unknown>();
  private readonly defaultRoutes = new WeakMap<WaypointServiceInfo, Route>();
  private readonly seriesCache = new Map<string, RequestSeries>();
  /** The series each connection's last request went to (labels of one connection rarely vary). */
  private readonly lastSeries = new WeakMap<DownstreamInfo, SeriesMemo>();
  private seriesConfig: WaypointConfig | undefined;
  private readonly rand: () => number;
  private readonly now: () => number;
  private readonly bodyLimit: number;
  private readonly name: string;

  constructor(private readonly o: WaypointProxyOptions) {
    this.config = o.config;
    this.name = o.name ?? '-';
    this.log = o.logger ?? childLogger('waypoint.proxy');
    this.metrics = o.registry === undefined ? undefined : waypointMetrics(o.registry);
    this.accessLog = o.accessLog ?? new AccessLog();
    this.rand = o.rand ?? Math.random;
    this.now = o.now ?? Date.now;
    this.bodyLimit = o.bodyBufferBytes ?? 256 * 1024;
    this.clusters = new ClusterManager({
      ...(o.retryBudget !== undefined ? { retryBudget: o.retryBudget } : {}),
      now: this.now,
      rand: this.rand,
      onEject: (c, key, until) => {
        this.metrics?.ejections.inc({ destination_service: c.service.hostname });
        this.log.warn({ cluster: c.name, endpoint: key, ejectedForMs: until - this.now() }, 'outlier detection ejected an endpoint');
      },
    });
    this.clients = new UpstreamClients({ connector: o.connector, ...(o.upstreamIdleTimeoutMs !== undefined ? { idleTimeoutMs: o.upstreamIdleTimeoutMs } : {}) });
    this.limiter = new LocalRateLimiter(this.now);
  }

  /** Replaces the configuration; requests in flight finish with the one they started with. */
  setConfig(config: WaypointConfig): void {
    this.config = config;
    for (const b of config.bound()) this.authenticator(b);
  }

  get currentConfig(): WaypointConfig {
    return this.config;
  }

  /** Closes upstream connections. */
  async close(): Promise<void> {
    await this.clients.close();
  }

  private authenticator(b: ServiceBinding): JwtAuthenticator {
    let a = this.authenticators.get(b);
    if (a === undefined) {
      const rules = b.requestAuthentication.flatMap((s) => s.jwtRules ?? []);
      a = new JwtAuthenticator(rules, { ...(this.o.jwt ?? {}), logger: this.log }, this.jwksCaches);
      for (const p of a.problems) this.log.error({ service: b.service.key, reason: p }, 'RequestAuthentication has an unusable JWKS; tokens of its issuer are refused');
      this.authenticators.set(b, a);
    }
    return a;
  }

  private bindingFor(config: WaypointConfig, down: DownstreamInfo, authority: string): ServiceBinding | undefined {
    const byAddr = config.bindingByAddress(down.destinationIp, down.destinationPort);
    if (byAddr !== undefined) return byAddr;
    const host = authority.replace(/:\d+$/, '').toLowerCase();
    const svc = config.serviceByHost(host);
    return svc === undefined ? undefined : config.binding(svc.key);
  }

  /** JWT, authorization, route match: what plain requests and upgrades share. */
  /** Settles synchronously (no promise) unless a JWT has to be validated. */
  private admit(config: WaypointConfig, req: DownstreamRequest, st: RequestState, header: (n: string) => string | undefined): Admission | Promise<Admission> {
    const binding = this.bindingFor(config, st.down, st.authority);
    if (binding === undefined) {
      return { ok: false, status: 404, flag: FLAG.NO_ROUTE, detail: `no service bound to waypoint ${this.name} at ${st.down.destinationIp}:${st.down.destinationPort} (authority ${st.authority})` };
    }
    st.service = binding.service;
    const authn = this.authenticator(binding);
    if (authn.empty) return this.authorizeAndRoute(req, st, header, binding, authn, NO_JWT);
    const { query } = splitPath(st.target);
    return authn.authenticate({ header, param: (n) => query.get(n) }).then((jwt) => this.authorizeAndRoute(req, st, header, binding, authn, jwt));
  }

  /** L7 authorization, route match and rate limit, once the JWT (if any) is known. */
  private authorizeAndRoute(req: DownstreamRequest, st: RequestState, header: (n: string) => string | undefined, binding: ServiceBinding, authn: JwtAuthenticator, jwt: JwtResult): Admission {
    if (jwt.kind === 'invalid') {
      return { ok: false, status: 401, flag: undefined, detail: `Jwt verification fails: ${jwt.reason}`, headers: { 'www-authenticate': 'Bearer error="invalid_token"' } };
    }
    const identity = jwt.kind === 'valid' ? jwt.identity : undefined;
    if (binding.authorization.length > 0) {
      const headers = req.headers as Record<string, string | string[] | undefined>;
      const decision: Decision = evaluateAuthorization(
        binding.authorization,
        {
          source: { ...(st.down.peerIdentity !== undefined ? { principal: st.down.peerIdentity } : {}), ip: st.down.sourceIp },
          destination: { ip: st.down.destinationIp, port: st.down.destinationPort, namespace: binding.service.namespace },
          request: {
            method: st.method,
            path: st.target,
            host: st.authority,
            headers,
            ...(identity !== undefined ? { principal: identity.principal, audiences: identity.audiences, claims: identity.claims, ...(identity.presenter !== undefined ? { presenter: identity.presenter } : {}) } : {}),
          },
        },
        { layer: 'L7' },
      );
      if (!decision.allow) {
        st.policy = decision.policy === undefined ? undefined : `${decision.policy.namespace}/${decision.policy.name}`;
        // Denied and no credentials although the service authenticates requests: 401 asks the
        // client to authenticate (RFC 9110 §15.5.2); Istio answers 403 here.
        const unauthenticated = identity === undefined && !authn.empty;
        this.log.warn({ service: binding.service.key, policy: st.policy ?? '-', code: decision.code, reason: decision.reason, method: st.method, path: logPath(st.target), source: st.down.peerIdentity ?? st.down.sourceIp, requestId: st.requestId }, 'request denied by authorization policy');
        return unauthenticated
          ? { ok: false, status: 401, flag: FLAG.RBAC_DENIED, detail: `${decision.reason} (no valid JWT)`, headers: { 'www-authenticate': 'Bearer' } }
          : { ok: false, status: 403, flag: FLAG.RBAC_DENIED, detail: decision.reason };
      }
    }
    let choice: RouteChoice | undefined;
    if (binding.routes.length === 0) {
      let r = this.defaultRoutes.get(binding.service);
      if (r === undefined) {
        r = defaultRoute(binding.service);
        this.defaultRoutes.set(binding.service, r);
      }
      choice = { route: r, index: 0, match: undefined };
    } else {
      choice = selectRoute(binding.routes, { method: st.method, path: st.target, authority: st.authority, scheme: 'http', header, port: st.down.destinationPort });
    }
    if (choice === undefined) return { ok: false, status: 404, flag: FLAG.NO_ROUTE, detail: `no route of ${binding.service.key} matches ${st.method} ${logPath(st.target)}` };
    st.route = routeName(choice.route);
    const rl = this.limiter.check(binding.rateLimits, choice.route.name);
    if (!rl.allowed) {
      st.rateLimit = rl.limit;
      return { ok: false, status: rl.status ?? 429, flag: FLAG.RATE_LIMITED, detail: `rate limited by LocalRateLimit ${rl.limit ?? '-'}` };
    }
    return { ok: true, binding, choice, jwt: identity };
  }

  /** Handles one HTTP request from a front end. Never throws. */
  async handle(req: DownstreamRequest, res: DownstreamResponse, down: DownstreamInfo): Promise<void> {
    const config = this.config;
    const st = this.newState(req, down);
    const header = (n: string) => firstHeader(req.headers[n]);
    const abort = new RequestCancel();
    res.on('close', () => {
      if (!res.writableFinished) {
        st.flags.add(FLAG.DOWNSTREAM_TERMINATION);
        abort.cancel();
        this.finish(st, res);
      }
    });
    const hasBody = this.hasBody(req);
    const body = new BodyBuffer(req, this.bodyLimit, hasBody);
    st.body = body;
    try {
      const pending = this.admit(config, req, st, header);
      const adm = pending instanceof Promise ? await pending : pending;
      if (!adm.ok) {
        this.localReply(st, res, adm.status, adm.flag, adm.detail, adm.headers);
        return;
      }
      const route = adm.choice.route;
      const fault = decideFault(route.fault, this.rand);
      if (fault.delayMs > 0) {
        st.flags.add(FLAG.FAULT_DELAY);
        await sleep(fault.delayMs, abort);
        if (abort.aborted) return;
      }
      if (fault.abortStatus !== undefined) {
        this.localReply(st, res, fault.abortStatus, FLAG.FAULT_ABORT, 'fault filter abort');
        return;
      }
      const action = route.action;
      if (action.type === 'redirect') {
        const location = redirectLocation(action, { scheme: 'http', authority: st.authority, path: st.target }, adm.choice.match);
        this.localReply(st, res, action.status, undefined, 'redirect', { location });
        return;
      }
      if (action.type === 'direct-response') {
        this.localReply(st, res, action.status, undefined, action.body ?? '', {}, true);
        return;
      }
      await this.forward(config, adm.binding, route, adm.choice.match, adm.jwt, req, res, st, body, header, abort);
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message, stack: (err as Error).stack }, requestId: st.requestId }, 'unexpected error handling a request');
      if (!res.headersSent) this.localReply(st, res, 500, undefined, 'internal error');
      else res.destroy();
    }
  }

  private newState(req: DownstreamRequest, down: DownstreamInfo): RequestState {
    const h = req.headers;
    const ct = firstHeader(h['content-type']) ?? '';
    return {
      start: this.now(),
      startIso: '',
      method: req.method ?? 'GET',
      target: req.url ?? '/',
      authority: firstHeader(h[':authority']) ?? firstHeader(h.host) ?? '',
      protocol: req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      grpc: ct.startsWith('application/grpc'),
      trace: traceFor(h['traceparent']),
      requestId: firstHeader(h['x-request-id']) ?? randomUUID(),
      down,
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
      body: undefined,
    };
  }

  private hasBody(req: DownstreamRequest): boolean {
    if (req.httpVersion === '2.0') return !(req as Http2ServerRequest).stream.endAfterHeaders;
    const cl = req.headers['content-length'];
    if (cl !== undefined) return cl !== '0';
    return req.headers['transfer-encoding'] !== undefined;
  }

  /** An answer made by the waypoint itself. */
  private localReply(st: RequestState, res: DownstreamResponse, status: number, flag: ResponseFlag | undefined, detail: string, headers: OutgoingHttpHeaders = {}, rawBody = false): void {
    if (flag !== undefined) st.flags.add(flag);
    st.detail = detail;
    st.status = status;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      this.finish(st, res);
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
        this.finish(st, res);
        return;
      }
      st.status = 200;
      res.writeHead(200, h);
      res.end();
      this.finish(st, res);
      return;
    }
    const body = Buffer.from(text);
    res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'content-length': String(body.length), 'x-request-id': st.requestId });
    res.end(body);
    st.bytesSent += body.length;
    res.once('finish', () => this.finish(st, res));
  }

  private async forward(
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
      this.localReply(st, res, 500, undefined, `route ${st.route} has no destination`);
      return;
    }
    const svc = dest.host === binding.service.hostname ? binding.service : config.serviceByHost(dest.host);
    if (svc === undefined) {
      this.localReply(st, res, 503, FLAG.NO_HEALTHY_UPSTREAM, `destination ${dest.host} is not a known service`);
      return;
    }
    const port = dest.port ?? (svc === binding.service ? st.down.destinationPort : (svc.ports.length === 1 ? svc.ports[0]?.port : undefined) ?? st.down.destinationPort);
    const sp = svc.ports.find((p) => p.port === port);
    const declared = sp === undefined ? 'detect' : portProtocol(sp);
    const protocol: 'http1' | 'http2' = declared === 'http2' || (declared === 'detect' && st.grpc) ? 'http2' : 'http1';
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
      if (!jwt.source.forward && jwt.source.header !== undefined) delete headers[jwt.source.header];
      for (const [k, v] of Object.entries(jwt.outputHeaders)) headers[k] = v;
    }
    applyHeaderOps(headers, route.requestHeaders);
    const path = route.rewrite !== undefined ? rewritePath(st.target, route.rewrite, match) : st.target;
    const authority = route.rewrite?.authority ?? st.authority;
    const meta = { forwardedFor: { host: st.down.sourceIp, port: st.down.sourcePort }, traceparent: st.trace.traceparent };
    const base: Omit<UpstreamRequest, 'writeBody'> = { method: st.method, path, authority, headers: headers as OutgoingHttpHeaders, protocol, meta };
    const hasBody = !body.complete || body.bytes > 0;

    for (const m of route.mirrors) {
      if (this.rand() * 100 >= m.percent) continue;
      const msvc = config.serviceByHost(m.destination.host);
      if (msvc === undefined) continue;
      const mport = m.destination.port ?? (msvc.ports.length === 1 ? (msvc.ports[0]?.port ?? port) : port);
      const mc = this.clusters.get(config, msvc, m.destination.subset, mport, protocol);
      sendMirror(this.clients, mc, { ...base, writeBody: hasBody ? (dst) => body.attach(dst, false) : undefined }, this.o.mirrorTimeoutMs ?? 10_000, this.log);
    }

    const policy = route.retries ?? (this.o.defaultRetries === false ? undefined : DEFAULT_POLICY);
    const maxAttempts = 1 + Math.max(0, policy?.attempts ?? 0);
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
        this.localReply(st, res, 503, FLAG.UPSTREAM_OVERFLOW, `connection pool of ${cluster.name} is full (${cluster.limiter.inFlight} in flight, ${cluster.limiter.pending} pending)`);
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
      const ureq: UpstreamRequest = { method: base.method, path, authority, headers: base.headers, protocol, meta, writeBody: hasBody ? (dst) => body.attach(dst) : undefined };
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
      this.recordOutlier(cluster, ep, outcome);
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
      this.streamResponse(st, res, result.res, route, release, clearRouteTimer, (cancel) => {
        onRouteTimeout = cancel;
      });
      return;
    }
    clearRouteTimer();
    if (timedOut) {
      this.localReply(st, res, 504, FLAG.UPSTREAM_REQUEST_TIMEOUT, `upstream request timeout after ${route.timeoutMs} ms`);
      return;
    }
    this.localReply(st, res, lastFailure.status, lastFailure.flag === FLAG.UPSTREAM_RETRY_LIMIT ? undefined : lastFailure.flag, st.detail ?? lastFailure.detail);
  }

  private endAborted(st: RequestState, res: DownstreamResponse, clearRouteTimer: () => void): void {
    clearRouteTimer();
    st.flags.add(FLAG.DOWNSTREAM_TERMINATION);
    this.finish(st, res);
  }

  private recordOutlier(cluster: Cluster, ep: ClusterEndpoint, outcome: AttemptOutcome): void {
    const od = cluster.outlier;
    if (od === undefined) return;
    if (outcome.kind === 'response') {
      const s = outcome.status;
      od.record(ep.key, s === 502 || s === 503 || s === 504 ? 'gateway-error' : s >= 500 ? '5xx' : 'success', cluster.keys());
    } else {
      od.record(ep.key, outcome.kind === 'connect-failure' ? 'connect-failure' : 'gateway-error', cluster.keys());
    }
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
      this.finish(st, res);
    };
    // The route timeout still runs while the body streams: past it the exchange is cut.
    setCancel(() => {
      st.flags.add(FLAG.UPSTREAM_REQUEST_TIMEOUT);
      end(false);
    });
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

  /** Writes the access-log line and metrics once per request. */
  private finish(st: RequestState, res: DownstreamResponse): void {
    if (st.logged) return;
    st.logged = true;
    if (st.status === 0) st.status = res.headersSent ? res.statusCode : 0;
    if (st.body !== undefined) st.bytesReceived = st.body.bytes;
    const durationMs = this.now() - st.start;
    if (this.accessLog.enabled) this.writeEntry(st, durationMs);
    if (this.metrics !== undefined) this.series(st).record(durationMs, st.bytesReceived, st.bytesSent);
  }

  private writeEntry(st: RequestState, durationMs: number): void {
    st.startIso = new Date(Date.now() - durationMs).toISOString();
    const entry: AccessLogEntry = {
      startTime: st.startIso,
      method: st.method,
      path: logPath(st.target),
      protocol: st.protocol,
      responseCode: st.status,
      responseFlags: formatFlags(st.flags),
      route: st.route,
      upstreamHost: st.upstreamHost,
      upstreamCluster: st.upstreamCluster,
      retries: st.retries,
      durationMs,
      upstreamServiceTimeMs: st.upstreamServiceTimeMs,
      bytesReceived: st.bytesReceived,
      bytesSent: st.bytesSent,
      authority: st.authority,
      sourcePrincipal: st.down.peerIdentity ?? '-',
      sourceAddress: `${st.down.sourceIp}:${st.down.sourcePort}`,
      userAgent: '-',
      requestId: st.requestId,
      traceId: st.trace.traceId,
      ...(st.detail !== undefined ? { detail: st.detail } : {}),
      ...(st.policy !== undefined ? { policy: st.policy } : {}),
      ...(st.rateLimit !== undefined ? { rateLimit: st.rateLimit } : {}),
    };
    this.accessLog.write(entry);
  }

  /**
   * The request series of a label combination, found by the few values that vary (the 25-label
   * object is built once per combination, not per request).
   */
  private series(st: RequestState): RequestSeries {
    // Requests on one connection mostly land in the series of the one before: compared by
    // identity, without building the key string.
    const flags = formatFlags(st.flags);
    const memo = this.lastSeries.get(st.down);
    if (memo !== undefined && memo.config === this.config && memo.service === st.service && memo.endpoint === st.endpoint && memo.status === st.status && memo.grpcStatus === st.grpcStatus && memo.grpc === st.grpc && memo.flags === flags) {
      return memo.series;
    }
    const series = this.seriesByKey(st, flags);
    this.lastSeries.set(st.down, { config: this.config, service: st.service, endpoint: st.endpoint, status: st.status, grpcStatus: st.grpcStatus, grpc: st.grpc, flags, series });
    return series;
  }

  private seriesByKey(st: RequestState, flags: string): RequestSeries {
    const key = `${st.down.peerIdentity ?? ''}|${st.service?.key ?? ''}|${st.endpoint?.workload ?? ''}|${st.endpoint?.identity ?? ''}|${st.status}|${st.grpcStatus}|${st.grpc ? 1 : 0}|${flags}`;
    if (this.seriesConfig !== this.config) {
      // Labels derive from the config (workload names and labels): look them up again.
      this.seriesCache.clear();
      this.seriesConfig = this.config;
    }
    let s = this.seriesCache.get(key);
    if (s === undefined) {
      s = (this.metrics as WaypointMetrics).requests.get(this.labels(st));
      if (this.seriesCache.size < 10_000) this.seriesCache.set(key, s);
    }
    return s;
  }

  private labels(st: RequestState): IstioRequestLabels {
    const config = this.config;
    const src = st.down.peerIdentity;
    const m = src === undefined ? null : /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(src);
    const w = st.endpoint === undefined ? undefined : config.workload(st.endpoint.workload);
    const from = config.sourceWorkload(st.down.sourceIp, src);
    const svc = st.service;
    const app = w?.labels['app.kubernetes.io/name'] ?? w?.labels['app'] ?? 'unknown';
    const version = w?.labels['app.kubernetes.io/version'] ?? w?.labels['version'] ?? 'unknown';
    const fromApp = from?.labels['app.kubernetes.io/name'] ?? from?.labels['app'] ?? 'unknown';
    return {
      reporter: 'waypoint',
      source_workload: workloadName(from),
      source_workload_namespace: from?.namespace ?? m?.[1] ?? 'unknown',
      source_principal: src ?? 'unknown',
      source_app: fromApp,
      source_version: from?.labels['app.kubernetes.io/version'] ?? from?.labels['version'] ?? 'unknown',
      source_canonical_service: from?.labels['service.istio.io/canonical-name'] ?? fromApp,
      source_canonical_revision: 'latest',
      source_cluster: 'Kubernetes',
      destination_workload: workloadName(w),
      destination_workload_namespace: w?.namespace ?? svc?.namespace ?? 'unknown',
      destination_principal: st.endpoint?.identity ?? 'unknown',
      destination_app: app,
      destination_version: version,
      destination_service: svc?.hostname ?? 'unknown',
      destination_service_name: svc?.name ?? 'unknown',
      destination_service_namespace: svc?.namespace ?? 'unknown',
      destination_canonical_service: w?.labels['service.istio.io/canonical-name'] ?? app,
      destination_canonical_revision: w?.labels['service.istio.io/canonical-revision'] ?? (version === 'unknown' ? 'latest' : version),
      destination_cluster: 'Kubernetes',
      request_protocol: st.grpc ? 'grpc' : 'http',
      response_code: String(st.status),
      grpc_response_status: st.grpcStatus,
      response_flags: formatFlags(st.flags),
      connection_security_policy: src === undefined ? 'none' : 'mutual_tls',
    };
  }

  /**
   * Handles an HTTP/1.1 Upgrade (WebSocket): the same admission as any request, then the
   * request head goes to an endpoint and the two connections are spliced byte for byte.
   */
  async handleUpgrade(req: H1IncomingRequest, socket: Duplex, head: Buffer, down: DownstreamInfo): Promise<void> {
    const config = this.config;
    const st = this.newState(req, down);
    const header = (n: string) => firstHeader(req.headers[n]);
    const reject = (status: number, flag: ResponseFlag | undefined, detail: string, extra: OutgoingHttpHeaders = {}) => {
      if (flag !== undefined) st.flags.add(flag);
      st.status = status;
      st.detail = detail;
      const text = (flag !== undefined ? LOCAL_TEXT[flag] : undefined) ?? detail;
      const lines = [`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : status === 401 ? 'Unauthorized' : status === 404 ? 'Not Found' : status === 429 ? 'Too Many Requests' : 'Service Unavailable'}`, 'content-type: text/plain', `content-length: ${Buffer.byteLength(text)}`, 'connection: close'];
      for (const [k, v] of Object.entries(extra)) lines.push(`${k}: ${String(v)}`);
      socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
      this.logUpgrade(st);
    };
    try {
      const adm = await this.admit(config, req, st, header);
      if (!adm.ok) return reject(adm.status, adm.flag, adm.detail, adm.headers);
      const action = adm.choice.route.action;
      if (action.type !== 'forward') return reject(404, FLAG.NO_ROUTE, 'upgrade requests can only be forwarded');
      const dest = pickDestination(action.destinations, this.rand());
      const svc = dest === undefined ? undefined : config.serviceByHost(dest.host) ?? (dest.host === adm.binding.service.hostname ? adm.binding.service : undefined);
      if (dest === undefined || svc === undefined) return reject(503, FLAG.NO_HEALTHY_UPSTREAM, 'no destination');
      const port = dest.port ?? st.down.destinationPort;
      const cluster = this.clusters.get(config, svc, dest.subset, port, 'http1');
      st.upstreamCluster = cluster.name;
      const ep = cluster.pick(new Set(), undefined);
      if (ep === undefined) return reject(503, FLAG.NO_HEALTHY_UPSTREAM, `no healthy endpoint in ${cluster.name}`);
      st.upstreamHost = ep.key;
      st.endpoint = ep;
      let upstream: Duplex;
      try {
        upstream = await this.o.connector.connect(ep, { forwardedFor: { host: st.down.sourceIp, port: st.down.sourcePort }, traceparent: st.trace.traceparent });
      } catch (err) {
        return reject(503, FLAG.UPSTREAM_CONNECT_FAILURE, (err as Error).message);
      }
      const route = adm.choice.route;
      const headers: HeaderMap = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'host') headers[k] = v;
      headers['traceparent'] = st.trace.traceparent;
      headers['x-request-id'] = st.requestId;
      applyHeaderOps(headers, route.requestHeaders);
      headers['connection'] = 'Upgrade';
      const path = route.rewrite !== undefined ? rewritePath(st.target, route.rewrite, adm.choice.match) : st.target;
      const lines = [`${st.method} ${path} HTTP/1.1`, `host: ${route.rewrite?.authority ?? st.authority}`];
      for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) lines.push(`${k}: ${x}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.once('data', (first: Buffer) => {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(first.subarray(0, 32).toString('latin1'));
        st.status = m === null ? 502 : Number(m[1]);
      });
      pipeBothWays(socket, upstream, ep, (sent, received) => {
        st.bytesSent += sent;
        st.bytesReceived += received;
        this.logUpgrade(st);
      });
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message }, requestId: st.requestId }, 'unexpected error handling an upgrade');
      socket.destroy();
    }
  }

  /**
   * A TCP service (or a connection that is not HTTP): L4 authorization with the model's
   * evaluator, an endpoint by the destination's balancer, and a byte-for-byte splice.
   */
  async handleTcp(socket: Duplex, down: DownstreamInfo): Promise<void> {
    const config = this.config;
    const binding = config.bindingByAddress(down.destinationIp, down.destinationPort);
    const started = this.now();
    const done = (fields: Record<string, unknown>, msg: string) => this.log.info({ source: down.peerIdentity ?? down.sourceIp, destination: `${down.destinationIp}:${down.destinationPort}`, durationMs: this.now() - started, ...fields }, msg);
    if (binding === undefined) {
      socket.destroy();
      done({ reason: 'no service at this address' }, 'refused TCP connection');
      return;
    }
    if (binding.authorization.length > 0) {
      const d = evaluateAuthorization(binding.authorization, {
        source: { ...(down.peerIdentity !== undefined ? { principal: down.peerIdentity } : {}), ip: down.sourceIp },
        destination: { ip: down.destinationIp, port: down.destinationPort, namespace: binding.service.namespace },
      }, { layer: 'L4' });
      if (!d.allow) {
        socket.destroy();
        done({ policy: d.policy === undefined ? '-' : `${d.policy.namespace}/${d.policy.name}`, reason: d.reason }, 'TCP connection denied by authorization policy');
        return;
      }
    }
    const cluster = this.clusters.get(config, binding.service, undefined, down.destinationPort, 'http1');
    const tried = new Set<string>();
    for (let i = 0; i < Math.max(1, cluster.endpoints.length) && i < 3; i++) {
      const ep = cluster.pick(tried, undefined);
      if (ep === undefined) break;
      tried.add(ep.key);
      let upstream: Duplex;
      try {
        upstream = await this.o.connector.connect(ep, { forwardedFor: { host: down.sourceIp, port: down.sourcePort } });
      } catch (err) {
        cluster.outlier?.record(ep.key, 'connect-failure', cluster.keys());
        this.log.debug({ endpoint: ep.key, reason: (err as Error).message }, 'TCP connect failed');
        continue;
      }
      pipeBothWays(socket, upstream, ep, (sent, received) => {
        done({ upstream: ep.key, cluster: cluster.name, bytesSent: sent, bytesReceived: received }, 'TCP connection closed');
      });
      return;
    }
    socket.destroy();
    done({ cluster: cluster.name, reason: 'no endpoint could be connected' }, 'refused TCP connection');
  }

  private logUpgrade(st: RequestState): void {
    if (st.logged) return;
    st.logged = true;
    st.startIso = new Date(st.start).toISOString();
    const entry: AccessLogEntry = {
      startTime: st.startIso, method: st.method, path: logPath(st.target), protocol: st.protocol, responseCode: st.status,
      responseFlags: formatFlags(st.flags), route: st.route, upstreamHost: st.upstreamHost, upstreamCluster: st.upstreamCluster,
      retries: 0, durationMs: this.now() - st.start, upstreamServiceTimeMs: -1, bytesReceived: st.bytesReceived, bytesSent: st.bytesSent,
      authority: st.authority, sourcePrincipal: st.down.peerIdentity ?? '-', sourceAddress: `${st.down.sourceIp}:${st.down.sourcePort}`,
      userAgent: '-', requestId: st.requestId, traceId: st.trace.traceId,
      ...(st.detail !== undefined ? { detail: st.detail } : {}), ...(st.policy !== undefined ? { policy: st.policy } : {}),
    };
    this.accessLog.write(entry);
    if (this.metrics !== undefined) this.series(st).record(entry.durationMs, st.bytesReceived, st.bytesSent);
  }
}

function grpcOf(h: IncomingHttpHeaders): number | undefined {
  const v = h['grpc-status'];
  if (v === undefined) return undefined;
  const n = Number(Array.isArray(v) ? v[0] : v);
  return Number.isInteger(n) ? n : undefined;
}

function failureOf(outcome: AttemptOutcome, ep: string): { status: number; flag: ResponseFlag; detail: string } {
  switch (outcome.kind) {
    case 'connect-failure':
      return { status: 503, flag: FLAG.UPSTREAM_CONNECT_FAILURE, detail: `cannot connect to ${ep}` };
    case 'per-try-timeout':
      return { status: 504, flag: FLAG.UPSTREAM_REQUEST_TIMEOUT, detail: `${ep} did not answer within the per-try timeout` };
    case 'refused-stream':
    case 'reset':
      return { status: 503, flag: FLAG.UPSTREAM_RESET, detail: `${ep} reset the request` };
    case 'response':
      return { status: outcome.status, flag: FLAG.UPSTREAM_RETRY_LIMIT, detail: `upstream answered ${outcome.status}` };
  }
}

/**
 * Pipes a downstream and an upstream stream both ways for an upgraded or TCP connection, counting
 * the endpoint as active meanwhile. The first error or close on either side ends both, and
 * `closed` runs once with the bytes sent to the client and received from it.
 */
function pipeBothWays(socket: Duplex, upstream: Duplex, ep: { active: number }, closed: (sent: number, received: number) => void): void {
  ep.active++;
  let sent = 0;
  let received = 0;
  let done = false;
  const close = () => {
    if (done) return;
    done = true;
    ep.active--;
    socket.destroy();
    upstream.destroy();
    closed(sent, received);
  };
  upstream.on('data', (c: Buffer) => { sent += c.length; });
  socket.on('data', (c: Buffer) => { received += c.length; });
  upstream.on('error', close);
  socket.on('error', close);
  upstream.on('close', close);
  socket.on('close', close);
  upstream.pipe(socket);
  socket.pipe(upstream);
}
