/**
 * The waypoint's own HTTP/1.1 codecs over real loopback sockets: the server side refuses every
 * request whose framing two parsers could read differently (request smuggling), answers
 * pipelined requests in order, and frames responses; the client side parses chunked bodies with
 * trailers, close-delimited and bodyless answers, reuses connections, and retries a request once
 * when a kept-alive connection turns out to be closed.
 */
import test from 'ava';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { H1Server, type H1IncomingRequest, type H1ServerResponse } from '../../../src/waypoint/h1-server.js';
import { H1Pool } from '../../../src/waypoint/h1-client.js';
import { collect } from './h1-body.js';

async function listen(onConn: (s: Socket) => void): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** Sends raw bytes and collects everything until the server closes (or `ms` passes). */
async function exchange(port: number, bytes: string, ms = 1_000): Promise<string> {
  const sock = connect(port, '127.0.0.1');
  let got = '';
  sock.on('data', (c: Buffer) => { got += c.toString('latin1'); });
  sock.on('error', () => {});
  sock.write(bytes, 'latin1');
  await new Promise<void>((r) => {
    const t = setTimeout(() => { sock.destroy(); r(); }, ms);
    sock.once('close', () => { clearTimeout(t); r(); });
  });
  return got;
}

/** An H1Server answering `<method> <url> <body>` with content-length, or per `respond`. */
async function codecServer(respond?: (req: H1IncomingRequest, res: H1ServerResponse, body: string) => void) {
  const refusals: string[] = [];
  const h1 = new H1Server({
    request: (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString('latin1'); });
      req.on('end', () => {
        if (respond !== undefined) return respond(req, res, body);
        const text = `${req.method} ${req.url} ${body}`;
        res.writeHead(200, { 'content-length': String(Buffer.byteLength(text)) });
        res.end(text);
      });
    },
    refused: (_s, reason, status) => refusals.push(`${status} ${reason}`),
  }, { maxHeaderBytes: 1024, headersTimeoutMs: 300, checkIntervalMs: 50 });
  const l = await listen((s) => h1.serve(s));
  return { port: l.port, refusals, close: async () => { h1.close(); await l.close(); } };
}

