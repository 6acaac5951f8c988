/**
 * Gateway API routes besides HTTPRoute, used the GAMMA way (parentRef a Service: applied at the
 * waypoint that Service is bound to):
 * - GRPCRoute (v1): gRPC method and header matches, header filters, mirrors, weighted backends.
 *   The model compiles it to the same routes an HTTPRoute gives (a method match is a path match
 *   on `/service/method`, as Istio compiles it), so the waypoint needs nothing gRPC-specific.
 * - TCPRoute and TLSRoute (v1alpha2; TLSRoute also v1alpha3): L4 routes, by the parentRef's port
 *   (TCPRoute) or by the SNI of the ClientHello, which the waypoint reads without terminating TLS
 *   (TLSRoute, passthrough).
 *
 * The field rules are the Gateway API CRDs' (maxItems, the method-match rules of the CEL
 * validations); a field ambit does not apply is reported, never ignored.
 */
import { arr, anyValue, enumOf, ignored, int, obj, opt, req, str, unimplemented, type Infer } from '../schema/dsl.js';
import { portNumber } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';
import { gwHostname, headerMatch, headerModifier, objectName, parentRef, requestMirror } from './gateway-api.js';

/** Gateway API's GRPCMethodMatch patterns (Exact matches only; a regex may be anything RE2 takes). */
const GRPC_SERVICE = /^(?:\.?[a-zA-Z_][a-zA-Z_0-9]*(?:\.[a-zA-Z_][a-zA-Z_0-9]*)*)$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

const grpcMethodMatch = obj(
  {
    type: opt(enumOf(['Exact', 'RegularExpression'])),
    service: opt(str({ maxLength: 1024 })),
    method: opt(str({ maxLength: 1024 })),
  },
  {
    check(m, path, ctx) {
      if (m.service === undefined && m.method === undefined) {
        ctx.report('AMBIT_SCHEMA_REQUIRED', 'a method match needs service, method or both', path);
        return;
      }
      if ((m.type ?? 'Exact') !== 'Exact') return;
      if (m.service !== undefined && !GRPC_SERVICE.test(m.service)) {
        ctx.report('AMBIT_SCHEMA_FORMAT', `service ${JSON.stringify(m.service)} is not a gRPC service name (package.Service) for an Exact match`, [...path, 'service']);
      }
      if (m.method !== undefined && !GRPC_METHOD.test(m.method)) {
        ctx.report('AMBIT_SCHEMA_FORMAT', `method ${JSON.stringify(m.method)} is not a gRPC method name for an Exact match`, [...path, 'method']);
      }
    },
  },
);

const grpcRouteMatch = obj({
  method: opt(grpcMethodMatch),
  headers: opt(arr(headerMatch, { maxItems: 16 })),
});

const grpcFilter = obj({
  type: req(enumOf(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'], {
    unimplemented: ['ExtensionRef'],
    note: 'the filter is skipped',
  })),
  requestHeaderModifier: opt(headerModifier),
  responseHeaderModifier: opt(headerModifier),
  requestMirror: opt(requestMirror),
  extensionRef: opt(anyValue()),
});

const weightedBackendRef = {
  group: opt(str()),
  kind: opt(str()),
  name: req(objectName),
  namespace: opt(str()),
  port: opt(portNumber),
  weight: opt(int({ min: 0, max: 1_000_000 })),
};

const grpcBackendRef = obj({ ...weightedBackendRef, filters: unimplemented(arr(grpcFilter), 'put the filters on the rule') });

const grpcRouteRule = obj({
  name: opt(str()),
  matches: opt(arr(grpcRouteMatch, { maxItems: 64 })),
  filters: opt(arr(grpcFilter, { maxItems: 16 })),
  backendRefs: opt(arr(grpcBackendRef, { maxItems: 16 })),
  sessionPersistence: unimplemented(anyValue(), 'no session affinity'),
});

