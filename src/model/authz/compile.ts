/**
 * Compiles an Istio AuthorizationPolicy spec into predicates that the evaluator runs without
 * parsing or string work: string patterns become sets and prefix/suffix lists, CIDR blocks become
 * sorted numeric ranges (IPv4 and IPv6), ports become number sets, condition keys are resolved
 * once.
 *
 * Semantics kept here (Istio's):
 * - A rule matches when its `from`, `to` and `when` all match. `from` and `to` entries are ORed;
 *   fields inside one `source`/`operation` are ANDed; values inside one field are ORed; `when`
 *   conditions are ANDed. An absent or empty list places no constraint, so `rules: [{}]` matches
 *   everything, while a policy without rules matches nothing.
 * - `notX` fields match when the value matches none of the patterns; an absent value (no
 *   principal on a plaintext connection) matches no pattern, so it fails `X` and passes `notX`.
 *
 * The L4 rule (as ztunnel applies it in Istio ambient): the node agent cannot see L7 attributes
 * (hosts, methods, paths, requestPrincipals and their `not` forms, `request.*` when keys).
 * - In an ALLOW (or AUDIT) policy, a rule that uses any of them never matches at L4, so traffic
 *   that only such a rule would allow is denied unless it goes through a waypoint.
 * - In a DENY policy, such a rule matches at L4 on its L4 attributes alone: it fails closed.
 *
 * Unsupported features fail closed the same way: an unsupported `when` key makes an ALLOW/AUDIT
 * rule never match and a DENY rule's condition always match; a CUSTOM policy is not applied and
 * is reported by the evaluator.
 */
import { AuthzPolicyError } from './errors.js';
import { parseConditionKey } from './condition-keys.js';
import { CidrSet } from './ip-ranges.js';
import { parseCidr, type ParsedCidr, type ParsedIp } from '../../util/cidr.js';
import { StringMatcher } from './string-match.js';
import type { EvalInput } from './eval-input.js';
import type {
  AuthorizationPolicySpec,
  AuthzAction,
  AuthzPolicy,
  CompiledRule,
  PolicyRef,
  RulePredicate,
  UnsupportedUse,
} from './types.js';

type Path = readonly (string | number)[];

const ACTIONS: readonly AuthzAction[] = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];

const TRUE: RulePredicate = () => true;
const FALSE: RulePredicate = () => false;

/** AND of predicates, specialised for short lists. */
function and(preds: readonly RulePredicate[]): RulePredicate {
  const ps = preds.filter((p) => p !== TRUE);
  if (ps.includes(FALSE)) return FALSE;
  switch (ps.length) {
    case 0:
      return TRUE;
    case 1:
      return ps[0] as RulePredicate;
    case 2: {
      const [a, b] = ps as [RulePredicate, RulePredicate];
      return (i) => a(i) && b(i);
    }
    case 3: {
      const [a, b, c] = ps as [RulePredicate, RulePredicate, RulePredicate];
      return (i) => a(i) && b(i) && c(i);
    }
    default:
      return (i) => {
        for (const p of ps) if (!p(i)) return false;
        return true;
      };
  }
}

/** OR of a non-empty list of predicates (an empty list matches nothing). */
function or(preds: readonly RulePredicate[]): RulePredicate {
  if (preds.includes(TRUE)) return TRUE;
  const ps = preds.filter((p) => p !== FALSE);
  switch (ps.length) {
    case 0:
      return FALSE;
    case 1:
      return ps[0] as RulePredicate;
    case 2: {
      const [a, b] = ps as [RulePredicate, RulePredicate];
      return (i) => a(i) || b(i);
    }
    default:
      return (i) => {
        for (const p of ps) if (p(i)) return true;
        return false;
      };
  }
}

/** Validation helpers that throw AuthzPolicyError naming the field. */
class Reader {
  constructor(readonly policy: string) {}