test('server: ambiguous framing and malformed heads are refused with 400, oversized with 431', async (t) => {
  const s = await codecServer();
  t.teardown(s.close);
  const cases: [string, string][] = [
    ['both content-length and transfer-encoding', 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['conflicting content-length', 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd'],
    ['non-numeric content-length', 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +3\r\n\r\nabc'],
    ['transfer-encoding other than chunked', 'POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nhost: a\r\nx-a: b\r\n c\r\n\r\n'],
    ['space before colon', 'GET / HTTP/1.1\r\nhost : a\r\n\r\n'],
    ['bare LF line ends', 'GET / HTTP/1.1\nhost: a\n\n'],
    ['two host headers', 'GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n'],
    ['bad chunk size', 'POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
    ['repeated equal content-length (llhttp refuses it too)', 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nab'],
    ['HTTP/1.1 without host', 'GET / HTTP/1.1\r\n\r\n'],
  ];
  for (const [what, bytes] of cases) t.regex(await exchange(s.port, bytes), /^HTTP\/1\.1 400 /, what);
  t.regex(await exchange(s.port, 'GET / HTTP/2.0\r\nhost: a\r\n\r\n'), /^HTTP\/1\.1 505 /, 'HTTP/2 request line');
  t.regex(await exchange(s.port, `GET / HTTP/1.1\r\nhost: a\r\nx-big: ${'a'.repeat(2000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  t.regex(await exchange(s.port, 'GET / HTTP/1.1\r\nhost: a\r\n', 2_000), /^HTTP\/1\.1 408 /, 'slowloris');
  t.true(s.refusals.includes('400 malformed') && s.refusals.includes('431 header_overflow') && s.refusals.includes('408 slow_client'));
});

test('server: pipelined requests are answered in order; chunked bodies and trailers are read', async (t) => {
  const s = await codecServer();
  t.teardown(s.close);
  const out = await exchange(s.port,
    'GET /one HTTP/1.1\r\nhost: a\r\n\r\n'
    + 'POST /two HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n'
    + 'POST /three HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\nxy', 1_500);
  const bodies = out.split('HTTP/1.1 200 OK\r\n').slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
  t.deepEqual(bodies, ['GET /one ', 'POST /two abcde', 'POST /three xy']);
  t.regex(out, /connection: close\r\n\r\nPOST \/three xy$/, 'the last answer announces the close');
});

test('server: responses without a length are chunked with trailers; HEAD and 204 carry no body', async (t) => {
  const s = await codecServer((req, res) => {
    if (req.url === '/204') { res.writeHead(204, {}); res.end(); return; }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('hello ');
    res.addTrailers({ 'grpc-status': '0' });
    res.end('world');
  });
  t.teardown(s.close);
  const chunked = await exchange(s.port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
  t.regex(chunked, /transfer-encoding: chunked\r\n/);
  t.true(chunked.endsWith('\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\ngrpc-status: 0\r\n\r\n'), JSON.stringify(chunked));
  const head = await exchange(s.port, 'HEAD / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
  t.false(head.includes('hello'), 'HEAD has no body');
  const none = await exchange(s.port, 'GET /204 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
  t.regex(none, /^HTTP\/1\.1 204 No Content\r\n/);
  t.false(none.includes('transfer-encoding'));
});


test('client: chunked with trailers, close-delimited, 204 and 1xx answers; connections are reused', async (t) => {
  let connections = 0;
  const l = await listen((s) => {
    connections++;
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        const path = head.split(' ')[1];
        if (path === '/chunked') s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n\r\n4\r\nabcd\r\n0\r\ngrpc-status: 0\r\n\r\n');
        else if (path === '/204') s.write('HTTP/1.1 204 No Content\r\n\r\n');
        else if (path === '/close') s.end('HTTP/1.1 200 OK\r\n\r\nuntil the end');
      }
    });
  });
  t.teardown(l.close);
  const pool = new H1Pool({ open: () => new Promise<Duplex>((resolve, reject) => { const s = connect(l.port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }) });
  t.teardown(() => pool.close());
  const req = (path: string) => ({ method: 'GET', path, authority: 'a', headers: { 'x-a': '1' }, writeBody: undefined });
  const c1 = await pool.request(req('/chunked'), true);
  t.is(c1.status, 200);
  t.deepEqual(c1.headers['set-cookie'], ['a=1', 'b=2']);
  t.is(await collect(c1), 'abcd');
  t.deepEqual(c1.trailers(), { 'grpc-status': '0' });
  const c2 = await pool.request(req('/204'), true);
  t.is(c2.status, 204);
  t.is(await collect(c2), '');
  t.is(connections, 1, 'one keep-alive connection served both');
  const c3 = await pool.request(req('/close'), true);
  t.is(await collect(c3), 'until the end');
  await new Promise((r) => setTimeout(r, 50));
  t.is(pool.size, 0, 'a close-delimited answer is never reused');
});

test('client: a request that meets a connection the server closed while idle goes again on a fresh one; bad heads fail', async (t) => {
  let n = 0;
  const l = await listen((s) => {
    const me = ++n;
    s.on('data', () => {
      if (me === 3) { s.write('HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n'); return; }
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      // The first connection closes right after its answer, as an idle timeout would.
      if (me === 1) setTimeout(() => s.destroy(), 20);
    });
  });
  t.teardown(l.close);
  const pool = new H1Pool({ open: () => new Promise<Duplex>((resolve, reject) => { const s = connect(l.port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }) });
  t.teardown(() => pool.close());
  const req = { method: 'GET', path: '/', authority: 'a', headers: {}, writeBody: undefined };
  t.is(await collect(await pool.request(req, true)), 'ok');
  await new Promise((r) => setTimeout(r, 100));
  t.is(await collect(await pool.request(req, true)), 'ok', 'served on a second connection');
  pool.close();
  const pool2 = new H1Pool({ open: () => new Promise<Duplex>((resolve, reject) => { const s = connect(l.port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }) });
  t.teardown(() => pool2.close());
  const err = await t.throwsAsync(pool2.request(req, true));
  t.regex(err?.message ?? '', /content-length/i);
  await t.throwsAsync(pool2.request({ ...req, headers: { 'x-bad': 'a\r\nx-injected: 1' } }, true), { message: /invalid value of upstream header x-bad/ });
  // Heads go out as latin1: a character past U+00FF would be cut to its low byte (U+010A to LF).
  await t.throwsAsync(pool2.request({ ...req, headers: { 'x-bad': 'a\u010ax-injected: 1' } }, true), { message: /invalid value of upstream header x-bad/ });
  await t.throwsAsync(pool2.request({ ...req, path: '/a\u010d' }, true), { message: /invalid upstream request line/ });
});
