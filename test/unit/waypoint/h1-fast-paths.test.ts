/**
 * The HTTP/1.1 codecs' fast paths: a request without a body that is never read as a stream, an
 * upstream answer that arrived whole with its head and is handed over as one buffer (no body
 * stream), and writes held until the end of the event-loop turn. Every split of the bytes into
 * two reads must give the same result as one read, so the sweeps below cut the input at every
 * byte boundary (over in-memory duplex pairs, where each write is one read on the other side,
 * so every cut is exercised for sure); reuse and the bytes-past-the-end rule run over real
 * loopback sockets.
 */
import test from 'ava';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Writable, type Duplex } from 'node:stream';
import { duplexPair } from '../../../src/waypoint/duplex-pair.js';
import { H1Server, type H1IncomingRequest } from '../../../src/waypoint/h1-server.js';
import { H1Pool } from '../../../src/waypoint/h1-client.js';
import { holdWrites } from '../../../src/waypoint/write-batch.js';
import { collect } from './h1-body.js';

const turn = () => new Promise<void>((r) => setImmediate(r));


/** Reads everything `d` receives until `done(text)` holds (or fails after 2 s). */
function readUntil(d: Duplex, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`timed out with ${JSON.stringify(got)}`)), 2_000);
    d.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (done(got)) {
        clearTimeout(t);
        resolve(got);
      }
    });
  });
}

/** An H1Server echoing `<method> <url> <body> <trailers>`; `seen` gets every request. */
function echoServer(seen: H1IncomingRequest[] = []): H1Server {
  return new H1Server({
    request: (req, res) => {
      seen.push(req);
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString('latin1'); });
      req.on('end', () => {
        const text = `${req.method} ${req.url} ${body} ${JSON.stringify(req.trailers)}`;
        res.writeHead(200, { 'content-length': String(Buffer.byteLength(text)) });
        res.end(text);
      });
    },
    refused: () => {},
  });
}

test('server: a request without a body is complete at once and its stream ends when read', async (t) => {
  const seen: H1IncomingRequest[] = [];
  const server = echoServer(seen);
  t.teardown(() => server.close());
  const [near, far] = duplexPair();
  server.serve(far);
  const out = readUntil(near, (s) => (s.match(/HTTP\/1\.1 200/g) ?? []).length === 2);
  near.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHOST: a\r\nContent-Length: 0\r\n\r\n');
  const text = await out;
  t.is(seen.length, 2);
  for (const req of seen) {
    t.true(req.bodiless && req.complete, `${req.method} ${req.url} has no body`);
    t.true(req.readableEnded, 'reading the stream ended it');
  }
  t.is(seen[1]?.headers.host, 'a', 'mixed-case names are read in lower case');
  t.regex(text, /GET \/a  \{\}/);
  t.regex(text, /POST \/b  \{\}/);
  near.destroy();
});

test('server: pipelined requests split at every byte boundary are answered the same, in order', async (t) => {
  const input = 'GET /one HTTP/1.1\r\nhost: a\r\n\r\n'
    + 'POST /two HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n'
    + 'POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy'
    + 'GET /four HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n';
  const server = echoServer();
  t.teardown(() => server.close());
  const answers = (text: string) => text.split(/HTTP\/1\.1 200 OK\r\n/).slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
  const expected = ['GET /one  {}', 'POST /two abcde {"x-t":"1"}', 'POST /three xy {}', 'GET /four  {}'];
  const wrong: string[] = [];
  for (let cut = 0; cut <= input.length; cut++) {
    const [near, far] = duplexPair();
    server.serve(far);
    const out = readUntil(near, (s) => s.endsWith('GET /four  {}'));
    near.write(input.slice(0, cut), 'latin1');
    await turn();
    near.write(input.slice(cut), 'latin1');
    const got = answers(await out);
    near.destroy();
    if (JSON.stringify(got) !== JSON.stringify(expected)) wrong.push(`cut after byte ${cut}: ${JSON.stringify(got)}`);
  }
  t.deepEqual(wrong, [], 'every cut point yields the same four requests');
});