  fail(path: Path, problem: string): never {
    throw new AuthzPolicyError(this.policy, path, problem);
  }

  object(value: unknown, path: Path): Record<string, unknown> | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'object' || Array.isArray(value)) this.fail(path, `must be an object, got ${describe(value)}`);
    return value as Record<string, unknown>;
  }

  list(value: unknown, path: Path): readonly unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(path, `must be a list, got ${describe(value)}`);
    return value;
  }

  strings(value: unknown, path: Path): readonly string[] {
    const items = this.list(value, path);
    items.forEach((v, i) => {
      if (typeof v !== 'string') this.fail([...path, i], `must be a string, got ${describe(v)}`);
    });
    return items as readonly string[];
  }

  cidrs(value: unknown, path: Path): CidrSet | undefined {
    const items = this.strings(value, path);
    if (items.length === 0) return undefined;
    const parsed: ParsedCidr[] = items.map((s, i) => {
      const c = parseCidr(s.trim());
      if (c === undefined) this.fail([...path, i], `"${s}" is not an IP address or CIDR block (e.g. 198.18.0.0/15 or 2001:db8::/32)`);
      return c;
    });
    return new CidrSet(parsed);
  }

  ports(value: unknown, path: Path): ReadonlySet<number> | undefined {
    const items = this.list(value, path);
    if (items.length === 0) return undefined;
    const set = new Set<number>();
    items.forEach((v, i) => {
      const n = typeof v === 'number' ? v : typeof v === 'string' && /^[0-9]{1,5}$/.test(v.trim()) ? Number(v.trim()) : NaN;
      if (!Number.isInteger(n) || n < 1 || n > 65535) this.fail([...path, i], `"${String(v)}" is not a port number (1-65535)`);
      set.add(n);
    });
    return set;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function stripSpiffe(patterns: readonly string[]): string[] {
  return patterns.map((p) => (p.startsWith('spiffe://') ? p.slice(9) : p));
}

/** Accumulates the L4 and L7 checks of one source/operation/condition list. */
interface Checks {
  l4: RulePredicate[];
  l7: RulePredicate[];
  l7Names: string[];
}

function newChecks(): Checks {
  return { l4: [], l7: [], l7Names: [] };
}

/** Adds `field`/`notField` string checks over `get`. */
function stringChecks(
  r: Reader,
  obj: Record<string, unknown>,
  path: Path,
  field: string,
  notField: string,
  get: (i: EvalInput) => string | undefined,
  checks: Checks,
  l7: boolean,
  options: { caseInsensitive?: boolean; pathTemplates?: boolean; spiffe?: boolean } = {},
): StringMatcher | undefined {
  let pos = r.strings(obj[field], [...path, field]);
  let neg = r.strings(obj[notField], [...path, notField]);
  if (options.spiffe === true) {
    pos = stripSpiffe(pos);
    neg = stripSpiffe(neg);
  }
  const target = l7 ? checks.l7 : checks.l4;
  let posMatcher: StringMatcher | undefined;
  if (pos.length > 0) {
    const m = new StringMatcher(pos, options);
    posMatcher = m;
    target.push((i) => m.match(get(i)));
    if (l7) checks.l7Names.push(field);
  }
  if (neg.length > 0) {
    const m = new StringMatcher(neg, options);
    target.push((i) => !m.match(get(i)));
    if (l7) checks.l7Names.push(notField);
  }
  return posMatcher;
}

function cidrChecks(
  r: Reader,
  obj: Record<string, unknown>,
  path: Path,
  field: string,
  notField: string,
  get: (i: EvalInput) => ParsedIp | undefined,
  checks: Checks,
): void {
  const pos = r.cidrs(obj[field], [...path, field]);
  const neg = r.cidrs(obj[notField], [...path, notField]);
  if (pos !== undefined) {
    checks.l4.push((i) => {
      const ip = get(i);
      return ip !== undefined && pos.has(ip);
    });
  }
  if (neg !== undefined) {
    checks.l4.push((i) => {
      const ip = get(i);
      return ip === undefined || !neg.has(ip);
    });
  }
}

interface CompiledEntry {
  full: RulePredicate;
  l4: RulePredicate;
  l7Names: string[];
}

function finishEntry(c: Checks): CompiledEntry {
  return { full: and([...c.l4, ...c.l7]), l4: and(c.l4), l7Names: c.l7Names };
}

interface CompiledSource {
  entry: CompiledEntry;
  /** Exact principals one of which the source requires, if any. */
  principals: readonly string[] | undefined;
  /** Exact namespaces one of which the source requires, if any. */
  namespaces: readonly string[] | undefined;
}

/**
 * `serviceAccounts` entries as `<ns>/<sa>`: a bare `<sa>` is in the policy's namespace, as
 * Istio reads it.
 */
function qualifyServiceAccounts(values: readonly string[], policyNamespace: string): Set<string> {
  return new Set(values.map((v) => (v.includes('/') ? v : `${policyNamespace}/${v}`)));
}

function compileSource(r: Reader, value: unknown, path: Path, policyNamespace: string): CompiledSource {
  const src = r.object(value, path) ?? {};
  const c = newChecks();
  const principals = stringChecks(r, src, path, 'principals', 'notPrincipals', (i) => i.principal, c, false, { spiffe: true });
  stringChecks(r, src, path, 'requestPrincipals', 'notRequestPrincipals', (i) => i.requestPrincipal(), c, true);
  const namespaces = stringChecks(r, src, path, 'namespaces', 'notNamespaces', (i) => i.namespace(), c, false);
  const sas = r.strings(src['serviceAccounts'], [...path, 'serviceAccounts']);
  const notSas = r.strings(src['notServiceAccounts'], [...path, 'notServiceAccounts']);
  if (sas.length > 0) {
    const set = qualifyServiceAccounts(sas, policyNamespace);
    c.l4.push((i) => {
      const sa = i.serviceAccount();
      return sa !== undefined && set.has(sa);
    });
  }
  if (notSas.length > 0) {
    const set = qualifyServiceAccounts(notSas, policyNamespace);
    c.l4.push((i) => {
      const sa = i.serviceAccount();
      return sa === undefined || !set.has(sa);
    });
  }
  // Trust domains: exact, `*` (any peer with an identity), or one leading/trailing `*` (Istio's forms).
  stringChecks(r, src, path, 'trustDomains', 'notTrustDomains', (i) => i.trustDomain(), c, false);
  cidrChecks(r, src, path, 'ipBlocks', 'notIpBlocks', (i) => i.srcIp(), c);
  cidrChecks(r, src, path, 'remoteIpBlocks', 'notRemoteIpBlocks', (i) => i.remoteIp(), c);
  return { entry: finishEntry(c), principals: principals?.exactValues(), namespaces: namespaces?.exactValues() };
}

function compileOperation(r: Reader, value: unknown, path: Path): CompiledEntry & { ports: readonly number[] | undefined } {
  const op = r.object(value, path) ?? {};
  const c = newChecks();
  const ports = r.ports(op['ports'], [...path, 'ports']);
  const notPorts = r.ports(op['notPorts'], [...path, 'notPorts']);
  if (ports !== undefined) c.l4.push((i) => ports.has(i.port));
  if (notPorts !== undefined) c.l4.push((i) => !notPorts.has(i.port));
  const hosts = r.strings(op['hosts'], [...path, 'hosts']);
  const notHosts = r.strings(op['notHosts'], [...path, 'notHosts']);
  if (hosts.length > 0) {
    const m = new StringMatcher(hosts, { caseInsensitive: true });
    c.l7.push((i) => m.matchAny(i.hosts()));
    c.l7Names.push('hosts');
  }
  if (notHosts.length > 0) {
    const m = new StringMatcher(notHosts, { caseInsensitive: true });
    c.l7.push((i) => !m.matchAny(i.hosts()));
    c.l7Names.push('notHosts');
  }
  stringChecks(r, op, path, 'methods', 'notMethods', (i) => i.method(), c, true);
  stringChecks(r, op, path, 'paths', 'notPaths', (i) => i.path(), c, true, { pathTemplates: true });
  return { ...finishEntry(c), ports: ports === undefined ? undefined : [...ports] };
}

/** Compiles one `when` condition; unsupported keys fail closed according to `action`. */
function compileCondition(
  r: Reader,
  value: unknown,
  path: Path,
  action: AuthzAction,
  checks: Checks,
  unsupported: string[],
  policyNamespace: string,
): void {
  const cond = r.object(value, path) ?? {};
  const key = cond['key'];
  if (typeof key !== 'string' || key === '') r.fail([...path, 'key'], 'a condition needs a key (e.g. source.ip or request.headers[x-user])');
  const k = parseConditionKey(key);
  const valuesPath = [...path, 'values'];
  const notValuesPath = [...path, 'notValues'];
  if (k.kind === 'unsupported' || k.kind === 'unknown') {
    unsupported.push(`when key ${key}`);
    checks.l4.push(action === 'DENY' ? TRUE : FALSE);
    return;
  }
  const values = r.strings(cond['values'], valuesPath);
  const notValues = r.strings(cond['notValues'], notValuesPath);
  if (values.length === 0 && notValues.length === 0) r.fail(path, `condition "${key}" needs values or notValues`);
  const target = k.l7 ? checks.l7 : checks.l4;
  if (k.l7) checks.l7Names.push(key);
  const add = (build: (patterns: readonly string[], p: Path) => (i: EvalInput) => boolean): void => {
    if (values.length > 0) target.push(build(values, valuesPath));
    if (notValues.length > 0) {
      const m = build(notValues, notValuesPath);
      target.push((i) => !m(i));
    }
  };
  switch (k.kind) {
    case 'source.ip':
    case 'remote.ip':
    case 'destination.ip': {
      const get =
        k.kind === 'source.ip' ? (i: EvalInput) => i.srcIp() : k.kind === 'remote.ip' ? (i: EvalInput) => i.remoteIp() : (i: EvalInput) => i.dstIp();
      add((patterns, p) => {
        const set = r.cidrs(patterns, p) as CidrSet;
        return (i) => {
          const ip = get(i);
          return ip !== undefined && set.has(ip);
        };
      });
      break;
    }
    case 'destination.port':
      add((patterns, p) => {
        const set = r.ports(patterns, p) as ReadonlySet<number>;
        return (i) => set.has(i.port);
      });
      break;
    case 'source.namespace':
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.match(i.namespace());
      });
      break;
    case 'source.principal':
      add((patterns) => {
        const m = new StringMatcher(stripSpiffe(patterns));
        return (i) => m.match(i.principal);
      });
      break;
    case 'source.serviceAccount':
      add((patterns) => {
        const set = qualifyServiceAccounts(patterns, policyNamespace);
        return (i) => {
          const sa = i.serviceAccount();
          return sa !== undefined && set.has(sa);
        };
      });
      break;
    case 'source.trustDomain':
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.match(i.trustDomain());
      });
      break;
    case 'request.headers': {
      const name = k.name;
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.matchAny(i.header(name));
      });
      break;
    }
    case 'request.auth.principal':
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.match(i.requestPrincipal());
      });
      break;
    case 'request.auth.audiences':
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.matchAny(i.audiences());
      });
      break;
    case 'request.auth.presenter':
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.match(i.presenter());
      });
      break;
    case 'request.auth.claims': {
      const claimPath = k.path;
      add((patterns) => {
        const m = new StringMatcher(patterns);
        return (i) => m.matchAny(i.claim(claimPath));
      });
      break;
    }
  }
}

