/**
 * Diagnostics of the resource model: every problem `ambit analyze` (and the control plane at
 * start-up) reports, with a stable code, a severity, and where it is: file, line, column (1-based)
 * and the field path inside the resource (`spec.http[0].route[1].weight`).
 *
 * Invariants:
 * - Every code a diagnostic can carry is listed in `DIAGNOSTIC_CODES` with its default severity
 *   and a one-line explanation; `ambit analyze --codes` prints that table, tests check each one.
 * - Positions are optional: resources that come from the Kubernetes API have no file.
 * - Diagnostics never contain secret material (keys, tokens): messages quote field names and
 *   short scalar values only.
 */

export type Severity = 'error' | 'warning' | 'info';

/** One segment of a field path: an object key or an array index. */
export type PathSegment = string | number;
export type FieldPath = readonly PathSegment[];

/** A position in a source file (1-based line and column). */
export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

/** Identifies one resource: API group (`''` for core), kind, namespace (`''` if cluster-scoped), name. */
export interface ResourceRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

export interface Diagnostic {
  severity: Severity;
  /** Stable code from `DIAGNOSTIC_CODES`, e.g. `AMBIT_SCHEMA_TYPE`. */
  code: DiagnosticCode;
  message: string;
  /** File the problem is in; absent for objects that did not come from a file. */
  file?: string;
  /** 1-based line; absent when unknown. */
  line?: number;
  /** 1-based column; absent when unknown. */
  column?: number;
  /** Field path inside the resource, formatted (`spec.http[0].route[1].weight`); absent for file-level problems. */
  path?: string;
  /** The resource the problem is about, when there is one. */
  resource?: ResourceRef;
  /**
   * AMBIT_OBJECT_UNKNOWN_KIND: the kind ignored, `group/Kind` (`Kind` for core), by which the
   * loader reports each such kind once, at its first object, with the number of objects.
   */
  ignoredKind?: string;
  /** AMBIT_OBJECT_UNKNOWN_KIND: how many objects of `ignoredKind` were ignored (default 1). */
  count?: number;
}

interface CodeInfo {
  readonly severity: Severity;
  readonly summary: string;
}

/**
 * Every diagnostic code, its default severity and what it means. Severity can differ per
 * occurrence only where the summary says so.
 */
