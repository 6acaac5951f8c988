/**
 * The versioned table of everything the control plane distributes, with the history needed to
 * answer "what changed since version N" for a resuming subscriber.
 *
 * Invariants:
 * - `version` increases by one per applied change set that changed at least one resource; an
 *   identical reload changes nothing and produces no version.
 * - `epoch` is random per table (per control-plane start): versions from another epoch are
 *   meaningless and force a full view.
 * - History holds (version, key) for every change after `historyFloor`; a subscriber at version
 *   v >= historyFloor can be brought up to date with a delta. History is bounded by
 *   `maxHistory` entries (default 200,000); older entries are dropped and the floor rises.
 * - Stored entries are never mutated; a change replaces the entry, so a push built from entries
 *   stays consistent while later changes are applied.
 */
import { randomBytes } from 'node:crypto';
import type { Resource } from './proto.js';
import { resourceKey, selectKey, type MeshKind, type MeshResource } from './mesh-resource.js';

export interface TableEntry {
  readonly resource: MeshResource;
  readonly key: string;
  readonly selectKey: string;
  /** The wire form, shared by every push that carries this entry. */
  readonly wire: Resource;
  /** Version at which this entry was last written. */
  readonly version: number;
}

/** One applied change: the entries before and after (undefined when absent). */
export interface Change {
  key: string;
  kind: MeshKind;
  name: string;
  before: TableEntry | undefined;
  after: TableEntry | undefined;
}

export interface ChangeSet {
  version: number;
  /** When the source saw the change (ms since the Unix epoch). */
  changedAtMs: number;
  changes: Change[];
}

export interface ResourceTableOptions {
  /** Bound on history entries kept for resuming subscribers (default 200000). */
  maxHistory?: number;
  /** Epoch override, for tests (default: 8 random bytes, hex). */
  epoch?: string;
}

export class ResourceTable {
  readonly epoch: string;
  private ver = 0;
  private floor = 0;
  private readonly entries = new Map<string, TableEntry>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly bindings = new Map<string, TableEntry>();
  private readonly scoped = new Map<string, TableEntry>();
  private readonly historyVersions: number[] = [];
  private readonly historyKeys: string[] = [];
  private historyStart = 0;
  private readonly changedAt = new Map<number, number>();
  private readonly counts = new Map<string, number>();
  private readonly keys = new WeakMap<MeshResource, string>();
  private readonly maxHistory: number;

  constructor(opts: ResourceTableOptions = {}) {
    this.epoch = opts.epoch ?? randomBytes(8).toString('hex');
    this.maxHistory = opts.maxHistory ?? 200_000;
  }

  get version(): number { return this.ver; }
  /** Oldest version a delta can start from. */
  get historyFloor(): number { return this.floor; }
  get size(): number { return this.entries.size; }

  get(key: string): TableEntry | undefined { return this.entries.get(key); }
  getResource(kind: MeshKind, name: string): TableEntry | undefined { return this.entries.get(resourceKey(kind, name)); }
  values(): IterableIterator<TableEntry> { return this.entries.values(); }
  /** Entries of scoped kinds (policies, routes, ...), the ones views select from. */
  scopedEntries(): IterableIterator<TableEntry> { return this.scoped.values(); }
  /** Workload entries whose workload runs on `node`. */
  workloadsOn(node: string): TableEntry[] {
    const keys = this.byNode.get(node);
    if (keys === undefined) return [];
    const out: TableEntry[] = [];
    for (const k of keys) { const e = this.entries.get(k); if (e !== undefined) out.push(e); }
    return out;
  }
  /** The binding entry of waypoint "namespace/name". */
  binding(waypoint: string): TableEntry | undefined { return this.bindings.get(waypoint); }
  /** When the change that produced `version` was seen, if still remembered. */
  changedAtMs(version: number): number | undefined { return this.changedAt.get(version); }

  /** Count of entries per kind (for metrics and /config_dump); kept up to date by apply. */
  countByKind(): Record<string, number> {
    return Object.fromEntries([...this.counts].filter(([, n]) => n > 0));
  }

  /** resourceKey of `r`, computed once per MeshResource object. */
  private keyOf(r: MeshResource): string {
    let k = this.keys.get(r);
    if (k === undefined) { k = resourceKey(r.kind, r.name); this.keys.set(r, k); }
    return k;
  }

  /**
   * Replace the whole content with `resources`; only differences become changes.
   * Returns undefined when nothing changed.
   */
  replaceAll(resources: Iterable<MeshResource>, changedAtMs = Date.now()): ChangeSet | undefined {
    const seen = new Set<string>();
    const upserts: MeshResource[] = [];
    for (const r of resources) {
      seen.add(this.keyOf(r));
      upserts.push(r);
    }
    const removals: string[] = [];
    for (const key of this.entries.keys()) if (!seen.has(key)) removals.push(key);
    return this.apply(upserts, removals, changedAtMs);
  }

