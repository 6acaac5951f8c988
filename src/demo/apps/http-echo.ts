/**
 * The demo's HTTP echo service: answers every request with one JSON line naming the pod that
 * served it and what it saw (method, path, client address, headers), so a user sees load
 * balancing and the client address the mesh delivered. GET /healthz answers `ok`.
 */
import { createServer, type Server } from 'node:http';

export interface HttpEchoOptions {
  /** Pod name put in every answer (required). */
  name: string;
  /** Listen port (default 8080). */
  port?: number;
  /** Listen address (default 0.0.0.0). */
  host?: string;
}

export function startHttpEcho(opts: HttpEchoOptions): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/healthz') { res.end('ok\n'); return; }
    let size = 0;
    req.on('data', (d: Buffer) => { size += d.length; });
    req.on('end', () => {
      const body = JSON.stringify({ pod: opts.name, method: req.method, path: req.url, client: `${req.socket.remoteAddress}:${req.socket.remotePort}`, bodyBytes: size, headers: req.headers }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, opts.host ?? '0.0.0.0', () => resolve(server));
  });
}
