import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { LocalView } from '../../../src/discovery/local-view.js';
import { readViewCache, writeViewCache } from '../../../src/discovery/view-cache.js';
import { Backoff } from '../../../src/discovery/backoff.js';
import type { DiscoveryResponse__Output } from '../../../src/control/proto.js';

const res = (o: Partial<DiscoveryResponse__Output>): DiscoveryResponse__Output => ({
  epoch: 'e1', version: 1, full: false, baseVersion: 0, upserts: [], removals: [], changedAtMs: 0, replaceKinds: [], ...o,
});
const up = (kind: 'WORKLOAD' | 'AUTHORIZATION_POLICY', name: string, v: unknown) => ({ kind, name, json: JSON.stringify(v) });

test('full view, deltas, replace kinds, base checks and rollback', (t) => {
  const v = new LocalView();
  v.apply(res({ full: true, upserts: [up('WORKLOAD', 'a', 1), up('WORKLOAD', 'b', 2), up('AUTHORIZATION_POLICY', 'p', 0)] }));
  t.is(v.count(), 3);
  t.throws(() => v.apply(res({ version: 3, baseVersion: 2 })), { code: 'AMBIT_ERR_DISCOVERY_APPLY' });
  t.throws(() => v.apply(res({ version: 2, baseVersion: 1, upserts: [{ kind: 'WORKLOAD', name: 'x', json: '{' }] })), { message: /not valid JSON/ });
  t.is(v.version, 1, 'failed pushes change nothing');
  const c = v.apply(res({ version: 2, baseVersion: 1, upserts: [up('WORKLOAD', 'a', 10)], removals: [{ kind: 'WORKLOAD', name: 'b' }] }));
  t.deepEqual(c.removed, [{ kind: 'WORKLOAD', name: 'b' }]);
  t.is(v.get('WORKLOAD', 'a'), 10);
  const r = res({ version: 3, baseVersion: 2, upserts: [up('AUTHORIZATION_POLICY', 'q', 0), up('WORKLOAD', 'c', 3)], replaceKinds: ['AUTHORIZATION_POLICY'] });
  const undo = v.toUndo(r);
  v.apply(r);
  t.deepEqual([...v.all('AUTHORIZATION_POLICY').keys()], ['q']);
  undo();
  t.deepEqual([...v.all('AUTHORIZATION_POLICY').keys()], ['p']);
  t.false(v.all('WORKLOAD').has('c'));
  t.is(v.version, 2);
  const full = res({ version: 4, full: true, epoch: 'e2', upserts: [up('WORKLOAD', 'z', 0)] });
  const undoFull = v.toUndo(full);
  v.apply(full);
  t.is(v.count(), 1);
  undoFull();
  t.is(v.count(), 2);
  t.is(v.epoch, 'e1');
});

test('the view cache round-trips atomically and refuses foreign files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-view-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'sub', 'view.json');
  const v = new LocalView();
  v.apply(res({ full: true, upserts: [up('WORKLOAD', 'a', { ip: '198.19.0.1' })] }));
  await writeViewCache(f, v.toSnapshot());
  t.deepEqual(readdirSync(join(dir, 'sub')), ['view.json'], 'no temporary file left');
  const back = LocalView.fromSnapshot((await readViewCache(f))!);
  t.deepEqual(back.get('WORKLOAD', 'a'), { ip: '198.19.0.1' });
  t.is(await readViewCache(join(dir, 'missing.json')), undefined);
  writeFileSync(f, '{"format":"other"}');
  await t.throwsAsync(readViewCache(f), { code: 'AMBIT_ERR_VIEW_CACHE' });
  writeFileSync(f, 'garbage');
  await t.throwsAsync(readViewCache(f), { message: /not valid JSON/ });
});

test('backoff grows to its ceiling with full jitter and resets', (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999 });
  const d = [b.next(), b.next(), b.next(), b.next(), b.next()];
  t.deepEqual(d, [99, 199, 399, 799, 999]);
  b.reset();
  t.is(b.next(), 99);
  const z = new Backoff({ random: () => 0 });
  t.is(z.next(), 0);
});
