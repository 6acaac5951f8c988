/**
 * GRPCRoute, TCPRoute and TLSRoute at the waypoint, over real sockets: the routes are compiled by
 * the model from Gateway API YAML (as the control plane would send them) and applied by the
 * waypoint's proxy behind the loopback harness. Backends are real: grpc-js servers for the
 * GRPCRoute, TCP servers for the TCPRoute, TLS servers (certificates from ambit's CA) for the
 * TLSRoute, whose ClientHello the waypoint reads without terminating TLS.
 */
import test from 'ava';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { compile } from '../../../src/model/compile/compile.js';
import type { L4Route, Route } from '../../../src/model/compile/types.js';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { createCsr } from '../../../src/identity/csr.js';
import { generateRsaKeyPair } from '../../../src/identity/keys.js';
import { WaypointConfig, type WorkloadInfo } from '../../../src/waypoint/config.js';
import { parseYaml } from '../../unit/model/helpers.js';
import { makeConfig, startProxy, VIP, type Backend, type ServiceSpec } from './harness.js';

const SERVICES = (ports: string) => `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
${['front', 'v1', 'v2'].map((n) => `apiVersion: v1\nkind: Service\nmetadata: {name: ${n}, namespace: shop}\nspec: {clusterIP: None, ports: ${ports}}\n---\n`).join('')}`;

/** The routes the model compiles for Service shop/front from `yaml`. */
function compiled(yaml: string): { routes: readonly Route[]; l4Routes: readonly L4Route[] } {
  const p = parseYaml(yaml);
  const errors = p.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(errors.map((d) => d.message).join('; '));
  const svc = compile(p.resources).service('shop/front');
  if (svc === undefined) throw new Error('no Service shop/front');
  return { routes: svc.routes, l4Routes: svc.l4Routes ?? [] };
}

/** A backend record for the harness around a server that is not node:http. */
function fake(port: number): Backend {
  return { port, hits: 0, server: undefined as never, close: async () => {} };
}

/** makeConfig, then the L4 routes of `front` added to its binding. */
function withL4(services: ServiceSpec[], l4Routes: readonly L4Route[]): WaypointConfig {
  const base = makeConfig(services);
  const bound = [...base.bound()].map((b) => (b.service.name === 'front' ? { ...b, l4Routes } : b));
  const workloads = bound.flatMap((b) => b.service.endpoints.map((e) => base.workload(e.workload)).filter((w): w is WorkloadInfo => w !== undefined));
  return new WaypointConfig({ bound, workloads });
}

const sayService = {
  Say: { path: '/echo.Echo/Say', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b },
} as unknown as grpc.ServiceDefinition;

interface GrpcBackend {
  port: number;
  calls: { via: string | undefined }[];
  server: grpc.Server;
}

async function grpcBackend(name: string): Promise<GrpcBackend> {
  const server = new grpc.Server();
  const calls: GrpcBackend['calls'] = [];
  server.addService(sayService, {
    Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      calls.push({ via: call.metadata.get('x-via')[0]?.toString() });
      if (call.request.toString() === 'fail') {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: `refused by ${name}` });
        return;
      }
      const trailer = new grpc.Metadata();
      trailer.set('x-backend', name);
      cb(null, Buffer.from(name), trailer);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { port, calls, server };
}

