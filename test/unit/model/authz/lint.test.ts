/**
 * lintAuthorizationPolicy: each finding's code, severity and field path, clean specs staying
 * clean, and the invariant that a spec without errors always compiles.
 */
import test from 'ava';
import { parse } from 'yaml';
import { compileAuthorizationPolicy } from '../../../../src/model/authz/compile.js';
import { lintAuthorizationPolicy } from '../../../../src/model/authz/lint.js';
import type { AuthorizationPolicySpec } from '../../../../src/model/authz/types.js';

const spec = (yaml: string): unknown => parse(yaml) as unknown;

const clean = `
selector:
  matchLabels: {app: reviews}
action: ALLOW
rules:
- from:
  - source:
      principals: ["cluster.local/ns/bookinfo/sa/productpage", "cluster.local/ns/default/*"]
      notNamespaces: ["untrusted"]
  - source:
      ipBlocks: ["198.18.0.0/15", "2001:db8::/32"]
  to:
  - operation:
      ports: ["9080"]
  when:
  - key: source.ip
    notValues: ["198.18.9.0/24"]
- {}
`;

test('a realistic L4 policy is clean', (t) => {
  t.deepEqual(lintAuthorizationPolicy(spec(clean)), []);
});

test('empty, null and {} specs are clean', (t) => {
  t.deepEqual(lintAuthorizationPolicy({}), []);
  t.deepEqual(lintAuthorizationPolicy(null), []);
  t.deepEqual(lintAuthorizationPolicy(undefined), []);
});

interface LintCase {
  name: string;
  yaml: string;
  options?: { waypoint?: boolean };
  /** [severity, code, path] of every expected finding, in order. */
  expect: [string, string, (string | number)[]][];
  message?: RegExp;
}

