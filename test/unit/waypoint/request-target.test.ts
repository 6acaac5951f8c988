/**
 * The request-target as routing and AuthorizationPolicy see it: the bypasses the security review
 * found (absolute-form, dot segments, merged slashes, encoded unreserved characters, Host
 * mismatch), Istio's four normalization modes (expectations after Istio's own normalization
 * integration test, with percent-encoding hex upper-cased), rejections, and properties over
 * generated paths: idempotence and no dot segments (or empty segments under the MERGE modes).
 */
import test from 'ava';
import fc from 'fast-check';
import { normalizeRequestTarget, PATH_NORMALIZATIONS, type PathNormalization } from '../../../src/waypoint/request-target.js';
import { WaypointConfig } from '../../../src/waypoint/config.js';
import { configFromView } from '../../../src/waypoint/view-config.js';
import { WaypointError } from '../../../src/waypoint/errors.js';
import { LocalView } from '../../../src/discovery/local-view.js';

const norm = (target: string, mode: PathNormalization = 'BASE', host: string | undefined = 'svc', method = 'GET') => normalizeRequestTarget(target, host, method, mode);

/** The path, or `400` when rejected. */
const pathOf = (target: string, mode: PathNormalization = 'BASE', host: string | undefined = 'svc', method = 'GET'): string => {
  const r = norm(target, mode, host, method);
  return r.ok ? r.path : '400';
};

// ---- the bypasses

const bypasses: [name: string, target: string, mode: PathNormalization, want: string][] = [
  ['absolute-form is reduced to origin-form', 'http://svc/admin/secret', 'BASE', '/admin/secret'],
  ['absolute-form with upper-case scheme', 'HTTP://svc/admin', 'BASE', '/admin'],
  ['absolute-form https', 'https://svc:443/admin', 'BASE', '/admin'],
  ['absolute-form is normalized like origin-form', 'http://svc/public/../admin', 'BASE', '/admin'],
  ['absolute-form without a path is /', 'http://svc', 'BASE', '/'],
  ['absolute-form with only a query', 'http://svc?x=1', 'BASE', '/?x=1'],
  ['absolute-form under NONE is still origin-form', 'http://svc/admin', 'NONE', '/admin'],
  ['dot segments /public/../admin', '/public/../admin', 'BASE', '/admin'],
  ['single dot segments /./admin/.', '/./admin/.', 'BASE', '/admin/'],
  ['encoded dot segments /public/%2e%2e/admin', '/public/%2e%2e/admin', 'BASE', '/admin'],
  ['mixed-case encoded dots /public/%2E./admin', '/public/%2E./admin', 'BASE', '/admin'],
  ['.. above the root stays at the root', '/../admin', 'BASE', '/admin'],
  ['many .. above the root', '/a/../../../../admin', 'BASE', '/admin'],
  ['//admin under MERGE_SLASHES', '//admin', 'MERGE_SLASHES', '/admin'],
  ['//admin under DECODE_AND_MERGE_SLASHES', '//admin', 'DECODE_AND_MERGE_SLASHES', '/admin'],
  ['encoded unreserved /%61dmin', '/%61dmin', 'BASE', '/admin'],
  ['encoded unreserved upper-case hex /%41DMIN%7e', '/%41DMIN%7e', 'BASE', '/ADMIN~'],
  ['backslash is a slash /public\\..\\admin', '/public\\..\\admin', 'BASE', '/admin'],
  ['encoded slash decoded under DECODE_AND_MERGE_SLASHES', '/public%2f..%2fadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'],
  ['encoded backslash decoded under DECODE_AND_MERGE_SLASHES', '/public%5C%2e%2e%5cadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'],
];
for (const [name, target, mode, want] of bypasses) {
  test(`target bypass: ${name}`, (t) => {
    t.is(pathOf(target, mode), want, `${mode} ${JSON.stringify(target)}`);
  });
}

// ---- Istio's modes (tests/integration/security/normalization_test.go, hex upper-cased)

