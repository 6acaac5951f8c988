/**
 * Static checks of an AuthorizationPolicy spec for `ambit analyze`: everything Istio would reject,
 * everything ambit does not implement, and L7-only fields whose effect depends on a waypoint.
 * Unknown fields and features are reported, never silently ignored.
 *
 * Invariants:
 * - Every condition that makes `compileAuthorizationPolicy` throw is reported here as an error,
 *   so a spec with no error-severity issue always compiles.
 * - Issues carry a field path relative to `spec` (for the loader to map to file:line:col) and a
 *   stable `AMBIT_AUTHZ_...` code; messages say what to change.
 * - Linting never throws, whatever the input.
 */
import { parseConditionKey } from './condition-keys.js';
import { parseCidr } from '../../util/cidr.js';
import { hasInnerWildcard, isPathTemplate, pathTemplateProblem } from './string-match.js';
import type { AuthzLintIssue, LintSeverity } from './types.js';

type Path = (string | number)[];

/** Options of `lintAuthorizationPolicy`. */
export interface LintOptions {
  /**
   * Whether the workloads this policy selects have a waypoint. `true`: no L7 warning. `false`:
   * warn that rules with L7 attributes deny (ALLOW) or fail closed (DENY) at L4. Default
   * undefined: warn that L7 attributes are enforced only when traffic passes a waypoint.
   */
  waypoint?: boolean;
}

const SPEC_FIELDS = ['selector', 'targetRef', 'targetRefs', 'rules', 'action', 'provider'];
const SELECTOR_FIELDS = ['matchLabels'];
const TARGET_REF_FIELDS = ['group', 'kind', 'name', 'namespace'];
const PROVIDER_FIELDS = ['name'];
const RULE_FIELDS = ['from', 'to', 'when'];
const FROM_FIELDS = ['source'];
const TO_FIELDS = ['operation'];
const CONDITION_FIELDS = ['key', 'values', 'notValues'];
const SOURCE_FIELDS = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'serviceAccounts', 'notServiceAccounts', 'trustDomains', 'notTrustDomains', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks',
  'notRemoteIpBlocks',
];
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];
const CIDR_FIELDS = new Set(['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']);
const L7_SOURCE_FIELDS = new Set(['requestPrincipals', 'notRequestPrincipals']);
const L7_OPERATION_FIELDS = new Set(['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']);
const TARGET_KINDS = new Set(['Gateway', 'Service', 'ServiceEntry', 'GatewayClass']);
const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** Levenshtein distance, for "did you mean" hints on misspelt field names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}

function suggestion(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === name.toLowerCase() ? 0 : distance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 4)) ? `; did you mean "${best}"?` : '';
}

class Linter {
  readonly issues: AuthzLintIssue[] = [];

  add(severity: LintSeverity, code: string, path: Path, message: string): void {
    this.issues.push({ severity, code, message, path: [...path] });
  }

