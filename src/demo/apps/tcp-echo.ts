/**
 * The demo's TCP service: a line echo. Every line received is answered with `<pod>: <line>`, on
 * the same connection, for as long as the client keeps it open (the demo uses it to show that
 * connections opened before a mesh change keep working).
 */
import { createServer, type Server } from 'node:net';

export interface TcpEchoOptions {
  /** Pod name put in every answer (required). */
  name: string;
  /** Listen port (default 9000). */
  port?: number;
  /** Listen address (default 0.0.0.0). */
  host?: string;
}

export function startTcpEcho(opts: TcpEchoOptions): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    let buf = '';
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        sock.write(`${opts.name}: ${buf.slice(0, i)}\n`);
        buf = buf.slice(i + 1);
      }
    });
    sock.on('end', () => sock.end());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 9000, opts.host ?? '0.0.0.0', () => resolve(server));
  });
}
