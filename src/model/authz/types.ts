/**
 * Types of authorization: the AuthorizationPolicy spec exactly as Istio defines it
 * (security.istio.io/v1), the compiled policy the evaluator runs, the request context the agent
 * (L4) and the waypoint (L7) fill in, and the decision they get back.
 *
 * Invariants:
 * - `AuthorizationPolicySpec` mirrors Istio's field names one to one, so existing Istio YAML maps
 *   onto it unchanged. Every field is optional, as in Istio; an absent `action` means ALLOW.
 * - An `AuthzPolicy` is immutable once compiled (see compile.ts); it never refers back to YAML.
 * - Principals are SPIFFE ids without the `spiffe://` scheme (`cluster.local/ns/x/sa/y`), which is
 *   how Istio writes them in policies.
 * - A `Decision` always names what decided it: the policy and rule, or the default that applied
 *   (`code`), and carries an operator-readable `reason`.
 */
import type { EvalInput } from './eval-input.js';

/** The four actions of Istio's AuthorizationPolicy. Absent in the spec means `ALLOW`. */
export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/** Enforcement layer: the node agent sees L4 only; a waypoint sees L4 and HTTP (L7). */
export type AuthzLayer = 'L4' | 'L7';

/** Istio `type.v1beta1.WorkloadSelector`. */
export interface WorkloadSelectorSpec {
  matchLabels?: Record<string, string>;
}

/** Istio `type.v1beta1.PolicyTargetReference` (a Gateway API style reference). */
export interface PolicyTargetReferenceSpec {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}

/** Istio `ExtensionProvider` reference, only meaningful with `action: CUSTOM`. */
export interface ExtensionProviderSpec {
  name?: string;
}

