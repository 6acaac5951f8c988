import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager, type WorkloadCertificate } from '../../../src/identity/manager.js';
import type { Signer, SignedCertificate } from '../../../src/identity/signer.js';
import { AmbitError } from '../../../src/util/errors.js';
import { FakeClock } from './fake-clock.js';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';

/** The in-process CA on the fake clock, with a switch to make it fail and a call counter. */
class FlakySigner implements Signer {
  calls = 0;
  failing = false;
  constructor(readonly ca: CertificateAuthority) {}
  async sign(csrPem: string, identity: string, lifetimeSeconds: number): Promise<SignedCertificate> {
    this.calls++;
    if (this.failing) throw new AmbitError('AMBIT_ERR_SIGN_FAILED', 'control plane unreachable');
    return this.ca.sign(csrPem, identity, lifetimeSeconds);
  }
}

async function setup(opts: { lifetimeSeconds?: number } = {}) {
  const clock = new FakeClock(Date.now());
  const ca = await CertificateAuthority.open({ now: () => clock.now() });
  const signer = new FlakySigner(ca);
  const registry = new Registry();
  const mgr = new IdentityManager({ signer, clock, lifetimeSeconds: opts.lifetimeSeconds ?? 2 * 3600, backoffInitialMs: 1000, backoffMaxMs: 8000, backoffJitter: 0, registry });
  return { clock, ca, signer, mgr, registry };
}

function nextRotation(mgr: IdentityManager): Promise<[WorkloadCertificate, WorkloadCertificate | undefined]> {
  return once(mgr, 'rotated') as Promise<[WorkloadCertificate, WorkloadCertificate | undefined]>;
}

test('issues once, caches, and shares one issuance between concurrent callers', async (t) => {
  const { mgr, signer, ca, registry } = await setup();
  t.teardown(() => mgr.close());
  const [a, b, c] = await Promise.all([mgr.credentials(ID), mgr.credentials(ID), mgr.credentials(ID)]);
  t.is(signer.calls, 1);
  t.is(a, b);
  t.is(b, c);
  t.is(await mgr.credentials(ID), a);
  t.is(signer.calls, 1);
  t.is(a.identity, ID);
  t.deepEqual([...a.trustBundlePem], ca.trustBundlePem());
  const leaf = new X509Certificate(a.chainPem[0] ?? '');
  t.true(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(a.keyPem)), 'key matches certificate');
  t.is(leaf.serialNumber.toUpperCase(), a.serial);
  t.is(mgr.current(ID), a);
  t.deepEqual(mgr.identities(), [ID]);
  t.regex(await registry.metrics(), /ambit_identity_certificates 1/);
});

test('renews at half-life with a fresh key and emits rotated', async (t) => {
  const { mgr, clock, signer } = await setup();
  t.teardown(() => mgr.close());
  const first = await mgr.credentials(ID);
  const remaining = first.notAfter.getTime() - clock.now();
  t.true(Math.abs(first.renewAt.getTime() - clock.now() - remaining / 2) <= 1);
  t.deepEqual(clock.pending(), [first.renewAt.getTime() - clock.now()]);

  clock.advance(first.renewAt.getTime() - clock.now() - 1000);
  t.is(signer.calls, 1, 'not renewed before half-life');
  const rotated = nextRotation(mgr);
  clock.advance(1000);
  const [second, previous] = await rotated;
  t.is(previous, first);
  t.not(second.serial, first.serial);
  t.not(second.keyPem, first.keyPem);
  t.is(await mgr.credentials(ID), second);
  t.is(signer.calls, 2);
});

test('failed renewal backs off exponentially and keeps serving the still-valid certificate', async (t) => {
  const { mgr, clock, signer, registry } = await setup();
  t.teardown(() => mgr.close());
  const first = await mgr.credentials(ID);
  signer.failing = true;
  const delays: number[] = [];
  const failed = async () => {
    const [e] = (await once(mgr, 'renewal-failed')) as [{ retryInMs: number; stillValid: boolean }];
    t.true(e.stillValid);
    delays.push(e.retryInMs);
  };
  let next = failed();
  clock.advance(first.renewAt.getTime() - clock.now());
  await next;
  for (let i = 0; i < 4; i++) {
    next = failed();
    clock.advance(clock.pending()[0] ?? 0);
    await next;
  }
  t.deepEqual(delays, [1000, 2000, 4000, 8000, 8000], 'doubling, capped at backoffMaxMs');
  t.is(await mgr.credentials(ID), first, 'still serving the valid certificate');
  t.regex(await registry.metrics(), /ambit_identity_issuances_total\{result="failure"\} 5/);

  signer.failing = false;
  const rotated = nextRotation(mgr);
  clock.advance(clock.pending()[0] ?? 0);
  const [second] = await rotated;
  t.not(second.serial, first.serial);
  t.deepEqual(clock.pending(), [second.renewAt.getTime() - clock.now()], 'back on the half-life schedule');
});

