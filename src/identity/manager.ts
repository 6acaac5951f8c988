/**
 * Workload identity manager: the node agent's cache of workload certificates. For each identity
 * it generates a key locally (the key never leaves this process), obtains a certificate from a
 * Signer, and renews it in the background.
 *
 * Invariants:
 * - At most one issuance per identity is in flight; concurrent callers share it.
 * - A certificate is renewed at `renewFraction` (default half) of its remaining life when
 *   obtained; a failed renewal is retried with exponential backoff, and meanwhile the still-valid
 *   certificate keeps being served. Only when none is valid does `credentials()` fail.
 * - Every renewal uses a fresh key pair.
 * - A certificate from the signer is checked before use: it must certify exactly the requested
 *   identity, carry our public key, be currently valid and chain to its trust bundle.
 * - `forget(identity)` cancels timers and drops the key; nothing in flight resurrects it.
 * - Listeners of `rotated` learn of every new certificate (the first one too), so TLS contexts
 *   switch to it for new connections while existing connections keep the one they started with.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { childLogger } from '../util/log.js';
import { IdentityUnavailableError, InvalidCertificateError } from './errors.js';
import { generateRsaKeyPair, MIN_RSA_BITS } from './keys.js';
import { createCsr } from './csr.js';
import { parseSpiffeId } from './spiffe.js';
import { spiffeIdOfCertificate, toX509 } from './cert-info.js';
import { systemClock, MAX_TIMER_MS, type Clock } from './clock.js';
import { DEFAULT_WORKLOAD_LIFETIME_SECONDS } from './ca.js';
import type { Signer } from './signer.js';

/** A workload's key and certificate, as TLS needs them. */
export interface WorkloadCertificate {
  readonly identity: string;
  /** PKCS#1 PEM private key. Never log it. */
  readonly keyPem: string;
  /** Leaf first. */
  readonly chainPem: readonly string[];
  readonly trustBundlePem: readonly string[];
  /** Leaf serial, upper-case hex. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When the manager will start renewing it. */
  readonly renewAt: Date;
}

/**
 * Where TLS endpoints get their credentials from. IdentityManager implements it; a fixed set of
 * certificates could too.
 */
export interface CredentialSource {
  /** A currently valid certificate for `identity`, obtaining one if needed. */
  credentials(identity: string): Promise<WorkloadCertificate>;
  /** Calls `listener` on each new certificate; returns a function that unsubscribes. */
  onRotated(listener: (cert: WorkloadCertificate, previous: WorkloadCertificate | undefined) => void): () => void;
}

export interface IdentityManagerOptions {
  /** Who signs our CSRs (in-process CA, or the control plane over gRPC). */
  signer: Signer;
  /** Requested certificate lifetime in seconds (default 24 h). */
  lifetimeSeconds?: number;
  /** Fraction of the remaining lifetime after which renewal starts (default 0.5, half-life). */
  renewFraction?: number;
  /** First retry delay after a failed issuance in ms (default 1,000), doubled per failure. */
  backoffInitialMs?: number;
  /** Longest retry delay in ms (default 60,000). */
  backoffMaxMs?: number;
  /** Random spread applied to retry delays, 0..1 (default 0.1, i.e. ±10%). */
  backoffJitter?: number;
  /** RSA key size (default 2048, never less). */
  keyBits?: number;
  /** Only identities of this trust domain are accepted (default: any). */
  trustDomain?: string;
  /** Time source and timers (default the system clock). */
  clock?: Clock;
  /** Logger (default child `identity.manager`). */
  logger?: Logger;
  /** Registry for `ambit_identity_*` metrics (default: none). */
  registry?: Registry;
}

interface Entry {
  cert: WorkloadCertificate | undefined;
  inflight: Promise<WorkloadCertificate> | undefined;
  timer: unknown;
  failures: number;
}

interface IdentityMetrics {
  certificates: Gauge;
  issuances: Counter<'result'>;
}

const metricsByRegistry = new WeakMap<Registry, IdentityMetrics>();

function identityMetrics(registry: Registry): IdentityMetrics {
  let m = metricsByRegistry.get(registry);
  if (m === undefined) {
    m = {
      certificates: new Gauge({ name: 'ambit_identity_certificates', help: 'Workload identities with a cached certificate', registers: [registry] }),
      issuances: new Counter({ name: 'ambit_identity_issuances_total', help: 'Certificate issuances and renewals by result', labelNames: ['result'], registers: [registry] }),
    };
    metricsByRegistry.set(registry, m);
  }
  return m;
}

