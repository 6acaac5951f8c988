/**
 * Waypoint deployer: for every waypoint Gateway (gatewayClassName `ambit-waypoint`) the control
 * plane creates and keeps up to date the objects that run it, through the Kubernetes API:
 *
 *   ServiceAccount <gateway>          the waypoint's identity (spiffe://td/ns/<ns>/sa/<gateway>)
 *   ConfigMap      ambit-root-cert     the mesh roots the waypoint verifies the control plane with
 *   Deployment     <gateway>           `ambit waypoint --name <ns>/<gateway>` (pods labelled
 *                                      gateway.networking.k8s.io/gateway-name, so the model binds them)
 *   Service        <gateway>           HBONE 15008 (what agents dial), metrics 15020, readiness 15021
 *
 * deploy/waypoint/waypoint.yaml is exactly what this file renders for Gateway `default/waypoint`
 * (a unit test keeps the two equal), so operators can read what will be created.
 *
 * Invariants:
 * - Only objects labelled `ambit.dev/managed-by: ambit-control` are ever updated or deleted; an
 *   object of the same name made by someone else is left alone and reported.
 * - An object is written only when what it should be differs from what is there (compared with a
 *   hash annotation of the rendered object), so a reconcile of an unchanged mesh makes GETs only.
 * - Updates carry the resourceVersion read just before (optimistic concurrency): two control
 *   plane replicas reconciling at once cannot overwrite each other with older state; the loser
 *   gets 409 and converges on its next pass. Services keep their allocated clusterIP.
 * - Objects of a Gateway that is gone (or no longer of class ambit-waypoint) are deleted; when
 *   the Gateway's uid is known they are also owned by it, so Kubernetes garbage-collects them
 *   even if the control plane is down.
 * - A failure on one Gateway never stops the others; errors name the object and the HTTP status.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import { AmbitError } from '../util/errors.js';
import type { Snapshot } from '../model/compile/snapshot.js';
import type { GatewayResource } from '../model/kinds/gateway-api.js';
import { WAYPOINT_GATEWAY_CLASS } from '../model/kinds/gateway-api.js';
import { LABEL_GATEWAY_NAME } from '../model/compile/types.js';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { kubeApiError, statusOf } from './kube/api-error.js';
import { apiServerOf } from './kube/kube-config.js';

export const MANAGED_BY_LABEL = 'ambit.dev/managed-by';
export const MANAGED_BY_VALUE = 'ambit-control';
export const SPEC_HASH_ANNOTATION = 'ambit.dev/spec-hash';
export const ROOT_CERT_CONFIGMAP = 'ambit-root-cert';
export const DEFAULT_WAYPOINT_IMAGE = 'ghcr.io/ambit-mesh/ambit:0.1.0';

/** A Kubernetes object as JSON. */
export type KubeObject = { apiVersion: string; kind: string; metadata: Record<string, unknown> & { name: string; namespace?: string }; [k: string]: unknown };

