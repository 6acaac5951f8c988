/**
 * Every field Istio's and Gateway API's CRDs define for the kinds ambit models is known to
 * ambit's schema (supported, accepted, reported or ignored), so valid Istio YAML is never
 * refused as unknown fields. The field list is test/fixtures/model/istio-field-paths.txt,
 * listed from the released CRDs by scripts/list-crd-fields.mjs.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findKind } from '../../../src/model/kinds/all-kinds.js';
import type { Schema } from '../../../src/model/schema/dsl.js';

const FIELDS = fileURLToPath(new URL('../../fixtures/model/istio-field-paths.txt', import.meta.url));

/** Why `path` (`spec.http[].route[].weight`) is not known below `schema`, or undefined when it is. */
function unknownAt(schema: Schema<unknown>, path: string): string | undefined {
  let s: Schema<unknown> = schema;
  const segments = path.split('.').slice(1);
  for (const [i, seg] of segments.entries()) {
    const name = seg.replace(/(\[\])+$/, '');
    const lists = (seg.length - name.length) / 2;
    let shape = s.shape;
    if (shape?.type === 'any') return undefined;
    if (shape?.type !== 'object') return `${segments.slice(0, i).join('.')} has no fields in ambit's schema`;
    const field = shape.fields[name];
    if (field === undefined) return shape.freeForm ? undefined : `"${name}" is not a field of ${['spec', ...segments.slice(0, i)].join('.')}`;
    if (field.mode === 'ignored') return undefined;
    s = field.schema as Schema<unknown>;
    for (let k = 0; k < lists; k++) {
      shape = s.shape;
      if (shape?.type === 'any') return undefined;
      if (shape?.type !== 'array') return `${name} is not a list in ambit's schema`;
      s = shape.item;
    }
  }
  return undefined;
}

test('ambit knows every field of the Istio and Gateway API kinds it models', (t) => {
  const lines = readFileSync(FIELDS, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  t.true(lines.length > 800, 'the field list is there');
  const missing: string[] = [];
  const kinds = new Set<string>();
  for (const line of lines) {
    const [key, path] = line.split(' ') as [string, string];
    const slash = key.lastIndexOf('/');
    const def = findKind(key.slice(0, slash), key.slice(slash + 1));
    if (def === undefined) {
      missing.push(`${key}: kind not modelled`);
      continue;
    }
    kinds.add(key);
    const why = unknownAt(def.spec as Schema<unknown>, path);
    if (why !== undefined) missing.push(`${key} ${path}: ${why}`);
  }
  t.deepEqual(missing, []);
  t.is(kinds.size, 7);
});

test('the walk refuses what the schema does not define', (t) => {
  const dr = findKind('networking.istio.io', 'DestinationRule')?.spec as Schema<unknown>;
  t.is(unknownAt(dr, 'spec.trafficPolicy.connectionPool.http.http2KeepAlive.interval'), undefined);
  t.is(unknownAt(dr, 'spec.subsets[].trafficPolicy.tls.sni'), undefined, 'below an opaque field anything goes');
  t.regex(unknownAt(dr, 'spec.trafficPolicy.circuitBreaker') ?? '', /"circuitBreaker" is not a field of spec\.trafficPolicy/);
  t.regex(unknownAt(dr, 'spec.host[].x') ?? '', /host is not a list/);
});
