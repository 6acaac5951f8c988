/**
 * The cache of a fetched jwksUri, seen through the authenticator: requests wait for the fetch in
 * flight (cold cache, stale cache, unknown kid) and share it, unknown kids refetch at most once
 * per minRefetchMs, a failing fetch keeps the last good set and backs off exponentially, and every
 * fetch is bounded by the rule's timeout. A fake fetch drives timing and failures; the last tests
 * fetch from a real HTTP server on loopback.
 */
import test from 'ava';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { JWT_REASONS, type JwtAuthenticatorOptions } from '../../../src/waypoint/jwt.js';
import { authn, bearer, claims, craft, goodToken, jwksOf, keys, publicJwk } from './jwt-fixtures.js';
import { eventually } from '../../helpers/eventually.js';

const URI = 'https://issuer.example/jwks.json';
const R1 = publicJwk(keys.rsa.publicKey, { kid: 'r1' });
const R2 = publicJwk(keys.rsa2.publicKey, { kid: 'r2' });
const tokenR2 = () => craft({ alg: 'RS256', kid: 'r2' }, claims(), keys.rsa2.privateKey);
const forged = (kid: string) => craft({ alg: 'RS256', kid }, claims(), keys.rsa1024.privateKey);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scripted issuer: serves `jwks` after `delayMs`, or fails as `fail` says. */
function fakeIssuer() {
  const s = { jwks: jwksOf(R1), delayMs: 0, fail: undefined as undefined | 'throw' | 'http500' | 'hang', calls: 0, signals: [] as AbortSignal[] };
  const f = async (_uri: string, init?: RequestInit): Promise<Response> => {
    s.calls++;
    if (init?.signal) s.signals.push(init.signal);
    const fail = s.fail;
    if (fail === 'hang') return new Promise<Response>(() => {});
    await sleep(s.delayMs);
    if (fail === 'throw') throw new TypeError('fetch failed');
    return new Response(fail === 'http500' ? 'oops' : s.jwks, { status: fail === 'http500' ? 500 : 200 });
  };
  return Object.assign(s, { fetch: f as unknown as typeof fetch });
}

function fakeLogger() {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const log = { warn: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }), error() {}, info() {}, debug() {} };
  return { log: log as unknown as Logger, lines };
}

const remote = (extra: Record<string, unknown> = {}) => ({ issuer: 'https://issuer.example', jwksUri: URI, ...extra });

test('jwks cache: requests during the cold first fetch wait for it and share one fetch', async (t) => {
  const issuer = fakeIssuer();
  issuer.delayMs = 150;
  const a = authn(remote(), { fetch: issuer.fetch });
  const results = await Promise.all(Array.from({ length: 5 }, () => a.authenticate(bearer(goodToken()))));
  t.true(results.every((r) => r.kind === 'valid'), JSON.stringify(results.map((r) => r.kind)));
  t.is(issuer.calls, 1);
});

test('jwks cache: a token with a new kid waits for the refetch in flight; known kids do not wait', async (t) => {
  let clock = 1_000_000;
  const issuer = fakeIssuer();
  const a = authn(remote(), { fetch: issuer.fetch, now: () => clock });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  // The issuer rotates in r2; its first token triggers a slow refetch.
  issuer.jwks = jwksOf(R1, R2);
  issuer.delayMs = 200;
  clock += 61_000;
  const order: string[] = [];
  const first = a.authenticate(bearer(tokenR2())).then((r) => (order.push('r2 first'), r));
  await sleep(30);
  const second = a.authenticate(bearer(tokenR2())).then((r) => (order.push('r2 during refetch'), r));
  const known = a.authenticate(bearer(goodToken())).then((r) => (order.push('r1'), r));
  const results = await Promise.all([first, second, known]);
  t.deepEqual(results.map((r) => r.kind), ['valid', 'valid', 'valid']);
  t.is(order[0], 'r1', 'a token whose key is cached is not held up by the refetch');
  t.is(issuer.calls, 2);
});

test('jwks cache: unknown kids refetch at most once per minRefetchMs', async (t) => {
  let clock = 1_000_000;
  const issuer = fakeIssuer();
  const a = authn(remote(), { fetch: issuer.fetch, now: () => clock });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  for (let i = 0; i < 10; i++) t.like(await a.authenticate(bearer(forged(`forged-${i}`))), { kind: 'invalid', reason: JWT_REASONS.noKey });
  t.is(issuer.calls, 1, 'no refetch within a minute of the first fetch');
  clock += 60_000;
  for (let i = 0; i < 10; i++) await a.authenticate(bearer(forged(`forged-${i}`)));
  t.is(issuer.calls, 2);
  clock += 30_000;
  for (let i = 0; i < 10; i++) await a.authenticate(bearer(forged(`forged-${i}`)));
  t.is(issuer.calls, 2);
});

test('jwks cache: a failing fetch keeps the last good JWKS', async (t) => {
  let clock = 1_000_000;
  const issuer = fakeIssuer();
  const logger = fakeLogger();
  const a = authn(remote(), { fetch: issuer.fetch, now: () => clock, logger: logger.log });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  for (const fail of ['http500', 'throw'] as const) {
    issuer.fail = fail;
    clock += 20 * 60_000; // stale: the next request refetches
    t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' }, fail);
  }
  t.is(issuer.calls, 3);
  const failures = logger.lines.filter((l) => l.msg === 'JWKS fetch failed');
  t.is(failures.length, 2);
  t.like(failures[0]?.obj, { jwksUri: URI, keepsLastGood: true });
  t.false(JSON.stringify(logger.lines).includes(String(R1['n']).slice(0, 20)), 'no key material in logs');
});

