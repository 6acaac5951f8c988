/**
 * Regression tests for the leniencies a black-box review found in the old hand-written verifier.
 * Each builds the malicious token by hand and, as a differential control, the same token without
 * the malicious part, which must verify: a refusal is then due to exactly what the test crafted.
 */
import test from 'ava';
import fc from 'fast-check';
import { JWT_REASONS, type JwtResult } from '../../../src/waypoint/jwt.js';
import { ISS, authn, b64, bearer, claims, craft, goodToken, jwksOf, keys, publicJwk, rule, signature } from './jwt-fixtures.js';

const FIXED_REASONS = new Set<string>(Object.values(JWT_REASONS));
const invalid = (reason: string) => ({ kind: 'invalid', reason });
const rsaHeader = { alg: 'RS256', kid: 'r1' };

test('jwt leniency: control token verifies', async (t) => {
  t.like(await authn(rule()).authenticate(bearer(goodToken())), { kind: 'valid', identity: { principal: `${ISS}/alice` } });
});

test('jwt leniency: RSA key under 2048 bits is refused', async (t) => {
  const weak = authn(rule({ jwks: jwksOf(publicJwk(keys.rsa1024.publicKey, { kid: 'w' })) }));
  t.like(await weak.authenticate(bearer(craft({ alg: 'RS256', kid: 'w' }, claims(), keys.rsa1024.privateKey))), invalid(JWT_REASONS.verification));
  t.like(await weak.authenticate(bearer(craft({ alg: 'PS256', kid: 'w' }, claims(), keys.rsa1024.privateKey))), invalid(JWT_REASONS.verification));
  // Without a kid the key is found by iteration; still refused.
  t.like(await weak.authenticate(bearer(craft({ alg: 'RS256' }, claims(), keys.rsa1024.privateKey))), { kind: 'invalid' });
});

