/**
 * ServiceEntry resources → `MeshService`s, one per host, so agents and waypoints resolve, authorize
 * and count them like Kubernetes Services (`destination_service` = the host).
 *
 * What a host becomes:
 * - key `namespace/host`, name and hostname the host (short names completed Istio's way), source
 *   the ServiceEntry, `serviceEntry` with location, resolution and CIDR blocks;
 * - VIPs: the entry's plain `addresses`; without addresses (and resolution other than NONE, a
 *   host that is not a wildcard, no opt-out label `networking.istio.io/enable-autoallocate-ip:
 *   "false"`), one auto-allocated VIP (`allocateVips`);
 * - endpoints: the ready pods `workloadSelector` picks in the entry's namespace; STATIC: the
 *   endpoint addresses; DNS / DNS_ROUND_ROBIN: IP endpoints as STATIC, name endpoints (or the
 *   host itself when there are none) as `hostname` endpoints the agent resolves when it
 *   connects; NONE: none (the agent forwards to the address the client dialed). Only a MESH_INTERNAL endpoint address is
 *   linked to the pod that has it (reached by HBONE, under its identity and policy); MESH_EXTERNAL
 *   endpoints are outside the mesh by declaration and reached in plain TCP (or, through a
 *   waypoint, in TLS the waypoint originates when a DestinationRule asks for it);
 * - waypoint (Istio's egress waypoint): the entry's `ambit.dev/use-waypoint` or
 *   `istio.io/use-waypoint` label, else its namespace's (`none` opts out; the matching
 *   `...-waypoint-namespace` label names the Gateway's namespace); bound only when that waypoint
 *   Gateway exists. Agents then send the hosts' traffic to the waypoint over HBONE.
 *
 * Invariants:
 * - The result depends only on the set of ServiceEntries, their namespaces' pods and the
 *   VirtualServices/DestinationRules: it is rebuilt as a whole whenever one of them changes
 *   (compile.ts), since VIP allocation is a function of every auto-allocated host.
 * - Two entries of one namespace declaring the same host: the oldest wins (Istio's tie-break).
 */
import type { ServiceEntryResource, ServiceEntrySpec } from '../kinds/service-entry.js';
import { LABEL_AUTOALLOCATE } from '../kinds/service-entry.js';
import { parseCidr, parseIpv4 } from '../../util/cidr.js';
import type { BuildContext } from './context.js';
import { destinationPolicy } from './destination-policy.js';
import { isWildcard, resolveHost } from './hosts.js';
import { virtualServiceRoutes } from './routes.js';
import { compareAge, isEmptySelector, matchesLabels } from './selectors.js';
import type { Endpoint, MeshService, ServicePort, WaypointBinding, Workload } from './types.js';
import { LABEL_ISTIO_USE_WAYPOINT, LABEL_ISTIO_USE_WAYPOINT_NAMESPACE } from './types.js';
import { waypointLabel } from './workload.js';

const EMPTY: Readonly<Record<string, string>> = Object.freeze({});

/** FNV-1a (32 bit) of a string's UTF-16 code units: stable across processes and versions. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function formatIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * VIPs for `hosts` from the IPv4 block `range`: each host starts at the address its name hashes
 * to and, when that address is taken (by `taken` or by a host earlier in name order), takes the
 * next free one. The network and broadcast addresses of blocks of 4 or more are never used.
 * Deterministic: the same set of hosts gives the same VIPs whatever the input order, and a host
 * keeps its VIP when unrelated hosts come and go unless they collide with it. Hosts beyond the
 * block's capacity get none. Throws on a range that is not an IPv4 CIDR.
 */
