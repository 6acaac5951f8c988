/**
 * Token locations with Envoy's semantics: a token is verified only against the rules that named
 * where it was found, one header with two prefixes is two locations, cookies are read, the default
 * locations apply to rules naming none, and when a request carries several tokens all must be
 * valid and the first (in Envoy's order) gives the identity.
 */
import test from 'ava';
import { JWT_REASONS } from '../../../src/waypoint/jwt.js';
import { parseCookies } from '../../../src/waypoint/jwt-location.js';
import { authn, bearer, claims, craft, goodToken, jwksOf, keys, publicJwk, request, rule } from './jwt-fixtures.js';

const ISS_B = 'https://b.example';
const ruleB = (extra: Record<string, unknown> = {}) => ({ issuer: ISS_B, jwks: jwksOf(publicJwk(keys.p256.publicKey, { kid: 'e' })), ...extra });
const tokenB = (extra: Record<string, unknown> = {}) => craft({ alg: 'ES256', kid: 'e' }, claims({ iss: ISS_B, sub: 'bob', ...extra }), keys.p256.privateKey);

test("jwt location: a token found in rule A's header is not verified against rule B", async (t) => {
  const a = authn([rule({ fromHeaders: [{ name: 'X-A' }] }), ruleB({ fromHeaders: [{ name: 'x-b' }] })]);
  t.like(await a.authenticate(request({ 'x-a': tokenB() })), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer });
  t.like(await a.authenticate(request({ 'x-b': goodToken() })), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer });
  t.like(await a.authenticate(request({ 'x-b': tokenB() })), { kind: 'valid', identity: { issuer: ISS_B, source: { header: 'x-b' } } });
  t.like(await a.authenticate(request({ 'x-a': goodToken() })), { kind: 'valid', identity: { source: { header: 'x-a' } } });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'none' }, 'neither rule reads Authorization');
});

test('jwt location: two rules sharing a header name with different prefixes are both considered', async (t) => {
  const a = authn([rule({ fromHeaders: [{ name: 'x-token', prefix: 'A ' }] }), ruleB({ fromHeaders: [{ name: 'x-token', prefix: 'B ' }] })]);
  t.like(await a.authenticate(request({ 'x-token': `A ${goodToken()}` })), { kind: 'valid', identity: { issuer: 'https://issuer.example' } });
  t.like(await a.authenticate(request({ 'x-token': `B ${tokenB()}` })), { kind: 'valid', identity: { issuer: ISS_B } });
  t.like(await a.authenticate(request({ 'x-token': `A ${tokenB()}` })), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer });
  t.like(await a.authenticate(request({ 'x-token': `C ${tokenB()}` })), { kind: 'none' });
});

test('jwt location: a rule naming no location reads Authorization Bearer and access_token, others do not', async (t) => {
  const a = authn([rule(), ruleB({ fromParams: ['token'] })]);
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  t.like(await a.authenticate(request({}, { access_token: goodToken() })), { kind: 'valid', identity: { source: { param: 'access_token' } } });
  t.like(await a.authenticate(request({}, { token: tokenB() })), { kind: 'valid', identity: { issuer: ISS_B } });
  t.like(await a.authenticate(bearer(tokenB())), { kind: 'invalid', reason: JWT_REASONS.unknownIssuer }, 'B named only its parameter');
});

test('jwt location: prefixes match case-sensitively anywhere in the value, as in Envoy', async (t) => {
  const a = authn(rule());
  t.like(await a.authenticate(request({ authorization: `bearer ${goodToken()}` })), { kind: 'none' });
  t.like(await a.authenticate(request({ authorization: 'Basic YWxpY2U6c2VjcmV0' })), { kind: 'none' });
  t.like(await a.authenticate(request({ authorization: `Bearer    ${goodToken()}` })), { kind: 'valid' }, 'spaces after the prefix are skipped');
  t.like(await a.authenticate(request({ authorization: `Bearer ${goodToken()} trailing` })), { kind: 'invalid' });
  t.like(await a.authenticate(request({ authorization: 'Bearer ' })), { kind: 'invalid', reason: JWT_REASONS.badFormat });
  const noPrefix = authn(rule({ fromHeaders: [{ name: 'x-jwt' }] }));
  t.like(await noPrefix.authenticate(request({ 'x-jwt': goodToken() })), { kind: 'valid' });
});

test('jwt location: fromCookies reads the request cookie, or parses the cookie header', async (t) => {
  const a = authn(rule({ fromCookies: ['session'] }));
  t.like(await a.authenticate(request({ cookie: `theme=dark; session=${goodToken()}; x=1` })), { kind: 'valid', identity: { source: { cookie: 'session' } } });
  t.like(await a.authenticate(request({ cookie: `session="${goodToken()}"` })), { kind: 'valid' });
  t.like(await a.authenticate(request({ cookie: 'other=1' }, {}, { session: goodToken() })), { kind: 'valid' }, 'cookie() wins over the header');
  t.like(await a.authenticate(request({ cookie: 'session=garbage' })), { kind: 'invalid' });
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'none' });
  t.deepEqual([...parseCookies('a=1; b="two";c=3;a=4; bad; =x')], [['a', '1'], ['b', 'two'], ['c', '3']]);
});

test('jwt location: with several tokens every one must be valid, and the first gives the identity', async (t) => {
  const a = authn([rule(), ruleB({ fromHeaders: [{ name: 'x-b' }], forwardOriginalToken: true })]);
  const both = await a.authenticate(request({ authorization: `Bearer ${goodToken()}`, 'x-b': tokenB() }, { access_token: goodToken({ sub: 'carol' }) }));
  if (both.kind !== 'valid') return t.fail(JSON.stringify(both));
  t.is(both.identity.principal, 'https://issuer.example/alice', 'headers come first, authorization before x-b');
  t.deepEqual(both.identity.removeHeaders, ['authorization'], 'x-b is forwarded');
  t.deepEqual(both.identity.removeParams, ['access_token']);
  t.like(await a.authenticate(request({ authorization: `Bearer ${goodToken()}`, 'x-b': tokenB({ exp: 1 }) })), { kind: 'invalid', reason: JWT_REASONS.expired });
  t.like(await a.authenticate(request({ 'x-b': tokenB() }, { access_token: 'junk' })), { kind: 'invalid' });
});