/** Istio `Source`: who sends the traffic. Fields AND together; values within a field OR. */
export interface SourceSpec {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  /**
   * Istio 1.24+: `<namespace>/<serviceaccount>`, or a bare `<serviceaccount>` of the policy's
   * namespace, matched against the peer's SPIFFE identity (any trust domain).
   */
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  /**
   * Trust domains of the peer's SPIFFE identity (the part before the first `/` of the
   * principal): exact, `*` (any authenticated peer), or one leading or trailing `*`.
   */
  trustDomains?: string[];
  notTrustDomains?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

/** Istio `Operation`: what is accessed. Fields AND together; values within a field OR. */
export interface OperationSpec {
  hosts?: string[];
  notHosts?: string[];
  /** Ports are strings in Istio's API (`"8080"`). */
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** Istio `Rule.From`. */
export interface FromSpec {
  source?: SourceSpec;
}

/** Istio `Rule.To`. */
export interface ToSpec {
  operation?: OperationSpec;
}

/** Istio `Condition`: `key` must match one of `values` and none of `notValues`. */
export interface ConditionSpec {
  key?: string;
  values?: string[];
  notValues?: string[];
}

/** Istio `Rule`: matches when every present part (from, to, when) matches. */
export interface RuleSpec {
  from?: FromSpec[];
  to?: ToSpec[];
  when?: ConditionSpec[];
}

/** Istio `AuthorizationPolicy` spec (security.istio.io/v1). */
export interface AuthorizationPolicySpec {
  selector?: WorkloadSelectorSpec;
  targetRef?: PolicyTargetReferenceSpec;
  targetRefs?: PolicyTargetReferenceSpec[];
  rules?: RuleSpec[];
  action?: AuthzAction;
  provider?: ExtensionProviderSpec;
}

/** Identifies one AuthorizationPolicy resource. */
export interface PolicyRef {
  namespace: string;
  name: string;
}

/**
 * A feature a policy uses that ambit does not evaluate (CUSTOM action, `connection.sni`, an
 * unknown `when` key). The evaluator fails closed around it and reports it here.
 */
export interface UnsupportedUse {
  policy: PolicyRef;
  /** Index into `rules`, absent when the whole policy is affected (CUSTOM). */
  ruleIndex?: number;
  /** What is unsupported, e.g. `action CUSTOM` or `when key connection.sni`. */
  feature: string;
}

/** Predicate over one evaluation's prepared input; built by compile.ts. */
export type RulePredicate = (input: EvalInput) => boolean;

/** One compiled rule of a policy. */
export interface CompiledRule {
  /** Position in `spec.rules`. */
  readonly index: number;
  /** Matches with every attribute: used at L7. */
  readonly match: RulePredicate;
  /**
   * Used at L4. ALLOW/AUDIT: never matches when the rule has an L7 attribute, else as `match`.
   * DENY: matches on the rule's L4 attributes alone (fail closed).
   */
  readonly matchL4: RulePredicate;
  /** L7 attribute names the rule uses (`methods`, `request.headers[x-user]`...); empty if none. */
  readonly l7Attributes: readonly string[];
  /** Unsupported features the rule uses (`when key connection.sni`); empty if none. */
  readonly unsupported: readonly string[];
  /**
   * When every `from` entry requires one of a fixed set of exact principals, that set (used to
   * index large policy lists); otherwise undefined.
   */
  readonly requiredPrincipals: readonly string[] | undefined;
  /** Likewise, when every `from` entry requires one of a fixed set of exact namespaces. */
  readonly requiredNamespaces: readonly string[] | undefined;
  /** Likewise, when every `to` entry lists `ports`. */
  readonly requiredPorts: readonly number[] | undefined;
  /** Reason when this rule decides at L7 (precomputed: no string work on the hot path). */
  readonly reason: string;
  /** Reason when this rule decides at L4. */
  readonly reasonL4: string;
}

/** A compiled, immutable policy: its reference, its spec, and precomputed matchers. */
export interface AuthzPolicy {
  readonly ref: PolicyRef;
  /** `namespace/name`. */
  readonly key: string;
  readonly spec: AuthorizationPolicySpec;
  /** `spec.action`, defaulted to ALLOW. */
  readonly action: AuthzAction;
  readonly rules: readonly CompiledRule[];
  /** `spec.selector.matchLabels` (empty object when absent: every workload of the namespace). */
  readonly matchLabels: Readonly<Record<string, string>>;
  /** True when the policy targets Services/Gateways with `targetRef(s)` instead of a selector. */
  readonly hasTargetRefs: boolean;
  /** True when any rule uses an L7 attribute (see `hasL7Attributes`). */
  readonly hasL7: boolean;
  /** Unsupported features of this policy (CUSTOM action, unsupported `when` keys). */
  readonly unsupported: readonly UnsupportedUse[];
}

/** The peer that opened the connection. */
export interface AuthzSource {
  /** SPIFFE id without `spiffe://` (`cluster.local/ns/x/sa/y`); absent for plaintext peers. */
  principal?: string;
  /** Source namespace; when absent it is derived from `principal` (`.../ns/<ns>/...`). */
  namespace?: string;
  /** Peer IP address of the connection (IPv4, IPv6 or IPv4-mapped IPv6). */
  ip: string;
  /** Original client IP (X-Forwarded-For / PROXY protocol); defaults to `ip`. */
  remoteIp?: string;
}

/** The workload the traffic is for. */
export interface AuthzDestination {
  ip: string;
  port: number;
  /** Destination namespace (used by `applySelectors` and reasons; default unknown). */
  namespace?: string;
  /** Destination workload labels (used by `applySelectors`; default none). */
  labels?: Readonly<Record<string, string>>;
}

/** HTTP request attributes, known at a waypoint (L7) only. */
export interface AuthzRequest {
  method?: string;
  /** Request path; a query string or fragment is ignored for matching. */
  path?: string;
  /** `:authority` / `Host`, with or without a port. */
  host?: string;
  /** Header names in lower case. */
  headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Authenticated JWT principal `<iss>/<sub>` (Istio `request.auth.principal`). */
  principal?: string;
  /** JWT `aud` values. */
  audiences?: readonly string[];
  /** JWT `azp` (authorized presenter). */
  presenter?: string;
  /** Validated JWT claims, nested objects allowed. */
  claims?: Readonly<Record<string, unknown>>;
  /**
   * Top-level claims whose string value is a space-delimited list (`scope: "read write"`), matched
   * item by item, as Istio's RequestAuthentication `spaceDelimitedClaims` (default Istio's own:
   * `scope` and `permission`; names given here are added to those).
   */
  spaceDelimitedClaims?: readonly string[];
}

/** Everything the evaluator may look at for one connection or request. */
export interface AuthzContext {
  source: AuthzSource;
  destination: AuthzDestination;
  /** Present at L7; ignored at L4. */
  request?: AuthzRequest;
}

/** Options of `evaluateAuthorization`. */
export interface EvaluateOptions {
  /** Which layer evaluates; decides how rules with L7 attributes behave. */
  layer: AuthzLayer;
  /**
   * Skip policies whose namespace/selector does not select `ctx.destination` (default false: the
   * caller already passed only the policies that apply to the destination workload).
   */
  applySelectors?: boolean;
  /** Istio root namespace whose policies apply mesh-wide (default `istio-system`). */
  rootNamespace?: string;
}

/**
 * Why a decision came out as it did:
 * - `DENY_MATCHED`: a DENY policy rule matched.
 * - `ALLOW_MATCHED`: no DENY matched and an ALLOW policy rule matched.
 * - `ALLOW_NO_MATCH`: ALLOW policies apply but none matched (deny).
 * - `NO_ALLOW_POLICY`: no DENY matched and no ALLOW policy applies (allow).
 */
export type DecisionCode = 'DENY_MATCHED' | 'ALLOW_MATCHED' | 'ALLOW_NO_MATCH' | 'NO_ALLOW_POLICY';

/** The outcome of one authorization evaluation. */
export interface Decision {
  allow: boolean;
  /** Action of the kind of policy that decided: DENY/ALLOW, or NONE when no policy decided. */
  action: 'ALLOW' | 'DENY' | 'NONE';
  code: DecisionCode;
  /** The policy whose rule decided (DENY_MATCHED, ALLOW_MATCHED). */
  policy?: PolicyRef;
  /** Index of the deciding rule in that policy's `rules`. */
  ruleIndex?: number;
  /** Operator-readable explanation. */
  reason: string;
  /** AUDIT policies that matched (they never change the decision). */
  audit?: PolicyRef[];
  /** Unsupported features met among the evaluated policies (never silently allowed). */
  unsupported?: UnsupportedUse[];
}

/** Severity of a lint finding. */
export type LintSeverity = 'error' | 'warning';

/** One finding of `lintAuthorizationPolicy`. */
export interface AuthzLintIssue {
  severity: LintSeverity;
  /** Stable code, e.g. `AMBIT_AUTHZ_UNKNOWN_KEY`. */
  code: string;
  message: string;
  /** Field path relative to the policy's `spec`, e.g. `['rules', 0, 'when', 1, 'key']`. */
  path: readonly (string | number)[];
}
