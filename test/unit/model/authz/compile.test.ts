/**
 * Compilation: specs that cannot be evaluated fail with AMBIT_ERR_AUTHZ_POLICY_INVALID naming the
 * field; compiled policies are immutable and expose what the agent, the analyzer and the index
 * need (action default, L7 attributes, unsupported features, selector matching).
 */
import test from 'ava';
import { AuthzPolicyError } from '../../../../src/model/authz/errors.js';
import { compileAuthorizationPolicy, hasL7Attributes, policyAppliesTo } from '../../../../src/model/authz/compile.js';
import type { AuthorizationPolicySpec } from '../../../../src/model/authz/types.js';
import { policiesFromYaml } from './helpers.js';

const REF = { namespace: 'bookinfo', name: 'p' };

const invalid: { name: string; spec: unknown; path: (string | number)[]; message: RegExp }[] = [
  { name: 'spec is a string', spec: 'ALLOW', path: [], message: /spec: must be an object, got string/ },
  { name: 'unknown action', spec: { action: 'PERMIT' }, path: ['action'], message: /unknown action string "PERMIT"; expected one of ALLOW, DENY, AUDIT, CUSTOM/ },
  { name: 'rules not a list', spec: { rules: { from: [] } }, path: ['rules'], message: /must be a list, got an object/ },
  { name: 'principal not a string', spec: { rules: [{ from: [{ source: { principals: [42] } }] }] }, path: ['rules', 0, 'from', 0, 'source', 'principals', 0], message: /must be a string, got number 42/ },
  { name: 'principals a string not a list', spec: { rules: [{ from: [{ source: { principals: 'x' } }] }] }, path: ['rules', 0, 'from', 0, 'source', 'principals'], message: /must be a list/ },
  { name: 'bad CIDR', spec: { rules: [{ from: [{ source: { ipBlocks: ['198.18.0.0/15', '198.18.0.0/40'] } }] }] }, path: ['rules', 0, 'from', 0, 'source', 'ipBlocks', 1], message: /"198\.18\.0\.0\/40" is not an IP address or CIDR block/ },
  { name: 'bad notRemoteIpBlocks', spec: { rules: [{ from: [{ source: { notRemoteIpBlocks: ['nope'] } }] }] }, path: ['rules', 0, 'from', 0, 'source', 'notRemoteIpBlocks', 0], message: /"nope"/ },
  { name: 'port out of range', spec: { rules: [{ to: [{ operation: { ports: ['70000'] } }] }] }, path: ['rules', 0, 'to', 0, 'operation', 'ports', 0], message: /"70000" is not a port number \(1-65535\)/ },
  { name: 'port not numeric', spec: { rules: [{ to: [{ operation: { notPorts: ['http'] } }] }] }, path: ['rules', 0, 'to', 0, 'operation', 'notPorts', 0], message: /"http" is not a port/ },
  { name: 'from without source', spec: { rules: [{ from: [{}] }] }, path: ['rules', 0, 'from', 0, 'source'], message: /a source must set at least one field/ },
  { name: 'empty source', spec: { rules: [{ from: [{ source: { principals: [] } }] }] }, path: ['rules', 0, 'from', 0, 'source'], message: /a source must set at least one field/ },
  { name: 'to without operation', spec: { rules: [{ to: [{ operation: {} }] }] }, path: ['rules', 0, 'to', 0, 'operation'], message: /an operation must set at least one field/ },
  { name: 'condition without key', spec: { rules: [{ when: [{ values: ['x'] }] }] }, path: ['rules', 0, 'when', 0, 'key'], message: /a condition needs a key/ },
  { name: 'condition without values', spec: { rules: [{ when: [{ key: 'source.ip' }] }] }, path: ['rules', 0, 'when', 0], message: /condition "source.ip" needs values or notValues/ },
  { name: 'condition with a bad IP', spec: { rules: [{ when: [{ key: 'destination.ip', notValues: ['1.2.3.4/99'] }] }] }, path: ['rules', 0, 'when', 0, 'notValues', 0], message: /"1\.2\.3\.4\/99"/ },
  { name: 'condition with a bad port', spec: { rules: [{ when: [{ key: 'destination.port', values: ['0'] }] }] }, path: ['rules', 0, 'when', 0, 'values', 0], message: /"0" is not a port/ },
  { name: 'label value not a string', spec: { selector: { matchLabels: { app: 1 } } }, path: ['selector', 'matchLabels', 'app'], message: /label values must be strings/ },
];

for (const c of invalid) {
  test(`compile rejects: ${c.name}`, (t) => {
    const err = t.throws(() => compileAuthorizationPolicy(REF, c.spec as AuthorizationPolicySpec), { instanceOf: AuthzPolicyError });
    t.is(err.code, 'AMBIT_ERR_AUTHZ_POLICY_INVALID');
    t.deepEqual(err.path, c.path);
    t.is(err.policy, 'bookinfo/p');
    t.regex(err.message, /^AuthorizationPolicy bookinfo\/p: spec/);
    t.regex(err.message, c.message);
  });
}

test('action defaults to ALLOW; null and missing spec are the allow-nothing {}', (t) => {
  t.is(compileAuthorizationPolicy(REF, {}).action, 'ALLOW');
  t.is(compileAuthorizationPolicy(REF, null).action, 'ALLOW');
  t.is(compileAuthorizationPolicy(REF, undefined).rules.length, 0);
});