const cases: LintCase[] = [
  {
    name: 'unknown fields at each level, with suggestions',
    yaml: 'actions: ALLOW\nrules:\n- form: []\n  from:\n  - source:\n      principal: ["a"]\n  to:\n  - operation:\n      method: ["GET"]\n  when:\n  - key: source.ip\n    value: ["198.18.0.1"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', ['actions']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', ['rules', 0, 'form']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', ['rules', 0, 'from', 0, 'source', 'principal']],
      ['error', 'AMBIT_AUTHZ_EMPTY_SOURCE', ['rules', 0, 'from', 0, 'source']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', ['rules', 0, 'to', 0, 'operation', 'method']],
      ['error', 'AMBIT_AUTHZ_EMPTY_OPERATION', ['rules', 0, 'to', 0, 'operation']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_FIELD', ['rules', 0, 'when', 0, 'value']],
      ['error', 'AMBIT_AUTHZ_CONDITION_NO_VALUES', ['rules', 0, 'when', 0]],
    ],
    message: /did you mean "action"\?/,
  },
  {
    name: 'wrong types',
    yaml: 'rules:\n- from:\n  - source:\n      principals: "cluster.local/ns/a/sa/b"\n      namespaces: [1]\n  to: {operation: {}}',
    expect: [
      ['error', 'AMBIT_AUTHZ_INVALID_TYPE', ['rules', 0, 'from', 0, 'source', 'principals']],
      ['error', 'AMBIT_AUTHZ_INVALID_TYPE', ['rules', 0, 'from', 0, 'source', 'namespaces', 0]],
      ['error', 'AMBIT_AUTHZ_EMPTY_SOURCE', ['rules', 0, 'from', 0, 'source']],
      ['error', 'AMBIT_AUTHZ_INVALID_TYPE', ['rules', 0, 'to']],
    ],
  },
  {
    name: 'invalid action',
    yaml: 'action: REJECT',
    expect: [['error', 'AMBIT_AUTHZ_INVALID_ACTION', ['action']]],
  },
  {
    name: 'CUSTOM is unsupported (and needs a provider)',
    yaml: 'action: CUSTOM\nrules:\n- to:\n  - operation:\n      paths: ["/admin"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_CUSTOM_UNSUPPORTED', ['action']],
      ['error', 'AMBIT_AUTHZ_CUSTOM_NO_PROVIDER', ['provider']],
    ],
    message: /not supported by ambit: this policy is not applied/,
  },
  {
    name: 'provider without CUSTOM',
    yaml: 'action: ALLOW\nprovider: {name: opa}\nrules: [{}]',
    expect: [['error', 'AMBIT_AUTHZ_PROVIDER_WITHOUT_CUSTOM', ['provider']]],
  },
  {
    name: 'selector with targetRefs, bad target kind, missing name',
    yaml: 'selector: {matchLabels: {app: a}}\ntargetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\ntargetRefs:\n- {kind: Deployment, name: x}\n- {kind: Service}',
    expect: [
      ['error', 'AMBIT_AUTHZ_TARGETREF_AND_TARGETREFS', ['targetRefs']],
      ['error', 'AMBIT_AUTHZ_SELECTOR_AND_TARGETREF', ['selector']],
      ['error', 'AMBIT_AUTHZ_TARGETREF_KIND', ['targetRefs', 0, 'kind']],
      ['error', 'AMBIT_AUTHZ_TARGETREF_NAME', ['targetRefs', 1, 'name']],
    ],
  },
  {
    name: 'bad CIDRs and host bits',
    yaml: 'rules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.0/33", "198.18.0.9/24"]\n      remoteIpBlocks: ["2001:db8::/129"]\n  when:\n  - key: destination.ip\n    values: ["x"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_INVALID_CIDR', ['rules', 0, 'from', 0, 'source', 'ipBlocks', 0]],
      ['warning', 'AMBIT_AUTHZ_CIDR_HOST_BITS', ['rules', 0, 'from', 0, 'source', 'ipBlocks', 1]],
      ['error', 'AMBIT_AUTHZ_INVALID_CIDR', ['rules', 0, 'from', 0, 'source', 'remoteIpBlocks', 0]],
      ['error', 'AMBIT_AUTHZ_INVALID_CIDR', ['rules', 0, 'when', 0, 'values', 0]],
    ],
  },
  {
    name: 'bad ports, unquoted port',
    yaml: 'rules:\n- to:\n  - operation:\n      ports: ["http", 8080, "99999"]\n  when:\n  - key: destination.port\n    notValues: ["9080", "abc"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_INVALID_PORT', ['rules', 0, 'to', 0, 'operation', 'ports', 0]],
      ['warning', 'AMBIT_AUTHZ_PORT_NOT_STRING', ['rules', 0, 'to', 0, 'operation', 'ports', 1]],
      ['error', 'AMBIT_AUTHZ_INVALID_PORT', ['rules', 0, 'to', 0, 'operation', 'ports', 2]],
      ['error', 'AMBIT_AUTHZ_INVALID_PORT', ['rules', 0, 'when', 0, 'notValues', 1]],
    ],
  },
  {
    name: 'condition keys: missing, unknown, unsupported, malformed header',
    yaml: 'rules:\n- when:\n  - values: ["a"]\n  - key: source.ips\n    values: ["a"]\n  - key: connection.sni\n    values: ["a"]\n  - key: request.headers.x-user\n    values: ["a"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_CONDITION_KEY_MISSING', ['rules', 0, 'when', 0, 'key']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_CONDITION_KEY', ['rules', 0, 'when', 1, 'key']],
      ['warning', 'AMBIT_AUTHZ_UNSUPPORTED_CONDITION_KEY', ['rules', 0, 'when', 2, 'key']],
      ['error', 'AMBIT_AUTHZ_UNKNOWN_CONDITION_KEY', ['rules', 0, 'when', 3, 'key']],
    ],
  },
  {
    name: 'L7 attributes warn (no waypoint information)',
    yaml: 'rules:\n- from:\n  - source: {principals: ["a"]}\n  to:\n  - operation: {methods: ["GET"], paths: ["/api/*"]}\n- when:\n  - key: request.auth.claims[groups]\n    values: ["admin"]',
    expect: [
      ['warning', 'AMBIT_AUTHZ_L7_ATTRIBUTES', ['rules', 0]],
      ['warning', 'AMBIT_AUTHZ_L7_ATTRIBUTES', ['rules', 1]],
    ],
    message: /L7 attributes \(methods, paths\): enforced only by a waypoint/,
  },
  {
    name: 'L7 attributes with no waypoint: ALLOW denies at L4',
    yaml: 'rules:\n- to:\n  - operation: {hosts: ["reviews"]}',
    options: { waypoint: false },
    expect: [['warning', 'AMBIT_AUTHZ_L7_ATTRIBUTES', ['rules', 0]]],
    message: /no waypoint: the node agent can never match it, so the traffic it allows is denied/,
  },
  {
    name: 'L7 attributes with no waypoint: DENY fails closed',
    yaml: 'action: DENY\nrules:\n- from:\n  - source: {requestPrincipals: ["*"]}',
    options: { waypoint: false },
    expect: [['warning', 'AMBIT_AUTHZ_L7_ATTRIBUTES', ['rules', 0]]],
    message: /on its L4 attributes alone, denying more than written/,
  },
  {
    name: 'L7 attributes with a waypoint: no warning',
    yaml: 'rules:\n- to:\n  - operation: {methods: ["GET"]}',
    options: { waypoint: true },
    expect: [],
  },
  {
    name: 'wildcards in the middle, bad path templates, lower-case methods',
    yaml: 'rules:\n- to:\n  - operation:\n      hosts: ["a*b.example.com"]\n      paths: ["/a/{**}/b/{*}", "/x{*}", "/ok/{*}/fine"]\n      methods: ["get"]',
    options: { waypoint: true },
    expect: [
      ['warning', 'AMBIT_AUTHZ_INNER_WILDCARD', ['rules', 0, 'to', 0, 'operation', 'hosts', 0]],
      ['warning', 'AMBIT_AUTHZ_METHOD_CASE', ['rules', 0, 'to', 0, 'operation', 'methods', 0]],
      ['error', 'AMBIT_AUTHZ_INVALID_PATH_TEMPLATE', ['rules', 0, 'to', 0, 'operation', 'paths', 0]],
      ['error', 'AMBIT_AUTHZ_INVALID_PATH_TEMPLATE', ['rules', 0, 'to', 0, 'operation', 'paths', 1]],
    ],
  },
  {
    name: 'spiffe:// prefix in principals',
    yaml: 'rules:\n- from:\n  - source:\n      principals: ["spiffe://cluster.local/ns/a/sa/b"]',
    expect: [['warning', 'AMBIT_AUTHZ_SPIFFE_PREFIX', ['rules', 0, 'from', 0, 'source', 'principals', 0]]],
  },
  {
    name: 'serviceAccounts: a bare name (the policy namespace) and ns/name are valid; wildcards, empty parts and extra slashes are not',
    yaml: 'rules:\n- from:\n  - source:\n      serviceAccounts: ["justname", "ns/sa", "ns/*", "ns/", "/sa", "a/b/c"]',
    expect: [2, 3, 4, 5].map((i) => ['error', 'AMBIT_AUTHZ_INVALID_SERVICE_ACCOUNT', ['rules', 0, 'from', 0, 'source', 'serviceAccounts', i]] as [string, string, (string | number)[]]),
  },
  {
    name: 'serviceAccounts with principals or namespaces in one source (Istio refuses it)',
    yaml: 'rules:\n- from:\n  - source:\n      namespaces: [a]\n      notServiceAccounts: [b]',
    expect: [['error', 'AMBIT_AUTHZ_SERVICE_ACCOUNTS_WITH_PRINCIPALS', ['rules', 0, 'from', 0, 'source']]],
  },
  {
    name: 'a source with only trustDomains is a source; values follow Istio\'s wildcard rules',
    yaml: 'rules:\n- from:\n  - source:\n      trustDomains: ["partner.example", "*", "*.corp", "td-*", "a*b", "*x*", "cluster.local/ns/a", ""]\n- from:\n  - source:\n      notTrustDomains: ["cluster.local"]',
    expect: [4, 5, 6, 7].map((i) => ['error', 'AMBIT_AUTHZ_INVALID_TRUST_DOMAIN', ['rules', 0, 'from', 0, 'source', 'trustDomains', i]] as [string, string, (string | number)[]]),
  },
  {
    name: 'when keys source.trustDomain and source.serviceAccount are supported, with the same value rules',
    yaml: 'rules:\n- when:\n  - key: source.trustDomain\n    values: ["td", "a/b"]\n  - key: source.serviceAccount\n    values: ["sa", "ns/sa", "ns/*"]',
    expect: [
      ['error', 'AMBIT_AUTHZ_INVALID_TRUST_DOMAIN', ['rules', 0, 'when', 0, 'values', 1]],
      ['error', 'AMBIT_AUTHZ_INVALID_SERVICE_ACCOUNT', ['rules', 0, 'when', 1, 'values', 2]],
    ],
  },
  {
    name: 'DENY and AUDIT without rules never match',
    yaml: 'action: DENY',
    expect: [['warning', 'AMBIT_AUTHZ_NO_RULES', ['rules']]],
  },
  {
    name: 'from/to entries that are null',
    yaml: 'rules:\n- from: [~]\n  to: [~]\n  when: [~]',
    expect: [
      ['error', 'AMBIT_AUTHZ_EMPTY_SOURCE', ['rules', 0, 'from', 0]],
      ['error', 'AMBIT_AUTHZ_EMPTY_OPERATION', ['rules', 0, 'to', 0]],
      ['error', 'AMBIT_AUTHZ_INVALID_TYPE', ['rules', 0, 'when', 0]],
    ],
  },
];