  /**
   * Apply upserts and removals (keys from resourceKey). Upserts equal to the stored entry and
   * removals of absent keys are dropped. Returns undefined when nothing changed.
   */
  apply(upserts: Iterable<MeshResource>, removals: Iterable<string>, changedAtMs = Date.now()): ChangeSet | undefined {
    const version = this.ver + 1;
    const changes: Change[] = [];
    const touched = new Set<string>();
    for (const r of upserts) {
      const key = this.keyOf(r);
      const before = this.entries.get(key);
      // Projection hands back the same object for an unchanged model object: the cheap test first.
      if (before !== undefined && before.resource === r) continue;
      const sk = selectKey(r);
      if (before !== undefined && before.resource.json === r.json && before.selectKey === sk) continue;
      if (touched.has(key)) continue;
      touched.add(key);
      const after: TableEntry = { resource: r, key, selectKey: sk, wire: { kind: r.kind, name: r.name, json: r.json }, version };
      changes.push({ key, kind: r.kind, name: r.name, before, after });
    }
    for (const key of removals) {
      const before = this.entries.get(key);
      if (before === undefined || touched.has(key)) continue;
      touched.add(key);
      changes.push({ key, kind: before.resource.kind, name: before.resource.name, before, after: undefined });
    }
    if (changes.length === 0) return undefined;
    for (const c of changes) {
      if (c.before !== undefined) this.unindex(c.before);
      if (c.after !== undefined) { this.entries.set(c.key, c.after); this.index(c.after); } else this.entries.delete(c.key);
      this.historyVersions.push(version);
      this.historyKeys.push(c.key);
    }
    this.ver = version;
    this.changedAt.set(version, changedAtMs);
    this.trimHistory();
    return { version, changedAtMs, changes };
  }

  /**
   * Keys changed after `since` (exclusive) up to the current version, or undefined when the
   * history no longer reaches back that far.
   */
  changedSince(since: number): Set<string> | undefined {
    if (since < this.floor || since > this.ver) return undefined;
    const out = new Set<string>();
    // History versions are sorted: binary search for the first entry after `since`.
    let lo = this.historyStart, hi = this.historyVersions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.historyVersions[mid] ?? 0) <= since) lo = mid + 1; else hi = mid;
    }
    for (let i = lo; i < this.historyKeys.length; i++) out.add(this.historyKeys[i] ?? '');
    return out;
  }

  private index(e: TableEntry): void {
    const r = e.resource;
    this.counts.set(r.kind, (this.counts.get(r.kind) ?? 0) + 1);
    if (r.workload !== undefined) {
      let s = this.byNode.get(r.workload.node);
      if (s === undefined) { s = new Set(); this.byNode.set(r.workload.node, s); }
      s.add(e.key);
    }
    if (r.binding !== undefined) this.bindings.set(r.binding.waypoint, e);
    if (r.kind !== 'NAMESPACE' && r.kind !== 'WORKLOAD' && r.kind !== 'SERVICE' && r.kind !== 'WAYPOINT_BINDING') this.scoped.set(e.key, e);
  }

  private unindex(e: TableEntry): void {
    const r = e.resource;
    this.counts.set(r.kind, (this.counts.get(r.kind) ?? 0) - 1);
    if (r.workload !== undefined) {
      const s = this.byNode.get(r.workload.node);
      s?.delete(e.key);
      if (s !== undefined && s.size === 0) this.byNode.delete(r.workload.node);
    }
    if (r.binding !== undefined && this.bindings.get(r.binding.waypoint) === e) this.bindings.delete(r.binding.waypoint);
    this.scoped.delete(e.key);
  }

  private trimHistory(): void {
    const live = this.historyKeys.length - this.historyStart;
    if (live <= this.maxHistory) return;
    // Drop whole versions so the floor is exact.
    let cut = this.historyStart + (live - this.maxHistory);
    const lastDropped = this.historyVersions[cut - 1] ?? 0;
    while (cut < this.historyVersions.length && this.historyVersions[cut] === lastDropped) cut++;
    this.historyStart = cut;
    this.floor = lastDropped;
    for (const v of this.changedAt.keys()) { if (v <= lastDropped) this.changedAt.delete(v); else break; }
    // Compact the arrays once the dead prefix dominates.
    if (this.historyStart > this.maxHistory) {
      this.historyVersions.splice(0, this.historyStart);
      this.historyKeys.splice(0, this.historyStart);
      this.historyStart = 0;
    }
  }
}
