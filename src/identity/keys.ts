/**
 * Key pairs for roots and workloads. Keys are generated with Node's native crypto on the libuv
 * thread pool (never blocking the event loop) and handed to node-forge as PEM only where forge must
 * sign. Only RSA is accepted (node-forge signs only RSA;
 * docs/architecture.md#identity-and-certificates) and never below MIN_RSA_BITS.
 */
import { generateKeyPair, createPublicKey, createPrivateKey, privateEncrypt, constants, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { WeakKeyError } from './errors.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Smallest RSA modulus accepted anywhere (CSRs, roots, loaded keys). */
export const MIN_RSA_BITS = 2048;

export interface KeyPairPem {
  /** PKCS#1 PEM (`RSA PRIVATE KEY`). Never log it. */
  privateKeyPem: string;
  /** SPKI PEM (`PUBLIC KEY`). */
  publicKeyPem: string;
}

/** Generates an RSA key pair asynchronously; `bits` defaults to 2048 and may not be lower. */
export async function generateRsaKeyPair(bits = MIN_RSA_BITS): Promise<KeyPairPem> {
  if (!Number.isInteger(bits) || bits < MIN_RSA_BITS) {
    throw new WeakKeyError(`refusing to generate a ${bits}-bit RSA key: at least ${MIN_RSA_BITS} bits are required`);
  }
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: bits,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/**
 * Throws WeakKeyError unless `key` (a PEM public/private key, or a KeyObject) is RSA with at
 * least MIN_RSA_BITS bits. `what` names the key in the message ("CSR key", "root key").
 */
export function assertStrongKey(key: string | KeyObject, what: string): void {
  let publicKey: KeyObject;
  try {
    publicKey = typeof key === 'string' ? createPublicKey(key) : key.type === 'public' ? key : createPublicKey(key);
  } catch (err) {
    throw new WeakKeyError(`${what} cannot be read as a public key: ${(err as Error).message}`);
  }
  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new WeakKeyError(`${what} is ${publicKey.asymmetricKeyType ?? 'of an unknown type'}; only RSA keys are supported`);
  }
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new WeakKeyError(`${what} is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
  }
}

/** DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1). */
const SHA256_DIGEST_INFO_PREFIX = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * A signing key node-forge can use in `cert.sign(key, sha256)` / `csr.sign(...)` whose RSA
 * private operation runs in OpenSSL rather than in forge's JavaScript bignums (about 20x
 * faster). forge only calls `key.sign(md)` with the finished digest, which is RSASSA-PKCS1-v1_5:
 * encrypt DigestInfo(SHA-256, digest) with the private key under PKCS#1 type 1 padding.
 */
export function forgeSigningKey(privateKeyPem: string): forge.pki.rsa.PrivateKey {
  const key = createPrivateKey(privateKeyPem);
  const signer = {
    sign(md: forge.md.MessageDigest): string {
      if (md.algorithm !== 'sha256') throw new Error(`unsupported digest ${md.algorithm}; only sha256 is used`);
      const digestInfo = Buffer.concat([SHA256_DIGEST_INFO_PREFIX, Buffer.from(md.digest().getBytes(), 'binary')]);
      return privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, digestInfo).toString('binary');
    },
  };
  return signer as unknown as forge.pki.rsa.PrivateKey;
}
