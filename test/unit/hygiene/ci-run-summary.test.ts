/**
 * .ci/run's last line is what CI reads: "N passed, N failed, N skipped", after a "runtime: ..."
 * line. The script runs here, unchanged, in a scratch project whose `npm test` is ava over a few
 * sample tests with a known outcome (this repository's node_modules, linked in).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function runCi(files: Record<string, string>): Promise<{ code: number; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-ci-run-'));
  mkdirSync(join(dir, '.ci'));
  copyFileSync(join(ROOT, '.ci', 'run'), join(dir, '.ci', 'run'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'sample', type: 'module', scripts: { test: 'ava' }, ava: { files: ['*.test.js'] } }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${join(ROOT, 'node_modules', '.bin')}${delimiter}${process.env['PATH'] ?? ''}` };
  return new Promise((resolve) => {
    execFile('bash', [join(dir, '.ci', 'run')], { env, timeout: 90_000 }, (err, stdout) => {
      rmSync(dir, { recursive: true, force: true });
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, lines: stdout.trimEnd().split('\n') });
    });
  });
}

test('passes, failures and skips (test.skip and test.todo) across files are counted', async (t) => {
  const r = await runCi({
    'a.test.js': `import test from 'ava';
test('one', (t) => t.is(1, 1));
test('two', (t) => t.is(1, 1));
test.skip('skipped', (t) => t.is(1, 1));
test.todo('later');
`,
    'b.test.js': `import test from 'ava';
test('three', (t) => t.is(1, 1));
test('wrong', (t) => t.is(1, 2));
test.skip('also skipped', (t) => t.is(1, 1));
`,
  });
  t.is(r.lines.at(-1), '3 passed, 1 failed, 3 skipped');
  t.regex(r.lines.at(-2) ?? '', /^runtime: Node v\d+\.\d+\.\d+, OpenSSL /);
  t.is(r.code, 1, 'the exit status is ava\'s');
});

test('a clean run ends "N passed, 0 failed, 0 skipped" and exits 0', async (t) => {
  const r = await runCi({ 'a.test.js': `import test from 'ava';\ntest('one', (t) => t.is(1, 1));\ntest('two', (t) => t.true(true));\n` });
  t.is(r.lines.at(-1), '2 passed, 0 failed, 0 skipped');
  t.is(r.code, 0);
});
