/**
 * YAML is parsed one chunk (document) at a time, and positions are found by re-parsing a chunk
 * on demand: both must give exactly what parsing the whole text at once gives (objects,
 * diagnostics, origins, every field position), including texts with errors, directives, end
 * markers, lists, block scalars and comments. The document cache must reuse the Resource
 * objects of unchanged documents only, with correct positions when documents move.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FieldPath } from '../../../src/model/diagnostics.js';
import { DocumentCache } from '../../../src/model/load/document-cache.js';
import { loadFile } from '../../../src/model/load/load-paths.js';
import { parseYamlChunk, parseYamlText, splitYamlDocuments, type YamlTextResult } from '../../../src/model/load/yaml-text.js';
import { tempDir } from './helpers.js';

const pod = (name: string, extra = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: a
  labels: {app: ${name}}
spec:
  nodeName: node-1
  containers:
    - name: main
      ports: [{containerPort: 8080}]${extra}
status: {podIP: 198.19.1.1}
`;

const TEXTS: Record<string, string> = {
  'plain documents': `${pod('a')}---\n${pod('b')}---\n${pod('c')}`,
  'leading marker, comments, blank documents': `# header\n---\n${pod('a')}---\n# only a comment\n---\n\n---\n${pod('b')}`,
  'end markers': `${pod('a')}...\n---\n${pod('b')}...\n`,
  'a block scalar with indented dashes': `${pod('a', '\n  description: |\n    ---\n    not a marker\n')}---\n${pod('b')}`,
  'a List document': `apiVersion: v1\nkind: List\nitems:\n  - ${pod('a').trimEnd().split('\n').join('\n    ')}\n  - ${pod('b').trimEnd().split('\n').join('\n    ')}\n---\n${pod('c')}`,
  'an error in the second document': `${pod('a')}---\n${pod('b').replace('name: b', 'name: [b')}---\n${pod('c')}`,
  'a duplicate key': `${pod('a')}---\n${pod('b').replace('  namespace: a\n', '  namespace: a\n  namespace: b\n')}`,
  'directives': `%YAML 1.2\n---\n${pod('a')}---\n${pod('b')}`,
  'a marker with content on its line': `--- {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n--- ${pod('b').replace('\n', ' ').split('\n')[0]}\n`,
  'windows line endings': `${pod('a')}---\n${pod('b')}`.replace(/\n/g, '\r\n'),
  'not a mapping and warnings': `- a\n- b\n---\n${pod('a')}---\n!!foo 3\n`,
};

const PATHS: FieldPath[] = [[], ['metadata'], ['metadata', 'name'], ['metadata', 'labels', 'app'], ['spec', 'containers', 0, 'ports', 0, 'containerPort'], ['status', 'podIP'], ['spec', 'missing'], ['kind']];

function view(r: YamlTextResult): unknown {
  return {
    diagnostics: r.diagnostics,
    objects: r.objects.map((o) => ({
      value: o.value,
      origin: { file: o.origin.file, line: o.origin.line, column: o.origin.column },
      positions: PATHS.map((p) => [o.origin.locate(p), o.origin.locate(p, true)]),
    })),
  };
}

for (const [name, text] of Object.entries(TEXTS)) {
  test(`chunked parse == whole-text parse: ${name}`, (t) => {
    const whole = parseYamlChunk({ text, lineOffset: 0 }, 'f.yaml');
    const chunked = parseYamlText(text, 'f.yaml');
    t.deepEqual(view(chunked), view(whole));
  });
}

test('texts are split before every document-start line, except with directives', (t) => {
  const chunks = splitYamlDocuments(TEXTS['plain documents']!)!;
  t.is(chunks.length, 3);
  t.deepEqual(chunks.map((c) => c.lineOffset), [0, 12, 25]);
  t.is(chunks.map((c) => c.text).join(''), TEXTS['plain documents']!);
  t.is(splitYamlDocuments(TEXTS['directives']!), undefined);
});

test('the document cache reuses unchanged documents, re-parses changed and moved ones', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'pods.yaml');
  const cache = new DocumentCache();
  writeFileSync(file, `${pod('a')}---\n${pod('b')}---\n${pod('c')}`);
  const first = await loadFile(file, file, { documentCache: cache });
  writeFileSync(file, `${pod('a')}---\n${pod('b').replace('app: b', 'app: b2')}---\n${pod('c')}`);
  const second = await loadFile(file, file, { documentCache: cache });
  t.is(second.resources[0], first.resources[0], 'unchanged document: same object');
  t.not(second.resources[1], first.resources[1], 'changed document: new object');
  t.is(second.resources[2], first.resources[2], 'unchanged document after a changed one of the same length: same object');
  writeFileSync(file, `# a new first line\n${pod('a')}---\n${pod('b').replace('app: b', 'app: b2')}---\n${pod('c')}`);
  const third = await loadFile(file, file, { documentCache: cache });
  t.not(third.resources[2], second.resources[2], 'a document that moved is parsed again');
  t.is(third.resources[2]?.origin?.line, 28);
  t.deepEqual(third.resources[2]?.origin?.locate(['metadata', 'name']), { file, line: 31, column: 9 });
  const uncached = await loadFile(file, file);
  t.deepEqual(third.diagnostics, uncached.diagnostics);
  t.deepEqual(third.resources.map((r) => [r.key, r.origin?.line, r.origin?.locate(['status', 'podIP'])]), uncached.resources.map((r) => [r.key, r.origin?.line, r.origin?.locate(['status', 'podIP'])]));
  writeFileSync(file, `${pod('a')}---\n${pod('b').replace('name: b', 'name: [b')}`);
  const broken = await loadFile(file, file, { documentCache: cache });
  t.deepEqual(broken, await loadFile(file, file), 'a broken text is parsed whole, as without a cache');
});
