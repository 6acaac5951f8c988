/**
 * A Pod resource → a `Workload`: identity, addresses, readiness, enrollment, waypoint binding,
 * effective mTLS and the AuthorizationPolicies its node agent enforces.
 *
 * Enrollment follows Istio ambient with ambit's labels: a pod is captured when its namespace
 * has `ambit.dev/dataplane-mode: ambient` or the pod itself has it, unless the pod says
 * `ambit.dev/dataplane-mode: none`; host-network pods are never captured (they share the node's
 * netns). Waypoint binding: the pod's `ambit.dev/use-waypoint` label, else its namespace's; the
 * value `none` opts out; `ambit.dev/use-waypoint-namespace` on the same object names another
 * namespace for the Gateway.
 */
import type { AuthzPolicy } from '../authz/types.js';
import type { NamespaceResource, PodResource } from '../kinds/core.js';
import type { BuildContext } from './context.js';
import { effectiveMtls } from './peer-authentication.js';
import { isEmptySelector, matchesLabels } from './selectors.js';
import { LABEL_DATAPLANE_MODE, LABEL_GATEWAY_NAME, LABEL_USE_WAYPOINT, LABEL_USE_WAYPOINT_NAMESPACE, type WaypointBinding, type Workload } from './types.js';

const EMPTY: Readonly<Record<string, string>> = Object.freeze({});

export function spiffeIdentity(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/**
 * The waypoint an object's labels ask for: `undefined` for none requested, `null` for an
 * explicit opt-out (`none`).
 */
export function waypointLabel(labels: Readonly<Record<string, string>> | undefined, namespace: string, via: WaypointBinding['via']): WaypointBinding | null | undefined {
  const name = labels?.[LABEL_USE_WAYPOINT];
  if (name === undefined || name === '') return undefined;
  if (name === 'none') return null;
  return Object.freeze({ namespace: labels?.[LABEL_USE_WAYPOINT_NAMESPACE] ?? namespace, name, via });
}

export function isEnrolled(pod: PodResource, ns: NamespaceResource | undefined): boolean {
  if (pod.spec.hostNetwork === true) return false;
  const podMode = pod.metadata.labels?.[LABEL_DATAPLANE_MODE];
  if (podMode === 'none') return false;
  if (podMode === 'ambient') return true;
  return ns?.metadata.labels?.[LABEL_DATAPLANE_MODE] === 'ambient';
}

export function isReady(pod: PodResource): boolean {
  const phase = pod.status?.phase;
  if (phase !== undefined && phase !== 'Running') return false;
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  return ready === undefined || ready.status === 'True';
}

function authorizationFor(ctx: BuildContext, namespace: string, labels: Readonly<Record<string, string>>): readonly AuthzPolicy[] {
  const root = ctx.options.rootNamespace;
  const rootGroup = ctx.authzGroup(root);
  const nsGroup = namespace === root ? undefined : ctx.authzGroup(namespace);
  const out: AuthzPolicy[] = [...rootGroup.namespaceWide];
  if (nsGroup !== undefined) out.push(...nsGroup.namespaceWide);
  for (const p of rootGroup.selected) if (matchesLabels(p.matchLabels, labels)) out.push(p);
  if (nsGroup !== undefined) for (const p of nsGroup.selected) if (matchesLabels(p.matchLabels, labels)) out.push(p);
  return Object.freeze(out);
}

export function buildWorkload(pod: PodResource, ctx: BuildContext): Workload {
  const { namespace, name } = pod.ref;
  const ns = ctx.namespace(namespace);
  const labels = pod.metadata.labels ?? EMPTY;
  const sa = pod.spec.serviceAccountName ?? pod.spec.serviceAccount ?? 'default';
  const ip = pod.status?.podIP ?? pod.status?.podIPs?.[0]?.ip;
  const ips = pod.status?.podIPs !== undefined && pod.status.podIPs.length > 0 ? pod.status.podIPs.map((p) => p.ip) : ip !== undefined ? [ip] : [];
  const namedPorts: Record<string, number> = {};
  for (const c of pod.spec.containers) for (const p of c.ports ?? []) if (p.name !== undefined) namedPorts[p.name] = p.containerPort;

  // A waypoint's own pods never go through a waypoint.
  const servesWaypoint = labels[LABEL_GATEWAY_NAME] !== undefined;
  const podBinding = servesWaypoint ? null : waypointLabel(labels, namespace, 'pod');
  const target = podBinding === undefined ? waypointLabel(ns?.metadata.labels, namespace, 'namespace') ?? undefined : podBinding ?? undefined;
  const waypoint = target !== undefined && ctx.waypointExists(target.namespace, target.name) ? target : undefined;

  return Object.freeze({
    key: `${namespace}/${name}`,
    name,
    namespace,
    uid: pod.metadata.uid,
    ip,
    ips: Object.freeze(ips),
    node: pod.spec.nodeName,
    serviceAccount: sa,
    identity: spiffeIdentity(ctx.options.trustDomain, namespace, sa),
    labels,
    annotations: pod.metadata.annotations ?? EMPTY,
    ready: isReady(pod) && ip !== undefined,
    enrolled: isEnrolled(pod, ns),
    namedPorts: Object.freeze(namedPorts),
    waypointTarget: target,
    waypoint,
    waypointFor: labels[LABEL_GATEWAY_NAME],
    mtls: effectiveMtls(ctx.peerAuthnScope(namespace), labels),
    authorization: authorizationFor(ctx, namespace, labels),
    source: pod.ref,
  });
}

/** True when a Service selector picks the workload (a Service without selector picks none). */
export function serviceSelects(selector: Readonly<Record<string, string>> | undefined, namespace: string, w: { namespace: string; labels: Readonly<Record<string, string>> }): boolean {
  return w.namespace === namespace && !isEmptySelector(selector) && matchesLabels(selector ?? EMPTY, w.labels);
}
