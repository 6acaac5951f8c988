/**
 * An indexed, immutable set of compiled policies, for callers that evaluate against many policies
 * at once (a mesh-wide list, `ambit why`, the benchmark with 1,000 policies).
 *
 * Invariants:
 * - Rules are numbered per set in policy order then rule order (`order`), and every lookup returns
 *   the lowest-numbered matching rule, so an indexed lookup picks exactly the rule a linear scan
 *   of the original list would pick.
 * - A rule is filed under one key it cannot match without: one of its exact principals if every
 *   `from` entry names some, else one of its exact namespaces, else one of its ports; otherwise it
 *   is "generic". A lookup merges the buckets of the connection's principal, namespace and port
 *   with the generic rules: it skips rules that cannot match without evaluating them, and never
 *   skips one that could.
 * - `applySelectors` selects the policies of one workload once per namespace and label values
 *   (cached), then evaluates only those.
 * - Nothing here allocates a closure per lookup (the evaluator's hot path).
 */
import { policyAppliesTo, type WorkloadIdentity } from './compile.js';
import type { EvalInput } from './eval-input.js';
import type { AuthzPolicy, CompiledRule } from './types.js';

/** One rule of one policy, with its global position. */
export interface IndexedRule {
  readonly policy: AuthzPolicy;
  readonly rule: CompiledRule;
  readonly order: number;
}

const NONE: readonly IndexedRule[] = [];

function bucket<K>(map: Map<K, IndexedRule[]>, key: K): IndexedRule[] {
  let b = map.get(key);
  if (b === undefined) map.set(key, (b = []));
  return b;
}

function test(e: IndexedRule, input: EvalInput, l4: boolean): boolean {
  return l4 ? e.rule.matchL4(input) : e.rule.match(input);
}

/** The rules of one action, indexed by a key each rule requires. */
export class RuleIndex {
  private readonly byPrincipal = new Map<string, IndexedRule[]>();
  private readonly byNamespace = new Map<string, IndexedRule[]>();
  private readonly byPort = new Map<number, IndexedRule[]>();
  private readonly generic: IndexedRule[] = [];

  /** Adds a rule; rules must be added in increasing `order`. */
  add(entry: IndexedRule): void {
    const { requiredPrincipals, requiredNamespaces, requiredPorts } = entry.rule;
    if (requiredPrincipals !== undefined) for (const p of requiredPrincipals) bucket(this.byPrincipal, p).push(entry);
    else if (requiredNamespaces !== undefined) for (const n of requiredNamespaces) bucket(this.byNamespace, n).push(entry);
    else if (requiredPorts !== undefined) for (const p of requiredPorts) bucket(this.byPort, p).push(entry);
    else this.generic.push(entry);
  }

  /**
   * The lowest-ordered rule (optionally at least `after`) that matches. Merges four sorted
   * candidate lists without allocating.
   */
  first(input: EvalInput, l4: boolean, after = -1): IndexedRule | undefined {
    const principal = input.principal;
    const a = principal === undefined || this.byPrincipal.size === 0 ? NONE : (this.byPrincipal.get(principal) ?? NONE);
    let b = NONE;
    if (this.byNamespace.size !== 0) {
      const ns = input.namespace();
      if (ns !== undefined) b = this.byNamespace.get(ns) ?? NONE;
    }
    const c = this.byPort.size === 0 ? NONE : (this.byPort.get(input.port) ?? NONE);
    const d = this.generic;
    let ia = 0;
    let ib = 0;
    let ic = 0;
    let id = 0;
    for (;;) {
      const ea = a[ia];
      const eb = b[ib];
      const ec = c[ic];
      const ed = d[id];
      let best = ea;
      let which = 0;
      if (eb !== undefined && (best === undefined || eb.order < best.order)) {
        best = eb;
        which = 1;
      }
      if (ec !== undefined && (best === undefined || ec.order < best.order)) {
        best = ec;
        which = 2;
      }
      if (ed !== undefined && (best === undefined || ed.order < best.order)) {
        best = ed;
        which = 3;
      }
      if (best === undefined) return undefined;
      if (which === 0) ia++;
      else if (which === 1) ib++;
      else if (which === 2) ic++;
      else id++;
      if (best.order > after && test(best, input, l4)) return best;
    }
  }
}

