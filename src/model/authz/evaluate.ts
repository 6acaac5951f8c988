/**
 * Authorization evaluation: a pure function from (policies, connection or request context,
 * layer) to a Decision, shared by the node agent (L4), the waypoint (L7) and `ambit why`.
 *
 * Istio's order, which this module keeps exactly:
 * 1. CUSTOM policies are not supported: they are not applied and every decision lists them in
 *    `unsupported` (and in `reason`), so nothing is silently allowed in their name.
 * 2. If any DENY policy rule matches, deny (`DENY_MATCHED`).
 * 3. If no ALLOW policy applies, allow (`NO_ALLOW_POLICY`).
 * 4. If any ALLOW policy rule matches, allow (`ALLOW_MATCHED`).
 * 5. Otherwise deny (`ALLOW_NO_MATCH`).
 * AUDIT policies are evaluated alongside and only reported in `audit`; they never change the
 * decision. When several rules could decide, the first in list order (policy, then rule) is
 * reported, so a decision is deterministic for a given list.
 *
 * At L4 (the agent) rules with L7 attributes follow ztunnel's rule, see compile.ts: an ALLOW rule
 * with any L7 attribute never matches; a DENY rule matches on its L4 attributes alone.
 *
 * Cost: a plain list is scanned linearly (the caller passes the few policies of one workload);
 * an `AuthzPolicySet` skips rules that name other principals, for lists of thousands.
 */
import { AuthzContextError } from './errors.js';
import { EvalInput } from './eval-input.js';
import { policyAppliesTo } from './compile.js';
import { AuthzPolicySet, type IndexedRule } from './policy-set.js';
import type { AuthzContext, AuthzPolicy, CompiledRule, Decision, EvaluateOptions, PolicyRef, UnsupportedUse } from './types.js';

const DEFAULT_ROOT_NAMESPACE = 'istio-system';

function firstMatchingRule(policy: AuthzPolicy, input: EvalInput, l4: boolean): CompiledRule | undefined {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as CompiledRule;
    if (l4 ? rule.matchL4(input) : rule.match(input)) return rule;
  }
  return undefined;
}

/** Pieces gathered by either evaluation strategy before the decision is worded. */
interface Outcome {
  deny: { policy: AuthzPolicy; rule: CompiledRule } | undefined;
  allow: { policy: AuthzPolicy; rule: CompiledRule } | undefined;
  /** ALLOW policies that apply (only needed to word a deny; may be computed lazily). */
  allowPolicies: () => readonly AuthzPolicy[];
  hasAllow: boolean;
  audit: PolicyRef[] | undefined;
  unsupported: UnsupportedUse[] | undefined;
}

function listPolicies(policies: readonly AuthzPolicy[]): string {
  const names = policies.slice(0, 5).map((p) => p.key);
  const more = policies.length > 5 ? ` and ${policies.length - 5} more` : '';
  return names.join(', ') + more;
}

function unsupportedNote(unsupported: readonly UnsupportedUse[]): string {
  const parts = unsupported.slice(0, 5).map((u) => `${u.policy.namespace}/${u.policy.name}${u.ruleIndex === undefined ? '' : ` rule ${u.ruleIndex}`}: ${u.feature}`);
  const more = unsupported.length > 5 ? ` and ${unsupported.length - 5} more` : '';
  return `; unsupported and not applied as written: ${parts.join(', ')}${more}`;
}

function decide(o: Outcome, l4: boolean): Decision {
  let d: Decision;
  if (o.deny !== undefined) {
    d = {
      allow: false,
      action: 'DENY',
      code: 'DENY_MATCHED',
      policy: o.deny.policy.ref,
      ruleIndex: o.deny.rule.index,
      reason: l4 ? o.deny.rule.reasonL4 : o.deny.rule.reason,
    };
  } else if (!o.hasAllow) {
    d = { allow: true, action: 'NONE', code: 'NO_ALLOW_POLICY', reason: 'allowed: no DENY policy matched and no ALLOW policy applies' };
  } else if (o.allow !== undefined) {
    d = {
      allow: true,
      action: 'ALLOW',
      code: 'ALLOW_MATCHED',
      policy: o.allow.policy.ref,
      ruleIndex: o.allow.rule.index,
      reason: l4 ? o.allow.rule.reasonL4 : o.allow.rule.reason,
    };
  } else {
    const allowPolicies = o.allowPolicies();
    const n = allowPolicies.length;
    let reason = `denied: ${n} ALLOW ${n === 1 ? 'policy applies' : 'policies apply'} (${listPolicies(allowPolicies)}) and no rule matched`;
    if (l4) {
      const withL7 = allowPolicies.filter((p) => p.hasL7);
      if (withL7.length > 0) {
        reason += `; rules with L7 attributes in ${listPolicies(withL7)} never match at L4: send this traffic through a waypoint`;
      }
    }
    d = { allow: false, action: 'ALLOW', code: 'ALLOW_NO_MATCH', reason };
  }
  if (o.audit !== undefined) d.audit = o.audit;
  if (o.unsupported !== undefined) {
    d.unsupported = o.unsupported;
    d.reason += unsupportedNote(o.unsupported);
  }
  return d;
}

