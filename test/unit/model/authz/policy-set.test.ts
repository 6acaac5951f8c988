/**
 * The indexed AuthzPolicySet and the automatic index of long lists must reach exactly the
 * decision a linear scan reaches, for random policies and contexts at both layers, with and
 * without selector application; and an index never goes stale when a list is mutated.
 */
import test from 'ava';
import { compileAuthorizationPolicy } from '../../../../src/model/authz/compile.js';
import { evaluateAuthorization } from '../../../../src/model/authz/evaluate.js';
import { buildAuthzPolicySet } from '../../../../src/model/authz/policy-set.js';
import type { AuthorizationPolicySpec, AuthzContext, AuthzPolicy, ConditionSpec, RuleSpec, SourceSpec, OperationSpec } from '../../../../src/model/authz/types.js';
import { ADMIN, PRODUCTPAGE, SLEEP, ctx } from './helpers.js';

function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const PRINCIPALS = [SLEEP, PRODUCTPAGE, ADMIN, 'cluster.local/ns/bookinfo/sa/reviews', 'cluster.local/ns/ops/sa/*', '*'];
const NAMESPACES = ['default', 'bookinfo', 'ops', 'book*'];
const CIDRS = ['198.18.0.0/24', '198.18.0.0/15', '198.19.1.7', '2001:db8::/32'];
const PORTS = ['9080', '9443', '15000'];
const NS = ['istio-system', 'bookinfo', 'ops'];

function generator(seed: number): { policies: (n: number) => AuthzPolicy[]; context: () => AuthzContext } {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const some = <T>(xs: readonly T[]): T[] => {
    const n = 1 + Math.floor(rand() * 2);
    return Array.from({ length: n }, () => pick(xs));
  };
  const source = (): SourceSpec => {
    const s: SourceSpec = {};
    const r = rand();
    if (r < 0.45) s.principals = some(PRINCIPALS);
    else if (r < 0.6) s.notPrincipals = some(PRINCIPALS);
    else if (r < 0.8) s.namespaces = some(NAMESPACES);
    else s.ipBlocks = some(CIDRS);
    if (rand() < 0.2) s.notIpBlocks = some(CIDRS);
    if (rand() < 0.1) s.requestPrincipals = ['https://issuer.example/*'];
    return s;
  };
  const operation = (): OperationSpec => {
    const o: OperationSpec = {};
    if (rand() < 0.6) o.ports = some(PORTS);
    if (rand() < 0.3) o.methods = some(['GET', 'POST']);
    if (rand() < 0.2) o.paths = some(['/api/*', '/admin', '*.html']);
    if (Object.keys(o).length === 0) o.notPorts = some(PORTS);
    return o;
  };
  const condition = (): ConditionSpec => {
    const r = rand();
    if (r < 0.4) return { key: 'source.ip', values: some(CIDRS) };
    if (r < 0.7) return { key: 'destination.port', notValues: some(PORTS) };
    if (r < 0.9) return { key: 'request.headers[x-user]', values: some(['admin-*', 'jane']) };
    return { key: 'connection.sni', values: ['x'] };
  };
  const rule = (): RuleSpec => {
    const r: RuleSpec = {};
    if (rand() < 0.8) r.from = Array.from({ length: 1 + Math.floor(rand() * 2) }, () => ({ source: source() }));
    if (rand() < 0.5) r.to = Array.from({ length: 1 + Math.floor(rand() * 2) }, () => ({ operation: operation() }));
    if (rand() < 0.25) r.when = [condition()];
    return r;
  };
  // DENY and AUDIT rules are kept narrow (one exact principal and one port) in big lists, so
  // that decisions spread over every outcome instead of almost always DENY_MATCHED.
  const narrow = (): RuleSpec => ({
    from: [{ source: { principals: [pick(PRINCIPALS.slice(0, 4))] } }],
    to: [{ operation: { ports: [pick(PORTS)], ...(rand() < 0.3 ? { methods: ['POST'] } : {}) } }],
  });
  const policies = (n: number): AuthzPolicy[] =>
    Array.from({ length: n }, (_, i) => {
      const a = rand();
      const spec: AuthorizationPolicySpec = { action: a < 0.6 ? 'ALLOW' : a < 0.85 ? 'DENY' : a < 0.97 ? 'AUDIT' : 'CUSTOM' };
      if (spec.action === 'CUSTOM') spec.provider = { name: 'opa' };
      if (rand() < 0.5 || (n > 20 && spec.action === 'ALLOW')) spec.selector = { matchLabels: { app: pick(['reviews', 'ratings']), ...(n > 20 ? { version: pick(['v1', 'v2', 'v3']) } : {}) } };
      const nRules = Math.floor(rand() * 4);
      const isNarrow = n > 20 && (spec.action === 'DENY' || spec.action === 'AUDIT');
      spec.rules = Array.from({ length: nRules }, () => (isNarrow ? narrow() : rule()));
      return compileAuthorizationPolicy({ namespace: pick(NS), name: `p${i}` }, spec);
    });
  const context = (): AuthzContext => {
    const principal = rand() < 0.85 ? pick([SLEEP, PRODUCTPAGE, ADMIN, 'cluster.local/ns/bookinfo/sa/reviews', 'cluster.local/ns/ops/sa/x']) : undefined;
    return ctx({
      ...(principal === undefined ? {} : { principal }),
      ip: pick(['198.18.0.5', '198.19.1.7', '203.0.113.1', '2001:db8::5', '::ffff:198.18.0.9']),
      port: Number(pick(PORTS)),
      dstNamespace: pick(['bookinfo', 'ops', 'istio-system']),
      labels: { app: pick(['reviews', 'ratings', 'details']), version: pick(['v1', 'v2', 'v3']) },
      req: { method: pick(['GET', 'POST']), path: pick(['/api/v1', '/admin', '/index.html']), headers: { 'x-user': pick(['admin-bob', 'jane', 'joe']) } },
    });
  };
  return { policies, context };
}

