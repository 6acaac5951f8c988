/**
 * The agent's read-only index of its discovery view: workloads by address, services by VIP,
 * waypoints, namespaces, and the L4 policies of local workloads compiled with the model's own
 * functions (src/model/authz, src/model/compile/peer-authentication.ts), so enforcement has
 * exactly the model's semantics.
 *
 * Invariants:
 * - A MeshState is immutable; the agent builds a new one for every applied push and swaps it in
 *   atomically, so one connection is resolved and authorized against one consistent view.
 * - Building reuses what did not change: a view resource that kept its object identity keeps its
 *   compiled policy (the cache is keyed by the parsed object).
 * - Telemetry (TELEMETRY) is resolved per local workload with the model's precedence
 *   (src/model/compile/telemetry.ts), once per view and workload; `telemetryFor` hands the
 *   connection tracker precomputed settings (compiled filters, per-metric decisions).
 * - `outboundTrafficPolicy` is the pushed MESH_CONFIG's mode; a view without one (an older control
 *   plane) means ALLOW_ANY, what agents did before the setting existed.
 * - A resource the agent cannot use (a policy that does not compile) is skipped and listed in
 *   `problems`; for an AuthorizationPolicy that means fail closed: a DENY or ALLOW policy that
 *   cannot be evaluated turns into one that denies everything it selects (never a silent allow).
 */
import type { LocalView } from '../discovery/local-view.js';
import type { MeshService, Workload, EffectiveMtls } from '../model/compile/types.js';
import { compileAuthorizationPolicy, policyAppliesTo } from '../model/authz/compile.js';
import type { AuthorizationPolicySpec, AuthzPolicy } from '../model/authz/types.js';
import { effectiveMtls, peerAuthnScope } from '../model/compile/peer-authentication.js';
import type { PeerAuthenticationResource } from '../model/kinds/security.js';
import { DEFAULT_TELEMETRY, effectiveTelemetry, workloadLevels, type EffectiveTelemetry, type TelemetryPolicy } from '../model/compile/telemetry.js';
import { parseCidr, parseIp, prefixLength, type ParsedCidr } from '../util/cidr.js';

export type OutboundTrafficPolicyMode = 'ALLOW_ANY' | 'REGISTRY_ONLY';

function within(c: ParsedCidr, ip: string): boolean {
  const p = parseIp(ip);
  if (p === undefined || p.family !== c.family) return false;
  if (p.family === 4 && c.family === 4) return p.v4 >= c.lo && p.v4 <= c.hi;
  if (p.family === 6 && c.family === 6) {
    for (let i = 0; i < 4; i++) {
      const w = p.v6[i] as number;
      if (w < (c.lo[i] as number) || w > (c.hi[i] as number)) return false;
    }
    return true;
  }
  return false;
}

/** A workload as distributed to agents (the model's Workload without per-node policy fields). */
export type WorkloadView = Omit<Workload, 'authorization' | 'mtls'>;
/** A service as distributed to agents (without the L7 parts only waypoints use). */
export type ServiceView = Omit<MeshService, 'routes' | 'routeSources' | 'destinationPolicy' | 'rateLimits'>;

/** A waypoint and the services bound to it (discovery kind WAYPOINT_BINDING). */
export interface WaypointView {
  key: string;
  name: string;
  namespace: string;
  ports: readonly number[];
  addresses: readonly string[];
  workloads: readonly string[];
  serviceAccount: string;
  services: readonly string[];
}

/** AuthorizationPolicy / PeerAuthentication as distributed: the validated spec as written. */
interface PolicyView {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  spec: unknown;
}

export interface MeshStateOptions {
  /** This agent's node name (required). */
  node: string;
  /** Istio root namespace: its selector-less policies are mesh-wide (default `istio-system`). */
  rootNamespace?: string;
  /** Trust domain for identities the view does not spell out, e.g. waypoints' (default `cluster.local`). */
  trustDomain?: string;
}

const compiled = new WeakMap<object, AuthzPolicy>();

