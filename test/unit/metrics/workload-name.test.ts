import test from 'ava';
import { canonicalRevision, canonicalService, workloadApp, workloadCluster, workloadName, workloadVersion } from '../../../src/metrics/workload-name.js';

const pod = (labels: Record<string, string>) => ({ name: 'reviews-v2-7d9f', labels });

test('Istio\'s fallbacks: recommended labels first, then app/version, then the pod name or latest', (t) => {
  const rec = pod({ 'app.kubernetes.io/name': 'reviews', 'app.kubernetes.io/version': 'v2', app: 'old', version: 'old' });
  t.deepEqual([workloadName(rec), workloadApp(rec), workloadVersion(rec), canonicalService(rec), canonicalRevision(rec), workloadCluster(rec)], ['reviews', 'reviews', 'v2', 'reviews', 'v2', 'Kubernetes']);
  const plain = pod({ app: 'reviews', version: 'v1' });
  t.deepEqual([workloadName(plain), workloadApp(plain), workloadVersion(plain), canonicalService(plain), canonicalRevision(plain)], ['reviews', 'reviews', 'v1', 'reviews', 'v1']);
  const bare = pod({});
  t.deepEqual([workloadName(bare), workloadApp(bare), workloadVersion(bare), canonicalService(bare), canonicalRevision(bare)], ['reviews-v2-7d9f', 'unknown', 'unknown', 'reviews-v2-7d9f', 'latest']);
  const canon = pod({ app: 'reviews', 'service.istio.io/canonical-name': 'reviews-svc', 'service.istio.io/canonical-revision': '2.1' });
  t.deepEqual([canonicalService(canon), canonicalRevision(canon)], ['reviews-svc', '2.1']);
});

test('an unknown workload is unknown in every label', (t) => {
  t.deepEqual([workloadName(undefined), workloadApp(undefined), workloadVersion(undefined), canonicalService(undefined), canonicalRevision(undefined), workloadCluster(undefined)], Array(6).fill('unknown'));
});
