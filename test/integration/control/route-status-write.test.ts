/**
 * Kubernetes mode writes the route status the model computes back to the routes' status
 * subresource: against the fake API server (list/watch, PUT .../status with optimistic
 * concurrency), a TCPRoute whose backend is in another namespace gets ResolvedRefs=False
 * RefNotPermitted, then True once a ReferenceGrant is created; another controller's entry in
 * status.parents is kept; the watch event of ambit's own write does not cause another write.
 */
import test from 'ava';
import { KubeSource } from '../../../src/control/sources/kube-source.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { loadKubeConfig } from '../../../src/control/kube/kube-config.js';
import { WATCHED_KINDS } from '../../../src/control/kube/kube-kinds.js';
import { eventually } from '../../helpers/eventually.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { tempDir } from './fixtures.js';

interface Parent { parentRef: { name: string }; controllerName: string; conditions: { type: string; status: string; reason: string; lastTransitionTime: string; observedGeneration?: number }[] }

test('route status is written to the status subresource, kept in step with ReferenceGrants, other controllers\' entries untouched, no write loop', async (t) => {
  const api = new FakeKubeApi(WATCHED_KINDS, { token: 'cp-token', bookmarkIntervalMs: 100 });
  await api.start();
  const tmp = tempDir('route-status');
  for (const ns of ['app', 'db']) api.put('namespaces', { metadata: { name: ns } });
  api.put('services', { metadata: { name: 'web', namespace: 'app' }, spec: { clusterIP: '198.18.128.20', ports: [{ name: 'tcp', port: 5432 }] } });
  api.put('services', { metadata: { name: 'pg', namespace: 'db' }, spec: { clusterIP: '198.18.128.21', ports: [{ name: 'tcp', port: 5432 }] } });
  api.put('tcproutes', {
    metadata: { name: 'to-pg', namespace: 'app', generation: 3 },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 5432 }], rules: [{ backendRefs: [{ name: 'pg', namespace: 'db', port: 5432 }] }] },
    status: { parents: [{ parentRef: { name: 'edge' }, controllerName: 'example.com/other', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: '2024-01-01T00:00:00Z' }] }] },
  });
  const kube = loadKubeConfig({ kubeconfig: api.writeKubeconfig(tmp.dir, 'cp-token') });
  const source = new KubeSource({ kube, compiler: new ModelCompiler(), debounceMs: 20, listWatch: { backoff: { initialMs: 20, maxMs: 200 } } });
  t.teardown(async () => { await source.close(); await api.close(); tmp.cleanup(); });
  await source.start({ replaceAll() {}, applyDelta() {}, rejected() {} });

  const parents = () => ((api.get('tcproutes', 'app', 'to-pg')?.['status'] as { parents?: Parent[] } | undefined)?.parents ?? []);
  const ours = () => parents().find((p) => p.controllerName === 'ambit.dev/waypoint');
  const conds = () => ours()?.conditions.map((c) => `${c.type}=${c.status} ${c.reason}`) ?? [];
  await eventually('ambit\'s status entry with RefNotPermitted', () => conds().join() === 'Accepted=True Accepted,ResolvedRefs=False RefNotPermitted', { timeoutMs: 10_000, detail: () => JSON.stringify(parents()) });
  t.deepEqual(parents().map((p) => p.controllerName), ['example.com/other', 'ambit.dev/waypoint'], 'the other controller\'s entry is kept, first');
  t.deepEqual(ours()?.parentRef, { group: '', kind: 'Service', name: 'web', port: 5432 });
  t.true(ours()?.conditions.every((c) => c.observedGeneration === 3 && !Number.isNaN(Date.parse(c.lastTransitionTime))));
  const acceptedSince = ours()?.conditions[0]?.lastTransitionTime;

  // Our own write comes back as a watch event; compiled again it must not be written again.
  const writes = api.count('status tcproutes');
  await new Promise((r) => setTimeout(r, 600));
  t.is(api.count('status tcproutes'), writes, 'no write loop');

  api.put('referencegrants', { metadata: { name: 'app-routes', namespace: 'db' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'TCPRoute', namespace: 'app' }], to: [{ group: '', kind: 'Service' }] } });
  await eventually('ResolvedRefs=True once the ReferenceGrant exists', () => conds().join() === 'Accepted=True Accepted,ResolvedRefs=True ResolvedRefs', { timeoutMs: 10_000, detail: () => JSON.stringify(parents()) });
  t.is(ours()?.conditions[0]?.lastTransitionTime, acceptedSince, 'Accepted did not change: its lastTransitionTime is kept');
  t.is(parents().length, 2);
});
