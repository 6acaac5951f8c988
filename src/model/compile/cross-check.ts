/**
 * Cross-reference checks over a compiled Snapshot: the problems no single object shows. Each
 * diagnostic points at the field that makes the reference (a route's `destination.host`, a
 * namespace's `ambit.dev/use-waypoint` label) when the object came from a file.
 *
 * Checks: routes and DestinationRules to unknown hosts, subsets and ports; HTTPRoute parents and
 * backends; policy selectors matching nothing; Services selecting no pods; named targetPorts a
 * pod lacks; bindings to missing waypoints; waypoints without pods; more than one mesh-wide
 * PeerAuthentication; competing VirtualServices/DestinationRules/PeerAuthentications; pods on
 * unknown nodes; duplicate pod and Service IPs; namespaces and ServiceAccounts not defined;
 * selector policies with L7 rules on workloads without a waypoint.
 */
import { describeRef, formatPath, severityOf, type Diagnostic, type DiagnosticCode, type FieldPath, type Severity } from '../diagnostics.js';
import type { HttpRouteResource, GatewayResource } from '../kinds/gateway-api.js';
import { WAYPOINT_GATEWAY_CLASS } from '../kinds/gateway-api.js';
import type { PodResource, ServiceResource, NamespaceResource } from '../kinds/core.js';
import type { DestinationRuleResource, VirtualServiceResource, VsDestinationSpec } from '../kinds/networking.js';
import type { AuthorizationPolicyResource, PeerAuthenticationResource } from '../kinds/security.js';
import type { Resource } from '../resource.js';
import { destinationRulesFor } from './destination-policy.js';
import { isWildcard, resolveHost, shortFormHint, hostMatches } from './hosts.js';
import {
  KIND_AUTHORIZATION_POLICY,
  KIND_DESTINATION_RULE,
  KIND_GATEWAY,
  KIND_HTTP_ROUTE,
  KIND_NAMESPACE,
  KIND_PEER_AUTHENTICATION,
  KIND_POD,
  KIND_REQUEST_AUTHENTICATION,
  KIND_SERVICE,
  KIND_SERVICE_ACCOUNT,
  KIND_VIRTUAL_SERVICE,
} from './resource-index.js';
import { virtualServicesFor } from './routes.js';
import { compareAge, isEmptySelector, matchesLabels } from './selectors.js';
import type { Snapshot } from './snapshot.js';
import { LABEL_USE_WAYPOINT, type WaypointBinding, type Workload } from './types.js';

/** Namespaces Kubernetes always has; objects in them need no Namespace object. */
const BUILTIN_NAMESPACES = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease']);

class Reporter {
  readonly out: Diagnostic[] = [];

  add(r: Resource, path: FieldPath, code: DiagnosticCode, message: string, severity: Severity = severityOf(code)): void {
    const d: Diagnostic = { severity, code, message: `${describeRef(r.ref)}: ${message}`, resource: r.ref };
    if (path.length > 0) d.path = formatPath(path);
    if (r.origin !== undefined) {
      d.file = r.origin.file;
      const pos = r.origin.locate(path, code === 'AMBIT_REF_UNKNOWN_WAYPOINT');
      d.line = pos?.line ?? r.origin.line;
      d.column = pos?.column ?? r.origin.column;
    }
    this.out.push(d);
  }
}

const sorted = <R extends Resource>(l: R[]): R[] => l.sort((a, b) => (a.key < b.key ? -1 : 1));

