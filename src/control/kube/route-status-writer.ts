/**
 * Writes the route status the model computes (src/model/compile/route-status.ts) back to the
 * Gateway API objects in Kubernetes mode, through their status subresource (PUT .../status with
 * the object as last listed, so the API server's optimistic concurrency refuses a stale write).
 *
 * Invariants:
 * - Only ambit's own entries of `status.parents` (controllerName ambit.dev/waypoint) are
 *   written; other controllers' entries are kept as they are, and a parent ambit does not manage
 *   (a Gateway of another class) gets no entry.
 * - A route is written only when its entries differ from what the object carries, compared
 *   without `lastTransitionTime`; so the watch event a write causes, compiled again, writes
 *   nothing (no write loop). `lastTransitionTime` is kept while a condition's status stays the
 *   same, and set to now when it changes.
 * - One sync at a time; a sync asked for meanwhile runs once after it, with the latest statuses.
 *   A failed write (409 conflict, 404, network) is logged and retried by the next sync (the
 *   object's own watch event brings one for conflicts).
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import { childLogger } from '../../util/log.js';
import { ROUTE_CONTROLLER_NAME, type RouteCondition, type RouteStatus } from '../../model/compile/route-status.js';
import { statusOf } from './api-error.js';
import type { KubeKind } from './kube-kinds.js';
import type { KubeObject } from './list-watch.js';

/** A status condition as Kubernetes stores it. */
interface WireCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

interface WireParent {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: WireCondition[];
}

export interface RouteStatusSyncResult {
  written: number;
  unchanged: number;
  failed: number;
}

/** Where a route's object is and how to reach its kind. */
export type RouteObjectLookup = (kind: string, namespace: string, name: string) => { object: KubeObject; kind: KubeKind } | undefined;

export interface RouteStatusWriterOptions {
  logger?: Logger;
  /** Clock for lastTransitionTime (default Date.now). */
  now?: () => number;
}

/** The parentRef as the API stores it: the fields set, none undefined. */
function wireRef(p: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['group', 'kind', 'namespace', 'name', 'sectionName', 'port']) if (p[k] !== undefined) out[k] = p[k];
  return out;
}

const sameRef = (a: Record<string, unknown>, b: Record<string, unknown>): boolean => JSON.stringify(wireRef(a)) === JSON.stringify(wireRef(b));

/** Comparable form of entries: without lastTransitionTime. */
function print(parents: readonly WireParent[]): string {
  return JSON.stringify(parents.map((p) => ({ r: wireRef(p.parentRef), c: p.controllerName, k: p.conditions.map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration ?? null]) })));
}

export class RouteStatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private readonly now: () => number;
  private running: Promise<RouteStatusSyncResult> | undefined;
  private next: { statuses: readonly RouteStatus[]; lookup: RouteObjectLookup } | undefined;

  constructor(kc: KubeConfig, o: RouteStatusWriterOptions = {}) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.log = childLogger('control.route-status', o.logger);
    this.now = o.now ?? Date.now;
  }

  /** Brings the objects' status in line with `statuses` (see the module header). */
  sync(statuses: readonly RouteStatus[], lookup: RouteObjectLookup): Promise<RouteStatusSyncResult> {
    if (this.running !== undefined) {
      this.next = { statuses, lookup };
      return this.running;
    }
    const run = this.syncOnce(statuses, lookup).finally(() => {
      this.running = undefined;
      const n = this.next;
      this.next = undefined;
      if (n !== undefined) this.sync(n.statuses, n.lookup).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'route status sync failed'));
    });
    this.running = run;
    return run;
  }

  private async syncOnce(statuses: readonly RouteStatus[], lookup: RouteObjectLookup): Promise<RouteStatusSyncResult> {
    const out: RouteStatusSyncResult = { written: 0, unchanged: 0, failed: 0 };
    for (const s of statuses) {
      const found = lookup(s.route.kind, s.route.namespace, s.route.name);
      if (found === undefined) continue;
      const { object, kind } = found;
      const meta = (object.metadata ?? {}) as { generation?: number };
      const current = ((object['status'] as { parents?: WireParent[] } | undefined)?.parents ?? []);
      const others = current.filter((p) => p.controllerName !== ROUTE_CONTROLLER_NAME);
      const mineBefore = current.filter((p) => p.controllerName === ROUTE_CONTROLLER_NAME);
      const stamp = new Date(this.now()).toISOString();
      const mine: WireParent[] = s.parents
        .filter((p) => p.managed)
        .map((p) => {
          const before = mineBefore.find((b) => sameRef(b.parentRef, p.parentRef as Record<string, unknown>));
          return {
            parentRef: wireRef(p.parentRef as Record<string, unknown>),
            controllerName: ROUTE_CONTROLLER_NAME,
            conditions: p.conditions.map((c: RouteCondition) => {
              const old = before?.conditions.find((x) => x.type === c.type);
              return {
                type: c.type,
                status: c.status,
                reason: c.reason,
                message: c.message,
                ...(meta.generation !== undefined ? { observedGeneration: meta.generation } : {}),
                lastTransitionTime: old !== undefined && old.status === c.status ? old.lastTransitionTime : stamp,
              };
            }),
          };
        });
      if (print(mine) === print(mineBefore)) {
        out.unchanged++;
        continue;
      }
      const body = { ...object, status: { ...(object['status'] as object | undefined), parents: [...others, ...mine] } };
      try {
        await this.api.replaceNamespacedCustomObjectStatus({ group: kind.group, version: kind.version, namespace: s.route.namespace, plural: kind.plural, name: s.route.name, body });
        out.written++;
      } catch (err) {
        out.failed++;
        this.log.warn({ route: `${s.route.kind} ${s.route.namespace}/${s.route.name}`, status: statusOf(err), err: (err as Error).message }, 'could not write the route status; the next sync retries');
      }
    }
    if (out.written > 0 || out.failed > 0) this.log.info(out, 'route status synced');
    return out;
  }
}
