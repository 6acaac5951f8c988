/**
 * The Kubernetes source end to end against the fake API server: list/watch of every kind ->
 * model -> control plane -> DiscoveryClient; watch events become deltas; a 410 Gone re-list
 * converges (deletions during the gap included); subscribers and CA callers authenticate with
 * TokenReview, and an agent only gets identities of pods on its own node; an API server that
 * goes away leaves the delivered view in place and /config_dump names the cause. All through
 * @kubernetes/client-node over HTTPS with the fake server's CA, from a kubeconfig file.
 */
import test from 'ava';
import { ControlPlane } from '../../../src/control/control-plane.js';
import { TokenReviewAuthenticator } from '../../../src/control/auth.js';
import { KubeSource } from '../../../src/control/sources/kube-source.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { loadKubeConfig } from '../../../src/control/kube/kube-config.js';
import { KubeTokenReviewer } from '../../../src/control/kube/token-review.js';
import { WATCHED_KINDS } from '../../../src/control/kube/kube-kinds.js';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { GrpcSigner } from '../../../src/discovery/grpc-signer.js';
import { generateRsaKeyPair } from '../../../src/identity/keys.js';
import { createCsr } from '../../../src/identity/csr.js';
import type { ViewChange } from '../../../src/discovery/local-view.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { tempDir, testCa, waitFor } from './fixtures.js';

type Update = ViewChange & { source: 'cache' | 'server' };
const NODE = (n: string) => ({ 'authentication.kubernetes.io/node-name': [n] });

function pod(name: string, node: string, ip: string, app = 'web') {
  return {
    metadata: { name, namespace: 'shop', labels: { app } },
    spec: { nodeName: node, serviceAccountName: app, containers: [{ name: 'main', image: 'x' }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

async function setup(t: import('ava').ExecutionContext) {
  const api = new FakeKubeApi(WATCHED_KINDS, {
    token: 'cp-token', bookmarkIntervalMs: 100, notInstalled: ['httproutes', 'gateways'],
    tokenReviews: {
      'agent-a': { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: NODE('node-a') },
      'agent-b': { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: NODE('node-b') },
    },
  });
  await api.start();
  const tmp = tempDir('kube-source');
  api.put('namespaces', { metadata: { name: 'shop', labels: { 'ambit.dev/dataplane-mode': 'ambient' } } });
  api.put('nodes', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] } });
  api.put('nodes', { metadata: { name: 'node-b' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.2' }] } });
  api.put('serviceaccounts', { metadata: { name: 'web', namespace: 'shop' } });
  api.put('pods', pod('web-1', 'node-a', '198.19.1.10'));
  api.put('pods', pod('web-2', 'node-b', '198.19.2.10'));
  api.put('services', { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.18.128.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] } });
  api.put('authorizationpolicies', { metadata: { name: 'deny-web', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'web' } }, action: 'DENY', rules: [{ from: [{ source: { namespaces: ['blocked'] } }] }] } });
  const kube = loadKubeConfig({ kubeconfig: api.writeKubeconfig(tmp.dir, 'cp-token') });
  const source = new KubeSource({ kube, compiler: new ModelCompiler(), debounceMs: 20, listWatch: { backoff: { initialMs: 20, maxMs: 200 } } });
  const cp = new ControlPlane({
    source, signer: await testCa(), authenticator: new TokenReviewAuthenticator({ reviewer: new KubeTokenReviewer(kube) }),
    host: '127.0.0.1', tlsPort: 0, plaintextPort: 0, metricsPort: 0, readinessPort: 0, drainMs: 500,
  });
  await cp.start();
  t.teardown(async () => { await cp.stop(); await api.close(); tmp.cleanup(); });
  return { api, cp };
}