test('jwks cache: failed fetches back off exponentially up to the cap', async (t) => {
  let clock = 0;
  const issuer = fakeIssuer();
  issuer.fail = 'throw';
  const opts: JwtAuthenticatorOptions = { fetch: issuer.fetch, now: () => clock, jwksBackoffMs: 1000, maxJwksBackoffMs: 3000 };
  const a = authn(remote(), opts);
  const callsAt = async (ms: number) => {
    clock = ms;
    t.like(await a.authenticate(bearer(goodToken())), { kind: 'invalid', reason: JWT_REASONS.jwksFetch }, `at ${ms} ms`);
    return issuer.calls;
  };
  t.is(await callsAt(0), 1);
  t.is(await callsAt(999), 1);
  t.is(await callsAt(1000), 2); // next after 2 s
  t.is(await callsAt(2999), 2);
  t.is(await callsAt(3000), 3); // next after 3 s (4 s capped)
  t.is(await callsAt(5999), 3);
  t.is(await callsAt(6000), 4);
  issuer.fail = undefined;
  clock = 9000;
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' }, 'recovers');
  t.is(issuer.calls, 5);
});

test('jwks cache: a fetch that never answers is bounded by the rule timeout', async (t) => {
  const issuer = fakeIssuer();
  issuer.fail = 'hang';
  const logger = fakeLogger();
  const a = authn(remote({ timeout: '150ms' }), { fetch: issuer.fetch, logger: logger.log });
  const results = await Promise.all([a.authenticate(bearer(goodToken())), a.authenticate(bearer(goodToken()))]);
  t.deepEqual(results, [{ kind: 'invalid', reason: JWT_REASONS.jwksFetch }, { kind: 'invalid', reason: JWT_REASONS.jwksFetch }]);
  t.is(issuer.calls, 1);
  // The rule's 150 ms ended it (not some other bound): the fetch was aborted with that reason.
  t.is(issuer.signals.length, 1);
  t.true(issuer.signals[0]?.aborted, 'the hanging fetch was aborted');
  t.regex(String((issuer.signals[0]?.reason as Error | undefined)?.message), /no complete answer within 150 ms/);
  t.regex(String(logger.lines.find((l) => l.msg === 'JWKS fetch failed')?.obj['reason']), /no complete answer within 150 ms/);
});

test('jwks cache: authenticators sharing the cache map share one cache per jwksUri', async (t) => {
  const issuer = fakeIssuer();
  const caches = new Map<string, unknown>();
  const a = authn(remote(), { fetch: issuer.fetch }, caches);
  const b = authn([remote({ audiences: ['reviews'] })], { fetch: issuer.fetch }, caches);
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  t.like(await b.authenticate(bearer(goodToken())), { kind: 'valid' });
  t.is(issuer.calls, 1);
  t.is(caches.size, 1);
});

async function listen(handler: (res: ServerResponse, path: string) => void): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => handler(res, req.url ?? '/'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('jwks cache: fetches over HTTP on loopback, and refuses error answers and bodies over 1 MiB', async (t) => {
  const jwks = jwksOf(R1);
  const { server, base } = await listen((res, path) => {
    if (path === '/jwks') return void res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
    if (path === '/big') return void res.writeHead(200).end(`{"keys":[${' '.repeat(1024 * 1024 + 1)}]}`);
    if (path === '/big-chunked') {
      res.writeHead(200); // no content-length: only counting the body can stop it
      for (let i = 0; i < 20; i++) res.write(' '.repeat(64 * 1024));
      return void res.end('{"keys":[]}');
    }
    res.writeHead(404).end();
  });
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const logger = fakeLogger();
  const a = authn([remote({ jwksUri: `${base}/jwks` })], { logger: logger.log });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  for (const path of ['/big', '/big-chunked', '/missing']) {
    const b = authn([remote({ jwksUri: `${base}${path}` })], { logger: logger.log });
    t.like(await b.authenticate(bearer(goodToken())), { kind: 'invalid', reason: JWT_REASONS.jwksFetch }, path);
  }
  const reasons = logger.lines.map((l) => String(l.obj['reason']));
  t.is(reasons.filter((r) => r.includes('larger than 1 MiB')).length, 2, reasons.join(' | '));
  t.true(reasons.some((r) => r.includes('HTTP 404')), reasons.join(' | '));
});

test('jwks cache: a server that accepts but never answers is abandoned after the timeout', async (t) => {
  let requests = 0;
  let abandoned = 0;
  const { server, base } = await listen((res) => { requests++; res.on('close', () => abandoned++); });
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const logger = fakeLogger();
  const a = authn([remote({ jwksUri: `${base}/jwks`, timeout: '200ms' })], { logger: logger.log });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'invalid', reason: JWT_REASONS.jwksFetch });
  t.regex(String(logger.lines.find((l) => l.msg === 'JWKS fetch failed')?.obj['reason']), /no complete answer within 200 ms/);
  // The waypoint hung up: the server sees its unanswered request closed.
  await eventually('the server to see the abandoned request close', () => abandoned === 1);
  t.is(requests, 1);
});
