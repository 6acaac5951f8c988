import test from 'ava';
import forge from 'node-forge';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { generateKeyPair, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, readdir, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, ROOT_CERT_FILE, ROOT_KEY_FILE, TRUSTED_ROOTS_FILE } from '../../../src/identity/ca.js';
import { createCsr } from '../../../src/identity/csr.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../../src/identity/keys.js';
import { inspectCertificate } from '../../../src/identity/cert-info.js';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const generateKeyPairAsync = promisify(generateKeyPair);

// RSA keygen is the slow part: one CA and one workload key for the whole file.
let ca: CertificateAuthority;
let keys: KeyPairPem;
const dirs: string[] = [];

test.before(async () => {
  [ca, keys] = await Promise.all([CertificateAuthority.open(), generateRsaKeyPair()]);
});

test.after.always(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ambit-ca-test-'));
  dirs.push(d);
  return d;
}

/** A CSR built by hand, for the shapes createCsr refuses to make. */
function handCsr(k: { publicKeyPem: string; privateKeyPem: string }, altNames: Array<{ type: number; value?: string; ip?: string }>, subject: forge.pki.CertificateField[] = []): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(k.publicKeyPem);
  csr.setSubject(subject);
  if (altNames.length > 0) csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }]);
  csr.sign(forge.pki.privateKeyFromPem(k.privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

test('signs a CSR into a 24 h workload certificate carrying only the SPIFFE ID', async (t) => {
  const before = Date.now();
  const { chainPem, trustBundlePem } = await ca.sign(createCsr(keys, ID), ID);
  t.is(chainPem.length, 1);
  t.deepEqual(trustBundlePem, [ca.rootCertificatePem()]);
  const leaf = new X509Certificate(chainPem[0] ?? '');
  const root = new X509Certificate(ca.rootCertificatePem());
  t.true(leaf.checkIssued(root));
  t.true(leaf.verify(root.publicKey));
  t.false(leaf.ca);
  t.is(leaf.subjectAltName, `URI:${ID}`);
  t.is(leaf.subject ?? '', '');
  t.is(leaf.keyUsage?.sort().join(','), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'].join(','));
  const info = inspectCertificate(leaf);
  t.is(info.identity, ID);
  const life = info.notAfter.getTime() - before;
  t.true(Math.abs(life - 24 * 3600 * 1000) < 10_000, `lifetime ${life} ms`);
  t.true(info.notBefore.getTime() < before, 'notBefore is backdated for clock skew');
  t.is(leaf.publicKey.export({ type: 'spki', format: 'pem' }).toString(), keys.publicKeyPem);
  // The SAN is critical (RFC 5280 §4.2.1.6, empty subject), as forge encodes it.
  const fc = forge.pki.certificateFromPem(chainPem[0] ?? '');
  t.true((fc.getExtension('subjectAltName') as { critical?: boolean }).critical);
});

test('serials are unique and positive', async (t) => {
  const csr = createCsr(keys, ID);
  const serials = await Promise.all([1, 2, 3, 4].map(async () => inspectCertificate((await ca.sign(csr, ID, 3600)).chainPem[0] ?? '').serial));
  t.is(new Set(serials).size, 4);
  for (const s of serials) t.true(Number.parseInt(s.slice(0, 1), 16) < 8);
});

test('rejects a malformed or foreign-trust-domain identity', async (t) => {
  const csr = createCsr(keys, ID);
  await t.throwsAsync(ca.sign(csr, 'spiffe://cluster.local/ns/shop', 3600), { code: 'AMBIT_ERR_IDENTITY_INVALID' });
  await t.throwsAsync(ca.sign(csr, 'spiffe://evil.example/ns/shop/sa/cart', 3600), { code: 'AMBIT_ERR_IDENTITY_INVALID', message: /not the expected "cluster.local"/ });
});

test('rejects a CSR that claims another identity, none, extra SANs or a foreign CN', async (t) => {
  await t.throwsAsync(ca.sign(createCsr(keys, 'spiffe://cluster.local/ns/shop/sa/admin'), ID, 3600), {
    code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /claims URI SAN "spiffe:\/\/cluster.local\/ns\/shop\/sa\/admin" but spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart was requested/,
  });
  await t.throwsAsync(ca.sign(handCsr(keys, []), ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /no URI SAN/ });
  await t.throwsAsync(ca.sign(handCsr(keys, [{ type: 6, value: ID }, { type: 6, value: 'spiffe://cluster.local/ns/shop/sa/admin' }]), ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID' });
  await t.throwsAsync(ca.sign(handCsr(keys, [{ type: 6, value: ID }, { type: 2, value: 'cart.shop.svc' }]), ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /non-URI/ });
  await t.throwsAsync(ca.sign(handCsr(keys, [{ type: 6, value: ID }], [{ name: 'commonName', value: 'admin' }]), ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /common name "admin"/ });
});

test('rejects a weak RSA key and a non-RSA key', async (t) => {
  const weak = await generateKeyPairAsync('rsa', { modulusLength: 1024, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } });
  const csr = handCsr({ publicKeyPem: weak.publicKey, privateKeyPem: weak.privateKey }, [{ type: 6, value: ID }]);
  await t.throwsAsync(ca.sign(csr, ID, 3600), { code: 'AMBIT_ERR_IDENTITY_WEAK_KEY', message: /1024-bit RSA key; at least 2048/ });

  const dir = await tempDir();
  const ecKey = join(dir, 'ec.pem');
  await promisify(execFile)('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', ecKey, '-subj', '/', '-addext', `subjectAltName=URI:${ID}`, '-out', join(dir, 'ec.csr')]);
  const { readFile } = await import('node:fs/promises');
  const ecCsr = await readFile(join(dir, 'ec.csr'), 'utf8');
  await t.throwsAsync(ca.sign(ecCsr, ID, 3600), { code: 'AMBIT_ERR_IDENTITY_WEAK_KEY', message: /not RSA/ });
});

test('rejects garbage, oversized and tampered CSRs', async (t) => {
  await t.throwsAsync(ca.sign('hello', ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /not PEM/ });
  await t.throwsAsync(ca.sign('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /cannot be parsed/ });
  await t.throwsAsync(ca.sign(`-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20000)}`, ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /more than/ });
  // Same claims, signature made by another key: no proof of possession.
  const other = await generateRsaKeyPair();
  const forged = forge.pki.certificationRequestFromPem(createCsr(keys, ID));
  forged.signature = forge.pki.certificationRequestFromPem(createCsr(other, ID)).signature;
  await t.throwsAsync(ca.sign(forge.pki.certificationRequestToPem(forged), ID, 3600), { code: 'AMBIT_ERR_IDENTITY_CSR_INVALID', message: /signature does not verify/ });
});

test('rejects lifetimes outside the configured bounds', async (t) => {
  const csr = createCsr(keys, ID);
  await t.throwsAsync(ca.sign(csr, ID, 1), { code: 'AMBIT_ERR_IDENTITY_CA_REQUEST' });
  await t.throwsAsync(ca.sign(csr, ID, 365 * 24 * 3600), { code: 'AMBIT_ERR_IDENTITY_CA_REQUEST' });
  await t.throwsAsync(ca.sign(csr, ID, Number.NaN), { code: 'AMBIT_ERR_IDENTITY_CA_REQUEST' });
});

test('persists the root with mode 0600 in a 0700 directory and loads it again', async (t) => {
  const dir = join(await tempDir(), 'ca');
  const first = await CertificateAuthority.open({ dir });
  t.deepEqual((await readdir(dir)).sort(), [ROOT_CERT_FILE, ROOT_KEY_FILE].sort(), 'no temporary files left behind');
  t.is((await stat(dir)).mode & 0o777, 0o700);
  for (const f of [ROOT_CERT_FILE, ROOT_KEY_FILE]) t.is((await stat(join(dir, f))).mode & 0o777, 0o600, f);
  const again = await CertificateAuthority.open({ dir });
  t.is(again.rootSerial(), first.rootSerial());
  const { chainPem } = await again.sign(createCsr(keys, ID), ID, 3600);
  t.true(new X509Certificate(chainPem[0] ?? '').verify(new X509Certificate(first.rootCertificatePem()).publicKey));
});

test('refuses a CA directory with a missing or mismatched key', async (t) => {
  const dir = join(await tempDir(), 'ca');
  await CertificateAuthority.open({ dir });
  await unlink(join(dir, ROOT_KEY_FILE));
  await t.throwsAsync(CertificateAuthority.open({ dir }), { code: 'AMBIT_ERR_IDENTITY_CA_STORAGE', message: /root-key.pem is missing/ });
  await writeFile(join(dir, ROOT_KEY_FILE), keys.privateKeyPem, { mode: 0o600 });
  await t.throwsAsync(CertificateAuthority.open({ dir }), { code: 'AMBIT_ERR_IDENTITY_CA_STORAGE', message: /does not belong to/ });
  await writeFile(join(dir, ROOT_KEY_FILE), 'garbage', { mode: 0o600 });
  await t.throwsAsync(CertificateAuthority.open({ dir }), { code: 'AMBIT_ERR_IDENTITY_CA_STORAGE', message: /not a readable private key/ });
});

test('rotation: a new root signs, the trust bundle holds both until the old one is retired', async (t) => {
  const dir = join(await tempDir(), 'ca');
  const rot = await CertificateAuthority.open({ dir });
  const oldRoot = new X509Certificate(rot.rootCertificatePem());
  const oldLeaf = new X509Certificate((await rot.sign(createCsr(keys, ID), ID, 3600)).chainPem[0] ?? '');
  const newSerial = await rot.rotate();
  t.not(newSerial, oldRoot.serialNumber);
  const { chainPem, trustBundlePem } = await rot.sign(createCsr(keys, ID), ID, 3600);
  t.is(trustBundlePem.length, 2);
  const bundle = trustBundlePem.map((p) => new X509Certificate(p));
  t.is(bundle[0]?.serialNumber, newSerial);
  t.is(bundle[1]?.serialNumber, oldRoot.serialNumber);
  const newLeaf = new X509Certificate(chainPem[0] ?? '');
  t.true(newLeaf.verify(bundle[0]!.publicKey), 'new leaf signed by the new root');
  t.false(newLeaf.verify(oldRoot.publicKey));
  t.true(oldLeaf.verify(bundle[1]!.publicKey), 'old leaf still verifies against the bundle');
  t.is((await stat(join(dir, TRUSTED_ROOTS_FILE))).mode & 0o777, 0o600);

  const reloaded = await CertificateAuthority.open({ dir });
  t.deepEqual(reloaded.trustBundlePem(), rot.trustBundlePem());

  await t.throwsAsync(rot.retire(newSerial), { code: 'AMBIT_ERR_IDENTITY_CA_REQUEST', message: /active root/ });
  await rot.retire(oldRoot.serialNumber.toLowerCase());
  t.deepEqual(rot.trustBundlePem(), [rot.rootCertificatePem()]);
  await t.throwsAsync(rot.retire(oldRoot.serialNumber), { code: 'AMBIT_ERR_IDENTITY_CA_REQUEST', message: /not in the trust bundle/ });
  t.deepEqual((await CertificateAuthority.open({ dir })).trustBundlePem(), [rot.rootCertificatePem()]);
});

test('an injected clock mints certificates that are already expired (for refusal tests)', async (t) => {
  const past = await CertificateAuthority.open({ now: () => Date.now() - 3 * 24 * 3600 * 1000 });
  const info = inspectCertificate((await past.sign(createCsr(keys, ID), ID, 3600)).chainPem[0] ?? '');
  t.true(info.notAfter.getTime() < Date.now());
});
