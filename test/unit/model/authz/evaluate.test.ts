/**
 * The Istio authorization semantics table: every case is real policy YAML, one context, one
 * layer, and the exact decision expected (allow, code, deciding policy and rule, audit and
 * unsupported lists).
 */
import test from 'ava';
import { evaluateAuthorization } from '../../../../src/model/authz/evaluate.js';
import { buildAuthzPolicySet } from '../../../../src/model/authz/policy-set.js';
import type { AuthzLayer, Decision, DecisionCode } from '../../../../src/model/authz/types.js';
import { ADMIN, PRODUCTPAGE, SLEEP, ctx, policiesFromYaml, type CtxSpec } from './helpers.js';

interface Expect {
  allow: boolean;
  code: DecisionCode;
  /** `namespace/name#rule` of the deciding rule, when one decided. */
  by?: string;
  audit?: string[];
  /** Unsupported features, as `namespace/name: feature`. */
  unsupported?: string[];
  reason?: RegExp;
}

interface Case {
  name: string;
  yaml: string;
  ctx: CtxSpec;
  layer?: AuthzLayer;
  expect: Expect;
}

const ap = (name: string, spec: string, namespace = 'bookinfo'): string =>
  `---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n${spec
    .split('\n')
    .map((l) => '  ' + l)
    .join('\n')}\n`;

const GET = (path = '/productpage', extra: Partial<NonNullable<CtxSpec['req']>> = {}): NonNullable<CtxSpec['req']> => ({
  method: 'GET',
  path,
  host: 'reviews.bookinfo.svc.cluster.local',
  ...extra,
});

function check(d: Decision, e: Expect): Record<string, unknown> {
  return {
    allow: d.allow,
    code: d.code,
    by: d.policy === undefined ? undefined : `${d.policy.namespace}/${d.policy.name}#${String(d.ruleIndex)}`,
    audit: d.audit?.map((r) => `${r.namespace}/${r.name}`),
    unsupported: d.unsupported?.map((u) => `${u.policy.namespace}/${u.policy.name}: ${u.feature}`),
    reason: e.reason === undefined ? undefined : e.reason.test(d.reason) ? e.reason : d.reason,
  };
}