test('jwt leniency: alg none and HS256 (even keyed with the RSA public key) are refused', async (t) => {
  const a = authn(rule());
  t.like(await a.authenticate(bearer(craft({ alg: 'none', kid: 'r1' }, claims(), undefined))), invalid(JWT_REASONS.algNotSupported));
  const pem = Buffer.from(keys.rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  t.like(await a.authenticate(bearer(craft({ alg: 'HS256', kid: 'r1' }, claims(), pem))), invalid(JWT_REASONS.algNotSupported));
  // An oct key in the JWKS is dropped, so HS256 has nothing to verify with either.
  const oct = authn(rule({ jwks: jwksOf({ kty: 'oct', k: b64('secret'), kid: 'h' }, publicJwk(keys.rsa.publicKey, { kid: 'r1' })) }));
  t.like(await oct.authenticate(bearer(craft({ alg: 'HS256', kid: 'h' }, claims(), Buffer.from('secret')))), invalid(JWT_REASONS.algNotSupported));
});

test('jwt leniency: JWKS key whose key_ops lack verify, or whose use is not sig, is not used', async (t) => {
  const jwks = jwksOf(
    publicJwk(keys.rsa2.publicKey, { kid: 'ops', key_ops: ['encrypt'] }),
    publicJwk(keys.p256.publicKey, { kid: 'enc', use: 'enc' }),
    publicJwk(keys.rsa.publicKey, { kid: 'r1', key_ops: ['verify'], use: 'sig' }),
  );
  const a = authn(rule({ jwks }));
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256', kid: 'ops' }, claims(), keys.rsa2.privateKey))), invalid(JWT_REASONS.noKey));
  t.like(await a.authenticate(bearer(craft({ alg: 'ES256', kid: 'enc' }, claims(), keys.p256.privateKey))), invalid(JWT_REASONS.noKey));
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
});

test('jwt leniency: JWKS entries carrying private key material are never used', async (t) => {
  const priv = keys.rsa2.privateKey.export({ format: 'jwk' });
  const a = authn(rule({ jwks: jwksOf({ ...priv, kid: 'leaked' }, publicJwk(keys.rsa.publicKey, { kid: 'r1' })) }));
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256', kid: 'leaked' }, claims(), keys.rsa2.privateKey))), invalid(JWT_REASONS.noKey));
  t.like(await a.authenticate(bearer(craft({ alg: 'RS256' }, claims(), keys.rsa2.privateKey))), invalid(JWT_REASONS.signature), 'without kid only r1 is tried');
  t.like(await a.authenticate(bearer(goodToken())), { kind: 'valid' });
  // A JWKS of private keys only is unusable, and the problem never quotes the key.
  const onlyPrivate = authn(rule({ jwks: jwksOf({ ...keys.p256.privateKey.export({ format: 'jwk' }), kid: 'e' }) }));
  t.is(onlyPrivate.problems.length, 1);
  t.false(onlyPrivate.problems.join().includes(String(priv.d)));
  t.like(await onlyPrivate.authenticate(bearer(craft({ alg: 'ES256', kid: 'e' }, claims(), keys.p256.privateKey))), invalid(JWT_REASONS.noValidKeys));
});

test('jwt leniency: unknown or malformed crit header is refused', async (t) => {
  const a = authn(rule());
  for (const extra of [{ crit: ['x-ext'], 'x-ext': 1 }, { crit: 'x-ext', 'x-ext': 1 }, { crit: [] }, { crit: [7] }, { crit: ['exp'], exp: 1 }]) {
    t.like(await a.authenticate(bearer(craft({ ...rsaHeader, ...extra }, claims(), keys.rsa.privateKey))), invalid(JWT_REASONS.verification), JSON.stringify(extra));
  }
});

test('jwt leniency: b64 false (unencoded payload) is refused', async (t) => {
  const a = authn(rule());
  t.like(await a.authenticate(bearer(craft({ ...rsaHeader, crit: ['b64'], b64: false }, claims(), keys.rsa.privateKey))), invalid(JWT_REASONS.verification));
  t.like(await a.authenticate(bearer(craft({ ...rsaHeader, crit: ['b64'], b64: true }, claims(), keys.rsa.privateKey))), { kind: 'valid' }, 'control: b64 true');
});

test('jwt leniency: non-string kid is refused', async (t) => {
  const a = authn(rule());
  for (const kid of [1, ['r1'], { id: 'r1' }, null]) {
    t.like(await a.authenticate(bearer(craft({ alg: 'RS256', kid }, claims(), keys.rsa.privateKey))), invalid(JWT_REASONS.badKid), JSON.stringify(kid));
  }
});

test('jwt leniency: junk characters in base64url segments are refused', async (t) => {
  const a = authn(rule());
  const [h, p, s] = goodToken().split('.') as [string, string, string];
  const lastBitFlipped = (seg: string) => {
    // 256 signature bytes leave 4 unused bits in the last character; forgiving decoders ignore them.
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    return seg.slice(0, -1) + abc[abc.indexOf(seg.at(-1) as string) ^ 1];
  };
  t.is(Buffer.from(lastBitFlipped(s), 'base64url').compare(Buffer.from(s, 'base64url')), 0, 'same signature bytes');
  const variants: [string, string][] = [
    [`${h}.${p}.${s}==`, JWT_REASONS.signatureBase64],
    [`${h}.${p}.${s.slice(0, 10)} ${s.slice(10)}`, JWT_REASONS.signatureBase64],
    [`${h}.${p}.${s.slice(0, 10)}\t${s.slice(10)}`, JWT_REASONS.signatureBase64],
    [`${h}.${p}.${lastBitFlipped(s)}`, JWT_REASONS.signatureBase64],
    [`${h}.${p}.${s.replaceAll('-', '+').replaceAll('_', '/')}`, JWT_REASONS.signatureBase64],
    [`${h}=.${p}.${s}`, JWT_REASONS.headerBase64],
    [`${h}.${p.slice(0, 5)}*${p.slice(5)}.${s}`, JWT_REASONS.payloadBase64],
  ];
  for (const [token, reason] of variants) t.like(await a.authenticate(bearer(token)), invalid(reason), JSON.stringify(token.slice(-12)));
});

test('jwt leniency: invalid UTF-8 in header or payload is refused', async (t) => {
  const a = authn(rule());
  const bad = (json: string) => Buffer.concat([Buffer.from(json.slice(0, -2)), Buffer.from([0xff, 0xc0, 0xaf]), Buffer.from(json.slice(-2))]);
  t.like(await a.authenticate(bearer(craft(bad(JSON.stringify({ ...rsaHeader, x: 'ab' })), claims(), keys.rsa.privateKey, 'RS256'))), invalid(JWT_REASONS.headerJson));
  t.like(await a.authenticate(bearer(craft(rsaHeader, bad(JSON.stringify(claims({ name: 'ab' }))), keys.rsa.privateKey))), invalid(JWT_REASONS.payloadJson));
  t.like(await a.authenticate(bearer(craft(rsaHeader, Buffer.from(JSON.stringify(claims({ name: 'ab' }))), keys.rsa.privateKey))), { kind: 'valid' }, 'control');
});

test('jwt leniency: deeply nested or non-string alg answers 401 and never throws', async (t) => {
  const a = authn(rule());
  const nested = '['.repeat(5000) + ']'.repeat(5000);
  const headers = [`{"alg":${nested},"kid":"r1"}`, '{"alg":256}', '{"alg":null}', '{"alg":{"alg":"RS256"}}', '{"alg":["RS256"]}', '{"kid":"r1"}'];
  for (const h of headers) {
    t.like(await a.authenticate(bearer(craft(Buffer.from(h), claims(), keys.rsa.privateKey, 'RS256'))), invalid(JWT_REASONS.badAlg), h.slice(0, 30));
  }
  const deepHeader = `${b64(nested)}.${b64(claims())}.${b64('sig')}`;
  t.like(await a.authenticate(bearer(deepHeader)), invalid(JWT_REASONS.headerJson));
  const deepClaims = `${b64(rsaHeader)}.${b64(`{"iss":${nested}}`)}.${b64('sig')}`;
  t.like(await a.authenticate(bearer(deepClaims)), invalid(JWT_REASONS.issNotString));
});

test('jwt leniency: token over 16 KiB is refused before it is parsed', async (t) => {
  const a = authn(rule());
  t.like(await a.authenticate(bearer(goodToken({ pad: 'x'.repeat(16 * 1024) }))), invalid(JWT_REASONS.tooLarge));
  t.like(await a.authenticate(bearer(goodToken({ pad: 'x'.repeat(8 * 1024) }))), { kind: 'valid' }, 'control: 8 KiB of claims');
});

test('jwt leniency: ES256 signature in DER form is refused', async (t) => {
  const a = authn(rule({ jwks: jwksOf(publicJwk(keys.p256.publicKey, { kid: 'e' })) }));
  const h = b64({ alg: 'ES256', kid: 'e' });
  const p = b64(claims());
  const { sign } = await import('node:crypto');
  const der = sign('sha256', Buffer.from(`${h}.${p}`), keys.p256.privateKey);
  t.like(await a.authenticate(bearer(`${h}.${p}.${der.toString('base64url')}`)), invalid(JWT_REASONS.signature));
  t.like(await a.authenticate(bearer(`${h}.${p}.${signature('ES256', keys.p256.privateKey, `${h}.${p}`).toString('base64url')}`)), { kind: 'valid' }, 'control: P1363');
});

test('jwt leniency: invalid reasons never echo attacker-controlled text', async (t) => {
  const a = authn(rule());
  const tokens = [
    craft({ ...rsaHeader }, claims({ iss: 'EVIL-issuer' }), keys.rsa.privateKey),
    craft({ alg: 'RS256', kid: 'EVIL-kid' }, claims(), keys.rsa.privateKey),
    craft({ ...rsaHeader, crit: ['EVIL-crit'], 'EVIL-crit': 1 }, claims(), keys.rsa.privateKey),
    craft({ alg: 'EVIL-alg' }, claims(), keys.rsa.privateKey, 'RS256'),
    craft(rsaHeader, claims({ aud: 'EVIL-aud' }), keys.rsa.privateKey),
    craft(rsaHeader, claims(), keys.rsa2.privateKey),
    'EVIL.EVIL.EVIL',
    'EVIL',
  ];
  const a2 = authn(rule({ audiences: ['reviews'] }));
  for (const token of tokens) {
    for (const r of [await a.authenticate(bearer(token)), await a2.authenticate(bearer(token))]) {
      if (r.kind !== 'invalid') continue;
      t.true(FIXED_REASONS.has(r.reason), r.reason);
      t.false(r.reason.includes('EVIL'));
    }
  }
});

test('jwt leniency: garbage input never throws and always answers a fixed reason', async (t) => {
  const a = authn(rule());
  const segment = fc.oneof(fc.base64String().map((s) => s.replaceAll('=', '').replaceAll('+', '-').replaceAll('/', '_')), fc.json().map(b64), fc.string());
  const token = fc.oneof(fc.string({ maxLength: 200 }), fc.tuple(segment, segment, segment).map((p) => p.join('.')));
  await t.notThrowsAsync(fc.assert(
    fc.asyncProperty(token, async (tok) => {
      const r: JwtResult = await a.authenticate(bearer(tok));
      return r.kind === 'invalid' && FIXED_REASONS.has(r.reason);
    }),
    { numRuns: 300 },
  ));
});
