/**
 * Differential fuzzing of the waypoint's HTTP/1.1 codec against node:http's strict llhttp parser,
 * shared by test/unit/waypoint/h1-differential.test.ts (fixed seed) and bench/fuzz-h1.ts (any
 * seed, many cases). It holds the generators of request and response byte streams (valid
 * messages built from parts, then mutated byte by byte), the named regression inputs, the
 * runners that feed one stream to both sides over real loopback sockets, and the oracle.
 *
 * The oracle (what a FAIL means): the waypoint must never accept a message that llhttp rejects,
 * nor frame one differently. For every message of the stream, in order:
 * - the waypoint took in a head that node refused: FAIL;
 * - both took it in: method, url, version (requests) or status (responses), whether it is an
 *   Upgrade, the set of header names and every value must agree; `content-length`,
 *   `transfer-encoding` and `host` exactly as node joins them, other repeated headers by any of
 *   the usual duplicate rules (joined with ", " or "; ", first or last wins), since the waypoint
 *   exposes only the joined object, not the raw list;
 * - bodies: both complete and equal; the waypoint complete where node failed the body: FAIL;
 *   where either stopped early, the bytes it delivered must be a prefix of the other side's;
 * - trailers (both complete): the same names, values by the same duplicate rules.
 * Refusing what node accepts ("stricter") is allowed and only counted (`Tally`). Nothing after a
 * refused message, or after an Upgrade request, is compared (llhttp reads no further there,
 * the waypoint goes on once the request was answered without a 101).
 *
 * Invariants that keep the verdicts deterministic (no timing in them):
 * - Each piece of a case is written only after the reader's socket has read all earlier pieces
 *   (`bytesRead`), so both parsers see the same read boundaries: the pieces themselves.
 * - The request client half-closes only once the server read every byte and answered every
 *   complete request (or nothing changed for STALL_MS); an early FIN could only make the
 *   waypoint look stricter (it stops at a half-close), never make a FAIL, and node's messages
 *   do not depend on it. The response server closes after its last piece.
 * - Every socket has an error listener; every wait is bounded. A case that hits a bound is
 *   marked `timedOut` and still compared; a waypoint connection that stays open after its peer
 *   closed while node's closed is listed as a hang (`Tally.hangs`), which the test fails on.
 *
 * Both sides get the same limits and answers, so that only the parsers differ: node's
 * `maxHeaderSize` is the waypoint's (H1Server `maxHeaderBytes`, H1Pool `maxHeadBytes`), both
 * servers answer 200 with an explicit content-length once the body was read (without one
 * node:http closes every HTTP/1.0 connection), neither has an upgrade listener, and node's
 * `requireHostHeader` is off (a server policy, not llhttp's; the waypoint's refusal of a
 * missing host counts as stricter). Responses are read through `H1Pool.send`, as the proxy
 * reads them (synchronous callbacks: a body that fails right after its head still has a
 * listener).
 */
import fc from 'fast-check';
import { IncomingMessage, createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { H1Server } from '../../../src/waypoint/h1-server.js';
import { H1Pool, type H1Response } from '../../../src/waypoint/h1-client.js';
import { connectDirect } from '../../../src/waypoint/direct-read.js';

const HOST = '127.0.0.1';
const noop = (): void => {};
const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/* ------------------------------------------------------------------------------------------ */
/* Cases                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** One input: a byte stream and where the reads split it. */
export interface WireCase {
  readonly bytes: Buffer;
  /** Offsets where a new read starts (sorted, inside (0, bytes.length)). */
  readonly cuts: readonly number[];
  /** Response side only: the request method the client sends (HEAD answers have no body). */
  readonly method?: 'GET' | 'HEAD';
}

export interface NamedCase extends WireCase {
  readonly name: string;
}

export function piecesOf(c: WireCase): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of c.cuts) {
    if (cut <= at || cut >= c.bytes.length) continue;
    out.push(c.bytes.subarray(at, cut));
    at = cut;
  }
  if (at < c.bytes.length || out.length === 0) out.push(c.bytes.subarray(at));
  return out;
}

/** A case as a reader can paste it back: latin1 JSON string, cut offsets, method. */
export function describeCase(c: WireCase): string {
  const text = JSON.stringify(c.bytes.toString('latin1'));
  const shown = text.length > 600 ? `${text.slice(0, 300)} ...(${c.bytes.length} bytes)... ${text.slice(-200)}` : text;
  return `${c.method !== undefined ? `${c.method} -> ` : ''}${shown} cuts=[${c.cuts.join(',')}]`;
}

/** Makes fast-check print a case as `describeCase` does (not as a byte array). */
function printable<T extends WireCase>(c: T): T {
  Object.defineProperty(c, fc.toStringMethod, { value: () => describeCase(c) });
  return c;
}

/** A named case split at the given offsets (none: one read). */
function named(name: string, text: string, cuts: number[] = [], method?: 'GET' | 'HEAD'): NamedCase {
  return printable(method === undefined ? { name, bytes: latin1(text), cuts } : { name, bytes: latin1(text), cuts, method });
}

/* ------------------------------------------------------------------------------------------ */
/* Generators                                                                                  */
/* ------------------------------------------------------------------------------------------ */

type Header = [string, string];

const HEADER_NAMES = ['X-A', 'x-b', 'Accept', 'User-Agent', 'Cookie', 'Content-Type', 'X-Forwarded-For', 'Authorization', 'Via', 'Server', 'ETag', 'Set-Cookie', 'X-Request-Id'];
const headerName = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...HEADER_NAMES) }, { weight: 1, arbitrary: fc.stringMatching(/^x-[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}$/) });
/** Far from the limits (16 KiB request heads, 64 KiB response heads), never at them. */
const OVERSIZED = [6_000, 20_000, 70_000];
const headerValue = fc.oneof(
  { weight: 8, arbitrary: fc.stringMatching(/^[!-~]([ !-~]{0,16}[!-~])?$/) },
  { weight: 2, arbitrary: fc.constantFrom('', 'a\tb', 'caf\xe9', '"quoted, comma"', 'a, b', '  padded \t', 'x=1; y=2') },
  { weight: 1, arbitrary: fc.constantFrom(...OVERSIZED).map((n) => 'v'.repeat(n)) },
);
const header: fc.Arbitrary<Header> = fc.tuple(headerName, headerValue);