test('GRPCRoute at the waypoint: an 80/20 weighted split of real gRPC calls, a header match, header filters, trailers and statuses relayed', async (t) => {
  const { routes } = compiled(
    SERVICES('[{name: grpc, port: 9000}]') +
      `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: front, port: 9000}]
  rules:
    - matches: [{method: {service: echo.Echo, method: Say}, headers: [{name: x-canary, value: "yes"}]}]
      backendRefs: [{name: v2, port: 9000}]
    - matches: [{method: {service: echo.Echo}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {set: [{name: x-via, value: grpcroute}]}
        - type: ResponseHeaderModifier
          responseHeaderModifier: {add: [{name: x-route, value: split}]}
      backendRefs: [{name: v1, port: 9000, weight: 80}, {name: v2, port: 9000, weight: 20}]
`,
  );
  const [v1, v2] = await Promise.all([grpcBackend('v1'), grpcBackend('v2')]);
  const front = fake(1); // never reached: every call matches a rule
  const h = await startProxy(
    makeConfig([
      { name: 'front', port: 9000, portName: 'grpc', endpoints: [{ backend: front }], routes: [...routes] },
      { name: 'v1', port: 9000, portName: 'grpc', endpoints: [{ backend: fake(v1.port) }] },
      { name: 'v2', port: 9000, portName: 'grpc', endpoints: [{ backend: fake(v2.port) }] },
    ]),
    { destination: { ip: VIP, port: 9000 } },
  );
  const Client = grpc.makeGenericClientConstructor(sayService, 'Echo');
  const client = new Client(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (req: Buffer, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall>;
  t.teardown(async () => {
    client.close();
    await h.close();
    v1.server.forceShutdown();
    v2.server.forceShutdown();
  });
  const say = (body: string, md = new grpc.Metadata()) =>
    new Promise<{ err: grpc.ServiceError | null; res?: string; headers?: grpc.Metadata; trailers?: grpc.Metadata }>((resolve) => {
      let headers: grpc.Metadata | undefined;
      let trailers: grpc.Metadata | undefined;
      const c = client['Say']!.call(client, Buffer.from(body), md, (err, res) => setImmediate(() => resolve({ err, ...(res !== undefined ? { res: res.toString() } : {}), ...(headers ? { headers } : {}), ...(trailers ? { trailers } : {}) })));
      c.on('metadata', (m: grpc.Metadata) => { headers = m; });
      c.on('status', (s: grpc.StatusObject) => { trailers = s.metadata; });
    });

  const N = 400;
  const counts: Record<string, number> = {};
  for (let i = 0; i < N; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => say('hi')));
    for (const r of batch) {
      t.is(r.err, null);
      counts[r.res ?? 'error'] = (counts[r.res ?? 'error'] ?? 0) + 1;
      t.deepEqual(r.trailers?.get('x-backend'), [r.res], 'the backend trailer reaches the client');
      t.deepEqual(r.headers?.get('x-route'), ['split'], 'ResponseHeaderModifier');
    }
  }
  // 80% of 400 is 320; a binomial(400, 0.8) is within ±40 of it with probability > 0.9999.
  t.true((counts['v1'] ?? 0) > 280 && (counts['v1'] ?? 0) < 360, JSON.stringify(counts));
  t.is((counts['v1'] ?? 0) + (counts['v2'] ?? 0), N);
  t.true([...v1.calls, ...v2.calls].every((c) => c.via === 'grpcroute'), 'RequestHeaderModifier reached every backend');

  const canary = new grpc.Metadata();
  canary.set('x-canary', 'yes');
  const pinned = await Promise.all(Array.from({ length: 20 }, () => say('hi', canary)));
  t.deepEqual([...new Set(pinned.map((r) => r.res))], ['v2'], 'the header match sends every call to v2');

  const failed = await say('fail');
  t.is(failed.err?.code, grpc.status.FAILED_PRECONDITION, 'grpc-status from the backend trailers');
  t.regex(failed.err?.details ?? '', /refused by v[12]/);
  t.is(front.hits, 0);
});

interface TcpBackend {
  port: number;
  server: NetServer | TlsServer;
  close(): Promise<void>;
}

/** A TCP (or TLS, with `tls`) server that answers each connection with `name:` and what it read. */
async function lineBackend(name: string, tls?: { key: string; cert: string }): Promise<TcpBackend> {
  const sockets = new Set<Socket>();
  const onConn = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.once('data', (c: Buffer) => s.end(`${name}:${c.toString()}`));
  };
  const server = tls === undefined ? createNetServer(onConn) : createTlsServer({ key: tls.key, cert: tls.cert }, onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** Connects to the harness, sends `msg`, resolves what comes back before the close ('' if closed at once). */
function exchange(port: number, msg: string): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    let got = '';
    s.on('data', (c: Buffer) => { got += c.toString(); });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    s.write(msg);
  });
}