test('cluster objects reach an agent; watch events become deltas; 410 re-lists converge', async (t) => {
  const { api, cp } = await setup(t);
  t.true(cp.ready);
  const c = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-a', token: 'agent-a' });
  t.teardown(() => c.close());
  const updates = (cb: (u: Update) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; };
  const full = waitFor(updates, (u) => u.full, 10_000, 'full view');
  await c.start();
  await full;
  t.deepEqual([...c.view.all('WORKLOAD').keys()].sort(), ['shop/web-1', 'shop/web-2']);
  t.deepEqual([...c.view.all('AUTHORIZATION_POLICY').keys()], ['shop/deny-web']);

  const added = waitFor(updates, (u) => u.upserted.some((x) => x.name === 'shop/web-3'), 10_000, 'added pod');
  api.put('pods', pod('web-3', 'node-a', '198.19.1.11'));
  const u = await added;
  t.false(u.full);

  // The watch dies with 410; meanwhile a pod is deleted and history compacted.
  const removed = waitFor(updates, (x) => x.removed.some((r) => r.name === 'shop/web-2'), 10_000, 'deletion seen through a re-list');
  api.cutWatches(true);
  api.remove('pods', 'shop', 'web-2');
  api.compact();
  await removed;
  t.deepEqual([...c.view.all('WORKLOAD').keys()].sort(), ['shop/web-1', 'shop/web-3']);
  const details = (cp.configDump().source as { details: Record<string, { relistsAfterGone: number }> }).details;
  t.true((details['pods']?.relistsAfterGone ?? 0) >= 1);
  t.deepEqual((cp.configDump().source as { details: Record<string, { installed: boolean }> }).details['httproutes']?.installed, false);
});

test('TokenReview guards discovery and the CA: agents get identities of pods on their own node only', async (t) => {
  const { cp } = await setup(t);
  const signer = (token: string, node: string) => new GrpcSigner({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: node, token });
  const a = signer('agent-a', 'node-a');
  const liar = signer('agent-b', 'node-a');
  const forged = signer('forged', 'node-a');
  t.teardown(() => { a.close(); liar.close(); forged.close(); });
  const id = 'spiffe://cluster.local/ns/shop/sa/web';
  const csr = createCsr(await generateRsaKeyPair(), id);
  const ok = await a.sign(csr, id, 3600);
  t.is(ok.chainPem.length, 1);
  const e1 = await t.throwsAsync(liar.sign(csr, id, 3600));
  t.is((e1 as { code?: string }).code, 'AMBIT_ERR_PERMISSION_DENIED');
  t.regex(e1?.message ?? '', /bound to node 'node-b'/);
  const e2 = await t.throwsAsync(forged.sign(csr, id, 3600));
  t.is((e2 as { code?: string }).code, 'AMBIT_ERR_UNAUTHENTICATED');
});

test('an API server that goes away: agents keep their view, /config_dump names the server and the cause', async (t) => {
  const { api, cp } = await setup(t);
  const c = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-a', token: 'agent-a' });
  t.teardown(() => c.close());
  const full = waitFor((cb: (u: Update) => void) => { c.on('update', cb); return () => { c.off('update', cb); }; }, (u) => u.full, 10_000, 'full view');
  await c.start();
  await full;
  await api.close();
  const deadline = Date.now() + 20_000;
  const podsDetail = () => (cp.configDump().source as { details: Record<string, { lastError?: string; objects: number; synced: boolean }> }).details['pods'];
  while (!/ECONNREFUSED/.test(podsDetail()?.lastError ?? '') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const pods = podsDetail();
  t.regex(pods?.lastError ?? '', new RegExp(`cannot reach the Kubernetes API server at ${api.url}: .*ECONNREFUSED`));
  t.is(pods?.objects, 2, 'the last listed pods are kept');
  t.true(cp.ready, 'the control plane keeps serving the last good configuration');
  t.deepEqual([...c.view.all('WORKLOAD').keys()].sort(), ['shop/web-1', 'shop/web-2'], 'the agent lost nothing');
});
