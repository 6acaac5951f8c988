/**
 * Istio's ingress Gateway (networking.istio.io v1, v1beta1, v1alpha3): servers (port, hosts,
 * tls SIMPLE with credentialName) that VirtualServices bind to with `gateways: [ns/name]`. ambit
 * serves it with `ambit waypoint --ingress --name <namespace>/<name>`, as it serves a Gateway API
 * Gateway of class `ambit` (src/model/compile/ingress.ts); `selector` names the gateway's pods.
 */
import { arr, bool, enumOf, int, obj, opt, record, req, str, unimplemented, type Infer } from '../schema/dsl.js';
import { portNumber } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

const PROTOCOLS = ['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TCP', 'TLS', 'MONGO', 'MYSQL', 'REDIS'] as const;

const serverTls = obj({
  mode: opt(enumOf(['SIMPLE', 'PASSTHROUGH', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL'], { unimplemented: ['PASSTHROUGH', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL'], note: 'the ingress terminates TLS (SIMPLE) only' }), 'absent: SIMPLE when credentialName is set'),
  credentialName: opt(str({ minLength: 1 }), "a Secret of type kubernetes.io/tls in the Gateway's namespace"),
  httpsRedirect: unimplemented(bool(), 'no redirect to HTTPS; answer it with a VirtualService redirect'),
  serverCertificate: unimplemented(str(), 'certificates come from credentialName'),
  privateKey: unimplemented(str(), 'certificates come from credentialName'),
  caCertificates: unimplemented(str(), 'client certificates are not requested'),
  credentialNames: unimplemented(arr(str()), 'one credentialName per server'),
  subjectAltNames: unimplemented(arr(str()), 'client certificates are not requested'),
  minProtocolVersion: unimplemented(str(), 'Node\'s TLS defaults (TLS 1.2 and 1.3)'),
  maxProtocolVersion: unimplemented(str(), 'Node\'s TLS defaults (TLS 1.2 and 1.3)'),
  cipherSuites: unimplemented(arr(str()), 'Node\'s TLS defaults'),
});

const server = obj({
  port: req(obj({ number: req(portNumber), protocol: req(enumOf(PROTOCOLS)), name: opt(str()), targetPort: unimplemented(int(), 'the ingress listens on port.number') })),
  hosts: req(arr(str({ minLength: 1 }), { minItems: 1 }), '"host", "ns/host", "*/host" or "./host": the VirtualServices (by namespace) and hosts this server takes'),
  tls: opt(serverTls),
  name: opt(str()),
  bind: unimplemented(str(), 'the ingress listens on its --host'),
  defaultEndpoint: unimplemented(str(), 'no default endpoint'),
});

const istioGatewaySpec = obj(
  {
    selector: opt(record(str()), "labels of the gateway's pods (any namespace); the ingress runs as their service account"),
    servers: opt(arr(server)),
  },
  {
    check(spec, path, ctx) {
      (spec.servers ?? []).forEach((s, i) => {
        const at = [...path, 'servers', i];
        const p = s.port.protocol;
        if (p !== 'HTTP' && p !== 'HTTPS' && p !== 'HTTP2' && p !== 'GRPC') {
          ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `port.protocol ${p}: the ingress serves HTTP, HTTP2, GRPC and HTTPS servers; this server is ignored`, [...at, 'port', 'protocol']);
        } else if (p === 'HTTPS' && s.tls?.credentialName === undefined) {
          ctx.report('AMBIT_SCHEMA_REQUIRED', 'an HTTPS server needs tls.credentialName (a Secret of type kubernetes.io/tls)', [...at, 'tls']);
        }
      });
    },
  },
);

export const istioGatewayKind = defineKind({
  group: 'networking.istio.io',
  kind: 'Gateway',
  versions: ['v1', 'v1beta1', 'v1alpha3'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: istioGatewaySpec,
  specRequired: true,
  summary: 'an ingress gateway: HTTP and HTTPS servers (tls SIMPLE, credentialName) for the VirtualServices naming it in gateways; served by ambit waypoint --ingress',
});
export type IstioGatewaySpec = Infer<typeof istioGatewaySpec>;
export type IstioGatewayResource = Resource<IstioGatewaySpec, unknown>;