/** Values of framing headers that parsers are known to read differently. */
const CL_VALUES = ['5', '0', '05', ' 5', '5 ', '\xa05', '5\x0b', '\x0c5', '+5', '-5', '0x5', '5,5', '5, 5', '99999999999999999999', ''];
const TE_VALUES = ['chunked', 'CHUNKED', ' chunked', 'chunked\x0b', '\x0cchunked', '\xa0chunked', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'chunked;q=1', 'chunk', 'chunked,'];
const framingHeader: fc.Arbitrary<Header> = fc.oneof(
  fc.constantFrom(...CL_VALUES).map((v): Header => ['Content-Length', v]),
  fc.constantFrom(...TE_VALUES).map((v): Header => ['Transfer-Encoding', v]),
  fc.constantFrom('a.example', 'b.example', '').map((v): Header => ['Host', v]),
);

const bodyBytes = (min: number) =>
  fc.oneof(
    fc.stringMatching(/^[ -~]*$/, { maxLength: 24 }).filter((s) => s.length >= min).map(latin1),
    fc.uint8Array({ minLength: min, maxLength: 24 }).map((u) => Buffer.from(u)),
    fc.constantFrom(latin1('\r\n0\r\n\r\n'), latin1('GET / HTTP/1.1\r\n\r\n'), latin1('HTTP/1.1 200 OK\r\n\r\n')).filter((x) => x.length >= min),
  );

interface ChunkSpec { data: Buffer; style: 'lower' | 'upper' | 'zeros' | 'long'; ext: string }
type BodySpec =
  | { kind: 'none' }
  | { kind: 'length'; data: Buffer; zeros: number }
  | { kind: 'chunked'; chunks: ChunkSpec[]; last: string; trailers: Header[] }
  | { kind: 'close'; data: Buffer };

const CHUNK_EXTS = ['', '', '', ';a', ';a=b', ';a="b c"', ';a=b;c', ' ;a', ';a=', '\t;a'];
const chunk: fc.Arbitrary<ChunkSpec> = fc.record({ data: bodyBytes(1), style: fc.constantFrom('lower', 'lower', 'upper', 'zeros', 'long'), ext: fc.constantFrom(...CHUNK_EXTS) });
const chunkedBody = fc.record({
  kind: fc.constant('chunked' as const),
  chunks: fc.array(chunk, { maxLength: 3 }),
  last: fc.constantFrom('0', '0', '000', '0;a=b'),
  trailers: fc.array(fc.tuple(fc.constantFrom('X-T', 'Expires', 'x-checksum'), headerValue), { maxLength: 2 }),
});
const lengthBody = fc.record({ kind: fc.constant('length' as const), data: bodyBytes(0), zeros: fc.constantFrom(0, 0, 0, 1, 2) });

function chunkSize(c: ChunkSpec): string {
  const hex = c.data.length.toString(16);
  switch (c.style) {
    case 'lower': return hex;
    case 'upper': return hex.toUpperCase();
    case 'zeros': return `00${hex}`;
    case 'long': return hex.padStart(18, '0'); // longer than 16 hex digits
  }
}

function frameBody(body: BodySpec): { header: Header | undefined; bytes: Buffer } {
  switch (body.kind) {
    case 'none':
      return { header: undefined, bytes: Buffer.alloc(0) };
    case 'length':
      return { header: ['Content-Length', `${'0'.repeat(body.zeros)}${body.data.length}`], bytes: body.data };
    case 'close':
      return { header: undefined, bytes: body.data };
    case 'chunked': {
      const parts: Buffer[] = [];
      for (const c of body.chunks) parts.push(latin1(`${chunkSize(c)}${c.ext}\r\n`), c.data, latin1('\r\n'));
      parts.push(latin1(`${body.last}\r\n${body.trailers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`));
      return { header: ['Transfer-Encoding', 'chunked'], bytes: Buffer.concat(parts) };
    }
  }
}

interface HeadSpec {
  start: string;
  headers: Header[];
  conn: string | undefined;
  body: BodySpec;
  framing: Header[];
  framingAt: number;
}

function serialise(m: HeadSpec): Buffer {
  const framed = frameBody(m.body);
  const headers = [...m.headers];
  if (m.conn === 'upgrade') headers.push(['Connection', 'Upgrade'], ['Upgrade', 'websocket']);
  else if (m.conn !== undefined) headers.push(['Connection', m.conn]);
  if (framed.header !== undefined) headers.push(framed.header);
  for (const f of m.framing) headers.splice(m.framingAt % (headers.length + 1), 0, f);
  return Buffer.concat([latin1(`${m.start}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`), framed.bytes]);
}

const METHODS = ['GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'];
const TARGETS = ['/', '/a/b?c=d&e', '/p%20q', '*', 'http://h.example/x', '/x;y', '/~user', '//double'];

const requestMessage: fc.Arbitrary<HeadSpec> = fc
  .record({
    method: fc.constantFrom(...METHODS),
    target: fc.constantFrom(...TARGETS),
    version: fc.constantFrom('1.1', '1.1', '1.1', '1.0'),
    host: fc.constantFrom('a.example', 'svc.ns.svc.cluster.local:8080', '127.0.0.1'),
    headers: fc.array(header, { maxLength: 4 }),
    conn: fc.constantFrom(undefined, undefined, undefined, undefined, 'keep-alive', 'close', 'upgrade'),
    body: fc.oneof(fc.constant({ kind: 'none' as const }), lengthBody, chunkedBody),
    framing: fc.array(framingHeader, { maxLength: 2 }),
    framingAt: fc.nat(),
  })
  .map((r) => ({ start: `${r.method} ${r.target} HTTP/${r.version}`, headers: [['Host', r.host] as Header, ...r.headers], conn: r.conn, body: r.body, framing: r.framing, framingAt: r.framingAt }));

const STATUSES = [200, 200, 200, 201, 204, 206, 301, 304, 404, 500, 299];
const responseMessage: fc.Arbitrary<{ interim: Buffer; head: HeadSpec }> = fc
  .record({
    interim: fc.array(fc.record({ status: fc.constantFrom(100, 102, 103), headers: fc.array(header, { maxLength: 1 }) }), { maxLength: 2 }),
    version: fc.constantFrom('1.1', '1.1', '1.1', '1.0'),
    status: fc.constantFrom(...STATUSES),
    reason: fc.constantFrom(' OK', ' Whatever it is', ' ', '', ' Not Found'),
    headers: fc.array(header, { maxLength: 4 }),
    conn: fc.constantFrom(undefined, undefined, undefined, 'keep-alive', 'close'),
    body: fc.oneof(fc.constant({ kind: 'none' as const }), lengthBody, chunkedBody, fc.record({ kind: fc.constant('close' as const), data: bodyBytes(0) })),
    framing: fc.array(framingHeader.filter(([n]) => n !== 'Host'), { maxLength: 2 }),
    framingAt: fc.nat(),
  })
  .map((r) => ({
    interim: latin1(r.interim.map((i) => `HTTP/1.1 ${i.status} Info\r\n${i.headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`).join('')),
    head: { start: `HTTP/${r.version} ${r.status}${r.reason}`, headers: r.headers, conn: r.conn, body: r.body, framing: r.framing, framingAt: r.framingAt },
  }));