for (const c of cases) {
  test(`lint: ${c.name}`, (t) => {
    const issues = lintAuthorizationPolicy(spec(c.yaml), c.options);
    t.deepEqual(
      issues.map((i) => [i.severity, i.code, i.path]),
      c.expect,
    );
    for (const i of issues) {
      t.regex(i.code, /^AMBIT_AUTHZ_[A-Z0-9_]+$/);
      t.true(i.message.length > 10);
    }
    if (c.message !== undefined) {
      const re = c.message;
      t.true(issues.some((i) => re.test(i.message)), issues.map((i) => i.message).join('\n'));
    }
  });
}

test('a spec with no lint error always compiles; one that does not compile has a lint error', (t) => {
  const specs = [clean, ...cases.map((c) => c.yaml)].map((y) => spec(y));
  specs.push('x', 42, [], { rules: [null] }, { rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4/40'] } }] }] }, { selector: { matchLabels: { a: 1 } } }, { targetRefs: 'x' });
  for (const s of specs) {
    const errors = lintAuthorizationPolicy(s).filter((i) => i.severity === 'error');
    let compiled = true;
    try {
      compileAuthorizationPolicy({ namespace: 'n', name: 'p' }, s as AuthorizationPolicySpec);
    } catch {
      compiled = false;
    }
    if (!compiled) t.true(errors.length > 0, JSON.stringify(s));
    if (errors.length === 0) t.true(compiled, JSON.stringify(s));
  }
});

test('lint never throws on hostile input', (t) => {
  const deep: Record<string, unknown> = {};
  let cur = deep;
  for (let i = 0; i < 200; i++) cur = (cur['rules'] = [{}])[0] as Record<string, unknown>;
  for (const s of ['', 0, true, [], [[]], { rules: 'x' }, { rules: [1, 'a', []] }, { rules: [{ when: [{ key: 5 }] }] }, deep, Object.create(null) as object]) {
    t.notThrows(() => lintAuthorizationPolicy(s));
  }
});
