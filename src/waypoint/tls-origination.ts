/**
 * TLS origination toward endpoints outside the mesh (Istio's DestinationRule
 * `trafficPolicy.tls` SIMPLE and MUTUAL at an egress waypoint): the client side speaks plain
 * HTTP to the waypoint, and the waypoint opens TLS (node:tls, OpenSSL) to the external endpoint
 * over the stream another connector opened.
 *
 * Invariants:
 * - The server is always verified: against `caPem` when given, else the system roots; its name
 *   against `subjectAltNames` when given, else against `sni` (the host). A failed handshake or
 *   verification rejects with AMBIT_ERR_WAYPOINT_TLS naming the reason (OpenSSL's code), so the
 *   request fails as a connect failure (503, flag UF); there is never a plaintext fallback.
 * - Keys are never logged and never appear in error messages; an inline CA (PEM carried in the
 *   view) is named in messages by its `caSource`, never by its content.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WaypointError } from './errors.js';
import type { TlsOriginationPolicy } from '../model/compile/types.js';
import type { ConnectMeta, Connector, UpstreamTarget } from './upstream.js';

/** How to originate TLS to one endpoint, material loaded (PEM text). */
export interface OriginationTls {
  readonly mode: 'SIMPLE' | 'MUTUAL';
  /** SNI sent, and the name verified when `subjectAltNames` is empty (default: the endpoint address, no SNI). */
  readonly sni: string | undefined;
  /** Names (DNS or URI SANs) the server certificate must carry one of (default: `sni`). */
  readonly subjectAltNames: readonly string[];
  /** Trusted CAs (default: the system roots). */
  readonly caPem: string | undefined;
  /** Client certificate and key (MUTUAL only). */
  readonly certPem: string | undefined;
  readonly keyPem: string | undefined;
  /** Where the material came from, for messages (a Secret name or file paths), never the material. */
  readonly source: string;
  /** Why the material could not be loaded: every connect then fails with it (default none). */
  readonly problem?: string | undefined;
  /** Identifies the settings (not the material) in connection pool keys. */
  readonly tag: string;
}

/** A target that asks for origination (cluster.ts sets it from the destination policy). */
export type OriginatingTarget = UpstreamTarget;

/**
 * A policy's files read into PEM text (an inline `caCertificatePem` is taken as it is). An unreadable file is kept as `problem` (its path and
 * errno), so the destination fails closed with that reason instead of going out in plaintext.
 */
export function loadOrigination(p: TlsOriginationPolicy, read: (path: string) => string = (f) => readFileSync(f, 'utf8')): OriginationTls {
  const problems: string[] = [];
  const load = (what: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return read(path);
    } catch (err) {
      problems.push(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  const caPem = p.caCertificatePem ?? load('caCertificates', p.caCertificates);
  const certPem = p.mode === 'MUTUAL' ? load('clientCertificate', p.clientCertificate) : undefined;
  const keyPem = p.mode === 'MUTUAL' ? load('privateKey', p.privateKey) : undefined;
  if (p.mode === 'MUTUAL' && (p.clientCertificate === undefined || p.privateKey === undefined)) problems.push('mode MUTUAL needs clientCertificate and privateKey');
  const caFile = p.caCertificatePem !== undefined ? undefined : p.caCertificates;
  const files = [caFile, p.clientCertificate, p.privateKey].filter((f): f is string => f !== undefined);
  const sources = [...(p.caCertificatePem !== undefined ? [p.caSource ?? 'inline CA certificates'] : []), ...files];
  // Inline CAs differ by content, not by path: their digest keeps pools of different CAs apart.
  const inline = p.caCertificatePem !== undefined ? createHash('sha256').update(p.caCertificatePem).digest('hex') : '';
  return {
    mode: p.mode,
    sni: p.sni,
    subjectAltNames: p.subjectAltNames,
    caPem,
    certPem,
    keyPem,
    source: sources.length > 0 ? sources.join(', ') : 'the system roots',
    ...(problems.length > 0 ? { problem: problems.join('; ') } : {}),
    tag: JSON.stringify([p.mode, p.sni ?? '', p.subjectAltNames, files, inline]),
  };
}

function sanOf(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => s.replace(/^(DNS|URI|IP Address):/, ''));
}

function nameMatches(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (pattern.startsWith('*.')) {
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1).toLowerCase() === pattern.slice(2).toLowerCase();
  }
  return pattern.toLowerCase() === name.toLowerCase();
}

/** Opens TLS over `inner`'s stream for targets with `tls`; others go to `inner` unchanged. */
export class TlsOriginatingConnector implements Connector {
  /** @param handshakeTimeoutMs handshake deadline after the stream opened (default 5,000) */
  constructor(private readonly inner: Connector, private readonly handshakeTimeoutMs = 5_000) {}

  async connect(target: OriginatingTarget, meta: ConnectMeta): Promise<Duplex> {
    const tls = target.tls;
    if (tls === undefined) return this.inner.connect(target, meta);
    if (tls.problem !== undefined) throw new WaypointError('AMBIT_ERR_WAYPOINT_TLS', `TLS origination to ${target.key} is not possible: ${tls.problem}; check the DestinationRule's tls files on the waypoint`);
    // The TLS layer reads the socket through the stream API: no direct reads below it.
    const raw = await this.inner.connect(target, { ...meta, directReads: false });
    return new Promise((resolve, reject) => {
      const wanted = tls.subjectAltNames.length > 0 ? tls.subjectAltNames : tls.sni !== undefined ? [tls.sni] : [];
      const sock = tlsConnect({
        socket: raw,
        ...(tls.sni !== undefined ? { servername: tls.sni } : {}),
        ...(tls.caPem !== undefined ? { ca: tls.caPem } : {}),
        ...(tls.mode === 'MUTUAL' && tls.certPem !== undefined && tls.keyPem !== undefined ? { cert: tls.certPem, key: tls.keyPem } : {}),
        rejectUnauthorized: true,
        ALPNProtocols: ['http/1.1'],
        checkServerIdentity: (host, cert) => {
          if (wanted.length === 0) return checkServerIdentity(host, cert);
          const sans = sanOf(cert);
          if (wanted.some((w) => sans.some((s) => nameMatches(s, w)))) return undefined;
          return Object.assign(new Error(`certificate names ${sans.join(', ') || 'nothing'}, none of ${wanted.join(', ')}`), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
        },
      });
      let done = false;
      const timer = setTimeout(() => fail(Object.assign(new Error(`no TLS handshake within ${this.handshakeTimeoutMs} ms`), { code: 'ETIMEDOUT' })), this.handshakeTimeoutMs);
      const fail = (err: Error & { code?: string }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        raw.destroy();
        const hint = tls.caPem !== undefined ? `the CA from ${tls.source}` : 'the system roots';
        reject(new WaypointError('AMBIT_ERR_WAYPOINT_TLS', `TLS origination to ${target.key}${tls.sni !== undefined ? ` (${tls.sni})` : ''} failed: ${err.code ?? ''}${err.code !== undefined ? ': ' : ''}${err.message}; the server was verified against ${hint}${wanted.length > 0 ? ` and the names ${wanted.join(', ')}` : ''}; check the DestinationRule's tls settings`, { cause: err }));
      };
      sock.once('error', fail);
      sock.once('secureConnect', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.removeListener('error', fail);
        resolve(sock);
      });
    });
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}
