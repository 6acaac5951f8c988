/**
 * The control plane's unit of distribution: one resource of one kind, as subscribers receive it,
 * plus the few facts the control plane needs to decide who receives it. Produced from the model's
 * compiled snapshot by src/control/projection.ts; consumed by the resource table and the views.
 *
 * Invariants: `json` is the exact payload sent on the wire (computed once, shared by every push);
 * `name` is unique within `kind`; selection facts are derived from the same model object as
 * `json`, so two resources with equal `json` and equal `selectKey` are the same for every view.
 */

/** The kinds carried by discovery (mirrors ResourceKind in proto/ambit/v1/discovery.proto). */
export const RESOURCE_KINDS = [
  'NAMESPACE', 'WORKLOAD', 'SERVICE', 'WAYPOINT_BINDING',
  'AUTHORIZATION_POLICY', 'PEER_AUTHENTICATION', 'REQUEST_AUTHENTICATION', 'ROUTE', 'DESTINATION_RULE', 'RATE_LIMIT',
  'MESH_CONFIG', 'TELEMETRY', 'INGRESS',
] as const;
export type MeshKind = (typeof RESOURCE_KINDS)[number];

/** Kinds every agent and waypoint receives in full: they resolve destinations with them. */
export const GLOBAL_KINDS: ReadonlySet<MeshKind> = new Set<MeshKind>(['NAMESPACE', 'WORKLOAD', 'SERVICE', 'WAYPOINT_BINDING', 'MESH_CONFIG']);
/** Kinds selected per subscriber (policies for an agent's workloads, routes for a waypoint's services). */
export const SCOPED_KINDS: readonly MeshKind[] = RESOURCE_KINDS.filter((k) => !GLOBAL_KINDS.has(k));

/** Where a workload runs and what it is; used to pick policies and to authorize certificates. */
export interface WorkloadFacts {
  node: string;
  namespace: string;
  serviceAccount: string;
  labels: Readonly<Record<string, string>>;
}

/** A waypoint and the services (keys "namespace/name") whose traffic it handles. */
export interface BindingFacts {
  /** "namespace/name" of the waypoint; also the subscriber name a waypoint uses. */
  waypoint: string;
  /** The service account the waypoint runs as (its one permitted identity). */
  serviceAccount: string;
  services: readonly string[];
}

/**
 * Which subscribers receive a scoped resource. Any matching clause includes it.
 * - `agents`: agents with at least one local workload matched (`meshWide`, or in `namespace` and
 *   carrying every label of `selector`; no selector means the whole namespace).
 * - `waypointServices` / `waypointNamespaces` / `waypoints`: waypoints bound to one of these
 *   services, to a service in one of these namespaces, or named here.
 * - `waypointsIn`: every waypoint (`meshWide`), or the waypoints whose Gateway is in `namespace`.
 */
export interface Selection {
  agents?: { meshWide: true } | { meshWide?: false; namespace: string; selector?: Readonly<Record<string, string>> };
  waypointServices?: readonly string[];
  waypointNamespaces?: readonly string[];
  waypoints?: readonly string[];
  waypointsIn?: { meshWide: true } | { meshWide?: false; namespace: string };
}

export interface MeshResource {
  kind: MeshKind;
  name: string;
  json: string;
  workload?: WorkloadFacts;
  binding?: BindingFacts;
  /** Ignored for GLOBAL_KINDS. */
  select?: Selection;
}

/** Key of a resource in maps: kind and name joined by a character names never contain. */
export function resourceKey(kind: MeshKind, name: string): string {
  return `${kind}\u0000${name}`;
}

export function splitKey(key: string): { kind: MeshKind; name: string } {
  const i = key.indexOf('\u0000');
  return { kind: key.slice(0, i) as MeshKind, name: key.slice(i + 1) };
}

/** A stable string of everything besides `json` that decides who receives the resource. */
export function selectKey(r: MeshResource): string {
  if (r.workload === undefined && r.binding === undefined && r.select === undefined) return '';
  return JSON.stringify([r.workload ?? null, r.binding ?? null, r.select ?? null]);
}
