/**
 * Discovery pushes built from bytes encoded once and shared by every subscriber, so a full view
 * for a hundred subscribers costs one serialization of the mesh, not a hundred, and a delta
 * fan-out costs a copy of a few hundred bytes per subscriber.
 *
 * Invariants:
 * - A protobuf message's encoding is the concatenation of its fields' encodings, and a repeated
 *   field may be split across concatenated parts (the protobuf merge rule), so a push is the
 *   header (every field except `upserts`) followed by the cached `upserts` element of each
 *   resource it carries. Parsers see exactly the message the generic serializer would produce.
 * - Each table entry is encoded at most once: the bytes are cached per entry object, and entries
 *   are never mutated (a change replaces the entry), so cached bytes never go stale; they are
 *   dropped with the entry (WeakMap).
 * - The global part of a full view (every NAMESPACE, WORKLOAD, SERVICE, WAYPOINT_BINDING, in
 *   table order) is concatenated at most once per table version and epoch. Whole full views
 *   are not kept: each is the size of the mesh, and holding them costs more memory than their
 *   one copy per subscriber costs time.
 */
import type { DiscoveryResponse, Resource } from './proto.js';
import type { ResourceTable, TableEntry } from './resource-table.js';
import { GLOBAL_KINDS } from './mesh-resource.js';

/** The push without its upserts: what varies per subscriber and per version. */
export type PushHeader = Omit<DiscoveryResponse, 'upserts'>;

export class PushEncoder {
  private readonly chunks = new WeakMap<TableEntry, Buffer>();
  private global: { epoch: string; version: number; bytes: Buffer; count: number } | undefined;

  /** `serialize`: the Discovery.Stream response serializer (from the loaded proto). */
  constructor(private readonly serialize: (m: DiscoveryResponse) => Buffer) {}

  /** The `upserts` element (tag, length, Resource) of one entry, encoded once. */
  entry(e: TableEntry): Buffer {
    let b = this.chunks.get(e);
    if (b === undefined) {
      b = this.serialize({ upserts: [e.wire] });
      this.chunks.set(e, b);
    }
    return b;
  }

  /** Bytes of one upsert that is not a table entry (rare: tests and ad-hoc pushes). */
  resource(r: Resource): Buffer {
    return this.serialize({ upserts: [r] });
  }

  /** Every global entry's upsert bytes, concatenated in table order, and how many there are. */
  globalView(table: ResourceTable): { bytes: Buffer; count: number } {
    const g = this.global;
    if (g !== undefined && g.version === table.version && g.epoch === table.epoch) return g;
    const parts: Buffer[] = [];
    for (const e of table.values()) if (GLOBAL_KINDS.has(e.resource.kind)) parts.push(this.entry(e));
    const next = { epoch: table.epoch, version: table.version, bytes: Buffer.concat(parts), count: parts.length };
    this.global = next;
    return next;
  }

  /** A whole push: the header's encoding followed by the given upsert bytes. */
  encode(header: PushHeader, upserts: readonly Buffer[]): Buffer {
    const head = this.serialize(header);
    if (upserts.length === 0) return head;
    return Buffer.concat([head, ...upserts]);
  }
}