export class IdentityManager extends EventEmitter implements CredentialSource {
  private readonly signer: Signer;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly lifetimeSeconds: number;
  private readonly renewFraction: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly backoffJitter: number;
  private readonly keyBits: number;
  private readonly trustDomain: string | undefined;
  private readonly metrics: IdentityMetrics | undefined;
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(options: IdentityManagerOptions) {
    super();
    this.signer = options.signer;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? childLogger('identity.manager');
    this.lifetimeSeconds = options.lifetimeSeconds ?? DEFAULT_WORKLOAD_LIFETIME_SECONDS;
    this.renewFraction = options.renewFraction ?? 0.5;
    this.backoffInitialMs = options.backoffInitialMs ?? 1_000;
    this.backoffMaxMs = options.backoffMaxMs ?? 60_000;
    this.backoffJitter = options.backoffJitter ?? 0.1;
    this.keyBits = options.keyBits ?? MIN_RSA_BITS;
    this.trustDomain = options.trustDomain;
    this.metrics = options.registry === undefined ? undefined : identityMetrics(options.registry);
    if (!(this.renewFraction > 0 && this.renewFraction < 1)) throw new RangeError(`renewFraction must be within (0, 1), got ${this.renewFraction}`);
  }

  /** A valid certificate for `identity`: the cached one, or a freshly issued one. */
  async credentials(identity: string): Promise<WorkloadCertificate> {
    const id = parseSpiffeId(identity, this.trustDomain === undefined ? {} : { trustDomain: this.trustDomain }).uri;
    if (this.closed) throw new IdentityUnavailableError(`identity manager is closed; cannot serve ${id}`);
    let entry = this.entries.get(id);
    if (entry === undefined) {
      entry = { cert: undefined, inflight: undefined, timer: undefined, failures: 0 };
      this.entries.set(id, entry);
    }
    const cert = entry.cert;
    if (cert !== undefined && this.clock.now() < cert.notAfter.getTime()) return cert;
    return this.issue(id, entry);
  }

  /** The cached certificate for `identity`, valid or not, without issuing. */
  current(identity: string): WorkloadCertificate | undefined {
    return this.entries.get(identity)?.cert;
  }

  /** Identities currently managed. */
  identities(): string[] {
    return [...this.entries.keys()];
  }

  /** Renews `identity` now, whatever its schedule (e.g. after a root rotation). */
  async renewNow(identity: string): Promise<WorkloadCertificate> {
    const id = parseSpiffeId(identity).uri;
    const entry = this.entries.get(id);
    if (entry === undefined) return this.credentials(id);
    return this.issue(id, entry);
  }

  /** Stops managing `identity`: cancels its renewal and drops its key and certificate. */
  forget(identity: string): void {
    const entry = this.entries.get(identity);
    if (entry === undefined) return;
    if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
    this.entries.delete(identity);
    this.metrics?.certificates.set(this.countCerts());
    this.log.info({ identity }, 'forgot workload identity');
  }

  onRotated(listener: (cert: WorkloadCertificate, previous: WorkloadCertificate | undefined) => void): () => void {
    this.on('rotated', listener);
    return () => this.off('rotated', listener);
  }

  /** Cancels every renewal and forgets every identity. */
  close(): void {
    this.closed = true;
    for (const id of [...this.entries.keys()]) this.forget(id);
  }

