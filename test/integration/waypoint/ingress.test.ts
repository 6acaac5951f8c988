/**
 * The ingress gateway on the real path: YAML in a folder (a Gateway of class `ambit` with an
 * HTTPS listener whose certificate is a kubernetes.io/tls Secret and an HTTP listener, an
 * HTTPRoute bound to it, an AuthorizationPolicy targeting it), the control plane over gRPC/TLS,
 * the ingress's discovery view, and `Ingress` serving real TLS on loopback. A client's HTTPS
 * request is routed by SNI/Host and path and forwarded over HBONE (mTLS, the gateway's SPIFFE
 * identity) to the endpoint's HBONE server, which splices to the backend. A node agent's view
 * holds no INGRESS resource and no byte of the private key.
 * The control plane's /config_dump never shows the key; a rotated Secret reaches the ingress as
 * a delta and new connections get the new certificate on the same open port.
 */
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { FolderSource } from '../../../src/control/sources/folder-source.js';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager } from '../../../src/identity/manager.js';
import { selfSignedTlsCertificate } from '../../../src/identity/self-signed.js';
import { HboneServer } from '../../../src/tunnel/server.js';
import { Ingress } from '../../../src/waypoint/ingress.js';
import { ingressFromView } from '../../../src/waypoint/ingress-config.js';
import { TOKEN, startControlPlane, tempDir, waitFor } from '../control/fixtures.js';
import { namespaceYaml, nodeYaml, serviceAccountYaml } from '../control/mesh-yaml.js';
import { backend, echo } from './harness.js';

const GATEWAY_ID = 'spiffe://cluster.local/ns/edge/sa/public-gw';
const ECHO_ID = 'spiffe://cluster.local/ns/demo/sa/echo';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function meshYaml(certPem: string, keyPem: string): string {
  return [
    namespaceYaml('demo'),
    namespaceYaml('edge', false),
    nodeYaml('node-a', '198.18.0.1'),
    serviceAccountYaml('echo', 'demo'),
    serviceAccountYaml('public-gw', 'edge'),
    `apiVersion: v1
kind: Pod
metadata: {name: echo-1, namespace: demo, labels: {app: echo}}
spec: {nodeName: node-a, serviceAccountName: echo, containers: [{name: main, ports: [{containerPort: 8080, name: http}]}]}
status: {phase: Running, podIP: 127.0.0.1}
`,
    `apiVersion: v1
kind: Pod
metadata: {name: public-gw-0, namespace: edge, labels: {gateway.networking.k8s.io/gateway-name: public-gw}}
spec: {nodeName: node-a, serviceAccountName: public-gw, containers: [{name: main}]}
status: {phase: Running, podIP: 198.19.1.50}
`,
    `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec: {clusterIP: 198.18.128.30, selector: {app: echo}, ports: [{name: http, port: 80, targetPort: 8080}]}
`,
    `apiVersion: v1
kind: Secret
metadata: {name: echo-cert, namespace: edge}
type: kubernetes.io/tls
data:
  tls.crt: ${b64(certPem)}
  tls.key: ${b64(keyPem)}
`,
    `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public-gw, namespace: edge}
spec:
  gatewayClassName: ambit
  listeners:
    - {name: https, port: 8443, protocol: HTTPS, hostname: echo.example.com, tls: {mode: Terminate, certificateRefs: [{name: echo-cert}]}, allowedRoutes: {namespaces: {from: All}}}
    - {name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
`,
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: demo}
spec:
  parentRefs: [{name: public-gw, namespace: edge}]
  hostnames: [echo.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: echo, port: 80}]
`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: edge}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public-gw}]
  action: DENY
  rules: [{from: [{source: {ipBlocks: [127.0.0.1]}}], to: [{operation: {paths: [/admin*]}}]}]
`,
  ].join('---\n');
}

interface Reply { status: number; body: string }

function collect(res: import('node:http').IncomingMessage, resolve: (r: Reply) => void): void {
  let body = '';
  res.on('data', (c: Buffer) => { body += c.toString(); });
  res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
}

