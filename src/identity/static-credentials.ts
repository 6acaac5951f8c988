/**
 * A CredentialSource over certificates obtained elsewhere (provisioned files, a benchmark's
 * child process, a test that needs a deliberately bad certificate). It never renews; `replace`
 * swaps a certificate in and notifies listeners the way IdentityManager does on rotation.
 */
import { IdentityUnavailableError } from './errors.js';
import type { CredentialSource, WorkloadCertificate } from './manager.js';

export class StaticCredentialSource implements CredentialSource {
  private readonly certs = new Map<string, WorkloadCertificate>();
  private readonly listeners = new Set<(cert: WorkloadCertificate, previous: WorkloadCertificate | undefined) => void>();

  constructor(certs: Iterable<WorkloadCertificate> = []) {
    for (const c of certs) this.certs.set(c.identity, c);
  }

  async credentials(identity: string): Promise<WorkloadCertificate> {
    const c = this.certs.get(identity);
    if (c === undefined) throw new IdentityUnavailableError(`no certificate provisioned for ${identity}`);
    return c;
  }

  /** Installs `cert` for its identity and tells rotation listeners. */
  replace(cert: WorkloadCertificate): void {
    const previous = this.certs.get(cert.identity);
    this.certs.set(cert.identity, cert);
    for (const l of this.listeners) l(cert, previous);
  }

  onRotated(listener: (cert: WorkloadCertificate, previous: WorkloadCertificate | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
