/**
 * Istio security kinds (security.istio.io v1 and v1beta1): PeerAuthentication,
 * AuthorizationPolicy, RequestAuthentication, with Istio's field names. The AuthorizationPolicy
 * spec type is the one the evaluator consumes (src/model/authz/types.ts); a compile-time check
 * below keeps the schema's output assignable to it.
 */
import { arr, bool, duration, enumOf, notApplied, obj, opt, record, req, str, unimplemented, type Infer } from '../schema/dsl.js';
import { cidr, policyTargetRef, workloadSelector } from '../schema/common.js';
import type { AuthorizationPolicySpec } from '../authz/types.js';
import { lintAuthorizationPolicy } from '../authz/lint.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

const SECURITY_VERSIONS = ['v1', 'v1beta1'] as const;

// ---------------------------------------------------------------------- PeerAuthentication

const mtlsMode = enumOf(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']);
const mtls = obj({ mode: opt(mtlsMode) });

const peerAuthenticationSpec = obj(
  {
    selector: opt(workloadSelector),
    mtls: opt(mtls),
    portLevelMtls: opt(
      record(mtls, {
        key: (k) =>
          /^\d{1,5}$/.test(k) && Number(k) >= 1 && Number(k) <= 65535
            ? undefined
            : { code: 'AMBIT_SCHEMA_RANGE', message: `portLevelMtls key ${JSON.stringify(k)} must be a port number 1..65535` },
      }),
    ),
  },
  {
    check(spec, path, ctx) {
      const hasSelector = Object.keys(spec.selector?.matchLabels ?? {}).length > 0;
      if (spec.portLevelMtls !== undefined && Object.keys(spec.portLevelMtls).length > 0 && !hasSelector) {
        ctx.report('AMBIT_POLICY_PORT_LEVEL_WITHOUT_SELECTOR', 'portLevelMtls only applies to a PeerAuthentication with a selector (as in Istio); it is ignored', [...path, 'portLevelMtls'], { atKey: true });
      }
    },
  },
);

export const peerAuthenticationKind = defineKind({
  group: 'security.istio.io',
  kind: 'PeerAuthentication',
  versions: SECURITY_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: peerAuthenticationSpec,
  summary: 'mTLS mode STRICT / PERMISSIVE / DISABLE, mesh-, namespace- or workload-wide, per port',
});
export type MtlsMode = Infer<typeof mtlsMode>;
export type PeerAuthenticationSpec = Infer<typeof peerAuthenticationSpec>;
export type PeerAuthenticationResource = Resource<PeerAuthenticationSpec, undefined>;

// --------------------------------------------------------------------- AuthorizationPolicy

const strings = arr(str());
const L4_NOTE = 'L4: enforced by the agent';
const L7_NOTE = 'L7: enforced by the waypoint (without one, an ALLOW rule using it never matches and a DENY rule matches on its L4 fields)';
const portStrings = arr(str({ pattern: /^\d{1,5}$/, format: 'a port number written as a string ("8080")' }));
const cidrs = arr(cidr);

const source = obj({
  principals: opt(strings, 'SPIFFE ids without spiffe://; L4: enforced by the agent'),
  notPrincipals: opt(strings, 'as principals'),
  requestPrincipals: opt(strings, `JWT <iss>/<sub>; ${L7_NOTE}`),
  notRequestPrincipals: opt(strings, 'as requestPrincipals'),
  namespaces: opt(strings, L4_NOTE),
  notNamespaces: opt(strings, L4_NOTE),
  serviceAccounts: opt(strings, '"<namespace>/<name>", or a bare "<name>" in the policy\'s namespace; enforced by the agent (L4)'),
  notServiceAccounts: opt(strings, 'as serviceAccounts'),
  trustDomains: opt(strings, 'the trust domain of the peer\'s SPIFFE identity; exact, "*", or one leading or trailing "*"; enforced by the agent (L4)'),
  notTrustDomains: opt(strings, 'as trustDomains'),
  ipBlocks: opt(cidrs, L4_NOTE),
  notIpBlocks: opt(cidrs, L4_NOTE),
  remoteIpBlocks: opt(cidrs, 'the original client IP (X-Forwarded-For at the waypoint), else the peer IP'),
  notRemoteIpBlocks: opt(cidrs, 'as remoteIpBlocks'),
});

const operation = obj({
  hosts: opt(strings, L7_NOTE),
  notHosts: opt(strings, L7_NOTE),
  ports: opt(portStrings, L4_NOTE),
  notPorts: opt(portStrings, L4_NOTE),
  methods: opt(strings, L7_NOTE),
  notMethods: opt(strings, L7_NOTE),
  paths: opt(strings, `${L7_NOTE}; {*} and {**} path templates`),
  notPaths: opt(strings, L7_NOTE),
});

const condition = obj({
  key: req(str({ minLength: 1 }), 'L4 keys: source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, source.trustDomain, destination.ip, destination.port; L7 keys (waypoint): request.headers[NAME], request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME]; other keys fail closed (connection.sni, experimental.*) or are refused'),
  values: opt(strings),
  notValues: opt(strings),
}, {
  check(c, path, ctx) {
    if ((c.values ?? []).length === 0 && (c.notValues ?? []).length === 0) {
      ctx.report('AMBIT_SCHEMA_REQUIRED', 'a condition needs values or notValues', path);
    }
  },
});

const rule = obj({
  from: opt(arr(obj({ source: opt(source) }))),
  to: opt(arr(obj({ operation: opt(operation) }))),
  when: opt(arr(condition)),
});

const authorizationPolicySpec = obj(
  {
    selector: opt(workloadSelector),
    targetRef: opt(policyTargetRef),
    targetRefs: opt(arr(policyTargetRef)),
    rules: opt(arr(rule)),
    action: opt(enumOf(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'], { unimplemented: ['CUSTOM'], note: 'external authorizers are not supported; ambit fails closed (denies what the rules match)' })),
    provider: unimplemented(obj({ name: opt(str()) }), 'only meaningful with action CUSTOM'),
  },
  { atMostOne: [['selector', 'targetRef', 'targetRefs']] },
);

export const authorizationPolicyKind = defineKind({
  group: 'security.istio.io',
  kind: 'AuthorizationPolicy',
  versions: SECURITY_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: authorizationPolicySpec,
  attachment: 'workload-selector',
  // The evaluator's own linter: Istio's rejections and ambit's unsupported features. Whether a
  // waypoint enforces L7 rules depends on the mesh, so the analyzer checks that (waypoint: true here).
  validate: (raw) =>
    lintAuthorizationPolicy(raw, { waypoint: true }).map((i) => ({
      code: 'AMBIT_POLICY_AUTHZ' as const,
      severity: i.severity,
      message: `${i.message} [${i.code}]`,
      path: i.path,
    })),
  summary: 'ALLOW / DENY / AUDIT rules; L4 fields enforced by the agent, L7 fields by the waypoint',
});
export type AuthorizationPolicyResource = Resource<AuthorizationPolicySpec, undefined>;

// The parsed spec must be usable as the evaluator's spec type, unchanged.
const specIsEvaluatorSpec: (s: Infer<typeof authorizationPolicySpec>) => AuthorizationPolicySpec = (s) => s;
void specIsEvaluatorSpec;

// ------------------------------------------------------------------- RequestAuthentication

const jwtHeader = obj({ name: req(str({ minLength: 1 })), prefix: opt(str()) });

const jwtRule = obj(
  {
    issuer: req(str({ minLength: 1 })),
    audiences: opt(strings),
    jwksUri: opt(str({ pattern: /^https?:\/\/\S+$/, format: 'an http(s) URL' })),
    jwks_uri: unimplemented(str(), 'the old spelling is not read: write jwksUri'),
    jwks: opt(str()),
    fromHeaders: opt(arr(jwtHeader)),
    fromParams: opt(strings),
    fromCookies: opt(strings),
    outputPayloadToHeader: opt(str()),
    forwardOriginalToken: opt(bool()),
    outputClaimToHeaders: opt(arr(obj({ header: req(str({ minLength: 1 })), claim: req(str({ minLength: 1 })) }))),
    timeout: opt(duration({ minMs: 1 })),
    presence: opt(enumOf(['OPTIONAL', 'REQUIRED']), 'OPTIONAL is what the waypoint does; REQUIRED is accepted, not applied (a warning): require a token with an AuthorizationPolicy'),
    spaceDelimitedClaims: notApplied(
      arr(str({ minLength: 1 }), { maxItems: 64 }),
      'scope and permission are matched word by word (Istio\'s defaults), other claims as the token carries them: the waypoint does not pass this list to the authorization yet',
    ),
  },
  {
    atMostOne: [['jwks', 'jwksUri']],
    check(rule, path, ctx) {
      if (rule.presence === 'REQUIRED') {
        ctx.report(
          'AMBIT_SCHEMA_NOT_APPLIED',
          'presence: REQUIRED is accepted, not applied: the waypoint lets a request without a token through (only an invalid token is refused); require a token with an AuthorizationPolicy (from: [{source: {requestPrincipals: ["*"]}}])',
          [...path, 'presence'],
          { severity: 'warning', atKey: true },
        );
      }
    },
  },
);

const requestAuthenticationSpec = obj(
  {
    selector: opt(workloadSelector),
    targetRef: opt(policyTargetRef),
    targetRefs: opt(arr(policyTargetRef)),
    jwtRules: opt(arr(jwtRule)),
  },
  { atMostOne: [['selector', 'targetRef', 'targetRefs']] },
);

export const requestAuthenticationKind = defineKind({
  group: 'security.istio.io',
  kind: 'RequestAuthentication',
  versions: SECURITY_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: requestAuthenticationSpec,
  attachment: 'workload-selector',
  summary: 'JWT validation rules, enforced at the waypoint',
});
export type RequestAuthenticationSpec = Infer<typeof requestAuthenticationSpec>;
export type RequestAuthenticationResource = Resource<RequestAuthenticationSpec, undefined>;

