/**
 * `compile()` builds a Snapshot from resources; `applyChange()` builds the next Snapshot from a
 * previous one and a change, recomputing only what the change touches. Both run the same
 * builders (workload.ts, service.ts, waypoint.ts), so an incremental result equals a full
 * compile by construction of the builders, and by test of the dependency rules below.
 *
 * What a change makes stale ("dirty"):
 * - Pod: the workload; Services of its namespace whose selector matched it before or after; the
 *   waypoint it serves (label gateway-name), before and after.
 * - Namespace: every workload and Service in it (enrollment and waypoint labels).
 * - PeerAuthentication, AuthorizationPolicy: workloads of its namespace (all of them when in the
 *   root namespace).
 * - Service: itself. HTTPRoute: the Services named by its parentRefs, before and after.
 * - VirtualService, DestinationRule: the Services of its hosts (all on a wildcard host), and
 *   every ServiceEntry host when there is a ServiceEntry.
 * - ServiceEntry: every ServiceEntry host (service-entry.ts: VIP allocation spans all of them);
 *   also a Pod of a namespace with a selecting ServiceEntry, or whose address is an endpoint.
 * - Gateway: its waypoint, and every workload and Service bound to it (its existence decides
 *   whether their binding resolves), and every ServiceEntry host when one asks for it.
 * - Namespace, with ServiceEntries in it: every ServiceEntry host (their waypoint label).
 * - LocalRateLimit: the Services its targetRefs name, before and after, and every Service bound
 *   to a waypoint Gateway it names (rate-limits.ts).
 * - Node, ServiceAccount, RequestAuthentication and kinds added later: nothing derived; they are
 *   read through the resource index.
 */
import type { AuthzPolicy } from '../authz/types.js';
import type { ResourceRef } from '../diagnostics.js';
import { InvalidChangeError } from '../errors.js';
import type { GatewayResource, HttpRouteResource } from '../kinds/gateway-api.js';
import type { PodResource, ServiceResource } from '../kinds/core.js';
import type { DestinationRuleResource, VirtualServiceResource } from '../kinds/networking.js';
import type { LocalRateLimitResource } from '../kinds/ambit-rate-limit.js';
import { kindKey, refKey, type Resource } from '../resource.js';
import { BuildContext } from './context.js';
import { crossCheckFull, crossCheckSince } from './cross-check.js';
import { isWildcard, resolveHost } from './hosts.js';
import { resolveOptions, type CompileOptions } from './options.js';
import { PersistentMap } from './persistent-map.js';
import {
  KIND_DESTINATION_RULE,
  KIND_GATEWAY,
  KIND_HTTP_ROUTE,
  KIND_GRPC_ROUTE,
  KIND_TCP_ROUTE,
  KIND_TLS_ROUTE,
  KIND_REFERENCE_GRANT,
  KIND_LOCAL_RATE_LIMIT,
  KIND_NAMESPACE,
  KIND_POD,
  KIND_SERVICE,
  KIND_SERVICE_ENTRY,
  KIND_VIRTUAL_SERVICE,
  KIND_AUTHORIZATION_POLICY,
  KIND_PEER_AUTHENTICATION,
  ResourceIndex,
} from './resource-index.js';
import { buildService } from './service.js';
import { buildServiceEntryServices } from './service-entry.js';
import type { ServiceEntryResource } from '../kinds/service-entry.js';
import { serviceSelects, buildWorkload } from './workload.js';
import { buildWaypoint } from './waypoint.js';
import { httpRouteParents } from './routes.js';
import { rateLimitTargets } from './rate-limits.js';
import { Snapshot, type DiagnosticsChecker, type SnapshotState } from './snapshot.js';
import type { MeshService, Waypoint, Workload } from './types.js';

/** Cross-reference diagnostics: from scratch after `compile`, incrementally after `applyChange`. */
const CHECKER: DiagnosticsChecker = { full: crossCheckFull, since: crossCheckSince };

/** A change to apply: objects to create or replace, and objects to delete. */
export interface Change {
  /** Resources to add or replace (same kind/namespace/name replaces). Default none. */
  upsert?: readonly Resource[];
  /** Resources to remove. Default none. */
  delete?: readonly ResourceRef[];
}

interface Changed {
  old?: Resource;
  new?: Resource;
}

interface Dirty {
  workloads: Set<string>;
  workloadNamespaces: Set<string>;
  allWorkloads: boolean;
  services: Set<string>;
  serviceNamespaces: Set<string>;
  allServices: boolean;
  waypoints: Set<string>;
  allWaypoints: boolean;
  /** Rebuild every ServiceEntry host. */
  entries: boolean;
}

