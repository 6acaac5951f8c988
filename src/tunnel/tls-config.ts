/**
 * TLS settings both ends of HBONE share, and peer identity checks. The tunnel speaks TLS 1.3
 * only with ALPN `h2`; a peer is identified by the SPIFFE ID in its leaf certificate's URI SAN,
 * never by SNI or host name (the server is dialled by IP, and the identity is what policy names).
 * Both ends offer the same key-exchange groups (tls-groups.ts: X25519MLKEM768 first, then X25519,
 * unless `--tls-groups` says otherwise); every context built here carries them, including the
 * ones a certificate renewal swaps in (tls.Server#setSecureContext resets `ecdhCurve` to
 * OpenSSL's default when the options omit it).
 */
import { createSecureContext, type SecureContext, type TLSSocket, type PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { spiffeIdOfCertificate } from '../identity/cert-info.js';
import type { WorkloadCertificate } from '../identity/manager.js';
import { DEFAULT_TLS_GROUPS, ecdhCurve } from './tls-groups.js';

export const TLS_VERSION = 'TLSv1.3' as const;
export const ALPN_H2 = 'h2';

/**
 * A secure context holding a workload's key, chain and trust bundle, TLS 1.3 only, offering
 * `groups` (default DEFAULT_TLS_GROUPS, already validated by parseTlsGroups).
 */
export function workloadSecureContext(cert: WorkloadCertificate, groups: readonly string[] = DEFAULT_TLS_GROUPS): SecureContext {
  return createSecureContext(workloadContextOptions(cert, groups));
}

/** The options behind workloadSecureContext (also what tls.Server#setSecureContext takes). */
export function workloadContextOptions(cert: WorkloadCertificate, groups: readonly string[] = DEFAULT_TLS_GROUPS) {
  return {
    key: cert.keyPem,
    cert: cert.chainPem.join(''),
    ca: [...cert.trustBundlePem],
    minVersion: TLS_VERSION,
    maxVersion: TLS_VERSION,
    ecdhCurve: ecdhCurve(groups),
  };
}

/**
 * A `checkServerIdentity` for tls.connect that accepts the server only if its leaf certifies
 * `expected`. Returns an Error (never throws) as Node expects; the chain itself has already
 * been verified against the trust bundle when this runs.
 */
export function spiffeServerIdentityCheck(expected: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    let got: string;
    try {
      got = spiffeIdOfCertificate(new X509Certificate(cert.raw));
    } catch (err) {
      return Object.assign(new Error(`server certificate has no valid SPIFFE ID (${(err as Error).message})`), { code: 'ERR_AMBIT_PEER_IDENTITY', expected });
    }
    if (got !== expected) {
      return Object.assign(new Error(`server presented identity ${got}, expected ${expected}`), { code: 'ERR_AMBIT_PEER_IDENTITY', expected, got });
    }
    return undefined;
  };
}

export interface PeerIdentity {
  /** SPIFFE ID of the peer's leaf. */
  identity: string;
  /** Leaf serial (upper-case hex). */
  serial: string;
}

/**
 * Who is on the other end of an established, chain-verified TLS socket; or the reason it must
 * be refused (chain not verified, no certificate, no or several SPIFFE IDs, foreign trust domain).
 */
export function verifiedPeer(socket: TLSSocket, trustDomain?: string): { ok: true; peer: PeerIdentity } | { ok: false; reason: string } {
  if (socket.alpnProtocol !== ALPN_H2) return { ok: false, reason: `client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})` };
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return { ok: false, reason: 'client presented no certificate' };
  if (!socket.authorized) {
    return { ok: false, reason: `client certificate ${x509.serialNumber} rejected: ${String(socket.authorizationError ?? 'not verified')}` };
  }
  try {
    return { ok: true, peer: { identity: spiffeIdOfCertificate(x509, trustDomain), serial: x509.serialNumber.toUpperCase() } };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}
