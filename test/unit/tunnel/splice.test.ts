/**
 * spliceStreams over real TCP sockets on loopback: half-close carries one direction's FIN and
 * lets the other keep flowing, a reset tears both down, `done` runs once with the first error,
 * a socket without allowHalfOpen ends the pair, and backpressure bounds what is buffered.
 */
import test from 'ava';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { spliceStreams } from '../../../src/tunnel/splice.js';
import { eventually } from '../../helpers/eventually.js';

/** A proxy on loopback that splices each accepted socket to a fresh connection to `target`. */
async function proxy(target: number, halfOpen: boolean, onDone: (err?: Error) => void, ups: Socket[] = []): Promise<Server> {
  const srv = createServer({ allowHalfOpen: halfOpen }, (down) => {
    const up = connect({ port: target, host: '127.0.0.1', allowHalfOpen: true });
    ups.push(up);
    spliceStreams(down, up, onDone);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return srv;
}
const portOf = (s: Server) => (s.address() as { port: number }).port;
const readAll = async (s: Socket): Promise<string> => {
  let out = '';
  s.setEncoding('utf8');
  for await (const c of s) out += c as string;
  return out;
};

test('half-close: the client FIN reaches the server, whose reply still arrives after it', async (t) => {
  const serverSaw: string[] = [];
  const backend = createServer({ allowHalfOpen: true }, (s) => {
    void readAll(s).then((got) => {
      serverSaw.push(got);
      // Only after the client's FIN: answer, then close.
      s.end(`reply to ${got}`);
    });
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const dones: (Error | undefined)[] = [];
  const p = await proxy(portOf(backend), true, (err) => dones.push(err));
  const c = connect({ port: portOf(p), host: '127.0.0.1', allowHalfOpen: true });
  await once(c, 'connect');
  c.end('question');
  t.is(await readAll(c), 'reply to question');
  t.deepEqual(serverSaw, ['question']);
  await once(c, 'close');
  await eventually('the splice to report done', () => dones.length > 0);
  t.deepEqual(dones, [undefined], 'done once, without error');
  p.close();
  backend.close();
});

test('a reset on one side destroys the other and done reports the error once', async (t) => {
  let backendSocket: Socket | undefined;
  const backend = createServer((s) => { backendSocket = s; s.on('error', () => undefined); });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const dones: (Error | undefined)[] = [];
  const p = await proxy(portOf(backend), true, (err) => dones.push(err));
  const c = connect({ port: portOf(p), host: '127.0.0.1' });
  c.on('error', () => undefined);
  await once(c, 'connect');
  c.write('hello');
  await eventually('the backend to accept the spliced connection', () => backendSocket !== undefined);
  backendSocket?.resetAndDestroy();
  await once(c, 'close');
  await eventually('the splice to report done', () => dones.length > 0);
  t.is(dones.length, 1);
  t.is((dones[0] as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
  p.close();
  backend.close();
});

test('a downstream socket without allowHalfOpen: its FIN ends the pair instead of hanging', async (t) => {
  // The backend never ends its side: only the splice can release the upstream connection.
  const backend = createServer({ allowHalfOpen: true }, (s) => s.resume());
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const dones: (Error | undefined)[] = [];
  const ups: Socket[] = [];
  const p = await proxy(portOf(backend), false, (err) => dones.push(err), ups);
  const c = connect({ port: portOf(p), host: '127.0.0.1', allowHalfOpen: true });
  await once(c, 'connect');
  c.end('bye');
  c.resume();
  await once(c, 'close');
  await eventually('the splice to report done', () => dones.length > 0);
  t.is(dones.length, 1);
  t.is(ups.length, 1);
  t.true(ups[0]?.destroyed, 'the upstream connection was closed, not left open');
  p.close();
  backend.close();
});

test('backpressure: a reader that does not read bounds what the splice buffers', async (t) => {
  let sink: Socket | undefined;
  const backend = createServer((s) => { sink = s; s.pause(); });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  let proxied: Socket | undefined;
  const srv = createServer({ allowHalfOpen: true }, (down) => {
    proxied = connect({ port: portOf(backend), host: '127.0.0.1', allowHalfOpen: true });
    spliceStreams(down, proxied, () => undefined, { maxBufferedBytes: 256 * 1024 });
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const c = connect({ port: portOf(srv), host: '127.0.0.1' });
  await once(c, 'connect');
  const chunk = Buffer.alloc(64 * 1024, 1);
  // Write 64 MiB without waiting: the kernel buffers a few MiB, the splice at most its bound.
  for (let i = 0; i < 1024; i++) c.write(chunk);
  await new Promise((r) => setTimeout(r, 500));
  t.truthy(proxied);
  t.true((proxied?.writableLength ?? Infinity) < 256 * 1024 + chunk.length * 2, `buffered ${proxied?.writableLength}`);
  c.destroy();
  sink?.destroy();
  srv.close();
  backend.close();
});
