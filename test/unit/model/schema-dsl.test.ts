import test from 'ava';
import { arr, duration, enumOf, ignored, int, obj, opt, record, req, str, unimplemented, deprecated, INVALID, SchemaContext } from '../../../src/model/schema/dsl.js';
import { formatPath } from '../../../src/model/diagnostics.js';
import { formatDurationMs, parseDurationMs } from '../../../src/model/duration.js';
import { labelKeyProblem, labelValueProblem, nameProblem, hostProblem } from '../../../src/model/schema/common.js';
import { cidrProblem } from '../../../src/util/cidr.js';
import { hostMatches, resolveHost } from '../../../src/model/compile/hosts.js';
import { PersistentMap } from '../../../src/model/compile/persistent-map.js';

function run<T>(schema: { parse: (v: unknown, p: (string | number)[], c: SchemaContext) => T | typeof INVALID }, v: unknown): { value: T | typeof INVALID; issues: string[] } {
  const ctx = new SchemaContext();
  const value = schema.parse(v, [], ctx);
  return { value, issues: ctx.issues.map((i) => `${i.code}@${formatPath(i.path)}`) };
}

const thing = obj(
  {
    name: req(str({ minLength: 1 })),
    port: opt(int({ min: 1, max: 65535 })),
    mode: opt(enumOf(['A', 'B', 'X'], { unimplemented: ['X'] })),
    tags: opt(arr(str(), { uniqueBy: { key: (s) => s, what: 'tag' } })),
    meta: opt(record(int())),
    old: deprecated(int(), 'use port'),
    later: unimplemented(str(), 'not yet'),
    skip: ignored(),
    every: opt(duration({ minMs: 1 })),
  },
  { atMostOne: [['port', 'old']] },
);

test('valid objects parse to typed values; ignored fields are dropped', (t) => {
  const r = run(thing, { name: 'n', port: 80, mode: 'A', tags: ['a'], meta: { x: 1 }, skip: { anything: true }, every: '1.5s' });
  t.deepEqual(r.issues, []);
  t.deepEqual(r.value, { name: 'n', port: 80, mode: 'A', tags: ['a'], meta: { x: 1 }, every: '1.5s' });
});

test('every kind of issue carries its path', (t) => {
  const r = run(thing, { port: 0, mode: 'C', tags: ['a', 'a', 3], meta: { y: 'z' }, typo: 1, every: 'soon' });
  t.deepEqual(r.issues.sort(), [
    'AMBIT_SCHEMA_DUPLICATE_ITEM@tags[1]',
    'AMBIT_SCHEMA_DURATION@every',
    'AMBIT_SCHEMA_ENUM@mode',
    'AMBIT_SCHEMA_RANGE@port',
    'AMBIT_SCHEMA_REQUIRED@',
    'AMBIT_SCHEMA_TYPE@meta.y',
    'AMBIT_SCHEMA_TYPE@tags[2]',
    'AMBIT_SCHEMA_UNKNOWN_FIELD@typo',
  ]);
  t.is(r.value, INVALID, 'a missing required field invalidates the object');
});

test('unimplemented and deprecated fields and values are reported and kept', (t) => {
  const r = run(thing, { name: 'n', mode: 'X', later: 'x', old: 3 });
  t.deepEqual(r.issues, ['AMBIT_SCHEMA_UNIMPLEMENTED@mode', 'AMBIT_SCHEMA_UNIMPLEMENTED@later', 'AMBIT_SCHEMA_DEPRECATED@old']);
  t.deepEqual(r.value, { name: 'n', mode: 'X', later: 'x', old: 3 });
});

test('oneof groups and null as absent', (t) => {
  t.deepEqual(run(thing, { name: 'n', port: 1, old: 2 }).issues, ['AMBIT_SCHEMA_DEPRECATED@old', 'AMBIT_SCHEMA_ONE_OF@']);
  t.deepEqual(run(thing, { name: 'n', port: null }).issues, []);
  t.deepEqual(run(thing, { name: null }).issues, ['AMBIT_SCHEMA_REQUIRED@']);
});

