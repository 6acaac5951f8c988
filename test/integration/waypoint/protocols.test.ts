import test from 'ava';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { backend, echo, makeConfig, startProxy, send, route, forward, hostOf } from './harness.js';
import { eventually } from '../../helpers/eventually.js';

const echoService = {
  Echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b },
} as unknown as grpc.ServiceDefinition;

test('HTTP/1.1 keep-alive and chunked bodies both ways', async (t) => {
  const b = await backend((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'x-te': String(req.headers['transfer-encoding']) });
      for (let i = 0; i < 5; i++) res.write(`part${i};`);
      res.end(Buffer.concat(chunks));
    });
  });
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  const sock = netConnect(h.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  const text = await new Promise<string>((resolve) => {
    let got = '';
    sock.on('data', (c: Buffer) => {
      got += c.toString();
      if ((got.match(/0\r\n\r\n/g) ?? []).length === 2) resolve(got);
    });
    const req = 'POST /a HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    sock.write(req + req.replace('/a', '/b'));
  });
  t.is((text.match(/HTTP\/1\.1 200/g) ?? []).length, 2, 'two responses on one connection');
  t.regex(text, /transfer-encoding: chunked/i);
  t.regex(text, /x-te: chunked/);
  t.regex(text.replace(/\r\n[0-9a-f]+\r\n/g, ''), /part0;part1;part2;part3;part4;abc/);
});

test('HTTP/2 and gRPC: trailers relayed, statuses mapped for local replies', async (t) => {
  const server = new grpc.Server();
  server.addService(echoService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (call.request.toString() === 'fail') cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      else {
        const md = new grpc.Metadata();
        md.set('x-trailer', 'yes');
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), md);
      }
    },
  });
  const gport = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  const fakeBackend = { port: gport, hits: 0, server: undefined as never, close: async () => {} };
  const h = await startProxy(makeConfig([{ name: 'reviews', portName: 'grpc', endpoints: [{ backend: fakeBackend }], authz: [{ name: 'deny-secret', spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/test.Echo/Secret'] } }] }] } }] }]));
  const Client = grpc.makeGenericClientConstructor({ ...echoService, Secret: { ...(echoService as Record<string, object>)['Echo'], path: '/test.Echo/Secret' } } as unknown as grpc.ServiceDefinition, 'Echo');
  const client = new Client(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (req: Buffer, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall>;
  t.teardown(async () => { (client as unknown as grpc.Client).close(); await h.close(); server.forceShutdown(); });
  const call = (method: string, body: string) => new Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }>((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const c = (client[method] as (req: Buffer, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall).call(client, Buffer.from(body), new grpc.Metadata(), (err, res) => setImmediate(() => resolve({ err, ...(res !== undefined ? { res } : {}), ...(trailers !== undefined ? { trailers } : {}) })));
    c.on('status', (s: grpc.StatusObject) => { trailers = s.metadata; });
  });
  const ok = await call('Echo', 'hi');
  t.is(ok.err, null);
  t.is(ok.res?.toString(), 'echo:hi');
  t.deepEqual(ok.trailers?.get('x-trailer'), ['yes']);
  const nf = await call('Echo', 'fail');
  t.is(nf.err?.code, grpc.status.NOT_FOUND);
  t.is(nf.err?.details, 'no such thing');
  const denied = await call('Secret', 'x');
  t.is(denied.err?.code, grpc.status.PERMISSION_DENIED);
  t.is(h.entries.at(-1)?.responseFlags, 'RBAC');

  // Plain HTTP/2 (not gRPC) too.
  const b = await backend(echo('h2'));
  const h2 = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { await h2.close(); await b.close(); });
  const session = h2connect(`http://127.0.0.1:${h2.port}`);
  t.teardown(() => session.close());
  const status = await new Promise<number>((resolve, reject) => {
    const s = session.request({ ':path': '/h2', ':authority': 'reviews' });
    s.on('response', (hd) => resolve(Number(hd[':status'])));
    s.on('error', reject);
    s.resume();
    s.end();
  });
  t.is(status, 200);
  await eventually('the HTTP/2 access-log entry', () => h2.entries.length === 1);
  t.is(h2.entries.at(-1)?.protocol, 'HTTP/2');
});

test('WebSocket upgrade passes through', async (t) => {
  const b = await backend(echo('x'));
  const upgraded: Array<{ destroy(): void }> = [];
  b.server.on('upgrade', (req, socket) => {
    upgraded.push(socket);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-path: ${req.url}\r\n\r\n`);
    socket.on('data', (c: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), c])));
  });
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { for (const u of upgraded) u.destroy(); await h.close(); await b.close(); });
  const sock = netConnect(h.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  let got = '';
  sock.on('data', (c: Buffer) => { got += c.toString(); });
  sock.write('GET /ws HTTP/1.1\r\nhost: reviews\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n');
  await eventually('the 101 response headers', () => got.includes('\r\n\r\n'), { detail: () => JSON.stringify(got) });
  t.regex(got, /^HTTP\/1\.1 101/);
  t.regex(got, /x-path: \/ws/);
  sock.write('ping');
  await eventually('the echoed frame over the upgraded connection', () => got.endsWith('echo:ping'), { detail: () => JSON.stringify(got) });
  t.regex(got, /echo:ping$/);
});

test('a TCP service passes through at L4', async (t) => {
  const tcp = createNetServer((s) => s.on('data', (c: Buffer) => s.write(Buffer.concat([Buffer.from('tcp:'), c]))));
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const fake = { port: (tcp.address() as AddressInfo).port, hits: 0, server: undefined as never, close: async () => {} };
  const h = await startProxy(makeConfig([{ name: 'db', portName: 'tcp-db', port: 5432, vip: '198.18.128.10', endpoints: [{ backend: fake }] }]), { destination: { ip: '198.18.128.10', port: 5432 } });
  t.teardown(async () => { await h.close(); await new Promise<void>((r) => tcp.close(() => r())); });
  const sock = netConnect(h.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  const reply = await new Promise<string>((resolve) => {
    sock.once('data', (c: Buffer) => resolve(c.toString()));
    sock.write('\x00\x01binary');
  });
  t.is(reply, 'tcp:\x00\x01binary');
});

test('route and retry helpers do not leak: a route without a destination service answers 503 UH', async (t) => {
  const b = await backend(echo('x'));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], routes: [route({ action: forward({ host: hostOf('nowhere') }) })] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  const r = await send(h.port);
  t.is(r.status, 503);
  t.is(h.entries.at(-1)?.responseFlags, 'UH');
});
