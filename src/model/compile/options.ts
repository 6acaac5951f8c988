/** Options of `compile()`, each with its default. */
export interface CompileOptions {
  /** SPIFFE trust domain of workload identities (default `cluster.local`). */
  trustDomain?: string;
  /** Cluster DNS domain of Service hostnames (default `cluster.local`). */
  clusterDomain?: string;
  /** Istio root namespace: its policies without selector apply mesh-wide (default `istio-system`). */
  rootNamespace?: string;
}

export type ResolvedOptions = Readonly<Required<CompileOptions>>;

export function resolveOptions(o: CompileOptions = {}): ResolvedOptions {
  return Object.freeze({
    trustDomain: o.trustDomain ?? 'cluster.local',
    clusterDomain: o.clusterDomain ?? 'cluster.local',
    rootNamespace: o.rootNamespace ?? 'istio-system',
  });
}
