import test from 'ava';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, openSync, closeSync, ftruncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { InputUnreadableError } from '../../../src/model/errors.js';
import { loadPaths, parseObjects } from '../../../src/model/load/load-paths.js';
import { KINDS } from '../../../src/model/kinds/all-kinds.js';
import { codes, parseYaml, tempDir } from './helpers.js';

const execFileP = promisify(execFile);
const LOAD_PATHS = fileURLToPath(new URL('../../../src/model/load/load-paths.ts', import.meta.url));

const FIXTURES = fileURLToPath(new URL('../../fixtures/model/', import.meta.url));

test('every kind loads from real YAML without diagnostics', async (t) => {
  const r = await loadPaths([join(FIXTURES, 'all-kinds.yaml')]);
  t.deepEqual(r.diagnostics.map((d) => `${d.code} ${d.message}`), []);
  const kinds = new Set(r.resources.map((x) => `${x.group}/${x.kind}`));
  for (const k of KINDS) t.true(kinds.has(`${k.group}/${k.kind}`), `fixture has a ${k.kind}`);
  const vs = r.resources.find((x) => x.kind === 'VirtualService');
  t.is(vs?.version, 'v1alpha3');
  t.true(Object.isFrozen(vs?.spec));
  t.is(r.resources.find((x) => x.kind === 'Namespace')?.ref.namespace, '');
});

test('positions: line, column and field path of each problem', async (t) => {
  const r = await loadPaths([join(FIXTURES, 'positions.yaml')]);
  const at = (code: string): string[] => r.diagnostics.filter((d) => d.code === code).map((d) => `${d.line}:${d.column} ${d.path}`);
  t.deepEqual(at('AMBIT_SCHEMA_TYPE'), ['18:19 spec.http[0].route[1].weight']);
  t.deepEqual(at('AMBIT_SCHEMA_DURATION'), ['19:16 spec.http[0].timeout']);
  t.deepEqual(at('AMBIT_SCHEMA_UNKNOWN_FIELD'), ['20:7 spec.http[0].retires']);
  t.deepEqual(at('AMBIT_SCHEMA_RANGE'), ['30:13 spec.ports[0].port']);
  t.true(r.diagnostics.every((d) => d.file?.endsWith('positions.yaml')));
  t.true(r.diagnostics.find((d) => d.code === 'AMBIT_SCHEMA_UNKNOWN_FIELD')?.message.includes('did you mean "retries"'));
  t.is(r.resources.length, 0, 'objects with errors are not loaded');
});