  object(v: unknown, path: Path, what: string): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) {
      this.add('error', 'AMBIT_AUTHZ_INVALID_TYPE', path, `${what} must be an object, got ${describe(v)}`);
      return undefined;
    }
    return v as Record<string, unknown>;
  }

  list(v: unknown, path: Path, what: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.add('error', 'AMBIT_AUTHZ_INVALID_TYPE', path, `${what} must be a list, got ${describe(v)}`);
      return [];
    }
    return v;
  }

  /** The string items of a list; non-strings are reported and dropped. */
  strings(v: unknown, path: Path, what: string): { value: string; path: Path }[] {
    const out: { value: string; path: Path }[] = [];
    this.list(v, path, what).forEach((item, i) => {
      if (typeof item !== 'string') this.add('error', 'AMBIT_AUTHZ_INVALID_TYPE', [...path, i], `${what} entries must be strings, got ${describe(item)}`);
      else out.push({ value: item, path: [...path, i] });
    });
    return out;
  }

  unknownFields(obj: Record<string, unknown>, path: Path, known: readonly string[], where: string): void {
    for (const k of Object.keys(obj)) {
      if (!known.includes(k)) {
        this.add('error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', [...path, k], `unknown field "${k}" in ${where}${suggestion(k, known)}`);
      }
    }
  }

  cidrs(items: { value: string; path: Path }[]): void {
    for (const { value, path } of items) {
      const c = parseCidr(value.trim());
      if (c === undefined) this.add('error', 'AMBIT_AUTHZ_INVALID_CIDR', path, `"${value}" is not an IP address or CIDR block (e.g. 198.18.0.0/15 or 2001:db8::/32)`);
      else if (c.hostBitsSet) this.add('warning', 'AMBIT_AUTHZ_CIDR_HOST_BITS', path, `"${value}" has host bits set beyond its prefix; it is matched as the enclosing network`);
    }
  }

  ports(v: unknown, path: Path, what: string): void {
    this.list(v, path, what).forEach((item, i) => {
      const n = typeof item === 'number' ? item : typeof item === 'string' && /^[0-9]{1,5}$/.test(item.trim()) ? Number(item.trim()) : NaN;
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        this.add('error', 'AMBIT_AUTHZ_INVALID_PORT', [...path, i], `"${String(item)}" is not a port number (1-65535)`);
      } else if (typeof item === 'number') {
        this.add('warning', 'AMBIT_AUTHZ_PORT_NOT_STRING', [...path, i], `ports are strings in Istio's API; write "${item}" (quoted)`);
      }
    });
  }

  wildcards(items: { value: string; path: Path }[], field: string): void {
    for (const { value, path } of items) {
      if (field === 'paths' || field === 'notPaths') {
        if (isPathTemplate(value)) {
          const problem = pathTemplateProblem(value);
          if (problem !== undefined) this.add('error', 'AMBIT_AUTHZ_INVALID_PATH_TEMPLATE', path, `path template "${value}": ${problem}`);
          continue;
        }
      }
      if (hasInnerWildcard(value)) {
        this.add('warning', 'AMBIT_AUTHZ_INNER_WILDCARD', path, `"${value}": "*" is a wildcard only as the first or last character; here it is matched literally`);
      }
    }
  }
}

function lintSource(l: Linter, v: unknown, path: Path, l7: Set<string>): void {
  if (v === undefined || v === null) {
    l.add('error', 'AMBIT_AUTHZ_EMPTY_SOURCE', path, 'from entry needs a "source" (principals, namespaces, ipBlocks...)');
    return;
  }
  const src = l.object(v, path, 'source');
  if (src === undefined) return;
  l.unknownFields(src, path, SOURCE_FIELDS, 'source');
  let set = 0;
  for (const field of SOURCE_FIELDS) {
    const items = l.strings(src[field], [...path, field], field);
    if (items.length === 0) continue;
    set++;
    if (L7_SOURCE_FIELDS.has(field)) l7.add(field);
    if (CIDR_FIELDS.has(field)) {
      l.cidrs(items);
      continue;
    }
    if (field === 'trustDomains' || field === 'notTrustDomains') {
      for (const it of items) {
        const problem = trustDomainProblem(it.value);
        if (problem !== undefined) l.add('error', 'AMBIT_AUTHZ_INVALID_TRUST_DOMAIN', it.path, `${field}: ${problem}`);
      }
      continue;
    }
    l.wildcards(items, field);
    if (field === 'principals' || field === 'notPrincipals') {
      for (const it of items) {
        if (it.value.startsWith('spiffe://')) {
          l.add('warning', 'AMBIT_AUTHZ_SPIFFE_PREFIX', it.path, `principals are written without "spiffe://" (e.g. "${it.value.slice(9)}"); ambit strips it`);
        }
      }
    }
    if (field === 'serviceAccounts' || field === 'notServiceAccounts') {
      if (items.length > 16) l.add('error', 'AMBIT_AUTHZ_INVALID_SERVICE_ACCOUNT', [...path, field], `${field} may have at most 16 entries (has ${items.length}), as in Istio`);
      for (const it of items) {
        if (!SERVICE_ACCOUNT.test(it.value) || it.value.length > 320) {
          l.add('error', 'AMBIT_AUTHZ_INVALID_SERVICE_ACCOUNT', it.path, `"${it.value}" must be "<serviceaccount>" (in the policy's namespace) or "<namespace>/<serviceaccount>", without wildcards`);
        }
      }
    }
  }
  const has = (f: string): boolean => Array.isArray(src[f]) && (src[f] as unknown[]).length > 0;
  if ((has('serviceAccounts') || has('notServiceAccounts')) && ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].some(has)) {
    l.add('error', 'AMBIT_AUTHZ_SERVICE_ACCOUNTS_WITH_PRINCIPALS', path, 'a source cannot set serviceAccounts together with principals or namespaces (Istio refuses it); use separate from entries');
  }
  if (set === 0) l.add('error', 'AMBIT_AUTHZ_EMPTY_SOURCE', path, 'source sets no field: it would match everyone; remove the from entry or set principals, namespaces or ipBlocks');
}