test('numbers for strings get a quoting hint', (t) => {
  const ctx = new SchemaContext();
  str().parse(8080, [], ctx);
  t.regex(ctx.issues[0]?.message ?? '', /quote it: "8080"/);
});

test('durations: Go/Istio syntax', (t) => {
  t.is(parseDurationMs('1.5s'), 1500);
  t.is(parseDurationMs('100ms'), 100);
  t.is(parseDurationMs('1m30s'), 90_000);
  t.is(parseDurationMs('2h'), 7_200_000);
  t.is(parseDurationMs('250us'), 0.25);
  t.is(parseDurationMs('0'), 0);
  for (const bad of ['', '10', 's', '1.s', '-1s', '1 s', '1d', 'abc']) t.is(parseDurationMs(bad), undefined, bad);
  t.is(formatDurationMs(1500), '1.5s');
  t.is(formatDurationMs(120_000), '2m');
  t.is(formatDurationMs(250), '250ms');
  t.deepEqual(run(duration({ minMs: 1 }), '0').issues, ['AMBIT_SCHEMA_DURATION@']);
});

test('Kubernetes name and label rules', (t) => {
  t.is(nameProblem('reviews-v1', 'dns1123-label'), undefined);
  t.truthy(nameProblem('Reviews', 'dns1123-label'));
  t.truthy(nameProblem('a'.repeat(64), 'dns1123-label'));
  t.is(nameProblem('a.b-c', 'dns1123-subdomain'), undefined);
  t.truthy(nameProblem('1abc', 'dns1035-label'));
  t.is(labelKeyProblem('app.kubernetes.io/name'), undefined);
  t.truthy(labelKeyProblem('Bad_Prefix/name'));
  t.truthy(labelKeyProblem('-x'));
  t.is(labelValueProblem(''), undefined);
  t.truthy(labelValueProblem('has space'));
  t.is(hostProblem('*.example.com'), undefined);
  t.truthy(hostProblem('a.*.com'));
  t.is(cidrProblem('198.18.0.0/15'), undefined);
  t.truthy(cidrProblem('198.18.0.0/33'));
  t.truthy(cidrProblem('nope'));
});

test('Istio host resolution and wildcard matching', (t) => {
  t.is(resolveHost('reviews', 'bookinfo', 'cluster.local'), 'reviews.bookinfo.svc.cluster.local');
  t.is(resolveHost('reviews.bookinfo', 'x', 'cluster.local'), 'reviews.bookinfo');
  t.is(resolveHost('*', 'x', 'cluster.local'), '*');
  t.is(resolveHost('198.18.128.1', 'x', 'cluster.local'), '198.18.128.1');
  t.true(hostMatches('*.bookinfo.svc.cluster.local', 'reviews.bookinfo.svc.cluster.local'));
  t.false(hostMatches('*.bookinfo.svc.cluster.local', 'bookinfo.svc.cluster.local'));
  t.true(hostMatches('*', 'x'));
});

test('PersistentMap: updates, deletes, compaction, old versions intact', (t) => {
  let m = PersistentMap.empty<string, number>();
  const versions: PersistentMap<string, number>[] = [];
  for (let i = 0; i < 200; i++) {
    m = m.with([[`k${i}`, i]]);
    if (i % 3 === 0) m = m.with([[`k${i}`, undefined]]);
    versions.push(m);
  }
  t.is(m.size, 200 - 67);
  t.is(m.get('k1'), 1);
  t.false(m.has('k0'));
  t.is([...m.keys()].length, m.size);
  t.is(versions[0]?.size, 0);
  t.is(versions[1]?.get('k1'), 1);
  t.false(versions[1]?.has('k2'));
  const deleted = m.with([['k1', undefined], ['nope', undefined]]);
  t.is(deleted.size, m.size - 1);
  t.is(m.get('k1'), 1);
});