test('a missing required field points at its parent object', (t) => {
  const p = parseYaml(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: x
spec:
  subsets:
    - labels: {a: b}
`);
  const d = p.diagnostics.find((x) => x.code === 'AMBIT_SCHEMA_REQUIRED');
  t.is(d?.path, 'spec.subsets[0]');
  t.is(d?.line, 7);
  t.regex(d?.message ?? '', /"host"|"name"/);
});

test('folders are walked recursively in sorted order, dot-files skipped, only YAML/JSON', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'b'));
  mkdirSync(join(dir, '.hidden'));
  writeFileSync(join(dir, 'b', 'z.yml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: z}\n');
  writeFileSync(join(dir, 'a.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } }));
  writeFileSync(join(dir, 'notes.txt'), 'not yaml: [');
  writeFileSync(join(dir, '.hidden', 'x.yaml'), 'garbage: [');
  const r = await loadPaths([dir]);
  t.deepEqual(r.files.map((f) => f.slice(dir.length + 1)), ['a.json', 'b/z.yml']);
  t.deepEqual(r.resources.map((x) => x.ref.name), ['a', 'z']);
  t.deepEqual(r.diagnostics, []);
});

test('a missing path throws InputUnreadableError naming it', async (t) => {
  const err = await t.throwsAsync(loadPaths(['/nonexistent/ambit/path.yaml']), { instanceOf: InputUnreadableError });
  t.is(err?.code, 'AMBIT_ERR_MODEL_INPUT_UNREADABLE');
  t.regex(err?.message ?? '', /\/nonexistent\/ambit\/path\.yaml: no such file or directory/);
});

test('an unreadable file throws InputUnreadableError (permission denied)', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'secret.yaml');
  writeFileSync(f, 'a: 1\n');
  chmodSync(f, 0);
  if (process.getuid?.() !== 0) {
    await t.throwsAsync(loadPaths([f]), { instanceOf: InputUnreadableError, message: /permission denied/ });
    return;
  }
  // Root reads a mode-0 file through CAP_DAC_OVERRIDE: load it from a root child without capabilities.
  const script = `import { loadPaths } from ${JSON.stringify(LOAD_PATHS)};
loadPaths([${JSON.stringify(f)}]).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })));`;
  const { stdout } = await execFileP('setpriv', ['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', process.execPath, '--import=tsx', '--input-type=module', '-e', script]);
  const err = JSON.parse(stdout.trim()) as { name?: string; code?: string; message?: string };
  t.like(err, { name: 'InputUnreadableError', code: 'AMBIT_ERR_MODEL_INPUT_UNREADABLE' });
  t.regex(err.message ?? '', /permission denied/);
});

test('malformed: invalid YAML gives AMBIT_YAML_SYNTAX with a position', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Namespace\nmetadata: {name: [x\n');
  t.true(p.diagnostics.length > 0);
  t.true(p.diagnostics.every((d) => d.code === 'AMBIT_YAML_SYNTAX' && d.line !== undefined && d.severity === 'error'));
  t.deepEqual(p.resources, []);
});

test('malformed: a bad document does not stop the others', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\nkey: [unclosed\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok2}\n');
  t.deepEqual(p.resources.map((r) => r.ref.name), ['ok', 'ok2']);
  t.deepEqual(codes(p.diagnostics).filter((c) => c !== 'AMBIT_YAML_SYNTAX'), []);
});

test('malformed: duplicate keys', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n');
  t.deepEqual(codes(p.diagnostics), ['AMBIT_YAML_DUPLICATE_KEY']);
  t.is(p.diagnostics[0]?.line, 5);
});

test('malformed: wrong types are reported, never thrown', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: [a, b]\n  ports: {port: 80}\n');
  t.deepEqual(codes(p.diagnostics), ['AMBIT_SCHEMA_TYPE', 'AMBIT_SCHEMA_TYPE']);
  t.regex(p.diagnostics[0]?.message ?? '', /expected a mapping, got a list/);
  t.regex(p.diagnostics[1]?.message ?? '', /expected a list, got a mapping/);
});

test('malformed: a 50 MB file is refused before reading, with the limit in the message', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'huge.yaml');
  const fd = openSync(f, 'w');
  writeSync(fd, 'a: 1\n');
  ftruncateSync(fd, 50 * 1024 * 1024);
  closeSync(fd);
  const r = await loadPaths([f]);
  t.deepEqual(codes(r.diagnostics), ['AMBIT_INPUT_TOO_LARGE']);
  t.regex(r.diagnostics[0]?.message ?? '', /50\.0 MiB, more than the limit of 10\.0 MiB/);
  const small = await loadPaths([f], { maxFileBytes: 1024 });
  t.regex(small.diagnostics[0]?.message ?? '', /limit of 0\.0 MiB/);
});

test('malformed: binary and non-UTF-8 files are not YAML', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'bin.yaml'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00]));
  writeFileSync(join(dir, 'latin1.yaml'), Buffer.from('name: caf\xe9\n', 'latin1'));
  const r = await loadPaths([dir]);
  t.deepEqual(codes(r.diagnostics), ['AMBIT_INPUT_NOT_YAML', 'AMBIT_INPUT_NOT_YAML']);
  t.regex(r.diagnostics[0]?.message ?? '', /binary/);
  t.regex(r.diagnostics[1]?.message ?? '', /UTF-8/);
});

test('malformed: plain text and lists are not Kubernetes objects', (t) => {
  t.deepEqual(codes(parseYaml('just some words\n').diagnostics), ['AMBIT_INPUT_NOT_OBJECT']);
  t.deepEqual(codes(parseYaml('- a\n- b\n').diagnostics), ['AMBIT_INPUT_NOT_OBJECT']);
});

test('malformed: deep flow nesting is refused before parsing', (t) => {
  const p = parseYaml(`a: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`);
  t.deepEqual(codes(p.diagnostics), ['AMBIT_YAML_TOO_DEEP']);
  t.regex(p.diagnostics[0]?.message ?? '', /limit of 64/);
});

test('malformed: deep block nesting is refused', (t) => {
  const text = Array.from({ length: 100 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n') + ' 1\n';
  const p = parseYaml(text);
  t.deepEqual(codes(p.diagnostics), ['AMBIT_YAML_TOO_DEEP']);
  t.true((p.diagnostics[0]?.line ?? 0) > 60);
});

test('malformed: YAML alias bombs hit maxAliasCount', (t) => {
  const bomb = [
    'a: &a ["x","x","x","x","x","x","x","x","x"]',
    'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
    'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
    'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
    'e: [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
  ].join('\n');
  const p = parseYaml(bomb);
  t.deepEqual(codes(p.diagnostics), ['AMBIT_YAML_ALIAS_LIMIT']);
});

test('a few aliases are fine', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels: &l {a: b}\n  annotations: *l\n');
  t.deepEqual(p.diagnostics, []);
  t.deepEqual(p.resources[0]?.metadata.annotations, { a: 'b' });
});

test('apiVersion and kind: missing, unknown kind, unsupported version', (t) => {
  t.deepEqual(codes(parseYaml('metadata: {name: a}\n').diagnostics), ['AMBIT_OBJECT_NO_KIND']);
  const unknown = parseYaml('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n').diagnostics;
  t.deepEqual(codes(unknown), ['AMBIT_OBJECT_UNKNOWN_KIND']);
  t.is(unknown[0]?.severity, 'warning');
  const v = parseYaml('apiVersion: security.istio.io/v2\nkind: PeerAuthentication\nmetadata: {name: a}\n').diagnostics;
  t.deepEqual(codes(v), ['AMBIT_OBJECT_UNSUPPORTED_VERSION']);
  t.regex(v[0]?.message ?? '', /security\.istio\.io\/v1, security\.istio\.io\/v1beta1/);
  const g = parseYaml('apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a}\n').diagnostics;
  t.deepEqual(codes(g), ['AMBIT_OBJECT_UNKNOWN_KIND'], 'a Kubernetes Ingress is not modelled: warned and ignored');
  t.is(g[0]?.severity, 'warning');
  t.regex(g[0]?.message ?? '', /ingress gateways are Gateway API Gateways with gatewayClassName ambit/);
});

test('duplicate kind/namespace/name across files: the first wins, the second is an error', async (t) => {
  const dir = tempDir(t);
  const ns = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dup\n';
  writeFileSync(join(dir, '1.yaml'), ns);
  writeFileSync(join(dir, '2.yaml'), `apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n${ns}`);
  const r = await loadPaths([dir]);
  t.deepEqual(r.resources.map((x) => x.ref.name), ['dup', 'other']);
  t.deepEqual(codes(r.diagnostics), ['AMBIT_OBJECT_DUPLICATE']);
  const d = r.diagnostics[0];
  t.true(d?.file?.endsWith('2.yaml'));
  t.is(d?.line, 8);
  t.regex(d?.message ?? '', /first defined at .*1\.yaml:1/);
});

test('same name in different namespaces or kinds is not a duplicate', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: x}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: y}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec: {}\n');
  t.deepEqual(p.diagnostics, []);
  t.is(p.resources.length, 3);
});

test('namespace defaults to "default"; v1 List items are expanded with item positions', (t) => {
  const p = parseYaml('apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ServiceAccount\n    metadata: {name: a}\n  - apiVersion: v1\n    kind: ServiceAccount\n    metadata: {name: b, namespace: x}\n    bogus: 1\n');
  t.deepEqual(p.resources.map((r) => `${r.ref.namespace}/${r.ref.name}`), ['default/a'], 'the item with an unknown field is refused');
  t.deepEqual(p.diagnostics.map((d) => `${d.severity} ${d.code} ${d.line}`), ['error AMBIT_SCHEMA_UNKNOWN_FIELD 10']);
});

test('Kubernetes API objects (no file) validate the same way, without positions', (t) => {
  const r = parseObjects([
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'x' }, spec: { containers: [{ name: 'c' }] }, status: { podIP: 'not-an-ip' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } },
  ]);
  t.deepEqual(r.resources.map((x) => x.kind), ['Namespace']);
  t.is(r.diagnostics.length, 1);
  t.is(r.diagnostics[0]?.file, undefined);
  t.is(r.diagnostics[0]?.path, 'status.podIP');
  t.deepEqual(r.diagnostics[0]?.resource, { group: '', kind: 'Pod', namespace: 'x', name: 'p' });
});

test('a BOM at the start of a file is accepted', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'bom.yaml'), '\ufeffapiVersion: v1\nkind: Namespace\nmetadata: {name: bom}\n');
  const r = await loadPaths([dir]);
  t.deepEqual(r.diagnostics, []);
  t.is(r.resources.length, 1);
});
