/**
 * Certificate signing requests for workload identities. A workload's CSR carries its SPIFFE ID
 * as the only subject alternative name (a URI) and an empty subject, is signed by the key it
 * certifies (proof of possession), and leaves the node; the private key never does.
 * `inspectCsr` is the CA side: it verifies the self-signature and returns what the CSR claims,
 * so the CA can refuse a CSR that does not claim exactly the identity it was asked to sign.
 */
import forge from 'node-forge';
import { InvalidCsrError, WeakKeyError } from './errors.js';
import { assertStrongKey, forgeSigningKey, type KeyPairPem } from './keys.js';
import { parseSpiffeId } from './spiffe.js';

/** URI general name tag in a subjectAltName (RFC 5280 §4.2.1.6). */
const SAN_URI = 6;
/** Largest CSR accepted, so a hostile caller cannot make the CA parse megabytes. */
const MAX_CSR_PEM_LENGTH = 16 * 1024;

/** Builds a PEM CSR for `identity`, signed with `keyPair` (SHA-256). */
export function createCsr(keyPair: KeyPairPem, identity: string): string {
  const id = parseSpiffeId(identity);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(keyPair.publicKeyPem);
  csr.setSubject([]);
  csr.setAttributes([
    { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: SAN_URI, value: id.uri }] }] },
  ]);
  csr.sign(forgeSigningKey(keyPair.privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

export interface CsrClaims {
  /** Public key of the requester, SPKI PEM. */
  publicKeyPem: string;
  /** URI SANs requested. */
  uris: string[];
  /** Number of non-URI SANs requested (DNS names, IPs, e-mail...). */
  otherSans: number;
  /** Subject common names, if any. */
  commonNames: string[];
}

/**
 * Parses a PEM CSR, checks its self-signature and key strength, and returns its claims.
 * Throws InvalidCsrError (unparseable, bad signature) or WeakKeyError (non-RSA, < 2048 bits).
 */
export function inspectCsr(csrPem: string): CsrClaims {
  if (typeof csrPem !== 'string' || csrPem.length === 0) throw new InvalidCsrError('CSR is empty');
  if (csrPem.length > MAX_CSR_PEM_LENGTH) throw new InvalidCsrError(`CSR is ${csrPem.length} bytes, more than the ${MAX_CSR_PEM_LENGTH} accepted`);
  if (!csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new InvalidCsrError('CSR is not PEM: expected a "-----BEGIN CERTIFICATE REQUEST-----" block');
  }
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (/OID is not RSA/i.test(msg)) throw new WeakKeyError('CSR key is not RSA; only RSA keys of at least 2048 bits are supported');
    throw new InvalidCsrError(`CSR cannot be parsed: ${msg}`, { cause: err });
  }
  let signatureOk = false;
  try {
    signatureOk = csr.verify();
  } catch {
    signatureOk = false;
  }
  if (!signatureOk) throw new InvalidCsrError('CSR signature does not verify: it was not signed by the key it carries');
  if (csr.publicKey === null) throw new InvalidCsrError('CSR carries no public key');
  const publicKeyPem = forge.pki.publicKeyToPem(csr.publicKey);
  assertStrongKey(publicKeyPem, 'CSR key');

  const uris: string[] = [];
  let otherSans = 0;
  const ext = csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: Array<{ name?: string; altNames?: Array<{ type: number; value?: string }> }> } | null;
  for (const e of ext?.extensions ?? []) {
    if (e.name !== 'subjectAltName') continue;
    for (const n of e.altNames ?? []) {
      if (n.type === SAN_URI && typeof n.value === 'string') uris.push(n.value);
      else otherSans++;
    }
  }
  const commonNames = csr.subject.attributes
    .filter((a) => a.name === 'commonName' || a.type === '2.5.4.3')
    .map((a) => String(a.value));
  return { publicKeyPem, uris, otherSans, commonNames };
}
