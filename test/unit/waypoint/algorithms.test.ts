import test from 'ava';
import { createBalancer, hashKeyOf, type Pickable } from '../../../src/waypoint/balancer.js';
import { OutlierDetector } from '../../../src/waypoint/outlier.js';
import { PoolLimiter } from '../../../src/waypoint/pool-limits.js';
import { TokenBucket } from '../../../src/waypoint/rate-limit.js';
import { RetryBudget, isRetriable } from '../../../src/waypoint/retry.js';
import { parseTraceparent, traceFor } from '../../../src/waypoint/trace.js';
import { rewritePath, pickDestination } from '../../../src/waypoint/route-action.js';
import { sniffProtocol } from '../../../src/waypoint/dispatch.js';
import { localRateLimitKind } from '../../../src/model/kinds/ambit-rate-limit.js';
import { SchemaContext } from '../../../src/model/schema/dsl.js';

const eps = (n: number): (Pickable & { active: number })[] => Array.from({ length: n }, (_, i) => ({ key: `198.19.0.${i}:80`, active: 0 }));

test('retry budget allows ratio x requests plus the per-second minimum, and recovers', (t) => {
  let now = 0;
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000, now: () => now });
  for (let i = 0; i < 100; i++) b.deposit();
  let allowed = 0;
  for (let i = 0; i < 100; i++) if (b.tryWithdraw()) allowed++;
  t.is(allowed, 30); // 1/s x 10 s + 0.2 x 100
  now = 11_000;
  t.true(b.tryWithdraw(), 'window moved on');
});

test('retryOn conditions', (t) => {
  t.true(isRetriable(['5xx'], { kind: 'response', status: 502, grpcStatus: undefined }));
  t.false(isRetriable(['gateway-error'], { kind: 'response', status: 500, grpcStatus: undefined }));
  t.true(isRetriable(['connect-failure'], { kind: 'connect-failure' }));
  t.true(isRetriable(['unavailable'], { kind: 'response', status: 200, grpcStatus: 14 }));
  t.true(isRetriable(['retriable-status-codes'], { kind: 'response', status: 503, grpcStatus: undefined }));
  t.false(isRetriable(['reset'], { kind: 'per-try-timeout' }));
});

test('maglev and ring hashing are stable and move only the keys of a removed endpoint', (t) => {
  for (const ch of [{ httpHeaderName: 'x', maglev: { tableSize: 1009 } }, { httpHeaderName: 'x', ringHash: { minimumRingSize: 512 } }]) {
    const all = eps(5);
    const b = createBalancer<(typeof all)[number]>({ consistentHash: ch });
    const keys = Array.from({ length: 500 }, (_, i) => `user-${i}`);
    const before = keys.map((k) => b.pick(all, () => true, k)?.key);
    const gone = all[2]?.key;
    const after = keys.map((k) => b.pick(all, (e) => e.key !== gone, k)?.key);
    let moved = 0;
    keys.forEach((_, i) => { if (before[i] !== gone && before[i] !== after[i]) moved++; });
    t.is(moved, 0);
    t.true(after.every((k) => k !== gone));
    t.true(new Set(before).size === 5);
  }
  t.is(hashKeyOf({ httpCookie: { name: 'sid' } }, { header: (n) => (n === 'cookie' ? 'a=1; sid=abc' : undefined), sourceIp: '1.2.3.4' }), 'abc');
});

test('least request prefers the endpoint with fewer requests in flight', (t) => {
  const all = eps(2);
  (all[0] as { active: number }).active = 10;
  const b = createBalancer<(typeof all)[number]>({ policy: 'LEAST_REQUEST' });
  for (let i = 0; i < 20; i++) t.is(b.pick(all, () => true)?.key, all[1]?.key);
});

