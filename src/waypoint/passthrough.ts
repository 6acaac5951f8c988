/**
 * Connections the waypoint splices rather than proxies request by request: HTTP/1.1 upgrades
 * (WebSocket) once the upstream switched protocols, and TCP services, authorized at L4 and
 * connected to an endpoint by the destination's balancer. A bound service's TCPRoutes and
 * TLSRoutes (l4-route.ts) choose the destination service of a TCP connection by weight, by port
 * and, for TLSRoutes, by the ClientHello's SNI, read without terminating TLS.
 *
 * Invariants:
 * - An upgrade request is an ordinary request until then (forward.ts: admission, routing, one
 *   attempt on a connection of its own); only a 101 whose `Upgrade` is one of the protocols the
 *   client asked for is spliced. Any other answer is relayed as HTTP and the client connection
 *   stays HTTP, every later request on it checked like the first.
 * - A spliced connection counts as active on its endpoint from the splice until both sides
 *   closed; half-close is src/tunnel/splice.ts's rule.
 * - Handlers never throw: refusals answer (upgrade) or close (TCP) the socket and are logged.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { evaluateAuthorization } from '../model/authz/evaluate.js';
import type { L4Route, Route } from '../model/compile/types.js';
import type { ClusterManager } from './cluster.js';
import type { WaypointConfig } from './config.js';
import { FLAG } from './flags.js';
import { headerTokens, type H1ServerResponse } from './h1-server.js';
import { localReply } from './local-reply.js';
import { HOP_BY_HOP, type DownstreamInfo, type RequestState } from './request-state.js';
import { applyHeaderOps, pickDestination, type HeaderMap } from './route-action.js';
import { l4RoutesFor, needsSni, readSni, selectL4Route } from './l4-route.js';
import type { Telemetry } from './telemetry.js';
import type { Connector, UpstreamResponse } from './upstream.js';
import { spliceStreams } from '../tunnel/splice.js';

/**
 * Splices an upgrade the upstream accepted: its 101 must switch to one of the protocols the
 * client asked for (token-exact), else 502 and nothing is spliced. `release` runs once, when the
 * spliced connection closes (or at once when it is refused).
 */
export function spliceUpgrade(
  telemetry: Telemetry,
  st: RequestState,
  res: H1ServerResponse,
  up: UpstreamResponse,
  requested: readonly string[],
  route: Route,
  release: () => void,
): void {
  const upstream = up.switched as { readonly socket: Duplex; readonly head: Buffer };
  const offered = headerTokens(up.headers.upgrade);
  if (offered.length !== 1 || !requested.includes(offered[0] as string)) {
    upstream.socket.destroy();
    release();
    localReply(telemetry, st, res, 502, FLAG.UPSTREAM_PROTOCOL_ERROR, 'upstream switched to a protocol the client did not ask for');
    return;
  }
  const headers: HeaderMap = {};
  for (const k in up.headers) {
    const v = up.headers[k];
    if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  }
  applyHeaderOps(headers, route.responseHeaders);
  headers['connection'] = 'Upgrade';
  headers['upgrade'] = up.headers.upgrade as string;
  const client = res.switchProtocols(headers as OutgoingHttpHeaders);
  if (client === undefined) {
    upstream.socket.destroy();
    release();
    res.destroy();
    telemetry.finish(st, res);
    return;
  }
  st.status = 101;
  if (upstream.head.length > 0) client.socket.write(upstream.head);
  if (client.head.length > 0) upstream.socket.write(client.head);
  pipeBothWays(client.socket, upstream.socket, undefined, (sent, received) => {
    st.bytesSent += sent;
    st.bytesReceived += received;
    release();
    telemetry.logUpgrade(st);
  });
}

/** One per proxy: TCP connections. */
export class Passthrough {
  constructor(
    private readonly clusters: ClusterManager,
    private readonly connector: Connector,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /**
   * A TCP service (or a connection that is not HTTP): L4 authorization with the model's
   * evaluator, the destination by the service's TCPRoutes/TLSRoutes (else the service itself), an
   * endpoint by the destination's balancer, and a byte-for-byte splice.
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
    let service = binding.service;
    let port = down.destinationPort;
    let route: L4Route | undefined;
    const routes = l4RoutesFor(binding.l4Routes, down.destinationPort);
    if (routes.length > 0) {
      const sni = needsSni(routes) ? await readSni(socket) : undefined;
      if (socket.destroyed) {
        done({ reason: 'the client closed before its ClientHello' }, 'TCP connection closed');
        return;
      }
      route = selectL4Route(routes, sni);
      const routeName = route === undefined ? undefined : `${route.source.kind} ${route.source.namespace}/${route.source.name} ${route.path}`;
      const dest = route === undefined ? undefined : pickDestination(route.destinations);
      const svc = dest === undefined ? undefined : dest.host === binding.service.hostname ? binding.service : config.serviceByHost(dest.host);
      if (route === undefined || dest === undefined || svc === undefined) {
        socket.destroy();
        const reason =
          route === undefined ? `no TCPRoute or TLSRoute of ${binding.service.key} matches ${sni === undefined ? 'a connection without a TLS server name' : `server name ${sni}`}`
          : dest === undefined ? 'the route has no usable backend (refused backendRefs are left out; see ambit analyze)'
          : `backend ${dest.host} is not a known service`;
        done({ ...(routeName !== undefined ? { route: routeName } : {}), ...(sni !== undefined ? { sni } : {}), reason }, 'refused TCP connection');
        return;
      }
      service = svc;
      port = dest.port ?? down.destinationPort;
    }
    const cluster = this.clusters.get(config, service, undefined, port, 'http1');
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
        done({ upstream: ep.key, cluster: cluster.name, ...(route !== undefined ? { route: `${route.source.kind} ${route.source.namespace}/${route.source.name} ${route.path}` } : {}), bytesSent: sent, bytesReceived: received }, 'TCP connection closed');
      });
      return;
    }
    socket.destroy();
    done({ cluster: cluster.name, reason: 'no endpoint could be connected' }, 'refused TCP connection');
  }
}


/**
 * Splices a downstream and an upstream stream both ways for an upgraded or TCP connection
 * (half-close as src/tunnel/splice.ts defines it), counting the endpoint as active meanwhile;
 * `closed` runs once, when both sides closed, with the bytes sent to the client and received
 * from it.
 */
function pipeBothWays(socket: Duplex, upstream: Duplex, ep: { active: number } | undefined, closed: (sent: number, received: number) => void): void {
  if (ep !== undefined) ep.active++;
  let sent = 0;
  let received = 0;
  upstream.on('data', (c: Buffer) => { sent += c.length; });
  socket.on('data', (c: Buffer) => { received += c.length; });
  spliceStreams(socket, upstream, () => {
    if (ep !== undefined) ep.active--;
    closed(sent, received);
  });
}