test('server: obs-fold and conflicting content-length are refused, whichever read they arrive in', async (t) => {
  const refusals: string[] = [];
  const server = new H1Server({ request: (_q, r) => r.end(), refused: (_s, reason, status) => refusals.push(`${status} ${reason}`) });
  t.teardown(() => server.close());
  const bad = ['GET / HTTP/1.1\r\nhost: a\r\nx-a: b\r\n\tc\r\n\r\n', 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\nContent-Length: 2\r\n\r\nab'];
  for (const input of bad) {
    for (const cut of [1, input.indexOf('\r\n') + 1, input.length - 3]) {
      const [near, far] = duplexPair();
      server.serve(far);
      const out = readUntil(near, (s) => s.includes('\r\n\r\n'));
      near.write(input.slice(0, cut));
      await turn();
      near.write(input.slice(cut));
      t.regex(await out, /^HTTP\/1\.1 400 /, `${JSON.stringify(input)} cut at ${cut}`);
      near.destroy();
    }
  }
  t.is(refusals.length, 6);
});

/** An H1Pool over duplex pairs whose server ends the test drives; `servers` gets each one. */
function pairPool(servers: Duplex[]): H1Pool {
  return new H1Pool({
    open: async () => {
      const [client, server] = duplexPair();
      servers.push(server);
      return client;
    },
  });
}

const GET = { method: 'GET', path: '/', authority: 'a', headers: {}, writeBody: undefined };

test('client: answers (length-framed, chunked) split at every byte boundary read the same; whole ones come as one buffer', async (t) => {
  const answer = 'HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nx-a: 1\r\n\r\nhello';
  const servers: Duplex[] = [];
  const pool = pairPool(servers);
  t.teardown(() => pool.close());
  let wholeSeen = 0;
  for (let cut = 1; cut <= answer.length; cut++) {
    const pending = pool.request(GET, false);
    await turn();
    const server = servers[servers.length - 1] as Duplex;
    server.resume();
    server.write(answer.slice(0, cut), 'latin1');
    if (cut < answer.length) {
      await turn();
      server.write(answer.slice(cut), 'latin1');
    }
    const res = await pending;
    t.is(res.status, 200);
    t.is(res.headers['x-a'], '1');
    t.is(res.headers['content-length'], '5');
    const headEnd = answer.indexOf('\r\n\r\n') + 4;
    if (cut >= answer.length) {
      t.is(res.complete?.toString('latin1'), 'hello', 'arrived with its head: one buffer');
      wholeSeen++;
    } else if (cut >= headEnd) {
      t.is(res.complete, undefined, 'the head came with only part of the body: it streams');
    }
    t.is(await collect(res), 'hello', `cut after byte ${cut}`);
  }
  t.is(wholeSeen, 1);
  const chunked = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nhel\r\n2\r\nlo\r\n0\r\ngrpc-status: 0\r\n\r\n';
  for (let cut = 1; cut < chunked.length; cut++) {
    const pending = pool.request(GET, false);
    await turn();
    const server = servers[servers.length - 1] as Duplex;
    server.write(chunked.slice(0, cut), 'latin1');
    await turn();
    server.write(chunked.slice(cut), 'latin1');
    const res = await pending;
    t.is(res.complete, undefined, 'a chunked body always streams');
    t.is(await collect(res), 'hello', `chunked, cut after byte ${cut}`);
    t.deepEqual(res.trailers(), { 'grpc-status': '0' });
  }
  t.is(servers.length, 1, 'every exchange reused the one connection');
});

test('client: a whole answer releases its connection at once; bytes past its end close it', async (t) => {
  const answers = ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 204 No Content\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA'];
  let connections = 0;
  const server = createServer((s: Socket) => {
    connections++;
    s.on('error', () => {});
    s.on('data', () => s.write(answers.shift() ?? ''));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const pool = new H1Pool({ open: () => new Promise<Duplex>((resolve, reject) => { const s = connect(port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }) });
  t.teardown(() => {
    pool.close();
    server.close();
  });
  const a = await pool.request(GET, false);
  t.is(a.complete?.toString(), 'ok');
  t.is(pool.size, 1);
  const b = await pool.request(GET, false);
  t.is(b.status, 204);
  t.is(b.complete?.length, 0, 'a bodiless answer is complete and empty');
  t.is(await collect(b), '');
  t.is(connections, 1, 'the first whole answer gave its connection back before the second request');
  const c = await pool.request(GET, false);
  t.is(c.complete?.toString(), 'ok');
  a.abort(); // abandoning a finished exchange never closes the (reused) connection under a later one
  await new Promise((r) => setTimeout(r, 20));
  t.is(pool.size, 0, 'a connection that sent bytes past the end of an answer is not reused');
});

test('write batching: writes made during one turn reach the stream at its end, in order, once', async (t) => {
  const chunks: string[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) { chunks.push(c.toString()); cb(); },
    writev(cs, cb) { for (const c of cs) chunks.push((c.chunk as Buffer).toString()); cb(); },
  });
  const flushed: string[] = [];
  holdWrites(sink);
  sink.write('a', () => flushed.push('a'));
  holdWrites(sink);
  sink.cork(); // a caller's own cork/uncork pair inside the held turn
  sink.write('b');
  sink.uncork();
  t.deepEqual(chunks, [], 'nothing reaches the stream during the turn');
  await turn();
  t.deepEqual(chunks, ['a', 'b']);
  await turn();
  t.deepEqual(flushed, ['a']);
  t.is(sink.writableCorked, 0, 'every cork was undone');
  sink.write('c');
  t.deepEqual(chunks, ['a', 'b', 'c'], 'later writes go straight through');
});
