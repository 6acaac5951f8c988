/**
 * Istio networking kinds (networking.istio.io v1, v1beta1, v1alpha3): VirtualService and
 * DestinationRule, with Istio's field names. ambit's waypoint implements HTTP routing; `tls` and
 * `tcp` routes, CORS, delegation and Sidecar/ingress-only fields are recognised and reported as
 * unimplemented.
 *
 * Istio's semantics kept here: route weights are relative (normalised when compiled; only all
 * zero is refused); a VirtualService without `hosts` is a delegate, valid without gateways,
 * tls and tcp routes, and meant to be named by another VirtualService's `delegate`.
 */
import { arr, bool, deprecated, duration, enumOf, ignored, int, notApplied, num, obj, opt, record, req, str, unimplemented, anyValue, type Infer } from '../schema/dsl.js';
import { dnsName, host, labels, portNumber, regex, stringMatch } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

const NETWORKING_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'] as const;

const percent = obj({ value: req(num({ min: 0, max: 100 })) });

/** Istio StringMatch where `{}` is also allowed (header presence in `headers`/`withoutHeaders`). */
const presenceMatch = obj({ exact: opt(str()), prefix: opt(str()), regex: opt(regex) }, { atMostOne: [['exact', 'prefix', 'regex']] });

const headerName = str({ pattern: /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, format: 'an HTTP header name' });

const headerOperations = obj({ set: opt(record(str())), add: opt(record(str())), remove: opt(arr(headerName)) });
const headers = obj({ request: opt(headerOperations), response: opt(headerOperations) });

const httpMatch = obj({
  name: opt(str()),
  uri: opt(stringMatch),
  scheme: opt(stringMatch),
  method: opt(stringMatch),
  authority: opt(stringMatch),
  headers: opt(record(presenceMatch)),
  port: opt(portNumber),
  queryParams: opt(record(presenceMatch)),
  ignoreUriCase: opt(bool()),
  withoutHeaders: opt(record(presenceMatch)),
  sourceLabels: unimplemented(record(str()), 'waypoints see the source identity, not its labels; use an AuthorizationPolicy'),
  sourceNamespace: unimplemented(str(), 'use an AuthorizationPolicy on the source namespace'),
  gateways: unimplemented(arr(str()), 'ingress gateways are not implemented'),
  statPrefix: ignored(),
});

const portSelector = obj({ number: req(portNumber) });

const destination = obj({
  host: req(host),
  subset: opt(dnsName('dns1123-label')),
  port: opt(portSelector),
});

const httpRouteDestination = obj({
  destination: req(destination),
  weight: opt(int({ min: 0 }), 'relative to the other destinations, as in Istio: 1 and 3 mean 25% and 75%; all 0 is an error'),
  headers: unimplemented(headers, 'set headers on the route instead of one destination'),
});