export function crossCheck(snap: Snapshot): Diagnostic[] {
  const rep = new Reporter();
  const res = snap.state.resources;
  const opts = snap.options;
  const domain = opts.clusterDomain;
  const root = opts.rootNamespace;
  const drs = sorted(res.list<DestinationRuleResource>(KIND_DESTINATION_RULE));
  const vss = sorted(res.list<VirtualServiceResource>(KIND_VIRTUAL_SERVICE));
  const workloadsIn = (ns: string): readonly Workload[] => (ns === root ? snap.workloads() : snap.workloadsInNamespace(ns));

  const subsetsOf = (host: string): Set<string> | undefined => {
    const dr = destinationRulesFor(drs, host, domain)[0];
    return dr === undefined ? undefined : new Set((dr.spec.subsets ?? []).map((s) => s.name));
  };

  // ---- VirtualServices: hosts, destinations, subsets, ports, conflicts
  const checkDestination = (vs: VirtualServiceResource, d: VsDestinationSpec, path: FieldPath): void => {
    const host = resolveHost(d.host, vs.ref.namespace, domain);
    const svc = snap.serviceByHost(host);
    if (svc === undefined) {
      const hint = shortFormHint(d.host, domain);
      rep.add(vs, [...path, 'host'], 'AMBIT_REF_UNKNOWN_HOST', `destination host ${d.host}${host !== d.host ? ` (${host})` : ''} is not a Service in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
      return;
    }
    if (d.subset !== undefined) {
      const subsets = subsetsOf(host);
      if (subsets === undefined) rep.add(vs, [...path, 'subset'], 'AMBIT_REF_UNKNOWN_SUBSET', `subset ${d.subset} of ${host}: no DestinationRule defines subsets for this host`);
      else if (!subsets.has(d.subset)) rep.add(vs, [...path, 'subset'], 'AMBIT_REF_UNKNOWN_SUBSET', `subset ${d.subset} is not defined by the DestinationRule of ${host} (it has: ${[...subsets].join(', ') || 'none'})`);
    }
    if (d.port !== undefined && !svc.ports.some((p) => p.port === d.port?.number)) {
      rep.add(vs, [...path, 'port', 'number'], 'AMBIT_REF_UNKNOWN_PORT', `port ${d.port.number} is not a port of Service ${svc.key} (ports: ${svc.ports.map((p) => p.port).join(', ')})`);
    }
  };
  for (const vs of vss) {
    vs.spec.hosts.forEach((h, i) => {
      const full = resolveHost(h, vs.ref.namespace, domain);
      if (isWildcard(full)) {
        if (!snap.services().some((s) => hostMatches(full, s.hostname))) rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_UNKNOWN_HOST', `host ${h} matches no Service in the mesh`);
        return;
      }
      const svc = snap.serviceByHost(full);
      if (svc === undefined) {
        const hint = shortFormHint(h, domain);
        rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_UNKNOWN_HOST', `host ${h}${full !== h ? ` (${full})` : ''} is not a Service in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
        return;
      }
      const winner = virtualServicesFor(vss, full, domain)[0];
      if (svc.routeSources.length > 0 && !svc.routeSources.some((r) => r.kind === 'VirtualService' && r.namespace === vs.ref.namespace && r.name === vs.ref.name)) {
        const by = svc.routeSources[0];
        const why = by?.kind === 'HTTPRoute' ? `HTTPRoute ${by.namespace}/${by.name} routes it (HTTPRoutes take precedence)` : `VirtualService ${winner?.ref.namespace}/${winner?.ref.name} is older and wins`;
        rep.add(vs, ['spec', 'hosts', i], 'AMBIT_REF_CONFLICT', `host ${full} is ignored here: ${why}`);
      }
    });
    (vs.spec.http ?? []).forEach((r, i) => {
      (r.route ?? []).forEach((d, j) => checkDestination(vs, d.destination, ['spec', 'http', i, 'route', j, 'destination']));
      if (r.mirror !== undefined) checkDestination(vs, r.mirror, ['spec', 'http', i, 'mirror']);
      (r.mirrors ?? []).forEach((m, j) => checkDestination(vs, m.destination, ['spec', 'http', i, 'mirrors', j, 'destination']));
    });
  }

  // ---- DestinationRules: host, subsets with no pods, conflicts
  for (const dr of drs) {
    const full = resolveHost(dr.spec.host, dr.ref.namespace, domain);
    if (isWildcard(full)) continue;
    const svc = snap.serviceByHost(full);
    if (svc === undefined) {
      const hint = shortFormHint(dr.spec.host, domain);
      rep.add(dr, ['spec', 'host'], 'AMBIT_REF_UNKNOWN_HOST', `host ${dr.spec.host}${full !== dr.spec.host ? ` (${full})` : ''} is not a Service in the mesh${hint !== undefined ? `; ${hint}` : ''}`);
      continue;
    }
    const winner = destinationRulesFor(drs, full, domain)[0];
    if (winner !== undefined && winner.key !== dr.key) {
      rep.add(dr, ['spec', 'host'], 'AMBIT_REF_CONFLICT', `DestinationRule ${winner.ref.namespace}/${winner.ref.name} also configures ${full} and wins (older, or exact host); this one is ignored`);
    }
    const pods = svc.endpoints;
    (dr.spec.subsets ?? []).forEach((s, i) => {
      if (svc.selector !== undefined && !pods.some((e) => matchesLabels(s.labels ?? {}, e.labels))) {
        rep.add(dr, ['spec', 'subsets', i, 'labels'], 'AMBIT_REF_SUBSET_NO_PODS', `subset ${s.name} matches no ready pod of Service ${svc.key}`);
      }
    });
  }

  // ---- HTTPRoutes: parents and backends
  for (const hr of sorted(res.list<HttpRouteResource>(KIND_HTTP_ROUTE))) {
    (hr.spec.parentRefs ?? []).forEach((p, i) => {
      const kind = p.kind ?? 'Gateway';
      if (kind === 'Service' && (p.group ?? '') === '') {
        const key = `${p.namespace ?? hr.ref.namespace}/${p.name}`;
        const svc = snap.service(key);
        if (svc === undefined) rep.add(hr, ['spec', 'parentRefs', i, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `parent Service ${key} does not exist`);
        else if (p.port !== undefined && !svc.ports.some((sp) => sp.port === p.port)) rep.add(hr, ['spec', 'parentRefs', i, 'port'], 'AMBIT_REF_UNKNOWN_PORT', `Service ${key} has no port ${p.port}`);
      } else {
        rep.add(hr, ['spec', 'parentRefs', i], 'AMBIT_SCHEMA_UNIMPLEMENTED', `parentRef ${kind} ${p.name}: only Service parents (GAMMA mesh routing) are implemented; ingress Gateways are not`);
      }
    });
    (hr.spec.rules ?? []).forEach((rule, ri) => {
      (rule.backendRefs ?? []).forEach((b, bi) => {
        const path = ['spec', 'rules', ri, 'backendRefs', bi];
        if ((b.kind ?? 'Service') !== 'Service' || (b.group ?? '') !== '') {
          rep.add(hr, path, 'AMBIT_SCHEMA_UNIMPLEMENTED', `backend ${b.kind ?? ''} ${b.name}: only Service backends are implemented`);
          return;
        }
        const key = `${b.namespace ?? hr.ref.namespace}/${b.name}`;
        const svc = snap.service(key);
        if (svc === undefined) rep.add(hr, [...path, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `backend Service ${key} does not exist`);
        else if (b.port === undefined) rep.add(hr, path, 'AMBIT_SCHEMA_REQUIRED', `backendRef to Service ${key} needs a port`);
        else if (!svc.ports.some((sp) => sp.port === b.port)) rep.add(hr, [...path, 'port'], 'AMBIT_REF_UNKNOWN_PORT', `Service ${key} has no port ${b.port} (ports: ${svc.ports.map((p) => p.port).join(', ')})`);
      });
    });
  }

  // ---- Services: selectors matching nothing, named target ports, waypoints, duplicate VIPs
  const svcResources = new Map(res.list<ServiceResource>(KIND_SERVICE).map((s) => [`${s.ref.namespace}/${s.ref.name}`, s]));
  const vipOwner = new Map<string, string>();
  for (const svc of snap.services()) {
    const r = svcResources.get(svc.key);
    if (r === undefined) continue;
    if (!isEmptySelector(svc.selector) && !snap.workloadsInNamespace(svc.namespace).some((w) => matchesLabels(svc.selector ?? {}, w.labels))) {
      rep.add(r, ['spec', 'selector'], 'AMBIT_REF_SERVICE_NO_PODS', `selector ${JSON.stringify(svc.selector)} matches no pod in namespace ${svc.namespace}`);
    }
    svc.ports.forEach((p, i) => {
      if (typeof p.targetPort !== 'string') return;
      const missing = svc.endpoints.filter((e) => e.ports[p.port] === undefined).map((e) => e.workload);
      if (missing.length > 0) rep.add(r, ['spec', 'ports', i, 'targetPort'], 'AMBIT_REF_UNKNOWN_TARGET_PORT', `targetPort ${p.targetPort} is not a named container port of ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}`);
    });
    checkBinding(r, svc.waypointTarget, svc.waypoint, 'service');
    for (const vip of svc.vips) {
      const other = vipOwner.get(vip);
      if (other !== undefined) rep.add(r, ['spec', 'clusterIP'], 'AMBIT_REF_DUPLICATE_IP', `cluster IP ${vip} is also used by Service ${other}`);
      else vipOwner.set(vip, svc.key);
    }
  }

  function checkBinding(r: Resource, target: WaypointBinding | undefined, resolved: WaypointBinding | undefined, via: WaypointBinding['via']): void {
    if (target === undefined || resolved !== undefined || target.via !== via) return;
    rep.add(r, ['metadata', 'labels', LABEL_USE_WAYPOINT], 'AMBIT_REF_UNKNOWN_WAYPOINT', `bound to waypoint ${target.namespace}/${target.name}, but there is no Gateway ${target.namespace}/${target.name} with gatewayClassName ${WAYPOINT_GATEWAY_CLASS}`);
  }

  // ---- Namespaces: waypoint bindings
  const namespaces = sorted(res.list<NamespaceResource>(KIND_NAMESPACE));
  for (const ns of namespaces) {
    const label = ns.metadata.labels?.[LABEL_USE_WAYPOINT];
    if (label === undefined || label === 'none' || label === '') continue;
    const wns = ns.metadata.labels?.['ambit.dev/use-waypoint-namespace'] ?? ns.ref.name;
    const gw = res.getByKey(KIND_GATEWAY, `gateway.networking.k8s.io/Gateway/${wns}/${label}`) as GatewayResource | undefined;
    if (gw === undefined || gw.spec.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) {
      rep.add(ns, ['metadata', 'labels', LABEL_USE_WAYPOINT], 'AMBIT_REF_UNKNOWN_WAYPOINT', `bound to waypoint ${wns}/${label}, but there is no Gateway ${wns}/${label} with gatewayClassName ${WAYPOINT_GATEWAY_CLASS}`);
    }
  }

  // ---- Waypoints without pods
  for (const wp of snap.waypoints()) {
    if (wp.workloads.length === 0) {
      const gw = snap.resource(wp.source);
      if (gw !== undefined) rep.add(gw, ['metadata', 'name'], 'AMBIT_REF_WAYPOINT_NO_PODS', `no pod has label gateway.networking.k8s.io/gateway-name=${wp.name} in namespace ${wp.namespace}, so nothing serves this waypoint`);
    }
  }

  // ---- Pods: nodes, duplicate IPs, service accounts, waypoint bindings
  const pods = new Map(res.list<PodResource>(KIND_POD).map((p) => [`${p.ref.namespace}/${p.ref.name}`, p]));
  const serviceAccounts = new Set(res.list(KIND_SERVICE_ACCOUNT).map((s) => `${s.ref.namespace}/${s.ref.name}`));
  for (const w of snap.workloads()) {
    const pod = pods.get(w.key);
    if (pod === undefined) continue;
    if (w.node !== undefined && snap.node(w.node) === undefined) {
      rep.add(pod, ['spec', 'nodeName'], 'AMBIT_REF_UNKNOWN_NODE', `scheduled on node ${w.node}, which is not defined (no Node object)`);
    }
    for (const ip of w.ips) {
      const same = snap.workloadsByIp(ip);
      if (same.length > 1 && same[0]?.key !== w.key) rep.add(pod, ['status', 'podIP'], 'AMBIT_REF_DUPLICATE_IP', `pod IP ${ip} is also used by pod ${same[0]?.key}`);
    }
    if (w.serviceAccount !== 'default' && !serviceAccounts.has(`${w.namespace}/${w.serviceAccount}`)) {
      rep.add(pod, ['spec', 'serviceAccountName'], 'AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT', `ServiceAccount ${w.serviceAccount} is not defined in namespace ${w.namespace}`);
    }
    checkBinding(pod, w.waypointTarget, w.waypoint, 'pod');
  }

  // ---- Namespaces that are used but not defined
  const definedNs = new Set(namespaces.map((n) => n.ref.name));
  const reportedNs = new Set<string>();
  for (const r of snap.allResources()) {
    const ns = r.ref.namespace;
    if (ns === '' || definedNs.has(ns) || BUILTIN_NAMESPACES.has(ns) || ns === root || reportedNs.has(ns)) continue;
    reportedNs.add(ns);
    rep.add(r, ['metadata', 'namespace'], 'AMBIT_REF_UNKNOWN_NAMESPACE', `namespace ${ns} is not defined (no Namespace object): its pods are not enrolled and no waypoint is bound`);
  }

  // ---- Policy selectors
  const selectorPolicies = [
    ...res.list<PeerAuthenticationResource>(KIND_PEER_AUTHENTICATION),
    ...res.list<AuthorizationPolicyResource>(KIND_AUTHORIZATION_POLICY),
    ...res.list(KIND_REQUEST_AUTHENTICATION),
  ] as Resource<{ selector?: { matchLabels?: Record<string, string> }; targetRef?: { kind: string; name: string; group?: string }; targetRefs?: { kind: string; name: string; group?: string }[] }>[];
  for (const p of sorted(selectorPolicies)) {
    const sel = p.spec.selector?.matchLabels;
    if (!isEmptySelector(sel)) {
      const ws = p.ref.namespace === root && p.kind !== 'PeerAuthentication' ? snap.workloads() : snap.workloadsInNamespace(p.ref.namespace);
      if (!ws.some((w) => matchesLabels(sel ?? {}, w.labels))) {
        rep.add(p, ['spec', 'selector', 'matchLabels'], 'AMBIT_REF_SELECTOR_NO_MATCH', `selector ${JSON.stringify(sel)} matches no pod${p.ref.namespace === root ? '' : ` in namespace ${p.ref.namespace}`}`);
      }
    }
    const refs = p.spec.targetRefs ?? (p.spec.targetRef !== undefined ? [p.spec.targetRef] : []);
    refs.forEach((t, i) => {
      const path = p.spec.targetRefs !== undefined ? ['spec', 'targetRefs', i] : ['spec', 'targetRef'];
      const group = t.group ?? '';
      if (t.kind === 'Service' && (group === '' || group === 'core')) {
        if (snap.service(`${p.ref.namespace}/${t.name}`) === undefined) rep.add(p, [...path, 'name'], 'AMBIT_REF_UNKNOWN_SERVICE', `targetRef Service ${p.ref.namespace}/${t.name} does not exist`);
      } else if (t.kind === 'Gateway') {
        if (snap.waypoint(`${p.ref.namespace}/${t.name}`) === undefined) rep.add(p, [...path, 'name'], 'AMBIT_REF_UNKNOWN_WAYPOINT', `targetRef Gateway ${p.ref.namespace}/${t.name} is not a waypoint (no Gateway with gatewayClassName ${WAYPOINT_GATEWAY_CLASS})`);
      }
    });
  }

  // ---- PeerAuthentication: mesh-wide uniqueness, namespace-level conflicts
  const pas = res.list<PeerAuthenticationResource>(KIND_PEER_AUTHENTICATION);
  const nsWide = new Map<string, PeerAuthenticationResource[]>();
  for (const pa of pas) {
    if (!isEmptySelector(pa.spec.selector?.matchLabels)) continue;
    const l = nsWide.get(pa.ref.namespace) ?? [];
    l.push(pa);
    nsWide.set(pa.ref.namespace, l);
  }
  for (const [ns, list] of nsWide) {
    if (list.length < 2) continue;
    const [first, ...rest] = list.sort(compareAge);
    for (const pa of rest) {
      if (ns === root) rep.add(pa, ['metadata', 'name'], 'AMBIT_POLICY_MULTIPLE_MESH_PEER_AUTHN', `more than one mesh-wide PeerAuthentication in ${root} (${first?.ref.name} is older and wins); keep one`);
      else rep.add(pa, ['metadata', 'name'], 'AMBIT_REF_CONFLICT', `namespace ${ns} has another namespace-wide PeerAuthentication (${first?.ref.name}, older, wins)`);
    }
  }

  // ---- L7 rules on selector policies for workloads without a waypoint
  for (const policy of snap.authorizationPolicies()) {
    if (policy.hasTargetRefs || !policy.hasL7) continue;
    const r = snap.resource({ group: 'security.istio.io', kind: 'AuthorizationPolicy', namespace: policy.ref.namespace, name: policy.ref.name });
    if (r === undefined) continue;
    const affected = workloadsIn(policy.ref.namespace).filter((w) => w.authorization.includes(policy) && !snap.hasWaypoint(w));
    if (affected.length === 0) continue;
    const names = affected.slice(0, 3).map((w) => w.key).join(', ') + (affected.length > 3 ? ` and ${affected.length - 3} more` : '');
    const effect = policy.action === 'ALLOW' ? 'its L7 rules never match at L4, so they allow nothing' : policy.action === 'DENY' ? 'its L7 rules are enforced at L4 as if they matched (fail closed: connections are denied)' : 'its L7 rules cannot be evaluated';
    rep.add(r, ['spec', 'rules'], 'AMBIT_POLICY_L7_WITHOUT_WAYPOINT', `has L7 rules but ${names} ${affected.length === 1 ? 'has' : 'have'} no waypoint: ${effect}; bind a waypoint (label ambit.dev/use-waypoint) or use targetRefs`);
  }

  return rep.out;
}
