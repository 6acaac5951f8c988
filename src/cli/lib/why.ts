/**
 * `ambit why SRC DST[:PORT]`: what happens to one connection (or, with a method and path, one
 * HTTP request), step by step: is the source captured (enrollment), where does its agent send
 * it (service, endpoint, waypoint), which route the waypoint picks, which policy and rule
 * decide, and whether the hop is mutual TLS.
 *
 * The explanation runs the data path's own code on the mesh: the agent's MeshState, Resolver
 * and decideInbound (L4, PeerAuthentication), the waypoint's configFromView, selectRoute and the
 * model's evaluateAuthorization (L7). So `why` and the cluster agree by construction, not by a
 * second implementation of the rules.
 *
 * Invariants: never throws for a well-formed query against any mesh (unknown names are a
 * CliError with the candidates); the verdict is `allow` only if every endpoint the connection may
 * reach allows it (a service whose endpoints disagree is reported endpoint by endpoint).
 */
import type { LocalView } from '../../discovery/local-view.js';
import { MeshState, type ServiceView, type WorkloadView } from '../../agent/mesh-state.js';
import { Resolver, type Candidate } from '../../agent/resolve.js';
import { decideInbound, mtlsModeFor } from '../../agent/inbound-policy.js';
import { configFromView } from '../../waypoint/view-config.js';
import { portProtocol } from '../../waypoint/config.js';
import { selectRoute } from '../../waypoint/router.js';
import { evaluateAuthorization } from '../../model/authz/evaluate.js';
import type { Decision } from '../../model/authz/types.js';
import { LABEL_DATAPLANE_MODE } from '../../model/compile/types.js';
import { normalizeRequestTarget } from '../../waypoint/request-target.js';
import { CliError } from './errors.js';

export interface WhyQuery {
  /** `namespace/pod`, a pod name, or an IP address. */
  source: string;
  /** `namespace/pod`, a pod name, a service host (`name.namespace[.svc.cluster.local]`), or an IP. */
  destination: string;
  /** Destination port (default: the service's or pod's only port). */
  port?: number;
  /** HTTP method and path for the L7 part (default GET /). */
  method?: string;
  path?: string;
}

export interface WhyOptions {
  /** Istio root namespace (default istio-system). */
  rootNamespace?: string;
  /** Trust domain (default cluster.local). */
  trustDomain?: string;
  /** HBONE port of the agents (default 15008). */
  hbonePort?: number;
}

export type Verdict = 'allow' | 'deny' | 'no-route';

export interface WhyResult {
  verdict: Verdict;
  /** Where the deciding check ran. */
  layer: 'L4' | 'L7' | 'none';
  /** `namespace/name` of the deciding policy (or PeerAuthentication), when one decided. */
  decidedBy: string | undefined;
  /** Whether the hop into the destination is mutual TLS (HBONE). */
  mtls: boolean;
  steps: string[];
}

type Endpoint = { kind: 'workload'; w: WorkloadView } | { kind: 'external'; ip: string };

function isIp(s: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(s) || (s.includes(':') && /^[0-9a-f:.]+$/i.test(s));
}

function findWorkload(state: MeshState, ref: string): WorkloadView | undefined {
  if (ref.includes('/')) return state.workloads.get(ref);
  const matches = [...state.workloads.values()].filter((w) => w.name === ref);
  if (matches.length > 1) throw new CliError('AMBIT_ERR_CLI_USAGE', `'${ref}' names ${matches.length} pods (${matches.map((w) => w.key).join(', ')}); say which with namespace/name`);
  return matches[0];
}

function findService(state: MeshState, ref: string): ServiceView | undefined {
  const host = ref.replace(/\.$/, '');
  for (const s of state.services.values()) {
    if (s.hostname === host || `${s.name}.${s.namespace}` === host || `${s.name}.${s.namespace}.svc` === host || s.key === host) return s;
  }
  return undefined;
}