test('compiled policies are frozen and keep their spec and ref', (t) => {
  const spec: AuthorizationPolicySpec = { action: 'DENY', rules: [{}] };
  const p = compileAuthorizationPolicy(REF, spec);
  t.true(Object.isFrozen(p));
  t.true(Object.isFrozen(p.rules));
  t.true(Object.isFrozen(p.rules[0]));
  t.true(Object.isFrozen(p.ref));
  t.is(p.spec, spec);
  t.is(p.key, 'bookinfo/p');
  t.throws(() => {
    (p.rules as unknown[]).push({});
  });
});

test('hasL7Attributes on specs and compiled policies', (t) => {
  const cases: [AuthorizationPolicySpec, boolean][] = [
    [{}, false],
    [{ rules: [{}] }, false],
    [{ rules: [{ from: [{ source: { principals: ['a'], ipBlocks: ['198.18.0.0/15'] } }], to: [{ operation: { ports: ['80'] } }] }] }, false],
    [{ rules: [{ when: [{ key: 'source.ip', values: ['198.18.0.1'] }, { key: 'destination.port', values: ['80'] }] }] }, false],
    [{ rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }, true],
    [{ rules: [{ to: [{ operation: { notPaths: ['/x'] } }] }] }, true],
    [{ rules: [{ to: [{ operation: { hosts: ['a'] } }] }] }, true],
    [{ rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] }, true],
    [{ rules: [{}, { when: [{ key: 'request.headers[x-a]', values: ['1'] }] }] }, true],
    [{ rules: [{ when: [{ key: 'request.auth.claims[groups]', values: ['a'] }] }] }, true],
  ];
  for (const [spec, expected] of cases) {
    t.is(hasL7Attributes(spec), expected, JSON.stringify(spec));
    t.is(hasL7Attributes(compileAuthorizationPolicy(REF, spec)), expected);
  }
  const p = compileAuthorizationPolicy(REF, { rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/a'] } }], when: [{ key: 'request.headers[x-a]', values: ['1'] }] }] });
  t.deepEqual(p.rules[0]?.l7Attributes, ['methods', 'paths', 'request.headers[x-a]']);
});

test('unsupported features are listed on the policy', (t) => {
  const custom = compileAuthorizationPolicy(REF, { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] });
  t.deepEqual(custom.unsupported, [{ policy: REF, feature: 'action CUSTOM' }]);
  const sni = compileAuthorizationPolicy(REF, { rules: [{}, { when: [{ key: 'connection.sni', values: ['a'] }, { key: 'experimental.envoy.filters.x', values: ['b'] }] }] });
  t.deepEqual(sni.unsupported, [
    { policy: REF, ruleIndex: 1, feature: 'when key connection.sni' },
    { policy: REF, ruleIndex: 1, feature: 'when key experimental.envoy.filters.x' },
  ]);
});

test('index hints: required principals, namespaces and ports only when every entry requires them', (t) => {
  const [p] = policiesFromYaml(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: idx, namespace: bookinfo}
spec:
  rules:
  - from:
    - source: {principals: ["a", "b"]}
    - source: {principals: ["c"], ipBlocks: ["198.18.0.0/15"]}
  - from:
    - source: {principals: ["a"]}
    - source: {namespaces: ["x"]}
  - from:
    - source: {namespaces: ["x", "y"]}
    to:
    - operation: {ports: ["80", "443"]}
    - operation: {ports: ["8080"], methods: ["GET"]}
  - from:
    - source: {principals: ["pre*"]}
    to:
    - operation: {ports: ["80"]}
    - operation: {methods: ["GET"]}
`);
  const rules = p?.rules ?? [];
  t.deepEqual(rules.map((r) => r.requiredPrincipals), [['a', 'b', 'c'], undefined, undefined, undefined]);
  t.deepEqual(rules.map((r) => r.requiredNamespaces), [undefined, undefined, ['x', 'y'], undefined]);
  t.deepEqual(rules.map((r) => r.requiredPorts), [undefined, undefined, [80, 443, 8080], undefined]);
});

test('policyAppliesTo: namespace, root namespace, labels, targetRefs', (t) => {
  const [sel, all, root, target] = policiesFromYaml(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sel, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews, version: v2}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: all, namespace: bookinfo}
spec: {selector: {}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: root, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: target, namespace: bookinfo}
spec: {targetRefs: [{kind: Service, group: "", name: reviews}]}
`);
  if (sel === undefined || all === undefined || root === undefined || target === undefined) return t.fail();
  const v2 = { namespace: 'bookinfo', labels: { app: 'reviews', version: 'v2', extra: 'x' } };
  const v1 = { namespace: 'bookinfo', labels: { app: 'reviews', version: 'v1' } };
  const other = { namespace: 'ops', labels: { app: 'reviews', version: 'v2' } };
  t.true(policyAppliesTo(sel, v2));
  t.false(policyAppliesTo(sel, v1));
  t.false(policyAppliesTo(sel, other));
  t.true(policyAppliesTo(all, v1));
  t.false(policyAppliesTo(all, other));
  t.true(policyAppliesTo(root, other));
  t.false(policyAppliesTo(root, other, 'mesh-root'));
  t.false(policyAppliesTo(target, v2));
  t.true(target.hasTargetRefs);
  return undefined;
});
