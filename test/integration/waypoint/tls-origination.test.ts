/**
 * TLS origination (tls-origination.ts) over real sockets on loopback: an HTTPS server with a
 * certificate generated in the test; the waypoint's HTTP/1.1 client sends plain HTTP into the
 * originating connector and the server sees TLS. Verification failures (unknown CA, wrong name,
 * missing client certificate) reject with AMBIT_ERR_WAYPOINT_TLS and a reason, as a connect
 * failure (503 UF at the proxy), never falling back to plaintext.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { selfSignedTlsCertificate } from '../../../src/identity/self-signed.js';
import { TcpConnector, UpstreamClients, AttemptError } from '../../../src/waypoint/upstream.js';
import { loadOrigination, TlsOriginatingConnector, type OriginatingTarget, type OriginationTls } from '../../../src/waypoint/tls-origination.js';
import { compile } from '../../../src/model/compile/compile.js';
import { VIP, hostOf, destinationPolicy, forward, makeConfig, route, send, startProxy, type Backend } from './harness.js';
import { parseYaml } from '../../unit/model/helpers.js';

interface Tls { server: Server; port: number; seen: { tls: boolean; servername: string | false; clientCert: string | false }[] }

async function httpsServer(cert: { certPem: string; keyPem: string }, clientCa?: string): Promise<Tls> {
  const seen: Tls['seen'] = [];
  const server = createServer({ cert: cert.certPem, key: cert.keyPem, ...(clientCa !== undefined ? { ca: clientCa, requestCert: true, rejectUnauthorized: false } : {}) }, (req, res) => {
    const s = req.socket as TLSSocket;
    seen.push({ tls: s.encrypted === true, servername: (s as TLSSocket & { servername?: string | false }).servername ?? false, clientCert: s.getPeerCertificate()?.fingerprint256 ?? false });
    res.end(`hello over TLS ${req.method} ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

const tls = (o: Partial<OriginationTls>): OriginationTls => ({ mode: 'SIMPLE', sni: 'api.external.test', subjectAltNames: [], caPem: undefined, certPem: undefined, keyPem: undefined, source: 'test', tag: 'test', ...o });
const target = (port: number, t: OriginationTls): OriginatingTarget => ({ key: `127.0.0.1:${port}`, ip: '127.0.0.1', port, identity: undefined, tls: t });

async function get(port: number, t: OriginationTls): Promise<string> {
  const clients = new UpstreamClients({ connector: new TlsOriginatingConnector(new TcpConnector(1000), 2000) });
  try {
    const res = await clients.send(target(port, t), { method: 'GET', path: '/x', authority: 'api.external.test', headers: {}, protocol: 'http1', writeBody: undefined, meta: {} });
    if (res.complete !== undefined) return `${res.status} ${res.complete.toString()}`;
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return `${res.status} ${Buffer.concat(chunks).toString()}`;
  } finally {
    await clients.close();
  }
}

test('SIMPLE: plain HTTP in, TLS out with SNI, the server verified against the given CA', async (t) => {
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const s = await httpsServer(cert);
  t.teardown(() => s.server.close());
  t.is(await get(s.port, tls({ caPem: cert.certPem })), '200 hello over TLS GET /x');
  t.deepEqual(s.seen, [{ tls: true, servername: 'api.external.test', clientCert: false }]);
  t.is(await get(s.port, tls({ caPem: cert.certPem, sni: 'other.test', subjectAltNames: ['api.external.test'] })), '200 hello over TLS GET /x', 'subjectAltNames verified instead of the SNI');
});

test('verification failures reject as connect failures with AMBIT_ERR_WAYPOINT_TLS and the reason; the server never sees a request', async (t) => {
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const other = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const s = await httpsServer(cert);
  t.teardown(() => s.server.close());
  const cases: [OriginationTls, RegExp][] = [
    [tls({}), /system roots/],
    [tls({ caPem: other.certPem }), /certificate|self.signed|verify/i],
    [tls({ caPem: cert.certPem, sni: 'wrong.test' }), /ERR_TLS_CERT_ALTNAME_INVALID/],
    [tls({ caPem: cert.certPem, subjectAltNames: ['spiffe://x/ns/a/sa/b'] }), /none of spiffe:\/\/x\/ns\/a\/sa\/b/],
  ];
  for (const [o, reason] of cases) {
    const err = await t.throwsAsync(get(s.port, o), { instanceOf: AttemptError });
    t.deepEqual(err?.outcome, { kind: 'connect-failure' });
    t.regex(err?.message ?? '', /TLS origination to 127\.0\.0\.1:\d+ \(.*\) failed/);
    t.regex(err?.message ?? '', reason);
  }
  t.deepEqual(s.seen, [], 'no request reached the server in plaintext or otherwise');
});

test('MUTUAL: the client certificate and key are presented (the server sees that certificate); SIMPLE presents none', async (t) => {
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const client = await selfSignedTlsCertificate({ hostnames: ['waypoint.demo'] });
  const s = await httpsServer(cert, client.certPem);
  t.teardown(() => s.server.close());
  t.is(await get(s.port, tls({ mode: 'MUTUAL', caPem: cert.certPem, certPem: client.certPem, keyPem: client.keyPem })), '200 hello over TLS GET /x');
  t.is(await get(s.port, tls({ caPem: cert.certPem })), '200 hello over TLS GET /x');
  t.deepEqual(s.seen, [
    { tls: true, servername: 'api.external.test', clientCert: new X509Certificate(client.certPem).fingerprint256 },
    { tls: true, servername: 'api.external.test', clientCert: false },
  ]);
});

test('a DestinationRule tls (SIMPLE, files) compiles to the policy the waypoint loads; an unreadable file fails closed with its path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  writeFileSync(join(dir, 'ca.pem'), cert.certPem);
  const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec: {hosts: [api.external.test], ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}], location: MESH_EXTERNAL, resolution: STATIC, endpoints: [{address: 127.0.0.1}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: egress}
spec: {host: api.external.test, trafficPolicy: {tls: {mode: SIMPLE, caCertificates: ${join(dir, 'ca.pem')}}}}
`;
  const p = parseYaml(yaml);
  t.deepEqual(p.diagnostics.filter((d) => d.severity === 'error'), []);
  const policy = compile(p.resources).service('egress/api.external.test')?.destinationPolicy?.trafficPolicy.tls;
  t.deepEqual(policy, { mode: 'SIMPLE', caCertificates: join(dir, 'ca.pem'), sni: 'api.external.test', subjectAltNames: [] });
  const s = await httpsServer(cert);
  t.teardown(() => s.server.close());
  t.is(await get(s.port, loadOrigination(policy!)), '200 hello over TLS GET /x');
  const missing = loadOrigination({ ...policy!, caCertificates: join(dir, 'nope.pem') });
  const err = await t.throwsAsync(get(s.port, missing), { instanceOf: AttemptError });
  t.regex(err?.message ?? '', /cannot read caCertificates .*nope\.pem: ENOENT/);
  t.deepEqual(err?.outcome, { kind: 'connect-failure' });
});

test('an inline CA (caCertificatePem, as a BackendTLSPolicy ConfigMap carries it) is used instead of a file and named by its source, never its content', async (t) => {
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const other = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const s = await httpsServer(cert);
  t.teardown(() => s.server.close());
  const base = { mode: 'SIMPLE' as const, sni: 'api.external.test', subjectAltNames: [], caSource: 'ConfigMap egress/api-ca key ca.crt' };
  const good = loadOrigination({ ...base, caCertificatePem: cert.certPem, caCertificates: '/nonexistent/ca.pem' }, () => t.fail('no file is read'));
  t.is(good.problem, undefined);
  t.is(good.source, 'ConfigMap egress/api-ca key ca.crt');
  t.is(await get(s.port, good), '200 hello over TLS GET /x');
  const bad = loadOrigination({ ...base, caCertificatePem: other.certPem });
  t.not(bad.tag, good.tag, 'different CAs never share a pool');
  const err = await t.throwsAsync(get(s.port, bad), { instanceOf: AttemptError });
  t.deepEqual(err?.outcome, { kind: 'connect-failure' });
  t.regex(err?.message ?? '', /the CA from ConfigMap egress\/api-ca key ca\.crt/);
  t.false((err?.message ?? '').includes('BEGIN CERTIFICATE'));
  t.is(s.seen.length, 1, 'only the verified request reached the server');
});

test('through the waypoint proxy: plain HTTP from the client, TLS to the endpoint; a server the CA does not vouch for is 503 UF with the reason, never plaintext', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  const other = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
  writeFileSync(join(dir, 'ca.pem'), cert.certPem);
  writeFileSync(join(dir, 'other.pem'), other.certPem);
  const s = await httpsServer(cert);
  t.teardown(() => s.server.close());
  const host = 'api.external.test';
  const config = (ca: string) => makeConfig([{
    name: 'api', namespace: 'egress', vip: VIP, endpoints: [{ backend: { port: s.port } as Backend }],
    routes: [route({ action: forward({ host: hostOf('api', 'egress') }) })],
    policy: { ...destinationPolicy(hostOf('api', 'egress'), { tls: { mode: 'SIMPLE', caCertificates: join(dir, ca), sni: host, subjectAltNames: [] } }) },
  } as Parameters<typeof makeConfig>[0][number]]);
  const good = await startProxy(config('ca.pem'), { originateTls: true });
  t.teardown(() => good.close());
  const ok = await send(good.port, { path: '/hello', headers: { host } });
  t.is(ok.status, 200, JSON.stringify([ok.body, good.entries]));
  t.is(ok.body, 'hello over TLS GET /hello');
  t.true(s.seen.every((x) => x.tls && x.servername === host));

  const bad = await startProxy(config('other.pem'), { originateTls: true });
  t.teardown(() => bad.close());
  const before = s.seen.length;
  const no = await send(bad.port, { path: '/hello', headers: { host } });
  t.is(no.status, 503);
  t.true(bad.entries.some((e) => e.responseFlags.includes('UF')), JSON.stringify(bad.entries.map((e) => e.responseFlags)));
  t.true(bad.logs.some((l) => /TLS origination .* failed/.test(JSON.stringify(l))), 'the reason is logged');
  t.is(s.seen.length, before, 'the server saw no request');
});