/** Bytes worth putting where parsers disagree. */
const INTERESTING = ['\r', '\n', '\r\n', '\0', '\x0b', '\x0c', '\xa0', '\x7f', ' ', '\t', ':', ';', '-', '0', '5', 'a', 'F', 'x', '\x80', '\xff', ',', '"', '=', '\r\n ', '0\r\n\r\n'];

interface Pos { anchor: 'any' | '\r' | '\n' | ':' | ' ' | ';'; n: number; delta: number }
type Mutation =
  | { op: 'insert' | 'replace'; at: Pos; text: string }
  | { op: 'delete'; at: Pos; n: number }
  | { op: 'eol'; nth: number; to: string }
  | { op: 'fold'; nth: number; text: string }
  | { op: 'dup-line'; nth: number }
  | { op: 'truncate'; at: Pos };

const pos: fc.Arbitrary<Pos> = fc.record({ anchor: fc.constantFrom('any', 'any', '\r', '\n', ':', ' ', ';'), n: fc.nat(), delta: fc.constantFrom(-1, 0, 0, 1) });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('insert' as const, 'replace' as const), at: pos, text: fc.constantFrom(...INTERESTING) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: pos, n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('eol' as const), nth: fc.nat(), to: fc.constantFrom('\n', '\r', '\r\r\n', '\n\r', '\r\n\r\n', '') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fold' as const), nth: fc.nat(), text: fc.constantFrom(' x', '\tx', ' ', ' chunked') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('dup-line' as const), nth: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: pos }) },
);

function resolve(buf: Buffer, p: Pos): number {
  if (p.anchor !== 'any') {
    const code = p.anchor.charCodeAt(0);
    const hits: number[] = [];
    for (let i = 0; i < buf.length; i++) if (buf[i] === code) hits.push(i);
    if (hits.length > 0) return Math.max(0, Math.min(buf.length, (hits[p.n % hits.length] as number) + p.delta));
  }
  return p.n % (buf.length + 1);
}

function crlfs(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = buf.indexOf('\r\n'); i !== -1; i = buf.indexOf('\r\n', i + 2)) out.push(i);
  return out;
}

function mutate(input: Buffer, ms: readonly Mutation[]): Buffer {
  let buf = input;
  for (const m of ms) {
    switch (m.op) {
      case 'insert': case 'replace': {
        const at = resolve(buf, m.at);
        buf = Buffer.concat([buf.subarray(0, at), latin1(m.text), buf.subarray(m.op === 'replace' ? at + 1 : at)]);
        break;
      }
      case 'delete': {
        const at = resolve(buf, m.at);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.n)]);
        break;
      }
      case 'truncate':
        buf = buf.subarray(0, resolve(buf, m.at));
        break;
      case 'eol': case 'fold': case 'dup-line': {
        const ends = crlfs(buf);
        if (ends.length === 0) break;
        const at = ends[m.nth % ends.length] as number;
        if (m.op === 'eol') buf = Buffer.concat([buf.subarray(0, at), latin1(m.to), buf.subarray(at + 2)]);
        else if (m.op === 'fold') buf = Buffer.concat([buf.subarray(0, at), latin1(`\r\n${m.text}`), buf.subarray(at)]);
        else {
          const prev = buf.lastIndexOf('\r\n', at - 1);
          const start = prev === -1 ? 0 : prev + 2;
          buf = Buffer.concat([buf.subarray(0, at + 2), buf.subarray(start, at + 2), buf.subarray(at + 2)]);
        }
        break;
      }
    }
  }
  return buf;
}

type Split = { kind: 'cuts'; xs: number[] } | { kind: 'every'; step: number };
const split: fc.Arbitrary<Split> = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.nat({ max: 0xffff }), { maxLength: 6 }).map((xs) => ({ kind: 'cuts' as const, xs })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((step) => ({ kind: 'every' as const, step })) },
);

/** At most this many reads per case (a byte-by-byte split of a long case gets coarser). */
const MAX_PIECES = 96;

function cutsFor(s: Split, length: number): number[] {
  if (length < 2) return [];
  if (s.kind === 'every') {
    const step = Math.max(s.step, Math.ceil(length / MAX_PIECES));
    const out: number[] = [];
    for (let at = step; at < length; at += step) out.push(at);
    return out;
  }
  return [...new Set(s.xs.map((x) => 1 + (x % (length - 1))))].sort((a, b) => a - b);
}

/** Request streams: 1–3 pipelined requests built from parts, 0–3 byte mutations, random reads. */
export function requestCases(): fc.Arbitrary<WireCase> {
  return fc
    .record({ prefix: fc.constantFrom('', '', '', '', '\r\n'), messages: fc.array(requestMessage, { minLength: 1, maxLength: 3 }), mutations: fc.array(mutation, { maxLength: 3 }), split })
    .map((r) => {
      const bytes = mutate(Buffer.concat([latin1(r.prefix), ...r.messages.map(serialise)]), r.mutations);
      return printable({ bytes, cuts: cutsFor(r.split, bytes.length) });
    });
}

/** Response streams: 0–2 interim answers and a final one, mutated, for a GET or HEAD. */
export function responseCases(): fc.Arbitrary<WireCase> {
  return fc
    .record({ method: fc.constantFrom('GET' as const, 'GET' as const, 'HEAD' as const), message: responseMessage, mutations: fc.array(mutation, { maxLength: 3 }), split })
    .map((r) => {
      const bytes = mutate(Buffer.concat([r.message.interim, serialise(r.message.head)]), r.mutations);
      return printable({ bytes, cuts: cutsFor(r.split, bytes.length), method: r.method });
    });
}

/* ------------------------------------------------------------------------------------------ */
/* Known regressions (the security review's findings), as named inputs                         */
/* ------------------------------------------------------------------------------------------ */

const CHUNKED = 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n';

