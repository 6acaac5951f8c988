/**
 * Gateway API kinds (gateway.networking.k8s.io/v1): HTTPRoute used the GAMMA way (parentRef a
 * Service: mesh routing at the waypoint) and Gateway, which declares a waypoint when its
 * `gatewayClassName` is `ambit-waypoint`. Ingress gateways are recognised and reported as
 * unimplemented.
 */
import { arr, duration, enumOf, int, obj, opt, req, str, unimplemented, anyValue, ignored, type Infer } from '../schema/dsl.js';
import { annotations, hostProblem, labels, portNumber } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

/** The GatewayClass that marks a Gateway as an ambit waypoint. */
export const WAYPOINT_GATEWAY_CLASS = 'ambit-waypoint';

const GATEWAY_API_VERSIONS = ['v1', 'v1beta1'] as const;

/** Gateway API Duration (GEP-2257): up to four `<number><h|m|s|ms>` parts. */
const gwDuration = duration();
export const gwHostname = str({ check: hostProblem });
export const objectName = str({ minLength: 1, maxLength: 253 });

export const parentRef = obj({
  group: opt(str()),
  kind: opt(str()),
  namespace: opt(str()),
  name: req(objectName),
  sectionName: opt(str()),
  port: opt(portNumber),
});

export const headerMatch = obj({
  type: opt(enumOf(['Exact', 'RegularExpression'])),
  name: req(str({ minLength: 1 })),
  value: req(str()),
});

const pathMatch = obj(
  {
    type: opt(enumOf(['Exact', 'PathPrefix', 'RegularExpression'])),
    value: opt(str({ maxLength: 1024 })),
  },
  {
    check(p, path, ctx) {
      if ((p.type ?? 'PathPrefix') !== 'RegularExpression' && p.value !== undefined && !p.value.startsWith('/')) {
        ctx.report('AMBIT_SCHEMA_FORMAT', `path ${JSON.stringify(p.value)} must start with "/"`, [...path, 'value']);
      }
    },
  },
);

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

const routeMatch = obj({
  path: opt(pathMatch),
  headers: opt(arr(headerMatch, { maxItems: 16 })),
  queryParams: opt(arr(headerMatch, { maxItems: 16 })),
  method: opt(enumOf(METHODS)),
});

const httpHeader = obj({ name: req(str({ minLength: 1 })), value: req(str()) });
export const headerModifier = obj({ set: opt(arr(httpHeader)), add: opt(arr(httpHeader)), remove: opt(arr(str())) });

export const backendObjectRef = obj({
  group: opt(str()),
  kind: opt(str()),
  name: req(objectName),
  namespace: opt(str()),
  port: opt(portNumber),
});

const pathModifier = obj(
  {
    type: req(enumOf(['ReplaceFullPath', 'ReplacePrefixMatch'])),
    replaceFullPath: opt(str()),
    replacePrefixMatch: opt(str()),
  },
  { atMostOne: [['replaceFullPath', 'replacePrefixMatch']] },
);

/** RequestMirror's `percent` or `fraction` (GEP-1731). */
export const requestMirror = obj({
  backendRef: req(backendObjectRef),
  percent: opt(int({ min: 0, max: 100 })),
  fraction: opt(obj({ numerator: req(int({ min: 0 })), denominator: opt(int({ min: 1 })) })),
});

const filter = obj({
  type: req(enumOf(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS', 'ExternalAuth'], {
    unimplemented: ['ExtensionRef', 'CORS', 'ExternalAuth'],
    note: 'the filter is skipped',
  })),
  requestHeaderModifier: opt(headerModifier),
  responseHeaderModifier: opt(headerModifier),
  requestMirror: opt(requestMirror),
  requestRedirect: opt(
    obj({
      scheme: opt(enumOf(['http', 'https'])),
      hostname: opt(gwHostname),
      path: opt(pathModifier),
      port: opt(portNumber),
      statusCode: opt(int({ min: 301, max: 308 })),
    }),
  ),
  urlRewrite: opt(obj({ hostname: opt(gwHostname), path: opt(pathModifier) })),
  extensionRef: opt(anyValue()),
  cors: opt(anyValue()),
  externalAuth: opt(anyValue()),
});

