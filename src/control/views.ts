/**
 * Who receives what. A node agent receives every global resource (namespaces, workloads,
 * services, waypoint bindings: what it needs to resolve any destination) plus the L4 policies
 * that select at least one workload on its node. A waypoint receives the global resources too
 * (it picks endpoints and tunnels on) plus the routes, destination rules, rate limits and L7
 * policies bound to the services it serves.
 *
 * This module is pure: it reads the table and returns key sets; sessions diff them.
 */
import type { ResourceTable, TableEntry } from './resource-table.js';
import { GLOBAL_KINDS, type Selection, type WorkloadFacts } from './mesh-resource.js';

export type SubscriberKindName = 'agent' | 'waypoint';

export interface SubscriberId {
  kind: SubscriberKindName;
  /** Node name for an agent, "namespace/name" for a waypoint. */
  name: string;
}

/** What a subscriber's scoped selection depends on, computed from the table. */
export interface ViewContext {
  sub: SubscriberId;
  /** Agents: workloads on the node. */
  workloads: WorkloadFacts[];
  /** Waypoints: bound services ("namespace/name") and their namespaces. */
  services: Set<string>;
  namespaces: Set<string>;
}

export function viewContext(table: ResourceTable, sub: SubscriberId): ViewContext {
  const ctx: ViewContext = { sub, workloads: [], services: new Set(), namespaces: new Set() };
  if (sub.kind === 'agent') {
    for (const e of table.workloadsOn(sub.name)) if (e.resource.workload !== undefined) ctx.workloads.push(e.resource.workload);
  } else {
    const b = table.binding(sub.name)?.resource.binding;
    for (const s of b?.services ?? []) {
      ctx.services.add(s);
      const slash = s.indexOf('/');
      if (slash > 0) ctx.namespaces.add(s.slice(0, slash));
    }
  }
  return ctx;
}

/** A stable fingerprint of a context: equal fingerprints select equal scoped sets. */
export function contextFingerprint(ctx: ViewContext): string {
  if (ctx.sub.kind === 'agent') {
    return ctx.workloads.map((w) => `${w.namespace}|${JSON.stringify(w.labels)}`).sort().join('\n');
  }
  return [...ctx.services].sort().join('\n');
}

export function selects(sel: Selection | undefined, ctx: ViewContext): boolean {
  if (sel === undefined) return false;
  if (ctx.sub.kind === 'agent') {
    const a = sel.agents;
    if (a === undefined) return false;
    if (a.meshWide === true) return true;
    return ctx.workloads.some((w) => w.namespace === a.namespace && matchLabels(a.selector, w.labels));
  }
  if (sel.waypoints?.includes(ctx.sub.name)) return true;
  if (sel.waypointServices?.some((s) => ctx.services.has(s))) return true;
  if (sel.waypointNamespaces?.some((n) => ctx.namespaces.has(n))) return true;
  const wi = sel.waypointsIn;
  if (wi !== undefined && (wi.meshWide === true || ctx.sub.name.startsWith(`${wi.namespace}/`))) return true;
  return false;
}

function matchLabels(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (selector === undefined) return true;
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Whether a global entry goes to every subscriber (true for the global kinds). */
export function isGlobal(e: TableEntry): boolean {
  return GLOBAL_KINDS.has(e.resource.kind);
}

/** The scoped entries a subscriber receives, keyed by table key. */
export function scopedView(table: ResourceTable, ctx: ViewContext): Map<string, TableEntry> {
  const out = new Map<string, TableEntry>();
  for (const e of table.scopedEntries()) if (selects(e.resource.select, ctx)) out.set(e.key, e);
  return out;
}
