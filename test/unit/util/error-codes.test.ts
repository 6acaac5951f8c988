/**
 * The error registry is complete and current: every `AMBIT_ERR_*` code written in src/ is
 * registered with a meaning, every registered code is used somewhere in src/, and docs/errors.md
 * is what scripts/gen-error-docs.ts renders from the registry.
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../../src/util/error-codes.js';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { renderErrorDocs } from '../../../scripts/gen-error-docs.js';

const REGISTRY = join(REPO_ROOT, 'src', 'util', 'error-codes.ts');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'gen' ? [] : sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Codes in string literals (not in comments that name a family such as `AMBIT_ERR_EBPF_*`). */
function codesUsed(): Map<string, string> {
  const used = new Map<string, string>();
  for (const file of sourceFiles(join(REPO_ROOT, 'src'))) {
    if (file === REGISTRY) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/['"`](AMBIT_ERR_[A-Z0-9_]*[A-Z0-9])['"`]/g)) used.set(m[1] as string, file.slice(REPO_ROOT.length + 1));
  }
  return used;
}

test('every code used in src/ is registered with a meaning', (t) => {
  const used = codesUsed();
  t.true(used.size > 50, `found ${used.size} codes: the scan works`);
  const missing = [...used].filter(([code]) => !(code in ERROR_CODES)).map(([code, file]) => `${code} (${file})`);
  t.deepEqual(missing, [], 'register these in src/util/error-codes.ts');
  for (const [code, meaning] of Object.entries(ERROR_CODES)) t.true(meaning.length > 20 && /[.)]$/.test(meaning), `${code} has a sentence of meaning`);
});

test('every registered code is used somewhere in src/', (t) => {
  const used = codesUsed();
  t.deepEqual(Object.keys(ERROR_CODES).filter((c) => !used.has(c)), [], 'remove codes nothing throws or reports');
});

test('docs/errors.md is generated from the registry', (t) => {
  t.is(readFileSync(join(REPO_ROOT, 'docs', 'errors.md'), 'utf8'), renderErrorDocs(), 'run: npx tsx scripts/gen-error-docs.ts');
});