/**
 * The union of the entries' required values when every entry requires some (an entry list is
 * ORed, so one unconstrained entry lifts the requirement); undefined otherwise or when empty.
 */
function unionIfAll<T>(entries: readonly (readonly T[] | undefined)[]): readonly T[] | undefined {
  if (entries.length === 0) return undefined;
  const out = new Set<T>();
  for (const e of entries) {
    if (e === undefined || e.length === 0) return undefined;
    for (const v of e) out.add(v);
  }
  return [...out];
}

function compileRule(r: Reader, value: unknown, index: number, action: AuthzAction, key: string, policyNamespace: string): CompiledRule {
  const path: Path = ['rules', index];
  const rule = r.object(value, path) ?? {};
  const l7Names: string[] = [];
  const unsupported: string[] = [];

  const from = r.list(rule['from'], [...path, 'from']);
  const sources = from.map((f, j) => {
    const fp = [...path, 'from', j];
    const fo = r.object(f, fp) ?? {};
    const compiled = compileSource(r, fo['source'], [...fp, 'source'], policyNamespace);
    if (compiled.entry.full === TRUE) r.fail([...fp, 'source'], 'a source must set at least one field (principals, namespaces, ipBlocks...)');
    return compiled;
  });
  for (const s of sources) l7Names.push(...s.entry.l7Names);
  const requiredPrincipals = unionIfAll(sources.map((s) => s.principals));
  const requiredNamespaces = unionIfAll(sources.map((s) => s.namespaces));

  const to = r.list(rule['to'], [...path, 'to']);
  const ops = to.map((t, j) => {
    const tp = [...path, 'to', j];
    const tobj = r.object(t, tp) ?? {};
    const compiled = compileOperation(r, tobj['operation'], [...tp, 'operation']);
    if (compiled.full === TRUE) r.fail([...tp, 'operation'], 'an operation must set at least one field (ports, methods, paths, hosts...)');
    return compiled;
  });
  for (const o of ops) l7Names.push(...o.l7Names);
  const requiredPorts = unionIfAll(ops.map((o) => o.ports));

  const when = newChecks();
  r.list(rule['when'], [...path, 'when']).forEach((c, j) => compileCondition(r, c, [...path, 'when', j], action, when, unsupported, policyNamespace));
  l7Names.push(...when.l7Names);

  const fromFull = sources.length === 0 ? TRUE : or(sources.map((s) => s.entry.full));
  const fromL4 = sources.length === 0 ? TRUE : or(sources.map((s) => s.entry.l4));
  const toFull = ops.length === 0 ? TRUE : or(ops.map((o) => o.full));
  const toL4 = ops.length === 0 ? TRUE : or(ops.map((o) => o.l4));
  const match = and([fromFull, toFull, and(when.l4), and(when.l7)]);
  const l7Attributes = [...new Set(l7Names)];
  const hasL7 = l7Attributes.length > 0;
  const matchL4 = !hasL7 ? match : action === 'DENY' ? and([fromL4, toL4, and(when.l4)]) : FALSE;

  const verb = action === 'DENY' ? 'denied' : action === 'ALLOW' ? 'allowed' : 'matched';
  const reason = `${verb} by ${action} policy ${key} rule ${index}`;
  let reasonL4 = reason;
  if (hasL7 && action === 'DENY') {
    reasonL4 = `${reason}: its L7 attributes (${l7Attributes.join(', ')}) cannot be checked at L4, so it matches on its L4 attributes alone (fail closed)`;
  }
  return {
    index,
    match,
    matchL4,
    l7Attributes,
    unsupported,
    requiredPrincipals,
    requiredNamespaces,
    requiredPorts,
    reason,
    reasonL4,
  };
}

