/**
 * Regression tests for the "identity" finding class: what the backend and the authorization
 * policy believe about the caller must come from a verified JWT, never from the client.
 *
 * Proves, through the real proxy on loopback with tokens signed here (node:crypto):
 * - The headers RequestAuthentication writes (outputPayloadToHeader, outputClaimToHeaders) are
 *   removed when a client sends them itself, with or without a token; with a valid token the
 *   backend sees the waypoint's values only.
 * - A token is validated by the rule whose location it was found in: issuer B's token in the
 *   header of issuer A's rule is a 401.
 * - As in Istio: no token where an ALLOW policy requires a request principal is a 403; an
 *   invalid token is a 401, and a 401 does not echo attacker-controlled text (a 10 KB `iss`).
 */
import test from 'ava';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { RequestAuthenticationSpec } from '../../../src/model/kinds/security.js';
import { backend, echo, makeConfig, send, startProxy, type ServiceSpec } from './harness.js';

function jwt(key: KeyObject, kid: string, claims: Record<string, unknown>): string {
  const h = Buffer.from(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${h}.${p}.${sign('sha256', Buffer.from(`${h}.${p}`), key).toString('base64url')}`;
}

const keyA = generateKeyPairSync('rsa', { modulusLength: 2048 });
const keyB = generateKeyPairSync('rsa', { modulusLength: 2048 });
const forger = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwksOf = (k: KeyObject, kid: string) => JSON.stringify({ keys: [{ ...k.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] });
const ISS_A = 'https://a.example';
const ISS_B = 'https://b.example';
const exp = () => Math.floor(Date.now() / 1000) + 600;
const claimsA = () => ({ iss: ISS_A, sub: 'alice', exp: exp() });

const outputRule: RequestAuthenticationSpec = {
  jwtRules: [{ issuer: ISS_A, jwks: jwksOf(keyA.publicKey, 'a1'), outputPayloadToHeader: 'x-jwt-payload', outputClaimToHeaders: [{ header: 'x-jwt-sub', claim: 'sub' }] }],
};

async function setup(t: import('ava').ExecutionContext, svc: Omit<ServiceSpec, 'name' | 'endpoints'>) {
  const b = await backend(echo('v1'));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], ...svc }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  return { b, h };
}

const seenHeaders = (body: string): Record<string, string | undefined> => (JSON.parse(body) as { headers: Record<string, string> }).headers;
const forged = { 'x-jwt-payload': Buffer.from(JSON.stringify({ iss: ISS_A, sub: 'admin' })).toString('base64url'), 'x-jwt-sub': 'admin' };

test('identity: claim headers sent by a client without a token do not reach the backend', async (t) => {
  const { h } = await setup(t, { requestAuthn: [outputRule] });
  const r = await send(h.port, { headers: forged, agent: false });
  t.is(r.status, 200, `expected the unauthenticated request to pass (no policy), got ${r.status} ${r.body.slice(0, 200)}`);
  const seen = seenHeaders(r.body);
  t.is(seen['x-jwt-sub'], undefined, `the backend saw the client's x-jwt-sub: ${JSON.stringify(seen['x-jwt-sub'])}`);
  t.is(seen['x-jwt-payload'], undefined, `the backend saw the client's x-jwt-payload: ${JSON.stringify(seen['x-jwt-payload'])}`);
});

test('identity: with a valid token the backend sees the waypoint\'s claim headers, not the client\'s', async (t) => {
  const { h } = await setup(t, { requestAuthn: [outputRule] });
  const claims = claimsA();
  const r = await send(h.port, { headers: { ...forged, authorization: `Bearer ${jwt(keyA.privateKey, 'a1', claims)}` }, agent: false });
  t.is(r.status, 200, `expected a valid token to pass, got ${r.status} ${r.body.slice(0, 200)}`);
  const seen = seenHeaders(r.body);
  t.is(seen['x-jwt-sub'], 'alice', `the backend saw x-jwt-sub ${JSON.stringify(seen['x-jwt-sub'])}, not the token's sub`);
  const payload = seen['x-jwt-payload'];
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(payload ?? '', 'base64').toString('utf8'));
  } catch {
    decoded = `not base64 JSON: ${JSON.stringify(payload)}`;
  }
  t.deepEqual(decoded, claims, `the backend's x-jwt-payload is not the token's payload: ${JSON.stringify(payload)}`);
});

