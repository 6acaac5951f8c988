import test from 'ava';
import type { ServerResponse } from 'node:http';
import { backend, echo, makeConfig, startProxy, send, many, route, forward, destinationPolicy, hostOf } from './harness.js';

const host = hostOf('reviews');

test('a backend failing half its requests is masked by retries', async (t) => {
  let n = 0;
  const flaky = await backend((req, res) => {
    if (n++ % 2 === 0) {
      res.writeHead(503);
      res.end('down');
    } else echo('ok')(req, res);
  });
  const routes = [route({ action: forward({ host }), retries: { attempts: 3, perTryTimeoutMs: undefined, retryOn: ['5xx'], backoffMs: 1 } })];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: flaky }], routes }]));
  t.teardown(async () => { await h.close(); await flaky.close(); });
  const rs = await many(100, 1, () => send(h.port));
  t.true(rs.every((r) => r.status === 200), `statuses ${[...new Set(rs.map((r) => r.status))].join(',')}`);
  t.true(h.entries.some((e) => e.retries > 0));
});

test('the retry budget stops a retry storm when the backend fails every request', async (t) => {
  const dead = await backend((_req, res) => {
    res.writeHead(503);
    res.end('down');
  });
  const routes = [route({ action: forward({ host }), retries: { attempts: 3, perTryTimeoutMs: undefined, retryOn: ['5xx'], backoffMs: 1 } })];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: dead }], routes }]), { retryBudget: { ratio: 0.2, minPerSecond: 1, windowMs: 10_000 } });
  t.teardown(async () => { await h.close(); await dead.close(); });
  const rs = await many(300, 8, () => send(h.port));
  t.true(rs.every((r) => r.status === 503));
  // Without a budget: 300 requests x 3 retries = 900 retries (1,200 backend hits).
  const retries = dead.hits - 300;
  t.true(retries <= 0.2 * 300 + 10 + 1, `retries ${retries}`);
  t.true(retries >= 10, `retries ${retries}`);
  t.regex(await h.registry.metrics(), /ambit_waypoint_retry_budget_exhausted_total\{[^}]*\} [1-9]/);
});

/** A backend that holds every request unanswered until `release()`: "slow" without a clock. */
async function held(): Promise<Awaited<ReturnType<typeof backend>> & { waiting: () => number; release: () => void }> {
  const open: ServerResponse[] = [];
  const b = await backend((_req, res) => { open.push(res); });
  return Object.assign(b, {
    waiting: () => open.filter((res) => !res.writableEnded).length,
    release: () => { for (const res of open.splice(0)) if (!res.destroyed) { res.writeHead(200); res.end('late'); } },
  });
}

test('a slow backend gets 504 at the route timeout; per-try timeouts retry on another endpoint', async (t) => {
  const slow = await held();
  const fast = await backend(echo('fast'));
  const timeoutRoute = [route({ action: forward({ host }), timeoutMs: 200 })];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: slow }], routes: timeoutRoute }]));
  const r = await send(h.port);
  t.is(r.status, 504);
  t.is(h.entries.at(-1)?.responseFlags, 'UT');
  t.is(slow.hits, 1, 'the request reached the backend');
  t.is(slow.waiting(), 1, 'and the 504 came while the backend still held it, unanswered');
  await h.close();
  slow.release();

  const perTry = [route({ action: forward({ host }), timeoutMs: 3000, retries: { attempts: 2, perTryTimeoutMs: 150, retryOn: ['5xx'], backoffMs: 1 } })];
  const policy = destinationPolicy(host, { loadBalancer: 'ROUND_ROBIN' });
  const h2 = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: slow }, { backend: fast }], routes: perTry, policy }]));
  t.teardown(async () => { await h2.close(); await slow.close(); await fast.close(); });
  t.teardown(() => slow.release());
  const hitsBefore = slow.hits;
  const rs = await many(6, 1, () => send(h2.port));
  for (const x of rs) t.is(x.headers['x-backend'], 'fast');
  const retried = h2.entries.filter((e) => e.retries > 0);
  t.is(retried.length, slow.hits - hitsBefore, 'every request that reached the slow endpoint was retried');
  t.true(retried.length >= 2, `round robin sent ${retried.length} of 6 to the slow endpoint first`);
  t.true(retried.every((e) => e.responseCode === 200 && e.responseFlags === '-'), 'and answered by the other endpoint');
  t.is(slow.waiting(), retried.length, 'the slow endpoint answered none of them: the retry came from the per-try timeout');
});

test('an endpoint answering 5xx is ejected and comes back after its ejection time', async (t) => {
  let failing = true;
  const bad = await backend((req, res) => {
    if (failing) {
      res.writeHead(500);
      res.end('boom');
    } else echo('bad')(req, res);
  });
  const good = await backend(echo('good'));
  const policy = destinationPolicy(host, {
    loadBalancer: 'ROUND_ROBIN',
    outlierDetection: { consecutive5xxErrors: 3, consecutiveGatewayErrors: undefined, intervalMs: 50, baseEjectionTimeMs: 3000, maxEjectionPercent: 100, minHealthPercent: 0 },
  });
  const routes = [route({ action: forward({ host }), retries: { attempts: 0, perTryTimeoutMs: undefined, retryOn: [], backoffMs: undefined } })];
  // The proxy's clock is the test's: the ejection time passes when the test says so.
  let clock = 1_000_000;
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: bad }, { backend: good }], routes, policy }]), { now: () => clock });
  t.teardown(async () => { await h.close(); await bad.close(); await good.close(); });
  const first = await many(12, 1, () => send(h.port));
  t.is(first.filter((r) => r.status === 500).length, 3);
  const hitsAtEjection = bad.hits;
  clock += 2_999;
  const during = await many(10, 1, () => send(h.port));
  t.true(during.every((r) => r.status === 200 && r.headers['x-backend'] === 'good'), 'inside the ejection time only the good endpoint answers');
  t.is(bad.hits, hitsAtEjection);
  t.regex(await h.registry.metrics(), /ambit_waypoint_outlier_ejections_total\{[^}]*\} 1/);
  failing = false;
  clock += 1;
  const after = await many(10, 1, () => send(h.port));
  t.true(after.some((r) => r.headers['x-backend'] === 'bad'), 'at the end of the ejection time the endpoint is back');
});

test('connection pool overflow answers 503 with flag UO', async (t) => {
  const slow = await backend((req, res) => { setTimeout(() => echo('slow')(req, res), 300).unref(); });
  const policy = destinationPolicy(host, {
    connectionPool: { maxConnections: 1, connectTimeoutMs: undefined, maxConnectionDurationMs: undefined, tcpIdleTimeoutMs: undefined, http1MaxPendingRequests: 1, http2MaxRequests: undefined, maxRequestsPerConnection: undefined, maxRetries: undefined, httpIdleTimeoutMs: undefined, maxConcurrentStreams: undefined },
  });
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: slow }], policy }]));
  t.teardown(async () => { await h.close(); await slow.close(); });
  const rs = await Promise.all(Array.from({ length: 4 }, () => send(h.port, { agent: false })));
  const codes = rs.map((r) => r.status).sort();
  t.deepEqual(codes, [200, 200, 503, 503]);
  t.is(h.entries.filter((e) => e.responseFlags === 'UO').length, 2);
  t.is((await send(h.port)).status, 200);
});