/** A waypoint Gateway as the deployer needs it. */
export interface WaypointGateway {
  namespace: string;
  name: string;
  /** Gateway uid (owner reference; absent in folder mode). */
  uid?: string;
  /** spec.infrastructure labels and annotations, copied onto every generated object (Gateway API). */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export class WaypointDeployError extends AmbitError {
  constructor(message: string, readonly status?: number, options?: { cause?: unknown }) {
    super('AMBIT_ERR_WAYPOINT_DEPLOY', message, options);
    this.name = 'WaypointDeployError';
  }
}

export interface RenderOptions {
  /** Image of the waypoint container (default DEFAULT_WAYPOINT_IMAGE). */
  image?: string;
  /** Control plane address the waypoint dials (default `ambit-control.ambit-system.svc:15012`). */
  controlAddress?: string;
  /** Replicas of each waypoint Deployment (default 1). */
  replicas?: number;
  /** Trust domain (default `cluster.local`). */
  trustDomain?: string;
  /** PEM roots written into each waypoint namespace's ConfigMap (default: none, `<roots>` placeholder). */
  trustBundlePem?: string[];
}

/** Gateways of class ambit-waypoint in a model snapshot. */
export function waypointGateways(snap: Snapshot): WaypointGateway[] {
  const out: WaypointGateway[] = [];
  for (const r of snap.resources('gateway.networking.k8s.io/Gateway') as readonly GatewayResource[]) {
    if (r.spec.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) continue;
    const infra = r.spec.infrastructure;
    out.push({
      namespace: r.ref.namespace, name: r.ref.name,
      ...(r.metadata.uid !== undefined ? { uid: r.metadata.uid } : {}),
      ...(infra?.labels !== undefined ? { labels: { ...infra.labels } } : {}),
      ...(infra?.annotations !== undefined ? { annotations: { ...infra.annotations } } : {}),
    });
  }
  return out;
}

function hashOf(o: unknown): string {
  return createHash('sha256').update(JSON.stringify(o)).digest('hex').slice(0, 16);
}

/** The four objects of one waypoint, in apply order. */
export function renderWaypoint(gw: WaypointGateway, opts: RenderOptions = {}): KubeObject[] {
  const image = opts.image ?? DEFAULT_WAYPOINT_IMAGE;
  const control = opts.controlAddress ?? 'ambit-control.ambit-system.svc:15012';
  const labels = {
    ...(gw.labels ?? {}),
    'app.kubernetes.io/name': gw.name,
    'app.kubernetes.io/component': 'waypoint',
    'app.kubernetes.io/part-of': 'ambit',
    [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
    [LABEL_GATEWAY_NAME]: gw.name,
  };
  const owner = gw.uid === undefined ? {} : {
    ownerReferences: [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: gw.name, uid: gw.uid }],
  };
  const meta = (name: string, extra: Record<string, string> = {}) => ({
    name, namespace: gw.namespace, labels: { ...labels, ...extra }, ...(gw.annotations !== undefined ? { annotations: { ...gw.annotations } } : {}), ...owner,
  });
  const selector = { [LABEL_GATEWAY_NAME]: gw.name, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE };
  const sa: KubeObject = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(gw.name) };
  // One per namespace, shared by its waypoints: no gateway label, no owner.
  const roots: KubeObject = {
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: ROOT_CERT_CONFIGMAP, namespace: gw.namespace, labels: { 'app.kubernetes.io/part-of': 'ambit', [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } },
    data: { 'root-cert.pem': opts.trustBundlePem !== undefined ? opts.trustBundlePem.join('') : '<roots of the mesh CA, written by the control plane>\n' },
  };
  const deployment: KubeObject = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta(gw.name),
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: { ...labels, 'ambit.dev/dataplane-mode': 'none' },
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/metrics' },
        },
        spec: {
          serviceAccountName: gw.name,
          terminationGracePeriodSeconds: 30,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'waypoint',
            image,
            imagePullPolicy: 'IfNotPresent',
            args: [
              'waypoint', `--name=${gw.namespace}/${gw.name}`, `--service-account=${gw.name}`,
              `--trust-domain=${opts.trustDomain ?? 'cluster.local'}`,
              `--control-plane=${control}`, '--trust-bundle=/etc/ambit/root/root-cert.pem',
              '--token-file=/var/run/secrets/kubernetes.io/serviceaccount/token',
            ],
            env: [{ name: 'AMBIT_LOG_LEVEL', value: 'info' }],
            ports: [
              { name: 'hbone', containerPort: 15008, protocol: 'TCP' },
              { name: 'http-metrics', containerPort: 15020, protocol: 'TCP' },
              { name: 'http-ready', containerPort: 15021, protocol: 'TCP' },
            ],
            readinessProbe: { httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 5, failureThreshold: 3 },
            livenessProbe: { tcpSocket: { port: 15020 }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 6 },
            resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            volumeMounts: [{ name: 'root-cert', mountPath: '/etc/ambit/root', readOnly: true }],
          }],
          volumes: [{ name: 'root-cert', configMap: { name: ROOT_CERT_CONFIGMAP } }],
        },
      },
    },
  };
  const service: KubeObject = {
    apiVersion: 'v1', kind: 'Service', metadata: meta(gw.name),
    spec: {
      type: 'ClusterIP',
      selector,
      ports: [
        { name: 'hbone', port: 15008, targetPort: 15008, protocol: 'TCP' },
        { name: 'http-metrics', port: 15020, targetPort: 15020, protocol: 'TCP' },
        { name: 'http-ready', port: 15021, targetPort: 15021, protocol: 'TCP' },
      ],
    },
  };
  return [sa, roots, deployment, service];
}

/** What the deployer does to one kind, through @kubernetes/client-node's typed APIs. */
export interface KindOps {
  read(ns: string, name: string): Promise<unknown>;
  create(ns: string, body: KubeObject): Promise<unknown>;
  replace(ns: string, name: string, body: Record<string, unknown>): Promise<unknown>;
  remove(ns: string, name: string): Promise<unknown>;
  /** Cluster-wide list by label selector. */
  list(labelSelector: string): Promise<{ items: { metadata?: { name?: string; namespace?: string } }[] }>;
}

