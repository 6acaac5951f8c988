/**
 * What the model knows about one kind: its API group and versions, whether it is namespaced,
 * the name rule, the schemas of `spec` and `status`, and how it attaches to workloads.
 *
 * This is the extension point for new kinds: a new file under src/model/kinds/ exports a
 * `defineKind({...})` and one line in all-kinds.ts registers it. Loading, validation with
 * positions, duplicate detection, the per-namespace index and `Snapshot.attachedPolicies()`
 * (for `attachment: 'workload-selector'`) then work for it without further code.
 */
import type { NameRule } from '../schema/common.js';
import type { Severity, DiagnosticCode } from '../diagnostics.js';
import type { Schema } from '../schema/dsl.js';

/** A problem found by a kind's `validate` hook. */
export interface SpecIssue {
  code: DiagnosticCode;
  severity: Severity;
  message: string;
  /** Relative to `spec`. */
  path: readonly (string | number)[];
}

export interface KindDefinition<Spec = unknown, Status = unknown> {
  /** API group, `''` for core. */
  readonly group: string;
  readonly kind: string;
  /** Accepted versions, preferred first (e.g. `['v1', 'v1beta1']`). */
  readonly versions: readonly string[];
  readonly namespaced: boolean;
  /** Rule for `metadata.name`. */
  readonly nameRule: NameRule;
  /** Schema of `spec`; kinds without a spec use an empty object schema. */
  readonly spec: Schema<Spec>;
  /** Whether `spec` must be present (default false: absent means `{}`). */
  readonly specRequired?: boolean;
  /** Schema of `status` (default: status is ignored). */
  readonly status?: Schema<Status>;
  /** Other top-level fields the kind has and ambit ignores (ServiceAccount `secrets`) (default none). */
  readonly otherFields?: readonly string[];
  /**
   * Top-level fields that hold the object's content where other kinds have `spec` (a Secret's
   * `type`, `data`, `stringData`): they are validated together with the `spec` schema and kept
   * as the resource's `spec` (default none).
   */
  readonly specFromTopLevel?: readonly string[];
  /**
   * How the kind applies to workloads (default `none`). `workload-selector`: like Istio policies,
   * `spec.selector.matchLabels` picks workloads of the namespace (all namespaces from the root
   * namespace), no selector means the whole namespace (the mesh from the root namespace), and
   * `spec.targetRef(s)` attach to Services or waypoints instead.
   */
  readonly attachment?: 'none' | 'workload-selector';
  /**
   * Extra checks of the raw `spec` beyond the schema (default none). Issues carry paths
   * relative to `spec`; one at a path the schema already reported is dropped.
   */
  readonly validate?: (rawSpec: unknown) => readonly SpecIssue[];
  /** One line for `ambit analyze --kinds`. */
  readonly summary: string;
}

/** Identity helper that keeps the spec and status types of a kind definition. */
export function defineKind<Spec, Status = undefined>(def: KindDefinition<Spec, Status>): KindDefinition<Spec, Status> {
  return def;
}

export type SpecOf<K> = K extends KindDefinition<infer S, infer _St> ? S : never;
export type StatusOf<K> = K extends KindDefinition<infer _S, infer St> ? St : never;