export const DIAGNOSTIC_CODES = {
  // input and YAML
  AMBIT_INPUT_TOO_LARGE: { severity: 'error', summary: 'file is larger than the size limit (default 10 MiB) and was not read' },
  AMBIT_INPUT_NOT_YAML: { severity: 'error', summary: 'file is binary or not valid UTF-8 text' },
  AMBIT_INPUT_NOT_OBJECT: { severity: 'error', summary: 'a YAML document is not a mapping (not a Kubernetes object)' },
  AMBIT_YAML_SYNTAX: { severity: 'error', summary: 'YAML syntax error' },
  AMBIT_YAML_DUPLICATE_KEY: { severity: 'error', summary: 'a mapping has the same key twice' },
  AMBIT_YAML_TOO_DEEP: { severity: 'error', summary: 'nesting deeper than the limit (default 64 levels)' },
  AMBIT_YAML_ALIAS_LIMIT: { severity: 'error', summary: 'too many YAML alias expansions (an alias bomb); limit default 100' },
  // object identity
  AMBIT_OBJECT_NO_KIND: { severity: 'error', summary: 'apiVersion or kind missing or not a string' },
  AMBIT_OBJECT_UNKNOWN_KIND: { severity: 'warning', summary: 'a kind that ambit does not model (WorkloadEntry, EnvoyFilter, ...): its objects are ignored; reported once per kind, saying what to use instead' },
  AMBIT_OBJECT_UNSUPPORTED_VERSION: { severity: 'error', summary: 'known kind with an apiVersion ambit does not accept' },
  AMBIT_OBJECT_DUPLICATE: { severity: 'error', summary: 'same kind, namespace and name defined twice' },
  // schema
  AMBIT_SCHEMA_TYPE: { severity: 'error', summary: 'a field has the wrong type' },
  AMBIT_SCHEMA_REQUIRED: { severity: 'error', summary: 'a required field is missing' },
  AMBIT_SCHEMA_ENUM: { severity: 'error', summary: 'a value is not one of the allowed values' },
  AMBIT_SCHEMA_UNKNOWN_FIELD: { severity: 'error', summary: 'a field that the API does not define (typo?): the resource is refused, as Istio refuses it; a warning (the field is ignored) with --allow-unknown-fields, under status, and for objects from the Kubernetes API' },
  AMBIT_SCHEMA_UNIMPLEMENTED: { severity: 'warning', summary: 'a field or value the API defines but ambit does not implement' },
  AMBIT_SCHEMA_DEPRECATED: { severity: 'info', summary: 'a deprecated field; it still works' },
  AMBIT_SCHEMA_NOT_APPLIED: { severity: 'info', summary: 'a field ambit accepts and does not act on, with why (warning where that weakens a policy)' },
  AMBIT_SCHEMA_RANGE: { severity: 'error', summary: 'a number or length outside its allowed range' },
  AMBIT_SCHEMA_FORMAT: { severity: 'error', summary: 'a string with the wrong format (IP, CIDR, host, regex, ...)' },
  AMBIT_SCHEMA_DURATION: { severity: 'error', summary: 'not a valid duration (`1.5s`, `100ms`, `2m`) or below its minimum' },
  AMBIT_SCHEMA_NAME: { severity: 'error', summary: 'a name that is not a valid DNS-1123 / DNS-1035 name' },
  AMBIT_SCHEMA_LABEL: { severity: 'error', summary: 'a label key or value that Kubernetes would reject' },
  AMBIT_SCHEMA_ONE_OF: { severity: 'error', summary: 'more than one (or none) of mutually exclusive fields is set' },
  AMBIT_SCHEMA_WEIGHT_SUM: { severity: 'error', summary: 'the route weights of several destinations are all 0 (weights are relative: 1 and 3 mean 25% and 75%)' },
  AMBIT_SCHEMA_DUPLICATE_ITEM: { severity: 'error', summary: 'two list items with the same name or port' },
  AMBIT_SCHEMA_INVALID: { severity: 'error', summary: 'a value that is invalid for a reason given in the message' },
  AMBIT_TELEMETRY_EXPRESSION: { severity: 'error', summary: 'a Telemetry access-log filter or tag value outside the CEL subset ambit evaluates (the message names the construct); the Telemetry is refused' },
  // cross references
  AMBIT_REF_UNKNOWN_HOST: { severity: 'error', summary: 'a route or policy names a host that no Service or ServiceEntry provides' },
  AMBIT_REF_UNKNOWN_SUBSET: { severity: 'error', summary: 'a route names a subset no DestinationRule defines' },
  AMBIT_REF_UNKNOWN_SERVICE: { severity: 'error', summary: 'an HTTPRoute or policy refers to a Service that does not exist' },
  AMBIT_REF_NOT_PERMITTED: { severity: 'error', summary: 'a route backendRef names a Service of another namespace that no ReferenceGrant there opens to it (ResolvedRefs=False, RefNotPermitted)' },
  AMBIT_REF_UNKNOWN_PORT: { severity: 'error', summary: 'a route refers to a port the Service does not expose' },
  AMBIT_REF_SELECTOR_NO_MATCH: { severity: 'warning', summary: 'a policy selector matches no pod' },
  AMBIT_REF_SERVICE_NO_PODS: { severity: 'warning', summary: 'a Service selector matches no pod' },
  AMBIT_REF_SUBSET_NO_PODS: { severity: 'warning', summary: 'a DestinationRule subset matches no pod of its Service' },
  AMBIT_REF_UNKNOWN_WAYPOINT: { severity: 'error', summary: 'a namespace, Service or Pod is bound to a waypoint Gateway that does not exist' },
  AMBIT_REF_WAYPOINT_NO_PODS: { severity: 'warning', summary: 'a waypoint Gateway has no pods (nothing would serve it)' },
  AMBIT_REF_UNKNOWN_NODE: { severity: 'error', summary: 'a pod is scheduled on a Node that is not defined' },
  AMBIT_REF_UNKNOWN_NAMESPACE: { severity: 'warning', summary: 'an object is in a Namespace that is not defined (it is assumed to exist, not enrolled)' },
  AMBIT_REF_UNKNOWN_SERVICE_ACCOUNT: { severity: 'info', summary: 'a pod uses a ServiceAccount that is not defined' },
  AMBIT_REF_DUPLICATE_IP: { severity: 'error', summary: 'two pods (or two Services) have the same IP address' },
  AMBIT_REF_UNKNOWN_TARGET_PORT: { severity: 'warning', summary: 'a Service targetPort name that a selected pod does not declare' },
  AMBIT_REF_DELEGATE_UNUSED: { severity: 'warning', summary: 'a VirtualService without hosts (a delegate) that no VirtualService delegates to: it routes nothing' },
  AMBIT_REF_CONFLICT: { severity: 'warning', summary: 'several objects configure the same thing; the oldest (then alphabetical) wins' },
  AMBIT_POLICY_MULTIPLE_MESH_PEER_AUTHN: { severity: 'error', summary: 'more than one mesh-wide PeerAuthentication in the root namespace' },
  AMBIT_POLICY_L7_WITHOUT_WAYPOINT: { severity: 'warning', summary: 'a selector policy has L7 rules but the workload has no waypoint: ambit denies matching traffic at L4' },
  AMBIT_POLICY_RATE_LIMIT_WITHOUT_WAYPOINT: { severity: 'warning', summary: 'a LocalRateLimit targets a Service that is not bound to a waypoint: nothing enforces it' },
  AMBIT_POLICY_PORT_LEVEL_WITHOUT_SELECTOR: { severity: 'error', summary: 'portLevelMtls set on a PeerAuthentication without a selector' },
  AMBIT_POLICY_AUTHZ: { severity: 'warning', summary: 'an AuthorizationPolicy problem found by the authorization linter (message names it); severity as the linter says' },
} as const satisfies Record<string, CodeInfo>;