/**
 * Compiles one AuthorizationPolicy. Throws AuthzPolicyError (`AMBIT_ERR_AUTHZ_POLICY_INVALID`)
 * naming the field when the spec cannot be evaluated (wrong type, bad CIDR, bad port, unknown
 * action). Unknown fields are ignored here; `lintAuthorizationPolicy` reports them.
 */
export function compileAuthorizationPolicy(ref: PolicyRef, spec: AuthorizationPolicySpec | null | undefined): AuthzPolicy {
  const key = `${ref.namespace}/${ref.name}`;
  const r: Reader = new Reader(key);
  const s = r.object(spec, []) ?? {};
  const rawAction = s['action'];
  if (rawAction !== undefined && rawAction !== null && !ACTIONS.includes(rawAction as AuthzAction)) {
    r.fail(['action'], `unknown action ${describe(rawAction)}; expected one of ${ACTIONS.join(', ')}`);
  }
  const action: AuthzAction = (rawAction as AuthzAction | undefined | null) ?? 'ALLOW';
  const selector = r.object(s['selector'], ['selector']);
  const labels = r.object(selector?.['matchLabels'], ['selector', 'matchLabels']) ?? {};
  const matchLabels: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== 'string') r.fail(['selector', 'matchLabels', k], `label values must be strings, got ${describe(v)}`);
    matchLabels[k] = v;
  }
  const targetRefs = r.list(s['targetRefs'], ['targetRefs']);
  const hasTargetRefs = r.object(s['targetRef'], ['targetRef']) !== undefined || targetRefs.length > 0;

  const rules = r.list(s['rules'], ['rules']).map((rule, i) => compileRule(r, rule, i, action, key, ref.namespace));
  const unsupported: UnsupportedUse[] = [];
  if (action === 'CUSTOM') unsupported.push({ policy: ref, feature: 'action CUSTOM' });
  else {
    for (const rule of rules) for (const feature of rule.unsupported) unsupported.push({ policy: ref, ruleIndex: rule.index, feature });
  }
  return Object.freeze({
    ref: Object.freeze({ namespace: ref.namespace, name: ref.name }),
    key,
    spec: (spec ?? {}) as AuthorizationPolicySpec,
    action,
    rules: Object.freeze(rules.map((x) => Object.freeze(x))),
    matchLabels: Object.freeze(matchLabels),
    hasTargetRefs,
    hasL7: rules.some((x) => x.l7Attributes.length > 0),
    unsupported: Object.freeze(unsupported),
  });
}