/** The four kinds the deployer writes, on the library's CoreV1Api and AppsV1Api. */
export function kindOps(kc: KubeConfig): Record<string, KindOps> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  // The rendered objects are the typed models' wire form (same field names); `never` lets them through.
  return {
    ServiceAccount: {
      read: (namespace, name) => core.readNamespacedServiceAccount({ namespace, name }),
      create: (namespace, body) => core.createNamespacedServiceAccount({ namespace, body: body as never }),
      replace: (namespace, name, body) => core.replaceNamespacedServiceAccount({ namespace, name, body: body as never }),
      remove: (namespace, name) => core.deleteNamespacedServiceAccount({ namespace, name }),
      list: (labelSelector) => core.listServiceAccountForAllNamespaces({ labelSelector }),
    },
    ConfigMap: {
      read: (namespace, name) => core.readNamespacedConfigMap({ namespace, name }),
      create: (namespace, body) => core.createNamespacedConfigMap({ namespace, body: body as never }),
      replace: (namespace, name, body) => core.replaceNamespacedConfigMap({ namespace, name, body: body as never }),
      remove: (namespace, name) => core.deleteNamespacedConfigMap({ namespace, name }),
      list: (labelSelector) => core.listConfigMapForAllNamespaces({ labelSelector }),
    },
    Deployment: {
      read: (namespace, name) => apps.readNamespacedDeployment({ namespace, name }),
      create: (namespace, body) => apps.createNamespacedDeployment({ namespace, body: body as never }),
      replace: (namespace, name, body) => apps.replaceNamespacedDeployment({ namespace, name, body: body as never }),
      remove: (namespace, name) => apps.deleteNamespacedDeployment({ namespace, name }),
      list: (labelSelector) => apps.listDeploymentForAllNamespaces({ labelSelector }),
    },
    Service: {
      read: (namespace, name) => core.readNamespacedService({ namespace, name }),
      create: (namespace, body) => core.createNamespacedService({ namespace, body: body as never }),
      replace: (namespace, name, body) => core.replaceNamespacedService({ namespace, name, body: body as never }),
      remove: (namespace, name) => core.deleteNamespacedService({ namespace, name }),
      list: (labelSelector) => core.listServiceForAllNamespaces({ labelSelector }),
    },
  };
}

/** Kinds of managed objects garbage-collected per Gateway, in deletion order. */
const COLLECTED_KINDS = ['Deployment', 'Service', 'ServiceAccount'];

export interface ReconcileResult {
  created: string[];
  updated: string[];
  deleted: string[];
  unchanged: number;
  errors: string[];
}

export interface WaypointDeployerOptions extends RenderOptions {
  /** The API connection (kube/kube-config.ts). */
  kube: KubeConfig;
  /** The current model snapshot (ModelCompiler.current). */
  snapshot: () => Snapshot | undefined;
  /** The mesh roots (ControlPlane.trustBundlePem), written into each waypoint namespace. */
  roots: () => string[];
  /** Reconcile period, ms (default 10000); a snapshot change is picked up on the next tick. */
  intervalMs?: number;
  logger?: Logger;
}

function describe(o: { kind: string; metadata: { namespace?: string; name: string } }): string {
  return `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`;
}