/** `<sa>` or `<ns>/<sa>`, no wildcards (Istio's serviceAccounts and source.serviceAccount). */
const SERVICE_ACCOUNT = /^([^/*]+\/)?[^/*]+$/;

/** Why a trustDomains value is invalid (Istio's rule), or undefined. */
function trustDomainProblem(v: string): string | undefined {
  if (v === '') return 'an empty trust domain matches nothing';
  if (v.includes('/')) return `"${v}" is a trust domain, not a principal: it must not contain "/"`;
  const stars = v.split('*').length - 1;
  if (stars > 1) return `"${v}" may have at most one "*"`;
  if (stars === 1 && v !== '*' && !v.startsWith('*') && !v.endsWith('*')) return `"${v}": "*" is allowed only at the start or the end`;
  return undefined;
}

function lintOperation(l: Linter, v: unknown, path: Path, l7: Set<string>): void {
  if (v === undefined || v === null) {
    l.add('error', 'AMBIT_AUTHZ_EMPTY_OPERATION', path, 'to entry needs an "operation" (ports, methods, paths, hosts...)');
    return;
  }
  const op = l.object(v, path, 'operation');
  if (op === undefined) return;
  l.unknownFields(op, path, OPERATION_FIELDS, 'operation');
  let set = 0;
  for (const field of OPERATION_FIELDS) {
    if (field === 'ports' || field === 'notPorts') {
      const raw = l.list(op[field], [...path, field], field);
      if (raw.length > 0) set++;
      l.ports(op[field], [...path, field], field);
      continue;
    }
    const items = l.strings(op[field], [...path, field], field);
    if (items.length === 0) continue;
    set++;
    if (L7_OPERATION_FIELDS.has(field)) l7.add(field);
    l.wildcards(items, field);
    if (field === 'methods' || field === 'notMethods') {
      for (const it of items) {
        if (it.value !== it.value.toUpperCase()) {
          l.add('warning', 'AMBIT_AUTHZ_METHOD_CASE', it.path, `method "${it.value}" is matched case-sensitively; HTTP methods are upper case ("${it.value.toUpperCase()}")`);
        }
      }
    }
  }
  if (set === 0) l.add('error', 'AMBIT_AUTHZ_EMPTY_OPERATION', path, 'operation sets no field: it would match everything; remove the to entry or set ports, methods, paths or hosts');
}

function lintCondition(l: Linter, v: unknown, path: Path, l7: Set<string>): void {
  const cond = l.object(v, path, 'condition');
  if (cond === undefined) {
    if (v === undefined || v === null) l.add('error', 'AMBIT_AUTHZ_INVALID_TYPE', path, 'condition must be an object with key and values');
    return;
  }
  l.unknownFields(cond, path, CONDITION_FIELDS, 'condition');
  const key = cond['key'];
  const values = l.strings(cond['values'], [...path, 'values'], 'values');
  const notValues = l.strings(cond['notValues'], [...path, 'notValues'], 'notValues');
  if (typeof key !== 'string' || key === '') {
    l.add('error', 'AMBIT_AUTHZ_CONDITION_KEY_MISSING', [...path, 'key'], 'condition needs a key (e.g. source.ip or request.headers[x-user])');
    return;
  }
  if (values.length === 0 && notValues.length === 0) {
    l.add('error', 'AMBIT_AUTHZ_CONDITION_NO_VALUES', path, `condition "${key}" needs values or notValues`);
  }
  const k = parseConditionKey(key);
  if (k.kind === 'unknown') {
    l.add('error', 'AMBIT_AUTHZ_UNKNOWN_CONDITION_KEY', [...path, 'key'], `${k.why}; supported keys: source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, source.trustDomain, destination.ip, destination.port, request.headers[NAME], request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME]`);
    return;
  }
  if (k.kind === 'unsupported') {
    l.add('warning', 'AMBIT_AUTHZ_UNSUPPORTED_CONDITION_KEY', [...path, 'key'], `${k.why}: in an ALLOW or AUDIT policy this rule never matches; in a DENY policy the condition always holds (fail closed)`);
    return;
  }
  if (k.l7) l7.add(key);
  const all = [...values, ...notValues];
  if (k.kind === 'source.ip' || k.kind === 'remote.ip' || k.kind === 'destination.ip') l.cidrs(all);
  else if (k.kind === 'destination.port') {
    for (const it of all) {
      if (!/^[0-9]{1,5}$/.test(it.value.trim()) || Number(it.value) < 1 || Number(it.value) > 65535) {
        l.add('error', 'AMBIT_AUTHZ_INVALID_PORT', it.path, `"${it.value}" is not a port number (1-65535)`);
      }
    }
  } else if (k.kind === 'source.trustDomain') {
    for (const it of all) {
      const problem = trustDomainProblem(it.value);
      if (problem !== undefined) l.add('error', 'AMBIT_AUTHZ_INVALID_TRUST_DOMAIN', it.path, `${key}: ${problem}`);
    }
  } else if (k.kind === 'source.serviceAccount') {
    for (const it of all) {
      if (!SERVICE_ACCOUNT.test(it.value)) l.add('error', 'AMBIT_AUTHZ_INVALID_SERVICE_ACCOUNT', it.path, `"${it.value}" must be "<serviceaccount>" (in the policy's namespace) or "<namespace>/<serviceaccount>", without wildcards`);
    }
  } else l.wildcards(all, key);
}

function l7Message(action: string, attrs: string, waypoint: boolean | undefined): string {
  if (waypoint === false) {
    return action === 'DENY'
      ? `rule uses L7 attributes (${attrs}) but the selected workloads have no waypoint: the node agent enforces it on its L4 attributes alone, denying more than written (fail closed)`
      : `rule uses L7 attributes (${attrs}) but the selected workloads have no waypoint: the node agent can never match it, so the traffic it allows is denied; bind a waypoint (label ambit.dev/use-waypoint) or remove the L7 fields`;
  }
  return action === 'DENY'
    ? `rule uses L7 attributes (${attrs}): enforced as written only by a waypoint; without one the node agent enforces it on its L4 attributes alone (fail closed)`
    : `rule uses L7 attributes (${attrs}): enforced only by a waypoint; without one the node agent never matches it and denies the traffic it allows`;
}

/**
 * Checks one AuthorizationPolicy spec. Returns every problem found (empty when clean); never
 * throws. Paths are relative to `spec`.
 */
export function lintAuthorizationPolicy(spec: unknown, options: LintOptions = {}): AuthzLintIssue[] {
  const l = new Linter();
  if (spec === undefined || spec === null) return l.issues;
  const s = l.object(spec, [], 'spec');
  if (s === undefined) return l.issues;
  l.unknownFields(s, [], SPEC_FIELDS, 'spec');

  const rawAction = s['action'];
  let action = 'ALLOW';
  if (rawAction !== undefined && rawAction !== null) {
    if (typeof rawAction !== 'string' || !ACTIONS.includes(rawAction)) {
      l.add('error', 'AMBIT_AUTHZ_INVALID_ACTION', ['action'], `unknown action ${JSON.stringify(rawAction)}; expected one of ${ACTIONS.join(', ')}`);
    } else action = rawAction;
  }
  const provider = l.object(s['provider'], ['provider'], 'provider');
  if (provider !== undefined) l.unknownFields(provider, ['provider'], PROVIDER_FIELDS, 'provider');
  if (action === 'CUSTOM') {
    l.add('error', 'AMBIT_AUTHZ_CUSTOM_UNSUPPORTED', ['action'], 'action CUSTOM (external authorization) is not supported by ambit: this policy is not applied; use ALLOW/DENY policies instead');
    if (provider === undefined || typeof provider['name'] !== 'string' || provider['name'] === '') {
      l.add('error', 'AMBIT_AUTHZ_CUSTOM_NO_PROVIDER', ['provider'], 'action CUSTOM needs provider.name');
    }
  } else if (provider !== undefined) {
    l.add('error', 'AMBIT_AUTHZ_PROVIDER_WITHOUT_CUSTOM', ['provider'], 'provider is only valid with action CUSTOM');
  }

  const selector = l.object(s['selector'], ['selector'], 'selector');
  if (selector !== undefined) {
    l.unknownFields(selector, ['selector'], SELECTOR_FIELDS, 'selector');
    const labels = l.object(selector['matchLabels'], ['selector', 'matchLabels'], 'matchLabels');
    for (const [k, v] of Object.entries(labels ?? {})) {
      if (typeof v !== 'string') l.add('error', 'AMBIT_AUTHZ_INVALID_TYPE', ['selector', 'matchLabels', k], `label "${k}" must have a string value, got ${describe(v)}`);
    }
  }
  const refs: { v: unknown; path: Path }[] = [];
  if (s['targetRef'] !== undefined && s['targetRef'] !== null) refs.push({ v: s['targetRef'], path: ['targetRef'] });
  l.list(s['targetRefs'], ['targetRefs'], 'targetRefs').forEach((v, i) => refs.push({ v, path: ['targetRefs', i] }));
  if (s['targetRef'] !== undefined && s['targetRef'] !== null && s['targetRefs'] !== undefined && s['targetRefs'] !== null) {
    l.add('error', 'AMBIT_AUTHZ_TARGETREF_AND_TARGETREFS', ['targetRefs'], 'set either targetRef or targetRefs, not both');
  }
  if (selector !== undefined && refs.length > 0) {
    l.add('error', 'AMBIT_AUTHZ_SELECTOR_AND_TARGETREF', ['selector'], 'a policy has either a selector or targetRef(s), not both');
  }
  for (const { v, path } of refs) {
    const ref = l.object(v, path, 'targetRef');
    if (ref === undefined) continue;
    l.unknownFields(ref, path, TARGET_REF_FIELDS, 'targetRef');
    if (typeof ref['name'] !== 'string' || ref['name'] === '') l.add('error', 'AMBIT_AUTHZ_TARGETREF_NAME', [...path, 'name'], 'targetRef needs a name');
    const kind = ref['kind'];
    if (typeof kind !== 'string' || !TARGET_KINDS.has(kind)) {
      l.add('error', 'AMBIT_AUTHZ_TARGETREF_KIND', [...path, 'kind'], `targetRef kind must be one of ${[...TARGET_KINDS].join(', ')}, got ${JSON.stringify(kind)}`);
    }
  }

  const rules = l.list(s['rules'], ['rules'], 'rules');
  if (rules.length === 0 && (action === 'DENY' || action === 'AUDIT')) {
    l.add('warning', 'AMBIT_AUTHZ_NO_RULES', ['rules'], `a ${action} policy without rules never matches; add rules (rules: [{}] matches everything)`);
  }
  rules.forEach((rv, i) => {
    const path: Path = ['rules', i];
    const rule = l.object(rv, path, 'rule');
    if (rule === undefined) return;
    l.unknownFields(rule, path, RULE_FIELDS, 'rule');
    const l7 = new Set<string>();
    l.list(rule['from'], [...path, 'from'], 'from').forEach((fv, j) => {
      const fp: Path = [...path, 'from', j];
      const from = l.object(fv, fp, 'from entry');
      if (from === undefined) {
        if (fv === undefined || fv === null) l.add('error', 'AMBIT_AUTHZ_EMPTY_SOURCE', fp, 'from entry needs a "source"');
        return;
      }
      l.unknownFields(from, fp, FROM_FIELDS, 'from entry');
      lintSource(l, from['source'], [...fp, 'source'], l7);
    });
    l.list(rule['to'], [...path, 'to'], 'to').forEach((tv, j) => {
      const tp: Path = [...path, 'to', j];
      const to = l.object(tv, tp, 'to entry');
      if (to === undefined) {
        if (tv === undefined || tv === null) l.add('error', 'AMBIT_AUTHZ_EMPTY_OPERATION', tp, 'to entry needs an "operation"');
        return;
      }
      l.unknownFields(to, tp, TO_FIELDS, 'to entry');
      lintOperation(l, to['operation'], [...tp, 'operation'], l7);
    });
    l.list(rule['when'], [...path, 'when'], 'when').forEach((cv, j) => lintCondition(l, cv, [...path, 'when', j], l7));
    if (l7.size > 0 && options.waypoint !== true && action !== 'CUSTOM') {
      l.add('warning', 'AMBIT_AUTHZ_L7_ATTRIBUTES', path, l7Message(action, [...l7].join(', '), options.waypoint));
    }
  });
  return l.issues;
}
