/**
 * The pluggable signing contract between whoever needs a workload certificate (the identity
 * manager in the node agent) and whoever holds a root (the in-process CertificateAuthority now,
 * the control plane's gRPC CertificateAuthority.Sign later). A Signer receives a CSR and the
 * identity it should certify, and must refuse unless the CSR claims exactly that identity.
 */

export interface SignedCertificate {
  /** Leaf first, then any intermediates; PEM, one certificate per entry. */
  chainPem: string[];
  /** Every root a peer may present a chain to (more than one during a root rotation). */
  trustBundlePem: string[];
}

export interface Signer {
  /**
   * Signs `csrPem` for `identity` (a SPIFFE ID) valid for `lifetimeSeconds`. Rejects with an
   * AmbitError when the identity is malformed, the CSR does not claim it, or its key is weak.
   */
  sign(csrPem: string, identity: string, lifetimeSeconds: number): Promise<SignedCertificate>;
}
