/**
 * Regression tests for the "framing" finding class (request smuggling and response splitting
 * through the waypoint's HTTP/1.1 codecs).
 *
 * Proves, through the real proxy on loopback, with requests written as raw bytes:
 * - Every request a strict parser (llhttp, node:http's default) refuses is refused by the
 *   waypoint too: 400 or a closed connection, and nothing of it reaches the backend. Where a
 *   laxer parser could see a second request hidden in the first (CL+TE, two content-lengths, a
 *   disguised transfer-encoding), that second request does not reach the backend either.
 * - Upstream responses with ambiguous framing (content-length with transfer-encoding, two
 *   transfer-encodings) or a control character in a header value are answered 502, so the client
 *   never gets a response whose framing disagrees with its body.
 */
import test from 'ava';
import { backend, makeConfig, rawBackend, startProxy, type Backend } from './harness.js';
import { describe, exchange, refused } from './raw-client.js';

const H = 'host: reviews.shop.svc.cluster.local\r\n';
/** A request hidden in the body of another, for a parser that disagrees on where the first ends. */
const SMUGGLED = `GET /smuggled HTTP/1.1\r\n${H}\r\n`;
const CHUNKED_END_AND_SMUGGLED = `0\r\n\r\n${SMUGGLED}`;

interface Seen extends Backend {
  urls: string[];
  /** Requests whose body the backend read to the end. */
  completed: number;
}

async function recordingBackend(): Promise<Seen> {
  const seen = { urls: [] as string[], completed: 0 };
  const b = await backend((req, res) => {
    seen.urls.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      seen.completed++;
      res.end('ok');
    });
  });
  return Object.defineProperties(b, {
    urls: { get: () => seen.urls },
    completed: { get: () => seen.completed },
  }) as Seen;
}

const settle = () => new Promise((r) => setTimeout(r, 100));

/** [what, bytes, refused at the head (so the backend must not even see a request start)] */
const refusedRequests: Array<[string, string, boolean]> = [
  ['a bare-LF header line followed by another header', `POST /a HTTP/1.1\r\n${H}X:\nTransfer-Encoding: chunked\r\ncontent-length: ${CHUNKED_END_AND_SMUGGLED.length}\r\n\r\n${CHUNKED_END_AND_SMUGGLED}`, true],
  ['Transfer-Encoding: chunked followed by a vertical tab', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\x0b\r\n\r\n${CHUNKED_END_AND_SMUGGLED}`, true],
  ['Content-Length with a no-break space (\\xa0) before the digits', `POST /a HTTP/1.1\r\n${H}Content-Length: \xa05\r\n\r\nhello`, true],
  ['a chunk-size line ending in CR CR LF', `POST /a HTTP/1.1\r\n${H}transfer-encoding: chunked\r\n\r\n5\r\r\nhello\r\n${CHUNKED_END_AND_SMUGGLED}`, false],
  ['content-length together with transfer-encoding', `POST /a HTTP/1.1\r\n${H}content-length: ${CHUNKED_END_AND_SMUGGLED.length}\r\ntransfer-encoding: chunked\r\n\r\n${CHUNKED_END_AND_SMUGGLED}`, true],
  ['two different content-lengths', `POST /a HTTP/1.1\r\n${H}content-length: 5\r\ncontent-length: ${5 + SMUGGLED.length}\r\n\r\nhello${SMUGGLED}`, true],
  ['transfer-encoding twice', `POST /a HTTP/1.1\r\n${H}transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n${CHUNKED_END_AND_SMUGGLED}`, true],
  ['an obs-fold continuation line', `GET /a HTTP/1.1\r\n${H}x-a: b\r\n c\r\n\r\n`, true],
  ['NUL in a header value', `GET /a HTTP/1.1\r\n${H}x-a: b\x00c\r\n\r\n`, true],
  ['a space between a header name and its colon', `POST /a HTTP/1.1\r\n${H}content-length: ${CHUNKED_END_AND_SMUGGLED.length}\r\ntransfer-encoding : chunked\r\n\r\n${CHUNKED_END_AND_SMUGGLED}`, true],
];

for (const [what, bytes, atHead] of refusedRequests) {
  test(`framing: a request with ${what} is refused with 400 and never reaches the backend`, async (t) => {
    const b = await recordingBackend();
    const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
    t.teardown(async () => { await h.close(); await b.close(); });
    const r = await exchange(h.port, Buffer.from(bytes, 'latin1'));
    await settle();
    const saw = `backend saw ${JSON.stringify(b.urls)} (${b.completed} complete)`;
    t.true(refused(r, [400]), `expected 400 or a closed connection, got: ${describe(r)}; ${saw}`);
    t.false(b.urls.includes('/smuggled'), `a second request hidden in the first reached the backend: ${saw}`);
    if (atHead) t.is(b.hits, 0, `the refused request reached the backend: ${saw}`);
    else t.is(b.completed, 0, `the refused request reached the backend complete: ${saw}`);
  });
}

const badResponses: Array<[string, string]> = [
  ['content-length together with transfer-encoding', 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
  ['a control character (\\x01) in a header value', 'HTTP/1.1 200 OK\r\nx-a: b\x01c\r\ncontent-length: 2\r\n\r\nok'],
  ['transfer-encoding twice', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
];

for (const [what, bytes] of badResponses) {
  test(`framing: an upstream response with ${what} is answered 502`, async (t) => {
    const b = await rawBackend((_head, sock) => void sock.write(Buffer.from(bytes, 'latin1')));
    const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]));
    t.teardown(async () => { await h.close(); await b.close(); });
    const r = await exchange(h.port, `GET /a HTTP/1.1\r\n${H}\r\n`);
    const first = r.responses[0];
    t.is(first?.status, 502, `expected 502 for an ambiguous or invalid upstream response, got: ${describe(r)}`);
    for (const x of r.responses) {
      t.false(x.headers['content-length'] !== undefined && x.headers['transfer-encoding'] !== undefined, `the client got a response framed by both content-length and transfer-encoding: ${describe(r)}`);
      const cl = x.headers['content-length'];
      if (cl !== undefined && x.complete) t.is(Number(cl), Buffer.byteLength(x.body, 'latin1'), `content-length disagrees with the body: ${describe(r)}`);
    }
    t.true(r.responses.length <= 1 && r.leftover === '', `more bytes followed the response than its framing says (splitting): ${describe(r)}`);
    t.false(r.text.includes('\x01'), `the control character reached the client: ${describe(r)}`);
  });
}