test('HTTPS from outside: TLS terminated with the Secret, routed by host, HBONE to the endpoint with the gateway identity; agents never see the key', async (t) => {
  const { certPem, keyPem } = await selfSignedTlsCertificate({ hostnames: ['echo.example.com'] });
  const tmp = tempDir('ingress');
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg, { recursive: true });
  writeFileSync(join(cfg, 'mesh.yaml'), meshYaml(certPem, keyPem));
  const cp = await startControlPlane(new FolderSource({ dir: cfg, compiler: new ModelCompiler(), debounceMs: 30, rescanMs: 0 }), tmp.dir);
  const opts = { address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, token: TOKEN, backoff: { initialMs: 50, maxMs: 300 } };
  const gwView = new DiscoveryClient({ ...opts, kind: 'waypoint', name: 'edge/public-gw' });
  const agentView = new DiscoveryClient({ ...opts, kind: 'agent', name: 'node-a' });

  // The endpoint: an HBONE server as echo's agent runs it, splicing to the backend.
  const ca = await CertificateAuthority.open();
  const ids = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  const b = await backend(echo('echo'));
  const peers: string[] = [];
  const forwarded: (string | undefined)[] = [];
  const endpoint = await HboneServer.create({
    identity: ECHO_ID,
    credentials: ids,
    authorize: (ctx) => { peers.push(ctx.peerIdentity); forwarded.push(ctx.forwardedFor?.host); return { allow: true }; },
    connectUpstream: (ctx) => new Promise((resolve, reject) => {
      t.is(ctx.authority.port, 8080, 'the CONNECT names the pod port');
      const s = connect(b.port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    }),
  });
  const ep = await endpoint.listen({ port: 0, host: '127.0.0.1' });
  let ingress: Ingress | undefined;
  t.teardown(async () => {
    await ingress?.close();
    await gwView.close();
    await agentView.close();
    await cp.stop();
    await endpoint.close(100);
    await b.close();
    ids.close();
    tmp.cleanup();
  });
  const full = (c: DiscoveryClient) => waitFor((cb) => { c.on('update', cb); return () => { c.off('update', cb); }; }, (u: { full: boolean }) => u.full, 10_000, 'full view');
  const views = Promise.all([full(gwView), full(agentView)]);
  await gwView.start();
  await agentView.start();
  await views;

  // Key material: only in the ingress's view.
  const dump = (c: DiscoveryClient) => JSON.stringify(['WORKLOAD', 'SERVICE', 'WAYPOINT_BINDING', 'AUTHORIZATION_POLICY', 'ROUTE', 'INGRESS'].map((k) => [...c.view.all(k as never)]));
  const keyBody = keyPem.split('\n')[1] as string;
  t.is(agentView.view.count('INGRESS'), 0, 'agents receive no INGRESS resource');
  t.false(dump(agentView).includes(keyBody), 'no agent view holds the private key');
  t.true(dump(gwView).includes(keyBody), 'the ingress view holds it');
  t.like(agentView.view.get('WAYPOINT_BINDING', 'edge/public-gw'), { serviceAccount: 'public-gw', services: [], ingress: true });

  const config = ingressFromView(gwView.view, { gateway: 'edge/public-gw', listenHost: '127.0.0.1' });
  t.deepEqual(config.ports.map((p) => [p.port, p.protocol, p.certificates.map((c) => c.secret)]), [[8080, 'HTTP', []], [8443, 'HTTPS', ['edge/echo-cert']]]);
  ingress = await Ingress.start({ name: 'edge/public-gw', identity: GATEWAY_ID, credentials: ids, host: '127.0.0.1', localPort: () => 0, endpointHbonePort: ep.port, drainMs: 100 }, config);
  const https = (ingress.address(8443) as AddressInfo).port;
  const http = (ingress.address(8080) as AddressInfo).port;

  const viaHttps = (path: string, servername = 'echo.example.com') => new Promise<Reply>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: https, path, servername, ca: certPem, headers: { host: servername }, agent: false }, (res) => collect(res, resolve));
    req.on('error', reject);
    req.end();
  });
  const ok = await viaHttps('/hello?x=1');
  t.is(ok.status, 200, ok.body);
  t.like(JSON.parse(ok.body) as object, { backend: 'echo', url: '/hello?x=1' });
  t.deepEqual([...new Set(peers)], [GATEWAY_ID], 'the endpoint saw the gateway identity on HBONE');
  t.deepEqual([...new Set(forwarded)], ['127.0.0.1'], 'and the outside client address');

  // Policy on the gateway with the client address: DENY /admin* from 127.0.0.1.
  t.is((await viaHttps('/admin/users')).status, 403);

  // Plain HTTP: the route's hostname decides; another host has no route.
  const viaHttp = (host: string) => new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: http, path: '/p', headers: { host }, agent: false }, (res) => collect(res, resolve));
    req.on('error', reject);
    req.end();
  });
  t.is((await viaHttp('echo.example.com:8080')).status, 200);
  t.is((await viaHttp('other.example.com')).status, 404);
  t.is(b.hits, 2, 'denied and unrouted requests reached no endpoint');

  // The control plane's resource dump names the Secret but never shows the key.
  const dumped = await (await fetch(`http://127.0.0.1:${cp.ports.metrics}/config_dump?resources=1`)).text();
  t.true(dumped.includes('edge/echo-cert'));
  t.false(dumped.includes(keyBody), 'no key in /config_dump');

  // Rotate the certificate: a new Secret reaches the ingress as an INGRESS delta, and new TLS
  // connections get the new certificate without the port closing.
  const next = await selfSignedTlsCertificate({ hostnames: ['echo.example.com'] });
  const updated = waitFor((cb) => { gwView.on('update', cb); return () => { gwView.off('update', cb); }; }, (u: { upserted: { kind: string }[] }) => u.upserted.some((x) => x.kind === 'INGRESS'), 10_000, 'INGRESS delta');
  writeFileSync(join(cfg, 'mesh.yaml'), meshYaml(next.certPem, next.keyPem));
  await updated;
  t.is(agentView.view.count('INGRESS'), 0);
  await ingress.setConfig(ingressFromView(gwView.view, { gateway: 'edge/public-gw', listenHost: '127.0.0.1' }));
  t.is((ingress.address(8443) as AddressInfo).port, https, 'the port stayed open');
  const served = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: https, servername: 'echo.example.com', ca: next.certPem }, () => {
      const der = s.getPeerCertificate().raw;
      s.end();
      resolve(new X509Certificate(der).fingerprint256);
    });
    s.on('error', reject);
  });
  t.is(served, new X509Certificate(next.certPem).fingerprint256, 'the new certificate serves new connections');
  t.is((await viaHttps('/after-rotation').catch((e: Error) => ({ status: 0, body: e.message }))).status, 0, 'the old certificate is no longer trusted by a client pinned to it');
});

