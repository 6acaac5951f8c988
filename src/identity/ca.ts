/**
 * The certificate authority: one active root that signs workload certificates, plus the roots
 * still trusted during a rotation. It implements Signer, so the control plane can put it behind
 * gRPC unchanged.
 *
 * Invariants:
 * - A workload certificate is only issued for a well-formed SPIFFE ID of this CA's trust domain,
 *   to a CSR whose self-signature verifies, whose key is RSA >= 2048 bits, and which claims that
 *   identity and nothing else (exactly one URI SAN equal to it, no other SAN, no other CN).
 * - Issued certificates carry the identity as their only, critical, URI SAN, an empty subject,
 *   clientAuth + serverAuth, and never outlive the root that signed them.
 * - The trust bundle always holds the active root first, then the roots kept by `rotate()`
 *   until `retire()` drops them.
 * - With a directory, every file is written atomically with mode 0600 (the directory 0700):
 *   `root-key.pem`, `root-cert.pem` (the active root) and `trusted-roots.pem` (older roots).
 */
import forge from 'node-forge';
import { randomBytes, X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readFile, chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { childLogger } from '../util/log.js';
import { CaRequestError, CaStorageError, InvalidCsrError } from './errors.js';
import { inspectCsr } from './csr.js';
import { assertStrongKey, forgeSigningKey, generateRsaKeyPair, MIN_RSA_BITS } from './keys.js';
import { DEFAULT_TRUST_DOMAIN, parseSpiffeId } from './spiffe.js';
import { splitPemBundle } from './cert-info.js';
import { writeFileAtomic } from './atomic-file.js';
import type { Signer, SignedCertificate } from './signer.js';

/**
 * Workload certificate lifetime when the caller does not ask for one: 24 h
 * (docs/architecture.md#identity-and-certificates).
 */
export const DEFAULT_WORKLOAD_LIFETIME_SECONDS = 24 * 3600;
/** How far notBefore is set in the past to absorb clock skew between nodes. */
const BACKDATE_SECONDS = 60;

export const ROOT_KEY_FILE = 'root-key.pem';
export const ROOT_CERT_FILE = 'root-cert.pem';
export const TRUSTED_ROOTS_FILE = 'trusted-roots.pem';

export interface CertificateAuthorityOptions {
  /**
   * Directory holding the root (created with mode 0700 if missing). When it already holds a
   * root, that root is loaded; otherwise one is generated and written. Default: none, the root
   * lives in memory only (tests, benchmarks).
   */
  dir?: string;
  /** Trust domain of every identity this CA signs (default `cluster.local`). */
  trustDomain?: string;
  /** Lifetime of a generated root in seconds (default 10 years). */
  rootLifetimeSeconds?: number;
  /** Longest workload certificate lifetime accepted in seconds (default 30 days). */
  maxLifetimeSeconds?: number;
  /** Shortest workload certificate lifetime accepted in seconds (default 60). */
  minLifetimeSeconds?: number;
  /** Organization name in a generated root's subject (default `ambit`). */
  organization?: string;
  /** Current time in ms since the epoch (default Date.now); tests move it to mint expired certificates. */
  now?: () => number;
  /** Logger (default: child `identity.ca` of the root logger). */
  logger?: Logger;
}

interface Root {
  cert: forge.pki.Certificate;
  certPem: string;
  keyPem: string;
  serial: string;
  notAfter: Date;
}

export class CertificateAuthority implements Signer {
  readonly trustDomain: string;
  private active: Root;
  /** Roots still trusted but no longer signing (PEM), newest first. */
  private previous: string[];
  private readonly opts: Required<Omit<CertificateAuthorityOptions, 'dir' | 'logger'>> & { dir: string | undefined };
  private readonly log: Logger;

  private constructor(active: Root, previous: string[], opts: CertificateAuthority['opts'], log: Logger) {
    this.active = active;
    this.previous = previous;
    this.opts = opts;
    this.trustDomain = opts.trustDomain;
    this.log = log;
  }

  /** Loads the root from `options.dir`, or generates (and persists) a new one. */
  static async open(options: CertificateAuthorityOptions = {}): Promise<CertificateAuthority> {
    const opts: CertificateAuthority['opts'] = {
      dir: options.dir,
      trustDomain: options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      rootLifetimeSeconds: options.rootLifetimeSeconds ?? 10 * 365 * 24 * 3600,
      maxLifetimeSeconds: options.maxLifetimeSeconds ?? 30 * 24 * 3600,
      minLifetimeSeconds: options.minLifetimeSeconds ?? 60,
      organization: options.organization ?? 'ambit',
      now: options.now ?? Date.now,
    };
    // Validates the trust domain with the same rules identities use.
    parseSpiffeId(`spiffe://${opts.trustDomain}/ns/x/sa/x`);
    const log = options.logger ?? childLogger('identity.ca');
    if (opts.dir === undefined) {
      const root = await generateRoot(opts);
      log.info({ serial: root.serial, notAfter: root.notAfter }, 'generated in-memory root CA');
      return new CertificateAuthority(root, [], opts, log);
    }
    const dir = opts.dir;
    await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw new CaStorageError(`cannot create CA directory ${dir}: ${(err as Error).message}`, { cause: err });
    });
    const keyPem = await readOptional(join(dir, ROOT_KEY_FILE));
    const certPem = await readOptional(join(dir, ROOT_CERT_FILE));
    if (keyPem === undefined && certPem === undefined) {
      const root = await generateRoot(opts);
      const ca = new CertificateAuthority(root, [], opts, log);
      await ca.persist();
      log.info({ dir, serial: root.serial, notAfter: root.notAfter }, 'generated root CA');
      return ca;
    }
    if (keyPem === undefined || certPem === undefined) {
      const missing = keyPem === undefined ? ROOT_KEY_FILE : ROOT_CERT_FILE;
      throw new CaStorageError(`CA directory ${dir} holds a root certificate or key but not both (${missing} is missing); restore it or empty the directory to generate a new root`);
    }
    const root = loadRoot(certPem, keyPem, dir);
    const trusted = await readOptional(join(dir, TRUSTED_ROOTS_FILE));
    const previous = trusted === undefined ? [] : splitPemBundle(trusted);
    for (const p of previous) assertRootCert(p, join(dir, TRUSTED_ROOTS_FILE));
    log.info({ dir, serial: root.serial, notAfter: root.notAfter, previousRoots: previous.length }, 'loaded root CA');
    return new CertificateAuthority(root, previous, opts, log);
  }

  /** Active root certificate (PEM). */
  rootCertificatePem(): string {
    return this.active.certPem;
  }

  /** Serial (upper-case hex) of the active root. */
  rootSerial(): string {
    return this.active.serial;
  }

  /** Every trusted root, active first (PEM). */
  trustBundlePem(): string[] {
    return [this.active.certPem, ...this.previous];
  }

  /**
   * Signs `csrPem` for `identity`. `lifetimeSeconds` defaults to 24 h; it must lie within the
   * configured bounds, and is cut short so the certificate never outlives the root.
   */
  async sign(csrPem: string, identity: string, lifetimeSeconds: number = DEFAULT_WORKLOAD_LIFETIME_SECONDS): Promise<SignedCertificate> {
    const id = parseSpiffeId(identity, { trustDomain: this.trustDomain });
    if (!Number.isFinite(lifetimeSeconds) || lifetimeSeconds < this.opts.minLifetimeSeconds || lifetimeSeconds > this.opts.maxLifetimeSeconds) {
      throw new CaRequestError(`certificate lifetime ${lifetimeSeconds}s for ${id.uri} is outside the accepted ${this.opts.minLifetimeSeconds}..${this.opts.maxLifetimeSeconds}s`);
    }
    const claims = inspectCsr(csrPem);
    if (claims.uris.length !== 1 || claims.uris[0] !== id.uri) {
      throw new InvalidCsrError(`CSR claims ${claims.uris.length === 0 ? 'no URI SAN' : `URI SAN ${claims.uris.map((u) => JSON.stringify(u)).join(', ')}`} but ${id.uri} was requested; the CSR must carry exactly the requested identity`);
    }
    if (claims.otherSans > 0) {
      throw new InvalidCsrError(`CSR for ${id.uri} also requests ${claims.otherSans} non-URI subject alternative name(s); workload certificates carry only their SPIFFE ID`);
    }
    if (claims.commonNames.some((cn) => cn !== id.uri)) {
      throw new InvalidCsrError(`CSR subject common name ${JSON.stringify(claims.commonNames[0])} does not match the requested identity ${id.uri}`);
    }
    const root = this.active;
    const now = this.opts.now();
    const notAfterMs = Math.min(now + lifetimeSeconds * 1000, root.notAfter.getTime());
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(claims.publicKeyPem);
    cert.serialNumber = randomSerial();
    cert.validity.notBefore = new Date(now - BACKDATE_SECONDS * 1000);
    cert.validity.notAfter = new Date(notAfterMs);
    cert.setSubject([]);
    cert.setIssuer(root.cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: id.uri }], critical: true },
      { name: 'authorityKeyIdentifier', keyIdentifier: root.cert.generateSubjectKeyIdentifier().getBytes() },
      { name: 'subjectKeyIdentifier' },
    ]);
    cert.sign(forgeSigningKey(root.keyPem), forge.md.sha256.create());
    const leafPem = lf(forge.pki.certificateToPem(cert));
    this.log.debug({ identity: id.uri, serial: cert.serialNumber, notAfter: cert.validity.notAfter }, 'signed workload certificate');
    return { chainPem: [leafPem], trustBundlePem: this.trustBundlePem() };
  }

  /**
   * Starts a root rotation: a new root signs from now on, the old one stays in the trust bundle
   * so certificates it signed keep verifying until they are renewed. Returns the new serial.
   */
  async rotate(): Promise<string> {
    const next = await generateRoot(this.opts);
    const old = this.active;
    this.previous = [old.certPem, ...this.previous];
    this.active = next;
    await this.persist();
    this.log.info({ serial: next.serial, previousSerial: old.serial }, 'rotated root CA; previous root stays trusted until retired');
    return next.serial;
  }

  /** Ends a rotation: stops trusting the non-active root with `serial` (hex, any case). */
  async retire(serial: string): Promise<void> {
    const want = serial.toUpperCase();
    if (want === this.active.serial) throw new CaRequestError(`root ${serial} is the active root and cannot be retired; rotate first`);
    const keep = this.previous.filter((p) => new X509Certificate(p).serialNumber.toUpperCase() !== want);
    if (keep.length === this.previous.length) throw new CaRequestError(`root ${serial} is not in the trust bundle`);
    this.previous = keep;
    await this.persist();
    this.log.info({ serial: want }, 'retired root CA');
  }

  private async persist(): Promise<void> {
    const dir = this.opts.dir;
    if (dir === undefined) return;
    try {
      // Order matters for a crash mid-rotation: the old root is kept trusted before it stops
      // being the active one.
      if (this.previous.length > 0) await writeFileAtomic(join(dir, TRUSTED_ROOTS_FILE), this.previous.join(''));
      else await rm(join(dir, TRUSTED_ROOTS_FILE), { force: true });
      await writeFileAtomic(join(dir, ROOT_KEY_FILE), this.active.keyPem);
      await writeFileAtomic(join(dir, ROOT_CERT_FILE), this.active.certPem);
      await chmod(dir, 0o700);
    } catch (err) {
      throw new CaStorageError(`cannot write the root CA to ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function generateRoot(opts: CertificateAuthority['opts']): Promise<Root> {
  const keys = await generateRsaKeyPair(MIN_RSA_BITS);
  const now = opts.now();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = new Date(now - BACKDATE_SECONDS * 1000);
  cert.validity.notAfter = new Date(now + opts.rootLifetimeSeconds * 1000);
  const subject = [
    { name: 'organizationName', value: opts.organization },
    { name: 'commonName', value: `${opts.organization} root CA ${new Date(now).toISOString().slice(0, 19)}Z ${cert.serialNumber.slice(0, 8)}` },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://${opts.trustDomain}` }] },
  ]);
  cert.sign(forgeSigningKey(keys.privateKeyPem), forge.md.sha256.create());
  const certPem = lf(forge.pki.certificateToPem(cert));
  return { cert, certPem, keyPem: keys.privateKeyPem, serial: cert.serialNumber.toUpperCase(), notAfter: cert.validity.notAfter };
}