/**
 * True when any rule of the policy uses an L7 attribute (hosts, methods, paths,
 * requestPrincipals, their `not` forms, or a `request.*` condition): such rules are fully
 * enforced only by a waypoint. Accepts a compiled policy or a raw spec.
 */
export function hasL7Attributes(policy: AuthzPolicy | AuthorizationPolicySpec): boolean {
  if ('hasL7' in policy && typeof policy.hasL7 === 'boolean') return policy.hasL7;
  return compileAuthorizationPolicy({ namespace: '', name: '' }, policy as AuthorizationPolicySpec).hasL7;
}

/** A workload as seen by selector matching. */
export interface WorkloadIdentity {
  namespace: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * True when a policy selects a workload: a policy in the root namespace applies mesh-wide, any
 * other only in its own namespace; every `matchLabels` entry must be on the workload. A policy
 * using `targetRef(s)` attaches to a Service or Gateway (a waypoint), not to workloads by selector.
 *
 * @param rootNamespace Istio's root namespace (default `istio-system`).
 */
export function policyAppliesTo(policy: AuthzPolicy, workload: WorkloadIdentity, rootNamespace = 'istio-system'): boolean {
  if (policy.hasTargetRefs) return false;
  if (policy.ref.namespace !== rootNamespace && policy.ref.namespace !== workload.namespace) return false;
  for (const k in policy.matchLabels) {
    if (workload.labels[k] !== policy.matchLabels[k]) return false;
  }
  return true;
}
