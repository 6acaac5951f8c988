/**
 * ReferenceGrant (gateway.networking.k8s.io v1beta1): a route may send to a Service in another
 * namespace only when a ReferenceGrant in that namespace lets routes of its kind, from its
 * namespace, refer to that Service (or to every Service, when `to[].name` is absent).
 *
 * Invariants: a reference within one namespace needs no grant; grants are read from the target
 * namespace only (a grant in the route's namespace grants nothing); `from[].group` and
 * `to[].group` are compared as written, `""` being the core group.
 */
import type { ReferenceGrantResource } from '../kinds/gateway-routes.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** Who refers: the route's group, kind and namespace. */
export interface ReferenceFrom {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}

/** What is referred to. `group` is `''` for core. */
export interface ReferenceTo {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** ReferenceGrants by the namespace they live in (the namespace they open). */
export class ReferenceGrants {
  private readonly byNamespace = new Map<string, ReferenceGrantResource[]>();

  constructor(grants: readonly ReferenceGrantResource[]) {
    for (const g of grants) {
      const l = this.byNamespace.get(g.ref.namespace);
      if (l === undefined) this.byNamespace.set(g.ref.namespace, [g]);
      else l.push(g);
    }
  }

  /** True when `from` may refer to `to`. */
  permits(from: ReferenceFrom, to: ReferenceTo): boolean {
    if (from.namespace === to.namespace) return true;
    for (const g of this.byNamespace.get(to.namespace) ?? []) {
      const fromOk = g.spec.from.some((f) => f.group === from.group && f.kind === from.kind && f.namespace === from.namespace);
      if (!fromOk) continue;
      if (g.spec.to.some((t) => normGroup(t.group) === normGroup(to.group) && t.kind === to.kind && (t.name === undefined || t.name === to.name))) return true;
    }
    return false;
  }
}

function normGroup(g: string): string {
  return g === 'core' ? '' : g;
}

/** No grants at all: only same-namespace references are permitted. */
export const NO_GRANTS = new ReferenceGrants([]);

/** Why a backendRef cannot be used regardless of what exists (Gateway API ResolvedRefs reasons). */
export type BackendRefProblem = 'InvalidKind' | 'RefNotPermitted';

/**
 * The problem of a route's backendRef: not a core Service (`InvalidKind`, as ambit routes to
 * Services only), or a Service of another namespace without a ReferenceGrant (`RefNotPermitted`).
 */
export function backendRefProblem(
  b: { readonly group?: string | undefined; readonly kind?: string | undefined; readonly name: string; readonly namespace?: string | undefined },
  from: ReferenceFrom,
  grants: ReferenceGrants,
): BackendRefProblem | undefined {
  const group = normGroup(b.group ?? '');
  if (group !== '' || (b.kind ?? 'Service') !== 'Service') return 'InvalidKind';
  const namespace = b.namespace ?? from.namespace;
  return grants.permits(from, { group: '', kind: 'Service', namespace, name: b.name }) ? undefined : 'RefNotPermitted';
}