export function allocateVips(hosts: Iterable<string>, range: string, taken: ReadonlySet<string> = new Set()): Map<string, string> {
  const block = parseCidr(range);
  if (block === undefined || block.family !== 4 || !range.includes('.')) throw new RangeError(`ServiceEntry VIP range ${JSON.stringify(range)} is not an IPv4 CIDR block`);
  const size = block.hi - block.lo + 1;
  const first = size >= 4 ? block.lo + 1 : block.lo;
  const usable = size >= 4 ? size - 2 : size;
  const used = new Set<number>();
  for (const t of taken) {
    const n = parseIpv4(t);
    if (n !== undefined && n >= first && n < first + usable) used.add(n);
  }
  const out = new Map<string, string>();
  for (const host of [...new Set(hosts)].sort()) {
    if (used.size >= usable) break;
    let n = first + (fnv1a(host.toLowerCase()) % usable);
    while (used.has(n)) n = n + 1 >= first + usable ? first : n + 1;
    used.add(n);
    out.set(host, formatIpv4(n));
  }
  return out;
}

function wantsAutoVip(se: ServiceEntryResource): boolean {
  const spec = se.spec;
  if ((spec.resolution ?? 'NONE') === 'NONE') return false;
  if ((spec.addresses ?? []).length > 0) return false;
  return se.metadata.labels?.[LABEL_AUTOALLOCATE]?.toLowerCase() !== 'false';
}

function entryPorts(spec: ServiceEntrySpec): ServicePort[] {
  return (spec.ports ?? []).map((p) =>
    Object.freeze({
      name: p.name,
      port: p.number,
      targetPort: p.targetPort ?? p.number,
      protocol: (p.protocol ?? '').toUpperCase() === 'UDP' ? ('UDP' as const) : ('TCP' as const),
      appProtocol: p.protocol?.toLowerCase(),
    }),
  );
}

/** An object's waypoint label, ambit's or Istio's (ambit's wins when both are set). */
function entryWaypointLabel(labels: Readonly<Record<string, string>> | undefined, namespace: string, via: WaypointBinding['via']): WaypointBinding | null | undefined {
  const own = waypointLabel(labels, namespace, via);
  if (own !== undefined) return own;
  const name = labels?.[LABEL_ISTIO_USE_WAYPOINT];
  if (name === undefined || name === '') return undefined;
  if (name === 'none') return null;
  return Object.freeze({ namespace: labels?.[LABEL_ISTIO_USE_WAYPOINT_NAMESPACE] ?? namespace, name, via });
}

/** The waypoint a ServiceEntry asks for (its label, else its namespace's), existing or not. */
export function serviceEntryWaypointTarget(se: ServiceEntryResource, ctx: BuildContext): WaypointBinding | undefined {
  const ns = se.ref.namespace;
  const own = entryWaypointLabel(se.metadata.labels, ns, 'service-entry');
  if (own === null) return undefined;
  return own ?? entryWaypointLabel(ctx.namespace(ns)?.metadata.labels, ns, 'namespace') ?? undefined;
}

/** Lookups the builder needs from the compile in progress. */
export interface EntryInputs {
  /** Workloads of a namespace (for workloadSelector). */
  workloadsInNamespace(ns: string): readonly Workload[];
  /** The workload holding a pod IP, if any (a STATIC endpoint that is a mesh pod). */
  workloadByIp(ip: string): Workload | undefined;
}

function endpointsOf(se: ServiceEntryResource, host: string, ports: readonly ServicePort[], inputs: EntryInputs): Endpoint[] {
  const spec = se.spec;
  const resolution = spec.resolution ?? 'NONE';
  const ns = se.ref.namespace;
  const out: Endpoint[] = [];
  if (spec.workloadSelector !== undefined) {
    const selector = spec.workloadSelector.labels ?? EMPTY;
    for (const w of inputs.workloadsInNamespace(ns)) {
      if (w.ip === undefined || !w.ready || (!isEmptySelector(selector) && !matchesLabels(selector, w.labels))) continue;
      const resolved: Record<number, number> = {};
      for (const p of ports) resolved[p.port] = p.targetPort as number;
      out.push(Object.freeze({ workload: w.key, ip: w.ip, node: w.node, ready: true, enrolled: w.enrolled, ports: Object.freeze(resolved), labels: w.labels }));
    }
    return out.sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0));
  }
  if (resolution === 'NONE' || resolution === 'DYNAMIC_DNS') return out;
  const written = spec.endpoints ?? [];
  const list = written.length === 0 && (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') ? [{ address: host, ports: undefined, labels: undefined }] : written;
  for (const e of list) {
    const address = e.address;
    if (address === undefined || address === '' || address.startsWith('unix://')) continue;
    const resolved: Record<number, number> = {};
    for (const p of ports) resolved[p.port] = (p.name !== undefined ? e.ports?.[p.name] : undefined) ?? (p.targetPort as number);
    const isAddress = parseCidr(address) !== undefined && !address.includes('/');
    const pod = isAddress && spec.location === 'MESH_INTERNAL' ? inputs.workloadByIp(address) : undefined;
    out.push(Object.freeze({
      workload: pod?.key ?? '',
      ip: isAddress ? address : '',
      node: pod?.node,
      ready: true,
      enrolled: pod?.enrolled ?? false,
      ports: Object.freeze(resolved),
      labels: e.labels ?? EMPTY,
      ...(isAddress ? {} : { hostname: address }),
    }));
  }
  return out;
}

