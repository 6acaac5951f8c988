/**
 * Loopback harness for waypoint tests: real HTTP backends on 127.0.0.1:0, a WaypointConfig built
 * from plain data the way view-config builds it, and the waypoint's proxy served on a plain
 * loopback listener (every accepted socket is handed to the StreamDispatcher as if it had arrived
 * in an HBONE stream for the service VIP). The HBONE path itself is exercised in hbone.test.ts.
 */
import { TlsOriginatingConnector } from '../../../src/waypoint/tls-origination.js';
import { createServer, request, Agent, type IncomingMessage, type ServerResponse, type Server, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { logSink } from '../../helpers/log-sink.js';
import { compileAuthorizationPolicy } from '../../../src/model/authz/compile.js';
import type { AuthorizationPolicySpec } from '../../../src/model/authz/types.js';
import type { DestinationPolicy, Endpoint, Route, RouteAction, ServicePort } from '../../../src/model/compile/types.js';
import type { RequestAuthenticationSpec } from '../../../src/model/kinds/security.js';
import type { LocalRateLimitSpec } from '../../../src/model/kinds/ambit-rate-limit.js';
import { WaypointConfig, type ServiceBinding, type WaypointServiceInfo, type WorkloadInfo } from '../../../src/waypoint/config.js';
import { AccessLog, type AccessLogEntry } from '../../../src/waypoint/access-log.js';
import { StreamDispatcher } from '../../../src/waypoint/dispatch.js';
import { WaypointProxy, type WaypointProxyOptions } from '../../../src/waypoint/proxy.js';
import { TcpConnector } from '../../../src/waypoint/upstream.js';
import { waypointMetrics } from '../../../src/waypoint/metrics.js';
import type { FrontLimits } from '../../../src/waypoint/http1-front.js';

export const VIP = '198.18.128.10';
export const PEER = 'spiffe://cluster.local/ns/shop/sa/frontend';

export interface Backend {
  port: number;
  hits: number;
  server: Server;
  close(): Promise<void>;
}

/** An HTTP backend on 127.0.0.1:0. */
export async function backend(handler: (req: IncomingMessage, res: ServerResponse, b: Backend) => void): Promise<Backend> {
  const b: Backend = { port: 0, hits: 0, server: undefined as unknown as Server, close: async () => {} };
  const server = createServer((req, res) => {
    b.hits++;
    handler(req, res, b);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.server = server;
  b.port = (server.address() as AddressInfo).port;
  b.close = () => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
  return b;
}

/** A backend answering `text` with status 200 and its name in `x-backend`. */
export function echo(name: string, status = 200): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(status, { 'x-backend': name, 'content-type': 'application/json' });
      res.end(JSON.stringify({ backend: name, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
    });
  };
}

export interface EndpointSpec {
  backend: Backend;
  labels?: Record<string, string>;
  name?: string;
}

export interface ServiceSpec {
  name: string;
  namespace?: string;
  vip?: string;
  port?: number;
  portName?: string;
  endpoints: EndpointSpec[];
  routes?: Route[];
  policy?: DestinationPolicy;
  authz?: { name: string; spec: AuthorizationPolicySpec }[];
  requestAuthn?: RequestAuthenticationSpec[];
  rateLimits?: { key: string; spec: LocalRateLimitSpec }[];
}

export function hostOf(name: string, ns = 'shop'): string {
  return `${name}.${ns}.svc.cluster.local`;
}

/** Builds a WaypointConfig: every service bound, endpoints on 127.0.0.1 outside the mesh. */
export function makeConfig(services: ServiceSpec[]): WaypointConfig {
  const workloads: WorkloadInfo[] = [];
  const bound: ServiceBinding[] = services.map((s, si) => {
    const ns = s.namespace ?? 'shop';
    const port = s.port ?? 80;
    const ports: ServicePort[] = [{ name: s.portName ?? 'http', port, targetPort: port, protocol: 'TCP', appProtocol: undefined }];
    const endpoints: Endpoint[] = s.endpoints.map((e, i) => {
      const wname = e.name ?? `${s.name}-${i}`;
      workloads.push({ key: `${ns}/${wname}`, name: wname, namespace: ns, identity: `spiffe://cluster.local/ns/${ns}/sa/${s.name}`, labels: e.labels ?? {}, enrolled: false });
      return { workload: `${ns}/${wname}`, ip: '127.0.0.1', node: 'n1', ready: true, enrolled: false, ports: { [port]: e.backend.port }, labels: e.labels ?? {} };
    });
    const service: WaypointServiceInfo = { key: `${ns}/${s.name}`, name: s.name, namespace: ns, hostname: hostOf(s.name, ns), vips: [s.vip ?? `198.18.128.${10 + si}`], ports, endpoints, labels: {} };
    return {
      service,
      routes: s.routes ?? [],
      destinationPolicy: s.policy,
      authorization: (s.authz ?? []).map((a) => compileAuthorizationPolicy({ namespace: ns, name: a.name }, a.spec)),
      requestAuthentication: s.requestAuthn ?? [],
      rateLimits: s.rateLimits ?? [],
    };
  });
  return new WaypointConfig({ bound, workloads });
}

/** A route with defaults for every field. */
export function route(p: Partial<Route> & { action: RouteAction }): Route {
  return {
    source: { group: 'networking.istio.io', kind: 'VirtualService', namespace: 'shop', name: 'vs' },
    path: 'spec.http[0]',
    name: undefined,
    matches: [],
    timeoutMs: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: [],
    rewrite: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
    ...p,
  };
}

export function forward(...dests: { host: string; subset?: string; weight?: number; port?: number }[]): RouteAction {
  return { type: 'forward', destinations: dests.map((d) => ({ host: d.host, subset: d.subset, port: d.port, weight: d.weight ?? 100 })) };
}

export function destinationPolicy(host: string, p: Partial<DestinationPolicy['trafficPolicy']> = {}, subsets: DestinationPolicy['subsets'] = []): DestinationPolicy {
  return {
    source: { group: 'networking.istio.io', kind: 'DestinationRule', namespace: 'shop', name: 'dr' },
    host,
    trafficPolicy: { loadBalancer: undefined, connectionPool: undefined, outlierDetection: undefined, ports: {}, ...p },
    subsets,
  };
}

export interface Harness {
  port: number;
  proxy: WaypointProxy;
  registry: Registry;
  entries: AccessLogEntry[];
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface HarnessOptions extends Partial<Omit<WaypointProxyOptions, 'config' | 'connector'>> {
  /** Destination address the listener stands for (default VIP:80). */
  destination?: { ip: string; port: number };
  peer?: string;
  limits?: FrontLimits;
  /** Wrap the connector in TLS origination, as Waypoint.start does (default false). */
  originateTls?: boolean;
}

/** The proxy behind a plain loopback listener. */
export async function startProxy(config: WaypointConfig, o: HarnessOptions = {}): Promise<Harness> {
  const sink = logSink();
  const logs = sink.lines();
  const logger = sink.logger;
  const entries: AccessLogEntry[] = [];
  const registry = new Registry();
  const proxy = new WaypointProxy({ ...o, config, connector: o.originateTls === true ? new TlsOriginatingConnector(new TcpConnector(1000)) : new TcpConnector(1000), logger, registry, accessLog: new AccessLog({ logger, sink: (e) => entries.push(e) }) });
  const dispatcher = new StreamDispatcher(proxy, logger, { limits: o.limits ?? {}, sniffTimeoutMs: 200, metrics: waypointMetrics(registry) });
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    const dest = o.destination ?? { ip: VIP, port: 80 };
    dispatcher.serve(sock, { peerIdentity: o.peer ?? PEER, sourceIp: sock.remoteAddress ?? '127.0.0.1', sourcePort: sock.remotePort ?? 0, destinationIp: dest.ip, destinationPort: dest.port });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    proxy,
    registry,
    entries,
    logs,
    close: async () => {
      for (const s of sockets) s.destroy();
      dispatcher.close();
      await new Promise<void>((r) => server.close(() => r()));
      await proxy.close();
    },
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json(): Record<string, unknown>;
}

const agents = new WeakMap<object, Agent>();
export const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });
void agents;

/** One HTTP/1.1 request to the harness. */
export function send(port: number, o: { method?: string; path?: string; headers?: Record<string, string>; body?: string; agent?: Agent | false } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path ?? '/', headers: { host: `reviews.shop.svc.cluster.local`, ...o.headers }, agent: o.agent ?? keepAlive }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Runs `n` requests with at most `concurrency` in flight. */
export async function many(n: number, concurrency: number, one: (i: number) => Promise<Reply>): Promise<Reply[]> {
  const out: Reply[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await one(i);
    }
  }));
  return out;
}

