/**
 * Regression tests for the "crash" finding class: what an upstream or a client does to a request
 * in flight must never throw out of the waypoint (it runs in this process, so an uncaught
 * exception here is a crashed waypoint) nor leave the client hanging, and the next request must
 * be served normally.
 *
 * Proves, through the real proxy on loopback:
 * - A chunked response whose head and a malformed part arrive in the same write (bad chunk
 *   size, missing CRLF after chunk data, an over-long chunk-size line, a trailer without a
 *   colon, NUL / CR / LF in a trailer value) ends with 502/503 or a closed connection for that
 *   client, never with a complete success and never with a connection left open.
 * - A client that disconnects mid request body or mid response body, and an upstream that
 *   resets mid response body, cause no uncaught error, and the upstream side is cleaned up.
 *
 * The tests run serially: uncaught exceptions are collected for the whole process
 * (harness.ts `captureUncaught`) and each test asserts that none arrived while it ran.
 */
import test from 'ava';
import { backend, captureUncaught, echo, makeConfig, rawBackend, startProxy, type Backend } from './harness.js';
import { eventually } from '../../helpers/eventually.js';
import { describe, exchange, rawConnect, type RawResult } from './raw-client.js';

const crashes = captureUncaught();
test.after.always(() => crashes.stop());

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nhost: reviews.shop.svc.cluster.local\r\n\r\n`;
const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
const CHUNKED = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n';

const proxyTo = (b: Backend) => startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));

/** Uncaught exceptions since `from`, for failure messages. */
function thrownSince(from: number): string {
  const thrown = crashes.errors.slice(from);
  return thrown.length === 0 ? '' : ` [meanwhile the waypoint threw: ${thrown.map((e) => e.message).join('; ').slice(0, 300)}]`;
}

/** Runs `body` (its messages get `crashed()` appended), then asserts no uncaught exception happened. */
async function noCrash(t: import('ava').ExecutionContext, body: (crashed: () => string) => Promise<void>): Promise<void> {
  const before = crashes.errors.length;
  await body(() => thrownSince(before));
  await new Promise((r) => setTimeout(r, 50)); // errors raised by late events of this test
  const thrown = crashes.errors.slice(before);
  t.deepEqual(thrown.map((e) => e.message), [], `the waypoint threw out of its handlers (a crash in production): ${thrown.map((e) => e.stack ?? e.message).join('\n---\n').slice(0, 1500)}`);
}

/** The client got a gateway error, or a closed connection without a complete success. */
function failedCleanly(r: RawResult): boolean {
  if (r.responses.some((x) => x.status === 502 || x.status === 503)) return true;
  return r.closed && !r.timedOut && !r.responses.some((x) => x.complete && x.status < 500);
}

/** The next request on a fresh connection is served normally. */
async function stillServes(t: import('ava').ExecutionContext, port: number, crashed: () => string): Promise<void> {
  const r = await exchange(port, GET('/ok'));
  t.true(r.responses[0]?.status === 200 && r.responses[0].complete, `the waypoint no longer serves a normal request afterwards: ${describe(r)}${crashed()}`);
}

const badResponses: Array<[string, string]> = [
  ['an invalid chunk size (zz)', `${CHUNKED}zz\r\nhello\r\n0\r\n\r\n`],
  ['no CRLF after the chunk data', `${CHUNKED}5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n`],
  ['a 100 KB chunk-size line of zeros', `${CHUNKED}${'0'.repeat(100_000)}5\r\nhello\r\n0\r\n\r\n`],
  ['a 100 KB chunk-size line of hex digits', `${CHUNKED}${'f'.repeat(100_000)}\r\nhello\r\n0\r\n\r\n`],
  ['a trailer line without a colon', `${CHUNKED}5\r\nhello\r\n0\r\nbogus-trailer\r\n\r\n`],
  ['NUL in a trailer value', `${CHUNKED}5\r\nhello\r\n0\r\nx-t: a\x00b\r\n\r\n`],
  ['CR in a trailer value', `${CHUNKED}5\r\nhello\r\n0\r\nx-t: a\rb\r\n\r\n`],
  ['LF in a trailer value', `${CHUNKED}5\r\nhello\r\n0\r\nx-t: a\nx-injected: 1\r\n\r\n`],
];

for (const [what, bytes] of badResponses) {
  test.serial(`crash: upstream chunked response with ${what} in the same write as its head`, async (t) => {
    await noCrash(t, async (crashed) => {
      // The bad answer goes out in one write and the connection stays open: the waypoint must
      // notice by itself, not wait for the upstream to close.
      const b = await rawBackend((head, sock) => void sock.write(Buffer.from(head.startsWith('GET /ok ') ? OK : bytes, 'latin1')));
      const h = await proxyTo(b);
      t.teardown(async () => { await h.close(); await b.close(); });
      const r = await exchange(h.port, GET('/bad'));
      t.true(failedCleanly(r), `expected 502/503 or a closed connection without a complete success, got: ${describe(r)}${crashed()}`);
      t.false(r.text.includes('x-injected'), 'a header injected through a trailer value reached the client');
      await stillServes(t, h.port, crashed);
    });
  });
}

test.serial('crash: the client disconnects in the middle of its request body', async (t) => {
  await noCrash(t, async (crashed) => {
    let uploadsClosed = 0;
    const ok = echo('v1');
    const b = await backend((req, res) => {
      if (req.url !== '/upload') return ok(req, res);
      req.resume();
      req.on('close', () => uploadsClosed++);
    });
    const h = await proxyTo(b);
    t.teardown(async () => { await h.close(); await b.close(); });
    const c = await rawConnect(h.port);
    c.write('POST /upload HTTP/1.1\r\nhost: reviews.shop.svc.cluster.local\r\ncontent-length: 1000000\r\n\r\n');
    c.write(Buffer.alloc(65_536, 'a'));
    await eventually('the upload to reach the backend', () => b.hits === 1, { timeoutMs: 3000 }).catch(() => t.fail(`the upload never reached the backend (hits ${b.hits})${crashed()}`));
    c.destroy();
    await eventually('the upstream request to close', () => uploadsClosed === 1, { timeoutMs: 3000 }).catch(() => t.fail(`the waypoint kept the upstream request open after its client went away${crashed()}`));
    await stillServes(t, h.port, crashed);
  });
});

test.serial('crash: the client disconnects in the middle of the response body', async (t) => {
  await noCrash(t, async (crashed) => {
    let streamsClosed = 0;
    const ok = echo('v1');
    const b = await backend((req, res) => {
      if (req.url !== '/stream') return ok(req, res);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(Buffer.alloc(4096, 'b'));
      res.on('close', () => streamsClosed++);
    });
    const h = await proxyTo(b);
    t.teardown(async () => { await h.close(); await b.close(); });
    const c = await rawConnect(h.port);
    c.write(GET('/stream'));
    const r = await c.wait((x) => (x.responses[0]?.body.length ?? 0) > 0);
    t.is(r.responses[0]?.status, 200, `the streamed response did not start: ${describe(r)}${crashed()}`);
    c.destroy();
    await eventually('the upstream response to close', () => streamsClosed === 1, { timeoutMs: 3000 }).catch(() => t.fail(`the waypoint kept the upstream response open after its client went away${crashed()}`));
    await stillServes(t, h.port, crashed);
  });
});

test.serial('crash: the upstream resets the connection in the middle of the response body', async (t) => {
  await noCrash(t, async (crashed) => {
    const b = await rawBackend((head, sock) => {
      if (head.startsWith('GET /ok ')) return void sock.write(OK);
      sock.write(`HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n${'c'.repeat(1000)}`);
      setTimeout(() => sock.resetAndDestroy(), 20);
    });
    const h = await proxyTo(b);
    t.teardown(async () => { await h.close(); await b.close(); });
    const r = await exchange(h.port, GET('/reset'));
    t.true(failedCleanly(r), `expected the client connection closed without a complete response, got: ${describe(r)}${crashed()}`);
    await stillServes(t, h.port, crashed);
  });
});
