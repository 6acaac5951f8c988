/**
 * Istio string patterns and the lazily derived request attributes they are matched against.
 */
import test from 'ava';
import { StringMatcher, hasInnerWildcard, pathTemplateProblem } from '../../../../src/model/authz/string-match.js';
import { EvalInput } from '../../../../src/model/authz/eval-input.js';
import { ctx } from './helpers.js';

test('StringMatcher: exact, prefix, suffix, presence', (t) => {
  const m = new StringMatcher(['exact', 'pre*', '*suf']);
  t.true(m.match('exact'));
  t.false(m.match('exactly'));
  t.true(m.match('prefix'));
  t.true(m.match('pre'));
  t.true(m.match('a-suf'));
  t.false(m.match('Prefix'));
  t.false(m.match(undefined));
  const any = new StringMatcher(['*']);
  t.true(any.match('x'));
  t.false(any.match(''));
  t.false(any.match(undefined));
  t.true(any.matchAny(['', 'y']));
  t.false(any.matchAny([]));
});

test('StringMatcher: case-insensitive and exactValues', (t) => {
  const m = new StringMatcher(['API.example.com', '*.Example.ORG'], { caseInsensitive: true });
  t.true(m.match('api.EXAMPLE.com'));
  t.true(m.match('www.example.org'));
  t.deepEqual(new StringMatcher(['a', 'b']).exactValues(), ['a', 'b']);
  t.is(new StringMatcher(['a', 'b*']).exactValues(), undefined);
  t.is(new StringMatcher(['*']).exactValues(), undefined);
});

test('path templates: {*} one segment, {**} the rest, and their validation', (t) => {
  const m = new StringMatcher(['/v1/{*}/items/{**}'], { pathTemplates: true });
  t.true(m.match('/v1/shop/items/a/b/c'));
  t.true(m.match('/v1/shop/items/'));
  t.false(m.match('/v1/a/b/items/c'));
  t.false(m.match('/v1//items/c'));
  // Regex metacharacters in the literal part are literal.
  t.false(new StringMatcher(['/a.b/{*}'], { pathTemplates: true }).match('/aXb/c'));
  t.is(pathTemplateProblem('/a/{*}/b/{**}'), undefined);
  t.regex(pathTemplateProblem('/a/{**}/b/{*}') ?? '', /must be the last operator/);
  t.regex(pathTemplateProblem('/a/x{*}') ?? '', /whole path segment/);
  t.regex(pathTemplateProblem('a/{*}') ?? '', /must start with "\/"/);
  t.true(hasInnerWildcard('a*b'));
  t.false(hasInnerWildcard('*ab'));
  t.false(hasInnerWildcard('/a/{*}/b'));
});

test('EvalInput derives namespace, service account, path and host once', (t) => {
  const i = new EvalInput(
    ctx({
      principal: 'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      req: { path: '/a/b?x=1#f', host: '[2001:db8::1]:8443', headers: { 'X-Mixed': 'v' } },
    }),
    'L7',
  );
  t.is(i.principal, 'cluster.local/ns/bookinfo/sa/productpage');
  t.is(i.namespace(), 'bookinfo');
  t.is(i.serviceAccount(), 'bookinfo/productpage');
  t.is(i.path(), '/a/b');
  t.deepEqual(i.hosts(), ['[2001:db8::1]:8443', '[2001:db8::1]']);
  t.deepEqual(i.header('x-mixed'), ['v']);
  t.is(i.header('absent'), undefined);
  const bare = new EvalInput(ctx({ principal: 'not-a-spiffe-id', namespace: 'given', req: { host: '2001:db8::1' } }), 'L7');
  t.is(bare.namespace(), 'given');
  t.is(bare.serviceAccount(), undefined);
  t.deepEqual(bare.hosts(), ['2001:db8::1']);
  t.is(new EvalInput(ctx(), 'L4').namespace(), undefined);
});

test('EvalInput claims: strings and string lists only', (t) => {
  const i = new EvalInput(ctx({ req: { claims: { s: 'a', l: ['b', 3, 'c'], n: 5, o: { deep: { x: 'y' } } } } }), 'L7');
  t.deepEqual(i.claim(['s']), ['a']);
  t.deepEqual(i.claim(['l']), ['b', 'c']);
  t.is(i.claim(['n']), undefined);
  t.deepEqual(i.claim(['o', 'deep', 'x']), ['y']);
  t.is(i.claim(['o', 'missing']), undefined);
  t.is(i.claim(['constructor']), undefined);
});