test('outlier detection ejects, grows ejection time, caps the ejected share', (t) => {
  let now = 0;
  const od = new OutlierDetector({ consecutive5xxErrors: 2, consecutiveGatewayErrors: undefined, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 50, minHealthPercent: 0 }, () => now);
  const keys = ['a', 'b', 'c', 'd'];
  od.record('a', '5xx', keys);
  t.false(od.isEjected('a'));
  od.record('a', '5xx', keys);
  t.true(od.isEjected('a'));
  for (const k of ['b', 'c']) { od.record(k, '5xx', keys); od.record(k, '5xx', keys); }
  t.is(od.ejectedCount(keys), 2, 'at most 50% ejected');
  now = 1001;
  t.false(od.isEjected('a'));
  od.record('a', '5xx', keys);
  od.record('a', '5xx', keys);
  now = 2500;
  t.true(od.isEjected('a'), 'second ejection lasts twice as long');
  now = 3002;
  t.false(od.isEjected('a'));
});

test('pool limiter: capacity, pending queue, overflow', async (t) => {
  const p = new PoolLimiter({ maxConnections: 1, http1MaxPendingRequests: 1 } as never, 'http1');
  const a = await p.acquire();
  t.true(a.ok);
  const waiting = p.acquire();
  t.false((await p.acquire()).ok);
  if (a.ok) a.release();
  const b = await waiting;
  t.true(b.ok);
  t.is(p.inFlight, 1);
});

test('token bucket refills in whole intervals', (t) => {
  let now = 0;
  const tb = new TokenBucket(2, 1, 100, () => now);
  t.true(tb.tryTake());
  t.true(tb.tryTake());
  t.false(tb.tryTake());
  now = 150;
  t.true(tb.tryTake());
  t.false(tb.tryTake());
});

test('trace context continues or starts traces', (t) => {
  const c = traceFor('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  t.is(c.traceId, '0af7651916cd43dd8448eb211c80319c');
  t.is(c.parentSpanId, 'b7ad6b7169203331');
  t.not(c.spanId, 'b7ad6b7169203331');
  t.is(parseTraceparent('00-00000000000000000000000000000000-b7ad6b7169203331-01'), undefined);
  t.true(traceFor(undefined).generated);
});

test('rewrites, weighted choice and protocol sniffing', (t) => {
  const m = { path: { type: 'prefix' as const, value: '/api' }, ignorePathCase: false, method: undefined, authority: undefined, scheme: undefined, headers: [], queryParams: [], port: undefined };
  t.is(rewritePath('/api/v1?x=1', { path: undefined, prefixPath: '/internal' }, m), '/internal/v1?x=1');
  t.is(rewritePath('/api/v1', { path: '/fixed', prefixPath: undefined }, m), '/fixed');
  const d = [{ host: 'a', subset: undefined, port: undefined, weight: 90 }, { host: 'b', subset: undefined, port: undefined, weight: 10 }];
  t.is(pickDestination(d, 0.89)?.host, 'a');
  t.is(pickDestination(d, 0.91)?.host, 'b');
  t.is(sniffProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
  t.is(sniffProtocol(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
  t.is(sniffProtocol(Buffer.from([0x16, 0x03, 0x01])), 'tcp');
  t.is(sniffProtocol(Buffer.from('GE')), undefined);
});

test('LocalRateLimit kind validates its spec', (t) => {
  const ok = new SchemaContext();
  localRateLimitKind.spec.parse({ targetRefs: [{ kind: 'Service', name: 'reviews' }], tokenBucket: { maxTokens: 10, fillInterval: '1s' } }, [], ok);
  t.is(ok.issues.length, 0);
  const bad = new SchemaContext();
  localRateLimitKind.spec.parse({ targetRefs: [{ kind: 'Deployment', name: 'x' }], tokenBucket: { maxTokens: 0, fillInterval: 5 } }, [], bad);
  t.deepEqual(bad.issues.map((i) => i.code).sort(), ['AMBIT_SCHEMA_DURATION', 'AMBIT_SCHEMA_INVALID', 'AMBIT_SCHEMA_RANGE']);
});