type Row = [input: string, none: string, base: string, merge: string, decode: string];
const modes: Row[] = [
  ['/', '/', '/', '/', '/'],
  ['/app#foo', '/app', '/app', '/app', '/app'],
  ['/app/', '/app/', '/app/', '/app/', '/app/'],
  ['/app/../admin', '/app/../admin', '/admin', '/admin', '/admin'],
  ['/app//', '/app//', '/app//', '/app/', '/app/'],
  ['/app/%2f', '/app/%2f', '/app/%2F', '/app/%2F', '/app/'],
  ['/app%2f/', '/app%2f/', '/app%2F/', '/app%2F/', '/app/'],
  ['/xyz%30..//abc', '/xyz%30..//abc', '/xyz0..//abc', '/xyz0../abc', '/xyz0../abc'],
  ['/app/%2E./admin', '/app/%2E./admin', '/admin', '/admin', '/admin'],
  ['/app\\admin', '/app\\admin', '/app/admin', '/app/admin', '/app/admin'],
  ['/app/\\/\\/\\admin', '/app/\\/\\/\\admin', '/app//////admin', '/app/admin', '/app/admin'],
  ['/%2Fapp%5cadmin%5Cabc', '/%2Fapp%5cadmin%5Cabc', '/%2Fapp%5Cadmin%5Cabc', '/%2Fapp%5Cadmin%5Cabc', '/app/admin/abc'],
  ['/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/%5Capp%2F%5C%2F..%2Fadmin%5C/abc', '/%5Capp%2F%5C%2F..%2Fadmin%5C/abc', '/app/admin/abc'],
  ['/app//../admin', '/app//../admin', '/app/admin', '/app/admin', '/app/admin'],
  ['/app//../../admin', '/app//../../admin', '/admin', '/admin', '/admin'],
  ['/%c0%2e%c0%2e/admin', '/%c0%2e%c0%2e/admin', '/%C0.%C0./admin', '/%C0.%C0./admin', '/%C0.%C0./admin'],
  ['/%c0%2fadmin', '/%c0%2fadmin', '/%C0%2Fadmin', '/%C0%2Fadmin', '/%C0/admin'],
  ['/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin'],
  ['/%252F%252fadmin', '/%252F%252fadmin', '/%252F%252fadmin', '/%252F%252fadmin', '/%252F%252fadmin'],
  ['/.../admin', '/.../admin', '/.../admin', '/.../admin', '/.../admin'],
  ['/..;/admin', '/..;/admin', '/..;/admin', '/..;/admin', '/..;/admin'],
  ['/admin;a=b/xyz', '/admin;a=b/xyz', '/admin;a=b/xyz', '/admin;a=b/xyz', '/admin;a=b/xyz'],
  ['/Admin', '/Admin', '/Admin', '/Admin', '/Admin'],
  ['/a/b/..', '/a/b/..', '/a/', '/a/', '/a/'],
  ['/a//..', '/a//..', '/a/', '/a/', '/a/'],
  ['/.well-known/x', '/.well-known/x', '/.well-known/x', '/.well-known/x', '/.well-known/x'],
];
const order: PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];
for (const [input, ...want] of modes) {
  test(`normalization modes: ${input}`, (t) => {
    t.deepEqual(order.map((m) => pathOf(input, m)), want);
  });
}

test('normalization: the query is kept as received and the fragment dropped', (t) => {
  t.is(pathOf('/a/../b?x=/../%2f%zz//y#frag', 'DECODE_AND_MERGE_SLASHES'), '/b?x=/../%2f%zz//y');
  t.is(pathOf('/a?x#y?z', 'BASE'), '/a?x');
  t.is(pathOf('/a#y?z', 'BASE'), '/a');
  t.is(pathOf('/a?', 'MERGE_SLASHES'), '/a?');
  t.is(pathOf('/a//b?q#', 'NONE'), '/a//b?q');
});

test('normalization: an already normal target comes back as the same string', (t) => {
  for (const mode of PATH_NORMALIZATIONS) {
    for (const target of ['/', '/api/v1/items', '/a.b/c..d/~x?q=//../%zz', '/a/b/']) {
      const r = norm(target, mode);
      t.true(r.ok && r.path === target && r.authority === undefined, `${mode} ${target}`);
    }
  }
});

// ---- forms and the Host header

test('target form: absolute-form authority is returned and must match Host', (t) => {
  t.deepEqual(norm('http://Svc.Shop:80/x', 'BASE', 'svc.shop'), { ok: true, path: '/x', authority: 'Svc.Shop:80' });
  t.deepEqual(norm('http://svc/x', 'BASE', undefined), { ok: true, path: '/x', authority: 'svc' }, 'no Host: the URL authority is used');
  t.deepEqual(norm('http://svc/x', 'BASE', 'SVC:80'), { ok: true, path: '/x', authority: 'svc' }, 'default port 80 and case are ignored');
  t.deepEqual(norm('https://svc/x', 'BASE', 'svc:443'), { ok: true, path: '/x', authority: 'svc' }, 'https default port 443');
  t.deepEqual(norm('http://[fd00::1]:8080/x', 'BASE', '[FD00::1]:8080'), { ok: true, path: '/x', authority: '[fd00::1]:8080' });
});

