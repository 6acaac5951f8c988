/**
 * The list/watch reflector against the fake Kubernetes API server: pagination, events, bookmarks
 * that let a reconnect skip the re-list, 410 Gone that forces one, injected errors retried with
 * backoff, CRDs that are not installed, and the bearer token.
 */
import test from 'ava';
import { KubeHttp } from '../../../src/control/kube/kube-http.js';
import { ListWatch } from '../../../src/control/kube/list-watch.js';
import { WATCHED_KINDS, type KubeKind } from '../../../src/control/kube/kube-kinds.js';
import { KubeTokenReviewer } from '../../../src/control/kube/token-review.js';
import { FakeKubeApi } from './fake-kube-api.js';

const PODS = WATCHED_KINDS.find((k) => k.plural === 'pods') as KubeKind;
const GATEWAYS = WATCHED_KINDS.find((k) => k.plural === 'gateways') as KubeKind;

function pod(name: string, node = 'node-a') {
  return { metadata: { name, namespace: 'default', labels: { app: name } }, spec: { nodeName: node, serviceAccountName: 'default' }, status: { podIP: '198.19.0.9' } };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(t: import('ava').ExecutionContext, opts: ConstructorParameters<typeof FakeKubeApi>[1] = {}) {
  const api = new FakeKubeApi(WATCHED_KINDS, { token: 'cp-token', bookmarkIntervalMs: 50, ...opts });
  const server = await api.start();
  const http = new KubeHttp({ server, token: () => 'cp-token' });
  const watches: ListWatch[] = [];
  t.teardown(async () => { for (const w of watches) w.stop(); http.close(); await api.close(); });
  const make = (kind: KubeKind, o: ConstructorParameters<typeof ListWatch>[3] = {}) => {
    let changes = 0;
    const lw = new ListWatch(http, kind, () => { changes++; }, { backoff: { initialMs: 20, maxMs: 100 }, ...o });
    watches.push(lw);
    lw.start();
    return { lw, changes: () => changes };
  };
  return { api, http, make };
}

test('lists every page, then applies added, modified and deleted events in order', async (t) => {
  const { api, make } = await setup(t);
  for (let i = 0; i < 5; i++) api.put('pods', pod(`p${i}`));
  const { lw } = make(PODS, { pageSize: 2 });
  await until(() => lw.synced, 'initial list');
  t.is(lw.store.size, 5);
  t.is(api.count('list pods'), 3, 'five items in pages of two');
  t.is((lw.store.get('default/p0') as { kind?: string }).kind, 'Pod', 'kind is filled in on list items');
  api.put('pods', pod('p5'));
  api.put('pods', pod('p0', 'node-b'));
  api.remove('pods', 'default', 'p1');
  await until(() => lw.store.size === 5 && !lw.store.has('default/p1') && lw.store.has('default/p5'), 'events applied');
  t.is(((lw.store.get('default/p0') as { spec: { nodeName: string } }).spec.nodeName), 'node-b');
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
  api.put('services', { metadata: { name: 's', namespace: 'default' }, spec: {} });
  api.compact();
  api.cutWatches(false);
  await until(() => lw.stats.relistsAfterGone === 1 && api.count('list pods') === 2, 'relist');
  api.put('pods', pod('z'));
  await until(() => lw.store.has('default/z'), 'events after relist');
  t.pass();
});

test('server errors are retried with backoff; a missing CRD is synced as empty; a wrong token is reported', async (t) => {
  const { api, make } = await setup(t, { notInstalled: ['gateways'] });
  api.put('pods', pod('a'));
  api.failNext(3, 503);
  const { lw } = make(PODS);
  const gw = make(GATEWAYS, { missingRetryMs: 100 });
  await until(() => lw.synced && gw.lw.synced, 'sync through failures');
  t.is(lw.store.size, 1);
  t.true(lw.stats.errors >= 1);
  t.false(gw.lw.stats.installed);
  t.is(gw.lw.store.size, 0);

  const bad = new KubeHttp({ server: lw['http'].conn.server, token: () => 'wrong' });
  t.teardown(() => bad.close());
  const res = await bad.request('GET', '/api/v1/pods');
  t.is(res.status, 401);
});

test('TokenReview answers through the API connection', async (t) => {
  const { http } = await setup(t, {
    tokenReviews: { 'agent-token': { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } },
  });
  const r = new KubeTokenReviewer(http);
  const ok = await r.review('agent-token');
  t.true(ok.authenticated);
  t.is(ok.username, 'system:serviceaccount:ambit-system:ambit-agent');
  t.deepEqual(ok.extra?.['authentication.kubernetes.io/node-name'], ['node-a']);
  const no = await r.review('forged');
  t.false(no.authenticated);
  t.regex(no.error ?? '', /invalid bearer token/);
});
