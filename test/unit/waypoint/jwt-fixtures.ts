/**
 * Test helper for the JWT tests: keys, public JWKs, and tokens built by hand (base64url JSON with
 * whatever header the test wants, signed with node:crypto), so a test can craft the malicious
 * token a reviewer would send rather than what a well-behaved library would produce.
 */
import { constants, createHmac, createPublicKey, generateKeyPairSync, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { JwtAuthenticator, type JwtAuthenticatorOptions, type JwtRequest, type JwtRuleSpec } from '../../../src/waypoint/jwt.js';

export const ISS = 'https://issuer.example';
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
export const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ iss: ISS, sub: 'alice', aud: 'reviews', exp: nowSeconds() + 600, ...extra });

export const keys = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  rsa2: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  rsa1024: generateKeyPairSync('rsa', { modulusLength: 1024 }),
  rsaPss: generateKeyPairSync('rsa-pss', { modulusLength: 2048 }),
  p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  p521: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  ed25519: generateKeyPairSync('ed25519'),
};

export const b64 = (v: unknown): string => (Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))).toString('base64url');

/** Public JWK of a key; rsa-pss keys (which node cannot export as JWK) go through their SPKI. */
export function publicJwk(key: KeyObject, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'rsa-pss') return { ...pub.export({ format: 'jwk' }), ...extra };
  // SubjectPublicKeyInfo = SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } }
  const der = pub.export({ type: 'spki', format: 'der' });
  let i = 0;
  const len = (): number => {
    const first = der[i++] as number;
    if (first < 0x80) return first;
    let n = 0;
    for (let k = first & 0x7f; k > 0; k--) n = n * 256 + (der[i++] as number);
    return n;
  };
  i += 1; // outer SEQUENCE tag; step into its contents
  len();
  i += 1; // AlgorithmIdentifier tag
  const algLen = len();
  i += algLen + 1; // past its contents and the BIT STRING tag
  const bits = len();
  const pkcs1 = der.subarray(i + 1, i + bits); // after the unused-bits byte
  return { ...(createPublicKey({ key: pkcs1, format: 'der', type: 'pkcs1' }).export({ format: 'jwk' }) as JsonWebKey), ...extra };
}

/** The JWS signature of `input` for `alg` (`none`: empty; HS*: `key` is the secret). */
export function signature(alg: string, key: KeyObject | Buffer | undefined, input: string): Buffer {
  const bits = alg.slice(2);
  const data = Buffer.from(input, 'latin1');
  if (alg === 'none' || key === undefined) return Buffer.alloc(0);
  if (alg.startsWith('HS')) return createHmac(`sha${bits}`, key as Buffer).update(data).digest();
  const k = key as KeyObject;
  if (alg === 'EdDSA') return sign(null, data, k);
  if (alg.startsWith('RS')) return sign(`sha${bits}`, data, k);
  if (alg.startsWith('PS')) return sign(`sha${bits}`, data, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 });
  return sign(`sha${bits}`, data, { key: k, dsaEncoding: 'ieee-p1363' });
}

/** A compact JWS from a header object (or raw bytes) and claims, signed for `header.alg`. */
export function craft(header: Record<string, unknown> | Buffer, payload: Record<string, unknown> | Buffer, key: KeyObject | Buffer | undefined, alg?: string): string {
  const h = b64(header);
  const p = b64(payload);
  const a = alg ?? (Buffer.isBuffer(header) ? 'RS256' : String(header['alg']));
  return `${h}.${p}.${signature(a, key, `${h}.${p}`).toString('base64url')}`;
}

/** The RSA key `keys.rsa` as kid r1: an ordinary valid token. */
export const goodToken = (extra: Record<string, unknown> = {}): string => craft({ alg: 'RS256', kid: 'r1', typ: 'JWT' }, claims(extra), keys.rsa.privateKey);

export const jwksOf = (...ks: Record<string, unknown>[]): string => JSON.stringify({ keys: ks });
export const defaultJwks = jwksOf(publicJwk(keys.rsa.publicKey, { kid: 'r1', alg: 'RS256', use: 'sig' }));

export function rule(extra: Partial<JwtRuleSpec> = {}): JwtRuleSpec {
  return { issuer: ISS, jwks: defaultJwks, ...extra };
}

export function authn(rules: JwtRuleSpec | JwtRuleSpec[], opts: JwtAuthenticatorOptions = {}, caches?: Map<string, unknown>): JwtAuthenticator {
  return new JwtAuthenticator(Array.isArray(rules) ? rules : [rules], opts, caches);
}

/** A request with these headers (lower-case names), query parameters and cookie() answers. */
export function request(headers: Record<string, string> = {}, params: Record<string, string> = {}, cookies?: Record<string, string>): JwtRequest {
  return {
    header: (n) => headers[n],
    param: (n) => params[n],
    ...(cookies !== undefined ? { cookie: (n: string) => cookies[n] } : {}),
  };
}

export const bearer = (token: string): JwtRequest => request({ authorization: `Bearer ${token}` });