const backendRef = obj({
  group: opt(str()),
  kind: opt(str()),
  name: req(objectName),
  namespace: opt(str()),
  port: opt(portNumber),
  weight: opt(int({ min: 0, max: 1_000_000 })),
  filters: unimplemented(arr(filter), 'put the filters on the rule'),
});

const routeRule = obj({
  name: opt(str()),
  matches: opt(arr(routeMatch, { maxItems: 64 })),
  filters: opt(arr(filter, { maxItems: 16 })),
  backendRefs: opt(arr(backendRef, { maxItems: 16 })),
  timeouts: opt(obj({ request: opt(gwDuration), backendRequest: opt(gwDuration) })),
  retry: opt(obj({ codes: opt(arr(int({ min: 400, max: 599 }))), attempts: opt(int({ min: 0 })), backoff: opt(gwDuration) })),
  sessionPersistence: unimplemented(anyValue(), 'no session affinity'),
});

const httpRouteSpec = obj({
  parentRefs: opt(arr(parentRef, { maxItems: 32 })),
  hostnames: opt(arr(gwHostname, { maxItems: 16 })),
  rules: opt(arr(routeRule, { maxItems: 16 })),
  useDefaultGateways: unimplemented(anyValue(), 'routes attach through parentRefs only'),
});

export const httpRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'HTTPRoute',
  versions: GATEWAY_API_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: httpRouteSpec,
  specRequired: true,
  status: obj({ parents: ignored() }),
  summary: 'HTTP routing for a Service (GAMMA: parentRefs kind Service), enforced at the waypoint',
});
export type HttpRouteSpec = Infer<typeof httpRouteSpec>;
export type HttpRouteRuleSpec = Infer<typeof routeRule>;
export type HttpRouteFilterSpec = Infer<typeof filter>;
export type HttpRouteResource = Resource<HttpRouteSpec, unknown>;
export type ParentRefSpec = Infer<typeof parentRef>;
export type HeaderModifierSpec = Infer<typeof headerModifier>;
export type RequestMirrorSpec = Infer<typeof requestMirror>;

// --------------------------------------------------------------------------------- Gateway

const listener = obj({
  name: req(str({ minLength: 1 })),
  hostname: opt(gwHostname),
  port: req(portNumber),
  protocol: req(str({ minLength: 1 })),
  tls: unimplemented(anyValue(), 'waypoints terminate HBONE only'),
  allowedRoutes: unimplemented(anyValue(), 'routes attach to Services (GAMMA), not to the waypoint'),
});

const gatewaySpec = obj(
  {
    gatewayClassName: req(str({ minLength: 1 })),
    listeners: req(arr(listener, { minItems: 1, uniqueBy: { key: (l) => l.name, what: 'listener name' } })),
    addresses: opt(arr(obj({ type: opt(str()), value: req(str()) }))),
    infrastructure: opt(obj({ labels: opt(labels), annotations: opt(annotations), parametersRef: unimplemented(anyValue(), 'no parameters') })),
    allowedListeners: unimplemented(anyValue(), 'ListenerSets are for ingress gateways, which are not implemented'),
    defaultScope: unimplemented(anyValue(), 'default Gateways are for ingress, which is not implemented'),
    tls: unimplemented(anyValue(), 'waypoints terminate HBONE only'),
  },
  {
    check(spec, path, ctx) {
      if (spec.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) {
        ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `gatewayClassName ${JSON.stringify(spec.gatewayClassName)}: only waypoints (gatewayClassName ${WAYPOINT_GATEWAY_CLASS}) are implemented; this Gateway is ignored`, [...path, 'gatewayClassName']);
      }
    },
  },
);

export const gatewayKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'Gateway',
  versions: GATEWAY_API_VERSIONS,
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: gatewaySpec,
  specRequired: true,
  status: obj({ addresses: ignored(), conditions: ignored(), listeners: ignored() }),
  summary: `a waypoint when gatewayClassName is ${WAYPOINT_GATEWAY_CLASS}; its pods carry label gateway.networking.k8s.io/gateway-name`,
});
export type GatewaySpec = Infer<typeof gatewaySpec>;
export type GatewayResource = Resource<GatewaySpec, unknown>;