function evaluateList(list: readonly AuthzPolicy[], input: EvalInput, l4: boolean): Outcome {
  let deny: Outcome['deny'];
  let hasAllow = false;
  let audit: PolicyRef[] | undefined;
  let unsupported: UnsupportedUse[] | undefined;
  for (let k = 0; k < list.length; k++) {
    const p = list[k] as AuthzPolicy;
    if (p.unsupported.length !== 0) (unsupported ??= []).push(...p.unsupported);
    const action = p.action;
    if (action === 'DENY') {
      if (deny === undefined) {
        const rule = firstMatchingRule(p, input, l4);
        if (rule !== undefined) deny = { policy: p, rule };
      }
    } else if (action === 'ALLOW') {
      hasAllow = true;
    } else if (action === 'AUDIT') {
      if (firstMatchingRule(p, input, l4) !== undefined) (audit ??= []).push(p.ref);
    }
  }
  let allow: Outcome['allow'];
  if (deny === undefined && hasAllow) {
    for (let k = 0; k < list.length && allow === undefined; k++) {
      const p = list[k] as AuthzPolicy;
      if (p.action !== 'ALLOW') continue;
      const rule = firstMatchingRule(p, input, l4);
      if (rule !== undefined) allow = { policy: p, rule };
    }
  }
  return { deny, allow, hasAllow, audit, unsupported, allowPolicies: () => list.filter((p) => p.action === 'ALLOW') };
}

function evaluateSet(set: AuthzPolicySet, input: EvalInput, l4: boolean, applies: ((p: AuthzPolicy) => boolean) | undefined, namespaces: readonly string[]): Outcome {
  const principal = input.principal;
  const test =
    applies === undefined
      ? l4
        ? (e: IndexedRule) => e.rule.matchL4(input)
        : (e: IndexedRule) => e.rule.match(input)
      : (e: IndexedRule) => applies(e.policy) && (l4 ? e.rule.matchL4(input) : e.rule.match(input));

  const denyHit = set.deny.first(principal, test);
  let allowPolicies: () => readonly AuthzPolicy[];
  let hasAllow: boolean;
  let unsupportedPolicies: readonly AuthzPolicy[];
  if (applies === undefined) {
    allowPolicies = () => set.allowPolicies;
    hasAllow = set.allowPolicies.length > 0;
    unsupportedPolicies = set.withUnsupported;
  } else {
    const groups = namespaces.map((ns) => set.byNamespace.get(ns)).filter((g) => g !== undefined);
    allowPolicies = () => groups.flatMap((g) => g.allow.filter(applies));
    hasAllow = groups.some((g) => g.allow.some(applies));
    unsupportedPolicies = groups.flatMap((g) => g.withUnsupported.filter(applies));
  }
  const allowHit = denyHit === undefined && hasAllow ? set.allow.first(principal, test) : undefined;
  const auditHits = set.audit.all(principal, test);
  let audit: PolicyRef[] | undefined;
  for (const e of auditHits) {
    audit ??= [];
    if (!audit.includes(e.policy.ref)) audit.push(e.policy.ref);
  }
  let unsupported: UnsupportedUse[] | undefined;
  for (const p of unsupportedPolicies) (unsupported ??= []).push(...p.unsupported);
  return {
    deny: denyHit === undefined ? undefined : { policy: denyHit.policy, rule: denyHit.rule },
    allow: allowHit === undefined ? undefined : { policy: allowHit.policy, rule: allowHit.rule },
    hasAllow,
    allowPolicies,
    audit,
    unsupported,
  };
}

/**
 * Decides whether a connection (L4) or request (L7) is allowed by the given policies.
 *
 * @param policies the policies that apply to the destination (or, with `applySelectors`, any
 *   superset); a plain list or an indexed `AuthzPolicySet`.
 * @param ctx source, destination and, at L7, the request.
 * @param options.layer `L4` (node agent) or `L7` (waypoint).
 * @param options.applySelectors skip policies that do not select `ctx.destination` (default false).
 * @param options.rootNamespace mesh-wide policy namespace (default `istio-system`).
 * @throws AuthzContextError on an unknown layer, or `applySelectors` without a destination namespace.
 */
export function evaluateAuthorization(policies: readonly AuthzPolicy[] | AuthzPolicySet, ctx: AuthzContext, options: EvaluateOptions): Decision {
  const layer = options.layer;
  if (layer !== 'L4' && layer !== 'L7') throw new AuthzContextError(`unknown authorization layer ${JSON.stringify(layer)}; expected L4 or L7`);
  const l4 = layer === 'L4';
  const input = new EvalInput(ctx, layer);
  let applies: ((p: AuthzPolicy) => boolean) | undefined;
  let namespaces: readonly string[] = [];
  if (options.applySelectors === true) {
    const namespace = ctx.destination.namespace;
    if (namespace === undefined) throw new AuthzContextError('applySelectors needs ctx.destination.namespace to know which policies select the destination');
    const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    const workload = { namespace, labels: ctx.destination.labels ?? {} };
    applies = (p) => policyAppliesTo(p, workload, root);
    namespaces = root === namespace ? [root] : [root, namespace];
  }
  if (policies instanceof AuthzPolicySet) return decide(evaluateSet(policies, input, l4, applies, namespaces), l4);
  const list = applies === undefined ? policies : policies.filter(applies);
  return decide(evaluateList(list, input, l4), l4);
}
