/**
 * Shared fixtures for tunnel tests: a real in-process CA, identity managers that obtain real
 * certificates from it, echo/target servers on loopback port 0, and a logger whose lines the
 * test can read. RSA key generation is the slow part, so a test file builds one fixture.
 */
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager } from '../../../src/identity/manager.js';

export const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/frontend';
export const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/cart';

export interface Fixture {
  ca: CertificateAuthority;
  /** Issues every identity of the trust domain from `ca`. */
  identities: IdentityManager;
}

export async function makeFixture(): Promise<Fixture> {
  const ca = await CertificateAuthority.open();
  const identities = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  await Promise.all([identities.credentials(CLIENT_ID), identities.credentials(SERVER_ID)]);
  return { ca, identities };
}

/** A JSON logger collecting its lines in memory. */
export function captureLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines: () => lines };
}

/** Waits until `pred` holds (polling), failing after `ms`. */
export async function eventually(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Target {
  server: Server;
  port: number;
  sockets: Set<Socket>;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1:0 running `handler` per (half-open capable) connection. */
export async function tcpTarget(handler: (s: Socket) => void): Promise<Target> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    handler(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    sockets,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Echoes every byte back and ends when the client ends. */
export const echo = (s: Socket): void => {
  s.pipe(s);
};

/** Reads until the client half-closes, then answers with a summary and ends. */
export const summarize = (s: Socket): void => {
  let n = 0;
  s.on('data', (d: Buffer) => (n += d.length));
  s.on('end', () => s.end(`got ${n} bytes`));
};