test('TCPRoute at the waypoint: connections to the parent port split 1:3 between two TCP backends; a refused cross-namespace backend is not used', async (t) => {
  const { l4Routes } = compiled(
    SERVICES('[{name: tcp-db, port: 5000}]') +
      `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: front, port: 5000}]
  rules: [{backendRefs: [{name: v1, port: 5000, weight: 1}, {name: v2, port: 5000, weight: 3}, {name: elsewhere, namespace: other, port: 5000, weight: 100}]}]
`,
  );
  t.is(l4Routes[0]?.destinations.length, 2, 'the backend in another namespace has no ReferenceGrant');
  const [a, b] = await Promise.all([lineBackend('v1'), lineBackend('v2')]);
  const front = await lineBackend('front');
  const h = await startProxy(
    withL4([
      { name: 'front', port: 5000, portName: 'tcp-db', endpoints: [{ backend: fake(front.port) }] },
      { name: 'v1', port: 5000, portName: 'tcp', endpoints: [{ backend: fake(a.port) }] },
      { name: 'v2', port: 5000, portName: 'tcp', endpoints: [{ backend: fake(b.port) }] },
    ], l4Routes),
    { destination: { ip: VIP, port: 5000 } },
  );
  t.teardown(async () => { await h.close(); await Promise.all([a.close(), b.close(), front.close()]); });
  const counts: Record<string, number> = {};
  const N = 200;
  for (let i = 0; i < N; i += 20) {
    const replies = await Promise.all(Array.from({ length: 20 }, (_, j) => exchange(h.port, `ping${i + j}`)));
    replies.forEach((r, j) => {
      const [who, what] = r.split(':');
      t.is(what, `ping${i + j}`, 'bytes spliced unchanged');
      counts[who ?? ''] = (counts[who ?? ''] ?? 0) + 1;
    });
  }
  // 75% of 200 is 150; binomial(200, 0.75) is within ±30 of it with probability > 0.9999.
  t.true((counts['v2'] ?? 0) > 120 && (counts['v2'] ?? 0) < 180, JSON.stringify(counts));
  t.is((counts['v1'] ?? 0) + (counts['v2'] ?? 0), N, 'the parent Service itself gets nothing');
});

test('TLSRoute at the waypoint: routed by the ClientHello SNI without terminating TLS (exact beats wildcard); no match, no SNI or not TLS is refused', async (t) => {
  const { l4Routes } = compiled(
    SERVICES('[{name: tls, port: 443}]') +
      `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: wild, namespace: shop, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: front, port: 443}]
  hostnames: ["*.example.com"]
  rules: [{backendRefs: [{name: v1, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: exact, namespace: shop, creationTimestamp: "2024-06-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: front, port: 443}]
  hostnames: [api.example.com]
  rules: [{backendRefs: [{name: v2, port: 443}]}]
`,
  );
  const ca = await CertificateAuthority.open();
  const keys = await generateRsaKeyPair();
  const id = 'spiffe://cluster.local/ns/shop/sa/backend';
  const signed = await ca.sign(createCsr(keys, id), id, 3600);
  const cred = { key: keys.privateKeyPem, cert: signed.chainPem.join('\n') };
  const [a, b] = await Promise.all([lineBackend('v1', cred), lineBackend('v2', cred)]);
  const h = await startProxy(
    withL4([
      { name: 'front', port: 443, portName: 'tls', endpoints: [{ backend: fake(1) }] },
      { name: 'v1', port: 443, portName: 'tls', endpoints: [{ backend: fake(a.port) }] },
      { name: 'v2', port: 443, portName: 'tls', endpoints: [{ backend: fake(b.port) }] },
    ], l4Routes),
    { destination: { ip: VIP, port: 443 } },
  );
  t.teardown(async () => { await h.close(); await Promise.all([a.close(), b.close()]); });
  /** A TLS session through the waypoint; the backend's answer, or the error. */
  const over = (servername: string | undefined) =>
    new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: h.port, rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) });
      let got = '';
      s.on('secureConnect', () => s.write('hello'));
      s.on('data', (c: Buffer) => { got += c.toString(); });
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(got));
    });
  t.is(await over('api.example.com'), 'v2:hello', 'exact hostname');
  t.is(await over('www.example.com'), 'v1:hello', 'wildcard');
  t.is(await over('a.b.example.com'), 'v1:hello', 'wildcard over two labels');
  t.regex(await over('example.com'), /^(error: .*)?$/, 'the bare suffix matches no route: refused');
  t.regex(await over(undefined), /^(error: .*)?$/, 'no SNI: refused');
  t.is(await exchange(h.port, 'GET / HTTP/1.1\r\n\r\n'), '', 'not TLS: refused');
  t.true(h.logs.some((l) => l['msg'] === 'refused TCP connection' && /no TCPRoute or TLSRoute of shop\/front matches server name example\.com/.test(String(l['reason']))), JSON.stringify(h.logs.slice(-3)));
});
