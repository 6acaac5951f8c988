/**
 * A Service resource → a `MeshService`: VIP, hostname, ports, endpoints (the pods its selector
 * matches that have an address and are ready, or all of them with `publishNotReadyAddresses`),
 * waypoint binding, routes, destination policy and rate limits.
 *
 * targetPort resolution: a number is used as is; a name is looked up in each pod's container
 * ports, so pods of different versions may expose the named port on different numbers; a pod
 * without that name gets no entry for the port (reported by the analyzer). No targetPort means
 * the Service port.
 */
import type { ServiceResource } from '../kinds/core.js';
import type { BuildContext } from './context.js';
import { destinationPolicy } from './destination-policy.js';
import { serviceHostname } from './hosts.js';
import { serviceRateLimits } from './rate-limits.js';
import { httpRouteTable, refsOf, virtualServiceRoutes } from './routes.js';
import { grpcRouteTable, l4RouteTable } from './gateway-routes.js';
import type { GrpcRouteResource, TcpRouteResource, TlsRouteResource } from '../kinds/gateway-routes.js';
import { KIND_GRPC_ROUTE, KIND_TCP_ROUTE, KIND_TLS_ROUTE } from './resource-index.js';
import type { Endpoint, MeshService, Route, ServicePort, Workload } from './types.js';
import { serviceSelects, waypointLabel } from './workload.js';

const EMPTY: Readonly<Record<string, string>> = Object.freeze({});

function endpoint(w: Workload, ports: readonly ServicePort[]): Endpoint {
  const resolved: Record<number, number> = {};
  for (const p of ports) {
    if (typeof p.targetPort === 'number') resolved[p.port] = p.targetPort;
    else {
      const n = w.namedPorts[p.targetPort];
      if (n !== undefined) resolved[p.port] = n;
    }
  }
  return Object.freeze({ workload: w.key, ip: w.ip as string, node: w.node, ready: w.ready, enrolled: w.enrolled, ports: Object.freeze(resolved), labels: w.labels });
}

export function buildService(svc: ServiceResource, ctx: BuildContext, workloadsInNamespace: readonly Workload[]): MeshService {
  const { namespace, name } = svc.ref;
  const key = `${namespace}/${name}`;
  const spec = svc.spec;
  const hostname = serviceHostname(name, namespace, ctx.options.clusterDomain);
  const headless = spec.clusterIP === 'None';
  const vips = headless ? [] : (spec.clusterIPs ?? (spec.clusterIP !== undefined ? [spec.clusterIP] : [])).filter((ip) => ip !== '' && ip !== 'None');
  const ports: ServicePort[] = (spec.ports ?? []).map((p) =>
    Object.freeze({ name: p.name, port: p.port, targetPort: p.targetPort ?? p.port, protocol: p.protocol ?? 'TCP', appProtocol: p.appProtocol }),
  );
  const selector = spec.selector;
  const endpoints: Endpoint[] = [];
  for (const w of ctx.selectorCandidates(workloadsInNamespace, selector)) {
    if (w.ip === undefined || !serviceSelects(selector, namespace, w)) continue;
    if (!w.ready && spec.publishNotReadyAddresses !== true) continue;
    endpoints.push(endpoint(w, ports));
  }
  endpoints.sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0));

  const svcBinding = waypointLabel(svc.metadata.labels, namespace, 'service');
  const target = svcBinding === undefined ? waypointLabel(ctx.namespace(namespace)?.metadata.labels, namespace, 'namespace') ?? undefined : svcBinding ?? undefined;
  const waypoint = target !== undefined && ctx.waypointExists(target.namespace, target.name) ? target : undefined;

  const hostCtx = { clusterDomain: ctx.options.clusterDomain, grants: ctx.referenceGrants() };
  const httpRoutes = ctx.httpRoutesFor(key);
  const grpcRoutes = ctx.gatewayRoutesFor<GrpcRouteResource>(KIND_GRPC_ROUTE, key);
  let routes: Route[];
  let routeSources;
  if (httpRoutes.length > 0 || grpcRoutes.length > 0) {
    routes = [...grpcRouteTable(grpcRoutes, key, hostCtx), ...httpRouteTable(httpRoutes, key, hostCtx)];
    routeSources = [...refsOf(grpcRoutes), ...refsOf(httpRoutes)];
  } else {
    const vs = ctx.virtualServicesFor(hostname)[0];
    routes = vs === undefined ? [] : virtualServiceRoutes(vs, hostCtx);
    routeSources = vs === undefined ? [] : [vs.ref];
  }
  const dr = ctx.destinationRulesFor(hostname)[0];
  const l4Routes = l4RouteTable(ctx.gatewayRoutesFor<TlsRouteResource>(KIND_TLS_ROUTE, key), ctx.gatewayRoutesFor<TcpRouteResource>(KIND_TCP_ROUTE, key), key, hostCtx);

  return Object.freeze({
    key,
    name,
    namespace,
    hostname,
    vip: vips[0],
    vips: Object.freeze(vips),
    ports: Object.freeze(ports),
    selector,
    labels: svc.metadata.labels ?? EMPTY,
    endpoints: Object.freeze(endpoints),
    waypointTarget: target,
    waypoint,
    routes: Object.freeze(routes),
    routeSources: Object.freeze(routeSources),
    ...(l4Routes.length > 0 ? { l4Routes: Object.freeze(l4Routes) } : {}),
    destinationPolicy: dr === undefined ? undefined : destinationPolicy(dr, hostname),
    rateLimits: serviceRateLimits(key, waypoint, (target) => ctx.rateLimitsTargeting(target)),
    source: svc.ref,
  });
}
