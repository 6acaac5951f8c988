/**
 * The L7 request pipeline of the waypoint, independent of how requests arrive (HTTP/1.1 or
 * HTTP/2 front ends inside HBONE streams) and how endpoints are reached (connector). In Envoy's
 * filter order: trace context, admission (JWT authentication 401, L7 authorization 403, route
 * match 404 NR, local rate limit 429 RL: `admission.ts`), fault injection (delay DI, abort FI),
 * then redirect / direct response (`local-reply.ts`) / forward with weighted destinations,
 * mirroring, connection-pool limits, load balancing, retries and the route timeout
 * (`forward.ts`). Upgrades and TCP services are spliced (`passthrough.ts`). Every request ends
 * with one access-log line and Istio's metrics (`telemetry.ts`).
 *
 * Invariants:
 * - A request sees one config version from start to end (`setConfig` swaps the whole value).
 * - Request-level failures never throw out of `handle`; unexpected errors answer 500 and are
 *   logged.
 * - The parts (admitter, forwarder, passthrough, telemetry) are built once per proxy: the hot
 *   path allocates nothing for them per request.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { childLogger } from '../util/log.js';
import { AccessLog } from './access-log.js';
import { Admitter } from './admission.js';
import { BodyBuffer } from './body-buffer.js';
import { RequestCancel, type CancelSignal } from './cancel.js';
import { ClusterManager } from './cluster.js';
import type { WaypointConfig } from './config.js';
import { decideFault, sleep } from './fault.js';
import { FLAG } from './flags.js';
import { Forwarder } from './forward.js';
import type { JwtAuthenticatorOptions } from './jwt.js';
import { localReply } from './local-reply.js';
import { waypointMetrics, type WaypointMetrics } from './metrics.js';
import { Passthrough } from './passthrough.js';
import { normalizeRequestTarget } from './request-target.js';
import { firstHeader, hasBody, newState, type DownstreamInfo, type DownstreamRequest, type DownstreamResponse } from './request-state.js';
import type { RetryBudgetOptions } from './retry.js';
import { redirectLocation } from './route-action.js';
import { Telemetry } from './telemetry.js';
import { UpstreamClients, type Connector } from './upstream.js';

export type { DownstreamInfo, DownstreamRequest, DownstreamResponse };

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
  /**
   * Waits out a fault delay of `ms`, resolving early when `signal` aborts (default a timer,
   * fault.ts `sleep`); a test passes its own to hold a delayed request as long as it likes.
   */
  faultDelay?: (ms: number, signal: CancelSignal) => Promise<void>;
}

export class WaypointProxy {
  private config: WaypointConfig;
  private readonly log: Logger;
  private readonly metrics: WaypointMetrics | undefined;
  private readonly clusters: ClusterManager;
  private readonly clients: UpstreamClients;
  private readonly admitter: Admitter;
  private readonly forwarder: Forwarder;
  private readonly passthrough: Passthrough;
  private readonly telemetry: Telemetry;
  private readonly rand: () => number;
  private readonly now: () => number;
  private readonly faultDelay: (ms: number, signal: CancelSignal) => Promise<void>;
  private readonly bodyLimit: number;

  constructor(o: WaypointProxyOptions) {
    this.config = o.config;
    this.log = o.logger ?? childLogger('waypoint.proxy');
    this.metrics = o.registry === undefined ? undefined : waypointMetrics(o.registry);
    this.rand = o.rand ?? Math.random;
    this.now = o.now ?? Date.now;
    this.faultDelay = o.faultDelay ?? sleep;
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
    this.telemetry = new Telemetry(this.config, o.accessLog ?? new AccessLog(), this.metrics, this.now);
    this.admitter = new Admitter(o.name ?? '-', this.log, o.jwt, this.now);
    this.forwarder = new Forwarder({
      clusters: this.clusters,
      clients: this.clients,
      telemetry: this.telemetry,
      metrics: this.metrics,
      logger: this.log,
      rand: this.rand,
      now: this.now,
      ...(o.mirrorTimeoutMs !== undefined ? { mirrorTimeoutMs: o.mirrorTimeoutMs } : {}),
      ...(o.defaultRetries !== undefined ? { defaultRetries: o.defaultRetries } : {}),
    });
    this.passthrough = new Passthrough(this.clusters, o.connector, this.log, this.now);
  }

