/**
 * Regression tests for the "limits" finding class: every part of an HTTP/1.1 message the
 * waypoint buffers is bounded, not only the request head, so a client or an upstream cannot make
 * it hold unbounded memory or pass on what it would refuse in a head.
 *
 * Proves, through the real proxy on loopback with the default limits (FrontLimits
 * `maxHeaderBytes`, 16 KiB; the upstream head limit, 64 KiB):
 * - Request trailers over the head limit are refused (431 or 400) while the client is still
 *   sending them, so they are not accumulated: the answer comes before the client has sent
 *   1 MB of trailer lines (a byte count, not a time).
 * - Upstream response trailers over the limit are answered 502.
 * - A request head of many small header lines (2000 lines of 3 bytes, under the size limit) is
 *   refused with 431 and reaches nothing.
 * - A chunk-size line of 10 KB of zeros followed by `1` is refused with 400 (leading zeros do
 *   not overflow a size, so only a length limit on the line catches it).
 */
import test from 'ava';
import { backend, makeConfig, rawBackend, startProxy, type Backend } from './harness.js';
import { describe, exchange, rawConnect, refused } from './raw-client.js';

const H = 'host: reviews.shop.svc.cluster.local\r\n';

async function setup(t: import('ava').ExecutionContext) {
  const seen = { urls: [] as string[], completed: 0 };
  const b: Backend = await backend((req, res) => {
    seen.urls.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      seen.completed++;
      res.end('ok');
    });
  });
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  return { b, h, seen };
}

test('limits: request trailers over the head limit are refused while they arrive, not accumulated', async (t) => {
  const { h, seen } = await setup(t);
  const c = await rawConnect(h.port);
  t.teardown(() => c.destroy());
  c.write(`POST /upload HTTP/1.1\r\n${H}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n`);
  const start = c.written;
  // 16 KB of trailer lines (each well under any line limit) at a time, until the waypoint answers.
  let i = 0;
  const batch = () => Array.from({ length: 16 }, () => `x-t${i++}: ${'a'.repeat(1000)}\r\n`).join('');
  while (!c.closed && c.data().length === 0 && c.written - start < 2_000_000) {
    c.write(batch());
    await new Promise((r) => setTimeout(r, 2));
  }
  const sent = c.written - start;
  const r = await c.responses(1);
  t.true(refused(r, [431, 400]) && r.responses.length > 0, `expected 431 or 400 for over-long trailers, got: ${describe(r)}; backend saw ${JSON.stringify(seen)}`);
  t.true(sent < 1_000_000, `the waypoint took ${sent} bytes of trailers before answering (it holds them instead of refusing at the limit)`);
  t.is(seen.completed, 0, 'the request with over-long trailers reached the backend complete');
});

// The response head may already be on its way to the client when the trailers overflow (reads
// are 64 KiB at most): then the only honest answer left is cutting the connection.
test('limits: upstream response trailers over the limit are answered 502 or cut, never relayed', async (t) => {
  const trailers = Array.from({ length: 100 }, (_, i) => `x-t${i}: ${'a'.repeat(1000)}\r\n`).join('');
  const b = await rawBackend((_head, sock) => void sock.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n${trailers}\r\n`));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
  t.teardown(async () => { await h.close(); await b.close(); });
  const r = await exchange(h.port, `GET /a HTTP/1.1\r\n${H}\r\n`);
  const first = r.responses[0];
  const cut = r.closed && (first === undefined || !first.complete);
  t.true(first?.status === 502 || cut, `expected 502 or a cut connection for 100 KB of upstream trailers, got: ${describe(r)} with ${Object.keys(first?.trailers ?? {}).length} trailers`);
});

test('limits: 2000 header lines of 3 bytes are refused with 431', async (t) => {
  const { b, h, seen } = await setup(t);
  const head = `GET /many HTTP/1.1\r\n${H}${'x:1\r\n'.repeat(2000)}\r\n`;
  t.true(head.length < 16_384, 'the head stays under the size limit: only the line count is over');
  const r = await exchange(h.port, head);
  t.is(r.responses[0]?.status, 431, `expected 431 for 2000 header lines, got: ${describe(r)}; backend saw ${JSON.stringify(seen.urls)}`);
  t.is(b.hits, 0, 'the request reached the backend');
});

test('limits: a chunk-size line of 10 KB of zeros then 1 is refused with 400', async (t) => {
  const { h, seen } = await setup(t);
  const r = await exchange(h.port, `POST /zeros HTTP/1.1\r\n${H}transfer-encoding: chunked\r\n\r\n${'0'.repeat(10_240)}1\r\na\r\n0\r\n\r\n`);
  t.true(refused(r, [400]), `expected 400 for a 10 KB chunk-size line, got: ${describe(r)}; backend saw ${JSON.stringify(seen)}`);
  t.is(seen.completed, 0, 'the request reached the backend complete');
});
