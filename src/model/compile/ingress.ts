/**
 * Ingress gateways: a Gateway with gatewayClassName `ambit` and the HTTPRoutes whose parentRefs
 * name it, compiled into what `ambit waypoint --ingress` serves: per listener port, the
 * protocol, the TLS certificates by SNI host (as references to Secrets, never their content),
 * and one route table in which every route carries the hostnames it serves as an authority
 * match, so one router picks by Host and path together.
 *
 * Semantics kept from the Gateway API:
 * - A route attaches to a listener when its parentRef names the Gateway (group
 *   gateway.networking.k8s.io, kind Gateway: the defaults), optionally the listener
 *   (`sectionName`) or its `port`, when the listener's allowedRoutes let the route's namespace in
 *   (`Same`, the default, or `All`), and when its hostnames intersect the listener's hostname.
 * - The hostnames a route serves on a listener are that intersection: both absent is any host;
 *   one absent is the other's; `*.example.com` and `a.example.com` intersect in `a.example.com`.
 * - Precedence across the routes of a port: the most specific hostname first (exact, then the
 *   longest wildcard, then any host), then the path rules of GAMMA routing (routes.ts).
 * - The certificate of an HTTPS listener is the first certificateRef whose Secret exists and has
 *   type kubernetes.io/tls; listeners without a hostname serve the default certificate.
 *
 * Istio's Gateway (networking.istio.io) is served the same way: each server (port, hosts, tls
 * SIMPLE with credentialName) is a listener; VirtualServices whose `gateways` name it (`ns/name`,
 * or `name` from its own namespace) attach where their hosts intersect a server's hosts and the
 * server's `ns/` prefix admits their namespace (`*` any, `.` the Gateway's); their routes keep
 * their order, exact hosts before wildcards. Its pods are those its `selector` matches.
 *
 * Invariant: nothing here holds key material; the control plane reads the Secret when it builds
 * the one ingress's view (src/control/projection.ts).
 */
import type { ResourceRef } from '../diagnostics.js';
import { INGRESS_GATEWAY_CLASS, type GatewayResource, type HttpRouteResource } from '../kinds/gateway-api.js';
import { TLS_SECRET_TYPE, type SecretResource } from '../kinds/core.js';
import type { IstioGatewayResource } from '../kinds/istio-gateway.js';
import type { VirtualServiceResource } from '../kinds/networking.js';
import { resolveHost } from './hosts.js';
import { virtualServiceRoutes } from './routes.js';
import { matchesLabels } from './selectors.js';
import { refKey } from '../resource.js';
import { gwRule, precedence, type HostContext } from './routes.js';
import { compareAge } from './selectors.js';
import type { Route, RouteMatch, Workload } from './types.js';

export interface IngressListener {
  readonly name: string;
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly hostname: string | undefined;
  /** HTTPS: `namespace/name` of the Secret that serves it; undefined when none of its certificateRefs exists. */
  readonly certificate: string | undefined;
}

/** What one listening port of the ingress serves. */
export interface IngressPort {
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  /** Routes in evaluation order, each restricted to its hostnames by an authority match. */
  readonly routes: readonly Route[];
  /** HTTPS: certificates by SNI host (`undefined`: the default), most specific first. */
  readonly certificates: readonly { readonly hostname: string | undefined; readonly secret: string }[];
}

export interface IngressGateway {
  /** `namespace/name` of the Gateway. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly listeners: readonly IngressListener[];
  readonly ports: readonly IngressPort[];
  /** Pods serving it (label gateway.networking.k8s.io/gateway-name), by key. */
  readonly workloads: readonly string[];
  /** The service account it runs as: its pods', else the Gateway's name (as a waypoint). */
  readonly serviceAccount: string;
  /** The HTTPRoutes attached to at least one listener. */
  readonly routeSources: readonly ResourceRef[];
  readonly source: ResourceRef;
}

export interface IngressInputs {
  readonly gateways: readonly GatewayResource[];
  readonly routes: readonly HttpRouteResource[];
  /** Istio Gateways and the VirtualServices that may bind to them (default none). */
  readonly istioGateways?: readonly IstioGatewayResource[];
  readonly virtualServices?: readonly VirtualServiceResource[];
  /** Every workload (for Istio Gateway selectors; default none). */
  readonly workloads?: () => readonly Workload[];
  secret(namespace: string, name: string): SecretResource | undefined;
  workloadsInNamespace(namespace: string): readonly Workload[];
}