export class WaypointDeployer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReconcileResult> | undefined;
  private lastKey: string | undefined;
  private readonly log: Logger;
  private readonly ops: Record<string, KindOps>;

  constructor(private readonly opts: WaypointDeployerOptions) {
    this.log = childLogger('control.waypoint-deployer', opts.logger);
    this.ops = kindOps(opts.kube);
  }

  /** Reconciles now and then every `intervalMs` (skipping passes when neither the gateways nor the roots changed, except every 6th for drift). */
  start(): void {
    let tick = 0;
    const run = () => {
      const snap = this.opts.snapshot();
      if (snap === undefined) return;
      const key = JSON.stringify([waypointGateways(snap), this.opts.roots()]);
      if (key === this.lastKey && tick++ % 6 !== 0) return;
      void this.reconcile().then((r) => { if (r.errors.length === 0) this.lastKey = key; });
    };
    run();
    this.timer = setInterval(run, this.opts.intervalMs ?? 10_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass: apply every waypoint's objects, delete managed objects no Gateway wants. */
  reconcile(): Promise<ReconcileResult> {
    if (this.running !== undefined) return this.running;
    this.running = this.pass().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async pass(): Promise<ReconcileResult> {
    const res: ReconcileResult = { created: [], updated: [], deleted: [], unchanged: 0, errors: [] };
    const snap = this.opts.snapshot();
    if (snap === undefined) return res;
    const gateways = waypointGateways(snap);
    const wanted = new Set<string>();
    const roots = this.opts.roots();
    for (const gw of gateways) {
      for (const obj of renderWaypoint(gw, { ...this.opts, trustBundlePem: roots })) {
        wanted.add(`${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`);
        try {
          const outcome = await this.apply(obj);
          if (outcome === 'created') res.created.push(describe(obj));
          else if (outcome === 'updated') res.updated.push(describe(obj));
          else res.unchanged++;
        } catch (err) {
          res.errors.push((err as Error).message);
        }
      }
    }
    await this.collect(wanted, res);
    // ConfigMaps are shared per namespace: delete only when no waypoint is left in the namespace.
    const namespaces = new Set(gateways.map((g) => g.namespace));
    await this.collectConfigMaps(namespaces, res);
    for (const e of res.errors) this.log.error({ err: e }, 'waypoint deployment failed; will retry');
    if (res.created.length + res.updated.length + res.deleted.length > 0) {
      this.log.info({ created: res.created, updated: res.updated, deleted: res.deleted }, 'waypoint objects reconciled');
    }
    return res;
  }

  private async apply(desired: KubeObject): Promise<'created' | 'updated' | 'unchanged'> {
    const ops = this.ops[desired.kind] as KindOps;
    const ns = desired.metadata.namespace as string;
    const name = desired.metadata.name;
    const hash = hashOf(desired);
    const body: KubeObject = { ...desired, metadata: { ...desired.metadata, annotations: { ...((desired.metadata['annotations'] as Record<string, string> | undefined) ?? {}), [SPEC_HASH_ANNOTATION]: hash } } };
    let current: { metadata?: { resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: Record<string, unknown> };
    try {
      current = await ops.read(ns, name) as typeof current;
    } catch (err) {
      if (statusOf(err) !== 404) throw this.apiError('read', desired, err);
      try {
        await ops.create(ns, body);
        return 'created';
      } catch (e) {
        if (statusOf(e) === 409) return 'unchanged'; // another replica created it meanwhile
        throw this.apiError('create', desired, e);
      }
    }
    if (current.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
      throw new WaypointDeployError(`${describe(desired)} exists but is not managed by ambit (no label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}); rename the Gateway or remove that object`);
    }
    if (current.metadata?.annotations?.[SPEC_HASH_ANNOTATION] === hash) return 'unchanged';
    const update: Record<string, unknown> = { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } };
    if (desired.kind === 'Service') {
      // clusterIP is immutable once allocated: keep what the API server chose.
      const spec = { ...(desired['spec'] as Record<string, unknown>) };
      for (const k of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy']) if (current.spec?.[k] !== undefined) spec[k] = current.spec[k];
      update['spec'] = spec;
    }
    try {
      await ops.replace(ns, name, update);
      return 'updated';
    } catch (err) {
      if (statusOf(err) === 409) return 'unchanged'; // changed under us; the next pass converges
      throw this.apiError('update', desired, err);
    }
  }

  private apiError(what: string, o: KubeObject, err: unknown): WaypointDeployError {
    const e = kubeApiError(`cannot ${what} ${describe(o)}`, apiServerOf(this.opts.kube), err);
    return new WaypointDeployError(e.message, e.status, { cause: err });
  }

  private async collect(wanted: Set<string>, res: ReconcileResult): Promise<void> {
    const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${LABEL_GATEWAY_NAME}`;
    for (const kind of COLLECTED_KINDS) {
      let items;
      try {
        items = (await (this.ops[kind] as KindOps).list(selector)).items;
      } catch (err) {
        res.errors.push(kubeApiError(`cannot list managed ${kind}s`, apiServerOf(this.opts.kube), err).message);
        continue;
      }
      for (const item of items) {
        const ns = item.metadata?.namespace ?? '';
        const name = item.metadata?.name ?? '';
        if (wanted.has(`${kind}/${ns}/${name}`)) continue;
        await this.remove(kind, ns, name, res);
      }
    }
  }

  private async collectConfigMaps(namespaces: Set<string>, res: ReconcileResult): Promise<void> {
    let items;
    try {
      items = (await (this.ops['ConfigMap'] as KindOps).list(`${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`)).items;
    } catch (err) {
      res.errors.push(kubeApiError('cannot list managed ConfigMaps', apiServerOf(this.opts.kube), err).message);
      return;
    }
    for (const item of items) {
      const ns = item.metadata?.namespace ?? '';
      if (item.metadata?.name !== ROOT_CERT_CONFIGMAP || namespaces.has(ns)) continue;
      await this.remove('ConfigMap', ns, ROOT_CERT_CONFIGMAP, res);
    }
  }

  private async remove(kind: string, ns: string, name: string, res: ReconcileResult): Promise<void> {
    try {
      await (this.ops[kind] as KindOps).remove(ns, name);
    } catch (err) {
      if (statusOf(err) !== 404) {
        res.errors.push(kubeApiError(`cannot delete ${kind} ${ns}/${name}`, apiServerOf(this.opts.kube), err).message);
        return;
      }
    }
    res.deleted.push(`${kind} ${ns}/${name}`);
  }
}
