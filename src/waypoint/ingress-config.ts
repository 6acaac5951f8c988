/**
 * An ingress gateway's configuration from its discovery view: the INGRESS resource (listener
 * ports, routes, TLS certificates, the AuthorizationPolicies that select the gateway's pods), the
 * global SERVICE and WORKLOAD resources (route destinations and their endpoints), and the
 * AuthorizationPolicies whose targetRefs name the gateway. Each listening port becomes one ServiceBinding of the waypoint engine, addressed by
 * the ingress's listen address and the port, so the same router, policy and forwarder serve it.
 *
 * Invariants: a view that cannot be fully understood throws (the push is nacked, the last good
 * configuration keeps serving); key material stays in the returned value, never in a message.
 */
import { compileAuthorizationPolicy } from '../model/authz/compile.js';
import type { AuthorizationPolicySpec } from '../model/authz/types.js';
import type { MeshService, Route, Workload } from '../model/compile/types.js';
import type { LocalView } from '../discovery/local-view.js';
import { WaypointConfig, type ServiceBinding, type WaypointServiceInfo, type WorkloadInfo } from './config.js';
import { WaypointError } from './errors.js';
import type { PathNormalization } from './request-target.js';

/** A certificate of an HTTPS port, for clients whose SNI matches `hostname` (null: the default). */
export interface IngressCertificate {
  readonly hostname: string | null;
  /** `namespace/name` of the Secret it came from (for logs). */
  readonly secret: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface IngressPortConfig {
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly certificates: readonly IngressCertificate[];
}

export interface IngressConfig {
  readonly waypoint: WaypointConfig;
  /** The ports to listen on, each with its binding in `waypoint` at (listen host, port). */
  readonly ports: readonly IngressPortConfig[];
}

export interface IngressViewOptions {
  /** `namespace/name` of the ingress Gateway. */
  gateway: string;
  /** The address the ingress listens on: the destination address of its bindings. */
  listenHost: string;
  pathNormalization?: PathNormalization;
}

type TargetRef = { group?: string; kind?: string; name?: string; namespace?: string };

interface IngressPayload {
  key?: string;
  /** AuthorizationPolicies selecting the gateway's pods, as written. */
  policies?: { namespace?: unknown; name?: unknown; spec?: unknown }[];
  ports?: { port?: unknown; protocol?: unknown; routes?: unknown; certificates?: unknown }[];
}

/** What a port without routes answers: 404, as a Gateway listener with no attached route. */
function noRoute(gateway: string, port: number): Route {
  const [namespace, name] = gateway.split('/') as [string, string];
  return {
    source: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace, name },
    path: `port ${port}`,
    name: undefined,
    matches: [],
    action: { type: 'direct-response', status: 404, body: 'no route attached to this listener\n' },
    timeoutMs: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: [],
    rewrite: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
  };
}