for (const size of [5, 40, 300]) {
  test(`indexed set and auto-indexed list agree with a linear scan (${size} policies)`, (t) => {
    for (let seed = 1; seed <= 6; seed++) {
      const g = generator(seed * 1000 + size);
      const policies = g.policies(size);
      const set = buildAuthzPolicySet(policies);
      const frozen = Object.freeze([...policies]);
      let compared = 0;
      for (let k = 0; k < 150; k++) {
        const c = g.context();
        for (const layer of ['L4', 'L7'] as const) {
          for (const applySelectors of [false, true]) {
            const opts = { layer, applySelectors };
            // A fresh copy each time is never auto-indexed: the reference linear scan.
            const linear = evaluateAuthorization([...policies], c, opts);
            const viaSet = evaluateAuthorization(set, c, opts);
            const viaFrozen = evaluateAuthorization(frozen, c, opts);
            if (JSON.stringify(viaSet) !== JSON.stringify(linear) || JSON.stringify(viaFrozen) !== JSON.stringify(linear)) {
              t.deepEqual(viaSet, linear, `seed ${seed} context ${JSON.stringify(c)} ${JSON.stringify(opts)}`);
              t.deepEqual(viaFrozen, linear);
              return;
            }
            compared++;
          }
        }
      }
      t.is(compared, 600);
    }
  });
}

test('an auto-indexed list that is mutated in place is re-indexed, never stale', (t) => {
  const allowSleep = compileAuthorizationPolicy({ namespace: 'bookinfo', name: 'allow-sleep' }, { rules: [{ from: [{ source: { principals: [SLEEP] } }] }] });
  const filler = Array.from({ length: 100 }, (_, i) =>
    compileAuthorizationPolicy({ namespace: 'bookinfo', name: `f${i}` }, { rules: [{ from: [{ source: { principals: [`cluster.local/ns/x/sa/s${i}`] } }] }] }),
  );
  const list: AuthzPolicy[] = [...filler, allowSleep];
  const c = ctx({ principal: SLEEP });
  for (let i = 0; i < 3; i++) t.like(evaluateAuthorization(list, c, { layer: 'L4' }), { allow: true, policy: { name: 'allow-sleep' } });
  list.pop();
  t.like(evaluateAuthorization(list, c, { layer: 'L4' }), { allow: false, code: 'ALLOW_NO_MATCH' });
  list.push(compileAuthorizationPolicy({ namespace: 'bookinfo', name: 'deny-sleep' }, { action: 'DENY', rules: [{ from: [{ source: { principals: [SLEEP] } }] }] }));
  t.like(evaluateAuthorization(list, c, { layer: 'L4' }), { allow: false, code: 'DENY_MATCHED', policy: { name: 'deny-sleep' } });
});

test('forWorkload selects root and own-namespace policies by labels, in set order', (t) => {
  const mk = (ns: string, name: string, labels?: Record<string, string>): AuthzPolicy =>
    compileAuthorizationPolicy({ namespace: ns, name }, labels === undefined ? { rules: [{}] } : { selector: { matchLabels: labels }, rules: [{}] });
  const set = buildAuthzPolicySet([
    mk('bookinfo', 'a', { app: 'reviews' }),
    mk('istio-system', 'root'),
    mk('bookinfo', 'b'),
    mk('ops', 'c'),
    mk('bookinfo', 'd', { app: 'ratings' }),
  ]);
  const names = (x: readonly AuthzPolicy[] | unknown): string[] => (Array.isArray(x) ? (x as AuthzPolicy[]).map((p) => p.ref.name) : []);
  t.deepEqual(names(set.forWorkload({ namespace: 'bookinfo', labels: { app: 'reviews' } }, 'istio-system')), ['a', 'root', 'b']);
  t.deepEqual(names(set.forWorkload({ namespace: 'bookinfo', labels: { app: 'ratings' } }, 'istio-system')), ['root', 'b', 'd']);
  t.deepEqual(names(set.forWorkload({ namespace: 'ops', labels: {} }, 'istio-system')), ['root', 'c']);
  t.deepEqual(names(set.forWorkload({ namespace: 'istio-system', labels: {} }, 'istio-system')), ['root']);
  // Cached per shape: the same answer object comes back.
  t.is(set.forWorkload({ namespace: 'ops', labels: {} }, 'istio-system'), set.forWorkload({ namespace: 'ops', labels: {} }, 'istio-system'));
});
