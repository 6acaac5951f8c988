/**
 * The list/watch reflector on @kubernetes/client-node against the fake Kubernetes API server
 * (HTTPS with its own CA, bearer token, reached through a kubeconfig file or the in-cluster
 * service-account layout): pagination, events, bookmarks that let a reconnect skip the re-list,
 * 410 Gone that forces one, injected errors retried with backoff, CRDs that are not installed,
 * a wrong token or an untrusted server named, an API server that goes away keeping the last
 * good state, and TokenReview accepted, rejected and failing.
 */
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { ListWatch } from '../../../src/control/kube/list-watch.js';
import { WATCHED_KINDS, type KubeKind } from '../../../src/control/kube/kube-kinds.js';
import { KubeTokenReviewer } from '../../../src/control/kube/token-review.js';
import { inClusterConfig, loadKubeConfig } from '../../../src/control/kube/kube-config.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { tempDir } from './fixtures.js';

const PODS = WATCHED_KINDS.find((k) => k.plural === 'pods') as KubeKind;
const GATEWAYS = WATCHED_KINDS.find((k) => k.plural === 'gateways') as KubeKind;
const AUTHZ = WATCHED_KINDS.find((k) => k.plural === 'authorizationpolicies') as KubeKind;

function pod(name: string, node = 'node-a') {
  return { metadata: { name, namespace: 'default', labels: { app: name }, creationTimestamp: '2026-01-02T03:04:05Z' }, spec: { nodeName: node, serviceAccountName: 'default', containers: [{ name: 'main', image: 'x' }] }, status: { podIP: '198.19.0.9' } };
}

/** Waits for a condition; the bound is generous because the test machines are shared (no timing is asserted). */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(t: import('ava').ExecutionContext, opts: ConstructorParameters<typeof FakeKubeApi>[1] = {}) {
  const api = new FakeKubeApi(WATCHED_KINDS, { token: 'cp-token', bookmarkIntervalMs: 50, ...opts });
  await api.start();
  const tmp = tempDir('kube-lw');
  const kube = loadKubeConfig({ kubeconfig: api.writeKubeconfig(tmp.dir, 'cp-token') });
  const watches: ListWatch[] = [];
  t.teardown(async () => { for (const w of watches) w.stop(); await api.close(); tmp.cleanup(); });
  const make = (kind: KubeKind, o: ConstructorParameters<typeof ListWatch>[3] = {}, kc: KubeConfig = kube) => {
    let changes = 0;
    const lw = new ListWatch(kc, kind, () => { changes++; }, { backoff: { initialMs: 20, maxMs: 100 }, ...o });
    watches.push(lw);
    lw.start();
    return { lw, changes: () => changes };
  };
  return { api, kube, make, dir: tmp.dir };
}

test('lists every page, then applies added, modified and deleted events in order', async (t) => {
  const { api, make } = await setup(t);
  for (let i = 0; i < 5; i++) api.put('pods', pod(`p${i}`));
  const { lw } = make(PODS, { pageSize: 2 });
  await until(() => lw.synced, 'initial list');
  t.is(lw.store.size, 5);
  t.is(api.count('list pods'), 3, 'five items in pages of two');
  const p0 = lw.store.get('default/p0') as { kind?: string; apiVersion?: string; metadata: { creationTimestamp?: unknown; labels?: Record<string, string> } };
  t.is(p0.kind, 'Pod', 'kind is filled in on list items');
  t.is(p0.apiVersion, 'v1');
  t.is(typeof p0.metadata.creationTimestamp, 'string', 'list items are plain JSON, not the typed model (no Date objects)');
  t.deepEqual(p0.metadata.labels, { app: 'p0' });
  api.put('pods', pod('p5'));
  api.put('pods', pod('p0', 'node-b'));
  api.remove('pods', 'default', 'p1');
  await until(() => lw.store.size === 5 && !lw.store.has('default/p1') && lw.store.has('default/p5'), 'events applied');
  t.is(((lw.store.get('default/p0') as { spec: { nodeName: string } }).spec.nodeName), 'node-b');
  t.is((lw.store.get('default/p5') as { kind?: string }).kind, 'Pod');
  t.is(lw.stats.resourceVersion, api.resourceVersion);
  t.is(lw.stats.errors, 0);
});

test('a CRD lists page by page through CustomObjectsApi and watches like a built-in kind', async (t) => {
  const { api, make } = await setup(t);
  for (const n of ['p1', 'p2', 'p3']) api.put('authorizationpolicies', { metadata: { name: n, namespace: 'shop' }, spec: { action: 'DENY' } });
  const { lw } = make(AUTHZ, { pageSize: 2 });
  await until(() => lw.synced, 'list');
  t.is(api.count('list authorizationpolicies'), 2, 'three items in pages of two');
  t.deepEqual([...lw.store.keys()].sort(), ['shop/p1', 'shop/p2', 'shop/p3']);
  t.is((lw.store.get('shop/p1') as { apiVersion?: string }).apiVersion, 'security.istio.io/v1');
  api.remove('authorizationpolicies', 'shop', 'p2');
  await until(() => !lw.store.has('shop/p2'), 'deletion event');
  t.is(lw.stats.resourceVersion, api.resourceVersion);
});