function loadRoot(certPem: string, keyPem: string, dir: string): Root {
  const certFile = join(dir, ROOT_CERT_FILE);
  const x = assertRootCert(certPem, certFile);
  let keyPub: string;
  try {
    keyPub = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }).toString();
  } catch (err) {
    throw new CaStorageError(`${join(dir, ROOT_KEY_FILE)} is not a readable private key: ${(err as Error).message}`, { cause: err });
  }
  assertStrongKey(keyPub, `root key in ${join(dir, ROOT_KEY_FILE)}`);
  if (x.publicKey.export({ type: 'spki', format: 'pem' }).toString() !== keyPub) {
    throw new CaStorageError(`${join(dir, ROOT_KEY_FILE)} does not belong to ${certFile}; the CA directory is inconsistent (an interrupted rotation?)`);
  }
  const cert = forge.pki.certificateFromPem(certPem);
  return { cert, certPem, keyPem, serial: x.serialNumber.toUpperCase(), notAfter: new Date(x.validTo) };
}

function assertRootCert(pem: string, file: string): X509Certificate {
  let x: X509Certificate;
  try {
    x = new X509Certificate(pem);
  } catch (err) {
    throw new CaStorageError(`${file} is not a readable certificate: ${(err as Error).message}`, { cause: err });
  }
  if (!x.ca) throw new CaStorageError(`${file} is not a CA certificate (basicConstraints CA:FALSE)`);
  return x;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CaStorageError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** forge writes CRLF; everything else in ambit (and splitPemBundle) uses LF. */
function lf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

/** 128-bit positive serial, as forge wants it: hex without a leading sign bit. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f | 0x10;
  return b.toString('hex');
}
