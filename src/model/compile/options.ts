/** Options of `compile()`, each with its default. */
export interface CompileOptions {
  /** SPIFFE trust domain of workload identities (default `cluster.local`). */
  trustDomain?: string;
  /** Cluster DNS domain of Service hostnames (default `cluster.local`). */
  clusterDomain?: string;
  /** Istio root namespace: its policies without selector apply mesh-wide (default `istio-system`). */
  rootNamespace?: string;
  /**
   * IPv4 block from which ServiceEntry hosts without `addresses` get a VIP, deterministically
   * from the host name (default `240.240.0.0/16`, Istio's auto-allocation range).
   */
  serviceEntryVipRange?: string;
}

export type ResolvedOptions = Readonly<Required<CompileOptions>>;

export function resolveOptions(o: CompileOptions = {}): ResolvedOptions {
  return Object.freeze({
    trustDomain: o.trustDomain ?? 'cluster.local',
    clusterDomain: o.clusterDomain ?? 'cluster.local',
    rootNamespace: o.rootNamespace ?? 'istio-system',
    serviceEntryVipRange: o.serviceEntryVipRange ?? '240.240.0.0/16',
  });
}