test('bookmarks advance the resourceVersion so a cut watch resumes without a re-list', async (t) => {
  const { api, make } = await setup(t);
  api.put('pods', pod('a'));
  const { lw } = make(PODS);
  await until(() => lw.synced, 'list');
  // Changes to other kinds move the cluster's revision; only bookmarks tell the pod watch.
  for (let i = 0; i < 3; i++) api.put('services', { metadata: { name: `s${i}`, namespace: 'default' }, spec: {} });
  await until(() => lw.stats.resourceVersion === api.resourceVersion, 'bookmark');
  t.true(lw.stats.bookmarks > 0);
  api.compact();
  const watches = api.count('watch pods');
  api.cutWatches();
  await until(() => api.count('watch pods') > watches, 'rewatch');
  api.put('pods', pod('b'));
  await until(() => lw.store.has('default/b'), 'event after reconnect');
  t.is(api.count('list pods'), 1, 'no re-list: the bookmark version was still within history');
  t.is(lw.stats.relistsAfterGone, 0);
});

test('a watch that delivers nothing for idleTimeoutMs is opened again from the same version: no re-list, no error', async (t) => {
  const { api, make } = await setup(t, { bookmarkIntervalMs: 60_000 });
  api.put('pods', pod('a'));
  const { lw } = make(PODS, { idleTimeoutMs: 300 });
  await until(() => lw.synced, 'list');
  await until(() => api.count('watch pods') >= 3, 'idle watches re-opened');
  t.is(api.count('list pods'), 1, 'no re-list');
  t.is(lw.stats.errors, 0, 'an idle watch is not an error');
  t.is(lw.stats.lastError, undefined);
  api.put('pods', pod('b'));
  await until(() => lw.store.has('default/b'), 'event on a re-opened watch');
  t.is(lw.stats.resourceVersion, api.resourceVersion);
});

test('410 Gone (an ERROR event on a compacted version) re-lists and converges, deletions during the gap included', async (t) => {
  const { api, make } = await setup(t, { bookmarkIntervalMs: 60_000 });
  api.put('pods', pod('a'));
  api.put('pods', pod('b'));
  const { lw } = make(PODS);
  await until(() => lw.synced && lw.store.size === 2, 'list');
  api.cutWatches(true);
  // While the watch is down the pod set changes and history is compacted.
  api.remove('pods', 'default', 'a');
  api.put('pods', pod('c'));
  api.compact();
  await until(() => lw.stats.relistsAfterGone >= 1 && lw.store.has('default/c') && !lw.store.has('default/a'), 're-list after 410');
  t.true(api.count('list pods') >= 2);
  t.deepEqual([...lw.store.keys()].sort(), ['default/b', 'default/c']);
});

test('a watch from a compacted version gets 410 from the server itself and re-lists', async (t) => {
  const { api, make } = await setup(t, { bookmarkIntervalMs: 60_000 });
  api.put('pods', pod('a'));
  const { lw } = make(PODS);
  await until(() => lw.synced, 'list');
  const listedAt = lw.stats.resourceVersion;
  api.put('services', { metadata: { name: 's', namespace: 'default' }, spec: {} });
  api.compact();
  api.cutWatches(false);
  await until(() => lw.stats.relistsAfterGone === 1 && api.count('list pods') === 2, 'relist');
  api.put('pods', pod('z'));
  await until(() => lw.store.has('default/z'), 'events after relist');
  t.deepEqual([...lw.store.keys()].sort(), ['default/a', 'default/z'], 'the re-list kept what exists and the watch added the new pod');
  t.is(api.count('list pods'), 2, 'exactly one re-list');
  t.is(lw.stats.lists, 2);
  t.true(Number(lw.stats.resourceVersion) > Number(listedAt), 'the version moved past the compaction point');
  t.is(lw.stats.resourceVersion, api.resourceVersion);
  t.is(lw.stats.errors, 0, '410 is a re-list, not an error');
});

test('server errors are retried with backoff; a missing CRD is synced as empty', async (t) => {
  const { api, make } = await setup(t, { notInstalled: ['gateways'] });
  api.put('pods', pod('a'));
  api.failNext(3, 503);
  const { lw } = make(PODS);
  const gw = make(GATEWAYS, { missingRetryMs: 100 });
  await until(() => lw.synced && gw.lw.synced, 'sync through failures');
  t.is(lw.store.size, 1);
  t.true(lw.stats.errors >= 1);
  t.is(lw.stats.lastError, undefined, 'cleared by the successful list');
  t.false(gw.lw.stats.installed);
  t.is(gw.lw.store.size, 0);
  await until(() => api.count('list gateways') >= 2, 'missing CRD listed again');
});