const SERVED = new Set(['HTTP', 'HTTPS']);

/** Whether a Gateway is an ambit ingress gateway. */
export function isIngressGateway(gw: GatewayResource): boolean {
  return gw.spec.gatewayClassName === INGRESS_GATEWAY_CLASS;
}

/** The intersection of a route hostname and a listener hostname (Gateway API rules), or undefined. */
export function intersectHost(route: string, listener: string): string | undefined {
  if (route === listener) return route;
  const covers = (wild: string, h: string) => wild.startsWith('*.') && h.endsWith(wild.slice(1)) && h.length > wild.length - 1;
  if (covers(listener, route)) return route;
  if (covers(route, listener)) return listener;
  return undefined;
}

/** Hostnames a route serves on a listener: `[undefined]` is any host; `[]` is none (not attached). */
function routeHosts(routeHostnames: readonly string[], listener: string | undefined): (string | undefined)[] {
  if (routeHostnames.length === 0) return [listener];
  if (listener === undefined) return [...routeHostnames];
  const out = new Set<string>();
  for (const h of routeHostnames) {
    const x = intersectHost(h, listener);
    if (x !== undefined) out.add(x);
  }
  return [...out];
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The authority match of a hostname: the host, any port; `*.x` is one or more labels before `.x`. */
export function hostAuthorityMatch(host: string): RouteMatch['authority'] {
  const body = host.startsWith('*.') ? `[^.:/]+(?:\\.[^.:/]+)*${escapeRe(host.slice(1))}` : escapeRe(host);
  return { type: 'regex', value: `${body}(?::[0-9]+)?` };
}

const ANY_MATCH: Omit<RouteMatch, 'authority'> = { path: undefined, ignorePathCase: false, method: undefined, scheme: undefined, headers: [], queryParams: [], port: undefined };

function restrict(r: Route, host: string | undefined): Route {
  if (host === undefined) return r;
  const authority = hostAuthorityMatch(host);
  const matches = r.matches.length === 0 ? [{ ...ANY_MATCH, authority }] : r.matches.map((m) => ({ ...m, authority }));
  return { ...r, matches };
}

function hostRank(host: string | undefined): number[] {
  if (host === undefined) return [0, 0];
  return host.startsWith('*.') ? [1, host.length] : [2, host.length];
}

function attaches(hr: HttpRouteResource, gw: GatewayResource, l: GatewayResource['spec']['listeners'][number]): boolean {
  const from = l.allowedRoutes?.namespaces?.from ?? 'Same';
  if (from !== 'All' && hr.ref.namespace !== gw.ref.namespace) return false;
  const kinds = l.allowedRoutes?.kinds;
  if (kinds !== undefined && !kinds.some((k) => k.kind === 'HTTPRoute' && (k.group ?? 'gateway.networking.k8s.io') === 'gateway.networking.k8s.io')) return false;
  return (hr.spec.parentRefs ?? []).some((p) =>
    (p.group ?? 'gateway.networking.k8s.io') === 'gateway.networking.k8s.io' &&
    (p.kind ?? 'Gateway') === 'Gateway' &&
    p.name === gw.ref.name &&
    (p.namespace ?? hr.ref.namespace) === gw.ref.namespace &&
    (p.sectionName === undefined || p.sectionName === l.name) &&
    (p.port === undefined || p.port === l.port));
}

function buildOne(gw: GatewayResource, inputs: IngressInputs, ctx: HostContext): IngressGateway {
  const ns = gw.ref.namespace;
  const listeners: IngressListener[] = [];
  for (const l of gw.spec.listeners) {
    if (!SERVED.has(l.protocol)) continue;
    const protocol = l.protocol as 'HTTP' | 'HTTPS';
    let certificate: string | undefined;
    if (protocol === 'HTTPS') {
      for (const ref of l.tls?.certificateRefs ?? []) {
        if ((ref.group ?? '') !== '' || (ref.kind ?? 'Secret') !== 'Secret') continue;
        const sns = ref.namespace ?? ns;
        const s = inputs.secret(sns, ref.name);
        if (s !== undefined && s.spec.type === TLS_SECRET_TYPE) {
          certificate = `${sns}/${ref.name}`;
          break;
        }
      }
    }
    listeners.push(Object.freeze({ name: l.name, port: l.port, protocol, hostname: l.hostname, certificate }));
  }
  const routes = [...inputs.routes].sort(compareAge);
  const sources = new Map<string, ResourceRef>();
  const ports: IngressPort[] = [];
  for (const port of [...new Set(listeners.map((l) => l.port))].sort((a, b) => a - b)) {
    const on = listeners.filter((l) => l.port === port);
    const specs = gw.spec.listeners.filter((l) => l.port === port && SERVED.has(l.protocol));
    const ranked: { route: Route; rank: number[] }[] = [];
    for (const hr of routes) {
      const hosts = new Set<string | undefined>();
      for (const l of specs) if (attaches(hr, gw, l)) for (const h of routeHosts(hr.spec.hostnames ?? [], l.hostname)) hosts.add(h);
      if (hosts.size === 0) continue;
      sources.set(hr.key, hr.ref);
      (hr.spec.rules ?? []).forEach((rule, ri) => {
        const count = rule.matches?.length ?? 0;
        const parts = count === 0 ? [gwRule(hr, ri, undefined, rule, undefined, ctx)] : Array.from({ length: count }, (_, mi) => gwRule(hr, ri, mi, rule, undefined, ctx));
        for (const h of hosts) for (const r of parts) ranked.push({ route: restrict(r, h), rank: [...hostRank(h), ...precedence(r)] });
      });
    }
    // Stable sort: ties keep route age and rule order.
    ranked.sort((a, b) => {
      for (let i = 0; i < a.rank.length; i++) {
        const d = (b.rank[i] ?? 0) - (a.rank[i] ?? 0);
        if (d !== 0) return d;
      }
      return 0;
    });
    const certificates = on
      .filter((l) => l.certificate !== undefined)
      .map((l) => ({ hostname: l.hostname, secret: l.certificate as string }))
      .sort((a, b) => hostRank(b.hostname)[0]! - hostRank(a.hostname)[0]! || hostRank(b.hostname)[1]! - hostRank(a.hostname)[1]!);
    const first = on[0] as IngressListener;
    ports.push(Object.freeze({ port, protocol: first.protocol, routes: Object.freeze(ranked.map((r) => r.route)), certificates: Object.freeze(certificates) }));
  }
  const serving = inputs.workloadsInNamespace(ns).filter((w) => w.waypointFor === gw.ref.name);
  return Object.freeze({
    key: `${ns}/${gw.ref.name}`,
    name: gw.ref.name,
    namespace: ns,
    listeners: Object.freeze(listeners),
    ports: Object.freeze(ports),
    workloads: Object.freeze(serving.map((w) => w.key)),
    serviceAccount: serving[0]?.serviceAccount ?? gw.ref.name,
    routeSources: Object.freeze([...sources.values()]),
    source: gw.ref,
  });
}

/** Whether a VirtualService's `gateways` name the Istio Gateway `gw`. */
export function vsBindsGateway(vs: VirtualServiceResource, gw: { ref: { namespace: string; name: string } }): boolean {
  return (vs.spec.gateways ?? []).some((g) => {
    const slash = g.indexOf('/');
    const ns = slash === -1 ? vs.ref.namespace : g.slice(0, slash);
    const name = slash === -1 ? g : g.slice(slash + 1);
    return ns === gw.ref.namespace && name === gw.ref.name;
  });
}

/** A server host `ns/host`: which VirtualService namespaces it admits, and the host. */
function serverHost(h: string, gwNamespace: string): { ns: string | undefined; host: string } {
  const slash = h.indexOf('/');
  if (slash === -1) return { ns: undefined, host: h };
  const ns = h.slice(0, slash);
  return { ns: ns === '*' ? undefined : ns === '.' ? gwNamespace : ns, host: h.slice(slash + 1) };
}

function istioHostIntersect(a: string, b: string): string | undefined {
  if (a === '*') return b;
  if (b === '*') return a;
  return intersectHost(a, b);
}

function buildIstio(gw: IstioGatewayResource, inputs: IngressInputs, ctx: HostContext): IngressGateway {
  const ns = gw.ref.namespace;
  const servers = (gw.spec.servers ?? []).filter((sv) => ['HTTP', 'HTTPS', 'HTTP2', 'GRPC'].includes(sv.port.protocol));
  const listeners: IngressListener[] = servers.map((sv, i) => {
    const protocol: 'HTTP' | 'HTTPS' = sv.port.protocol === 'HTTPS' ? 'HTTPS' : 'HTTP';
    let certificate: string | undefined;
    const cred = sv.tls?.credentialName;
    if (protocol === 'HTTPS' && cred !== undefined && (sv.tls?.mode ?? 'SIMPLE') === 'SIMPLE') {
      const sec = inputs.secret(ns, cred);
      if (sec !== undefined && sec.spec.type === TLS_SECRET_TYPE) certificate = `${ns}/${cred}`;
    }
    const hosts = sv.hosts.map((h) => serverHost(h, ns).host);
    const single = hosts.length === 1 && hosts[0] !== '*' ? hosts[0] : undefined;
    return Object.freeze({ name: sv.name ?? `server-${i}`, port: sv.port.number, protocol, hostname: single, certificate });
  });
  const vss = [...(inputs.virtualServices ?? [])].filter((vs) => vsBindsGateway(vs, gw)).sort(compareAge);
  const sources = new Map<string, ResourceRef>();
  const ports: IngressPort[] = [];
  for (const port of [...new Set(listeners.map((l) => l.port))].sort((a, b) => a - b)) {
    const on = servers.filter((sv) => sv.port.number === port);
    const ranked: { route: Route; rank: number[] }[] = [];
    for (const vs of vss) {
      const hosts = new Set<string>();
      for (const sv of on) {
        for (const raw of sv.hosts) {
          const sh = serverHost(raw, ns);
          if (sh.ns !== undefined && sh.ns !== vs.ref.namespace) continue;
          for (const h of vs.spec.hosts ?? []) {
            const x = istioHostIntersect(resolveHost(h, vs.ref.namespace, ctx.clusterDomain), sh.host);
            if (x !== undefined) hosts.add(x);
          }
        }
      }
      if (hosts.size === 0) continue;
      sources.set(vs.key, vs.ref);
      const routes = virtualServiceRoutes(vs, ctx);
      for (const h of hosts) for (const r of routes) ranked.push({ route: restrict(r, h === '*' ? undefined : h), rank: hostRank(h === '*' ? undefined : h).slice(0, 1) });
    }
    ranked.sort((a, b) => (b.rank[0] ?? 0) - (a.rank[0] ?? 0));
    const certificates: { hostname: string | undefined; secret: string }[] = [];
    for (const [i, sv] of servers.entries()) {
      const l = listeners[i] as IngressListener;
      if (sv.port.number !== port || l.certificate === undefined) continue;
      for (const raw of sv.hosts) {
        const h = serverHost(raw, ns).host;
        certificates.push({ hostname: h === '*' ? undefined : h, secret: l.certificate });
      }
    }
    certificates.sort((a, b) => hostRank(b.hostname)[0]! - hostRank(a.hostname)[0]! || hostRank(b.hostname)[1]! - hostRank(a.hostname)[1]!);
    const first = listeners.find((l) => l.port === port) as IngressListener;
    ports.push(Object.freeze({ port, protocol: first.protocol, routes: Object.freeze(ranked.map((r) => r.route)), certificates: Object.freeze(certificates) }));
  }
  const selector = gw.spec.selector ?? {};
  const serving = Object.keys(selector).length === 0 ? [] : (inputs.workloads?.() ?? []).filter((w) => matchesLabels(selector, w.labels));
  return Object.freeze({
    key: `${ns}/${gw.ref.name}`,
    name: gw.ref.name,
    namespace: ns,
    listeners: Object.freeze(listeners),
    ports: Object.freeze(ports),
    workloads: Object.freeze(serving.map((w) => w.key)),
    serviceAccount: serving[0]?.serviceAccount ?? gw.ref.name,
    routeSources: Object.freeze([...sources.values()]),
    source: gw.ref,
  });
}

/**
 * Every ingress gateway of the resources, by key order: Gateway API Gateways of class `ambit`,
 * and Istio Gateways (one with the key of a Gateway API Gateway gives way to it).
 */
export function buildIngresses(inputs: IngressInputs, ctx: HostContext): IngressGateway[] {
  const out = inputs.gateways.filter(isIngressGateway).map((gw) => buildOne(gw, inputs, ctx));
  const taken = new Set(inputs.gateways.map((g) => `${g.ref.namespace}/${g.ref.name}`));
  for (const gw of inputs.istioGateways ?? []) if (!taken.has(`${gw.ref.namespace}/${gw.ref.name}`)) out.push(buildIstio(gw, inputs, ctx));
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** `refKey` of a Secret by namespace and name. */
export function secretKey(namespace: string, name: string): string {
  return refKey({ group: '', kind: 'Secret', namespace, name });
}