function emptyDirty(all: boolean): Dirty {
  return {
    workloads: new Set(),
    workloadNamespaces: new Set(),
    allWorkloads: all,
    services: new Set(),
    serviceNamespaces: new Set(),
    allServices: all,
    waypoints: new Set(),
    allWaypoints: all,
    entries: all,
  };
}

const byKey = (a: { key: string }, b: { key: string }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Regroups `items` into sorted arrays per group key, replacing the entries of `dirtyKeys`. */
function regroup<T extends { key: string }>(
  prev: PersistentMap<string, readonly T[]>,
  removed: readonly T[],
  added: readonly T[],
  groupsOf: (item: T) => readonly string[],
): PersistentMap<string, readonly T[]> {
  const touched = new Map<string, { drop: Set<string>; add: T[] }>();
  const slot = (g: string): { drop: Set<string>; add: T[] } => {
    let s = touched.get(g);
    if (s === undefined) touched.set(g, (s = { drop: new Set(), add: [] }));
    return s;
  };
  for (const r of removed) for (const g of groupsOf(r)) slot(g).drop.add(r.key);
  for (const a of added) for (const g of groupsOf(a)) slot(g).add.push(a);
  const updates: [string, readonly T[] | undefined][] = [];
  for (const [g, { drop, add }] of touched) {
    const base = prev.get(g) ?? [];
    const next = drop.size === 0 ? [...base] : base.filter((x) => !drop.has(x.key));
    if (add.length > 0) {
      next.push(...add);
      next.sort(byKey);
    }
    updates.push([g, next.length === 0 ? undefined : Object.freeze(next)]);
  }
  return updates.length === 0 ? prev : prev.with(updates);
}

/** Regroups keys per address (IPs → sorted keys). */
function regroupKeys(prev: PersistentMap<string, readonly string[]>, removed: readonly { key: string; addrs: readonly string[] }[], added: readonly { key: string; addrs: readonly string[] }[]): PersistentMap<string, readonly string[]> {
  const touched = new Map<string, { drop: Set<string>; add: string[] }>();
  const slot = (g: string): { drop: Set<string>; add: string[] } => {
    let s = touched.get(g);
    if (s === undefined) touched.set(g, (s = { drop: new Set(), add: [] }));
    return s;
  };
  for (const r of removed) for (const a of r.addrs) slot(a).drop.add(r.key);
  for (const r of added) for (const a of r.addrs) slot(a).add.push(r.key);
  const updates: [string, readonly string[] | undefined][] = [];
  for (const [g, { drop, add }] of touched) {
    const next = (prev.get(g) ?? []).filter((k) => !drop.has(k));
    next.push(...add);
    next.sort();
    updates.push([g, next.length === 0 ? undefined : Object.freeze(next)]);
  }
  return updates.length === 0 ? prev : prev.with(updates);
}

function emptyState(options: ReturnType<typeof resolveOptions>): SnapshotState {
  return {
    options,
    version: 0,
    changes: undefined,
    resources: ResourceIndex.empty(),
    authz: new Map(),
    workloads: PersistentMap.empty(),
    workloadsByIp: PersistentMap.empty(),
    workloadsByNode: PersistentMap.empty(),
    workloadsByNamespace: PersistentMap.empty(),
    workloadsByIdentity: PersistentMap.empty(),
    services: PersistentMap.empty(),
    servicesByVip: PersistentMap.empty(),
    servicesByNamespace: PersistentMap.empty(),
    serviceEntryKeys: new Set(),
    waypoints: new Map(),
  };
}

/** Rebuilds what `dirty` names on top of `prev`, reading `resources`. */
function rebuild(prev: SnapshotState, resources: ResourceIndex, authz: ReadonlyMap<string, AuthzPolicy>, dirty: Dirty, changedResources: readonly string[], full: boolean): SnapshotState {
  const ctx = new BuildContext(prev.options, resources, authz);

  // ---- workloads
  const podKeys = new Set<string>();
  if (dirty.allWorkloads) {
    for (const p of resources.list(KIND_POD)) podKeys.add(`${p.ref.namespace}/${p.ref.name}`);
    for (const k of prev.workloads.keys()) podKeys.add(k);
  } else {
    for (const k of dirty.workloads) podKeys.add(k);
    for (const ns of dirty.workloadNamespaces) for (const w of prev.workloadsByNamespace.get(ns) ?? []) podKeys.add(w.key);
  }
  const removedW: Workload[] = [];
  const addedW: Workload[] = [];
  const wUpdates: [string, Workload | undefined][] = [];
  for (const key of podKeys) {
    const old = prev.workloads.get(key);
    const slash = key.indexOf('/');
    const pod = resources.getByKey(KIND_POD, refKey({ group: '', kind: 'Pod', namespace: key.slice(0, slash), name: key.slice(slash + 1) })) as PodResource | undefined;
    const next = pod === undefined ? undefined : buildWorkload(pod, ctx);
    if (old !== undefined) removedW.push(old);
    if (next !== undefined) addedW.push(next);
    wUpdates.push([key, next]);
  }
  const workloads = full ? PersistentMap.adopt(new Map(addedW.map((w) => [w.key, w]))) : prev.workloads.with(wUpdates);
  const ipsOf = (w: Workload): { key: string; addrs: readonly string[] } => ({ key: w.key, addrs: w.ips });
  const workloadsByIp = regroupKeys(prev.workloadsByIp, removedW.map(ipsOf), addedW.map(ipsOf));
  const workloadsByNode = regroup(prev.workloadsByNode, removedW, addedW, (w) => (w.node === undefined ? [] : [w.node]));
  const workloadsByNamespace = regroup(prev.workloadsByNamespace, removedW, addedW, (w) => [w.namespace]);
  const workloadsByIdentity = regroup(prev.workloadsByIdentity, removedW, addedW, (w) => [w.identity]);

  // ---- services
  const svcKeys = new Set<string>();
  if (dirty.allServices) {
    for (const s of resources.list(KIND_SERVICE)) svcKeys.add(`${s.ref.namespace}/${s.ref.name}`);
    for (const k of prev.services.keys()) svcKeys.add(k);
  } else {
    for (const k of dirty.services) svcKeys.add(k);
    for (const ns of dirty.serviceNamespaces) for (const s of prev.servicesByNamespace.get(ns) ?? []) svcKeys.add(s.key);
  }
  const removedS: MeshService[] = [];
  const addedS: MeshService[] = [];
  const sUpdates: [string, MeshService | undefined][] = [];
  for (const key of svcKeys) {
    if (prev.serviceEntryKeys.has(key)) continue; // rebuilt below
    const old = prev.services.get(key);
    const slash = key.indexOf('/');
    const ns = key.slice(0, slash);
    const svc = resources.getByKey(KIND_SERVICE, refKey({ group: '', kind: 'Service', namespace: ns, name: key.slice(slash + 1) })) as ServiceResource | undefined;
    const next = svc === undefined ? undefined : buildService(svc, ctx, workloadsByNamespace.get(ns) ?? []);
    if (old !== undefined) removedS.push(old);
    if (next !== undefined) addedS.push(next);
    sUpdates.push([key, next]);
  }
  let serviceEntryKeys = prev.serviceEntryKeys;
  if (dirty.entries) {
    const built = buildServiceEntryServices(resources.list<ServiceEntryResource>(KIND_SERVICE_ENTRY), ctx, {
      workloadsInNamespace: (ns) => workloadsByNamespace.get(ns) ?? [],
      workloadByIp: (ip) => {
        const k = workloadsByIp.get(ip)?.[0];
        return k === undefined ? undefined : workloads.get(k);
      },
    });
    const live = new Set(built.map((s) => s.key));
    for (const key of prev.serviceEntryKeys) {
      if (live.has(key)) continue;
      const old = prev.services.get(key);
      if (old !== undefined) removedS.push(old);
      sUpdates.push([key, undefined]);
      svcKeys.add(key);
    }
    for (const next of built) {
      const old = prev.services.get(next.key);
      // An unchanged host keeps its object, so its projection is not sent again.
      if (old !== undefined && !full && JSON.stringify(old) === JSON.stringify(next)) continue;
      if (old !== undefined) removedS.push(old);
      addedS.push(next);
      sUpdates.push([next.key, next]);
      svcKeys.add(next.key);
    }
    serviceEntryKeys = live;
  }
  const services = full ? PersistentMap.adopt(new Map(addedS.map((s) => [s.key, s]))) : prev.services.with(sUpdates);
  const vipsOf = (s: MeshService): { key: string; addrs: readonly string[] } => ({ key: s.key, addrs: s.vips });
  const servicesByVip = regroupKeys(prev.servicesByVip, removedS.map(vipsOf), addedS.map(vipsOf));
  const servicesByNamespace = regroup(prev.servicesByNamespace, removedS, addedS, (s) => [s.namespace]);

  // ---- waypoints
  let waypoints: ReadonlyMap<string, Waypoint> = prev.waypoints;
  const wpKeys = new Set<string>(dirty.waypoints);
  if (dirty.allWaypoints) {
    for (const g of resources.list(KIND_GATEWAY)) wpKeys.add(`${g.ref.namespace}/${g.ref.name}`);
    for (const k of prev.waypoints.keys()) wpKeys.add(k);
  }
  if (wpKeys.size > 0) {
    const next = new Map(prev.waypoints);
    for (const key of wpKeys) {
      const slash = key.indexOf('/');
      const ns = key.slice(0, slash);
      const gw = resources.getByKey(KIND_GATEWAY, refKey({ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: ns, name: key.slice(slash + 1) })) as GatewayResource | undefined;
      if (gw !== undefined && ctx.waypointExists(ns, gw.ref.name)) next.set(key, buildWaypoint(gw, workloadsByNamespace.get(ns) ?? []));
      else next.delete(key);
    }
    waypoints = next;
  }

  return {
    options: prev.options,
    version: prev.version + 1,
    changes: full
      ? undefined
      : Object.freeze({
          resources: Object.freeze([...changedResources].sort()),
          workloads: Object.freeze([...podKeys].sort()),
          services: Object.freeze([...svcKeys].sort()),
          waypoints: Object.freeze([...wpKeys].sort()),
        }),
    resources,
    authz,
    workloads,
    workloadsByIp,
    workloadsByNode,
    workloadsByNamespace,
    workloadsByIdentity,
    services,
    servicesByVip,
    servicesByNamespace,
    serviceEntryKeys,
    waypoints,
  };
}

/** Compiles resources (already validated: from `loadPaths` or `parseObjects`) into a Snapshot. */
export function compile(resources: readonly Resource[], opts: CompileOptions = {}): Snapshot {
  const options = resolveOptions(opts);
  const index = ResourceIndex.of(resources);
  const state = rebuild(emptyState(options), index, BuildContext.compileAllAuthz(index), emptyDirty(true), [], true);
  return new Snapshot(state, CHECKER);
}

function podSelectedBy(svc: MeshService, pod: PodResource): boolean {
  return serviceSelects(svc.selector, svc.namespace, { namespace: pod.ref.namespace, labels: pod.metadata.labels ?? {} });
}

/** Marks what one changed resource makes stale (see the module header). */
function markDirty(c: Changed, prev: SnapshotState, dirty: Dirty): void {
  const any = (c.new ?? c.old) as Resource;
  const kind = kindKey(any.group, any.kind);
  const ns = any.ref.namespace;
  const root = prev.options.rootNamespace;
  const domain = prev.options.clusterDomain;
  const both = [c.old, c.new].filter((r): r is Resource => r !== undefined);
  switch (kind) {
    case KIND_POD: {
      dirty.workloads.add(`${ns}/${any.ref.name}`);
      if (!dirty.entries) {
        const ips = new Set(both.flatMap((p) => (p as PodResource).status?.podIPs?.map((x) => x.ip) ?? [(p as PodResource).status?.podIP ?? '']));
        dirty.entries = prev.resources.list<ServiceEntryResource>(KIND_SERVICE_ENTRY).some((se) =>
          (se.ref.namespace === ns && se.spec.workloadSelector !== undefined) || (se.spec.endpoints ?? []).some((e) => e.address !== undefined && ips.has(e.address)));
      }
      for (const svc of prev.servicesByNamespace.get(ns) ?? []) {
        if (both.some((p) => podSelectedBy(svc, p as PodResource))) dirty.services.add(svc.key);
      }
      for (const p of both) {
        const gw = p.metadata.labels?.['gateway.networking.k8s.io/gateway-name'];
        if (gw !== undefined) dirty.waypoints.add(`${ns}/${gw}`);
      }
      break;
    }
    case KIND_NAMESPACE:
      dirty.workloadNamespaces.add(any.ref.name);
      dirty.serviceNamespaces.add(any.ref.name);
      if (!dirty.entries) dirty.entries = prev.resources.list<ServiceEntryResource>(KIND_SERVICE_ENTRY).some((se) => se.ref.namespace === any.ref.name);
      break;
    case KIND_PEER_AUTHENTICATION:
    case KIND_AUTHORIZATION_POLICY:
      if (ns === root) dirty.allWorkloads = true;
      else dirty.workloadNamespaces.add(ns);
      break;
    case KIND_SERVICE:
      dirty.services.add(`${ns}/${any.ref.name}`);
      break;
    case KIND_HTTP_ROUTE:
    case KIND_GRPC_ROUTE:
    case KIND_TCP_ROUTE:
    case KIND_TLS_ROUTE:
      for (const r of both) for (const p of httpRouteParents(r as HttpRouteResource)) dirty.services.add(p.service);
      break;
    case KIND_REFERENCE_GRANT:
      // Few and rarely changed; which routes a grant opens depends on every route's backends.
      dirty.allServices = true;
      break;
    case KIND_SERVICE_ENTRY:
      dirty.entries = true;
      break;
    case KIND_VIRTUAL_SERVICE:
    case KIND_DESTINATION_RULE: {
      if (prev.resources.list(KIND_SERVICE_ENTRY).length > 0) dirty.entries = true;
      for (const r of both) {
        const hosts = kind === KIND_VIRTUAL_SERVICE ? (r as VirtualServiceResource).spec.hosts ?? [] : [(r as DestinationRuleResource).spec.host];
        for (const h of hosts) {
          const full = resolveHost(h, r.ref.namespace, domain);
          if (isWildcard(full)) dirty.allServices = true;
          else {
            const suffix = `.svc.${domain}`;
            const parts = full.endsWith(suffix) ? full.slice(0, -suffix.length).split('.') : [];
            if (parts.length === 2) dirty.services.add(`${parts[1]}/${parts[0]}`);
          }
        }
      }
      break;
    }
    case KIND_GATEWAY: {
      const key = `${ns}/${any.ref.name}`;
      dirty.waypoints.add(key);
      const bound = (t: { namespace: string; name: string } | undefined): boolean => t !== undefined && t.namespace === ns && t.name === any.ref.name;
      for (const w of prev.workloads.values()) if (bound(w.waypointTarget)) dirty.workloads.add(w.key);
      for (const s of prev.services.values()) if (bound(s.waypointTarget)) dirty.services.add(s.key);
      if (!dirty.entries) for (const k of prev.serviceEntryKeys) if (bound(prev.services.get(k)?.waypointTarget)) dirty.entries = true;
      break;
    }
    case KIND_LOCAL_RATE_LIMIT: {
      const gateways = new Set<string>();
      for (const r of both) {
        for (const t of rateLimitTargets(r as LocalRateLimitResource)) {
          const [tkind, tkey] = t.split('|') as [string, string];
          if (tkind === 'Service') dirty.services.add(tkey);
          else gateways.add(tkey);
        }
      }
      if (gateways.size > 0) {
        for (const s of prev.services.values()) if (s.waypoint !== undefined && gateways.has(`${s.waypoint.namespace}/${s.waypoint.name}`)) dirty.services.add(s.key);
      }
      break;
    }
    default:
      break;
  }
}

/**
 * A new Snapshot with `change` applied, recomputing only the indexes the changed objects
 * touch. The given snapshot is not modified. Throws InvalidChangeError on a resource without
 * kind or name.
 */
export function applyChange(snapshot: Snapshot, change: Change): Snapshot {
  const prev = snapshot.state;
  const upserts = change.upsert ?? [];
  const deletes = change.delete ?? [];
  const changed = new Map<string, Changed>();
  for (const ref of deletes) {
    if (typeof ref?.kind !== 'string' || typeof ref.name !== 'string' || ref.kind === '' || ref.name === '') {
      throw new InvalidChangeError('a deleted reference needs kind and name');
    }
    const full: ResourceRef = { group: ref.group ?? '', kind: ref.kind, namespace: ref.namespace ?? '', name: ref.name };
    const old = prev.resources.get(full);
    if (old !== undefined) changed.set(old.key, { old });
  }
  for (const r of upserts) {
    if (typeof r?.key !== 'string' || typeof r.kind !== 'string' || r.ref === undefined) {
      throw new InvalidChangeError('an upserted resource must come from parseObject/loadPaths (it has no key)');
    }
    const old = prev.resources.get(r.ref);
    const entry = changed.get(r.key);
    changed.set(r.key, { ...(entry?.old !== undefined ? { old: entry.old } : old !== undefined ? { old } : {}), new: r });
  }
  const resources = prev.resources.with(upserts, deletes.filter((d) => !upserts.some((u) => u.key === refKey({ group: d.group ?? '', kind: d.kind, namespace: d.namespace ?? '', name: d.name }))));
  const list = [...changed.values()];
  const dirty = emptyDirty(false);
  for (const c of list) markDirty(c, prev, dirty);
  const authz = BuildContext.updateAuthz(prev.authz, list);
  const state = rebuild(prev, resources, authz, dirty, [...changed.keys()], false);
  return new Snapshot(state, CHECKER, snapshot);
}
