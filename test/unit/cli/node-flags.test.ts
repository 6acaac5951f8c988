import test from 'ava';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { LONG_RUNNING_NODE_FLAGS, withLongRunningFlags } from '../../../src/util/node-flags.js';

const ROOT = new URL('../../../', import.meta.url);

test('withLongRunningFlags adds the missing flags and keeps what the caller set', (t) => {
  t.deepEqual(withLongRunningFlags([]), [...LONG_RUNNING_NODE_FLAGS]);
  t.deepEqual(withLongRunningFlags(['--import=tsx']), ['--import=tsx', ...LONG_RUNNING_NODE_FLAGS]);
  // An explicit value of the same option wins (benchmarks compare settings that way).
  t.deepEqual(withLongRunningFlags(['--initial-old-space-size=8']), ['--initial-old-space-size=8']);
  t.deepEqual(withLongRunningFlags([...LONG_RUNNING_NODE_FLAGS]), [...LONG_RUNNING_NODE_FLAGS]);
});

test('the bin shebang and the image entrypoint carry the same flags', (t) => {
  const shebang = readFileSync(new URL('src/cli/main.ts', ROOT), 'utf8').split('\n')[0] ?? '';
  t.is(shebang, `#!/usr/bin/env -S node ${LONG_RUNNING_NODE_FLAGS.join(' ')}`);
  const entrypoint = /^ENTRYPOINT (.*)$/m.exec(readFileSync(new URL('deploy/Dockerfile', ROOT), 'utf8'))?.[1];
  t.deepEqual(JSON.parse(entrypoint ?? '[]'), ['node', ...LONG_RUNNING_NODE_FLAGS, '/app/dist/cli/main.js']);
});

test('this Node accepts every flag on its command line', (t) => {
  // A flag V8 does not know would make every ambit process fail to start.
  const out = execFileSync(process.execPath, [...LONG_RUNNING_NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
  t.is(out, 'ok');
});
