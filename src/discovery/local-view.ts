/**
 * A subscriber's copy of its view: resources by kind and name, with the epoch and version of
 * the last push applied. Pushes apply atomically: every payload is parsed before anything
 * changes, so a push that fails leaves the previous view intact (and is nacked).
 *
 * Invariants: `version` only moves forward within an epoch; a delta whose base is not the
 * current version is refused (the client then resumes, and the server sends a consistent push).
 */
import type { DiscoveryResponse__Output } from '../control/proto.js';
import { ApplyError } from './errors.js';

export type ViewKind = Exclude<DiscoveryResponse__Output['upserts'][number]['kind'], 'RESOURCE_KIND_UNSPECIFIED'>;

export interface ViewChange {
  version: number;
  full: boolean;
  upserted: { kind: ViewKind; name: string }[];
  removed: { kind: ViewKind; name: string }[];
  /** When the control plane saw the change (ms since the Unix epoch). */
  changedAtMs: number;
}

/** The persisted form (see view-cache.ts). */
export interface ViewSnapshot {
  epoch: string;
  version: number;
  resources: Partial<Record<ViewKind, Record<string, unknown>>>;
}

export class LocalView {
  epoch = '';
  version = 0;
  private kinds = new Map<ViewKind, Map<string, unknown>>();

  get(kind: ViewKind, name: string): unknown { return this.kinds.get(kind)?.get(name); }
  /** All resources of a kind (a live map: do not mutate). */
  all(kind: ViewKind): ReadonlyMap<string, unknown> { return this.kinds.get(kind) ?? new Map(); }
  count(kind?: ViewKind): number {
    if (kind !== undefined) return this.kinds.get(kind)?.size ?? 0;
    let n = 0;
    for (const m of this.kinds.values()) n += m.size;
    return n;
  }
  get empty(): boolean { return this.epoch === ''; }

  apply(r: DiscoveryResponse__Output): ViewChange {
    if (!r.full && (r.epoch !== this.epoch || r.baseVersion !== this.version)) {
      throw new ApplyError(`delta for ${r.epoch}@${r.baseVersion} does not apply to the held view ${this.epoch || '(none)'}@${this.version}; resynchronising`);
    }
    const parsed: { kind: ViewKind; name: string; value: unknown }[] = [];
    for (const u of r.upserts) {
      if (u.kind === 'RESOURCE_KIND_UNSPECIFIED') throw new ApplyError(`resource '${u.name}' has no kind`);
      let value: unknown;
      try {
        value = JSON.parse(u.json);
      } catch (err) {
        throw new ApplyError(`resource ${u.kind} '${u.name}' is not valid JSON: ${(err as Error).message}`, { cause: err });
      }
      parsed.push({ kind: u.kind, name: u.name, value });
    }
    const change: ViewChange = { version: r.version, full: r.full, upserted: [], removed: [], changedAtMs: r.changedAtMs };
    if (r.full) {
      for (const [kind, m] of this.kinds) for (const name of m.keys()) change.removed.push({ kind, name });
      this.kinds.clear();
    }
    for (const kind of r.replaceKinds) {
      if (kind === 'RESOURCE_KIND_UNSPECIFIED') continue;
      const m = this.kinds.get(kind);
      if (m === undefined) continue;
      for (const name of m.keys()) change.removed.push({ kind, name });
      m.clear();
    }
    for (const ref of r.removals) {
      if (ref.kind === 'RESOURCE_KIND_UNSPECIFIED') continue;
      if (this.kinds.get(ref.kind)?.delete(ref.name)) change.removed.push({ kind: ref.kind, name: ref.name });
    }
    for (const p of parsed) {
      let m = this.kinds.get(p.kind);
      if (m === undefined) { m = new Map(); this.kinds.set(p.kind, m); }
      m.set(p.name, p.value);
      change.upserted.push({ kind: p.kind, name: p.name });
    }
    // A name both removed (by full/replace) and upserted is an update, not a removal.
    if (change.removed.length > 0 && change.upserted.length > 0) {
      const up = new Set(change.upserted.map((u) => `${u.kind}\u0000${u.name}`));
      change.removed = change.removed.filter((x) => !up.has(`${x.kind}\u0000${x.name}`));
    }
    this.epoch = r.epoch;
    this.version = r.version;
    return change;
  }

  /**
   * A function that restores the view as it is now, for a push about to be applied (used to
   * roll back a push a consumer rejects). Costs O(resources the push touches), except for a
   * full push, which only keeps the old maps.
   */
  toUndo(r: DiscoveryResponse__Output): () => void {
    const epoch = this.epoch;
    const version = this.version;
    if (r.full) {
      // apply() drops the outer map's entries for a full push and builds new inner maps, so a
      // shallow copy of the outer map is enough to restore.
      const saved = new Map(this.kinds);
      return () => { this.kinds = saved; this.epoch = epoch; this.version = version; };
    }
    const replaced = new Map<ViewKind, Map<string, unknown>>();
    for (const kind of r.replaceKinds) {
      if (kind !== 'RESOURCE_KIND_UNSPECIFIED') replaced.set(kind, new Map(this.kinds.get(kind) ?? []));
    }
    const prev: { kind: ViewKind; name: string; had: boolean; value: unknown }[] = [];
    for (const x of [...r.upserts, ...r.removals]) {
      if (x.kind === 'RESOURCE_KIND_UNSPECIFIED' || replaced.has(x.kind)) continue;
      const m = this.kinds.get(x.kind);
      prev.push({ kind: x.kind, name: x.name, had: m?.has(x.name) ?? false, value: m?.get(x.name) });
    }
    return () => {
      for (const p of prev.reverse()) {
        let m = this.kinds.get(p.kind);
        if (m === undefined) { m = new Map(); this.kinds.set(p.kind, m); }
        if (p.had) m.set(p.name, p.value); else m.delete(p.name);
      }
      for (const [kind, m] of replaced) this.kinds.set(kind, m);
      this.epoch = epoch;
      this.version = version;
    };
  }

  toSnapshot(): ViewSnapshot {
    const resources: ViewSnapshot['resources'] = {};
    for (const [kind, m] of this.kinds) resources[kind] = Object.fromEntries(m);
    return { epoch: this.epoch, version: this.version, resources };
  }

  static fromSnapshot(s: ViewSnapshot): LocalView {
    const v = new LocalView();
    v.epoch = s.epoch;
    v.version = s.version;
    for (const [kind, obj] of Object.entries(s.resources)) v.kinds.set(kind as ViewKind, new Map(Object.entries(obj ?? {})));
    return v;
  }
}