function enrollmentReason(state: MeshState, w: WorkloadView): string {
  const nsLabel = state.namespaces.get(w.namespace)?.[LABEL_DATAPLANE_MODE];
  const podLabel = w.labels[LABEL_DATAPLANE_MODE];
  if (w.enrolled) {
    return podLabel === 'ambient' ? `pod labelled ${LABEL_DATAPLANE_MODE}=ambient` : `namespace ${w.namespace} labelled ${LABEL_DATAPLANE_MODE}=ambient`;
  }
  if (podLabel === 'none') return `pod opted out (${LABEL_DATAPLANE_MODE}=none)`;
  if (w.waypointFor !== undefined) return `it serves waypoint ${w.namespace}/${w.waypointFor}`;
  if (nsLabel === undefined) return `namespace ${w.namespace} has no ${LABEL_DATAPLANE_MODE} label`;
  return `namespace ${w.namespace} is labelled ${LABEL_DATAPLANE_MODE}=${nsLabel}`;
}

/**
 * The capture rule for plaintext into an enrolled pod (bpf/capture.bpf.c "Narrow bypass", "Fail
 * closed"; src/ebpf/local-bypass.ts): `why` cannot know whether a connection was opened on the
 * node, so it states the rule; the verdict that follows is the one for captured plaintext.
 */
function inboundBypassStep(w: WorkloadView): string {
  const node = w.node ?? 'its node';
  return `capture of ${w.key}: only a connection opened by a process on ${node} itself from one of its addresses (the kubelet's probes) ` +
    `reaches the app without the agent; plaintext from anywhere else, including traffic that ${node} forwards or masquerades to its own address, ` +
    `goes to the agent, and while the agent on ${node} is down it is refused (fail closed)`;
}

function policyName(d: Decision): string | undefined {
  return d.policy === undefined ? undefined : `${d.policy.namespace}/${d.policy.name}`;
}

function describeDecision(d: Decision): string {
  const rule = d.ruleIndex !== undefined ? ` rule ${d.ruleIndex}` : '';
  switch (d.code) {
    case 'DENY_MATCHED': return `DENY: AuthorizationPolicy ${policyName(d)}${rule} matches (${d.reason})`;
    case 'ALLOW_MATCHED': return `ALLOW: AuthorizationPolicy ${policyName(d)}${rule} matches (${d.reason})`;
    case 'ALLOW_NO_MATCH': return `DENY: ALLOW policies apply but none matches (${d.reason})`;
    case 'NO_ALLOW_POLICY': return `ALLOW: no DENY matches and no ALLOW policy applies (${d.reason})`;
  }
}

