/**
 * The control plane's own TLS certificate for port 15012, issued by the mesh root it holds, and
 * renewed at half-life without restarting the gRPC server (grpc-js certificate-provider API).
 *
 * The certificate names the control plane by SPIFFE ID (URI SAN), like every mesh certificate;
 * subscribers verify the chain against the mesh root and that URI, not a DNS name, so the control
 * plane can be reached by any address. The key is generated here and never leaves the process.
 *
 * The port offers the mesh's TLS key-exchange groups (X25519MLKEM768 first, then X25519, unless
 * configured otherwise). grpc-js's certificate-provider credentials rebuild the secure context
 * from CA, certificate and key alone on every renewal, so they cannot carry `ecdhCurve`; the
 * credentials here are a grpc-js ServerCredentials whose every context (the first and each
 * renewal's) names the groups.
 */
import * as grpc from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import type { SecureServerOptions } from 'node:http2';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import { generateRsaKeyPair } from '../identity/keys.js';
import { createCsr } from '../identity/csr.js';
import type { Signer } from '../identity/signer.js';
import { ecdhCurve } from '../tunnel/tls-groups.js';

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
  /** TLS key-exchange groups offered, in order, as parseTlsGroups returns them (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  logger?: Logger;
}

export class ServingCertificate implements grpc.experimental.CertificateProvider {
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private id: grpc.experimental.IdentityCertificateUpdate | null = null;
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();
  private readonly credentials = new Set<GroupsServerCredentials>();
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
    for (const c of this.credentials) c.use(this.contextOptions());
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

  /** grpc-js server credentials that follow every renewal and offer the configured groups. */
  serverCredentials(): grpc.ServerCredentials {
    const curve = ecdhCurve(this.opts.tlsGroups);
    // As createCertificateProviderServerCredentials(ca, id, false) does: ask for a client
    // certificate (subscribers authenticate by token and send none), never require one.
    const creds = new GroupsServerCredentials({ requestCert: true, rejectUnauthorized: false, ecdhCurve: curve }, this.contextOptions());
    this.credentials.add(creds);
    return creds;
  }

  /** The secure-context options of the current certificate (null before the first issuance). */
  private contextOptions(): SecureContextOptions | null {
    if (this.ca === null || this.id === null) return null;
    return { ca: this.ca.caCertificate, cert: [this.id.certificate], key: [this.id.privateKey], ecdhCurve: ecdhCurve(this.opts.tlsGroups) };
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

/** Server credentials whose secure-context options are replaced by ServingCertificate on renewal. */
class GroupsServerCredentials extends grpc.ServerCredentials {
  constructor(server: SecureServerOptions, context: SecureContextOptions | null) {
    super(server, context ?? undefined);
  }

  /** Hands new context options to every grpc-js server bound with these credentials. */
  use(context: SecureContextOptions | null): void {
    this.updateSecureContextOptions(context);
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return this === other;
  }
}
