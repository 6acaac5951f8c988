import test from 'ava';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { resourceKey, type MeshResource } from '../../../src/control/mesh-resource.js';

const wl = (name: string, node: string, ip = '198.19.0.1'): MeshResource => ({
  kind: 'WORKLOAD', name, json: JSON.stringify({ name, node, ip }), workload: { node, namespace: 'default', serviceAccount: 'default', labels: {} },
});

test('versions advance only on real changes and history answers changedSince', (t) => {
  const table = new ResourceTable();
  const v1 = table.replaceAll([wl('a', 'n1'), wl('b', 'n2')]);
  t.is(v1?.version, 1);
  t.is(table.replaceAll([wl('a', 'n1'), wl('b', 'n2')]), undefined, 'identical content is no change');
  const v2 = table.apply([wl('a', 'n1', '198.19.0.2')], []);
  t.is(v2?.version, 2);
  t.deepEqual(v2?.changes.map((c) => c.name), ['a']);
  const v3 = table.replaceAll([wl('a', 'n1', '198.19.0.2')]);
  t.deepEqual(v3?.changes.map((c) => [c.name, c.after === undefined]), [['b', true]]);
  t.deepEqual([...(table.changedSince(1) ?? [])].sort(), [resourceKey('WORKLOAD', 'a'), resourceKey('WORKLOAD', 'b')]);
  t.deepEqual([...(table.changedSince(2) ?? [])], [resourceKey('WORKLOAD', 'b')]);
  t.deepEqual([...(table.changedSince(3) ?? [])], []);
  t.is(table.changedSince(4), undefined, 'a version from the future is unknown');
});

test('node index follows a workload that moves', (t) => {
  const table = new ResourceTable();
  table.replaceAll([wl('a', 'n1')]);
  t.is(table.workloadsOn('n1').length, 1);
  table.apply([wl('a', 'n2')], []);
  t.is(table.workloadsOn('n1').length, 0);
  t.is(table.workloadsOn('n2').length, 1);
  table.apply([], [resourceKey('WORKLOAD', 'a')]);
  t.is(table.workloadsOn('n2').length, 0);
});

test('bounded history raises the floor by whole versions', (t) => {
  const table = new ResourceTable({ maxHistory: 5 });
  for (let i = 0; i < 10; i++) table.apply([wl(`w${i}`, 'n'), wl(`x${i}`, 'n')], []);
  t.is(table.version, 10);
  t.true(table.historyFloor >= 7);
  t.is(table.changedSince(1), undefined, 'too old: needs a full view');
  const since = table.changedSince(table.historyFloor);
  t.truthy(since);
  t.true((since?.size ?? 0) <= 6);
  t.true(since?.has(resourceKey('WORKLOAD', 'w9')));
  t.is(table.changedAtMs(1), undefined);
  t.truthy(table.changedAtMs(10));
});