/** The ingress's WaypointConfig and listening ports; throws WaypointError on a payload it cannot use. */
export function ingressFromView(view: LocalView, o: IngressViewOptions): IngressConfig {
  const bad = (what: string): never => {
    throw new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', `discovery view: ${what} is not in the expected shape; keeping the previous configuration`);
  };
  const slash = o.gateway.indexOf('/');
  const namespace = o.gateway.slice(0, slash);
  const name = o.gateway.slice(slash + 1);
  const services: WaypointServiceInfo[] = [];
  for (const [key, v] of view.all('SERVICE')) {
    const s = v as Partial<MeshService>;
    if (typeof s.hostname !== 'string' || !Array.isArray(s.ports) || !Array.isArray(s.endpoints)) bad(`SERVICE '${key}'`);
    services.push({ key: s.key ?? key, name: s.name ?? '', namespace: s.namespace ?? '', hostname: s.hostname as string, vips: s.vips ?? [], ports: s.ports ?? [], endpoints: s.endpoints ?? [], labels: s.labels ?? {} });
  }
  const workloads: WorkloadInfo[] = [];
  for (const [key, v] of view.all('WORKLOAD')) {
    const w = v as Partial<Workload>;
    if (typeof w.identity !== 'string') bad(`WORKLOAD '${key}'`);
    workloads.push({ key: w.key ?? key, name: w.name ?? '', namespace: w.namespace ?? '', identity: w.identity as string, labels: w.labels ?? {}, enrolled: w.enrolled === true, ...(typeof w.ip === 'string' ? { ip: w.ip } : {}) });
  }
  const authorization = [];
  for (const [key, v] of view.all('AUTHORIZATION_POLICY')) {
    const p = v as { namespace?: string; name?: string; spec?: AuthorizationPolicySpec & { targetRef?: TargetRef; targetRefs?: TargetRef[] } };
    if (typeof p.namespace !== 'string' || typeof p.name !== 'string' || p.spec === undefined) bad(`AUTHORIZATION_POLICY '${key}'`);
    const spec = p.spec as AuthorizationPolicySpec & { targetRef?: TargetRef; targetRefs?: TargetRef[] };
    const refs = [...(spec.targetRef !== undefined ? [spec.targetRef] : []), ...(spec.targetRefs ?? [])];
    if (!refs.some((r) => r.kind === 'Gateway' && `${r.namespace ?? p.namespace}/${r.name ?? ''}` === o.gateway)) continue;
    authorization.push(compileAuthorizationPolicy({ namespace: p.namespace as string, name: p.name as string }, spec));
  }
  const payload = view.get('INGRESS', o.gateway) as IngressPayload | undefined;
  for (const p of payload?.policies ?? []) {
    if (typeof p.namespace !== 'string' || typeof p.name !== 'string' || typeof p.spec !== 'object' || p.spec === null) bad(`INGRESS '${o.gateway}' policy`);
    const key = `${p.namespace as string}/${p.name as string}`;
    if (!authorization.some((a) => a.key === key)) authorization.push(compileAuthorizationPolicy({ namespace: p.namespace as string, name: p.name as string }, p.spec as AuthorizationPolicySpec));
  }
  authorization.sort((a, b) => (a.key < b.key ? -1 : 1));
  const bound: ServiceBinding[] = [];
  const ports: IngressPortConfig[] = [];
  for (const p of payload?.ports ?? []) {
    if (typeof p.port !== 'number' || (p.protocol !== 'HTTP' && p.protocol !== 'HTTPS') || !Array.isArray(p.routes) || !Array.isArray(p.certificates)) bad(`INGRESS '${o.gateway}'`);
    const port = p.port as number;
    const certificates = (p.certificates as Partial<IngressCertificate>[]).map((c) => {
      if (typeof c.certPem !== 'string' || typeof c.keyPem !== 'string' || typeof c.secret !== 'string') bad(`INGRESS '${o.gateway}' certificate of port ${port}`);
      return Object.freeze({ hostname: typeof c.hostname === 'string' ? c.hostname : null, secret: c.secret as string, certPem: c.certPem as string, keyPem: c.keyPem as string });
    });
    ports.push(Object.freeze({ port, protocol: p.protocol as 'HTTP' | 'HTTPS', certificates: Object.freeze(certificates) }));
    bound.push({
      service: {
        key: `${o.gateway}:${port}`,
        name,
        namespace,
        // Not a resolvable name: it only keys the binding and names it in logs and metrics.
        hostname: `${name}.${namespace}.ingress:${port}`,
        vips: [o.listenHost],
        ports: [{ name: `${(p.protocol as string).toLowerCase()}-${port}`, port, targetPort: port, protocol: 'TCP', appProtocol: 'http' }],
        endpoints: [],
        labels: {},
      },
      routes: (p.routes as Route[]).length > 0 ? (p.routes as Route[]) : [noRoute(o.gateway, port)],
      destinationPolicy: undefined,
      authorization,
      requestAuthentication: [],
      rateLimits: [],
    });
  }
  const waypoint = new WaypointConfig({ bound, others: services, workloads, version: `${view.epoch}@${view.version}`, ...(o.pathNormalization !== undefined ? { pathNormalization: o.pathNormalization } : {}) });
  return { waypoint, ports };
}
