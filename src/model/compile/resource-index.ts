/**
 * All resources of a snapshot, by kind and key, as persistent maps so that a change copies
 * only what it touches. The raw material from which every derived index is computed.
 */
import type { ResourceRef } from '../diagnostics.js';
import { kindKey, refKey, type Resource } from '../resource.js';
import { PersistentMap } from './persistent-map.js';

export class ResourceIndex {
  private constructor(private readonly byKind: ReadonlyMap<string, PersistentMap<string, Resource>>) {}

  static empty(): ResourceIndex {
    return new ResourceIndex(new Map());
  }

  static of(resources: Iterable<Resource>): ResourceIndex {
    const maps = new Map<string, Map<string, Resource>>();
    for (const r of resources) {
      const k = kindKey(r.group, r.kind);
      let m = maps.get(k);
      if (m === undefined) maps.set(k, (m = new Map()));
      m.set(r.key, r);
    }
    const byKind = new Map<string, PersistentMap<string, Resource>>();
    for (const [k, m] of maps) byKind.set(k, PersistentMap.adopt(m));
    return new ResourceIndex(byKind);
  }

  get(ref: ResourceRef): Resource | undefined {
    return this.byKind.get(kindKey(ref.group, ref.kind))?.get(refKey(ref));
  }

  getByKey(kind: string, key: string): Resource | undefined {
    return this.byKind.get(kind)?.get(key);
  }

  /** Resources of one kind (`core/Pod`), in no particular order. */
  list<R extends Resource = Resource>(kind: string): R[] {
    const m = this.byKind.get(kind);
    return m === undefined ? [] : ([...m.values()] as R[]);
  }

  count(kind: string): number {
    return this.byKind.get(kind)?.size ?? 0;
  }

  kinds(): string[] {
    return [...this.byKind.keys()];
  }

  *all(): IterableIterator<Resource> {
    for (const m of this.byKind.values()) yield* m.values();
  }

  /** A new index with `upserts` set and `deletes` removed. */
  with(upserts: readonly Resource[], deletes: readonly ResourceRef[]): ResourceIndex {
    const updates = new Map<string, [string, Resource | undefined][]>();
    const add = (kind: string, key: string, r: Resource | undefined): void => {
      let l = updates.get(kind);
      if (l === undefined) updates.set(kind, (l = []));
      l.push([key, r]);
    };
    for (const ref of deletes) add(kindKey(ref.group, ref.kind), refKey(ref), undefined);
    for (const r of upserts) add(kindKey(r.group, r.kind), r.key, r);
    const byKind = new Map(this.byKind);
    for (const [kind, list] of updates) {
      const next = (byKind.get(kind) ?? PersistentMap.empty<string, Resource>()).with(list);
      if (next.size === 0) byKind.delete(kind);
      else byKind.set(kind, next);
    }
    return new ResourceIndex(byKind);
  }
}

export const KIND_NAMESPACE = 'core/Namespace';
export const KIND_POD = 'core/Pod';
export const KIND_SERVICE = 'core/Service';
export const KIND_SERVICE_ACCOUNT = 'core/ServiceAccount';
export const KIND_NODE = 'core/Node';
export const KIND_PEER_AUTHENTICATION = 'security.istio.io/PeerAuthentication';
export const KIND_AUTHORIZATION_POLICY = 'security.istio.io/AuthorizationPolicy';
export const KIND_REQUEST_AUTHENTICATION = 'security.istio.io/RequestAuthentication';
export const KIND_VIRTUAL_SERVICE = 'networking.istio.io/VirtualService';
export const KIND_DESTINATION_RULE = 'networking.istio.io/DestinationRule';
export const KIND_SERVICE_ENTRY = 'networking.istio.io/ServiceEntry';
export const KIND_HTTP_ROUTE = 'gateway.networking.k8s.io/HTTPRoute';
export const KIND_GRPC_ROUTE = 'gateway.networking.k8s.io/GRPCRoute';
export const KIND_TCP_ROUTE = 'gateway.networking.k8s.io/TCPRoute';
export const KIND_TLS_ROUTE = 'gateway.networking.k8s.io/TLSRoute';
export const KIND_REFERENCE_GRANT = 'gateway.networking.k8s.io/ReferenceGrant';
export const KIND_GATEWAY = 'gateway.networking.k8s.io/Gateway';
export const KIND_LOCAL_RATE_LIMIT = 'ambit.dev/LocalRateLimit';