/** makeConfig with mesh-wide WaypointConfigData fields added (such as `pathNormalization`). */
export function makeConfigWith(services: ServiceSpec[], extra: Record<string, unknown>): WaypointConfig {
  const base = makeConfig(services);
  const bound = [...base.bound()];
  const workloads = bound.flatMap((b) => b.service.endpoints.map((e) => base.workload(e.workload)).filter((w): w is WorkloadInfo => w !== undefined));
  // `extra` is loosely typed so a test can name a mesh-wide field before WaypointConfigData has it.
  const data = { bound, workloads, ...extra };
  return new WaypointConfig(data);
}

export interface RawBackend extends Backend {
  /** Request heads received on every connection, in order (latin1, without the blank line). */
  heads: string[];
  /** Every byte received on every connection (latin1). */
  received(): string;
}

/**
 * A backend on a plain TCP server, not node:http, so it can answer with exactly the bytes a test
 * wants (malformed framing included). `answer` runs for each request head (a hit) with the bytes
 * after it; it returns true when it takes the connection over (an upgrade: no more parsing).
 * Request bodies are not parsed, so tests using it send none. `server` is not an http.Server.
 */
export async function rawBackend(answer: (head: string, sock: Socket, rest: Buffer, b: RawBackend) => boolean | void): Promise<RawBackend> {
  const sockets = new Set<Socket>();
  const seen: Buffer[] = [];
  const b: RawBackend = { port: 0, hits: 0, heads: [], server: undefined as unknown as Server, received: () => Buffer.concat(seen).toString('latin1'), close: async () => {} };
  const server = createNetServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.on('data', (c: Buffer) => seen.push(c)); // kept after a takeover too
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.toString('latin1', 0, end);
        buf = buf.subarray(end + 4);
        b.hits++;
        b.heads.push(head);
        if (answer(head, sock, buf, b) === true) {
          sock.off('data', onData);
          return;
        }
      }
    };
    sock.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as AddressInfo).port;
  b.close = () => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  });
  return b;
}

/**
 * Collects uncaught exceptions of this process (the proxy runs in it) instead of letting ava's
 * handler end the worker, so a test can assert that none happened and name the error.
 * `stop()` gives the process back its normal handling.
 */
export function captureUncaught(): { errors: Error[]; stop(): void } {
  const errors: Error[] = [];
  process.setUncaughtExceptionCaptureCallback((err) => errors.push(err instanceof Error ? err : new Error(String(err))));
  return { errors, stop: () => process.setUncaughtExceptionCaptureCallback(null) };
}
