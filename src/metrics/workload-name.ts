/**
 * The workload labels of Istio's standard metrics, shared by the agent's TCP metrics and the
 * waypoint's request metrics so that one dashboard joins both. Each value derives from what the
 * mesh knows of the workload (its name, namespace and pod labels), with Istio's fallbacks, and is
 * `unknown` when the workload is not known, as Istio reports it. Every value is a function of the
 * workload, so these labels add no cardinality beyond the workload itself.
 */

type Known = { readonly name: string; readonly labels: Readonly<Record<string, string>> } | undefined;

/**
 * The cluster id of `source_cluster` / `destination_cluster`: ambit serves one cluster, named as
 * Istio names a cluster by default.
 */
export const CLUSTER_ID = 'Kubernetes';

/**
 * `source_workload` / `destination_workload`: the `app.kubernetes.io/name` label, else `app`,
 * else the pod name; `unknown` when the workload is not known.
 */
export function workloadName(w: Known): string {
  if (w === undefined) return 'unknown';
  return w.labels['app.kubernetes.io/name'] ?? w.labels['app'] ?? w.name;
}

/** `*_app`: the `app.kubernetes.io/name` label, else `app`, else `unknown`. */
export function workloadApp(w: Known): string {
  return w?.labels['app.kubernetes.io/name'] ?? w?.labels['app'] ?? 'unknown';
}

/** `*_version`: the `app.kubernetes.io/version` label, else `version`, else `unknown`. */
export function workloadVersion(w: Known): string {
  return w?.labels['app.kubernetes.io/version'] ?? w?.labels['version'] ?? 'unknown';
}

/** `*_canonical_service`: `service.istio.io/canonical-name`, else the workload name (Istio's order). */
export function canonicalService(w: Known): string {
  return w?.labels['service.istio.io/canonical-name'] ?? workloadName(w);
}

/**
 * `*_canonical_revision`: `service.istio.io/canonical-revision`, else the version label, else
 * `latest` (Istio's default for a known workload); `unknown` when the workload is not known.
 */
export function canonicalRevision(w: Known): string {
  if (w === undefined) return 'unknown';
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels['version'] ?? 'latest';
}

/** `*_cluster`: the cluster id for a known workload, else `unknown`. */
export function workloadCluster(w: Known): string {
  return w === undefined ? 'unknown' : CLUSTER_ID;
}
