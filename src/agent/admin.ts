/**
 * The agent's HTTP endpoints, in the node's netns:
 * - admin (15000): `/config_dump` (view version, local pods and why each is or is not captured,
 *   problems with the view), `/certs` (identity, serial, validity; never keys),
 *   `/connections` (what is being proxied now, each with the TLS key-exchange group of its HBONE
 *   connection, `tlsGroup`), `/healthz/ready`;
 * - metrics (15020): `/metrics` (also `/stats/prometheus`, Istio's path);
 * - readiness (15021): `/healthz/ready`, 200 once the agent serves, 503 otherwise or while draining.
 *
 * Invariants: only GET; malformed requests cost one socket (never the process); nothing secret is
 * ever rendered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminHandlers {
  registry: Registry;
  configDump: () => unknown;
  certs: () => unknown;
  connections: () => unknown;
  ready: () => { ready: boolean; reason: string };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: ServerResponse, value: unknown): void {
  send(res, 200, 'application/json', JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v), 2) + '\n');
}

function ready(h: AdminHandlers, res: ServerResponse): void {
  const r = h.ready();
  // During an upgrade two agents answer on the same socket; the pid tells which one did.
  res.setHeader('x-ambit-pid', String(process.pid));
  send(res, r.ready ? 200 : 503, 'text/plain', `${r.reason}\n`);
}

function metrics(h: AdminHandlers, res: ServerResponse): void {
  h.registry.metrics().then(
    (m) => send(res, 200, h.registry.contentType, m),
    (err: unknown) => send(res, 500, 'text/plain', `metrics failed: ${(err as Error).message}\n`),
  );
}

function server(route: (path: string, res: ServerResponse) => boolean, hint: string): Server {
  const s = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { send(res, 405, 'text/plain', 'method not allowed\n'); return; }
    const path = new URL(req.url ?? '/', 'http://agent').pathname;
    try {
      if (!route(path, res)) send(res, 404, 'text/plain', `not found: try ${hint}\n`);
    } catch (err) {
      send(res, 500, 'text/plain', `${(err as Error).message}\n`);
    }
  });
  s.on('clientError', (_err, socket) => socket.destroy());
  s.headersTimeout = 10_000;
  s.requestTimeout = 30_000;
  return s;
}

export function adminServer(h: AdminHandlers): Server {
  return server((path, res) => {
    switch (path) {
      case '/config_dump': json(res, h.configDump()); return true;
      case '/certs': json(res, h.certs()); return true;
      case '/connections': json(res, h.connections()); return true;
      case '/healthz/ready': ready(h, res); return true;
      case '/metrics': case '/stats/prometheus': metrics(h, res); return true;
      case '/': send(res, 200, 'text/plain', 'ambit agent admin: /config_dump /certs /connections /healthz/ready /metrics\n'); return true;
      default: return false;
    }
  }, '/config_dump, /certs, /connections');
}

export function metricsServer(h: AdminHandlers): Server {
  return server((path, res) => {
    if (path === '/metrics' || path === '/stats/prometheus') { metrics(h, res); return true; }
    return false;
  }, '/metrics');
}

export function readinessServer(h: AdminHandlers): Server {
  return server((path, res) => {
    if (path === '/healthz/ready' || path === '/') { ready(h, res); return true; }
    return false;
  }, '/healthz/ready');
}

export function listenHttp(s: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve((s.address() as AddressInfo).port);
    });
  });
}

export function closeHttp(s: Server): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}
