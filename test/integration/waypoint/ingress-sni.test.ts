/**
 * The ingress's TLS listeners on their own (no control plane): one HTTPS port with a
 * certificate per hostname picks by SNI (exact, then wildcard, then the default), a client
 * without SNI gets the default, and a port the configuration drops is closed while the others
 * keep serving.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import type { Route } from '../../../src/model/compile/types.js';
import { selfSignedTlsCertificate } from '../../../src/identity/self-signed.js';
import { WaypointConfig, type ServiceBinding } from '../../../src/waypoint/config.js';
import { Ingress } from '../../../src/waypoint/ingress.js';
import type { IngressConfig } from '../../../src/waypoint/ingress-config.js';
import { TcpConnector } from '../../../src/waypoint/upstream.js';

const answer: Route = {
  source: { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'edge', name: 'r' }, path: 'spec.rules[0]', name: undefined, matches: [],
  action: { type: 'direct-response', status: 200, body: 'ok' }, timeoutMs: undefined, retries: undefined, fault: undefined, mirrors: [], rewrite: undefined, requestHeaders: undefined, responseHeaders: undefined,
};

function binding(port: number): ServiceBinding {
  return {
    service: { key: `edge/gw:${port}`, name: 'gw', namespace: 'edge', hostname: `gw.edge.ingress:${port}`, vips: ['127.0.0.1'], ports: [{ name: `https-${port}`, port, targetPort: port, protocol: 'TCP', appProtocol: 'http' }], endpoints: [], labels: {} },
    routes: [answer], destinationPolicy: undefined, authorization: [], requestAuthentication: [], rateLimits: [],
  };
}

/** The fingerprint of the certificate a TLS client is served for `servername` (none: no SNI). */
function served(port: number, servername: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) }, () => {
      const der = s.getPeerCertificate().raw;
      s.end();
      resolve(new X509Certificate(der).fingerprint256);
    });
    s.on('error', reject);
  });
}

test('one HTTPS port, a certificate per hostname: SNI picks exact, then wildcard, then the default', async (t) => {
  const [shop, wild, dflt] = await Promise.all([
    selfSignedTlsCertificate({ hostnames: ['shop.example.com'] }),
    selfSignedTlsCertificate({ hostnames: ['*.example.com'] }),
    selfSignedTlsCertificate({ hostnames: ['default.test'] }),
  ]);
  const fp = (pem: string) => new X509Certificate(pem).fingerprint256;
  const cert = (hostname: string | null, c: { certPem: string; keyPem: string }, secret: string) => ({ hostname, secret, ...c });
  const config = (ports: IngressConfig['ports']): IngressConfig => ({ waypoint: new WaypointConfig({ bound: ports.map((p) => binding(p.port)), workloads: [] }), ports });
  const https = { port: 8443, protocol: 'HTTPS' as const, certificates: [cert('shop.example.com', shop, 'edge/shop'), cert('*.example.com', wild, 'edge/wild'), cert(null, dflt, 'edge/default')] };
  const http = { port: 8080, protocol: 'HTTP' as const, certificates: [] };
  const ingress = await Ingress.start({ name: 'edge/gw', identity: 'spiffe://cluster.local/ns/edge/sa/gw', credentials: { credentials: () => Promise.reject(new Error('no HBONE here')) } as never, host: '127.0.0.1', localPort: () => 0, connector: new TcpConnector(), drainMs: 50 }, config([https, http]));
  t.teardown(() => ingress.close());
  const port = (ingress.address(8443) as AddressInfo).port;
  t.is(await served(port, 'shop.example.com'), fp(shop.certPem));
  t.is(await served(port, 'cart.example.com'), fp(wild.certPem));
  t.is(await served(port, 'elsewhere.test'), fp(dflt.certPem));
  t.is(await served(port, undefined), fp(dflt.certPem), 'no SNI: the default certificate');
  t.deepEqual(ingress.ports(), [8080, 8443]);

  // Dropping the HTTP port closes it; the HTTPS port stays open with its certificates.
  await ingress.setConfig(config([https]));
  t.deepEqual(ingress.ports(), [8443]);
  t.is((ingress.address(8443) as AddressInfo).port, port);
  t.is(await served(port, 'shop.example.com'), fp(shop.certPem));
});
