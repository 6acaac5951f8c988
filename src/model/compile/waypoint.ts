/**
 * A Gateway with gatewayClassName ambit-waypoint → a `Waypoint`: its listener ports and the
 * pods that serve it (label gateway.networking.k8s.io/gateway-name in the Gateway's namespace).
 */
import type { GatewayResource } from '../kinds/gateway-api.js';
import type { Waypoint, Workload } from './types.js';

export function buildWaypoint(gw: GatewayResource, workloadsInNamespace: readonly Workload[]): Waypoint {
  const serving = workloadsInNamespace.filter((w) => w.waypointFor === gw.ref.name);
  return Object.freeze({
    key: `${gw.ref.namespace}/${gw.ref.name}`,
    name: gw.ref.name,
    namespace: gw.ref.namespace,
    ports: Object.freeze(gw.spec.listeners.map((l) => l.port)),
    workloads: Object.freeze(serving.map((w) => w.key)),
    addresses: Object.freeze(serving.filter((w) => w.ready && w.ip !== undefined).map((w) => w.ip as string)),
    source: gw.ref,
  });
}