const grpcRouteSpec = obj({
  parentRefs: opt(arr(parentRef, { maxItems: 32 })),
  hostnames: opt(arr(gwHostname, { maxItems: 16 })),
  rules: opt(arr(grpcRouteRule, { maxItems: 16 })),
});

const routeStatus = obj({ parents: ignored() });

export const grpcRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'GRPCRoute',
  versions: ['v1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: grpcRouteSpec,
  specRequired: true,
  status: routeStatus,
  summary: 'gRPC routing for a Service (GAMMA: parentRefs kind Service), enforced at the waypoint as HTTP/2 routes on /service/method',
});
export type GrpcRouteSpec = Infer<typeof grpcRouteSpec>;
export type GrpcRouteRuleSpec = Infer<typeof grpcRouteRule>;
export type GrpcRouteResource = Resource<GrpcRouteSpec, unknown>;

// ------------------------------------------------------------------------ TCPRoute, TLSRoute

const l4BackendRef = obj(weightedBackendRef);

const l4Rule = obj({
  name: opt(str()),
  backendRefs: req(arr(l4BackendRef, { minItems: 1, maxItems: 16 })),
});

const tcpRouteSpec = obj({
  parentRefs: opt(arr(parentRef, { maxItems: 32 })),
  rules: req(arr(l4Rule, { minItems: 1, maxItems: 16 })),
  useDefaultGateways: unimplemented(anyValue(), 'routes attach through parentRefs only'),
});

export const tcpRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'TCPRoute',
  versions: ['v1alpha2'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: tcpRouteSpec,
  specRequired: true,
  status: routeStatus,
  summary: 'L4 routing of a Service port (GAMMA: parentRefs kind Service) to weighted backends, at the waypoint',
});

const tlsRouteSpec = obj({
  parentRefs: opt(arr(parentRef, { maxItems: 32 })),
  hostnames: opt(arr(gwHostname, { maxItems: 16 })),
  rules: req(arr(l4Rule, { minItems: 1, maxItems: 16 })),
  useDefaultGateways: unimplemented(anyValue(), 'routes attach through parentRefs only'),
});

export const tlsRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'TLSRoute',
  versions: ['v1alpha2', 'v1alpha3'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: tlsRouteSpec,
  specRequired: true,
  status: routeStatus,
  summary: 'TLS passthrough routing by SNI for a Service (GAMMA: parentRefs kind Service), at the waypoint without terminating TLS',
});

export type TcpRouteSpec = Infer<typeof tcpRouteSpec>;
export type TlsRouteSpec = Infer<typeof tlsRouteSpec>;
export type L4RuleSpec = Infer<typeof l4Rule>;
export type TcpRouteResource = Resource<TcpRouteSpec, unknown>;
export type TlsRouteResource = Resource<TlsRouteSpec, unknown>;

// --------------------------------------------------------------------------- ReferenceGrant

const grantFrom = obj({ group: req(str({ maxLength: 253 })), kind: req(str({ minLength: 1, maxLength: 63 })), namespace: req(str({ minLength: 1, maxLength: 63 })) });
const grantTo = obj({ group: req(str({ maxLength: 253 })), kind: req(str({ minLength: 1, maxLength: 63 })), name: opt(str({ minLength: 1, maxLength: 253 })) });

const referenceGrantSpec = obj({
  from: req(arr(grantFrom, { minItems: 1, maxItems: 16 })),
  to: req(arr(grantTo, { minItems: 1, maxItems: 16 })),
});

export const referenceGrantKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'ReferenceGrant',
  versions: ['v1beta1', 'v1alpha2'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: referenceGrantSpec,
  specRequired: true,
  summary: 'lets routes in the namespaces it names send to Services of its own namespace',
});
export type ReferenceGrantSpec = Infer<typeof referenceGrantSpec>;
export type ReferenceGrantResource = Resource<ReferenceGrantSpec, unknown>;
