import test from 'ava';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { backend, echo, makeConfig, startProxy, send } from './harness.js';

function jwt(key: KeyObject, alg: 'RS256' | 'ES256', kid: string, claims: Record<string, unknown>): string {
  const h = Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const sig = sign('sha256', Buffer.from(`${h}.${p}`), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${h}.${p}.${sig.toString('base64url')}`;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const forger = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = JSON.stringify({ keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r1', alg: 'RS256', use: 'sig' }, { ...ec.publicKey.export({ format: 'jwk' }), kid: 'e1', alg: 'ES256' }] });
const now = () => Math.floor(Date.now() / 1000);

test('path-based deny returns 403 and the log names the policy', async (t) => {
  const b = await backend(echo('v1'));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], authz: [{ name: 'deny-admin', spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] } }] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  t.is((await send(h.port, { path: '/public' })).status, 200);
  const denied = await send(h.port, { path: '/admin/users' });
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');
  t.is(b.hits, 1);
  const line = h.logs.find((l) => l['msg'] === 'request denied by authorization policy');
  t.is(line?.['policy'], 'shop/deny-admin');
  t.is(h.entries.at(-1)?.policy, 'shop/deny-admin');
  t.is(h.entries.at(-1)?.responseFlags, 'RBAC');
});

test('JWT: missing token is 403, forged is 401, a valid one passes and its claims feed when conditions', async (t) => {
  let jwksFetches = 0;
  const issuerServer: Server = createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jwks);
  });
  await new Promise<void>((r) => issuerServer.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(issuerServer.address() as AddressInfo).port}/jwks.json`;
  const b = await backend(echo('v1'));
  const h = await startProxy(makeConfig([{
    name: 'reviews',
    endpoints: [{ backend: b }],
    requestAuthn: [{ jwtRules: [{ issuer: 'https://issuer.example', audiences: ['reviews'], jwksUri }, { issuer: 'https://inline.example', jwks }] }],
    authz: [{ name: 'require-jwt', spec: { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['admins'] }] }] } }],
  }]));
  t.teardown(async () => { await h.close(); await b.close(); await new Promise<void>((r) => issuerServer.close(() => r())); });
  const base = { iss: 'https://issuer.example', sub: 'alice', aud: 'reviews', exp: now() + 600, groups: ['admins'] };

  const missing = await send(h.port);
  t.is(missing.status, 403, 'no token, denied by the policy: 403 as Istio (only an invalid token is a 401)');

  const forged = await send(h.port, { headers: { authorization: `Bearer ${jwt(forger.privateKey, 'RS256', 'r1', base)}` } });
  t.is(forged.status, 401);
  t.regex(h.entries.at(-1)?.detail ?? '', /signature does not verify/);

  const expired = await send(h.port, { headers: { authorization: `Bearer ${jwt(rsa.privateKey, 'RS256', 'r1', { ...base, exp: now() - 3600 })}` } });
  t.is(expired.status, 401);
  const wrongAud = await send(h.port, { headers: { authorization: `Bearer ${jwt(rsa.privateKey, 'RS256', 'r1', { ...base, aud: 'other' })}` } });
  t.is(wrongAud.status, 401);

  const valid = await send(h.port, { headers: { authorization: `Bearer ${jwt(rsa.privateKey, 'RS256', 'r1', base)}` } });
  t.is(valid.status, 200);
  t.is((valid.json() as { headers: Record<string, string> }).headers['authorization'], undefined, 'token not forwarded by default');

  const es = await send(h.port, { headers: { authorization: `Bearer ${jwt(ec.privateKey, 'ES256', 'e1', { ...base, iss: 'https://inline.example' })}` } });
  t.is(es.status, 200);

  const notAdmin = await send(h.port, { headers: { authorization: `Bearer ${jwt(rsa.privateKey, 'RS256', 'r1', { ...base, groups: ['users'] })}` } });
  t.is(notAdmin.status, 403, 'a valid token whose claims fail the when condition is forbidden');

  const viaParam = await send(h.port, { path: `/x?access_token=${jwt(rsa.privateKey, 'RS256', 'r1', base)}` });
  t.is(viaParam.status, 200);
  t.is(jwksFetches, 1, 'JWKS fetched once and cached');
  t.false(JSON.stringify(h.logs).includes('eyJ'), 'no token in logs');
});

test('local rate limit answers 429 when the bucket is empty and refills', async (t) => {
  const b = await backend(echo('v1'));
  // The proxy's clock is the test's: the fill interval passes when the test says so.
  let clock = 1_000_000;
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], rateLimits: [{ key: 'shop/limit', spec: { targetRefs: [{ kind: 'Service', name: 'reviews' }], tokenBucket: { maxTokens: 5, tokensPerFill: 5, fillInterval: '2s' } } }] }]), { now: () => clock });
  t.teardown(async () => { await h.close(); await b.close(); });
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) codes.push((await send(h.port)).status);
  t.deepEqual(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
  t.is(h.entries.at(-1)?.rateLimit, 'shop/limit');
  t.is(h.entries.at(-1)?.responseFlags, 'RL');
  clock += 1_999;
  t.is((await send(h.port)).status, 429, 'no refill before the fill interval');
  clock += 1;
  t.deepEqual([(await send(h.port)).status, (await send(h.port)).status], [200, 200], 'refilled after it');
});