const rejections: [name: string, target: string, host: string | undefined, method: string, reason: RegExp][] = [
  ['Host mismatch', 'http://other/admin', 'svc', 'GET', /does not match the Host header/],
  ['Host mismatch by port', 'http://svc:8080/admin', 'svc', 'GET', /does not match the Host header/],
  ['Host mismatch: https default is not 80', 'https://svc/admin', 'svc:80', 'GET', /does not match the Host header/],
  ['empty Host against an absolute-form authority', 'http://svc/admin', '', 'GET', /does not match the Host header/],
  ['userinfo', 'http://user@svc/admin', undefined, 'GET', /userinfo/],
  ['userinfo with password', 'http://u:p@svc/', 'svc', 'GET', /userinfo/],
  ['empty authority', 'http:///admin', undefined, 'GET', /malformed authority/],
  ['bad port', 'http://svc:99999/admin', undefined, 'GET', /malformed authority/],
  ['percent-encoded authority', 'http://sv%63/admin', undefined, 'GET', /malformed authority/],
  ['other scheme', 'ftp://svc/admin', undefined, 'GET', /must be origin-form/],
  ['scheme without //', 'http:/admin', undefined, 'GET', /must be origin-form/],
  ['relative reference', 'admin', undefined, 'GET', /must be origin-form/],
  ['authority-form without CONNECT', 'svc:80', undefined, 'GET', /must be origin-form/],
  ['CONNECT', 'svc:80', 'svc:80', 'CONNECT', /CONNECT is not supported/],
  ['CONNECT with an origin-form target', '/x', 'svc', 'CONNECT', /CONNECT is not supported/],
  ['asterisk-form without OPTIONS', '*', 'svc', 'GET', /only allowed with OPTIONS/],
  ['asterisk followed by more', '*/admin', 'svc', 'OPTIONS', /must be origin-form/],
  ['empty target', '', 'svc', 'GET', /empty/],
  ['invalid percent-encoding %zz', '/a%zz', 'svc', 'GET', /invalid percent-encoding at offset 2/],
  ['truncated percent-encoding %4', '/a%4', 'svc', 'GET', /invalid percent-encoding/],
  ['truncated percent-encoding before the query', '/a%4?x', 'svc', 'GET', /invalid percent-encoding/],
  ['lone percent', '/a%', 'svc', 'GET', /invalid percent-encoding/],
  ['encoded NUL', '/admin%00', 'svc', 'GET', /encoded NUL/],
  ['space', '/a b', 'svc', 'GET', /control character, space or non-ASCII byte at offset 2/],
  ['tab', '/a\tb', 'svc', 'GET', /control character/],
  ['CR LF', '/a\r\nX-Injected: 1', 'svc', 'GET', /control character/],
  ['DEL', '/a\u007f', 'svc', 'GET', /control character/],
  ['non-ASCII', '/caf\u00e9', 'svc', 'GET', /non-ASCII/],
  ['control character in the query', '/a?x=\u0001', 'svc', 'GET', /control character/],
  ['control character in the fragment', '/a#\u0000', 'svc', 'GET', /control character/],
  ['control character in absolute-form', 'http://svc/a\nb', undefined, 'GET', /control character/],
  ['control character in an absolute-form authority', 'http://sv\nc/a', undefined, 'GET', /malformed authority/],
];
for (const [name, target, host, method, reason] of rejections) {
  test(`target rejected: ${name}`, (t) => {
    for (const mode of PATH_NORMALIZATIONS) {
      const r = normalizeRequestTarget(target, host, method, mode);
      if (r.ok) t.fail(`${mode} ${JSON.stringify(target)} was accepted as ${r.path}`);
      else {
        t.is(r.status, 400);
        t.regex(r.reason, reason, mode);
      }
    }
  });
}

test('target form: OPTIONS * is passed through', (t) => {
  for (const mode of PATH_NORMALIZATIONS) t.deepEqual(normalizeRequestTarget('*', 'svc', 'OPTIONS', mode), { ok: true, path: '*', authority: undefined });
});

