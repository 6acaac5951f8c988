/**
 * docs/compatibility.md, generated from the schema: every kind ambit models with every field of
 * its `spec` (and of `status` where ambit reads it), and what ambit does with each, taken from
 * the field's mode in the kind's schema (src/model/kinds/, written with src/model/schema/dsl.ts),
 * plus the kinds ambit knows and ignores (kinds/unmodelled.ts).
 *
 * Invariants: the output is a pure function of the schema (no dates, no environment), so a test
 * can compare docs/compatibility.md with it byte for byte; fields appear in schema order.
 * Regenerate with `npx tsx src/cli/main.ts analyze --compat-table > docs/compatibility.md`.
 */
import { KINDS } from './kinds/all-kinds.js';
import type { KindDefinition } from './kinds/kind.js';
import { UNMODELLED_KINDS } from './kinds/unmodelled.js';
import type { Field, Schema } from './schema/dsl.js';

interface Row {
  field: string;
  status: string;
  note: string;
}

const STATUS: Record<Field<unknown, boolean>['mode'], string> = {
  normal: 'supported',
  deprecated: 'supported, deprecated',
  notApplied: 'accepted, not applied',
  unimplemented: 'not implemented (warning)',
  ignored: 'ignored',
};

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function enumNote(schema: Schema<unknown>): string {
  const shape = schema.shape;
  if (shape?.type !== 'enum') return '';
  const parts = [`values: ${shape.values.join(', ')}`];
  if (shape.unimplemented.length > 0) parts.push(`not implemented: ${shape.unimplemented.join(', ')}${shape.note !== undefined ? ` (${shape.note})` : ''}`);
  if (shape.deprecated.length > 0) parts.push(`deprecated: ${shape.deprecated.join(', ')}`);
  return parts.join('; ');
}

/** The element schema under arrays and records, and the path suffix they add. */
function unwrap(schema: Schema<unknown>, path: string): { schema: Schema<unknown>; path: string } {
  let s = schema;
  let p = path;
  for (;;) {
    const shape = s.shape;
    if (shape?.type === 'array') {
      s = shape.item;
      p += '[]';
    } else if (shape?.type === 'record') {
      s = shape.value;
      p += '.*';
    } else return { schema: s, path: p };
  }
}

function walk(schema: Schema<unknown>, path: string, rows: Row[]): void {
  const shape = schema.shape;
  if (shape?.type !== 'object') return;
  const ignoredHere: string[] = [];
  for (const [name, field] of Object.entries(shape.fields)) {
    if (field.mode === 'ignored') {
      ignoredHere.push(name);
      continue;
    }
    const fieldPath = path === '' ? name : `${path}.${name}`;
    const inner = unwrap(field.schema as Schema<unknown>, fieldPath);
    const notes = [field.required ? 'required' : '', field.note ?? '', enumNote(inner.schema)].filter((n) => n !== '');
    rows.push({ field: fieldPath, status: STATUS[field.mode], note: notes.join('; ') });
    // The parts of a field ambit does not act on share its status: they are not listed.
    if (field.mode === 'normal' || field.mode === 'deprecated') walk(inner.schema, inner.path, rows);
  }
  if (ignoredHere.length > 0) {
    rows.push({ field: `${path === '' ? '' : `${path}.`}{${ignoredHere.join(', ')}}`, status: 'ignored', note: 'known, irrelevant to the mesh: accepted silently' });
  }
  if (shape.freeForm) rows.push({ field: `${path}.*`, status: 'supported', note: 'free-form' });
}

function apiVersions(k: KindDefinition<unknown, unknown>): string {
  return k.versions.map((v) => (k.group === '' ? v : `${k.group}/${v}`)).join(', ');
}

function kindRows(k: KindDefinition<unknown, unknown>): Row[] {
  const rows: Row[] = [];
  walk(k.spec as Schema<unknown>, k.specFromTopLevel !== undefined ? '' : 'spec', rows);
  if (k.status !== undefined) walk(k.status as Schema<unknown>, 'status', rows);
  for (const f of k.otherFields ?? []) rows.push({ field: f, status: 'ignored', note: 'known, irrelevant to the mesh: accepted silently' });
  return rows;
}

/** The whole of docs/compatibility.md. */
export function compatibilityMarkdown(): string {
  const out: string[] = [];
  out.push(
    '# Compatibility: kinds and fields',
    '',
    '<!-- Generated from src/model/schema and src/model/kinds by',
    '     `npx tsx src/cli/main.ts analyze --compat-table > docs/compatibility.md`. Do not edit:',
    '     test/unit/model/compat-table.test.ts fails when this file differs from the schema. -->',
    '',
    'What ambit does with each kind and field of Kubernetes, Istio and Gateway API YAML, as',
    '`ambit analyze` and the control plane validate it. Statuses:',
    '',
    '- **supported**: validated and applied.',
    '- **supported, deprecated**: applied; `ambit analyze` says what replaces it (info).',
    '- **accepted, not applied**: validated and accepted; ambit does not act on it, and `ambit analyze` says why (info, or a warning where that weakens a policy).',
    '- **not implemented (warning)**: validated and kept; `ambit analyze` warns that ambit does not implement it.',
    '- **ignored**: known and irrelevant to the mesh (container images, resources): accepted silently.',
    '',
    'A field that is not listed is unknown: an error that refuses the resource, as Istio\'s validation',
    'refuses it (a refused resource changes nothing: the control plane keeps serving the last good',
    'configuration). With `--allow-unknown-fields` (`ambit analyze`, `ambit control`) it is a warning',
    'and the field is dropped; unknown `status` fields (written by controllers, not people) and objects',
    'read from the Kubernetes API, which validated them, get the warning too. `[]` marks the items of a',
    'list, `.*` the values of a mapping.',
    '',
    '## Kinds ambit models',
    '',
    '| kind | apiVersion | what ambit does |',
    '|---|---|---|',
  );
  for (const k of KINDS) out.push(`| ${k.kind} | ${apiVersions(k)} | ${cell(k.summary)} |`);
  out.push(
    '',
    '## Kinds ambit ignores',
    '',
    'Objects of these kinds are ignored with one warning per kind (AMBIT_OBJECT_UNKNOWN_KIND) saying',
    'why; any other kind gets the same warning without the explanation.',
    '',
    '| kind | API group | why, and what to use instead |',
    '|---|---|---|',
  );
  for (const k of UNMODELLED_KINDS) out.push(`| ${k.kind} | ${k.group === '' ? 'core' : k.group} | ${cell(k.note)} |`);
  for (const k of KINDS) {
    out.push('', `## ${k.kind} (${k.group === '' ? 'core' : k.group})`, '');
    const rows = kindRows(k);
    if (rows.length === 0) {
      out.push('No fields besides `metadata`.');
      continue;
    }
    out.push('| field | status | notes |', '|---|---|---|');
    for (const r of rows) out.push(`| \`${cell(r.field)}\` | ${r.status} | ${cell(r.note)} |`);
  }
  out.push('');
  return out.join('\n');
}
