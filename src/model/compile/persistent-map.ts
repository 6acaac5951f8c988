/**
 * An immutable map with cheap updates, for the snapshot's large indexes (10,000 workloads by IP):
 * a frozen base map plus a small overlay of changes. `with()` copies only the overlay; when the
 * overlay grows past 1/8 of the base it is folded into a new base, so a lookup costs at most two
 * Map lookups and an update costs O(overlay), amortised O(1) per change.
 *
 * Invariants: a `PersistentMap` never changes after construction, and neither do the Maps it
 * holds, so old snapshots stay valid while new ones share structure with them.
 */

const TOMBSTONE: unique symbol = Symbol('deleted');
type Slot<V> = V | typeof TOMBSTONE;

export class PersistentMap<K, V> implements Iterable<[K, V]> {
  private constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly overlay: ReadonlyMap<K, Slot<V>>,
    readonly size: number,
  ) {}

  static empty<K, V>(): PersistentMap<K, V> {
    return new PersistentMap<K, V>(new Map(), new Map(), 0);
  }

  /** Wraps `map`, which the caller hands over and must not change afterwards. */
  static adopt<K, V>(map: Map<K, V>): PersistentMap<K, V> {
    return new PersistentMap<K, V>(map, new Map(), map.size);
  }

  get(key: K): V | undefined {
    const slot = this.overlay.get(key);
    if (slot !== undefined) return slot === TOMBSTONE ? undefined : slot;
    return this.base.get(key);
  }

  has(key: K): boolean {
    const slot = this.overlay.get(key);
    if (slot !== undefined) return slot !== TOMBSTONE;
    return this.base.has(key);
  }

  /** A new map with `updates` applied; a value of `undefined` deletes the key. */
  with(updates: Iterable<readonly [K, V | undefined]>): PersistentMap<K, V> {
    const overlay = new Map<K, Slot<V>>(this.overlay);
    let size = this.size;
    for (const [k, v] of updates) {
      const had = overlay.has(k) ? overlay.get(k) !== TOMBSTONE : this.base.has(k);
      if (v === undefined) {
        if (!had) continue;
        size--;
        if (this.base.has(k)) overlay.set(k, TOMBSTONE);
        else overlay.delete(k);
      } else {
        if (!had) size++;
        overlay.set(k, v);
      }
    }
    if (overlay.size > 32 && overlay.size > this.base.size >> 3) {
      const merged = new Map<K, V>(this.base);
      for (const [k, v] of overlay) {
        if (v === TOMBSTONE) merged.delete(k);
        else merged.set(k, v);
      }
      return new PersistentMap<K, V>(merged, new Map(), merged.size);
    }
    return new PersistentMap<K, V>(this.base, overlay, size);
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.base) if (!this.overlay.has(k)) yield [k, v];
    for (const [k, v] of this.overlay) if (v !== TOMBSTONE) yield [k, v];
  }

  *keys(): IterableIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }
}