test('target rejected: a reason quotes at most 60 characters of the target, JSON-escaped', (t) => {
  const r = normalizeRequestTarget(`ftp://"\u00e9\u2028\ud83d\ude00${'x'.repeat(200)}`, undefined, 'GET', 'BASE');
  t.false(r.ok);
  if (r.ok) return;
  t.true(/^[\x20-\x7e]*$/.test(r.reason), 'printable ASCII only');
  const quoted = /got (".*")$/.exec(r.reason)?.[1] ?? '';
  const echoed = JSON.parse(quoted) as string;
  t.is(echoed.length, 60);
  t.true(echoed.startsWith('ftp://"\u00e9\u2028\ud83d\ude00x'));
  t.is(r.reason.length < 200, true);
});

// ---- the mesh setting

test('config: pathNormalization defaults to BASE and reaches WaypointConfig from the view', (t) => {
  t.is(new WaypointConfig({ bound: [], workloads: [] }).pathNormalization, 'BASE');
  t.is(new WaypointConfig({ bound: [], workloads: [], pathNormalization: 'MERGE_SLASHES' }).pathNormalization, 'MERGE_SLASHES');
  const view = new LocalView();
  t.is(configFromView(view, { waypoint: 'shop/wp' }).pathNormalization, 'BASE');
  t.is(configFromView(view, { waypoint: 'shop/wp', pathNormalization: 'DECODE_AND_MERGE_SLASHES' }).pathNormalization, 'DECODE_AND_MERGE_SLASHES');
});

test('config: an unknown pathNormalization is refused naming the field', (t) => {
  const err = t.throws(() => new WaypointConfig({ bound: [], workloads: [], pathNormalization: 'merge_slashes' as PathNormalization }), { instanceOf: WaypointError });
  t.is(err?.code, 'AMBIT_ERR_WAYPOINT_CONFIG');
  t.regex(err?.message ?? '', /^pathNormalization\.normalization: unknown value "merge_slashes"; expected one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES/);
  t.throws(() => configFromView(new LocalView(), { waypoint: 'shop/wp', pathNormalization: 'DEFAULT' as PathNormalization }), { instanceOf: WaypointError, message: /pathNormalization\.normalization/ });
});

// ---- properties

const piece = fc.constantFrom('/', '/', '//', '\\', '.', '..', '%2e', '%2E', '%2e%2e', '%2f', '%2F', '%5c', '%5C', 'a', 'b', 'A', '%41', '%61', '%7e', '%c0', '%25', '%252f', '~', ';', '-', '_');
const tail = fc.constantFrom('', '', '?q=/../x//y', '?', '#frag', '?a=%2f#b');
const origin = fc.tuple(fc.array(piece, { maxLength: 14 }), tail).map(([ps, t]) => `/${ps.join('')}${t}`);
const PARAMS = { seed: 42, numRuns: 500 };

/** The path part (before the query) of a result. */
const pathPart = (p: string): string => {
  const q = p.indexOf('?');
  return q < 0 ? p : p.slice(0, q);
};

test('property: normalization is idempotent in every mode', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(origin, fc.constantFrom(...PATH_NORMALIZATIONS), (target, mode) => {
      const once = norm(target, mode);
      if (!once.ok) return false;
      const twice = norm(once.path, mode);
      return twice.ok && twice.path === once.path;
    }),
    PARAMS,
  ));
});

test('property: no dot segments after normalization, and no empty segments under the MERGE modes', (t) => {
  const normalizing = PATH_NORMALIZATIONS.filter((m) => m !== 'NONE');
  t.notThrows(() => fc.assert(
    fc.property(origin, fc.constantFrom(...normalizing), (target, mode) => {
      const r = norm(target, mode);
      if (!r.ok) return false;
      const p = pathPart(r.path);
      if (!p.startsWith('/') || p.includes('/./') || p.includes('/../') || p.endsWith('/.') || p.endsWith('/..') || p.includes('\\')) return false;
      if (mode !== 'BASE' && p.includes('//')) return false;
      if (mode === 'DECODE_AND_MERGE_SLASHES' && /%2f|%5c/i.test(p)) return false;
      return !/%[0-9a-f]?[a-f]/.test(p); // hex digits upper case
    }),
    PARAMS,
  ));
});

test('property: absolute-form normalizes exactly as its origin-form', (t) => {
  t.notThrows(() => fc.assert(
    fc.property(origin, fc.constantFrom(...PATH_NORMALIZATIONS), (target, mode) => {
      const viaUrl = norm(`http://svc${target}`, mode, 'svc:80');
      const direct = norm(target, mode);
      return viaUrl.ok && direct.ok && viaUrl.path === direct.path && viaUrl.authority === 'svc';
    }),
    PARAMS,
  ));
});