export type DiagnosticCode = keyof typeof DIAGNOSTIC_CODES;

/** Default severity of a code. */
export function severityOf(code: DiagnosticCode): Severity {
  return DIAGNOSTIC_CODES[code].severity;
}

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Formats `['spec', 'http', 0, 'route']` as `spec.http[0].route`; odd keys are quoted (`labels["app.kubernetes.io/name"]`). */
export function formatPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (SIMPLE_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/** Orders diagnostics by file, line, column, then severity and code; positionless ones last. */
export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  const fa = a.file ?? '\uffff';
  const fb = b.file ?? '\uffff';
  if (fa !== fb) return fa < fb ? -1 : 1;
  const la = a.line ?? Number.MAX_SAFE_INTEGER;
  const lb = b.line ?? Number.MAX_SAFE_INTEGER;
  if (la !== lb) return la - lb;
  const ca = a.column ?? 0;
  const cb = b.column ?? 0;
  if (ca !== cb) return ca - cb;
  if (a.severity !== b.severity) return SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity];
  return a.code < b.code ? -1 : a.code > b.code ? 1 : a.message < b.message ? -1 : a.message > b.message ? 1 : 0;
}

/** `group/Kind namespace/name` for messages (`Pod bookinfo/reviews-v1`). */
export function describeRef(ref: ResourceRef): string {
  return `${ref.kind} ${ref.namespace === '' ? ref.name : `${ref.namespace}/${ref.name}`}`;
}
