/**
 * A test that asserts nothing passes whatever the code under test does. This check parses every
 * test file (types stripped by Node, JavaScript parsed by acorn) and fails when
 * - a test's only assertion is `t.pass()` (and `t` is not handed to a helper that may assert), or
 * - `t.pass()` ends a branch that returns early: a silent skip. Such a branch is either a failure
 *   (`t.fail(why)`) or a skip with a visible reason (`privilegedTest` / `test.skipIf(...)`, see
 *   test/helpers/privileged.ts), which `AMBIT_REQUIRE_PRIVILEGED=1` turns into a failure in CI.
 * A check that passes over `fc.assert(...)` should say so: `t.notThrows(() => fc.assert(...))`.
 */
import test from 'ava';
import { parse } from 'acorn';
import { globSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** ava's assertions (ExecutionContext methods that can fail a test, or `pass`). */
const ASSERTIONS = new Set(['pass', 'fail', 'assert', 'truthy', 'falsy', 'true', 'false', 'is', 'not', 'deepEqual', 'notDeepEqual', 'like',
  'throws', 'throwsAsync', 'notThrows', 'notThrowsAsync', 'regex', 'notRegex', 'snapshot']);
const HOOKS = new Set(['before', 'after', 'beforeEach', 'afterEach', 'always']);

interface Node { type: string; start: number; [k: string]: unknown }
interface Finding { line: number; why: string }

function children(n: Node): Node[] {
  const out: Node[] = [];
  for (const [k, v] of Object.entries(n)) {
    if (k === 'loc') continue;
    if (Array.isArray(v)) for (const x of v) { if (x !== null && typeof x === 'object' && typeof (x as Node).type === 'string') out.push(x as Node); }
    else if (v !== null && typeof v === 'object' && typeof (v as Node).type === 'string') out.push(v as Node);
  }
  return out;
}

function walk(n: Node, visit: (n: Node) => void): void {
  visit(n);
  for (const c of children(n)) walk(c, visit);
}

/** Root identifier and property names of a callee such as `test.serial`, `test.skipIf(x)` or `privilegedTest`. */
function calleeChain(n: Node): { root: string | undefined; props: string[] } {
  const props: string[] = [];
  let cur: Node = n;
  for (;;) {
    if (cur.type === 'MemberExpression') {
      const p = cur['property'] as Node;
      if (p.type === 'Identifier') props.unshift(p['name'] as string);
      cur = cur['object'] as Node;
    } else if (cur.type === 'CallExpression') {
      cur = cur['callee'] as Node;
    } else break;
  }
  return { root: cur.type === 'Identifier' ? (cur['name'] as string) : undefined, props };
}

const isFunction = (n: Node): boolean => n.type === 'ArrowFunctionExpression' || n.type === 'FunctionExpression';

/** `t.name(...)` where `t` is the execution context's name. */
function assertionName(n: Node, t: string): string | undefined {
  if (n.type !== 'CallExpression') return undefined;
  const c = n['callee'] as Node;
  if (c.type !== 'MemberExpression') return undefined;
  const o = c['object'] as Node;
  const p = c['property'] as Node;
  if (o.type !== 'Identifier' || o['name'] !== t || p.type !== 'Identifier') return undefined;
  const name = p['name'] as string;
  return ASSERTIONS.has(name) ? name : undefined;
}

/** The findings in one test file's TypeScript source. */
function emptyPasses(source: string): Finding[] {
  let js: string;
  try {
    js = stripTypeScriptTypes(source, { mode: 'strip' }); // keeps every position
  } catch {
    js = stripTypeScriptTypes(source, { mode: 'transform' });
  }
  const lineOf = (pos: number): number => js.slice(0, pos).split('\n').length;
  const program = parse(js, { ecmaVersion: 'latest', sourceType: 'module' }) as unknown as Node;
  const findings: Finding[] = [];
  walk(program, (call) => {
    if (call.type !== 'CallExpression') return;
    const { root, props } = calleeChain(call['callee'] as Node);
    if (root === undefined || !(root === 'test' || /^[a-z]\w*Test$/.test(root)) || props.some((p) => HOOKS.has(p))) return;
    const fn = (call['arguments'] as Node[]).find(isFunction);
    const param = (fn?.['params'] as Node[] | undefined)?.[0];
    if (fn === undefined || param?.type !== 'Identifier') return;
    const t = param['name'] as string;
    const used: string[] = [];
    let delegates = false;
    walk(fn['body'] as Node, (n) => {
      const a = assertionName(n, t);
      if (a !== undefined) used.push(a);
      if (n.type === 'CallExpression' && (n['arguments'] as Node[]).some((x) => x.type === 'Identifier' && x['name'] === t)) delegates = true;
      // A silent skip: `t.pass(); return;` or `return t.pass();`.
      const stmts = n.type === 'BlockStatement' || n.type === 'Program' ? (n['body'] as Node[]) : [];
      stmts.forEach((s, i) => {
        if (s.type === 'ExpressionStatement' && assertionName(s['expression'] as Node, t) === 'pass' && stmts[i + 1]?.type === 'ReturnStatement') {
          findings.push({ line: lineOf(s.start), why: 't.pass() then return: a silent skip (make it t.fail(why), or a privilegedTest/skipIf with a reason)' });
        }
      });
      if (n.type === 'ReturnStatement' && n['argument'] !== null && assertionName(n['argument'] as Node, t) === 'pass') {
        findings.push({ line: lineOf(n.start), why: 'return t.pass(): a silent skip (make it t.fail(why), or a privilegedTest/skipIf with a reason)' });
      }
    });
    if (used.includes('pass') && used.every((a) => a === 'pass') && !delegates) {
      findings.push({ line: lineOf(call.start), why: 'the test\'s only assertion is t.pass()' });
    }
  });
  return findings.sort((a, b) => a.line - b.line);
}

test('the check flags a test whose only assertion is t.pass()', (t) => {
  const src = `import test from 'ava';
test('x', async (t) => {
  await Promise.resolve(1 as number);
  t.pass();
});
test.serial('y', (t) => { t.is(1, 1); t.pass(); });
`;
  t.deepEqual(emptyPasses(src).map((f) => f.line), [2]);
});

test('the check flags t.pass() in an early-return branch, however many assertions follow', (t) => {
  const src = `import test from 'ava';
const has = (x: string): boolean => x.length > 0;
privilegedTest('x', (t) => {
  if (!has('tool')) { t.log('no tool'); t.pass(); return; }
  t.is(1, 1);
});
test('y', (t) => {
  if (!has('tool')) return t.pass();
  t.true(true);
});
`;
  t.deepEqual(emptyPasses(src).map((f) => f.line), [4, 8]);
});

test('the check leaves real assertions, helpers given t, and hooks alone', (t) => {
  const src = `import test from 'ava';
async function helper(t: { is(a: unknown, b: unknown): void }): Promise<void> { t.is(1, 1); }
test.before((t) => { t.pass(); });
test('a', async (t) => { await helper(t); t.pass(); });
test('b', (t) => { t.notThrows(() => 1); });
test.skipIf(false)('c', (t) => { if (Math.random() > 2) { t.fail('no'); return; } t.pass(); });
`;
  t.deepEqual(emptyPasses(src), []);
});

test('no test file in the tree passes on t.pass() alone or skips silently with it', (t) => {
  const files = globSync('test/**/*.test.ts', { cwd: ROOT }).sort();
  t.true(files.length > 50, `found ${files.length} test files`);
  const offenders: string[] = [];
  for (const f of files) {
    for (const x of emptyPasses(readFileSync(`${ROOT}${f}`, 'utf8'))) offenders.push(`${f}:${x.line}: ${x.why}`);
  }
  t.deepEqual(offenders, []);
});
