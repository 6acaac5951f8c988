/**
 * Regression tests for the "target" finding class: AuthorizationPolicy paths must be matched
 * against the request-target as the backend will understand it, so that no spelling of a denied
 * path gets past the waypoint.
 *
 * Proves, through the real proxy on loopback with a policy denying `/admin*`:
 * - absolute-form (`GET http://host/admin/...`), dot segments (`/public/../admin`), encoded
 *   unreserved characters (`/%61dmin`, `/public/%2e%2e/admin`) are denied under the default
 *   normalization (Istio's BASE), and `//admin` under MERGE_SLASHES; none reaches the backend.
 * - An allowed request reaches the backend with the normalized path (`/public/./x` -> `/public/x`).
 * - An absolute-form target whose authority differs from Host is a 400 and reaches nothing.
 */
import test from 'ava';
import { backend, makeConfigWith, startProxy, type Backend } from './harness.js';
import { describe, exchange } from './raw-client.js';

const HOST = 'reviews.shop.svc.cluster.local';
const denyAdmin = [{ name: 'deny-admin', spec: { action: 'DENY' as const, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] } }];

async function setup(t: import('ava').ExecutionContext, mesh: Record<string, unknown> = {}) {
  const urls: string[] = [];
  const b: Backend = await backend((req, res) => {
    urls.push(req.url ?? '');
    res.end('ok');
  });
  const h = await startProxy(makeConfigWith([{ name: 'reviews', endpoints: [{ backend: b }], authz: denyAdmin }], mesh));
  t.teardown(async () => { await h.close(); await b.close(); });
  return { b, h, urls };
}

const get = (target: string, host = HOST) => `GET ${target} HTTP/1.1\r\nhost: ${host}\r\n\r\n`;

/** [what, request-target, mesh-wide config] */
const denied: Array<[string, string, Record<string, unknown>]> = [
  ['an absolute-form target', `http://${HOST}/admin/secret`, {}],
  ['a dot-dot segment (/public/../admin)', '/public/../admin', {}],
  ['an encoded unreserved character (/%61dmin)', '/%61dmin', {}],
  ['encoded dot-dot (/public/%2e%2e/admin)', '/public/%2e%2e/admin', {}],
  ['a double slash (//admin) under MERGE_SLASHES', '//admin', { pathNormalization: 'MERGE_SLASHES' }],
];

for (const [what, target, mesh] of denied) {
  test(`target: ${what} is denied like /admin`, async (t) => {
    const { h, urls } = await setup(t, mesh);
    const r = await exchange(h.port, get(target));
    t.is(r.responses[0]?.status, 403, `expected 403 for GET ${target}, got: ${describe(r)}; backend saw ${JSON.stringify(urls)}`);
    t.deepEqual(urls, [], `the denied request reached the backend as ${JSON.stringify(urls)}`);
  });
}

test('target: an allowed request reaches the backend with its normalized path', async (t) => {
  const { h, urls } = await setup(t);
  const r = await exchange(h.port, get('/public/./x'));
  t.is(r.responses[0]?.status, 200, `expected 200 for /public/./x, got: ${describe(r)}`);
  t.deepEqual(urls, ['/public/x'], `the backend did not see the normalized path: ${JSON.stringify(urls)}`);
});

test('target: an absolute-form target whose authority differs from Host is a 400', async (t) => {
  const { b, h, urls } = await setup(t);
  const r = await exchange(h.port, get('http://other.example/public', HOST));
  t.is(r.responses[0]?.status, 400, `expected 400 for authority other.example with Host ${HOST}, got: ${describe(r)}; backend saw ${JSON.stringify(urls)}`);
  t.is(b.hits, 0, `the request reached the backend as ${JSON.stringify(urls)}`);
});
