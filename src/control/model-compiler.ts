/**
 * MeshCompiler over the resource model: the first call compiles everything (`compile`), later
 * calls hand the model only what differs from the previous call (`applyChange`), so a one-pod
 * edit recompiles one workload and the Services that select it, and every untouched compiled
 * object keeps its identity (which makes its projection free, see projection.ts).
 *
 * Resources are compared by key and object identity: sources reuse the parsed Resource of an
 * unchanged file or of an unchanged Kubernetes object, so identity is a sound change test.
 */
import { refKey, type Resource, type ResourceRef } from '../model/resource.js';
import { applyChange, compile } from '../model/compile/compile.js';
import type { CompileOptions } from '../model/compile/options.js';
import type { Snapshot } from '../model/compile/snapshot.js';
import type { SecretResource } from '../model/kinds/core.js';
import type { CompileResult, MeshChanges, MeshCompiler } from './model-port.js';

const NO_CHANGES: MeshChanges = Object.freeze({ workloads: [], services: [], waypoints: [], upserted: [], removed: [] });

export class ModelCompiler implements MeshCompiler {
  private snapshot: Snapshot | undefined;
  private byKey = new Map<string, Resource>();

  /** `options`: trust domain, cluster domain, root namespace (model defaults). */
  constructor(private readonly options: CompileOptions = {}) {}

  /** The snapshot of the last compile (for /config_dump and tests). */
  get current(): Snapshot | undefined { return this.snapshot; }

  compile(resources: readonly Resource[]): CompileResult {
    const next = new Map<string, Resource>();
    for (const r of resources) next.set(r.key, r);
    if (this.snapshot === undefined) {
      this.byKey = next;
      return this.result((this.snapshot = compile(resources, this.options)), undefined);
    }
    const upsert: Resource[] = [];
    const del: Resource['ref'][] = [];
    for (const [k, r] of next) if (this.byKey.get(k) !== r) upsert.push(r);
    for (const [k, r] of this.byKey) if (!next.has(k)) del.push(r.ref);
    this.byKey = next;
    return this.apply(upsert, del);
  }

  /** Only these changed since the last call: no pass over the whole set. */
  update(upserts: readonly Resource[], removals: readonly ResourceRef[]): CompileResult {
    if (this.snapshot === undefined) {
      const all = new Map(this.byKey);
      for (const ref of removals) all.delete(refKey(ref));
      for (const r of upserts) all.set(r.key, r);
      return this.compile([...all.values()]);
    }
    const upsert = upserts.filter((r) => this.byKey.get(r.key) !== r);
    const del = removals.filter((ref) => this.byKey.has(refKey(ref)) && !upserts.some((u) => u.key === refKey(ref)));
    for (const ref of del) this.byKey.delete(refKey(ref));
    for (const r of upsert) this.byKey.set(r.key, r);
    return this.apply(upsert, del);
  }

  private apply(upsert: readonly Resource[], del: readonly ResourceRef[]): CompileResult {
    const prev = this.snapshot as Snapshot;
    if (upsert.length === 0 && del.length === 0) return this.result(prev, NO_CHANGES);
    const snap = (this.snapshot = applyChange(prev, { upsert, delete: del }));
    const c = snap.changes;
    return this.result(snap, c === undefined ? undefined : { workloads: c.workloads, services: c.services, waypoints: c.waypoints, upserted: upsert, removed: del });
  }

  private result(snap: Snapshot, changes: MeshChanges | undefined): CompileResult {
    return {
      // Unsorted views: projection visits everything once per full projection and needs no order.
      mesh: {
        get workloads() { return snap.eachWorkload(); },
        get services() { return snap.eachService(); },
        waypoints: snap.waypoints(),
        workloadByKey: (key) => snap.workload(key),
        serviceByKey: (key) => snap.service(key),
        get ingresses() { return snap.ingresses(); },
        secret: (namespace, name) => snap.resource({ group: '', kind: 'Secret', namespace, name }) as SecretResource | undefined,
      },
      diagnostics: snap.diagnostics(),
      ...(changes !== undefined ? { changes } : {}),
      routeStatuses: () => snap.routeStatuses(),
    };
  }
}
