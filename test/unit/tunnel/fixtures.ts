/**
 * Shared fixtures for tunnel tests: a real in-process CA, identity managers that obtain real
 * certificates from it, echo/target servers on loopback port 0,. RSA key generation is the slow part, so a test file builds one fixture.
 */
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager, type WorkloadCertificate } from '../../../src/identity/manager.js';
import { generateRsaKeyPair } from '../../../src/identity/keys.js';
import { createCsr } from '../../../src/identity/csr.js';
import { inspectCertificate } from '../../../src/identity/cert-info.js';

export const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/frontend';
export const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/cart';

export interface Fixture {
  ca: CertificateAuthority;
  /** Where `ca` keeps its root (so a second CA instance can share it, e.g. on another clock). */
  caDir: string;
  /** Issues every identity of the trust domain from `ca`. */
  identities: IdentityManager;
  /** Stops renewals and removes the CA directory. */
  close(): Promise<void>;
}

export async function makeFixture(): Promise<Fixture> {
  const caDir = await mkdtemp(join(tmpdir(), 'ambit-tunnel-test-'));
  const ca = await CertificateAuthority.open({ dir: join(caDir, 'ca') });
  const identities = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  await Promise.all([identities.credentials(CLIENT_ID), identities.credentials(SERVER_ID)]);
  return {
    ca,
    caDir: join(caDir, 'ca'),
    identities,
    close: async () => {
      identities.close();
      await rm(caDir, { recursive: true, force: true });
    },
  };
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

/** A fixed set of certificates (e.g. deliberately expired or foreign-signed). */
export { StaticCredentialSource as StaticCredentials } from '../../../src/identity/static-credentials.js';

/**
 * Mints a certificate for `identity` from `ca` without the manager's checks, trusting
 * `trustBundlePem` (default: the CA's own bundle).
 */
export async function mint(ca: CertificateAuthority, identity: string, trustBundlePem?: string[]): Promise<WorkloadCertificate> {
  const keys = await generateRsaKeyPair();
  const { chainPem, trustBundlePem: bundle } = await ca.sign(createCsr(keys, identity), identity, 3600);
  const info = inspectCertificate(chainPem[0] ?? '');
  return { identity, keyPem: keys.privateKeyPem, chainPem, trustBundlePem: trustBundlePem ?? bundle, serial: info.serial, notBefore: info.notBefore, notAfter: info.notAfter, renewAt: info.notAfter };
}
