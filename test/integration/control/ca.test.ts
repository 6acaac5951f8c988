/**
 * CertificateAuthority.Sign over real gRPC/TLS, through the client library's GrpcSigner: an
 * agent obtains identities of pods on its node only, a waypoint only its own, bad tokens and
 * bad CSRs are refused with the reason, and every refusal is counted.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { GrpcSigner } from '../../../src/discovery/grpc-signer.js';
import { generateRsaKeyPair } from '../../../src/identity/keys.js';
import { createCsr } from '../../../src/identity/csr.js';
import { IdentityManager } from '../../../src/identity/manager.js';
import type { ControlPlane } from '../../../src/control/control-plane.js';
import { MemorySource, NODE_A_TOKEN, TOKEN, binding, startControlPlane, tempDir, workload } from './fixtures.js';

const ID = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

async function setup(t: import('ava').ExecutionContext): Promise<ControlPlane> {
  const tmp = tempDir('ca');
  const cp = await startControlPlane(new MemorySource([
    workload('web-1', 'node-a', { ns: 'shop', sa: 'web' }),
    workload('db-1', 'node-b', { ns: 'shop', sa: 'db' }),
    binding('shop/wp', ['shop/web'], 'wp'),
  ]), tmp.dir);
  t.teardown(async () => { await cp.stop(); tmp.cleanup(); });
  return cp;
}

function signer(cp: ControlPlane, kind: 'agent' | 'waypoint', name: string, token = TOKEN): GrpcSigner {
  return new GrpcSigner({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind, name, token });
}

async function csrFor(identity: string): Promise<string> {
  return createCsr(await generateRsaKeyPair(), identity);
}

test('an agent obtains the identity of a pod on its node, and the chain verifies against the bundle', async (t) => {
  const cp = await setup(t);
  const s = signer(cp, 'agent', 'node-a', NODE_A_TOKEN);
  t.teardown(() => s.close());
  const res = await s.sign(await csrFor(ID('shop', 'web')), ID('shop', 'web'), 3600);
  const leaf = new X509Certificate(res.chainPem[0] ?? '');
  t.is(leaf.subjectAltName, `URI:${ID('shop', 'web')}`);
  t.true(leaf.verify(new X509Certificate(res.trustBundlePem[0] ?? '').publicKey));
  const m = await fetch(`http://127.0.0.1:${cp.ports.metrics}/metrics`).then((r) => r.text());
  t.regex(m, /ambit_control_certs_signed_total\{kind="agent"\} 1/);
});

test('the identity manager works through the gRPC signer', async (t) => {
  const cp = await setup(t);
  const s = signer(cp, 'agent', 'node-a');
  const mgr = new IdentityManager({ signer: s });
  t.teardown(() => { mgr.close(); s.close(); });
  const cred = await mgr.credentials(ID('shop', 'web'));
  t.is(cred.identity, ID('shop', 'web'));
});

test('an agent asking for an identity on another node is refused with PERMISSION_DENIED and counted', async (t) => {
  const cp = await setup(t);
  const s = signer(cp, 'agent', 'node-a');
  t.teardown(() => s.close());
  const err = await t.throwsAsync(s.sign(await csrFor(ID('shop', 'db')), ID('shop', 'db'), 3600));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_PERMISSION_DENIED');
  t.regex(err?.message ?? '', /no pod with that service account is scheduled on node 'node-a'/);
  const m = await fetch(`http://127.0.0.1:${cp.ports.metrics}/metrics`).then((r) => r.text());
  t.regex(m, /ambit_control_certs_refused_total\{kind="agent",reason="not_on_node"\} 1/);
});

test('a wrong token is refused with UNAUTHENTICATED; a token bound to another node with PERMISSION_DENIED', async (t) => {
  const cp = await setup(t);
  const bad = signer(cp, 'agent', 'node-a', 'nope');
  const stolen = signer(cp, 'agent', 'node-b', NODE_A_TOKEN);
  t.teardown(() => { bad.close(); stolen.close(); });
  const e1 = await t.throwsAsync(bad.sign(await csrFor(ID('shop', 'web')), ID('shop', 'web'), 3600));
  t.is((e1 as { code?: string }).code, 'AMBIT_ERR_UNAUTHENTICATED');
  const e2 = await t.throwsAsync(stolen.sign(await csrFor(ID('shop', 'db')), ID('shop', 'db'), 3600));
  t.is((e2 as { code?: string }).code, 'AMBIT_ERR_PERMISSION_DENIED');
  t.regex(e2?.message ?? '', /bound to agent 'node-a'/);
});

test('a waypoint obtains only its own identity', async (t) => {
  const cp = await setup(t);
  const s = signer(cp, 'waypoint', 'shop/wp');
  t.teardown(() => s.close());
  const ok = await s.sign(await csrFor(ID('shop', 'wp')), ID('shop', 'wp'), 3600);
  t.is(ok.chainPem.length, 1);
  const err = await t.throwsAsync(s.sign(await csrFor(ID('shop', 'web')), ID('shop', 'web'), 3600));
  t.regex(err?.message ?? '', /may only obtain its own identity/);
});

test('a CSR that claims another identity than the one requested is refused', async (t) => {
  const cp = await setup(t);
  const s = signer(cp, 'agent', 'node-a');
  t.teardown(() => s.close());
  const err = await t.throwsAsync(s.sign(await csrFor(ID('shop', 'db')), ID('shop', 'web'), 3600));
  t.regex(err?.message ?? '', /INVALID_ARGUMENT/);
  const err2 = await t.throwsAsync(s.sign(await csrFor(ID('shop', 'web')), 'spiffe://other.domain/ns/shop/sa/web', 3600));
  t.regex(err2?.message ?? '', /trust domain/);
});
