import test from 'ava';
import { backend, echo, makeConfig, startProxy, send, many, route, forward, destinationPolicy, hostOf } from './harness.js';

test('forwards to the service, keeps trace context, and logs one line per request', async (t) => {
  const b = await backend(echo('v1'));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  const r = await send(h.port, { path: '/hello?x=1', headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
  t.is(r.status, 200);
  const seen = r.json() as { url: string; headers: Record<string, string> };
  t.is(seen.url, '/hello?x=1');
  t.regex(seen.headers['traceparent'] ?? '', /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  t.not(seen.headers['traceparent'], '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  const r2 = await send(h.port);
  t.regex((r2.json() as { headers: Record<string, string> }).headers['traceparent'] ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  t.is(h.entries.length, 2);
  t.is(h.entries[0]?.responseCode, 200);
  t.is(h.entries[0]?.path, '/hello');
  const metrics = await h.registry.metrics();
  t.regex(metrics, /istio_requests_total\{[^}]*reporter="waypoint"[^}]*response_code="200"[^}]*\} 2/);
});

test('90/10 canary split lands within 3 points over 2,000 requests; a header match pins v2', async (t) => {
  const v1 = await backend(echo('v1'));
  const v2 = await backend(echo('v2'));
  const host = hostOf('reviews');
  const policy = destinationPolicy(host, {}, [
    { name: 'v1', labels: { version: 'v1' }, trafficPolicy: { loadBalancer: undefined, connectionPool: undefined, outlierDetection: undefined, ports: {} } },
    { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { loadBalancer: undefined, connectionPool: undefined, outlierDetection: undefined, ports: {} } },
  ]);
  const routes = [
    route({ path: 'spec.http[0]', matches: [{ path: undefined, ignorePathCase: false, method: undefined, authority: undefined, scheme: undefined, headers: [{ name: 'end-user', match: { type: 'exact', value: 'jason' }, invert: false }], queryParams: [], port: undefined }], action: forward({ host, subset: 'v2' }) }),
    route({ path: 'spec.http[1]', action: forward({ host, subset: 'v1', weight: 90 }, { host, subset: 'v2', weight: 10 }) }),
  ];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: v1, labels: { version: 'v1' } }, { backend: v2, labels: { version: 'v2' } }], routes, policy }]));
  t.teardown(async () => { await h.close(); await v1.close(); await v2.close(); });
  const replies = await many(2000, 32, () => send(h.port));
  const share = replies.filter((r) => r.headers['x-backend'] === 'v2').length / 2000;
  t.true(replies.every((r) => r.status === 200));
  t.true(Math.abs(share - 0.1) <= 0.03, `v2 share ${share}`);
  const pinned = await many(50, 8, () => send(h.port, { headers: { 'end-user': 'jason' } }));
  t.true(pinned.every((r) => r.headers['x-backend'] === 'v2'));
});

test('matches on method, prefix and query; rewrites, redirects, header operations; 404 NR otherwise', async (t) => {
  const b = await backend(echo('v1'));
  const host = hostOf('reviews');
  const none = { path: undefined, ignorePathCase: false, method: undefined, authority: undefined, scheme: undefined, headers: [], queryParams: [], port: undefined };
  const routes = [
    route({ path: 'spec.http[0]', matches: [{ ...none, path: { type: 'prefix', value: '/old' } }], action: { type: 'redirect', scheme: undefined, host: 'new.example', port: undefined, path: undefined, prefixPath: '/new', status: 301 } }),
    route({
      path: 'spec.http[1]',
      matches: [{ ...none, path: { type: 'prefix', value: '/api/' }, method: { type: 'exact', value: 'POST' }, queryParams: [{ name: 'v', match: { type: 'regex', value: '[0-9]+' }, invert: false }] }],
      action: forward({ host }),
      rewrite: { path: undefined, prefixPath: '/internal/', authority: 'internal.local' },
      requestHeaders: { set: { 'x-set': 'yes' }, add: { 'x-add': 'a' }, remove: ['x-secret'] },
      responseHeaders: { set: { 'x-resp': 'r' }, add: {}, remove: ['x-backend'] },
    }),
  ];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], routes }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  const red = await send(h.port, { path: '/old/page?q=1' });
  t.is(red.status, 301);
  t.is(red.headers['location'], 'http://new.example/new/page?q=1');
  const r = await send(h.port, { method: 'POST', path: '/api/items?v=12', headers: { 'x-secret': 's' }, body: 'payload' });
  t.is(r.status, 200);
  const seen = r.json() as { url: string; headers: Record<string, string>; body: string };
  t.is(seen.url, '/internal/items?v=12');
  t.is(seen.headers['host'], 'internal.local');
  t.is(seen.headers['x-set'], 'yes');
  t.is(seen.headers['x-add'], 'a');
  t.is(seen.headers['x-secret'], undefined);
  t.is(seen.body, 'payload');
  t.is(r.headers['x-resp'], 'r');
  t.is(r.headers['x-backend'], undefined);
  const miss = await send(h.port, { method: 'GET', path: '/api/items?v=12' });
  t.is(miss.status, 404);
  t.is(h.entries.at(-1)?.responseFlags, 'NR');
});

test('consistent hash on a header keeps a user on one endpoint; round robin spreads', async (t) => {
  const bs = await Promise.all([backend(echo('a')), backend(echo('b')), backend(echo('c'))]);
  const host = hostOf('reviews');
  const policy = destinationPolicy(host, { consistentHash: { httpHeaderName: 'x-user', maglev: { tableSize: 251 } } } as never);
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: bs.map((backend) => ({ backend })), policy }]));
  t.teardown(async () => { await h.close(); await Promise.all(bs.map((b) => b.close())); });
  for (const user of ['alice', 'bob', 'carol']) {
    const rs = await many(20, 4, () => send(h.port, { headers: { 'x-user': user } }));
    t.is(new Set(rs.map((r) => r.headers['x-backend'])).size, 1, user);
  }
  const spread = await many(60, 1, () => send(h.port));
  t.is(new Set(spread.map((r) => r.headers['x-backend'])).size, 3);
});
