/**
 * A parsed, validated resource: the typed spec of one Kubernetes object plus where it came
 * from. Resources are deep-frozen when parsed; the model never mutates them.
 *
 * Invariants:
 * - `metadata.namespace` is set for namespaced kinds (defaulted to `default`, as kubectl does)
 *   and absent for cluster-scoped kinds; `ref.namespace` is `''` for those.
 * - `key` is unique per object across all kinds (`group/Kind/namespace/name`).
 * - `origin` is present only for objects read from a file; `origin.locate` maps a field path to
 *   a position in that file (used for cross-reference diagnostics).
 */
import type { FieldPath, ResourceRef, SourcePosition } from './diagnostics.js';
import type { ObjectMeta } from './schema/common.js';

export type { ResourceRef };

/** Where a resource came from in a file. */
export interface Origin {
  readonly file: string;
  /** Position of the document's first line. */
  readonly line: number;
  readonly column: number;
  /** Position of a field inside the document; the nearest existing ancestor if the field is absent. */
  locate(path: FieldPath, atKey?: boolean): SourcePosition | undefined;
}

export interface Resource<Spec = unknown, Status = unknown> {
  readonly apiVersion: string;
  /** API group, `''` for the core group. */
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly ref: ResourceRef;
  /** `group/Kind/namespace/name` (group `core` for the core group). */
  readonly key: string;
  readonly metadata: ObjectMeta;
  /** The validated spec; an empty object for kinds without one. */
  readonly spec: Spec;
  readonly status: Status | undefined;
  readonly origin?: Origin;
}

/** `group/Kind` of a kind (`core/Pod`, `networking.istio.io/VirtualService`). */
export function kindKey(group: string, kind: string): string {
  return `${group === '' ? 'core' : group}/${kind}`;
}

export function refKey(ref: ResourceRef): string {
  return `${kindKey(ref.group, ref.kind)}/${ref.namespace}/${ref.name}`;
}

export function sameRef(a: ResourceRef, b: ResourceRef): boolean {
  return a.group === b.group && a.kind === b.kind && a.namespace === b.namespace && a.name === b.name;
}

/** Recursively freezes a plain value (objects and arrays); returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
