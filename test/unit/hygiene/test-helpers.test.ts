/** The shared test helpers in test/helpers/ do what their callers rely on. */
import test from 'ava';
import { eventually } from '../../helpers/eventually.js';
import { logSink } from '../../helpers/log-sink.js';

test('eventually resolves once the condition holds, sync or async', async (t) => {
  let n = 0;
  await eventually('the counter to reach 3', () => ++n >= 3);
  t.is(n, 3, 'checked until it held, then no more');
  let m = 0;
  await eventually('an async check to hold', async () => ++m === 2);
  t.is(m, 2);
});

test('eventually fails with what was awaited, the timeout and the last state seen', async (t) => {
  const err = await t.throwsAsync(eventually('the pool to drain', () => false, { timeoutMs: 20, detail: () => '2 sessions' }));
  t.is(err?.message, 'timed out after 20 ms waiting for the pool to drain; last seen: 2 sessions');
});

test('logSink parses every line, keeps the order, and honours its level', (t) => {
  const s = logSink('info');
  s.logger.debug('hidden');
  s.logger.info({ a: 1 }, 'first');
  s.logger.child({ component: 'x' }).warn('second');
  t.like(s.lines(), [{ msg: 'first', a: 1, level: 30 }, { msg: 'second', component: 'x', level: 40 }]);
  t.is(s.lines().length, 2);
});
