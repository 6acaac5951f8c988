/**
 * Gateway API kinds (gateway.networking.k8s.io/v1): HTTPRoute used the GAMMA way (parentRef a
 * Service: mesh routing at the waypoint) or bound to an ingress Gateway (parentRef a Gateway),
 * and Gateway, which declares a waypoint when its `gatewayClassName` is `ambit-waypoint` and an
 * ingress gateway (HTTP and HTTPS listeners, TLS terminated with a kubernetes.io/tls Secret)
 * when it is `ambit`.
 */
import { arr, duration, enumOf, int, obj, opt, req, str, unimplemented, anyValue, ignored, type Infer } from '../schema/dsl.js';
import { annotations, hostProblem, labels, portNumber } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

/** The GatewayClass that marks a Gateway as an ambit waypoint. */
export const WAYPOINT_GATEWAY_CLASS = 'ambit-waypoint';
/** The GatewayClass of ambit's ingress gateways (`ambit waypoint --ingress`). */
export const INGRESS_GATEWAY_CLASS = 'ambit';

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

/** A Secret of type kubernetes.io/tls, by name (Gateway API SecretObjectReference). */
const secretRef = obj({
  group: opt(str(), 'absent or "": the core group'),
  kind: opt(str(), 'absent or Secret'),
  name: req(objectName),
  namespace: opt(str({ minLength: 1 }), 'absent: the Gateway\'s namespace (ReferenceGrants are not checked)'),
});

const listenerTls = obj({
  mode: opt(enumOf(['Terminate', 'Passthrough'], { unimplemented: ['Passthrough'], note: 'the ingress terminates TLS' }), 'absent: Terminate'),
  certificateRefs: opt(arr(secretRef, { maxItems: 64 }), 'the first certificate whose Secret exists serves the listener'),
  options: unimplemented(anyValue(), 'no TLS options'),
  frontendValidation: unimplemented(anyValue(), 'client certificates are not requested'),
});

const allowedRoutes = obj({
  namespaces: opt(
    obj({
      from: opt(enumOf(['All', 'Same', 'Selector'], { unimplemented: ['Selector'], note: 'treated as Same' }), 'absent: Same'),
      selector: unimplemented(anyValue(), 'namespace selectors are not implemented'),
    }),
  ),
  kinds: opt(arr(obj({ group: opt(str()), kind: req(str({ minLength: 1 })) })), 'HTTPRoute is the only route kind an ingress listener takes'),
});

const listener = obj({
  name: req(str({ minLength: 1 })),
  hostname: opt(gwHostname, 'ingress: only requests for this host (and routes whose hostnames intersect it) use the listener'),
  port: req(portNumber),
  protocol: req(str({ minLength: 1 }), `ingress (gatewayClassName ${'ambit'}): HTTP or HTTPS`),
  tls: opt(listenerTls, 'ingress HTTPS listeners: certificateRefs to Secrets of type kubernetes.io/tls; waypoints terminate HBONE only'),
  allowedRoutes: opt(allowedRoutes, 'ingress: which namespaces may attach HTTPRoutes; waypoint routes attach to Services (GAMMA)'),
});

/** The protocols an ingress listener serves. */
const INGRESS_PROTOCOLS = ['HTTP', 'HTTPS'];

const gatewaySpec = obj(
  {
    gatewayClassName: req(str({ minLength: 1 })),
    listeners: req(arr(listener, { minItems: 1, uniqueBy: { key: (l) => l.name, what: 'listener name' } })),
    addresses: opt(arr(obj({ type: opt(str()), value: req(str()) }))),
    infrastructure: opt(obj({ labels: opt(labels), annotations: opt(annotations), parametersRef: unimplemented(anyValue(), 'no parameters') })),
    allowedListeners: unimplemented(anyValue(), 'ListenerSets are not implemented'),
    defaultScope: unimplemented(anyValue(), 'default Gateways are not implemented'),
    tls: unimplemented(anyValue(), 'no Gateway-level TLS settings'),
  },
  {
    check(spec, path, ctx) {
      const cls = spec.gatewayClassName;
      if (cls !== WAYPOINT_GATEWAY_CLASS && cls !== INGRESS_GATEWAY_CLASS) {
        ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `gatewayClassName ${JSON.stringify(cls)}: ambit implements waypoints (gatewayClassName ${WAYPOINT_GATEWAY_CLASS}) and ingress gateways (gatewayClassName ${INGRESS_GATEWAY_CLASS}); this Gateway is ignored`, [...path, 'gatewayClassName']);
        return;
      }
      spec.listeners.forEach((l, i) => {
        const at = [...path, 'listeners', i];
        if (cls === WAYPOINT_GATEWAY_CLASS) {
          if (l.tls !== undefined) ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', 'tls: waypoints terminate HBONE only; this field is ignored', [...at, 'tls']);
          if (l.allowedRoutes !== undefined) ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', 'allowedRoutes: routes attach to Services (GAMMA), not to the waypoint; this field is ignored', [...at, 'allowedRoutes']);
          return;
        }
        if (!INGRESS_PROTOCOLS.includes(l.protocol)) {
          ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `protocol ${JSON.stringify(l.protocol)}: an ingress listener serves ${INGRESS_PROTOCOLS.join(' or ')}; this listener is ignored`, [...at, 'protocol']);
        } else if (l.protocol === 'HTTPS' && (l.tls?.certificateRefs ?? []).length === 0) {
          ctx.report('AMBIT_SCHEMA_REQUIRED', 'an HTTPS listener needs tls.certificateRefs (a Secret of type kubernetes.io/tls)', [...at, 'tls']);
        } else if (l.protocol === 'HTTP' && l.tls !== undefined) {
          ctx.report('AMBIT_SCHEMA_INVALID', 'tls is only for HTTPS listeners', [...at, 'tls']);
        }
        (l.tls?.certificateRefs ?? []).forEach((r, j) => {
          if ((r.group ?? '') !== '' || (r.kind ?? 'Secret') !== 'Secret') ctx.report('AMBIT_SCHEMA_INVALID', `certificateRefs: only core Secrets are supported, not ${r.group ?? ''}/${r.kind ?? ''}`, [...at, 'tls', 'certificateRefs', j]);
        });
      });
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
  summary: `a waypoint when gatewayClassName is ${WAYPOINT_GATEWAY_CLASS}, an ingress gateway when it is ${INGRESS_GATEWAY_CLASS}; its pods carry label gateway.networking.k8s.io/gateway-name`,
});
export type GatewaySpec = Infer<typeof gatewaySpec>;
export type GatewayResource = Resource<GatewaySpec, unknown>;
