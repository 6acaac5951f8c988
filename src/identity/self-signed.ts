/**
 * A self-signed TLS server certificate for DNS names, the kind an operator puts in a
 * kubernetes.io/tls Secret for an ingress listener. `ambit demo` makes one for its ingress and
 * tests mint theirs at run time (no PEM blobs in the repository). Not a mesh certificate: it
 * carries no SPIFFE identity and is not issued by the mesh root.
 */
import forge from 'node-forge';
import { randomBytes } from 'node:crypto';
import { forgeSigningKey, generateRsaKeyPair } from './keys.js';

export interface SelfSignedOptions {
  /** DNS names (subjectAltName); the first is also the subject CN. At least one. */
  hostnames: readonly string[];
  /** Lifetime in days (default 30). */
  days?: number;
}

/** A fresh RSA-2048 key and a certificate signed by it, both PEM. */
export async function selfSignedTlsCertificate(o: SelfSignedOptions): Promise<{ certPem: string; keyPem: string }> {
  const first = o.hostnames[0];
  if (first === undefined) throw new TypeError('selfSignedTlsCertificate needs at least one hostname');
  const keys = await generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + (o.days ?? 30) * 86_400_000);
  const subject = [{ name: 'commonName', value: first }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: o.hostnames.map((h) => ({ type: 2, value: h })) },
  ]);
  cert.sign(forgeSigningKey(keys.privateKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}