test('a wrong token and an untrusted server certificate are reported, naming the cause', async (t) => {
  const { api, make, dir } = await setup(t);
  api.put('pods', pod('a'));
  const wrong = make(PODS, {}, loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir, 'not-the-cp-token-5f3a') }));
  await until(() => wrong.lw.stats.errors >= 1, 'rejected list');
  t.false(wrong.lw.synced);
  t.regex(wrong.lw.stats.lastError ?? '', /list pods: HTTP 401.*credentials/);
  t.notRegex(wrong.lw.stats.lastError ?? '', /5f3a/, 'the token is not in the message');

  mkdirSync(join(dir, 'untrusted'));
  const f = join(dir, 'untrusted', 'kubeconfig');
  writeFileSync(f, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'c', cluster: { server: api.url } }], users: [{ name: 'u', user: { token: 'cp-token' } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
  }));
  const untrusted = make(PODS, {}, loadKubeConfig({ kubeconfig: f }));
  await until(() => untrusted.lw.stats.errors >= 1, 'TLS failure');
  t.false(untrusted.lw.synced);
  t.regex(untrusted.lw.stats.lastError ?? '', new RegExp(`cannot reach the Kubernetes API server at ${api.url}: .*(certificate|issuer)`, 'i'));
});

test('an API server that goes away: the last good state stays and the error names the server and the cause', async (t) => {
  const { api, make, kube } = await setup(t);
  api.put('pods', pod('a'));
  api.put('pods', pod('b'));
  const { lw } = make(PODS);
  await until(() => lw.synced && lw.store.size === 2, 'list');
  await api.close();
  await until(() => lw.stats.errors >= 2, 'failed reconnects');
  t.true(lw.synced);
  t.deepEqual([...lw.store.keys()].sort(), ['default/a', 'default/b'], 'nothing lost');
  t.regex(lw.stats.lastError ?? '', new RegExp(`watch pods: cannot reach the Kubernetes API server at ${api.url}: .*ECONNREFUSED`));
  const reviewer = new KubeTokenReviewer(kube);
  const err = await t.throwsAsync(reviewer.review('agent-secret-token'));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_KUBE_API');
  t.regex(err?.message ?? '', /TokenReview.*cannot reach the Kubernetes API server.*ECONNREFUSED/);
  t.notRegex(err?.message ?? '', /agent-secret-token/);
});

test('TokenReview answers through the API connection: accepted, rejected, and a refusal with its status', async (t) => {
  const { api, kube } = await setup(t, {
    tokenReviews: { 'agent-token': { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } },
  });
  const r = new KubeTokenReviewer(kube);
  const ok = await r.review('agent-token');
  t.true(ok.authenticated);
  t.is(ok.username, 'system:serviceaccount:ambit-system:ambit-agent');
  t.deepEqual(ok.extra?.['authentication.kubernetes.io/node-name'], ['node-a']);
  const no = await r.review('forged');
  t.false(no.authenticated);
  t.regex(no.error ?? '', /invalid bearer token/);
  t.is(api.count('tokenreview'), 2);
  api.failNext(1, 403);
  const err = await t.throwsAsync(r.review('agent-token'));
  t.is((err as { status?: number }).status, 403);
  t.regex(err?.message ?? '', /TokenReview.*create on tokenreviews.*HTTP 403: injected failure.*deploy\/rbac\.yaml/);
  t.notRegex(err?.message ?? '', /agent-token/);
});

test('configuration: in-cluster from the service-account files, a kubeconfig context by name, and clear start-up errors', async (t) => {
  const { api, make, dir } = await setup(t);
  api.put('pods', pod('a'));
  const prefix = join(dir, 'pod');
  const sa = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
  const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
  delete process.env['KUBERNETES_SERVICE_HOST'];
  t.throws(() => inClusterConfig(prefix), { message: /not running in a Kubernetes pod.*--kubeconfig/ });
  process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
  process.env['KUBERNETES_SERVICE_PORT'] = new URL(api.url).port;
  t.throws(() => inClusterConfig(prefix), { message: /cannot read .*serviceaccount\/token.*service account token mounted/ });
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'token'), 'cp-token\n');
  writeFileSync(join(sa, 'ca.crt'), api.caPem);
  const inCluster = make(PODS, {}, inClusterConfig(prefix));
  await until(() => inCluster.lw.synced, 'in-cluster list');
  t.deepEqual([...inCluster.lw.store.keys()], ['default/a']);

  const file = api.writeKubeconfig(dir, 'cp-token');
  t.is(loadKubeConfig({ kubeconfig: file, context: 'fake' }).getCurrentCluster()?.server, api.url);
  t.throws(() => loadKubeConfig({ kubeconfig: file, context: 'prod' }), { message: /context 'prod' not found \(it has: fake\)/ });
  t.throws(() => loadKubeConfig({ kubeconfig: join(dir, 'nope') }), { message: /cannot read kubeconfig .*nope/ });
});