/** The rules and policies of a set, per action. */
export class PolicyGroup {
  readonly deny = new RuleIndex();
  readonly allow = new RuleIndex();
  readonly audit = new RuleIndex();
  /** ALLOW policies in order (their presence turns on deny-by-default). */
  readonly allowPolicies: AuthzPolicy[] = [];
  /** Policies with unsupported features (CUSTOM, unsupported `when` keys). */
  readonly withUnsupported: AuthzPolicy[] = [];
  hasAudit = false;

  add(policy: AuthzPolicy, firstOrder: number): void {
    if (policy.unsupported.length > 0) this.withUnsupported.push(policy);
    let index: RuleIndex;
    switch (policy.action) {
      case 'ALLOW':
        this.allowPolicies.push(policy);
        index = this.allow;
        break;
      case 'DENY':
        index = this.deny;
        break;
      case 'AUDIT':
        this.hasAudit = true;
        index = this.audit;
        break;
      default:
        return;
    }
    policy.rules.forEach((rule, i) => index.add({ policy, rule, order: firstOrder + i }));
  }
}

/** Lists longer than this get their own index when selected for a workload. */
const INDEX_THRESHOLD = 16;
/** Bound of the per-workload selection cache (cleared when full). */
const SCOPE_CACHE_LIMIT = 4096;

/** A prepared set of policies; build once, evaluate many times. */
export class AuthzPolicySet {
  readonly policies: readonly AuthzPolicy[];
  /** Every policy, indexed. */
  readonly all = new PolicyGroup();
  /** Policies per namespace, in order. */
  private readonly byNamespace = new Map<string, AuthzPolicy[]>();
  /** Selections per (root, namespace, labels): selecting is a pure function of those. */
  private readonly scoped = new Map<string, readonly AuthzPolicy[] | AuthzPolicySet>();

  constructor(policies: readonly AuthzPolicy[]) {
    this.policies = Object.freeze([...policies]);
    let order = 0;
    for (const policy of this.policies) {
      let list = this.byNamespace.get(policy.ref.namespace);
      if (list === undefined) this.byNamespace.set(policy.ref.namespace, (list = []));
      list.push(policy);
      this.all.add(policy, order);
      order += policy.rules.length;
    }
  }

  /**
   * The policies that select `workload` (root-namespace policies and its own namespace's, by
   * `matchLabels`), in set order: a plain list when short, an indexed set when long. Cached per
   * namespace and label values, so the agent pays for selection once per workload shape.
   */
  forWorkload(workload: WorkloadIdentity, rootNamespace: string): readonly AuthzPolicy[] | AuthzPolicySet {
    let key = rootNamespace + '\u0000' + workload.namespace;
    for (const k in workload.labels) key += '\u0000' + k + '=' + String(workload.labels[k]);
    const hit = this.scoped.get(key);
    if (hit !== undefined) return hit;
    const selected: AuthzPolicy[] = [];
    const pick = (list: readonly AuthzPolicy[] | undefined): void => {
      for (const p of list ?? []) if (policyAppliesTo(p, workload, rootNamespace)) selected.push(p);
    };
    pick(this.byNamespace.get(rootNamespace));
    if (workload.namespace !== rootNamespace) pick(this.byNamespace.get(workload.namespace));
    if (workload.namespace !== rootNamespace && this.byNamespace.has(rootNamespace)) {
      const pos = new Map(this.policies.map((p, i) => [p, i]));
      selected.sort((a, b) => (pos.get(a) ?? 0) - (pos.get(b) ?? 0));
    }
    const result = selected.length > INDEX_THRESHOLD ? new AuthzPolicySet(selected) : Object.freeze(selected);
    if (this.scoped.size >= SCOPE_CACHE_LIMIT) this.scoped.clear();
    this.scoped.set(key, result);
    return result;
  }
}

/** Builds an indexed set from compiled policies (kept in the given order). */
export function buildAuthzPolicySet(policies: readonly AuthzPolicy[]): AuthzPolicySet {
  return new AuthzPolicySet(policies);
}
