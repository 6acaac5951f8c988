/**
 * Reading certificates with Node's native X509Certificate: the SPIFFE ID of a leaf, its serial
 * and validity, and splitting PEM bundles. Used by both ends of the tunnel to learn who the peer
 * is; so a certificate only has an identity if it carries exactly one URI SAN and that URI is a
 * valid workload SPIFFE ID.
 */
import { X509Certificate } from 'node:crypto';
import { InvalidCertificateError } from './errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface CertificateInfo {
  /** Serial number, upper-case hex as OpenSSL prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The SPIFFE ID in the URI SAN, when there is exactly one valid one. */
  identity: string | undefined;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256: string;
}

/** Splits a PEM bundle into its certificates (each with BEGIN/END lines and a final newline). */
export function splitPemBundle(pem: string): string[] {
  const out: string[] = [];
  const re = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
  for (const m of pem.matchAll(re)) out.push(`${m[0]}\n`);
  return out;
}

/** Parses a PEM/DER certificate or takes an X509Certificate; throws InvalidCertificateError. */
export function toX509(cert: string | Buffer | X509Certificate): X509Certificate {
  if (cert instanceof X509Certificate) return cert;
  try {
    return new X509Certificate(cert);
  } catch (err) {
    throw new InvalidCertificateError(`certificate cannot be parsed: ${(err as Error).message}`, { cause: err });
  }
}

/** URIs in a certificate's subjectAltName, as Node renders them ("URI:a, DNS:b"). */
export function sanUris(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san === undefined || san.length === 0) return [];
  // Node quotes values holding separators or non-ASCII (`URI:"..."`); a SPIFFE ID never needs
  // quoting, so a quoted URI is kept verbatim and fails SPIFFE validation later.
  return san.split(', ').filter((e) => e.startsWith('URI:')).map((e) => e.slice(4));
}

/**
 * The SPIFFE ID of a leaf certificate; throws InvalidCertificateError when the certificate has
 * no URI SAN, several, or one that is not a valid SPIFFE ID (optionally of `trustDomain`).
 */
export function spiffeIdOfCertificate(cert: string | Buffer | X509Certificate, trustDomain?: string): string {
  const x = toX509(cert);
  const uris = sanUris(x);
  if (uris.length !== 1) {
    throw new InvalidCertificateError(`certificate ${x.serialNumber} carries ${uris.length} URI SANs; a workload certificate carries exactly one SPIFFE ID`);
  }
  try {
    return parseSpiffeId(uris[0], trustDomain === undefined ? {} : { trustDomain }).uri;
  } catch (err) {
    throw new InvalidCertificateError(`certificate ${x.serialNumber}: ${(err as Error).message}`, { cause: err });
  }
}

/** Serial, validity and identity of a certificate. */
export function inspectCertificate(cert: string | Buffer | X509Certificate): CertificateInfo {
  const x = toX509(cert);
  let identity: string | undefined;
  try {
    identity = spiffeIdOfCertificate(x);
  } catch {
    identity = undefined;
  }
  return {
    serial: x.serialNumber.toUpperCase(),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    identity,
    fingerprint256: x.fingerprint256,
  };
}