  private issue(id: string, entry: Entry): Promise<WorkloadCertificate> {
    if (entry.inflight !== undefined) return entry.inflight;
    if (entry.timer !== undefined) {
      this.clock.clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    const p = this.obtain(id).then(
      (cert) => {
        entry.inflight = undefined;
        if (this.entries.get(id) !== entry) return cert; // forgotten meanwhile
        const previous = entry.cert;
        entry.cert = cert;
        entry.failures = 0;
        this.metrics?.issuances.inc({ result: 'success' });
        this.metrics?.certificates.set(this.countCerts());
        this.schedule(id, entry, cert.renewAt.getTime() - this.clock.now());
        this.log.info({ identity: id, serial: cert.serial, notAfter: cert.notAfter, renewAt: cert.renewAt, previousSerial: previous?.serial }, previous === undefined ? 'obtained workload certificate' : 'renewed workload certificate');
        this.emit('rotated', cert, previous);
        return cert;
      },
      (err: unknown) => {
        entry.inflight = undefined;
        this.metrics?.issuances.inc({ result: 'failure' });
        const stillValid = entry.cert !== undefined && this.clock.now() < entry.cert.notAfter.getTime();
        if (this.entries.get(id) === entry && !this.closed) {
          entry.failures++;
          const base = Math.min(this.backoffInitialMs * 2 ** (entry.failures - 1), this.backoffMaxMs);
          const delay = Math.round(base * (1 + this.backoffJitter * (2 * Math.random() - 1)));
          this.schedule(id, entry, delay);
          this.log.warn({ identity: id, err: { code: (err as { code?: string }).code, message: (err as Error).message }, attempt: entry.failures, retryInMs: delay, servingSerial: stillValid ? entry.cert?.serial : undefined },
            stillValid ? 'certificate renewal failed; still serving the current certificate' : 'certificate issuance failed; no valid certificate for this identity');
          this.emit('renewal-failed', { identity: id, error: err, retryInMs: delay, stillValid });
        }
        throw new IdentityUnavailableError(`cannot obtain a certificate for ${id}: ${(err as Error).message}`, { cause: err });
      },
    );
    entry.inflight = p;
    // The background path must not produce unhandled rejections; callers still see the error.
    p.catch(() => {});
    return p;
  }

  private schedule(id: string, entry: Entry, delayMs: number): void {
    if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
    const delay = Math.max(0, Math.min(delayMs, MAX_TIMER_MS));
    entry.timer = this.clock.setTimeout(() => {
      entry.timer = undefined;
      if (this.entries.get(id) !== entry || this.closed) return;
      const due = entry.cert === undefined ? 0 : entry.cert.renewAt.getTime();
      if (entry.failures === 0 && this.clock.now() < due) {
        this.schedule(id, entry, due - this.clock.now()); // a clamped long delay
        return;
      }
      this.issue(id, entry).catch(() => {});
    }, delay);
  }

  private async obtain(id: string): Promise<WorkloadCertificate> {
    const keys = await generateRsaKeyPair(this.keyBits);
    const csr = createCsr(keys, id);
    const signed = await this.signer.sign(csr, id, this.lifetimeSeconds);
    const leafPem = signed.chainPem[0];
    if (leafPem === undefined) throw new InvalidCertificateError(`signer returned an empty chain for ${id}`);
    if (signed.trustBundlePem.length === 0) throw new InvalidCertificateError(`signer returned an empty trust bundle for ${id}`);
    const leaf = toX509(leafPem);
    const got = spiffeIdOfCertificate(leaf);
    if (got !== id) throw new InvalidCertificateError(`signer returned a certificate for ${got}, not the requested ${id}`);
    if (leaf.publicKey.export({ type: 'spki', format: 'pem' }).toString() !== keys.publicKeyPem) {
      throw new InvalidCertificateError(`signer returned a certificate for ${id} that does not carry the key of our CSR`);
    }
    const now = this.clock.now();
    const notBefore = new Date(leaf.validFrom);
    const notAfter = new Date(leaf.validTo);
    if (!(notAfter.getTime() > now)) throw new InvalidCertificateError(`signer returned a certificate for ${id} that expired at ${notAfter.toISOString()}`);
    if (!chainsToBundle(leaf, signed.chainPem.slice(1), signed.trustBundlePem)) {
      throw new InvalidCertificateError(`signer returned a certificate for ${id} that does not chain to its own trust bundle`);
    }
    const renewAt = new Date(now + (notAfter.getTime() - now) * this.renewFraction);
    return Object.freeze({
      identity: id,
      keyPem: keys.privateKeyPem,
      chainPem: Object.freeze([...signed.chainPem]),
      trustBundlePem: Object.freeze([...signed.trustBundlePem]),
      serial: leaf.serialNumber.toUpperCase(),
      notBefore,
      notAfter,
      renewAt,
    });
  }

  private countCerts(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.cert !== undefined) n++;
    return n;
  }
}

/** Signature check of leaf → intermediates → one root of the bundle. */
function chainsToBundle(leaf: X509Certificate, intermediatesPem: string[], bundlePem: readonly string[]): boolean {
  const roots = bundlePem.map((p) => toX509(p));
  let cur = leaf;
  const intermediates = intermediatesPem.map((p) => toX509(p));
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (roots.some((r) => cur.checkIssued(r) && cur.verify(r.publicKey))) return true;
    const next = intermediates.find((i) => cur.checkIssued(i) && cur.verify(i.publicKey));
    if (next === undefined) return false;
    cur = next;
  }
  return false;
}
