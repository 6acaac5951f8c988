/**
 * The waypoint deployer against a small Kubernetes API server on loopback (real HTTP through the
 * control plane's @kubernetes/client-node typed APIs): objects created per waypoint Gateway and valid against the
 * Kubernetes schemas, no writes when nothing changed, updates with resourceVersion that keep a
 * Service's clusterIP, objects of someone else left alone, RBAC refusals named, everything
 * removed when the Gateway goes.
 */
import test from 'ava';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { KubeConfig } from '@kubernetes/client-node';
import { compile } from '../../../src/model/compile/compile.js';
import { parseObjects } from '../../../src/model/load/load-paths.js';
import type { Snapshot } from '../../../src/model/compile/snapshot.js';
import { WaypointDeployer, renderWaypoint, waypointGateways, MANAGED_BY_LABEL } from '../../../src/control/waypoint-deployer.js';

type Obj = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; [k: string]: unknown };

/** Namespaced CRUD for the four kinds the deployer writes, with resourceVersion conflicts and clusterIP allocation. */
class TinyApi {
  readonly store = new Map<string, Obj>();
  readonly writes: string[] = [];
  private rv = 1;
  private ip = 10;
  forbid = new Set<string>();
  server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const send = (status: number, o: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
        const m = /^\/(?:api\/v1|apis\/apps\/v1)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?$/.exec(url.pathname);
        if (m === null) { send(404, { kind: 'Status', message: 'no such path' }); return; }
        const [, ns, plural, name] = m as unknown as [string, string | undefined, string, string | undefined];
        if (this.forbid.has(`${req.method} ${plural}`)) { send(403, { kind: 'Status', message: `${plural} is forbidden: User "system:serviceaccount:ambit-system:ambit-control" cannot ${req.method} ${plural}` }); return; }
        const key = (n: string, o = ns) => `${plural}/${o}/${n}`;
        if (req.method === 'GET' && name === undefined) {
          const sel = url.searchParams.get('labelSelector') ?? '';
          const reqs = sel.split(',').filter(Boolean).map((s) => s.split('='));
          const items = [...this.store.entries()].filter(([k]) => k.startsWith(`${plural}/`) && (ns === undefined || k.startsWith(`${plural}/${ns}/`)))
            .map(([, v]) => v).filter((o) => reqs.every(([k, v]) => (v === undefined ? o.metadata.labels?.[k as string] !== undefined : o.metadata.labels?.[k as string] === v)));
          send(200, { items });
          return;
        }
        if (req.method === 'GET') { const o = this.store.get(key(name as string)); o ? send(200, o) : send(404, { kind: 'Status', message: 'not found' }); return; }
        if (req.method === 'DELETE') { this.writes.push(`DELETE ${key(name as string)}`); send(this.store.delete(key(name as string)) ? 200 : 404, {}); return; }
        const o = JSON.parse(body) as Obj;
        if (req.method === 'POST') {
          if (this.store.has(key(o.metadata.name))) { send(409, { message: 'exists' }); return; }
          o.metadata.resourceVersion = String(this.rv++);
          if (plural === 'services') (o.spec as Record<string, unknown>)['clusterIP'] = `198.18.200.${this.ip++}`;
          this.store.set(key(o.metadata.name), o);
          this.writes.push(`POST ${key(o.metadata.name)}`);
          send(201, o);
          return;
        }
        if (req.method === 'PUT') {
          const cur = this.store.get(key(name as string));
          if (cur === undefined) { send(404, {}); return; }
          if (o.metadata.resourceVersion !== cur.metadata.resourceVersion) { send(409, { message: 'conflict' }); return; }
          if (plural === 'services' && o.spec?.['clusterIP'] !== cur.spec?.['clusterIP']) { send(422, { message: 'spec.clusterIP: Invalid value: field is immutable' }); return; }
          o.metadata.resourceVersion = String(this.rv++);
          this.store.set(key(name as string), o);
          this.writes.push(`PUT ${key(name as string)}`);
          send(200, o);
          return;
        }
        send(405, {});
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => { this.server?.closeAllConnections(); this.server?.close(() => r()); });
  }
}

function snapshotOf(yaml: string): Snapshot {
  const docs = yaml.split('\n---\n').map((d) => JSON.parse(d) as unknown);
  const { resources, diagnostics } = parseObjects(docs);
  if (diagnostics.some((d) => d.severity === 'error')) throw new Error(JSON.stringify(diagnostics));
  return compile(resources);
}

const gateway = (ns: string, name: string, extra: Record<string, unknown> = {}) => JSON.stringify({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: ns, uid: `uid-${ns}-${name}` },
  spec: { gatewayClassName: 'ambit-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], ...extra },
});
const namespace = (n: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: n } });

async function setup(t: { teardown: (f: () => unknown) => void }) {
  const api = new TinyApi();
  const url = await api.start();
  // The library speaks plain http only with skipTLSVerify; TinyApi is loopback http.
  const kube = new KubeConfig();
  kube.loadFromClusterAndUser({ name: 'tiny', server: url, skipTLSVerify: true }, { name: 'control' });
  t.teardown(() => api.stop());
  let snap = snapshotOf([namespace('shop'), gateway('shop', 'waypoint')].join('\n---\n'));
  let roots = ['-----BEGIN CERTIFICATE-----\nroot1\n-----END CERTIFICATE-----\n'];
  const deployer = new WaypointDeployer({ kube, snapshot: () => snap, roots: () => roots, image: 'registry.example/ambit:test' });
  return { api, deployer, setSnap: (s: Snapshot) => { snap = s; }, setRoots: (r: string[]) => { roots = r; } };
}