/** Explains what happens to traffic from `q.source` to `q.destination` in the mesh of `view`. */
export function explain(view: LocalView, q: WhyQuery, opts: WhyOptions = {}): WhyResult {
  const base = { ...(opts.rootNamespace !== undefined ? { rootNamespace: opts.rootNamespace } : {}), ...(opts.trustDomain !== undefined ? { trustDomain: opts.trustDomain } : {}) };
  const global = new MeshState(view, { node: '', ...base });
  const stateOf = (node: string | undefined) => new MeshState(view, { node: node ?? '', ...base });
  const steps: string[] = [];
  const step = (s: string) => steps.push(s);

  // 1. The source.
  let src: WorkloadView | undefined;
  let srcIp: string;
  if (isIp(q.source)) {
    srcIp = q.source;
    src = global.workloadsByIp.get(q.source);
  } else {
    src = findWorkload(global, q.source);
    if (src === undefined) throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `no pod '${q.source}' in the mesh (pods: ${[...global.workloads.keys()].slice(0, 10).join(', ')}${global.workloads.size > 10 ? ', ...' : ''})`);
    if (src.ip === undefined) throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `pod ${src.key} has no address yet`);
    srcIp = src.ip;
  }
  const captured = src !== undefined && src.enrolled && src.waypointFor === undefined;
  if (src === undefined) step(`source ${srcIp} is not a pod of the mesh: its traffic is not captured and arrives as plaintext`);
  else step(`source ${src.key} (${srcIp}, node ${src.node ?? '?'}, identity ${src.identity}): ${captured ? `captured — ${enrollmentReason(global, src)}; the agent on ${src.node} takes its connections (outbound 15001)` : `not captured — ${enrollmentReason(global, src)}; its connections leave as plaintext`}`);

  // 2. The destination.
  let dstIp: string;
  let svc: ServiceView | undefined;
  let dstW: WorkloadView | undefined;
  if (isIp(q.destination)) {
    dstIp = q.destination;
    svc = global.servicesByVip.get(dstIp);
    dstW = svc === undefined ? global.workloadsByIp.get(dstIp) : undefined;
  } else {
    dstW = q.destination.includes('/') ? global.workloads.get(q.destination) : undefined;
    svc = dstW === undefined ? findService(global, q.destination) : undefined;
    if (dstW === undefined && svc === undefined) dstW = findWorkload(global, q.destination);
    if (dstW === undefined && svc === undefined) throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `no service or pod '${q.destination}' in the mesh (services: ${[...global.services.values()].map((s) => s.hostname).slice(0, 8).join(', ')})`);
    if (svc !== undefined) {
      if (svc.vip === undefined) throw new CliError('AMBIT_ERR_CLI_USAGE', `service ${svc.key} is headless; ask about one of its pods instead`);
      dstIp = svc.vip;
    } else {
      if (dstW?.ip === undefined) throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `pod ${dstW?.key} has no address yet`);
      dstIp = dstW.ip;
    }
  }
  let port = q.port;
  if (port === undefined) {
    const ports = svc !== undefined ? svc.ports.map((p) => p.port) : dstW !== undefined ? [...new Set(Object.values(dstW.namedPorts))] : [];
    if (ports.length !== 1) throw new CliError('AMBIT_ERR_CLI_USAGE', `say which port: ${q.destination}:PORT${ports.length > 0 ? ` (it has ${ports.join(', ')})` : ''}`);
    port = ports[0] as number;
  }
  const dst = { address: dstIp, port };
  if (svc !== undefined) step(`destination ${dstIp}:${port} is service ${svc.key} (${svc.hostname})${svc.waypoint !== undefined ? `, bound to waypoint ${svc.waypoint.namespace}/${svc.waypoint.name}` : ''}`);
  else if (dstW !== undefined) step(`destination ${dstIp}:${port} is pod ${dstW.key} on ${dstW.node ?? '?'} (${dstW.enrolled ? 'in the mesh' : `not in the mesh: ${enrollmentReason(global, dstW)}`})`);
  else step(`destination ${dstIp}:${port} is outside the mesh`);

  // 3. Where the connection goes.
  let candidates: { c: Candidate | undefined; endpoint: Endpoint; port: number }[];
  if (captured && src !== undefined) {
    const r = new Resolver({ ...(opts.hbonePort !== undefined ? { hbonePort: opts.hbonePort } : {}), maxAttempts: 1 });
    const srcState = stateOf(src.node);
    if (svc !== undefined && svc.waypoint === undefined) {
      // Every ready endpoint may be picked: resolve once per endpoint (round robin walks them all).
      const ready = svc.endpoints.filter((e) => e.ready && e.ports[port] !== undefined);
      candidates = [];
      for (let i = 0; i < Math.max(1, ready.length); i++) {
        const res = r.resolve(srcState, src, dst);
        if (res.candidates.length === 0) {
          step(`the agent on ${src.node} has no route: ${res.reason ?? 'no candidate'}; it resets the connection`);
          return { verdict: 'no-route', layer: 'none', decidedBy: undefined, mtls: false, steps };
        }
        const c = res.candidates[0] as Candidate;
        candidates.push({ c, endpoint: c.workload !== undefined ? { kind: 'workload', w: c.workload } : { kind: 'external', ip: c.kind === 'hbone' ? c.address.address : c.target.address }, port: c.kind === 'hbone' ? c.authority.port : c.target.port });
      }
    } else {
      const res = r.resolve(srcState, src, dst);
      if (res.candidates.length === 0) {
        step(`the agent on ${src.node} has no route: ${res.reason ?? 'no candidate'}; it resets the connection`);
        return { verdict: 'no-route', layer: 'none', decidedBy: undefined, mtls: false, steps };
      }
      const c = res.candidates[0] as Candidate;
      candidates = [{ c, endpoint: c.workload !== undefined ? { kind: 'workload', w: c.workload } : { kind: 'external', ip: dstIp }, port }];
    }
  } else if (svc !== undefined) {
    // Not captured: kube-proxy (not ambit) picks an endpoint; each arrives as plaintext.
    const ready = svc.endpoints.filter((e) => e.ready && e.ports[port] !== undefined);
    step(`not captured, so ambit does not load-balance: the cluster's service proxy picks one of ${ready.length} ready endpoint(s)`);
    candidates = ready.map((e) => {
      const w = global.workloads.get(e.workload);
      return { c: undefined, endpoint: w !== undefined ? { kind: 'workload' as const, w } : { kind: 'external' as const, ip: e.ip }, port: e.ports[port] as number };
    });
    if (candidates.length === 0) {
      step(`service ${svc.key} has no ready endpoint for port ${port}`);
      return { verdict: 'no-route', layer: 'none', decidedBy: undefined, mtls: false, steps };
    }
  } else {
    candidates = [{ c: undefined, endpoint: dstW !== undefined ? { kind: 'workload', w: dstW } : { kind: 'external', ip: dstIp }, port }];
  }

  // 4. Each hop's checks.
  const outcomes: { verdict: Verdict; layer: WhyResult['layer']; decidedBy: string | undefined; mtls: boolean }[] = [];
  for (const { c, endpoint, port: p } of candidates) {
    if (c !== undefined && c.kind === 'hbone' && c.waypoint !== undefined) {
      outcomes.push(throughWaypoint(view, global, stateOf, src as WorkloadView, srcIp, svc, dst, c, q, step, base.rootNamespace));
      continue;
    }
    if (endpoint.kind === 'external' || !endpoint.w.enrolled) {
      const what = endpoint.kind === 'external' ? endpoint.ip : `${endpoint.w.key} (not in the mesh)`;
      step(c !== undefined ? `the agent passes the connection through to ${what} as plain TCP (no mTLS, no mesh policy)` : `${what}: no agent is involved; plain TCP`);
      outcomes.push({ verdict: 'allow', layer: 'none', decidedBy: undefined, mtls: false });
      continue;
    }
    const w = endpoint.w;
    const dstState = stateOf(w.node);
    const principal = c !== undefined ? (src as WorkloadView).identity : undefined;
    const how = c === undefined ? `plaintext to ${w.key} lands on its inbound plaintext listener (15006) on ${w.node}`
      : c.kind === 'local' ? `${w.key} is on the same node: delivered in-process by the agent on ${w.node}, as mutual TLS identity ${principal}`
        : `HBONE (HTTP/2 CONNECT over mutual TLS) from the agent on ${(src as WorkloadView).node} to ${w.ip}:15008, the agent on ${w.node}; client identity ${principal}`;
    step(how);
    if (c === undefined) step(inboundBypassStep(w));
    const m = mtlsModeFor(dstState, w, p);
    step(`PeerAuthentication for ${w.key} port ${p}: ${m.mode} (${m.policy})${principal === undefined ? (m.mode === 'STRICT' ? ' — plaintext is refused' : ' — plaintext is admitted') : ''}`);
    const verdict = decideInbound(dstState, w, w.ip ?? '', p, { principal, ip: srcIp });
    const policies = dstState.policiesFor(w);
    if (verdict.allow) {
      step(`L4 authorization at ${w.node} for ${w.key}: ${verdict.decision === undefined ? `no AuthorizationPolicy selects ${w.key}: allowed` : describeDecision(verdict.decision)}`);
      outcomes.push({ verdict: 'allow', layer: verdict.decision === undefined ? 'none' : 'L4', decidedBy: verdict.decision !== undefined ? policyName(verdict.decision) : undefined, mtls: principal !== undefined });
    } else if (verdict.kind === 'strict_mtls') {
      step(`refused: ${verdict.reason}`);
      outcomes.push({ verdict: 'deny', layer: 'L4', decidedBy: verdict.policy, mtls: false });
    } else {
      const d = evaluateAuthorization(policies, { source: { ...(principal !== undefined ? { principal } : {}), ip: srcIp }, destination: { ip: w.ip ?? '', port: p, namespace: w.namespace, labels: w.labels } }, { layer: 'L4', rootNamespace: dstState.rootNamespace });
      step(`L4 authorization at ${w.node} for ${w.key}: ${describeDecision(d)} — the agent refuses the connection`);
      outcomes.push({ verdict: 'deny', layer: 'L4', decidedBy: verdict.policy, mtls: principal !== undefined });
    }
  }
  const first = outcomes[0] as (typeof outcomes)[number];
  const mixed = outcomes.some((o) => o.verdict !== first.verdict);
  if (mixed) step('endpoints disagree: whether the connection is allowed depends on which endpoint is picked');
  const deny = outcomes.find((o) => o.verdict === 'deny');
  const pick = deny ?? first;
  step(`verdict: ${pick.verdict.toUpperCase()}${pick.decidedBy !== undefined ? ` (decided by ${pick.decidedBy}, ${pick.layer})` : ''}; ${pick.mtls ? 'mutual TLS (HBONE)' : 'no mutual TLS'}`);
  return { ...pick, steps };
}