function compilePolicy(v: PolicyView, problems: string[]): AuthzPolicy {
  const hit = compiled.get(v);
  if (hit !== undefined) return hit;
  const ref = { namespace: v.namespace, name: v.name };
  let p: AuthzPolicy;
  try {
    p = compileAuthorizationPolicy(ref, v.spec as AuthorizationPolicySpec);
  } catch (err) {
    problems.push(`AuthorizationPolicy ${v.namespace}/${v.name} cannot be evaluated (${(err as Error).message}); it denies every connection it selects until fixed`);
    const spec = v.spec as { selector?: AuthorizationPolicySpec['selector'] } | null;
    p = compileAuthorizationPolicy(ref, { ...(spec?.selector ? { selector: spec.selector } : {}), action: 'DENY', rules: [{}] });
  }
  compiled.set(v, p);
  return p;
}

export class MeshState {
  readonly version: number;
  readonly node: string;
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly workloads = new Map<string, WorkloadView>();
  readonly workloadsByIp = new Map<string, WorkloadView>();
  readonly services = new Map<string, ServiceView>();
  readonly servicesByVip = new Map<string, ServiceView>();
  readonly waypoints = new Map<string, WaypointView>();
  readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  /** Mesh-wide: what happens to connections to destinations outside the registry (default ALLOW_ANY). */
  readonly outboundTrafficPolicy: OutboundTrafficPolicyMode;
  /** ServiceEntry CIDR blocks (`addresses` with a prefix), longest prefix first. */
  private readonly serviceRanges: { cidr: ParsedCidr; bits: number; service: ServiceView }[] = [];
  readonly authorizationPolicies: readonly AuthzPolicy[];
  readonly problems: string[] = [];
  private readonly peerAuthentications: PeerAuthenticationResource[] = [];
  private readonly policyCache = new Map<string, readonly AuthzPolicy[]>();
  private readonly mtlsCache = new Map<string, EffectiveMtls>();
  private readonly telemetries: TelemetryPolicy[] = [];
  private readonly telemetryCache = new Map<string, EffectiveTelemetry>();

  constructor(view: Pick<LocalView, 'all' | 'version'>, opts: MeshStateOptions) {
    this.version = view.version;
    this.node = opts.node;
    this.rootNamespace = opts.rootNamespace ?? 'istio-system';
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    for (const [key, raw] of view.all('WORKLOAD')) {
      const w = raw as WorkloadView;
      this.workloads.set(key, w);
      for (const ip of w.ips ?? (w.ip ? [w.ip] : [])) this.workloadsByIp.set(ip, w);
    }
    for (const [key, raw] of view.all('SERVICE')) {
      const s = raw as ServiceView;
      this.services.set(key, s);
      for (const vip of s.vips ?? (s.vip ? [s.vip] : [])) this.servicesByVip.set(vip, s);
      for (const r of s.serviceEntry?.addressRanges ?? []) {
        const cidr = parseCidr(r);
        if (cidr !== undefined) this.serviceRanges.push({ cidr, bits: prefixLength(cidr), service: s });
      }
    }
    this.serviceRanges.sort((a, b) => b.bits - a.bits);
    const mode = (view.all('MESH_CONFIG').get('mesh') as { outboundTrafficPolicy?: { mode?: unknown } } | undefined)?.outboundTrafficPolicy?.mode;
    this.outboundTrafficPolicy = mode === 'REGISTRY_ONLY' ? 'REGISTRY_ONLY' : 'ALLOW_ANY';
    if (mode !== undefined && mode !== 'REGISTRY_ONLY' && mode !== 'ALLOW_ANY') this.problems.push(`MESH_CONFIG outboundTrafficPolicy.mode ${JSON.stringify(mode)} is unknown; using ALLOW_ANY`);
    for (const [key, raw] of view.all('WAYPOINT_BINDING')) this.waypoints.set(key, raw as WaypointView);
    for (const [name, raw] of view.all('NAMESPACE')) this.namespaces.set(name, (raw as { labels?: Record<string, string> }).labels ?? {});
    const authz: AuthzPolicy[] = [];
    for (const raw of view.all('AUTHORIZATION_POLICY').values()) authz.push(compilePolicy(raw as PolicyView, this.problems));
    this.authorizationPolicies = authz;
    for (const raw of view.all('TELEMETRY').values()) {
      const v = raw as TelemetryPolicy;
      if (typeof v?.namespace === 'string' && typeof v.name === 'string' && typeof v.spec === 'object' && v.spec !== null) this.telemetries.push(v);
      else this.problems.push('a TELEMETRY resource is not in the expected shape; it is ignored');
    }
    for (const raw of view.all('PEER_AUTHENTICATION').values()) {
      const v = raw as PolicyView;
      this.peerAuthentications.push({
        apiVersion: 'security.istio.io/v1', group: 'security.istio.io', version: 'v1', kind: 'PeerAuthentication',
        ref: { group: 'security.istio.io', kind: 'PeerAuthentication', namespace: v.namespace, name: v.name },
        key: `security.istio.io/PeerAuthentication/${v.namespace}/${v.name}`,
        metadata: { name: v.name, namespace: v.namespace, labels: v.labels },
        spec: v.spec as PeerAuthenticationResource['spec'],
        status: undefined,
      });
    }
  }