test('Istio Gateway: an HTTPS server with credentialName and a VirtualService bound by gateways, over real TLS and HBONE', async (t) => {
  const { certPem, keyPem } = await selfSignedTlsCertificate({ hostnames: ['shop.example.com'] });
  const tmp = tempDir('ingress-istio');
  const cfg = join(tmp.dir, 'mesh');
  mkdirSync(cfg, { recursive: true });
  const base = meshYaml(certPem, keyPem).split('---\n').filter((d) => !/kind: (Gateway|HTTPRoute|AuthorizationPolicy)\n/.test(d));
  writeFileSync(join(cfg, 'mesh.yaml'), [...base, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public-gw, namespace: edge}
spec:
  selector: {gateway.networking.k8s.io/gateway-name: public-gw}
  servers:
    - port: {number: 8443, name: https, protocol: HTTPS}
      hosts: ["demo/shop.example.com"]
      tls: {mode: SIMPLE, credentialName: echo-cert}
`, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: demo}
spec:
  hosts: [shop.example.com]
  gateways: [edge/public-gw]
  http:
    - match: [{uri: {prefix: /shop}}]
      rewrite: {uri: /}
      route: [{destination: {host: echo.demo.svc.cluster.local, port: {number: 80}}}]
`, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gw-private, namespace: edge}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: public-gw}}
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: [127.0.0.0/8]}}], to: [{operation: {paths: [/shop/private*]}}]}]
`].join('---\n'));
  const cp = await startControlPlane(new FolderSource({ dir: cfg, compiler: new ModelCompiler(), debounceMs: 30, rescanMs: 0 }), tmp.dir);
  const gwView = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, token: TOKEN, backoff: { initialMs: 50, maxMs: 300 }, kind: 'waypoint', name: 'edge/public-gw' });
  const ca = await CertificateAuthority.open();
  const ids = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  const b = await backend(echo('echo'));
  const peers: string[] = [];
  const endpoint = await HboneServer.create({
    identity: ECHO_ID, credentials: ids,
    authorize: (ctx) => { peers.push(ctx.peerIdentity); return { allow: true }; },
    connectUpstream: () => new Promise((resolve, reject) => { const s = connect(b.port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }),
  });
  const ep = await endpoint.listen({ port: 0, host: '127.0.0.1' });
  let ingress: Ingress | undefined;
  t.teardown(async () => {
    await ingress?.close();
    await gwView.close();
    await cp.stop();
    await endpoint.close(100);
    await b.close();
    ids.close();
    tmp.cleanup();
  });
  const full = waitFor((cb) => { gwView.on('update', cb); return () => { gwView.off('update', cb); }; }, (u: { full: boolean }) => u.full, 10_000, 'full view');
  await gwView.start();
  await full;
  const config = ingressFromView(gwView.view, { gateway: 'edge/public-gw', listenHost: '127.0.0.1' });
  t.deepEqual(config.ports.map((p) => [p.port, p.protocol, p.certificates.map((c) => [c.hostname, c.secret])]), [[8443, 'HTTPS', [['shop.example.com', 'edge/echo-cert']]]]);
  t.like(gwView.view.get('WAYPOINT_BINDING', 'edge/public-gw'), { serviceAccount: 'public-gw', ingress: true }, 'the selected pod\'s service account');
  ingress = await Ingress.start({ name: 'edge/public-gw', identity: GATEWAY_ID, credentials: ids, host: '127.0.0.1', localPort: () => 0, endpointHbonePort: ep.port, drainMs: 100 }, config);
  const port = (ingress.address(8443) as AddressInfo).port;
  const get = (path: string) => new Promise<Reply>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: 'shop.example.com', ca: certPem, headers: { host: 'shop.example.com' }, agent: false }, (res) => collect(res, resolve));
    req.on('error', reject);
    req.end();
  });
  const ok = await get('/shop/cart');
  t.is(ok.status, 200, ok.body);
  t.like(JSON.parse(ok.body) as object, { backend: 'echo', url: '/cart' }, 'the VirtualService rewrite applied');
  t.deepEqual([...new Set(peers)], [GATEWAY_ID]);
  t.is((await get('/other')).status, 404, 'no route of the VirtualService matches');
  t.is((await get('/shop/private/x')).status, 403, 'an AuthorizationPolicy selecting the gateway\'s pod applies, with the client address');
});