test('no valid certificate and a failing signer: credentials() fails with a named cause', async (t) => {
  const { mgr, clock, signer } = await setup();
  t.teardown(() => mgr.close());
  signer.failing = true;
  const err = await t.throwsAsync(mgr.credentials(ID), { code: 'AMBIT_ERR_IDENTITY_UNAVAILABLE' });
  t.regex(err?.message ?? '', /cannot obtain a certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart: control plane unreachable/);

  // Expired while the signer stays down: no longer served.
  signer.failing = false;
  const cert = await mgr.credentials(ID);
  signer.failing = true;
  mgr.on('renewal-failed', () => {});
  clock.advance(cert.notAfter.getTime() - clock.now() + 1000);
  await t.throwsAsync(mgr.credentials(ID), { code: 'AMBIT_ERR_IDENTITY_UNAVAILABLE' });
});

test('forget cancels renewal and drops the certificate; nothing in flight resurrects it', async (t) => {
  const { mgr, clock, signer } = await setup();
  t.teardown(() => mgr.close());
  await mgr.credentials(ID);
  mgr.forget(ID);
  t.deepEqual(clock.pending(), []);
  t.is(mgr.current(ID), undefined);
  const inflight = mgr.credentials(ID);
  mgr.forget(ID);
  await inflight;
  t.is(mgr.current(ID), undefined);
  t.deepEqual(clock.pending(), []);
  t.is(signer.calls, 2);
});

test('rejects malformed identities before touching the signer', async (t) => {
  const { mgr, signer } = await setup();
  t.teardown(() => mgr.close());
  await t.throwsAsync(mgr.credentials('spiffe://cluster.local/ns/Shop/sa/cart'), { code: 'AMBIT_ERR_IDENTITY_INVALID' });
  t.is(signer.calls, 0);
});

test('refuses what a misbehaving signer returns', async (t) => {
  const { ca } = await setup();
  const other = await CertificateAuthority.open();
  const cases: Array<[string, Signer, RegExp]> = [
    ['another identity', { sign: async () => signOther(ca) }, /for spiffe:\/\/cluster.local\/ns\/shop\/sa\/admin, not the requested/],
    ['another key', { sign: async () => { const { createCsr } = await import('../../../src/identity/csr.js'); const { generateRsaKeyPair } = await import('../../../src/identity/keys.js'); return ca.sign(createCsr(await generateRsaKeyPair(), ID), ID, 3600); } }, /does not carry the key of our CSR/],
    ['a foreign trust bundle', { sign: async (csr, id, life) => ({ chainPem: (await ca.sign(csr, id, life)).chainPem, trustBundlePem: other.trustBundlePem() }) }, /does not chain to its own trust bundle/],
    ['an empty chain', { sign: async () => ({ chainPem: [], trustBundlePem: ca.trustBundlePem() }) }, /empty chain/],
  ];
  for (const [name, signer, why] of cases) {
    const mgr = new IdentityManager({ signer, backoffJitter: 0 });
    const err = await t.throwsAsync(mgr.credentials(ID), { code: 'AMBIT_ERR_IDENTITY_UNAVAILABLE' }, name);
    t.regex(err?.message ?? '', why, name);
    t.is((err?.cause as { code?: string }).code, 'AMBIT_ERR_IDENTITY_CERT_INVALID');
    mgr.close();
  }
});

async function signOther(ca: CertificateAuthority): Promise<SignedCertificate> {
  const { generateRsaKeyPair } = await import('../../../src/identity/keys.js');
  const { createCsr } = await import('../../../src/identity/csr.js');
  const admin = 'spiffe://cluster.local/ns/shop/sa/admin';
  return ca.sign(createCsr(await generateRsaKeyPair(), admin), admin, 3600);
}

test('renewNow rotates immediately (e.g. after a root rotation) and picks up the new bundle', async (t) => {
  const { mgr, ca } = await setup();
  t.teardown(() => mgr.close());
  const first = await mgr.credentials(ID);
  await ca.rotate();
  const second = await mgr.renewNow(ID);
  t.not(second.serial, first.serial);
  t.is(second.trustBundlePem.length, 2);
});