test('waypointGateways picks Gateways of class ambit-waypoint only', (t) => {
  const s = snapshotOf([namespace('shop'), gateway('shop', 'waypoint'), JSON.stringify({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'shop' }, spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } })].join('\n---\n'));
  t.deepEqual(waypointGateways(s).map((g) => `${g.namespace}/${g.name}`), ['shop/waypoint']);
});

test('rendered objects validate against the Kubernetes schemas and carry the labels the model binds by', (t) => {
  const [sa, cm, dep, svc] = renderWaypoint({ namespace: 'shop', name: 'waypoint', uid: 'u1', labels: { team: 'a' } }, { trustBundlePem: ['PEM'] });
  t.notThrows(() => new ServiceAccount(sa as never).validate());
  t.notThrows(() => new ConfigMap(cm as never).validate());
  t.notThrows(() => new Deployment(dep as never).validate());
  t.notThrows(() => new Service(svc as never).validate());
  const d = dep as unknown as { metadata: { ownerReferences: { uid: string }[] }; spec: { template: { metadata: { labels: Record<string, string> }; spec: { serviceAccountName: string; containers: { args: string[] }[] } } } };
  t.is(d.spec.template.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
  t.is(d.spec.template.metadata.labels['team'], 'a', 'spec.infrastructure.labels propagate');
  t.is(d.spec.template.spec.serviceAccountName, 'waypoint');
  t.true(d.spec.template.spec.containers[0]?.args.includes('--name=shop/waypoint'));
  t.is(d.metadata.ownerReferences[0]?.uid, 'u1', 'owned by the Gateway (garbage-collected with it)');
  t.is((cm as unknown as { data: Record<string, string> }).data['root-cert.pem'], 'PEM');
});

test('creates the objects once, writes nothing when nothing changed, updates only what changed', async (t) => {
  const { api, deployer, setRoots, setSnap } = await setup(t);
  const first = await deployer.reconcile();
  t.deepEqual(first.errors, []);
  t.deepEqual(first.created.sort(), ['ConfigMap shop/ambit-root-cert', 'Deployment shop/waypoint', 'Service shop/waypoint', 'ServiceAccount shop/waypoint']);
  const dep = api.store.get('deployments/shop/waypoint') as Obj;
  t.notThrows(() => new Deployment(dep as never).validate(), 'what reached the API server is a valid Deployment');
  const ip = (api.store.get('services/shop/waypoint') as Obj).spec?.['clusterIP'];
  t.truthy(ip);

  const writes = api.writes.length;
  const again = await deployer.reconcile();
  t.is(api.writes.length, writes, 'no write when nothing changed');
  t.is(again.unchanged, 4);

  setRoots(['-----BEGIN CERTIFICATE-----\nroot2\n-----END CERTIFICATE-----\n']);
  const rotated = await deployer.reconcile();
  t.deepEqual(rotated.updated, ['ConfigMap shop/ambit-root-cert'], 'a root rotation rewrites only the ConfigMap');

  setSnap(snapshotOf([namespace('shop'), gateway('shop', 'waypoint', { infrastructure: { labels: { team: 'payments' } } })].join('\n---\n')));
  const relabelled = await deployer.reconcile();
  t.deepEqual(relabelled.errors, []);
  t.true(relabelled.updated.includes('Service shop/waypoint'));
  t.is((api.store.get('services/shop/waypoint') as Obj).spec?.['clusterIP'], ip, 'the Service keeps its clusterIP');
  t.is((api.store.get('deployments/shop/waypoint') as Obj).metadata.labels?.['team'], 'payments');
});

test('a Gateway that goes away takes its objects with it; other waypoints stay', async (t) => {
  const { api, deployer, setSnap } = await setup(t);
  setSnap(snapshotOf([namespace('shop'), namespace('bank'), gateway('shop', 'waypoint'), gateway('bank', 'wp')].join('\n---\n')));
  t.deepEqual((await deployer.reconcile()).errors, []);
  t.is([...api.store.keys()].length, 8);
  setSnap(snapshotOf([namespace('shop'), namespace('bank'), gateway('bank', 'wp')].join('\n---\n')));
  const r = await deployer.reconcile();
  t.deepEqual(r.deleted.sort(), ['ConfigMap shop/ambit-root-cert', 'Deployment shop/waypoint', 'Service shop/waypoint', 'ServiceAccount shop/waypoint']);
  t.deepEqual([...api.store.keys()].sort(), ['configmaps/bank/ambit-root-cert', 'deployments/bank/wp', 'serviceaccounts/bank/wp', 'services/bank/wp']);
});

test('an object of the same name that ambit does not manage is left alone and named; RBAC refusals say so', async (t) => {
  const { api, deployer } = await setup(t);
  api.store.set('services/shop/waypoint', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'waypoint', namespace: 'shop', resourceVersion: '1', labels: { app: 'mine' } }, spec: { clusterIP: '198.18.200.99' } });
  api.forbid.add('POST deployments');
  const r = await deployer.reconcile();
  t.true(r.errors.some((e) => e.includes('Service shop/waypoint exists but is not managed by ambit')), r.errors.join('\n'));
  t.true(r.errors.some((e) => e.includes('cannot create Deployment shop/waypoint: HTTP 403') && e.includes('deploy/rbac.yaml')), r.errors.join('\n'));
  t.deepEqual((api.store.get('services/shop/waypoint') as Obj).metadata.labels, { app: 'mine' }, 'untouched');
  t.false(api.writes.some((w) => w.includes('services/shop/waypoint')));
  t.true(r.created.includes('ServiceAccount shop/waypoint'), 'other objects still made');
  t.is((api.store.get('serviceaccounts/shop/waypoint') as Obj).metadata.labels?.[MANAGED_BY_LABEL], 'ambit-control');
});
