/**
 * What a valid token is: the algorithms Istio accepts, and jose's checks of issuer, audiences,
 * exp / nbf with clock skew and the numeric-date claims, mapped to Envoy's fixed reasons.
 */
import test from 'ava';
import { JWT_REASONS } from '../../../src/waypoint/jwt.js';
import { ISS, authn, bearer, claims, craft, goodToken, jwksOf, keys, publicJwk, rule } from './jwt-fixtures.js';

const T0 = 1_750_000_000;
const at = (seconds: number) => ({ now: () => seconds * 1000 });

test('jwt algorithms: RS384/512, PS256 on an rsa-pss key, PS512, ES384, ES512 on P-521 and EdDSA on Ed25519 verify', async (t) => {
  const p384 = (await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const jwks = jwksOf(
    publicJwk(keys.rsa.publicKey, { kid: 'rsa' }),
    publicJwk(keys.rsaPss.publicKey, { kid: 'pss' }),
    publicJwk(p384.publicKey, { kid: 'p384' }),
    publicJwk(keys.p521.publicKey, { kid: 'p521' }),
    publicJwk(keys.ed25519.publicKey, { kid: 'ed' }),
  );
  const a = authn(rule({ jwks }));
  const cases = [
    ['RS384', 'rsa', keys.rsa.privateKey],
    ['RS512', 'rsa', keys.rsa.privateKey],
    ['PS256', 'pss', keys.rsaPss.privateKey],
    ['PS512', 'rsa', keys.rsa.privateKey],
    ['ES384', 'p384', p384.privateKey],
    ['ES512', 'p521', keys.p521.privateKey],
    ['EdDSA', 'ed', keys.ed25519.privateKey],
  ] as const;
  for (const [alg, kid, key] of cases) t.like(await a.authenticate(bearer(craft({ alg, kid }, claims(), key))), { kind: 'valid' }, alg);
  // A curve that does not match the alg is no key for it.
  t.like(await a.authenticate(bearer(craft({ alg: 'ES256', kid: 'p521' }, claims(), keys.p521.privateKey, 'ES512'))), { kind: 'invalid', reason: JWT_REASONS.noKey });
});

test('jwt claims: several keys and no kid, each candidate is tried', async (t) => {
  const a = authn(rule({ jwks: jwksOf(publicJwk(keys.rsa2.publicKey), publicJwk(keys.rsa.publicKey)) }));
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256' }, claims(), keys.rsa.privateKey))), { kind: 'valid' });
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256' }, claims(), keys.rsa1024.privateKey))), { kind: 'invalid', reason: JWT_REASONS.signature });
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256' }, claims({ exp: 1 }), keys.rsa.privateKey))), { kind: 'invalid', reason: JWT_REASONS.expired });
});

test('jwt claims: the issuer picks the rule, and an issuer no rule names is refused', async (t) => {
  const other = { issuer: 'https://other.example', jwks: jwksOf(publicJwk(keys.p256.publicKey, { kid: 'e' })) };
  const a = authn([rule(), other]);
  t.like(await a.authenticate(bearer(craft({ alg: 'ES256', kid: 'e' }, claims({ iss: 'https://other.example' }), keys.p256.privateKey))), { kind: 'valid', identity: { issuer: 'https://other.example' } });
  t.like(await a.authenticate(bearer(goodToken({ iss: 'https://nobody.example' }))), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer });
  t.like(await a.authenticate(bearer(goodToken({ iss: undefined }))), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer });
  t.like(await a.authenticate(bearer(goodToken({ iss: 7 }))), { kind: 'invalid', reason: JWT_REASONS.issNotString });
  // The issuer's own keys only: a token of `other`'s issuer signed with the first rule's key fails.
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256', kid: 'r1' }, claims({ iss: 'https://other.example' }), keys.rsa.privateKey))), { kind: 'invalid', reason: JWT_REASONS.noKey });
});

test('jwt claims: audiences match any listed one, and none listed accepts any aud', async (t) => {
  const strict = authn(rule({ audiences: ['reviews', 'ratings'] }));
  t.like(await strict.authenticate(bearer(goodToken({ aud: ['x', 'ratings'] }))), { kind: 'valid', identity: { audiences: ['x', 'ratings'] } });
  t.like(await strict.authenticate(bearer(goodToken({ aud: 'other' }))), { kind: 'invalid', reason: JWT_REASONS.audience });
  t.like(await strict.authenticate(bearer(goodToken({ aud: undefined }))), { kind: 'invalid' });
  const open = authn(rule());
  t.like(await open.authenticate(bearer(goodToken({ aud: 'anything' }))), { kind: 'valid' });
  t.like(await open.authenticate(bearer(goodToken({ aud: undefined }))), { kind: 'valid', identity: { audiences: [] } });
});

test('jwt claims: exp and nbf allow 60 s of clock skew by default', async (t) => {
  const a = authn(rule(), at(T0));
  const token = (c: Record<string, unknown>) => bearer(goodToken(c));
  t.like(await a.authenticate(token({ exp: T0 - 30 })), { kind: 'valid' });
  t.like(await a.authenticate(token({ exp: T0 - 90 })), { kind: 'invalid', reason: JWT_REASONS.expired });
  t.like(await a.authenticate(token({ exp: T0 + 600, nbf: T0 + 30 })), { kind: 'valid' });
  t.like(await a.authenticate(token({ exp: T0 + 600, nbf: T0 + 90 })), { kind: 'invalid', reason: JWT_REASONS.notYetValid });
  const tight = authn(rule(), { ...at(T0), clockSkewSeconds: 0 });
  t.like(await tight.authenticate(token({ exp: T0 - 1 })), { kind: 'invalid', reason: JWT_REASONS.expired });
  t.like(await a.authenticate(token({ exp: undefined })), { kind: 'valid' }, 'exp is optional, as in Istio');
});

test('jwt claims: exp, nbf and iat must be numbers', async (t) => {
  const a = authn(rule(), at(T0));
  for (const c of [{ exp: String(T0 + 600) }, { nbf: 'yesterday' }, { iat: 'now' }, { iat: null }]) {
    t.like(await a.authenticate(bearer(goodToken({ exp: T0 + 600, ...c }))), { kind: 'invalid', reason: JWT_REASONS.verification }, JSON.stringify(c));
  }
  t.like(await a.authenticate(bearer(goodToken({ exp: T0 + 600, iat: T0 - 10 }))), { kind: 'valid' });
});

test('jwt claims: the identity carries principal, subject, presenter and claims', async (t) => {
  const r = await authn(rule()).authenticate(bearer(goodToken({ azp: 'web', groups: ['admins'] })));
  if (r.kind !== 'valid') return t.fail(r.kind);
  t.is(r.identity.principal, `${ISS}/alice`);
  t.is(r.identity.subject, 'alice');
  t.is(r.identity.presenter, 'web');
  t.deepEqual(r.identity.claims['groups'], ['admins']);
  t.deepEqual(r.identity.source, { header: 'authorization', forward: false });
  const noSub = await authn(rule()).authenticate(bearer(goodToken({ sub: undefined })));
  t.like(noSub, { kind: 'valid', identity: { principal: `${ISS}/`, subject: undefined } });
});