export const REQUEST_REGRESSIONS: readonly NamedCase[] = [
  named('header value trimmed of VT', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: \x0bb\r\n\r\n'),
  named('header value trimmed of FF', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x0c\r\n\r\n'),
  named('header value trimmed of 0xA0', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: \xa0b\xa0\r\n\r\n'),
  named('Transfer-Encoding: chunked\\x0b', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n5\r\nhello\r\n0\r\n\r\n', [40]),
  named('Transfer-Encoding: \\x0cchunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0cchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
  named('Content-Length: \\xa05', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xa05\r\n\r\nhello', [30]),
  named('Content-Length: 5\\x0b', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x0b\r\n\r\nhello'),
  named('repeated equal Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello'),
  named('bare CR in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n'),
  named('bare LF in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nX-B: c\r\n\r\n'),
  named('bare LF line ends', 'GET / HTTP/1.1\nHost: a\n\n'),
  named('bare CR line end', 'GET / HTTP/1.1\rHost: a\r\n\r\n'),
  named('chunk size 5\\r\\r\\n', `${CHUNKED}5\r\r\nhello\r\n0\r\n\r\n`, [56, 57]),
  named('chunk size with BWS before the extension', `${CHUNKED}5 ;a=b\r\nhello\r\n0\r\n\r\n`),
  named('chunk extension with a CTL', `${CHUNKED}5;a\x01\r\nhello\r\n0\r\n\r\n`),
  named('chunk data not followed by CRLF', `${CHUNKED}5\r\nhelloXX0\r\n\r\n`),
  named('chunk size over 16 hex digits', `${CHUNKED}00000000000000005\r\nhello\r\n0\r\n\r\n`),
  named('trailer without a colon', `${CHUNKED}5\r\nhello\r\n0\r\nfoo\r\n\r\n`),
  named('trailer value with NUL', `${CHUNKED}5\r\nhello\r\n0\r\nfoo: a\x00b\r\n\r\n`),
  named('trailer value with VT', `${CHUNKED}5\r\nhello\r\n0\r\nfoo: a\x0bb\r\n\r\n`),
  named('duplicate Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
  named('Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'),
  named('obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'),
  named('DEL and NUL in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\x00c\r\n\r\n'),
  named('Connection: Upgrade\\t is no upgrade for llhttp', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\t\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n', [70]),
  named('malformed request after an Upgrade request answered without 101', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nPOST / HTTP/1.1\rHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n', [68, 90]),
  named('pipelined, split inside CRLF', 'POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n', [15, 16, 48, 49]),
];

export const RESPONSE_REGRESSIONS: readonly NamedCase[] = [
  named('response with Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', [], 'GET'),
  named('CTL in a response header value', 'HTTP/1.1 200 OK\r\nX-A: b\x01c\r\nContent-Length: 0\r\n\r\n', [], 'GET'),
  named('NUL in a response header value', 'HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n', [20], 'GET'),
  named('bare CR in a response header value', 'HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n', [], 'GET'),
  named('bare LF in a response header value', 'HTTP/1.1 200 OK\r\nX-A: b\nc: d\r\nContent-Length: 0\r\n\r\n', [], 'GET'),
  named('response header value trimmed of 0xA0', 'HTTP/1.1 200 OK\r\nX-A: \xa0b\r\nContent-Length: 0\r\n\r\n', [], 'GET'),
  named('response Content-Length: \\xa05', 'HTTP/1.1 200 OK\r\nContent-Length: \xa05\r\n\r\nhello', [], 'GET'),
  named('response repeated equal Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello', [], 'GET'),
  named('response duplicate Transfer-Encoding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', [], 'GET'),
  named('response chunk size 5\\r\\r\\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r\nhello\r\n0\r\n\r\n', [46], 'GET'),
  named('response chunk extension with NUL', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n', [], 'GET'),
  named('response trailer with NUL', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nfoo: a\x00b\r\n\r\n', [], 'GET'),
  named('response trailer with bare CR', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nfoo: a\rb\r\n\r\n', [], 'GET'),
  named('response trailer without a colon', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nfoo\r\n\r\n', [], 'GET'),
  named('response bad chunk framing', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n', [], 'GET'),
  named('response bare LF line ends', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', [], 'GET'),
  named('1xx before the final answer', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi', [10, 30, 60], 'GET'),
  named('204 with a body', 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello', [], 'GET'),
  named('HEAD answer with Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', [], 'HEAD'),
  named('close-delimited body', 'HTTP/1.1 200 OK\r\n\r\nhello', [20], 'GET'),
  named('HTTP/1.0 chunked', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', [], 'GET'),
];

/* ------------------------------------------------------------------------------------------ */
/* What each side saw                                                                          */
/* ------------------------------------------------------------------------------------------ */

/** One message as a parser delivered it. */
export interface Seen {
  method?: string;
  url?: string;
  httpVersion?: string;
  status?: number;
  /** As the side exposes them (node: its joined `headers`; the waypoint: its only view). */
  headers: IncomingHttpHeaders;
  /** Node only: `rawHeaders`. */
  raw?: string[];
  body: Buffer;
  complete: boolean;
  trailers: Record<string, string | string[] | undefined>;
  /** Node only: `rawTrailers`. */
  rawTrailers?: string[];
  upgrade: boolean;
}

export interface Observed {
  messages: Seen[];
  /** Refusals and parse errors, in order (node: llhttp error codes). */
  errors: string[];
  timedOut: boolean;
}

export interface Pair {
  node: Observed;
  waypoint: Observed;
}

/** A message while it is being received. */
class Live {
  readonly chunks: Buffer[] = [];
  responded = false;

  constructor(
    readonly head: Omit<Seen, 'body' | 'complete' | 'trailers' | 'rawTrailers'>,
    readonly state: () => { complete: boolean; trailers: Seen['trailers']; rawTrailers?: string[] },
  ) {}

  snapshot(): Seen {
    const s = this.state();
    const seen: Seen = { ...this.head, body: Buffer.concat(this.chunks), complete: s.complete, trailers: { ...s.trailers } };
    if (s.rawTrailers !== undefined) seen.rawTrailers = [...s.rawTrailers];
    return seen;
  }
}

class Recorder {
  readonly live: Live[] = [];
  readonly errors: string[] = [];
  /** Bumped on every event, so that a settled connection can be recognised. */
  version = 0;

  add(m: Live): Live {
    this.live.push(m);
    this.version++;
    return m;
  }

  error(e: string): void {
    this.errors.push(e);
    this.version++;
  }

  /** Every complete message was answered (nothing more will happen without new bytes). */
  idle(): boolean {
    return this.live.every((m) => m.responded || !m.state().complete);
  }

  observed(timedOut: boolean): Observed {
    return { messages: this.live.map((m) => m.snapshot()), errors: [...this.errors], timedOut };
  }
}

/**
 * Records every chunk llhttp pushes into one of node's IncomingMessages, as it is pushed: node
 * destroys pipelined requests whose answer is pending when the connection fails, dropping their
 * buffered body, which is node:http's bookkeeping, not llhttp's framing.
 */
function tapPush(stream: { push: (chunk: unknown, encoding?: BufferEncoding) => boolean }, into: Buffer[]): void {
  const push = stream.push.bind(stream);
  stream.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && chunk !== undefined) into.push(Buffer.from(chunk as Buffer));
    return push(chunk, encoding);
  };
}

/* ------------------------------------------------------------------------------------------ */
/* Plumbing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Bounds of one case (ms): none is reached unless a side stalls (a hang is reported, see Tally). */
const PIECE_MS = 250;
const ACCEPT_MS = 2_000;
const SETTLE_MS = 1_000;
/** A connection where nothing changes for this long has settled even with bytes unread. */
const STALL_MS = 200;
const CLOSE_MS = 1_000;
const RESPONSE_MS = 2_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const turn = () => new Promise<void>((r) => setImmediate(r));

/** Waits until `cond` holds or `ms` passed; true when it holds. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (let i = 0; !cond(); i++) {
    if (Date.now() > end) return false;
    if (i < 64) await turn();
    else await sleep(1);
  }
  return true;
}

function closed(s: Socket): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

async function bounded(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => { t = setTimeout(() => r(false), ms); });
  const ok = await Promise.race([p.then(() => true as const), timeout]);
  clearTimeout(t);
  return ok;
}

async function listen(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return (server.address() as AddressInfo).port;
}

/**
 * Writes the pieces one read at a time: the next only once the reader took in all before it.
 * A reader that stops reading (paused with a full buffer) gets the rest without waiting.
 */
async function writePieces(sock: Socket, pieces: Buffer[], readerGot: () => number, readerGone: () => boolean): Promise<void> {
  let sent = 0;
  let wait = PIECE_MS;
  for (const p of pieces) {
    if (sock.destroyed || !sock.writable || readerGone()) return;
    sock.write(p);
    sent += p.length;
    if (!(await until(() => readerGot() >= sent || readerGone() || sock.destroyed, wait))) wait = 0;
  }
}

/** Server-side connections by the client's port, handed to whoever waits for them. */
class Accepted<T> {
  private readonly byPort = new Map<number, T>();
  private readonly waiting = new Map<number, (v: T) => void>();

  add(port: number | undefined, v: T): void {
    if (port === undefined) return;
    const w = this.waiting.get(port);
    if (w !== undefined) {
      this.waiting.delete(port);
      w(v);
    } else this.byPort.set(port, v);
  }

  async take(port: number, ms: number): Promise<T | undefined> {
    const v = this.byPort.get(port);
    if (v !== undefined) {
      this.byPort.delete(port);
      return v;
    }
    let t: NodeJS.Timeout | undefined;
    const got = await new Promise<T | undefined>((r) => {
      this.waiting.set(port, r);
      t = setTimeout(() => { this.waiting.delete(port); r(undefined); }, ms);
    });
    clearTimeout(t);
    return got;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Requests: node:http's server and the waypoint's H1Server                                   */
/* ------------------------------------------------------------------------------------------ */

interface ServerConn {
  socket: Socket;
  rec: Recorder;
}

interface RequestSide {
  port: number;
  accepted: Accepted<ServerConn>;
  close(): Promise<void>;
}

/** Tracks a server's sockets so that close() can end them all. */
function tracked(): { add: (s: Socket) => void; destroyAll: () => void } {
  const all = new Set<Socket>();
  return {
    add: (s) => {
      all.add(s);
      s.on('close', () => all.delete(s));
    },
    destroyAll: () => { for (const s of all) s.destroy(); },
  };
}

/** Requests llhttp flagged as Upgrade (node:http sets `upgrade` back to false when nobody listens for 'upgrade'). */
const llhttpUpgrades = new WeakSet<object>();
const upgradeValues = new WeakMap<object, unknown>();

/**
 * node:http's IncomingMessage, remembering llhttp's own upgrade decision (its token rules are
 * subtle: `Connection: Upgrade ` is one, `Connection: Upgrade\t` is not).
 */
class UpgradeAwareMessage extends IncomingMessage {}
Object.defineProperty(UpgradeAwareMessage.prototype, 'upgrade', {
  configurable: true,
  get(this: object): unknown {
    return upgradeValues.get(this) ?? null;
  },
  set(this: object, v: unknown) {
    if (v === true) llhttpUpgrades.add(this);
    upgradeValues.set(this, v);
  },
});

/**
 * node:http's server with no 'upgrade' or 'connect' listener, as the waypoint has none either:
 * an Upgrade request is an ordinary request, after which llhttp reads no more (the comparison
 * stops there too); CONNECT closes the connection.
 */
async function nodeRequestSide(maxHeaderSize: number): Promise<RequestSide> {
  const accepted = new Accepted<ServerConn>();
  const conns = new WeakMap<object, ServerConn>();
  const sockets = tracked();
  const server = createHttpServer({ requireHostHeader: false, maxHeaderSize, IncomingMessage: UpgradeAwareMessage });
  server.on('connection', (socket: Socket) => {
    socket.on('error', noop);
    sockets.add(socket);
    const c: ServerConn = { socket, rec: new Recorder() };
    conns.set(socket, c);
    accepted.add(socket.remotePort, c);
  });
  server.on('request', (req: IncomingMessage, res) => {
    const c = conns.get(req.socket);
    if (c === undefined) return void req.socket.destroy();
    const m = c.rec.add(new Live(
      { method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, headers: { ...req.headers }, raw: [...req.rawHeaders], upgrade: llhttpUpgrades.has(req) },
      () => ({ complete: req.complete, trailers: req.trailers, rawTrailers: req.rawTrailers }),
    ));
    tapPush(req, m.chunks);
    req.on('error', noop);
    res.on('error', noop);
    req.on('end', () => {
      c.rec.version++;
      res.on('finish', () => { m.responded = true; c.rec.version++; });
      // An explicit length, as the waypoint's handler sends: without one node:http closes
      // every HTTP/1.0 connection after its answer, whatever llhttp's keep-alive decision.
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
    req.resume();
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    conns.get(socket)?.rec.error(err.code ?? err.message);
    socket.destroy();
  });
  const port = await listen(server);
  return {
    port,
    accepted,
    close: () => new Promise<void>((r) => { sockets.destroyAll(); server.close(() => r()); }),
  };
}

/** The waypoint's H1Server; an Upgrade request is answered like any other (no switchProtocols). */
async function waypointRequestSide(): Promise<RequestSide & { maxHeaderBytes: number }> {
  const accepted = new Accepted<ServerConn>();
  const conns = new WeakMap<object, ServerConn>();
  const sockets = tracked();
  const h1 = new H1Server({
    request: (req, res) => {
      const c = conns.get(req.socket);
      if (c === undefined) return void req.socket.destroy();
      const m = c.rec.add(new Live(
        { method: req.method, url: req.url, httpVersion: req.httpVersion, headers: { ...req.headers }, upgrade: req.upgrade !== undefined },
        () => ({ complete: req.complete, trailers: req.trailers }),
      ));
      // The body as the proxy reads it ('data'; early bytes of a pipelined request are pushed
      // before the request is handed over).
      req.on('data', (d: Buffer) => m.chunks.push(Buffer.from(d)));
      req.on('error', noop);
      req.on('end', () => {
        c.rec.version++;
        res.on('finish', () => { m.responded = true; c.rec.version++; });
        res.writeHead(200, { 'content-length': '2' });
        res.end('ok');
      });
    },
    refused: (stream, reason, status, detail) => conns.get(stream)?.rec.error(`${status} ${reason}: ${detail}`),
  });
  // Half-open like the HBONE streams the waypoint serves in production.
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', noop);
    sockets.add(socket);
    const c: ServerConn = { socket, rec: new Recorder() };
    conns.set(socket, c);
    accepted.add(socket.remotePort, c);
    h1.serve(socket);
  });
  const port = await listen(server);
  return {
    port,
    accepted,
    maxHeaderBytes: h1.maxHeaderBytes,
    close: () => new Promise<void>((r) => { h1.close(); sockets.destroyAll(); server.close(() => r()); }),
  };
}

async function driveRequest(side: RequestSide, pieces: Buffer[], total: number): Promise<Observed> {
  const client = connect({ host: HOST, port: side.port, noDelay: true });
  client.on('error', noop);
  client.resume(); // the answers are not compared, only what the servers recorded
  const clientClosed = closed(client);
  await bounded(new Promise<void>((r) => { client.once('connect', () => r()); client.once('close', () => r()); }), ACCEPT_MS);
  const conn = client.localPort === undefined ? undefined : await side.accepted.take(client.localPort, ACCEPT_MS);
  if (conn === undefined) {
    client.destroy();
    return { messages: [], errors: ['connection not accepted'], timedOut: true };
  }
  const { socket, rec } = conn;
  const serverClosed = closed(socket);
  const gone = () => socket.destroyed || socket.closed;
  await writePieces(client, pieces, () => socket.bytesRead, gone);
  // Settle: every byte read, every complete request answered, and nothing changed since (or
  // nothing changed for STALL_MS: a server that stopped reading).
  let last = -1;
  let stable = 0;
  let since = Date.now();
  const end = Date.now() + SETTLE_MS;
  while (!gone() && Date.now() < end) {
    const ready = socket.bytesRead >= total && rec.idle();
    const v = rec.version + socket.bytesRead;
    if (v !== last) since = Date.now();
    stable = ready && v === last ? stable + 1 : 0;
    if (stable >= 2 || Date.now() - since > STALL_MS) break;
    last = v;
    await sleep(2);
  }
  client.end();
  const ok = await bounded(Promise.all([clientClosed, serverClosed]), CLOSE_MS);
  if (!ok) {
    client.destroy();
    socket.destroy();
  }
  await turn();
  await turn();
  return rec.observed(!ok);
}

/** Runs request cases through node:http and the waypoint's H1Server side by side. */
export class RequestDifferential {
  private constructor(private readonly node: RequestSide, private readonly waypoint: RequestSide) {}

  static async start(): Promise<RequestDifferential> {
    const waypoint = await waypointRequestSide();
    return new RequestDifferential(await nodeRequestSide(waypoint.maxHeaderBytes), waypoint);
  }

  async run(c: WireCase): Promise<Pair> {
    const pieces = piecesOf(c);
    const [node, waypoint] = await Promise.all([driveRequest(this.node, pieces, c.bytes.length), driveRequest(this.waypoint, pieces, c.bytes.length)]);
    return { node, waypoint };
  }

  async close(): Promise<void> {
    await Promise.all([this.node.close(), this.waypoint.close()]);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Responses: node:http's client and the waypoint's H1Pool against a raw server               */
/* ------------------------------------------------------------------------------------------ */

interface Job {
  pieces: Buffer[];
  /** The client's socket, whose bytesRead paces the pieces. */
  client: Socket;
}

/** Runs response cases through node:http's client and the waypoint's H1Pool side by side. */
export class ResponseDifferential {
  private readonly jobs = new Map<number, Job>();
  private readonly sockets = tracked();
  /** The pool's default head limit, which node's client gets too. */
  private readonly maxHeadBytes = new H1Pool({ open: () => Promise.reject(new Error('unused')) }).maxHeadBytes;

  private constructor(private readonly raw: Server, private readonly port: number) {}

  static async start(): Promise<ResponseDifferential> {
    let self: ResponseDifferential | undefined;
    const raw = createServer((s) => self?.serveRaw(s));
    const port = await listen(raw);
    self = new ResponseDifferential(raw, port);
    return self;
  }

  /** The raw upstream: reads the request head, then writes the case's pieces and closes. */
  private serveRaw(s: Socket): void {
    s.on('error', noop);
    this.sockets.add(s);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      s.resume();
      void (async () => {
        const port = s.remotePort;
        let job: Job | undefined;
        await until(() => (job = port === undefined ? undefined : this.jobs.get(port)) !== undefined || s.destroyed, 1_000);
        if (job === undefined) return void s.destroy();
        const client = job.client;
        await writePieces(s, job.pieces, () => client.bytesRead, () => client.destroyed || client.closed);
        s.end();
      })();
    };
    s.on('data', onData);
  }

  private register(sock: Socket, pieces: Buffer[]): void {
    sock.on('error', noop);
    sock.once('connect', () => {
      if (sock.localPort !== undefined) this.jobs.set(sock.localPort, { pieces, client: sock });
    });
    sock.once('close', () => {
      for (const [k, v] of this.jobs) if (v.client === sock) this.jobs.delete(k);
    });
  }

  async run(c: WireCase): Promise<Pair> {
    const pieces = piecesOf(c);
    const method = c.method ?? 'GET';
    const [node, waypoint] = await Promise.all([this.viaNode(method, pieces), this.viaWaypoint(method, pieces)]);
    return { node, waypoint };
  }

  /** node:http's client, with the head limit of the pool (`maxHeadBytes`). */
  private async viaNode(method: string, pieces: Buffer[]): Promise<Observed> {
    const errors: string[] = [];
    let live: Live | undefined;
    let sock: Socket | undefined;
    const done = new Promise<void>((resolveDone) => {
      const req = httpRequest({
        host: HOST, port: this.port, method, path: '/', maxHeaderSize: this.maxHeadBytes,
        createConnection: () => {
          const s = connect({ host: HOST, port: this.port, noDelay: true });
          this.register(s, pieces);
          sock = s;
          return s;
        },
      });
      req.on('response', (res: IncomingMessage) => {
        const m = new Live(
          { status: res.statusCode ?? 0, headers: { ...res.headers }, raw: [...res.rawHeaders], upgrade: false },
          () => ({ complete: res.complete, trailers: res.trailers, rawTrailers: res.rawTrailers }),
        );
        live = m;
        tapPush(res, m.chunks);
        res.on('error', noop);
        res.resume();
      });
      req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
        errors.push(`upgrade ${res.statusCode}`);
        socket.destroy();
      });
      req.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
      req.on('close', () => resolveDone());
      req.end();
    });
    let ok = await bounded(done, RESPONSE_MS);
    if (sock !== undefined) ok = (await bounded(closed(sock), ok ? RESPONSE_MS : 10)) && ok;
    if (!ok) sock?.destroy();
    await turn();
    await turn();
    return { messages: live === undefined ? [] : [live.snapshot()], errors, timedOut: !ok };
  }

  private async viaWaypoint(method: string, pieces: Buffer[]): Promise<Observed> {
    const errors: string[] = [];
    let sock: Socket | undefined;
    let seen: Seen | undefined;
    const pool = new H1Pool({
      open: async () => {
        // Opened as production opens upstream sockets (reads into direct-read.ts's shared buffer).
        const s = connectDirect({ host: HOST, port: this.port });
        this.register(s, pieces);
        sock = s;
        await new Promise<void>((r, j) => {
          s.once('connect', () => r());
          s.once('error', j);
        });
        return s;
      },
    });
    // `send`, as the proxy calls it: the answer arrives synchronously, before its body can fail.
    const done = new Promise<void>((resolveDone) => {
      pool.send({ method, path: '/', authority: 'upstream.example', headers: {}, writeBody: undefined }, false, (r: H1Response) => {
        const m: Seen = { status: r.status, headers: { ...r.headers }, body: Buffer.alloc(0), complete: false, trailers: {}, upgrade: false };
        seen = m;
        if (r.complete !== undefined) {
          m.body = Buffer.from(r.complete);
          m.complete = true;
          return resolveDone();
        }
        const chunks: Buffer[] = [];
        r.body.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
        r.body.on('end', () => {
          m.complete = true;
          m.trailers = { ...(r.trailers() ?? {}) };
        });
        r.body.on('error', (e: Error) => errors.push(e.message));
        r.body.on('close', () => {
          m.body = Buffer.concat(chunks);
          resolveDone();
        });
      }, (e: Error) => {
        errors.push(e.message);
        resolveDone();
      });
    });
    let ok = await bounded(done, RESPONSE_MS);
    if (sock !== undefined) ok = (await bounded(closed(sock), ok ? RESPONSE_MS : 10)) && ok;
    pool.close();
    await turn();
    await turn();
    return { messages: seen === undefined ? [] : [seen], errors, timedOut: !ok };
  }

  async close(): Promise<void> {
    this.sockets.destroyAll();
    await new Promise<void>((r) => this.raw.close(() => r()));
  }
}

/* ------------------------------------------------------------------------------------------ */
/* The oracle                                                                                  */
/* ------------------------------------------------------------------------------------------ */

export interface Verdict {
  kind: 'same' | 'stricter' | 'fail';
  /** For `fail`: what differs; for `stricter`: what the waypoint refused. */
  reasons: string[];
  /** A short, stable label of the first reason (for counting). */
  label: string;
}

/** Headers whose value decides framing or routing: they must match node's joined value exactly. */
const EXACT = new Set(['content-length', 'transfer-encoding', 'host']);

function grouped(raw: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    const list = out.get(k) ?? [];
    list.push(raw[i + 1] as string);
    out.set(k, list);
  }
  return out;
}

const show = (v: unknown) => JSON.stringify(v);

/** Differences of a header-like map against node's raw list and node's joined object. */
function fieldDiffs(what: string, raw: readonly string[] | undefined, nodeJoined: Record<string, unknown>, theirs: Record<string, unknown>): string[] {
  const out: string[] = [];
  const byName = raw !== undefined ? grouped(raw) : new Map(Object.entries(nodeJoined).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : [String(v)]]));
  const names = new Set([...byName.keys(), ...Object.keys(theirs).filter((k) => theirs[k] !== undefined)]);
  for (const name of names) {
    const vals = byName.get(name);
    const w = theirs[name];
    if (vals === undefined) { out.push(`${what} ${name}: only the waypoint has it (${show(w)})`); continue; }
    if (w === undefined) { out.push(`${what} ${name}: only node has it (${show(vals)})`); continue; }
    if (EXACT.has(name)) {
      if (show(w) !== show(nodeJoined[name])) out.push(`${what} ${name}: waypoint ${show(w)}, node ${show(nodeJoined[name])}`);
      continue;
    }
    if (Array.isArray(w) || name === 'set-cookie') {
      if (show(w) !== show(vals)) out.push(`${what} ${name}: waypoint ${show(w)}, node ${show(vals)}`);
      continue;
    }
    const ok = [vals.join(', '), vals.join('; '), vals[0], vals[vals.length - 1], nodeJoined[name]].some((x) => x === w);
    if (!ok) out.push(`${what} ${name}: waypoint ${show(w)}, node ${show(vals.length === 1 ? vals[0] : vals)}`);
  }
  return out;
}

function headDiffs(n: Seen, w: Seen): string[] {
  const out: string[] = [];
  for (const k of ['method', 'url', 'httpVersion', 'status'] as const) {
    if (w[k] !== undefined && n[k] !== undefined && w[k] !== n[k]) out.push(`${k}: waypoint ${show(w[k])}, node ${show(n[k])}`);
  }
  if (n.upgrade !== w.upgrade) out.push(`upgrade: waypoint ${w.upgrade}, node ${n.upgrade}`);
  out.push(...fieldDiffs('header', n.raw, n.headers as Record<string, unknown>, w.headers as Record<string, unknown>));
  return out;
}

const isPrefix = (a: Buffer, b: Buffer) => a.length <= b.length && b.subarray(0, a.length).equals(a);

/** Compares what the two sides accepted; see the module header for the rules. */
export function compare(p: Pair): Verdict {
  const fail = (reasons: string[], label: string): Verdict => ({ kind: 'fail', reasons, label });
  const n = p.node.messages;
  const w = p.waypoint.messages;
  for (let i = 0; i < Math.max(n.length, w.length); i++) {
    const nm = n[i];
    const wm = w[i];
    const at = `message ${i + 1}`;
    if (wm === undefined) {
      const why = p.waypoint.errors[0] ?? (p.waypoint.timedOut ? 'timed out' : 'closed');
      const later = nm?.complete === false; // node took the head, then failed the body
      const what = later ? 'refused at the head what node failed in the body' : 'refused what node accepted';
      return { kind: 'stricter', reasons: [`${at}: the waypoint ${what}: ${why}`], label: `${later ? '(node failed later) ' : ''}${why.replace(/ ["{[].*$/, '').slice(0, 70)}` };
    }
    if (nm === undefined) {
      const why = p.node.errors[0] ?? (p.node.timedOut ? 'timed out' : 'closed');
      return fail([`${at}: the waypoint accepted a head that node refused (node: ${why})`], `accepted a head node refuses (${why})`);
    }
    const d = headDiffs(nm, wm);
    if (d.length > 0) return fail(d.map((x) => `${at}: ${x}`), `head differs: ${(d[0] as string).replace(/ waypoint .*$/, '').replace(/:$/, '')}`);
    if (wm.complete && nm.complete) {
      if (!wm.body.equals(nm.body)) return fail([`${at}: body: waypoint ${show(wm.body.toString('latin1'))}, node ${show(nm.body.toString('latin1'))}`], 'body differs');
      const t = fieldDiffs('trailer', nm.rawTrailers, nm.trailers, wm.trailers);
      if (t.length > 0) return fail(t.map((x) => `${at}: ${x}`), 'trailers differ');
      // After an Upgrade request llhttp reads nothing more; the waypoint goes on once it was
      // answered without switching (a 200 here). What follows is not compared.
      if (nm.upgrade) return { kind: 'same', reasons: [], label: 'same' };
      continue;
    }
    if (wm.complete) {
      return fail([`${at}: the waypoint completed a body node failed (node: ${p.node.errors[0] ?? 'closed'}; waypoint body ${show(wm.body.toString('latin1'))}, node got ${show(nm.body.toString('latin1'))})`], `completed a body node refuses (${p.node.errors[0] ?? 'closed'})`);
    }
    if (!isPrefix(wm.body, nm.body) && !isPrefix(nm.body, wm.body)) {
      return fail([`${at}: body bytes diverge: waypoint ${show(wm.body.toString('latin1'))}, node ${show(nm.body.toString('latin1'))}`], 'body bytes diverge');
    }
    if (nm.complete) {
      const why = p.waypoint.errors[0] ?? (p.waypoint.timedOut ? 'timed out' : 'closed');
      return { kind: 'stricter', reasons: [`${at}: the waypoint failed a body node accepted: ${why}`], label: `body: ${why.replace(/ ["{[].*$/, '').slice(0, 60)}` };
    }
    return { kind: 'same', reasons: [], label: 'same' }; // both stopped inside this body
  }
  return { kind: 'same', reasons: [], label: 'same' };
}

/** A failure with everything needed to reproduce and understand it. */
export function explain(c: WireCase, p: Pair, v: Verdict): string {
  const side = (o: Observed) =>
    `${o.messages.length} message(s) [${o.messages.map((m) => `${m.method ?? m.status} ${m.url ?? ''} body=${show(m.body.toString('latin1'))}${m.complete ? '' : ' (incomplete)'}`).join('; ')}]` +
    `${o.errors.length > 0 ? `, errors ${show(o.errors)}` : ''}${o.timedOut ? ', TIMED OUT' : ''}`;
  return [`${v.kind}: ${v.label}`, `  input:    ${describeCase(c)}`, ...v.reasons.map((r) => `  ${r}`), `  node:     ${side(p.node)}`, `  waypoint: ${side(p.waypoint)}`].join('\n');
}

/** Counts verdicts; keeps the first example of each stricter/fail label. */
export class Tally {
  runs = 0;
  same = 0;
  readonly stricter = new Map<string, { count: number; example: string }>();
  readonly failures = new Map<string, { count: number; example: string }>();
  /** Cases where the waypoint's connection did not close in time after the peer's FIN and node's did (not a FAIL: timing). */
  readonly hangs: string[] = [];
  /** Set by the first failure: fast-check's shrinking runs after it are not counted. */
  frozen = false;

  add(c: WireCase, p: Pair, v: Verdict): void {
    if (this.frozen) return;
    this.runs++;
    if (p.waypoint.timedOut && !p.node.timedOut) this.hangs.push(explain(c, p, { ...v, label: `${v.label}, but the waypoint's connection stayed open` }));
    if (v.kind === 'same') { this.same++; return; }
    const into = v.kind === 'stricter' ? this.stricter : this.failures;
    const e = into.get(v.label);
    if (e === undefined) into.set(v.label, { count: 1, example: explain(c, p, v) });
    else e.count++;
  }

  get stricterCount(): number {
    let n = 0;
    for (const e of this.stricter.values()) n += e.count;
    return n;
  }

  summary(title: string): string {
    const lines = [`${title}: ${this.runs} cases, ${this.same} equivalent, ${this.stricterCount} where the waypoint is stricter than node, ${[...this.failures.values()].reduce((a, e) => a + e.count, 0)} failing`];
    for (const [label, e] of [...this.stricter].sort((a, b) => b[1].count - a[1].count)) lines.push(`  stricter x${e.count}: ${label}`);
    if (this.hangs.length > 0) {
      lines.push(`  ${this.hangs.length} case(s) where the waypoint's connection stayed open after the peer closed (node's closed); the first:`);
      lines.push((this.hangs[0] as string).replace(/^/gm, '    '));
    }
    return lines.join('\n');
  }
}

/** The property both runners check: no case may be a FAIL. */
export function differentialProperty(arb: fc.Arbitrary<WireCase>, diff: { run: (c: WireCase) => Promise<Pair> }, tally: Tally): fc.IAsyncPropertyWithHooks<[WireCase]> {
  return fc.asyncProperty(arb, async (c) => {
    const p = await diff.run(c);
    const v = compare(p);
    tally.add(c, p, v);
    if (v.kind === 'fail') {
      tally.frozen = true;
      throw new Error(explain(c, p, v));
    }
  });
}
