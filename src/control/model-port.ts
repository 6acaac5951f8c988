/**
 * The narrow interface the control plane needs from the resource model (src/model/): validate
 * and compile a set of parsed resources into the compiled mesh that projection.ts distributes.
 * Sources hold the parsed resources (per file, or per Kubernetes object) and call this on every
 * change; `diagnostics` with severity `error` reject the change.
 */
import type { RouteStatus } from '../model/compile/route-status.js';
import type { Diagnostic, ResourceRef } from '../model/diagnostics.js';
import type { Resource } from '../model/resource.js';
import type { CompiledMesh } from './projection.js';

/**
 * What one compile changed relative to the previous call's result, so the source projects and
 * distributes only that (a one-pod edit: one workload and the Services that select it).
 */
export interface MeshChanges {
  /** Keys (`namespace/name`) of workloads, Services and waypoints that were recomputed. */
  readonly workloads: readonly string[];
  readonly services: readonly string[];
  readonly waypoints: readonly string[];
  /** Resources added or replaced, and the references of those removed. */
  readonly upserted: readonly Resource[];
  readonly removed: readonly ResourceRef[];
}

export interface CompileResult {
  /** Undefined when the resources cannot be compiled at all. */
  mesh: CompiledMesh | undefined;
  /** Everything the model found, errors and warnings. */
  diagnostics: readonly Diagnostic[];
  /** Changes relative to the previous call's result; absent when unknown (project everything). */
  changes?: MeshChanges;
  /** Status of every Gateway API route (computed on call; default: not available). */
  routeStatuses?(): readonly RouteStatus[];
}

export interface MeshCompiler {
  compile(resources: readonly Resource[]): CompileResult;
  /**
   * Optional fast path: only `upserts` and `removals` changed since the last call (compile or
   * update), so the compiler need not compare the whole set. Same result as `compile` of the
   * whole set with those changes applied.
   */
  update?(upserts: readonly Resource[], removals: readonly ResourceRef[]): CompileResult;
}
