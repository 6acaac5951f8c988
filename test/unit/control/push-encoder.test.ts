/**
 * Pushes assembled from cached bytes (PushEncoder) must decode to exactly the message the generic
 * serializer would have produced, and the cache must hand out the same bytes for the same entry
 * and rebuild the global view only when the table's version moves.
 */
import test from 'ava';
import { protos, type DiscoveryResponse } from '../../../src/control/proto.js';
import { PushEncoder } from '../../../src/control/push-encoder.js';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { resourceKey, type MeshResource } from '../../../src/control/mesh-resource.js';

const method = () => protos().discovery.ambit.v1.Discovery.service.Stream;
const serialize = (m: DiscoveryResponse): Buffer => method().responseSerialize(m);
const decode = (b: Buffer): unknown => JSON.parse(JSON.stringify(method().responseDeserialize(b)));

const wl = (name: string, node: string): MeshResource => ({
  kind: 'WORKLOAD', name, json: JSON.stringify({ name, node, note: 'ünïcödé ✓' }), workload: { node, namespace: 'default', serviceAccount: 'default', labels: {} },
});
const policy = (name: string): MeshResource => ({ kind: 'AUTHORIZATION_POLICY', name, json: JSON.stringify({ name }), select: { agents: { meshWide: true } } });

test('a full view from cached parts decodes to the generic encoding of the same message', (t) => {
  const table = new ResourceTable({ epoch: 'e1' });
  table.replaceAll([wl('a', 'n1'), wl('b', 'n2'), policy('p1'), { kind: 'NAMESPACE', name: 'default', json: '{"name":"default"}' }]);
  const enc = new PushEncoder(serialize);
  const scoped = table.get(resourceKey('AUTHORIZATION_POLICY', 'p1'))!;
  const header = { epoch: table.epoch, version: table.version, changedAtMs: 1234, full: true, baseVersion: 0, removals: [] };
  const bytes = enc.encode(header, [enc.globalView(table).bytes, enc.entry(scoped)]);
  const globals = [...table.values()].filter((e) => e.resource.kind !== 'AUTHORIZATION_POLICY').map((e) => e.wire);
  t.deepEqual(decode(bytes), decode(serialize({ ...header, upserts: [...globals, scoped.wire] })));
  t.is(enc.globalView(table).count, 3);
});

test('a delta with removals and replace kinds decodes to the generic encoding', (t) => {
  const table = new ResourceTable({ epoch: 'e2' });
  table.replaceAll([wl('a', 'n1'), wl('b', 'n2')]);
  const cs = table.apply([wl('a', 'n3')], [resourceKey('WORKLOAD', 'b')])!;
  const enc = new PushEncoder(serialize);
  const after = cs.changes.find((c) => c.after !== undefined)!.after!;
  const header = { epoch: table.epoch, version: cs.version, changedAtMs: cs.changedAtMs, full: false, baseVersion: 1, removals: [{ kind: 'WORKLOAD' as const, name: 'b' }], replaceKinds: ['AUTHORIZATION_POLICY' as const] };
  t.deepEqual(decode(enc.encode(header, [enc.entry(after)])), decode(serialize({ ...header, upserts: [after.wire] })));
  t.deepEqual(decode(enc.encode(header, [])), decode(serialize({ ...header, upserts: [] })), 'a push without upserts');
});

test('entry bytes are cached per entry; the global view is rebuilt only when the version moves', (t) => {
  const table = new ResourceTable({ epoch: 'e3' });
  table.replaceAll([wl('a', 'n1'), wl('b', 'n2')]);
  const enc = new PushEncoder(serialize);
  const a = table.get(resourceKey('WORKLOAD', 'a'))!;
  t.is(enc.entry(a), enc.entry(a));
  const g1 = enc.globalView(table);
  t.is(enc.globalView(table), g1, 'same version: same bytes');
  table.apply([wl('a', 'n9')], []);
  const g2 = enc.globalView(table);
  t.not(g2, g1);
  t.deepEqual(decode(enc.encode({ epoch: 'e3', version: 2, full: true }, [g2.bytes])), decode(serialize({ epoch: 'e3', version: 2, full: true, upserts: [...table.values()].map((e) => e.wire) })));
});
