/**
 * HTTP endpoints of the control plane: `/metrics` and `/config_dump` on the metrics port (15014),
 * `/healthz/ready` on the readiness port (15021). `/config_dump` shows what is serving (version,
 * epoch, counts by kind, subscribers) and the last rejected configuration with file:line, never
 * tokens or keys; `?resources=1` adds every distributed resource.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminHandlers {
  registry: Registry;
  configDump: (withResources: boolean) => unknown;
  ready: () => { ready: boolean; reason: string };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function metricsServer(h: AdminHandlers): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'GET') { send(res, 405, 'text/plain', 'method not allowed\n'); return; }
    if (url.pathname === '/metrics') {
      h.registry.metrics().then(
        (m) => send(res, 200, h.registry.contentType, m),
        (err: unknown) => send(res, 500, 'text/plain', `metrics failed: ${(err as Error).message}\n`),
      );
      return;
    }
    if (url.pathname === '/config_dump') {
      send(res, 200, 'application/json', JSON.stringify(h.configDump(url.searchParams.get('resources') === '1'), null, 2) + '\n');
      return;
    }
    if (url.pathname === '/healthz/ready') { readinessReply(h, res); return; }
    send(res, 404, 'text/plain', 'not found: try /metrics or /config_dump\n');
  });
}

function readinessReply(h: AdminHandlers, res: ServerResponse): void {
  const r = h.ready();
  send(res, r.ready ? 200 : 503, 'text/plain', `${r.reason}\n`);
}

export function readinessServer(h: AdminHandlers): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/healthz/ready' || url.pathname === '/ready') { readinessReply(h, res); return; }
    send(res, 404, 'text/plain', 'not found: try /healthz/ready\n');
  });
}

export function listenHttp(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
