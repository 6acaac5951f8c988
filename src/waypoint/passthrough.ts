/**
 * Connections the waypoint splices rather than proxies request by request: HTTP/1.1 upgrades
 * (WebSocket), admitted like any request before the head goes to an endpoint, and TCP services,
 * authorized at L4 and connected to an endpoint by the destination's balancer.
 *
 * Invariants:
 * - An upgrade passes the same admission as a plain request (JWT, L7 authorization, route,
 *   rate limit); only `forward` routes can be upgraded.
 * - A spliced connection counts as active on its endpoint from the splice until either side
 *   closes, and both sides close together.
 * - Handlers never throw: refusals answer (upgrade) or close (TCP) the socket and are logged.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { evaluateAuthorization } from '../model/authz/evaluate.js';
import type { Admitter } from './admission.js';
import type { ClusterManager } from './cluster.js';
import type { WaypointConfig } from './config.js';
import { FLAG, type ResponseFlag } from './flags.js';
import type { H1IncomingRequest } from './h1-server.js';
import { LOCAL_TEXT } from './local-reply.js';
import { firstHeader, newState, type DownstreamInfo } from './request-state.js';
import { applyHeaderOps, pickDestination, rewritePath, type HeaderMap } from './route-action.js';
import type { Telemetry } from './telemetry.js';
import type { Connector } from './upstream.js';

/** One per proxy: upgrades and TCP connections. */
export class Passthrough {
  constructor(
    private readonly admitter: Admitter,
    private readonly clusters: ClusterManager,
    private readonly connector: Connector,
    private readonly telemetry: Telemetry,
    private readonly log: Logger,
    private readonly rand: () => number,
    private readonly now: () => number,
  ) {}

  /**
   * Handles an HTTP/1.1 Upgrade (WebSocket): the same admission as any request, then the
   * request head goes to an endpoint and the two connections are spliced byte for byte.
   */
  async handleUpgrade(config: WaypointConfig, req: H1IncomingRequest, socket: Duplex, head: Buffer, down: DownstreamInfo): Promise<void> {
    const st = newState(req, down, this.now);
    const header = (n: string) => firstHeader(req.headers[n]);
    const reject = (status: number, flag: ResponseFlag | undefined, detail: string, extra: OutgoingHttpHeaders = {}) => {
      if (flag !== undefined) st.flags.add(flag);
      st.status = status;
      st.detail = detail;
      const text = (flag !== undefined ? LOCAL_TEXT[flag] : undefined) ?? detail;
      const lines = [`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : status === 401 ? 'Unauthorized' : status === 404 ? 'Not Found' : status === 429 ? 'Too Many Requests' : 'Service Unavailable'}`, 'content-type: text/plain', `content-length: ${Buffer.byteLength(text)}`, 'connection: close'];
      for (const [k, v] of Object.entries(extra)) lines.push(`${k}: ${String(v)}`);
      socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
      this.telemetry.logUpgrade(st);
    };
    try {
      const adm = await this.admitter.admit(config, req, st, header);
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
        upstream = await this.connector.connect(ep, { forwardedFor: { host: st.down.sourceIp, port: st.down.sourcePort }, traceparent: st.trace.traceparent });
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
        this.telemetry.logUpgrade(st);
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
  async handleTcp(config: WaypointConfig, socket: Duplex, down: DownstreamInfo): Promise<void> {
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
        upstream = await this.connector.connect(ep, { forwardedFor: { host: down.sourceIp, port: down.sourcePort } });
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
