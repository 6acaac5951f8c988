/**
 * Socket reads without the stream layer (direct-read.ts) and the HTTP/1.1 client over them:
 * every read is a view of one shared buffer that the next read overwrites, so whatever the
 * client keeps across reads (a head or chunk line cut by a read, a whole body handed over, body
 * chunks pushed to a stream) must be a copy. Real loopback sockets; each answer is written in
 * two parts with a pause between them, so the cut lands between two reads.
 */
import test from 'ava';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { connectDirect, isDirect, takeReads } from '../../../src/waypoint/direct-read.js';
import { H1Pool } from '../../../src/waypoint/h1-client.js';
import { collect } from './h1-body.js';

const GET = { method: 'GET', path: '/', authority: 'a', headers: {}, writeBody: undefined };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** A server answering each request with the next scripted answer, written in its parts. */
async function scripted(answers: string[][]): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer({ noDelay: true }, (s: Socket) => {
    connections++;
    s.on('error', () => {});
    s.on('data', () => {
      const parts = answers.shift() ?? [];
      void (async () => {
        for (const [i, p] of parts.entries()) {
          if (i > 0) await sleep(4);
          if (!s.destroyed) s.write(p, 'latin1');
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections };
}

function directPool(port: number): H1Pool {
  return new H1Pool({
    open: () => new Promise((resolve, reject) => {
      const s = connectDirect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    }),
  });
}

test('a direct socket nobody took over reads as an ordinary stream', async (t) => {
  const server = createServer((s: Socket) => {
    s.write('hello ');
    setTimeout(() => s.end('world'), 10);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const s = connectDirect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  t.true(isDirect(s));
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((r) => s.once('end', () => r()));
  // Two reads into the one shared buffer: the first chunk kept its bytes (it is a copy).
  t.is(Buffer.concat(chunks).toString(), 'hello world');
  s.destroy();
  const plain = connect((server.address() as AddressInfo).port, '127.0.0.1');
  t.false(takeReads(plain, () => {}), 'an ordinary socket cannot be taken over');
  plain.destroy();
});

test('a direct socket that already holds bytes read as a stream is not taken over (nothing is skipped)', async (t) => {
  const server = createServer((s: Socket) => s.end('early'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const s = connectDirect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  s.pause();
  await new Promise<void>((r) => s.once('readable', () => r()));
  t.false(takeReads(s, () => t.fail('the sink must not see bytes after buffered ones')));
  t.is(s.read()?.toString(), 'early');
  s.destroy();
});

test('client over direct reads: answers cut at every byte read the same, and kept bytes survive later reads', async (t) => {
  const length = 'HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nx-a: 1\r\n\r\nhello';
  const chunked = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nhel\r\n2\r\nlo\r\n0\r\ngrpc-status: 0\r\n\r\n';
  const script: string[][] = [];
  for (let cut = 1; cut < length.length; cut++) script.push([length.slice(0, cut), length.slice(cut)]);
  for (let cut = 1; cut < chunked.length; cut++) script.push([chunked.slice(0, cut), chunked.slice(cut)]);
  const { server, port, connections } = await scripted(script);
  const pool = directPool(port);
  t.teardown(() => {
    pool.close();
    server.close();
  });
  for (let cut = 1; cut < length.length; cut++) {
    const res = await pool.request(GET, false);
    t.is(res.status, 200);
    t.is(res.headers['x-a'], '1');
    t.is(await collect(res), 'hello', `length-framed, cut after byte ${cut}`);
  }
  for (let cut = 1; cut < chunked.length; cut++) {
    const res = await pool.request(GET, false);
    t.is(res.complete, undefined);
    t.is(await collect(res), 'hello', `chunked, cut after byte ${cut}`);
    t.deepEqual(res.trailers(), { 'grpc-status': '0' });
  }
  t.is(connections(), 1, 'every exchange reused the one connection');
});

test('client over direct reads: a whole answer handed over as one buffer is a copy, not the shared read buffer', async (t) => {
  const { server, port } = await scripted([
    ['HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nAAAA'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nBBBB'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nCC', 'CCCC'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nDDDD'],
  ]);
  const pool = directPool(port);
  t.teardown(() => {
    pool.close();
    server.close();
  });
  const a = await pool.request(GET, false);
  const b = await pool.request(GET, false);
  t.is(a.complete?.toString(), 'AAAA', 'still its own bytes after a later read');
  t.is(b.complete?.toString(), 'BBBB');
  // A streamed body's chunks are read after later reads overwrote the shared buffer.
  const c = await pool.request(GET, false);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    c.body.on('data', (x: Buffer) => chunks.push(x));
    c.body.on('end', () => resolve());
  });
  const d = await pool.request(GET, false);
  t.is(d.complete?.toString(), 'DDDD');
  t.is(Buffer.concat(chunks).toString(), 'CCCCCC');
  t.is(a.complete?.toString(), 'AAAA');
});