/** Every ServiceEntry host as a MeshService (see the module header), in no particular order. */
export function buildServiceEntryServices(entries: readonly ServiceEntryResource[], ctx: BuildContext, inputs: EntryInputs): MeshService[] {
  const domain = ctx.options.clusterDomain;
  const sorted = [...entries].sort(compareAge);
  const claimed = new Map<string, ServiceEntryResource>();
  const hostsOf = new Map<ServiceEntryResource, string[]>();
  for (const se of sorted) {
    const hosts: string[] = [];
    for (const h of se.spec.hosts) {
      const host = resolveHost(h, se.ref.namespace, domain);
      const key = `${se.ref.namespace}/${host}`;
      if (claimed.has(key)) continue;
      claimed.set(key, se);
      hosts.push(host);
    }
    hostsOf.set(se, hosts);
  }
  const explicit = new Set<string>();
  const auto: string[] = [];
  for (const [se, hosts] of hostsOf) {
    for (const a of se.spec.addresses ?? []) if (!a.includes('/')) explicit.add(a);
    if (wantsAutoVip(se)) for (const h of hosts) if (!isWildcard(h)) auto.push(h);
  }
  const vips = allocateVips(auto, ctx.options.serviceEntryVipRange, explicit);

  const out: MeshService[] = [];
  const hostCtx = { clusterDomain: domain };
  for (const [se, hosts] of hostsOf) {
    const spec = se.spec;
    const ports = entryPorts(spec);
    const plain = (spec.addresses ?? []).filter((a) => !a.includes('/'));
    const ranges = (spec.addresses ?? []).filter((a) => a.includes('/'));
    const autoAllocated = wantsAutoVip(se);
    const target = serviceEntryWaypointTarget(se, ctx);
    const waypoint = target !== undefined && ctx.waypointExists(target.namespace, target.name) ? target : undefined;
    for (const host of hosts) {
      const hostVips = autoAllocated ? (vips.has(host) ? [vips.get(host) as string] : []) : plain;
      const vs = ctx.virtualServicesFor(host)[0];
      const dr = ctx.destinationRulesFor(host)[0];
      out.push(Object.freeze({
        key: `${se.ref.namespace}/${host}`,
        name: host,
        namespace: se.ref.namespace,
        hostname: host,
        vip: hostVips[0],
        vips: Object.freeze([...hostVips]),
        ports: Object.freeze(ports),
        selector: spec.workloadSelector?.labels,
        labels: se.metadata.labels ?? EMPTY,
        endpoints: Object.freeze(endpointsOf(se, host, ports, inputs)),
        waypointTarget: target,
        waypoint,
        routes: Object.freeze(vs === undefined ? [] : virtualServiceRoutes(vs, hostCtx)),
        routeSources: Object.freeze(vs === undefined ? [] : [vs.ref]),
        destinationPolicy: dr === undefined ? undefined : destinationPolicy(dr, host),
        rateLimits: Object.freeze([]),
        source: se.ref,
        serviceEntry: Object.freeze({
          location: spec.location ?? 'MESH_EXTERNAL',
          resolution: spec.resolution ?? 'NONE',
          addressRanges: Object.freeze(ranges),
          autoAllocated,
        }),
      }));
    }
  }
  return out;
}