  /**
   * Effective Telemetry of a workload by key (DEFAULT_TELEMETRY for an unknown one, or when a
   * Telemetry cannot be compiled: that is listed in `problems`, and the defaults log and count).
   */
  telemetryFor(workloadKey: string): EffectiveTelemetry {
    if (this.telemetries.length === 0) return DEFAULT_TELEMETRY;
    const hit = this.telemetryCache.get(workloadKey);
    if (hit !== undefined) return hit;
    const w = this.workloads.get(workloadKey);
    let t = DEFAULT_TELEMETRY;
    if (w !== undefined) {
      try {
        t = effectiveTelemetry(workloadLevels(this.telemetries, w, this.rootNamespace));
      } catch (err) {
        this.problems.push(`Telemetry for ${workloadKey} cannot be applied (${(err as Error).message}); using the defaults`);
      }
    }
    this.telemetryCache.set(workloadKey, t);
    return t;
  }

  /** The service of a destination address: a VIP, else the ServiceEntry CIDR block with the longest prefix. */
  serviceByAddress(ip: string): ServiceView | undefined {
    const exact = this.servicesByVip.get(ip);
    if (exact !== undefined || this.serviceRanges.length === 0) return exact;
    return this.serviceRanges.find((r) => within(r.cidr, ip))?.service;
  }

  /** Workloads scheduled on this node. */
  localWorkloads(): WorkloadView[] {
    const out: WorkloadView[] = [];
    for (const w of this.workloads.values()) if (w.node === this.node) out.push(w);
    return out;
  }

  /**
   * The AuthorizationPolicies enforced for a workload, in the model's order (root namespace
   * without selector, namespace without selector, then selector matches), targetRef policies
   * excluded (waypoints enforce those).
   */
  policiesFor(w: Pick<WorkloadView, 'key' | 'namespace' | 'labels'>): readonly AuthzPolicy[] {
    const hit = this.policyCache.get(w.key);
    if (hit !== undefined) return hit;
    const root = this.rootNamespace;
    const applies = this.authorizationPolicies.filter((p) => policyAppliesTo(p, w, root));
    const rank = (p: AuthzPolicy): number => {
      const wide = Object.keys(p.matchLabels).length === 0;
      if (p.ref.namespace === root) return wide ? 0 : 2;
      return wide ? 1 : 3;
    };
    const out = applies.sort((a, b) => rank(a) - rank(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.policyCache.set(w.key, out);
    return out;
  }

  /** Effective PeerAuthentication of a workload (default PERMISSIVE). */
  mtlsFor(w: Pick<WorkloadView, 'key' | 'namespace' | 'labels'>): EffectiveMtls {
    const hit = this.mtlsCache.get(w.key);
    if (hit !== undefined) return hit;
    const m = effectiveMtls(peerAuthnScope(this.peerAuthentications, w.namespace, this.rootNamespace), w.labels);
    this.mtlsCache.set(w.key, m);
    return m;
  }

  /** SPIFFE ID of a waypoint (the service account its pods run as). */
  waypointIdentity(wp: WaypointView): string {
    return `spiffe://${this.trustDomain}/ns/${wp.namespace}/sa/${wp.serviceAccount}`;
  }

  /** The waypoint bound by `binding`, when it is declared and has a ready address. */
  waypointFor(binding: { namespace: string; name: string } | undefined): WaypointView | undefined {
    if (binding === undefined) return undefined;
    const wp = this.waypoints.get(`${binding.namespace}/${binding.name}`);
    return wp !== undefined && wp.addresses.length > 0 ? wp : undefined;
  }
}

/** An empty state (before the first view). */
export function emptyMeshState(opts: MeshStateOptions): MeshState {
  return new MeshState({ version: 0, all: () => new Map() }, opts);
}
