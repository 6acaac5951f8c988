/**
 * `npm run bench -- tls-handshake [--quick] [--n N]`: what the post-quantum key exchange costs per
 * HBONE handshake.
 *
 * Two Node TLS endpoints in this process, built exactly as HBONE builds them (tls-config.ts:
 * workload RSA-2048 certificates from an in-process CA, TLS 1.3, ALPN h2, mutual authentication,
 * the SPIFFE server check), over loopback. Each sample is one full handshake without resumption,
 * timed from `tls.connect` until both ends have finished (client 'secureConnect' and server
 * 'secureConnection'). Because both ends share one thread, a sample is the sum of both sides'
 * handshake CPU plus loopback latency, not what one side of a real cross-node connection waits.
 * The subjects run interleaved (one handshake of each in turn), so machine noise lands on all.
 *
 * Subjects:
 * - `ambit`: both ends offer ambit's default groups (X25519MLKEM768, X25519): X25519MLKEM768.
 * - `x25519`: both ends offer X25519 only (`--tls-groups X25519`): the classical baseline.
 * - `pq_to_classical`: an ambit client against an X25519-only server: X25519, from the client's
 *   second key share (`hello_retries` shows whether a HelloRetryRequest was needed).
 *
 * Rows per subject and round (each round: N handshakes per subject, interleaved;
 * bench/lib/report.ts reports the median and range over the rounds): handshake_p50_ms,
 * handshake_min_ms, handshake_p90_ms, handshake_max_ms; once per run: client_hello_bytes (all
 * ClientHello records of one handshake on the wire, headers included, read by a loopback relay)
 * and hello_retries (HelloRetryRequests seen in that handshake).
 * `--quick`: 30 handshakes per subject instead of 300 (and 1 round instead of 3).
 */
import { createServer, connect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { CertificateAuthority } from '../src/identity/ca.js';
import { IdentityManager } from '../src/identity/manager.js';
import { ALPN_H2, spiffeServerIdentityCheck, TLS_VERSION, workloadContextOptions, workloadSecureContext } from '../src/tunnel/tls-config.js';
import { DEFAULT_TLS_GROUPS, negotiatedGroup } from '../src/tunnel/tls-groups.js';
import { wireTap } from '../test/helpers/tls-wire.js';
import { quantile, Samples, type BenchOptions } from './lib/report.js';

const CLIENT_ID = 'spiffe://cluster.local/ns/bench/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/bench/sa/server';

interface Subject { name: string; client: readonly string[]; server: readonly string[]; expect: string }

const SUBJECTS: Subject[] = [
  { name: 'ambit', client: DEFAULT_TLS_GROUPS, server: DEFAULT_TLS_GROUPS, expect: 'X25519MLKEM768' },
  { name: 'x25519', client: ['X25519'], server: ['X25519'], expect: 'X25519' },
  { name: 'pq_to_classical', client: DEFAULT_TLS_GROUPS, server: ['X25519'], expect: 'X25519' },
];

export async function run(o: BenchOptions): Promise<Samples> {
  const ni = o.args.indexOf('--n');
  const n = ni !== -1 ? Number(o.args[ni + 1]) : o.quick ? 30 : 300;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--n must be a positive integer, got ${o.args[ni + 1]}`);
  const ca = await CertificateAuthority.open();
  const ids = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  const [clientCert, serverCert] = await Promise.all([ids.credentials(CLIENT_ID), ids.credentials(SERVER_ID)]);

  const ends = await Promise.all(SUBJECTS.map(async (s) => {
    let serverDone: (() => void) | undefined;
    const server = createServer({ ...workloadContextOptions(serverCert, s.server), requestCert: true, rejectUnauthorized: true, ALPNProtocols: [ALPN_H2] }, (sock) => {
      serverDone?.();
      sock.on('error', () => {});
      sock.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const context = workloadSecureContext(clientCert, s.client);
    /** One handshake to `p`; resolves with its duration in ms once both ends finished. */
    const handshake = (p = port) => new Promise<{ ms: number; group: string }>((resolve, reject) => {
      const started = process.hrtime.bigint();
      let client: { group: string } | undefined;
      let serverFinished = false;
      // The client closes only once the server is done too: destroying it at 'secureConnect'
      // could drop its Finished before it reached the server.
      const finish = () => {
        if (client === undefined || !serverFinished) return;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        serverDone = undefined;
        sock.destroy();
        resolve({ ms, group: client.group });
      };
      serverDone = () => { serverFinished = true; finish(); };
      const sock: TLSSocket = connect({
        host: '127.0.0.1', port: p, secureContext: context, minVersion: TLS_VERSION, maxVersion: TLS_VERSION,
        ALPNProtocols: [ALPN_H2], rejectUnauthorized: true, checkServerIdentity: spiffeServerIdentityCheck(SERVER_ID),
      }, () => {
        client = { group: negotiatedGroup(sock) };
        finish();
      });
      sock.on('error', (err) => { if (client === undefined) reject(err); });
    });
    return { s, server, port, handshake };
  }));

  // What each subject puts on the wire: one handshake through a relay that records it.
  const wire = new Map<string, { clientHelloBytes: number; retries: number }>();
  for (const e of ends) {
    const tap = await wireTap({ host: '127.0.0.1', port: e.port });
    const { group } = await e.handshake(tap.port);
    if (group !== e.s.expect) throw new Error(`${e.s.name}: negotiated ${group}, expected ${e.s.expect}`);
    await new Promise((r) => setTimeout(r, 50)); // let the relay see the last bytes
    const f = tap.flight(0);
    wire.set(e.s.name, { clientHelloBytes: f.clientHellos.reduce((a, h) => a + h.wireBytes, 0), retries: f.serverHellos.filter((h) => h.retry).length });
    await tap.close();
  }

  const warmup = Math.min(20, n);
  for (let i = 0; i < warmup; i++) for (const e of ends) await e.handshake();
  const out = new Samples();
  for (let round = 0; round < o.rounds; round++) {
    process.stderr.write(`tls-handshake: round ${round + 1}/${o.rounds}: ${n} handshakes per subject, interleaved\n`);
    const samples = new Map<string, number[]>(SUBJECTS.map((s) => [s.name, []]));
    for (let i = 0; i < n; i++) {
      for (const e of ends) {
        const { ms, group } = await e.handshake();
        if (group !== e.s.expect) throw new Error(`${e.s.name}: negotiated ${group}, expected ${e.s.expect}`);
        samples.get(e.s.name)?.push(ms);
      }
    }
    for (const s of SUBJECTS) {
      const xs = [...(samples.get(s.name) ?? [])].sort((a, b) => a - b);
      out.add(s.name, 'handshake_p50_ms', quantile(xs, 0.5));
      out.add(s.name, 'handshake_min_ms', xs[0] ?? NaN);
      out.add(s.name, 'handshake_p90_ms', quantile(xs, 0.9));
      out.add(s.name, 'handshake_max_ms', xs[xs.length - 1] ?? NaN);
    }
  }
  for (const s of SUBJECTS) {
    const w = wire.get(s.name);
    out.add(s.name, 'client_hello_bytes', w?.clientHelloBytes ?? NaN);
    out.add(s.name, 'hello_retries', w?.retries ?? NaN);
  }
  for (const e of ends) await new Promise<void>((r) => e.server.close(() => r()));
  ids.close();
  process.stderr.write(`tls-handshake: ${o.rounds} round(s) of ${n} handshakes per subject (after ${warmup} warm-up); Node ${process.version}, OpenSSL ${process.versions.openssl}\n`);
  return out;
}
