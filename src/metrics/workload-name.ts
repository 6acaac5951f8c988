/**
 * The workload name that Istio's standard metrics carry in `source_workload` and
 * `destination_workload`, shared by the agent's TCP metrics and the waypoint's request metrics
 * so that one dashboard joins both: the `app.kubernetes.io/name` label, else `app`, else the pod
 * name; `unknown` when the workload is not known.
 */
export function workloadName(w: { readonly name: string; readonly labels: Readonly<Record<string, string>> } | undefined): string {
  if (w === undefined) return 'unknown';
  return w.labels['app.kubernetes.io/name'] ?? w.labels['app'] ?? w.name;
}
