/**
 * The control plane's own TLS certificate for port 15012, issued by the mesh root it holds, and
 * renewed at half-life without restarting the gRPC server (grpc-js certificate-provider API).
 *
 * The certificate names the control plane by SPIFFE ID (URI SAN), like every mesh certificate;
 * subscribers verify the chain against the mesh root and that URI, not a DNS name, so the control
 * plane can be reached by any address. The key is generated here and never leaves the process.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import { generateRsaKeyPair } from '../identity/keys.js';
import { createCsr } from '../identity/csr.js';
import type { Signer } from '../identity/signer.js';

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdListener = grpc.experimental.IdentityCertificateUpdateListener;

export interface ServingCertificateOptions {
  signer: Signer;
  /** SPIFFE ID the certificate carries (required). */
  identity: string;
  /** Lifetime requested, seconds (default 86400). */
  lifetimeSeconds?: number;
  /** Retry delay after a failed renewal, ms (default 10000). */
  retryMs?: number;
  logger?: Logger;
}

export class ServingCertificate implements grpc.experimental.CertificateProvider {
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private id: grpc.experimental.IdentityCertificateUpdate | null = null;
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly log: Logger;
  /** Trust bundle of the last issuance, PEM. */
  trustBundlePem: string[] = [];
  /** Leaf and chain of the last issuance, PEM. */
  chainPem: string[] = [];

  constructor(private readonly opts: ServingCertificateOptions) {
    this.log = childLogger('control.serving-cert', opts.logger);
  }

  /** Issue the first certificate; rejects when the CA refuses (start-up fails with the reason). */
  async start(): Promise<void> {
    await this.issue();
  }

  private async issue(): Promise<void> {
    const lifetime = this.opts.lifetimeSeconds ?? 86_400;
    const keys = await generateRsaKeyPair();
    const csr = createCsr(keys, this.opts.identity);
    const signed = await this.opts.signer.sign(csr, this.opts.identity, lifetime);
    if (this.closed) return;
    this.chainPem = signed.chainPem;
    this.trustBundlePem = signed.trustBundlePem;
    this.ca = { caCertificate: Buffer.from(signed.trustBundlePem.join('')) };
    this.id = { certificate: Buffer.from(signed.chainPem.join('')), privateKey: Buffer.from(keys.privateKeyPem) };
    for (const l of this.caListeners) l(this.ca);
    for (const l of this.idListeners) l(this.id);
    this.log.info({ identity: this.opts.identity, lifetimeSeconds: lifetime }, 'issued control-plane serving certificate');
    this.schedule(lifetime * 500);
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.issue().catch((err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'renewing the serving certificate failed; retrying, the current one keeps serving');
        this.schedule(this.opts.retryMs ?? 10_000);
      });
    }, Math.min(ms, 2 ** 31 - 1));
    this.timer.unref();
  }

  /** grpc-js server credentials that follow every renewal. */
  serverCredentials(): grpc.ServerCredentials {
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, false);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  // The current value is delivered on the next tick: grpc-js registers its watcher only after
  // adding the listener, so a synchronous call would reach nobody.
  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    setImmediate(() => { if (this.ca && this.caListeners.has(l)) l(this.ca); });
  }
  removeCaCertificateListener(l: CaListener): void { this.caListeners.delete(l); }
  addIdentityCertificateListener(l: IdListener): void {
    this.idListeners.add(l);
    setImmediate(() => { if (this.id && this.idListeners.has(l)) l(this.id); });
  }
  removeIdentityCertificateListener(l: IdListener): void { this.idListeners.delete(l); }
}