function throughWaypoint(
  view: LocalView, global: MeshState, stateOf: (node: string | undefined) => MeshState, src: WorkloadView, srcIp: string,
  svc: ServiceView | undefined, dst: { address: string; port: number }, c: Extract<Candidate, { kind: 'hbone' }>, q: WhyQuery,
  step: (s: string) => void, rootNamespace: string | undefined,
): { verdict: Verdict; layer: WhyResult['layer']; decidedBy: string | undefined; mtls: boolean } {
  const wp = c.waypoint as NonNullable<typeof c.waypoint>;
  step(`the agent on ${src.node} tunnels to waypoint ${wp.key} at ${c.address.address}:${c.address.port} (HBONE, mutual TLS, authority ${dst.address}:${dst.port}); the waypoint must prove ${c.identity}`);
  const cfg = configFromView(view, { waypoint: wp.key, ...(rootNamespace !== undefined ? { rootNamespace } : {}) });
  const binding = cfg.bindingByAddress(dst.address, dst.port);
  if (binding === undefined) {
    step(`waypoint ${wp.key} serves nothing at ${dst.address}:${dst.port}; it refuses the stream`);
    return { verdict: 'no-route', layer: 'none', decidedBy: undefined, mtls: true };
  }
  const sp = binding.service.ports.find((p) => p.port === dst.port);
  const proto = sp !== undefined ? portProtocol(sp) : 'detect';
  const http = proto === 'http' || proto === 'http2' || (proto === 'detect' && (q.method !== undefined || q.path !== undefined));
  const principal = src.identity;
  let decided: Decision | undefined;
  if (!http) {
    step(`port ${dst.port} of ${binding.service.key} is ${proto === 'detect' ? 'not declared HTTP (pass --method/--path to explain it as HTTP)' : proto}: the waypoint applies L4 policy only`);
    if (binding.authorization.length > 0) {
      const d = evaluateAuthorization(binding.authorization, { source: { principal, ip: srcIp }, destination: { ip: dst.address, port: dst.port, namespace: binding.service.namespace } }, { layer: 'L4' });
      step(`L4 authorization at waypoint ${wp.key}: ${describeDecision(d)}`);
      if (!d.allow) return { verdict: 'deny', layer: 'L4', decidedBy: policyName(d), mtls: true };
      decided = d;
    }
  } else {
    const method = (q.method ?? 'GET').toUpperCase();
    // The waypoint decides on the normalized path (Istio's default BASE normalization).
    const asked = q.path ?? '/';
    const normalized = normalizeRequestTarget(asked, undefined, method, 'BASE');
    if (!normalized.ok) {
      step(`the waypoint refuses ${method} ${asked} with 400: ${normalized.reason}`);
      return { verdict: 'deny', layer: 'L7', decidedBy: undefined, mtls: true };
    }
    const path = normalized.path;
    if (path !== asked) step(`the waypoint normalizes the path ${asked} to ${path} before routing and policy`);
    const req = { method, path, authority: `${binding.service.hostname}:${dst.port}`, scheme: 'http', port: dst.port, header: (name: string) => (name === ':authority' || name === 'host' ? binding.service.hostname : undefined) };
    if (binding.authorization.length > 0) {
      const d = evaluateAuthorization(binding.authorization, {
        source: { principal, ip: srcIp },
        destination: { ip: dst.address, port: dst.port, namespace: binding.service.namespace },
        request: { method, path, host: binding.service.hostname, headers: {} },
      }, { layer: 'L7' });
      step(`L7 authorization at waypoint ${wp.key} for ${method} ${path}: ${describeDecision(d)}`);
      if (!d.allow) return { verdict: 'deny', layer: 'L7', decidedBy: policyName(d), mtls: true };
      decided = d;
    } else {
      step(`L7 authorization at waypoint ${wp.key}: no AuthorizationPolicy targets ${binding.service.key} or the waypoint: allowed`);
    }
    const choice = selectRoute(binding.routes, req);
    if (binding.routes.length === 0) {
      step(`route: no VirtualService or HTTPRoute for ${binding.service.hostname}: the request goes to the service itself`);
    } else if (choice === undefined) {
      step(`route: no route of ${binding.service.hostname} matches ${method} ${path}: the waypoint answers 404 (NR)`);
      return { verdict: 'no-route', layer: 'L7', decidedBy: undefined, mtls: true };
    } else {
      const r = choice.route;
      const src2 = `${r.source.kind} ${r.source.namespace}/${r.source.name} ${r.path}${r.name !== undefined ? ` (${r.name})` : ''}`;
      const action = r.action.type === 'forward'
        ? `forward to ${r.action.destinations.map((d) => `${d.host}${d.subset !== undefined ? ` subset ${d.subset}` : ''}${r.action.type === 'forward' && r.action.destinations.length > 1 ? ` weight ${d.weight}` : ''}`).join(', ')}`
        : r.action.type === 'redirect' ? `redirect (${r.action.status})` : `direct response ${r.action.status}`;
      step(`route: ${src2} matches ${method} ${path}: ${action}${r.fault?.abort !== undefined ? `; fault: abort ${r.fault.abort.httpStatus} for ${r.fault.abort.percent}%` : ''}${r.retries !== undefined ? `; retries ${r.retries.attempts}` : ''}${r.timeoutMs !== undefined ? `; timeout ${r.timeoutMs} ms` : ''}`);
      if (r.action.type !== 'forward') return { verdict: 'allow', layer: 'L7', decidedBy: undefined, mtls: true };
    }
  }
  // From the waypoint to the endpoints: the destination agent checks the waypoint's identity.
  const target = svc ?? global.services.get(binding.service.key);
  const ready = (target?.endpoints ?? []).filter((e) => e.ready);
  const wpIdentity = c.identity;
  for (const e of ready) {
    const w = global.workloads.get(e.workload);
    if (w === undefined || !w.enrolled) { step(`waypoint → ${e.workload} (${e.ip}): plain TCP, not in the mesh`); continue; }
    const p = e.ports[dst.port] ?? dst.port;
    const v = decideInbound(stateOf(w.node), w, w.ip ?? '', p, { principal: wpIdentity, ip: srcIp });
    step(`waypoint → ${w.key} over HBONE as ${wpIdentity}: L4 at ${w.node}: ${v.allow ? (v.decision === undefined ? 'no policy, allowed' : describeDecision(v.decision)) : `refused (${v.reason})`}`);
    if (!v.allow) return { verdict: 'deny', layer: 'L4', decidedBy: v.policy, mtls: true };
  }
  return { verdict: 'allow', layer: decided !== undefined ? (http ? 'L7' : 'L4') : 'none', decidedBy: decided !== undefined ? policyName(decided) : undefined, mtls: true };
}
