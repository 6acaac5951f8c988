/**
 * A Signer (src/identity/signer.ts) that asks the control plane's CertificateAuthority.Sign, for
 * the identity manager of a node agent or waypoint. The CSR is built locally by the manager; only
 * the CSR travels. Refusals come back as SignRefusedError carrying the control plane's reason.
 */
import * as grpc from '@grpc/grpc-js';
import { protos, type CertificateAuthorityClient, type SignResponse__Output } from '../control/proto.js';
import type { Signer, SignedCertificate } from '../identity/signer.js';
import { CHANNEL_OPTIONS, channelCredentials, type ControlPlaneTarget } from './channel.js';
import { SignRefusedError } from './errors.js';
import type { TokenSource } from './discovery-client.js';

export interface GrpcSignerOptions extends ControlPlaneTarget {
  kind: 'agent' | 'waypoint';
  /** Node name (agent) or "namespace/name" (waypoint). */
  name: string;
  token: TokenSource;
  /** Per-call deadline, ms (default 10000). */
  timeoutMs?: number;
}

export class GrpcSigner implements Signer {
  private readonly client: CertificateAuthorityClient;

  constructor(private readonly opts: GrpcSignerOptions) {
    const Ctor = protos().ca.ambit.v1.CertificateAuthority;
    this.client = new Ctor(opts.address, channelCredentials(opts), CHANNEL_OPTIONS);
  }

  async sign(csrPem: string, identity: string, lifetimeSeconds: number): Promise<SignedCertificate> {
    const token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    md.set('ambit-subscriber-kind', this.opts.kind);
    md.set('ambit-subscriber-name', this.opts.name);
    const res = await new Promise<SignResponse__Output>((resolve, reject) => {
      this.client.Sign({ csrPem, identity, lifetimeSeconds }, md, { deadline: Date.now() + (this.opts.timeoutMs ?? 10_000) },
        (err: grpc.ServiceError | null, r?: SignResponse__Output) => {
          if (err !== null) reject(new SignRefusedError(`control plane refused ${identity}: ${grpc.status[err.code] ?? err.code}: ${err.details}`, err.code));
          else if (r === undefined) reject(new SignRefusedError(`control plane sent no certificate for ${identity}`, grpc.status.INTERNAL));
          else resolve(r);
        });
    });
    return { chainPem: res.chainPem, trustBundlePem: res.trustBundlePem };
  }

  close(): void { this.client.close(); }
}
