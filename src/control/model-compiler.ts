/**
 * MeshCompiler over the resource model: the first call compiles everything (`compile`), later
 * calls hand the model only what differs from the previous call (`applyChange`), so a one-pod
 * edit recompiles one workload and the Services that select it, and every untouched compiled
 * object keeps its identity (which makes its projection free, see projection.ts).
 *
 * Resources are compared by key and object identity: sources reuse the parsed Resource of an
 * unchanged file or of an unchanged Kubernetes object, so identity is a sound change test.
 */
import type { Resource } from '../model/resource.js';
import { applyChange, compile } from '../model/compile/compile.js';
import type { CompileOptions } from '../model/compile/options.js';
import type { Snapshot } from '../model/compile/snapshot.js';
import type { CompileResult, MeshCompiler } from './model-port.js';

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
    let snap: Snapshot;
    if (this.snapshot === undefined) {
      snap = compile(resources, this.options);
    } else {
      const upsert: Resource[] = [];
      const del: Resource['ref'][] = [];
      for (const [k, r] of next) if (this.byKey.get(k) !== r) upsert.push(r);
      for (const [k, r] of this.byKey) if (!next.has(k)) del.push(r.ref);
      snap = upsert.length === 0 && del.length === 0 ? this.snapshot : applyChange(this.snapshot, { upsert, delete: del });
    }
    this.snapshot = snap;
    this.byKey = next;
    return {
      // Unsorted views: projection visits everything once per change and needs no order.
      mesh: { get workloads() { return snap.eachWorkload(); }, get services() { return snap.eachService(); }, waypoints: snap.waypoints() },
      diagnostics: snap.diagnostics(),
    };
  }
}