const RETRY_ON = new Set([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure', 'cancelled',
  'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);

const retryOn = str({
  check: (s) => {
    for (const part of s.split(',').map((p) => p.trim())) {
      if (!RETRY_ON.has(part) && !/^[1-5]\d\d$/.test(part)) return `retryOn ${JSON.stringify(part)} is not a retry policy (5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, ...) or an HTTP status`;
    }
    return undefined;
  },
});

const retries = obj({
  attempts: opt(int({ min: 0 })),
  perTryTimeout: opt(duration({ minMs: 1 })),
  retryOn: opt(retryOn),
  retryRemoteLocalities: unimplemented(bool(), 'ambit has no locality'),
  retryIgnorePreviousHosts: opt(bool()),
  backoff: opt(duration({ minMs: 1 })),
});

const fault = obj({
  delay: opt(
    obj(
      {
        fixedDelay: opt(duration({ minMs: 1 })),
        exponentialDelay: unimplemented(duration(), 'use fixedDelay'),
        percentage: opt(percent),
        percent: deprecated(int({ min: 0, max: 100 }), 'use percentage.value'),
      },
      { exactlyOne: [['fixedDelay', 'exponentialDelay']] },
    ),
  ),
  abort: opt(
    obj(
      {
        httpStatus: opt(int({ min: 200, max: 599 })),
        grpcStatus: unimplemented(str(), 'use httpStatus'),
        http2Error: unimplemented(str(), 'use httpStatus'),
        percentage: opt(percent),
      },
      { exactlyOne: [['httpStatus', 'grpcStatus', 'http2Error']] },
    ),
  ),
});

const redirect = obj({
  uri: opt(str()),
  authority: opt(str()),
  port: opt(portNumber),
  derivePort: opt(enumOf(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT'])),
  scheme: opt(enumOf(['http', 'https'])),
  redirectCode: opt(int({ min: 300, max: 399 })),
  prefixRewrite: unimplemented(str(), 'use redirect.uri'),
});

const rewrite = obj({
  uri: opt(str()),
  authority: opt(str()),
  uriRegexRewrite: unimplemented(obj({ match: req(regex), rewrite: req(str()) }), 'use rewrite.uri'),
});

const directResponse = obj({
  status: req(int({ min: 200, max: 599 })),
  body: opt(obj({ string: opt(str()), bytes: opt(str()) }, { atMostOne: [['string', 'bytes']] })),
});

const httpRoute = obj(
  {
    name: opt(str()),
    match: opt(arr(httpMatch)),
    route: opt(arr(httpRouteDestination, { minItems: 1 })),
    redirect: opt(redirect),
    directResponse: opt(directResponse),
    delegate: unimplemented(obj({ name: req(str({ minLength: 1 })), namespace: opt(str()) }), 'delegation is not implemented: write the delegated routes into this VirtualService'),
    rewrite: opt(rewrite),
    timeout: opt(duration({ minMs: 1 })),
    retries: opt(retries),
    fault: opt(fault),
    mirror: opt(destination),
    mirrors: opt(arr(obj({ destination: req(destination), percentage: opt(percent) }))),
    mirrorPercentage: opt(percent),
    mirror_percent: deprecated(int({ min: 0, max: 100 }), 'use mirrorPercentage'),
    mirrorPercent: deprecated(int({ min: 0, max: 100 }), 'use mirrorPercentage'),
    corsPolicy: unimplemented(anyValue(), 'CORS is not implemented at the waypoint'),
    headers: opt(headers),
    websocketUpgrade: opt(bool(), 'true is what the waypoint does: it forwards every HTTP/1.1 upgrade (WebSocket) the upstream accepts; false is accepted, not applied'),
  },
  {
    exactlyOne: [['route', 'redirect', 'directResponse', 'delegate']],
    atMostOne: [['mirror', 'mirrors']],
    check(r, path, ctx) {
      const dests = r.route ?? [];
      const routePath = [...path, 'route'];
      const invalidWeight = ctx.issues.some((i) => routePath.every((seg, k) => i.path[k] === seg));
      if (dests.length > 1 && !invalidWeight) {
        const sum = dests.reduce((a, d) => a + (d.weight ?? 0), 0);
        if (sum === 0) {
          ctx.report('AMBIT_SCHEMA_WEIGHT_SUM', `the ${dests.length} destinations all have weight 0, so none would get traffic; give them relative weights (e.g. 1 and 3 for 25% and 75%)`, [...path, 'route']);
        }
      }
      if (r.websocketUpgrade === false) {
        ctx.report('AMBIT_SCHEMA_NOT_APPLIED', 'websocketUpgrade: false is accepted, not applied: the waypoint forwards every HTTP/1.1 upgrade (WebSocket) the upstream accepts; refuse upgrades with an AuthorizationPolicy on the "upgrade" header instead', [...path, 'websocketUpgrade'], { atKey: true });
      }
    },
  },
);

const virtualServiceSpec = obj({
  hosts: opt(arr(host), 'absent or empty: a delegate VirtualService, valid without gateways, tls and tcp; warned when no http[].delegate names it'),
  gateways: opt(arr(str({ minLength: 1 })), 'absent, empty or listing "mesh": the VirtualService routes mesh traffic (at the waypoint); "ns/name" or "name": it routes the traffic of that Gateway (networking.istio.io) at its ingress; one bound only to gateways does not apply to mesh traffic, as in Istio'),
  http: opt(arr(httpRoute)),
  tls: unimplemented(anyValue(), 'TLS-passthrough routes are not implemented; traffic is forwarded at L4'),
  tcp: unimplemented(anyValue(), 'TCP routes are not implemented; traffic is forwarded at L4'),
  exportTo: unimplemented(arr(str()), 'every object is visible mesh-wide'),
}, {
  check(spec, path, ctx) {
    // Gateway names are checked against the mesh's Gateways in cross-check.ts.
    if ((spec.hosts ?? []).length > 0) return;
    // A delegate: Istio refuses what only a root VirtualService may carry.
    for (const field of ['gateways', 'tls', 'tcp'] as const) {
      const v = spec[field];
      if (v !== undefined && (!Array.isArray(v) || v.length > 0)) {
        ctx.report('AMBIT_SCHEMA_INVALID', `a VirtualService without hosts is a delegate, and a delegate must not set ${field} (set hosts if this is not a delegate)`, [...path, field], { atKey: true });
      }
    }
    (spec.http ?? []).forEach((r, i) => {
      if (r.delegate !== undefined) ctx.report('AMBIT_SCHEMA_INVALID', 'a delegate VirtualService (no hosts) must not delegate again', [...path, 'http', i, 'delegate'], { atKey: true });
    });
  },
});

/**
 * Whether a VirtualService routes mesh traffic: `gateways` absent or empty (Istio's default,
 * the reserved name "mesh"), or listing "mesh". One bound only to ingress gateways does not.
 */
export function vsAppliesToMesh(spec: { gateways?: readonly string[] }): boolean {
  const g = spec.gateways;
  return g === undefined || g.length === 0 || g.includes('mesh');
}

export const virtualServiceKind = defineKind({
  group: 'networking.istio.io',
  kind: 'VirtualService',
  versions: NETWORKING_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: virtualServiceSpec,
  specRequired: true,
  summary: 'HTTP routing for a Service: matches, weighted splits, retries, timeouts, faults, mirroring',
});
export type VirtualServiceSpec = Infer<typeof virtualServiceSpec>;
export type VsHttpRouteSpec = Infer<typeof httpRoute>;
export type VsHttpMatchSpec = Infer<typeof httpMatch>;
export type VsDestinationSpec = Infer<typeof destination>;
export type VsHeadersSpec = Infer<typeof headers>;
export type VirtualServiceResource = Resource<VirtualServiceSpec, undefined>;

// ------------------------------------------------------------------------- DestinationRule

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

/**
 * Envoy issues the hash cookie (with `ttl`, `path`, `attributes`) when a request lacks it; the
 * waypoint only hashes a cookie the client sends, and balances requests without one round robin.
 */
const issuedCookieNote = 'the waypoint hashes on the cookie the client sends and does not issue one; requests without it are balanced round robin';

const consistentHash = obj(
  {
    httpHeaderName: opt(headerName),
    httpCookie: opt(
      obj({
        name: req(str({ minLength: 1, pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, format: 'a cookie name' })),
        path: unimplemented(str(), issuedCookieNote),
        ttl: unimplemented(duration(), issuedCookieNote),
        attributes: unimplemented(anyValue(), issuedCookieNote),
      }),
    ),
    useSourceIp: opt(bool()),
    httpQueryParameterName: unimplemented(str({ minLength: 1 }), 'the waypoint hashes on a header, a cookie or the source IP; these requests are balanced round robin'),
    ringHash: opt(obj({ minimumRingSize: opt(int({ min: 1, max: 8_388_608 })) })),
    maglev: opt(
      obj(
        { tableSize: opt(int({ min: 7, max: 5_000_011 })) },
        {
          check(m, path, ctx) {
            if (m.tableSize !== undefined && !isPrime(m.tableSize)) ctx.report('AMBIT_SCHEMA_INVALID', `maglev tableSize ${m.tableSize} is not a prime number (Envoy requires one; the default is 65537)`, [...path, 'tableSize']);
          },
        },
      ),
    ),
    minimumRingSize: deprecated(int({ min: 1, max: 8_388_608 }), 'use ringHash.minimumRingSize'),
  },
  {
    exactlyOne: [['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName']],
    atMostOne: [['ringHash', 'maglev'], ['maglev', 'minimumRingSize']],
    check(ch, path, ctx) {
      if (ch.useSourceIp === false) {
        ctx.report('AMBIT_SCHEMA_INVALID', 'useSourceIp: false selects no hash key; set it to true, or hash on httpHeaderName or httpCookie', [...path, 'useSourceIp']);
      }
    },
  },
);

const loadBalancer = obj(
  {
    simple: opt(
      enumOf(['UNSPECIFIED', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN'], {
        unimplemented: ['PASSTHROUGH'],
        deprecated: ['LEAST_CONN'],
        note: 'the waypoint always picks an endpoint',
      }),
    ),
    consistentHash: opt(consistentHash),
    localityLbSetting: unimplemented(anyValue(), 'ambit has no locality'),
    warmupDurationSecs: unimplemented(anyValue(), 'no slow start'),
    warmup: unimplemented(anyValue(), 'no slow start'),
    zoneAwareLbSetting: unimplemented(anyValue(), 'ambit has no locality'),
    backendUtilization: unimplemented(anyValue(), 'backends send no load reports; the waypoint balances by the policy above'),
  },
  { atMostOne: [['simple', 'consistentHash']] },
);

const connectionPool = obj({
  tcp: opt(
    obj({
      maxConnections: opt(int({ min: 0 })),
      connectTimeout: opt(duration({ minMs: 1 })),
      tcpKeepalive: unimplemented(anyValue(), 'the tunnel keeps its own keepalives'),
      maxConnectionDuration: opt(duration({ minMs: 1 })),
      idleTimeout: opt(duration({ minMs: 1 })),
    }),
  ),
  http: opt(
    obj({
      http1MaxPendingRequests: opt(int({ min: 0 })),
      http2MaxRequests: opt(int({ min: 0 })),
      maxRequestsPerConnection: opt(int({ min: 0 })),
      maxRetries: opt(int({ min: 0 })),
      idleTimeout: opt(duration({ minMs: 1 })),
      h2UpgradePolicy: unimplemented(enumOf(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']), 'the waypoint speaks the client protocol'),
      useClientProtocol: unimplemented(bool(), 'the waypoint always uses the client protocol'),
      maxConcurrentStreams: opt(int({ min: 0 })),
      http2KeepAlive: notApplied(
        obj({ interval: opt(duration({ minMs: 1 })), timeout: opt(duration({ minMs: 1 })) }),
        'the waypoint sends no HTTP/2 PINGs upstream; an idle upstream connection closes after idleTimeout',
      ),
    }),
  ),
});

const outlierDetection = obj({
  consecutiveErrors: deprecated(int({ min: 0 }), 'use consecutive5xxErrors'),
  consecutiveGatewayErrors: opt(int({ min: 0 })),
  consecutive5xxErrors: opt(int({ min: 0 })),
  interval: opt(duration({ minMs: 1 })),
  baseEjectionTime: opt(duration({ minMs: 1 })),
  maxEjectionPercent: opt(int({ min: 0, max: 100 })),
  minHealthPercent: opt(int({ min: 0, max: 100 })),
  splitExternalLocalOriginErrors: unimplemented(bool(), 'all errors count'),
  consecutiveLocalOriginFailures: unimplemented(int({ min: 0 }), 'all errors count'),
  outlierDetectionHttpErrorCodes: unimplemented(anyValue(), 'the error counters count 5xx and gateway errors as configured above'),
});

/**
 * `tls`: TLS the waypoint originates toward the host's endpoints (an egress waypoint in front of
 * a MESH_EXTERNAL ServiceEntry). SIMPLE and MUTUAL are applied; material comes from files on the
 * waypoint's filesystem (`caCertificates`, `clientCertificate`, `privateKey`).
 */
const clientTls = obj({
  mode: opt(enumOf(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']), 'DISABLE (default): plain TCP; SIMPLE: TLS, server verified; MUTUAL: TLS with a client certificate; ISTIO_MUTUAL: nothing to originate, mesh traffic is always mutual TLS over HBONE'),
  caCertificates: opt(str(), 'PEM file of CAs the server is verified against (default: the system roots)'),
  clientCertificate: opt(str(), 'PEM file of the client certificate (MUTUAL)'),
  privateKey: opt(str(), 'PEM file of the client key (MUTUAL)'),
  sni: opt(str(), 'SNI sent and, without subjectAltNames, the name verified (default: the DestinationRule host)'),
  subjectAltNames: opt(arr(str()), 'the server certificate must carry one of these names (default: the SNI)'),
  credentialName: unimplemented(str(), 'the waypoint reads TLS material from files; use caCertificates, clientCertificate and privateKey'),
  insecureSkipVerify: unimplemented(bool(), 'the server is always verified'),
  caCrl: unimplemented(str(), 'certificate revocation lists are not checked'),
});
const tlsNote = 'TLS origination applies at waypoints only';

const portTrafficPolicy = obj({
  port: opt(portSelector),
  loadBalancer: opt(loadBalancer),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  tls: opt(clientTls, tlsNote),
});

const trafficPolicy = obj({
  loadBalancer: opt(loadBalancer),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  tls: opt(clientTls, tlsNote),
  portLevelSettings: opt(arr(portTrafficPolicy, { uniqueBy: { key: (p) => (p.port ? String(p.port.number) : undefined), what: 'port' } })),
  tunnel: unimplemented(anyValue(), 'ambit tunnels with HBONE'),
  proxyProtocol: unimplemented(anyValue(), 'PROXY protocol is not implemented'),
  retryBudget: unimplemented(anyValue(), 'retries are bounded by connectionPool.http.maxRetries and each route\'s attempts'),
});

const subset = obj({
  name: req(dnsName('dns1123-label')),
  labels: opt(labels),
  trafficPolicy: opt(trafficPolicy),
});

const destinationRuleSpec = obj({
  host: req(host),
  trafficPolicy: opt(trafficPolicy),
  subsets: opt(arr(subset, { uniqueBy: { key: (s) => s.name, what: 'subset' } })),
  exportTo: unimplemented(arr(str()), 'every object is visible mesh-wide'),
  workloadSelector: unimplemented(anyValue(), 'Sidecar-only field'),
});

export const destinationRuleKind = defineKind({
  group: 'networking.istio.io',
  kind: 'DestinationRule',
  versions: NETWORKING_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: destinationRuleSpec,
  specRequired: true,
  summary: 'subsets, load balancing, connection pools, outlier detection for a host',
});
export type DestinationRuleSpec = Infer<typeof destinationRuleSpec>;
export type TrafficPolicySpec = Infer<typeof trafficPolicy>;
export type PortTrafficPolicySpec = Infer<typeof portTrafficPolicy>;
export type ClientTlsSpec = Infer<typeof clientTls>;
export type ConsistentHashSpec = Infer<typeof consistentHash>;
export type DestinationRuleResource = Resource<DestinationRuleSpec, undefined>;