const cases: Case[] = [
  // --- the basic order ---------------------------------------------------------------------
  { name: 'no policy: allow', yaml: '', ctx: { principal: SLEEP }, expect: { allow: true, code: 'NO_ALLOW_POLICY' } },
  {
    name: 'empty spec {} is allow-nothing: deny all',
    yaml: ap('allow-nothing', '{}'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', reason: /1 ALLOW policy applies \(bookinfo\/allow-nothing\)/ },
  },
  {
    name: 'ALLOW with a selector and no rules matches nothing: deny',
    yaml: ap('no-rules', 'selector:\n  matchLabels: {app: reviews}\naction: ALLOW'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'ALLOW with rules: [] matches nothing: deny',
    yaml: ap('empty-rules', 'action: ALLOW\nrules: []'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'ALLOW with rules: [{}] matches everything, even plaintext',
    yaml: ap('allow-all', 'action: ALLOW\nrules:\n- {}'),
    ctx: {},
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/allow-all#0', reason: /^allowed by ALLOW policy bookinfo\/allow-all rule 0$/ },
  },
  {
    name: 'DENY with no rules never matches: allow',
    yaml: ap('deny-nothing', 'action: DENY'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'DENY with no match does not deny',
    yaml: ap('deny-admin', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'DENY with rules: [{}] denies everything',
    yaml: ap('deny-all', 'action: DENY\nrules:\n- {}'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/deny-all#0', reason: /^denied by DENY policy bookinfo\/deny-all rule 0$/ },
  },
  {
    name: 'DENY wins over a matching ALLOW, whatever the list order',
    yaml:
      ap('allow-all', 'rules:\n- {}') +
      ap('deny-sleep', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/deny-sleep#0' },
  },
  {
    name: 'DENY not matching, ALLOW matching: allow',
    yaml:
      ap('deny-admin', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`) +
      ap('allow-sleep', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/allow-sleep#0' },
  },
  {
    name: 'multiple ALLOWs: the one that matches decides, with its rule index',
    yaml:
      ap('allow-admin', `rules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`) +
      ap('allow-mixed', `rules:\n- from:\n  - source:\n      namespaces: ["ops"]\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/allow-mixed#1' },
  },
  {
    name: 'multiple ALLOWs, none matching: deny naming both',
    yaml:
      ap('allow-admin', `rules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`) +
      ap('allow-ops', `rules:\n- from:\n  - source:\n      namespaces: ["ops"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', reason: /2 ALLOW policies apply \(bookinfo\/allow-admin, bookinfo\/allow-ops\)/ },
  },
  {
    name: 'first matching rule in list order decides among several',
    yaml: ap('allow', `rules:\n- from:\n  - source:\n      namespaces: ["ops"]\n- from:\n  - source:\n      namespaces: ["default"]\n- {}`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/allow#1' },
  },

  // --- principals, namespaces, service accounts -------------------------------------------
  {
    name: 'principals exact match',
    yaml: ap('p', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/p#0' },
  },
  {
    name: 'principals given with spiffe:// in the context still match',
    yaml: ap('p', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: `spiffe://${SLEEP}` },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/p#0' },
  },
  {
    name: 'principals "*" requires mTLS: plaintext denied',
    yaml: ap('mtls', 'rules:\n- from:\n  - source:\n      principals: ["*"]'),
    ctx: {},
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'principals "*" with any identity: allowed',
    yaml: ap('mtls', 'rules:\n- from:\n  - source:\n      principals: ["*"]'),
    ctx: { principal: ADMIN },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/mtls#0' },
  },
  {
    name: 'principals prefix wildcard',
    yaml: ap('p', 'rules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/default/*"]'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/p#0' },
  },
  {
    name: 'principals suffix wildcard',
    yaml: ap('p', 'rules:\n- from:\n  - source:\n      principals: ["*/sa/productpage"]'),
    ctx: { principal: PRODUCTPAGE },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/p#0' },
  },
  {
    name: 'principals suffix wildcard, other account: deny',
    yaml: ap('p', 'rules:\n- from:\n  - source:\n      principals: ["*/sa/productpage"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notPrincipals in ALLOW: the excluded identity is denied',
    yaml: ap('not-sleep', `rules:\n- from:\n  - source:\n      notPrincipals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notPrincipals in ALLOW: another identity is allowed',
    yaml: ap('not-sleep', `rules:\n- from:\n  - source:\n      notPrincipals: ["${SLEEP}"]`),
    ctx: { principal: ADMIN },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/not-sleep#0' },
  },
  {
    name: 'notPrincipals in ALLOW: plaintext (no principal) passes a not-list',
    yaml: ap('not-sleep', `rules:\n- from:\n  - source:\n      notPrincipals: ["${SLEEP}"]`),
    ctx: {},
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/not-sleep#0' },
  },
  {
    name: 'DENY notPrincipals ["*"] denies plaintext',
    yaml: ap('require-mtls', 'action: DENY\nrules:\n- from:\n  - source:\n      notPrincipals: ["*"]'),
    ctx: {},
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/require-mtls#0' },
  },
  {
    name: 'DENY notPrincipals ["*"] lets mTLS through',
    yaml: ap('require-mtls', 'action: DENY\nrules:\n- from:\n  - source:\n      notPrincipals: ["*"]'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'principals and notPrincipals in one source AND together',
    yaml: ap('p', `rules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/default/*"]\n      notPrincipals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'namespaces derived from the principal',
    yaml: ap('ns', 'rules:\n- from:\n  - source:\n      namespaces: ["default"]'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ns#0' },
  },
  {
    name: 'namespaces with a prefix wildcard',
    yaml: ap('ns', 'rules:\n- from:\n  - source:\n      namespaces: ["book*"]'),
    ctx: { principal: PRODUCTPAGE },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ns#0' },
  },
  {
    name: 'namespaces need an identity: plaintext does not match',
    yaml: ap('ns', 'rules:\n- from:\n  - source:\n      namespaces: ["default"]'),
    ctx: {},
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notNamespaces in DENY: cross-namespace traffic denied',
    yaml: ap('same-ns', 'action: DENY\nrules:\n- from:\n  - source:\n      notNamespaces: ["bookinfo"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/same-ns#0' },
  },
  {
    name: 'notNamespaces in DENY: same-namespace traffic allowed',
    yaml: ap('same-ns', 'action: DENY\nrules:\n- from:\n  - source:\n      notNamespaces: ["bookinfo"]'),
    ctx: { principal: PRODUCTPAGE },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'serviceAccounts as <ns>/<sa>',
    yaml: ap('sa', 'rules:\n- from:\n  - source:\n      serviceAccounts: ["default/sleep"]'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/sa#0' },
  },
  {
    name: 'notServiceAccounts excludes one account',
    yaml: ap('sa', 'rules:\n- from:\n  - source:\n      notServiceAccounts: ["default/sleep"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },

  // --- IP blocks ---------------------------------------------------------------------------
  {
    name: 'ipBlocks IPv4 CIDR match',
    yaml: ap('ip', 'rules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.0/24"]'),
    ctx: { ip: '198.18.0.200' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ip#0' },
  },
  {
    name: 'ipBlocks IPv4 CIDR miss',
    yaml: ap('ip', 'rules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.0/24"]'),
    ctx: { ip: '198.18.1.1' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'ipBlocks single address',
    yaml: ap('ip', 'rules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.10"]'),
    ctx: { ip: '198.18.0.10' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ip#0' },
  },
  {
    name: 'ipBlocks IPv4 matches an IPv4-mapped IPv6 peer address',
    yaml: ap('ip', 'rules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.0/15"]'),
    ctx: { ip: '::ffff:198.19.3.4' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ip#0' },
  },
  {
    name: 'ipBlocks IPv6 CIDR match',
    yaml: ap('ip6', 'rules:\n- from:\n  - source:\n      ipBlocks: ["2001:db8:abcd::/48"]'),
    ctx: { ip: '2001:db8:abcd:12::1' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ip6#0' },
  },
  {
    name: 'ipBlocks IPv6 CIDR miss',
    yaml: ap('ip6', 'rules:\n- from:\n  - source:\n      ipBlocks: ["2001:db8:abcd::/48"]'),
    ctx: { ip: '2001:db8:abce::1' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'ipBlocks IPv6 does not match an IPv4 peer',
    yaml: ap('ip6', 'rules:\n- from:\n  - source:\n      ipBlocks: ["::/0"]'),
    ctx: { ip: '198.18.0.10' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notIpBlocks in DENY: outside the range denied',
    yaml: ap('only-cluster', 'action: DENY\nrules:\n- from:\n  - source:\n      notIpBlocks: ["198.18.0.0/15", "2001:db8::/32"]'),
    ctx: { ip: '203.0.113.9' },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/only-cluster#0' },
  },
  {
    name: 'notIpBlocks in DENY: inside the IPv6 range allowed',
    yaml: ap('only-cluster', 'action: DENY\nrules:\n- from:\n  - source:\n      notIpBlocks: ["198.18.0.0/15", "2001:db8::/32"]'),
    ctx: { ip: '2001:db8:0:1::5' },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'remoteIpBlocks uses the original client address',
    yaml: ap('remote', 'rules:\n- from:\n  - source:\n      remoteIpBlocks: ["203.0.113.0/24"]'),
    ctx: { ip: '198.18.0.10', remoteIp: '203.0.113.7' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/remote#0' },
  },
  {
    name: 'ipBlocks uses the peer address, not the original client',
    yaml: ap('peer', 'rules:\n- from:\n  - source:\n      ipBlocks: ["203.0.113.0/24"]'),
    ctx: { ip: '198.18.0.10', remoteIp: '203.0.113.7' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'remoteIpBlocks defaults to the peer address',
    yaml: ap('remote', 'rules:\n- from:\n  - source:\n      remoteIpBlocks: ["198.18.0.0/24"]'),
    ctx: { ip: '198.18.0.10' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/remote#0' },
  },
  {
    name: 'fields in one source AND: principal right, IP wrong',
    yaml: ap('both', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n      ipBlocks: ["198.19.0.0/16"]`),
    ctx: { principal: SLEEP, ip: '198.18.0.10' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'from entries OR: second source matches',
    yaml: ap('either', `rules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]\n  - source:\n      ipBlocks: ["198.18.0.0/24"]`),
    ctx: { principal: SLEEP, ip: '198.18.0.10' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/either#0' },
  },

  // --- operations ---------------------------------------------------------------------------
  {
    name: 'ports as strings: match',
    yaml: ap('port', 'rules:\n- to:\n  - operation:\n      ports: ["9080"]'),
    ctx: { port: 9080 },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/port#0' },
  },
  {
    name: 'ports: other port denied',
    yaml: ap('port', 'rules:\n- to:\n  - operation:\n      ports: ["9080"]'),
    ctx: { port: 9090 },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notPorts in DENY',
    yaml: ap('only-9080', 'action: DENY\nrules:\n- to:\n  - operation:\n      notPorts: ["9080"]'),
    ctx: { port: 15000 },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/only-9080#0' },
  },
  {
    name: 'from AND to: both must match',
    yaml: ap('both', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      ports: ["8080"]`),
    ctx: { principal: SLEEP, port: 9080 },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'to entries OR',
    yaml: ap('ops', 'rules:\n- to:\n  - operation:\n      ports: ["8080"]\n  - operation:\n      methods: ["GET"]'),
    ctx: { port: 9080, req: GET() },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/ops#0' },
  },
  {
    name: 'methods match (L7)',
    yaml: ap('get', 'rules:\n- to:\n  - operation:\n      methods: ["GET", "HEAD"]'),
    ctx: { req: GET() },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/get#0' },
  },
  {
    name: 'methods are case-sensitive',
    yaml: ap('get', 'rules:\n- to:\n  - operation:\n      methods: ["get"]'),
    ctx: { req: GET() },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notMethods in DENY blocks writes',
    yaml: ap('read-only', 'action: DENY\nrules:\n- to:\n  - operation:\n      notMethods: ["GET", "HEAD"]'),
    ctx: { req: GET('/x', { method: 'POST' }) },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/read-only#0' },
  },
  {
    name: 'paths exact',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["/productpage"]'),
    ctx: { req: GET('/productpage') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/path#0' },
  },
  {
    name: 'paths exact ignores the query string',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["/productpage"]'),
    ctx: { req: GET('/productpage?u=normal#top') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/path#0' },
  },
  {
    name: 'paths exact does not match a longer path',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["/productpage"]'),
    ctx: { req: GET('/productpage/x') },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'paths prefix /api/*',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["/api/*"]'),
    ctx: { req: GET('/api/v1/products/1') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/path#0' },
  },
  {
    name: 'paths suffix *.html',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["*.html"]'),
    ctx: { req: GET('/static/index.html') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/path#0' },
  },
  {
    name: 'paths suffix miss',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["*.html"]'),
    ctx: { req: GET('/static/app.js') },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'paths "*" matches any path',
    yaml: ap('path', 'rules:\n- to:\n  - operation:\n      paths: ["*"]'),
    ctx: { req: GET('/anything') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/path#0' },
  },
  {
    name: 'notPaths in DENY protects /admin*',
    yaml: ap('no-admin', 'action: DENY\nrules:\n- to:\n  - operation:\n      paths: ["/admin*"]'),
    ctx: { req: GET('/admin/users') },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/no-admin#0' },
  },
  {
    name: 'path template {*} matches one segment',
    yaml: ap('tpl', 'rules:\n- to:\n  - operation:\n      paths: ["/reviews/{*}/ratings"]'),
    ctx: { req: GET('/reviews/42/ratings') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/tpl#0' },
  },
  {
    name: 'path template {*} does not span segments',
    yaml: ap('tpl', 'rules:\n- to:\n  - operation:\n      paths: ["/reviews/{*}/ratings"]'),
    ctx: { req: GET('/reviews/4/2/ratings') },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'path template {**} spans segments',
    yaml: ap('tpl', 'rules:\n- to:\n  - operation:\n      paths: ["/static/{**}"]'),
    ctx: { req: GET('/static/css/site/main.css') },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/tpl#0' },
  },
  {
    name: 'hosts are case-insensitive',
    yaml: ap('host', 'rules:\n- to:\n  - operation:\n      hosts: ["Reviews.Bookinfo.svc.cluster.local"]'),
    ctx: { req: GET('/', { host: 'reviews.bookinfo.SVC.cluster.local' }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/host#0' },
  },
  {
    name: 'hosts match with a port in the authority',
    yaml: ap('host', 'rules:\n- to:\n  - operation:\n      hosts: ["reviews"]'),
    ctx: { req: GET('/', { host: 'reviews:9080' }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/host#0' },
  },
  {
    name: 'hosts wildcard *.example.com',
    yaml: ap('host', 'rules:\n- to:\n  - operation:\n      hosts: ["*.example.com"]'),
    ctx: { req: GET('/', { host: 'API.Example.com' }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/host#0' },
  },
  {
    name: 'notHosts',
    yaml: ap('host', 'rules:\n- to:\n  - operation:\n      notHosts: ["*.internal"]'),
    ctx: { req: GET('/', { host: 'db.internal' }) },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'requestPrincipals (JWT iss/sub)',
    yaml: ap('jwt', 'rules:\n- from:\n  - source:\n      requestPrincipals: ["https://issuer.example/*"]'),
    ctx: { req: GET('/', { principal: 'https://issuer.example/alice' }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/jwt#0' },
  },
  {
    name: 'requestPrincipals "*" requires a JWT',
    yaml: ap('jwt', 'rules:\n- from:\n  - source:\n      requestPrincipals: ["*"]'),
    ctx: { req: GET('/') },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'L7 rule with no request at L7: attributes absent, no match',
    yaml: ap('get', 'rules:\n- to:\n  - operation:\n      methods: ["GET"]'),
    ctx: {},
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },

  // --- when conditions -----------------------------------------------------------------------
  {
    name: 'when source.ip',
    yaml: ap('w', 'rules:\n- when:\n  - key: source.ip\n    values: ["198.18.0.0/16"]'),
    ctx: { ip: '198.18.3.3' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when destination.ip with notValues',
    yaml: ap('w', 'rules:\n- when:\n  - key: destination.ip\n    notValues: ["198.19.1.0/24"]'),
    ctx: { dstIp: '198.19.1.5' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when destination.port',
    yaml: ap('w', 'rules:\n- when:\n  - key: destination.port\n    values: ["9080", "9443"]'),
    ctx: { port: 9443 },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when source.namespace and source.principal AND together',
    yaml: ap('w', `rules:\n- when:\n  - key: source.namespace\n    values: ["default"]\n  - key: source.principal\n    notValues: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when remote.ip',
    yaml: ap('w', 'rules:\n- when:\n  - key: remote.ip\n    values: ["203.0.113.0/24"]'),
    ctx: { remoteIp: '203.0.113.200' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.headers[NAME] with a prefix',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.headers[x-user]\n    values: ["admin-*"]'),
    ctx: { req: GET('/', { headers: { 'x-user': 'admin-jane' } }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.headers name is case-insensitive, any value of a list',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.headers[X-Env]\n    values: ["canary"]'),
    ctx: { req: GET('/', { headers: { 'x-env': ['stable', 'canary'] } }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.headers absent does not match values',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.headers[x-user]\n    values: ["*"]'),
    ctx: { req: GET('/') },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when request.auth.claims[groups] with a list claim',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[groups]\n    values: ["reviewers"]'),
    ctx: { req: GET('/', { claims: { groups: ['readers', 'reviewers'] } }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.auth.claims[scope]: scope is space-delimited (Istio default), matched word by word',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[scope]\n    values: ["write"]'),
    ctx: { req: GET('/', { claims: { scope: 'read write' } }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.auth.claims[roles]: another string claim matches only as a whole',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[roles]\n    values: ["admin"]'),
    ctx: { req: GET('/', { claims: { roles: 'user admin' } }) },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when request.auth.claims[roles]: listed in spaceDelimitedClaims, matched word by word',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[roles]\n    values: ["admin"]'),
    ctx: { req: GET('/', { claims: { roles: 'user admin' }, spaceDelimitedClaims: ['roles'] }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when nested claim [realm_access][roles]',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[realm_access][roles]\n    values: ["admin"]'),
    ctx: { req: GET('/', { claims: { realm_access: { roles: ['user', 'admin'] } } }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when nested claim missing level: no match',
    yaml: ap('w', 'rules:\n- when:\n  - key: request.auth.claims[realm_access][roles]\n    values: ["admin"]'),
    ctx: { req: GET('/', { claims: { realm_access: 'admin' } }) },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when claim notValues in DENY',
    yaml: ap('w', 'action: DENY\nrules:\n- when:\n  - key: request.auth.claims[iss]\n    notValues: ["https://issuer.example"]'),
    ctx: { req: GET('/', { claims: { iss: 'https://evil.example' } }) },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/w#0' },
  },
  {
    name: 'when request.auth.principal, audiences, presenter',
    yaml: ap(
      'w',
      'rules:\n- when:\n  - key: request.auth.principal\n    values: ["https://issuer.example/alice"]\n  - key: request.auth.audiences\n    values: ["bookinfo"]\n  - key: request.auth.presenter\n    values: ["web-*"]',
    ),
    ctx: { req: GET('/', { principal: 'https://issuer.example/alice', audiences: ['other', 'bookinfo'], presenter: 'web-app' }) },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/w#0' },
  },

  // --- AUDIT and CUSTOM ---------------------------------------------------------------------
  {
    name: 'AUDIT never changes the decision and reports the match (allow)',
    yaml: ap('audit-sleep', `action: AUDIT\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY', audit: ['bookinfo/audit-sleep'] },
  },
  {
    name: 'AUDIT reported alongside a deny',
    yaml: ap('audit-all', 'action: AUDIT\nrules:\n- {}') + ap('allow-nothing', '{}'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', audit: ['bookinfo/audit-all'] },
  },
  {
    name: 'AUDIT not matching: not reported',
    yaml: ap('audit-admin', `action: AUDIT\nrules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'CUSTOM alone: not applied, reported as unsupported',
    yaml: ap('ext-authz', 'action: CUSTOM\nprovider:\n  name: opa\nrules:\n- {}'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY', unsupported: ['bookinfo/ext-authz: action CUSTOM'], reason: /unsupported and not applied as written: bookinfo\/ext-authz: action CUSTOM/ },
  },
  {
    name: 'CUSTOM does not count as an ALLOW policy; an ALLOW still decides',
    yaml: ap('ext-authz', 'action: CUSTOM\nprovider:\n  name: opa\nrules:\n- {}') + ap('allow-sleep', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: ADMIN },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', unsupported: ['bookinfo/ext-authz: action CUSTOM'] },
  },
  {
    name: 'connection.sni in ALLOW: rule never matches (fail closed), reported',
    yaml: ap('sni', 'rules:\n- when:\n  - key: connection.sni\n    values: ["reviews"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', unsupported: ['bookinfo/sni: when key connection.sni'] },
  },
  {
    name: 'connection.sni in DENY: condition holds (fail closed), reported',
    yaml: ap('sni', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  when:\n  - key: connection.sni\n    values: ["reviews"]`),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/sni#0', unsupported: ['bookinfo/sni: when key connection.sni'] },
  },
  {
    name: 'connection.sni in DENY still needs the rule\'s other attributes',
    yaml: ap('sni', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  when:\n  - key: connection.sni\n    values: ["reviews"]`),
    ctx: { principal: ADMIN },
    expect: { allow: true, code: 'NO_ALLOW_POLICY', unsupported: ['bookinfo/sni: when key connection.sni'] },
  },
  {
    name: 'unknown when key fails closed in ALLOW',
    yaml: ap('typo', 'rules:\n- when:\n  - key: source.ips\n    values: ["198.18.0.0/15"]'),
    ctx: { ip: '198.18.0.10' },
    expect: { allow: false, code: 'ALLOW_NO_MATCH', unsupported: ['bookinfo/typo: when key source.ips'] },
  },

  // --- L4 versus L7 ----------------------------------------------------------------------------
  {
    name: 'L7: ALLOW GET from sleep',
    yaml: ap('get-from-sleep', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      methods: ["GET"]`),
    ctx: { principal: SLEEP, req: GET() },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/get-from-sleep#0' },
  },
  {
    name: 'L4: the same ALLOW rule with methods never matches: deny, reason names the waypoint',
    yaml: ap('get-from-sleep', `rules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      methods: ["GET"]`),
    ctx: { principal: SLEEP, req: GET() },
    layer: 'L4',
    expect: { allow: false, code: 'ALLOW_NO_MATCH', reason: /L7 attributes in bookinfo\/get-from-sleep never match at L4: send this traffic through a waypoint/ },
  },
  {
    name: 'L4: an L4-only rule of the same ALLOW policy still allows',
    yaml: ap('mixed', `rules:\n- to:\n  - operation:\n      paths: ["/api/*"]\n- from:\n  - source:\n      principals: ["${SLEEP}"]`),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/mixed#1' },
  },
  {
    name: 'L4: ALLOW with requestPrincipals never matches',
    yaml: ap('jwt', 'rules:\n- from:\n  - source:\n      requestPrincipals: ["*"]'),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'L4: ALLOW with a request.auth.claims condition never matches',
    yaml: ap('claims', 'rules:\n- when:\n  - key: request.auth.claims[groups]\n    values: ["admin"]'),
    ctx: { principal: SLEEP, req: GET('/', { claims: { groups: ['admin'] } }) },
    layer: 'L4',
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'L4: ALLOW with only notMethods never matches either',
    yaml: ap('nm', 'rules:\n- to:\n  - operation:\n      notMethods: ["DELETE"]'),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'L4: DENY with principals + methods denies on the principal alone (fail closed)',
    yaml: ap('no-post', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      methods: ["POST"]`),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/no-post#0', reason: /L7 attributes \(methods\) cannot be checked at L4.*fail closed/ },
  },
  {
    name: 'L4: that DENY does not touch another principal',
    yaml: ap('no-post', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      methods: ["POST"]`),
    ctx: { principal: ADMIN },
    layer: 'L4',
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'L7: that DENY lets GET through',
    yaml: ap('no-post', `action: DENY\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]\n  to:\n  - operation:\n      methods: ["POST"]`),
    ctx: { principal: SLEEP, req: GET() },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'L4: DENY with only paths denies everything',
    yaml: ap('no-admin', 'action: DENY\nrules:\n- to:\n  - operation:\n      paths: ["/admin*"]'),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/no-admin#0' },
  },
  {
    name: 'L4: DENY keeps its L4 ports when it drops paths',
    yaml: ap('no-admin', 'action: DENY\nrules:\n- to:\n  - operation:\n      ports: ["15000"]\n      paths: ["/admin*"]'),
    ctx: { principal: SLEEP, port: 9080 },
    layer: 'L4',
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'L4: DENY with a request.headers condition holds at L4',
    yaml: ap('hdr', 'action: DENY\nrules:\n- when:\n  - key: request.headers[x-debug]\n    values: ["1"]'),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/hdr#0' },
  },
  {
    name: 'L4: AUDIT with L7 attributes is not reported',
    yaml: ap('audit-get', 'action: AUDIT\nrules:\n- to:\n  - operation:\n      methods: ["GET"]'),
    ctx: { principal: SLEEP },
    layer: 'L4',
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'L4: pure L4 policies behave the same at L4',
    yaml: ap('deny-ip', 'action: DENY\nrules:\n- from:\n  - source:\n      ipBlocks: ["198.18.0.0/24"]') + ap('allow-ns', 'rules:\n- from:\n  - source:\n      namespaces: ["default"]'),
    ctx: { principal: SLEEP, ip: '198.18.5.1' },
    layer: 'L4',
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/allow-ns#0' },
  },
  // --- trust domains and service accounts (Istio 1.24+) ------------------------------------
  {
    name: 'trustDomains: the trust domain of the SPIFFE principal matches',
    yaml: ap('partners', 'rules:\n- from:\n  - source:\n      trustDomains: ["partner.example"]'),
    ctx: { principal: 'partner.example/ns/shop/sa/api' },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/partners#0' },
  },
  {
    name: 'trustDomains: another trust domain does not match',
    yaml: ap('partners', 'rules:\n- from:\n  - source:\n      trustDomains: ["partner.example"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'notTrustDomains in a DENY policy: peers of other trust domains are denied, the local one passes',
    yaml: ap('foreign', 'action: DENY\nrules:\n- from:\n  - source:\n      notTrustDomains: ["cluster.local"]'),
    ctx: { principal: 'other.example/ns/x/sa/y' },
    expect: { allow: false, code: 'DENY_MATCHED', by: 'bookinfo/foreign#0' },
  },
  {
    name: 'notTrustDomains in a DENY policy: the local trust domain is not denied',
    yaml: ap('foreign', 'action: DENY\nrules:\n- from:\n  - source:\n      notTrustDomains: ["cluster.local"]'),
    ctx: { principal: SLEEP },
    expect: { allow: true, code: 'NO_ALLOW_POLICY' },
  },
  {
    name: 'trustDomains "*" matches any peer with an identity, not a plaintext one',
    yaml: ap('any-td', 'rules:\n- from:\n  - source:\n      trustDomains: ["*"]'),
    ctx: {},
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'serviceAccounts: a bare name is in the policy namespace',
    yaml: ap('pp', 'rules:\n- from:\n  - source:\n      serviceAccounts: ["productpage"]'),
    ctx: { principal: PRODUCTPAGE },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/pp#0' },
  },
  {
    name: 'serviceAccounts: a bare name does not match the same name in another namespace',
    yaml: ap('pp', 'rules:\n- from:\n  - source:\n      serviceAccounts: ["productpage"]', 'ops'),
    ctx: { principal: PRODUCTPAGE },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
  {
    name: 'when source.trustDomain and source.serviceAccount (bare name in the policy namespace)',
    yaml: ap('when-id', 'rules:\n- when:\n  - key: source.trustDomain\n    values: ["cluster.local"]\n  - key: source.serviceAccount\n    values: ["productpage", "ops/admin"]'),
    ctx: { principal: ADMIN },
    expect: { allow: true, code: 'ALLOW_MATCHED', by: 'bookinfo/when-id#0' },
  },
  {
    name: 'when source.serviceAccount does not match another service account',
    yaml: ap('when-id', 'rules:\n- when:\n  - key: source.serviceAccount\n    values: ["productpage"]'),
    ctx: { principal: SLEEP },
    expect: { allow: false, code: 'ALLOW_NO_MATCH' },
  },
];

for (const c of cases) {
  const layer = c.layer ?? 'L7';
  test(`[${layer}] ${c.name}`, (t) => {
    const policies = policiesFromYaml(c.yaml);
    const d = evaluateAuthorization(policies, ctx(c.ctx), { layer });
    t.deepEqual(check(d, c.expect), { ...c.expect, by: c.expect.by, audit: c.expect.audit, unsupported: c.expect.unsupported, reason: c.expect.reason });
    t.is(typeof d.reason, 'string');
    t.true(d.reason.length > 0);
    // The indexed set must reach exactly the same decision.
    t.deepEqual(evaluateAuthorization(buildAuthzPolicySet(policies), ctx(c.ctx), { layer }), d);
  });
}

test('applySelectors: only policies selecting the destination apply', (t) => {
  const policies = policiesFromYaml(
    ap('deny-ratings', 'action: DENY\nselector:\n  matchLabels: {app: ratings}\nrules:\n- {}') +
      ap('allow-reviews-v2', `selector:\n  matchLabels: {app: reviews, version: v2}\nrules:\n- from:\n  - source:\n      principals: ["${ADMIN}"]`) +
      ap('other-ns', 'action: DENY\nrules:\n- {}', 'ops') +
      ap('mesh-wide', `action: ALLOW\nrules:\n- from:\n  - source:\n      principals: ["${SLEEP}"]`, 'istio-system') +
      ap('waypoint-only', 'targetRefs:\n- kind: Gateway\n  group: gateway.networking.k8s.io\n  name: waypoint\naction: DENY\nrules:\n- {}'),
  );
  const set = buildAuthzPolicySet(policies);
  const reviewsV1 = ctx({ principal: SLEEP, dstNamespace: 'bookinfo', labels: { app: 'reviews', version: 'v1' } });
  for (const ps of [policies, set]) {
    const d1 = evaluateAuthorization(ps, reviewsV1, { layer: 'L4', applySelectors: true });
    t.like(d1, { allow: true, code: 'ALLOW_MATCHED', policy: { namespace: 'istio-system', name: 'mesh-wide' }, ruleIndex: 0 });
    const reviewsV2 = ctx({ principal: SLEEP, dstNamespace: 'bookinfo', labels: { app: 'reviews', version: 'v2' } });
    const d2 = evaluateAuthorization(ps, reviewsV2, { layer: 'L4', applySelectors: true });
    t.like(d2, { allow: true, code: 'ALLOW_MATCHED', policy: { namespace: 'istio-system', name: 'mesh-wide' } });
    const fromOps = ctx({ principal: 'cluster.local/ns/x/sa/y', dstNamespace: 'bookinfo', labels: { app: 'reviews', version: 'v2' } });
    const d3 = evaluateAuthorization(ps, fromOps, { layer: 'L4', applySelectors: true });
    t.like(d3, { allow: false, code: 'ALLOW_NO_MATCH' });
    t.regex(d3.reason, /2 ALLOW policies apply/);
    const ratings = ctx({ principal: SLEEP, dstNamespace: 'bookinfo', labels: { app: 'ratings' } });
    t.like(evaluateAuthorization(ps, ratings, { layer: 'L4', applySelectors: true }), { allow: false, code: 'DENY_MATCHED', policy: { name: 'deny-ratings' } });
    const opsWorkload = ctx({ principal: SLEEP, dstNamespace: 'ops', labels: {} });
    t.like(evaluateAuthorization(ps, opsWorkload, { layer: 'L4', applySelectors: true }), { allow: false, code: 'DENY_MATCHED', policy: { name: 'other-ns' } });
    const rootWorkload = ctx({ principal: ADMIN, dstNamespace: 'istio-system', labels: {} });
    t.like(evaluateAuthorization(ps, rootWorkload, { layer: 'L4', applySelectors: true }), { allow: false, code: 'ALLOW_NO_MATCH' });
    // With another root namespace, istio-system/mesh-wide no longer applies outside istio-system.
    const elsewhere = ctx({ principal: ADMIN, dstNamespace: 'default', labels: {} });
    t.like(evaluateAuthorization(ps, elsewhere, { layer: 'L4', applySelectors: true }), { allow: false, code: 'ALLOW_NO_MATCH' });
    t.like(evaluateAuthorization(ps, elsewhere, { layer: 'L4', applySelectors: true, rootNamespace: 'mesh-root' }), { allow: true, code: 'NO_ALLOW_POLICY' });
  }
});

test('applySelectors without a destination namespace is a clear error', (t) => {
  const err = t.throws(() => evaluateAuthorization([], ctx(), { layer: 'L4', applySelectors: true }));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_AUTHZ_CONTEXT');
  t.regex(err?.message ?? '', /destination\.namespace/);
});

test('an unknown layer is a clear error', (t) => {
  const err = t.throws(() => evaluateAuthorization([], ctx(), { layer: 'L3' as AuthzLayer }));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_AUTHZ_CONTEXT');
});

test('decisions of an unparsable source IP fail ipBlocks and pass notIpBlocks', (t) => {
  const policies = policiesFromYaml(ap('ip', 'rules:\n- from:\n  - source:\n      ipBlocks: ["0.0.0.0/0"]'));
  t.like(evaluateAuthorization(policies, ctx({ ip: 'not-an-ip' }), { layer: 'L4' }), { allow: false, code: 'ALLOW_NO_MATCH' });
  const deny = policiesFromYaml(ap('ip', 'action: DENY\nrules:\n- from:\n  - source:\n      notIpBlocks: ["198.18.0.0/15"]'));
  t.like(evaluateAuthorization(deny, ctx({ ip: 'garbage' }), { layer: 'L4' }), { allow: false, code: 'DENY_MATCHED' });
});