test('identity: a token of issuer B in the header of issuer A\'s rule is refused with 401', async (t) => {
  const { b, h } = await setup(t, {
    requestAuthn: [{ jwtRules: [
      { issuer: ISS_A, jwks: jwksOf(keyA.publicKey, 'a1'), fromHeaders: [{ name: 'x-token-a' }] },
      { issuer: ISS_B, jwks: jwksOf(keyB.publicKey, 'b1'), fromHeaders: [{ name: 'x-token-b' }] },
    ] }],
  });
  const tokenA = jwt(keyA.privateKey, 'a1', claimsA());
  const tokenB = jwt(keyB.privateKey, 'b1', { iss: ISS_B, sub: 'bob', exp: exp() });
  t.is((await send(h.port, { headers: { 'x-token-a': tokenA }, agent: false })).status, 200, 'issuer A\'s token in its own header should pass');
  t.is((await send(h.port, { headers: { 'x-token-b': tokenB }, agent: false })).status, 200, 'issuer B\'s token in its own header should pass');
  const hits = b.hits;
  const crossed = await send(h.port, { headers: { 'x-token-a': tokenB }, agent: false });
  t.is(crossed.status, 401, `issuer B's token in x-token-a (issuer A's location) got ${crossed.status}: ${crossed.body.slice(0, 200)}`);
  t.is(b.hits, hits, 'the request with a token in the wrong rule\'s header reached the backend');
});

test('identity: no token where an ALLOW policy requires a request principal is 403, an invalid token 401', async (t) => {
  const { b, h } = await setup(t, {
    requestAuthn: [outputRule],
    authz: [{ name: 'require-jwt', spec: { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] } }],
  });
  const missing = await send(h.port, { agent: false });
  t.is(missing.status, 403, `a request without a token got ${missing.status} (Istio: 403 RBAC: access denied): ${missing.body.slice(0, 200)}`);
  const invalid = await send(h.port, { headers: { authorization: `Bearer ${jwt(forger.privateKey, 'a1', claimsA())}` }, agent: false });
  t.is(invalid.status, 401, `a token with a forged signature got ${invalid.status}: ${invalid.body.slice(0, 200)}`);
  const valid = await send(h.port, { headers: { authorization: `Bearer ${jwt(keyA.privateKey, 'a1', claimsA())}` }, agent: false });
  t.is(valid.status, 200, `a valid token got ${valid.status}: ${valid.body.slice(0, 200)}`);
  t.is(b.hits, 1, 'only the request with a valid token reaches the backend');
});

test('identity: a 401 does not echo attacker text from the token', async (t) => {
  const { b, h } = await setup(t, { requestAuthn: [outputRule] });
  const marker = `https://${'x'.repeat(10_000)}.example`;
  const r = await send(h.port, { headers: { authorization: `Bearer ${jwt(keyA.privateKey, 'a1', { iss: marker, sub: 'eve', exp: exp() })}` }, agent: false });
  t.is(r.status, 401, `a token of an unknown 10 KB issuer got ${r.status}`);
  t.true(r.body.length <= 200, `the 401 body is ${r.body.length} bytes (expected a short fixed text): ${JSON.stringify(r.body.slice(0, 120))}`);
  const all = JSON.stringify(r.headers) + r.body;
  t.false(all.includes('x'.repeat(64)), 'the 401 response echoes the token\'s iss');
  t.is(b.hits, 0);
});

test('identity: a token in the access_token parameter (not forwarded) does not reach the backend; the other parameters do', async (t) => {
  const { h } = await setup(t, { requestAuthn: [outputRule] });
  const token = jwt(keyA.privateKey, 'a1', claimsA());
  const r = await send(h.port, { path: `/x?a=1&access_token=${token}&b=2`, agent: false });
  t.is(r.status, 200, `expected a valid token to pass, got ${r.status} ${r.body.slice(0, 200)}`);
  const url = (JSON.parse(r.body) as { url: string }).url;
  t.is(url, '/x?a=1&b=2', `the backend saw ${url}`);
});
