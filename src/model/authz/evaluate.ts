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
 * Cost: a short plain list is scanned linearly (the caller passes the few policies of one
 * workload). An `AuthzPolicySet`, and a long list passed repeatedly (indexed on its second use,
 * reused while frozen or unchanged), skip rules whose principal, namespace or port cannot match.
 * With `applySelectors`, a set selects each workload shape's policies once and caches them.
 * Nothing on the hot path allocates closures or builds strings (reasons are precomputed or cached).
 */
import { AuthzContextError } from './errors.js';
import { EvalInput } from './eval-input.js';
import { policyAppliesTo } from './compile.js';
import { AuthzPolicySet } from './policy-set.js';
import type { AuthzContext, AuthzPolicy, CompiledRule, Decision, EvaluateOptions, PolicyRef, UnsupportedUse } from './types.js';

const DEFAULT_ROOT_NAMESPACE = 'istio-system';
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

function firstMatchingRule(policy: AuthzPolicy, input: EvalInput, l4: boolean): CompiledRule | undefined {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as CompiledRule;
    if (l4 ? rule.matchL4(input) : rule.match(input)) return rule;
  }
  return undefined;
}

/** What either evaluation strategy found, before the decision is worded. */
interface Outcome {
  denyPolicy: AuthzPolicy | undefined;
  denyRule: CompiledRule | undefined;
  allowPolicy: AuthzPolicy | undefined;
  allowRule: CompiledRule | undefined;
  /** The ALLOW policies that apply, in order; empty when none. */
  allowPolicies: readonly AuthzPolicy[];
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

/**
 * Reasons for "ALLOW policies apply and none matched", cached by the list of policies (compiled
 * policies are immutable, so the text for a given list never changes): denials are common on the
 * agent's hot path and should not rebuild the same sentence.
 */
const noMatchReasons = new WeakMap<AuthzPolicy, { policies: readonly AuthzPolicy[]; l4: string; l7: string }[]>();

function sameList(a: readonly AuthzPolicy[], b: readonly AuthzPolicy[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function noMatchReason(allowPolicies: readonly AuthzPolicy[], l4: boolean): string {
  const first = allowPolicies[0] as AuthzPolicy;
  let entries = noMatchReasons.get(first);
  if (entries !== undefined) {
    for (const e of entries) if (sameList(e.policies, allowPolicies)) return l4 ? e.l4 : e.l7;
  } else {
    noMatchReasons.set(first, (entries = []));
  }
  const n = allowPolicies.length;
  const l7 = `denied: ${n} ALLOW ${n === 1 ? 'policy applies' : 'policies apply'} (${listPolicies(allowPolicies)}) and no rule matched`;
  const withL7 = allowPolicies.filter((p) => p.hasL7);
  const l4Text = withL7.length === 0 ? l7 : `${l7}; rules with L7 attributes in ${listPolicies(withL7)} never match at L4: send this traffic through a waypoint`;
  // Bound the cache per first policy: lists built per call (applySelectors) vary little.
  if (entries.length < 16) entries.push({ policies: [...allowPolicies], l4: l4Text, l7 });
  return l4 ? l4Text : l7;
}

function decide(o: Outcome, l4: boolean): Decision {
  let d: Decision;
  if (o.denyRule !== undefined && o.denyPolicy !== undefined) {
    d = {
      allow: false,
      action: 'DENY',
      code: 'DENY_MATCHED',
      policy: o.denyPolicy.ref,
      ruleIndex: o.denyRule.index,
      reason: l4 ? o.denyRule.reasonL4 : o.denyRule.reason,
    };
  } else if (o.allowPolicies.length === 0) {
    d = { allow: true, action: 'NONE', code: 'NO_ALLOW_POLICY', reason: 'allowed: no DENY policy matched and no ALLOW policy applies' };
  } else if (o.allowRule !== undefined && o.allowPolicy !== undefined) {
    d = {
      allow: true,
      action: 'ALLOW',
      code: 'ALLOW_MATCHED',
      policy: o.allowPolicy.ref,
      ruleIndex: o.allowRule.index,
      reason: l4 ? o.allowRule.reasonL4 : o.allowRule.reason,
    };
  } else {
    d = { allow: false, action: 'ALLOW', code: 'ALLOW_NO_MATCH', reason: noMatchReason(o.allowPolicies, l4) };
  }
  if (o.audit !== undefined) d.audit = o.audit;
  if (o.unsupported !== undefined) {
    d.unsupported = o.unsupported;
    d.reason += unsupportedNote(o.unsupported);
  }
  return d;
}

const EMPTY: readonly AuthzPolicy[] = [];

function evaluateList(list: readonly AuthzPolicy[], input: EvalInput, l4: boolean): Outcome {
  let denyPolicy: AuthzPolicy | undefined;
  let denyRule: CompiledRule | undefined;
  let allowPolicies: AuthzPolicy[] | undefined;
  let audit: PolicyRef[] | undefined;
  let unsupported: UnsupportedUse[] | undefined;
  for (let k = 0; k < list.length; k++) {
    const p = list[k] as AuthzPolicy;
    if (p.unsupported.length !== 0) (unsupported ??= []).push(...p.unsupported);
    const action = p.action;
    if (action === 'DENY') {
      if (denyRule === undefined) {
        denyRule = firstMatchingRule(p, input, l4);
        if (denyRule !== undefined) denyPolicy = p;
      }
    } else if (action === 'ALLOW') {
      (allowPolicies ??= []).push(p);
    } else if (action === 'AUDIT') {
      if (firstMatchingRule(p, input, l4) !== undefined) (audit ??= []).push(p.ref);
    }
  }
  let allowPolicy: AuthzPolicy | undefined;
  let allowRule: CompiledRule | undefined;
  if (denyRule === undefined && allowPolicies !== undefined) {
    for (let k = 0; k < allowPolicies.length; k++) {
      const p = allowPolicies[k] as AuthzPolicy;
      allowRule = firstMatchingRule(p, input, l4);
      if (allowRule !== undefined) {
        allowPolicy = p;
        break;
      }
    }
  }
  return { denyPolicy, denyRule, allowPolicy, allowRule, allowPolicies: allowPolicies ?? EMPTY, audit, unsupported };
}

/** Plain lists at least this long are indexed once seen twice (see autoIndexed). */
const AUTO_INDEX_MIN = 64;
const autoIndex = new WeakMap<readonly AuthzPolicy[], AuthzPolicySet | null>();

/**
 * A long plain list is indexed the second time the same array is passed (a list built afresh
 * per call is never worth indexing). The index is reused while the array is frozen or still holds
 * the same policies, so mutating a list in place never yields a stale decision.
 */
function autoIndexed(list: readonly AuthzPolicy[]): readonly AuthzPolicy[] | AuthzPolicySet {
  const known = autoIndex.get(list);
  if (known === undefined) {
    autoIndex.set(list, null);
    return list;
  }
  if (known !== null && (Object.isFrozen(list) || sameList(known.policies, list))) return known;
  const set = new AuthzPolicySet(list);
  autoIndex.set(list, set);
  return set;
}

function evaluateSet(set: AuthzPolicySet, input: EvalInput, l4: boolean): Outcome {
  const g = set.all;
  const deny = g.deny.first(input, l4);
  let unsupported: UnsupportedUse[] | undefined;
  for (const p of g.withUnsupported) (unsupported ??= []).push(...p.unsupported);
  let audit: PolicyRef[] | undefined;
  if (g.hasAudit) {
    for (let hit = g.audit.first(input, l4); hit !== undefined; hit = g.audit.first(input, l4, hit.order)) {
      audit ??= [];
      if (!audit.includes(hit.policy.ref)) audit.push(hit.policy.ref);
    }
  }
  const allow = deny === undefined && g.allowPolicies.length > 0 ? g.allow.first(input, l4) : undefined;
  return {
    denyPolicy: deny?.policy,
    denyRule: deny?.rule,
    allowPolicy: allow?.policy,
    allowRule: allow?.rule,
    allowPolicies: g.allowPolicies,
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
  let target = policies;
  if (!(target instanceof AuthzPolicySet) && target.length >= AUTO_INDEX_MIN) target = autoIndexed(target);
  if (options.applySelectors === true) {
    const namespace = ctx.destination.namespace;
    if (namespace === undefined) throw new AuthzContextError('applySelectors needs ctx.destination.namespace to know which policies select the destination');
    const workload = { namespace, labels: ctx.destination.labels ?? NO_LABELS };
    const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    if (target instanceof AuthzPolicySet) target = target.forWorkload(workload, root);
    else target = target.filter((p) => policyAppliesTo(p, workload, root));
  }
  if (target instanceof AuthzPolicySet) return decide(evaluateSet(target, input, l4), l4);
  return decide(evaluateList(target, input, l4), l4);
}