  /** Replaces the configuration; requests in flight finish with the one they started with. */
  setConfig(config: WaypointConfig): void {
    this.config = config;
    this.telemetry.setConfig(config);
    for (const b of config.bound()) this.admitter.authenticator(b);
  }

  get currentConfig(): WaypointConfig {
    return this.config;
  }

  /** Closes upstream connections. */
  async close(): Promise<void> {
    await this.clients.close();
  }

  /** Handles one HTTP request from a front end. Never throws. */
  async handle(req: DownstreamRequest, res: DownstreamResponse, down: DownstreamInfo): Promise<void> {
    const config = this.config;
    const st = newState(req, down, this.now, config.samplingPercent(down.destinationIp, down.destinationPort));
    const header = (n: string) => firstHeader(req.headers[n]);
    const abort = new RequestCancel();
    res.on('close', () => {
      if (!res.writableFinished) {
        st.flags.add(FLAG.DOWNSTREAM_TERMINATION);
        abort.cancel();
        st.onClientGone?.();
        this.telemetry.finish(st, res);
      }
    });
    const body = new BodyBuffer(req, this.bodyLimit, hasBody(req));
    st.body = body;
    try {
      // Routing and policy see the target as the upstream will: origin-form, normalized.
      const target = normalizeRequestTarget(st.target, firstHeader(req.headers.host), st.method, config.pathNormalization);
      if (!target.ok || (target.authority !== undefined && req.httpVersion === '2.0')) {
        localReply(this.telemetry, st, res, 400, undefined, target.ok ? 'absolute-form :path' : target.reason);
        return;
      }
      st.target = target.path;
      if (target.authority !== undefined) st.authority = target.authority;
      const pending = this.admitter.admit(config, req, st, header);
      const adm = pending instanceof Promise ? await pending : pending;
      if (!adm.ok) {
        localReply(this.telemetry, st, res, adm.status, adm.flag, adm.detail, adm.headers);
        return;
      }
      const route = adm.choice.route;
      const fault = decideFault(route.fault, this.rand);
      if (fault.delayMs > 0) {
        st.flags.add(FLAG.FAULT_DELAY);
        await this.faultDelay(fault.delayMs, abort);
        if (abort.aborted) return;
      }
      if (fault.abortStatus !== undefined) {
        localReply(this.telemetry, st, res, fault.abortStatus, FLAG.FAULT_ABORT, 'fault filter abort');
        return;
      }
      const action = route.action;
      if (action.type === 'redirect') {
        const location = redirectLocation(action, { scheme: 'http', authority: st.authority, path: st.target }, adm.choice.match);
        localReply(this.telemetry, st, res, action.status, undefined, 'redirect', { location });
        return;
      }
      if (action.type === 'direct-response') {
        localReply(this.telemetry, st, res, action.status, undefined, action.body ?? '', {}, true);
        return;
      }
      await this.forwarder.forward(config, adm.binding, route, adm.choice.match, adm.jwt, req, res, st, body, header, abort);
    } catch (err) {
      this.metrics?.internalErrors.inc({ where: 'request' });
      this.log.error({ err: { message: (err as Error).message, stack: (err as Error).stack }, requestId: st.requestId }, 'unexpected error handling a request');
      if (!res.headersSent) localReply(this.telemetry, st, res, 500, undefined, 'internal error');
      else res.destroy();
    }
  }

  /**
   * A TCP service (or a connection that is not HTTP): L4 authorization with the model's
   * evaluator, an endpoint by the destination's balancer, and a byte-for-byte splice.
   */
  handleTcp(socket: Duplex, down: DownstreamInfo): Promise<void> {
    return this.passthrough.handleTcp(this.config, socket, down);
  }
}
