/**
 * The waypoint's HTTP/1.1 client toward one endpoint: a keep-alive pool of connections over any
 * byte stream the connector opens (HBONE CONNECT streams, plain sockets), with its own small
 * response parser. It replaces node:http's ClientRequest and Agent on the hot path, which cost
 * more CPU per request than the rest of the waypoint together (streams, header validation,
 * agent bookkeeping, a socket per request re-wired on every reuse).
 *
 * Invariants:
 * - One request at a time per connection, never pipelined; a connection goes back to the pool
 *   only when its request body was sent completely, its response was read completely, and
 *   neither side asked to close (HTTP/1.0 without keep-alive, `connection: close`, a
 *   close-delimited body).
 * - Request framing is unambiguous: a body with a known `content-length` goes as is, any other
 *   body chunked; header names and values are checked for characters that would let a value
 *   inject headers (CR, LF, NUL) before anything is written.
 * - Responses are parsed strictly: a malformed status line, header, chunk size, or a
 *   `content-length` that is not one decimal number, or a head over `maxHeadBytes`, fails the
 *   request (`reset`) and the connection is discarded. 1xx interim answers are skipped; HEAD,
 *   204 and 304 answers have no body.
 * - Backpressure: the response body is a Readable; while it is not read the connection is paused.
 *   A body that arrived whole with its head (empty or length-framed) is handed over as one
 *   buffer (`complete`) instead, and the connection goes back to the pool at once; bytes past
 *   the end of an answer mean the connection is never reused.
 * - Request heads are written through write-batch.ts (sent at the end of the event-loop turn).
 * - A socket opened by direct-read.ts is read without the stream layer: each read is a view of
 *   a shared buffer, so everything kept past the read (a partial head or chunk line, a whole
 *   body, body chunks pushed to the stream) is copied first.
 * - Every failure is reported once, with `beforeResponse` telling whether any response byte had
 *   arrived (a reused connection closed by the server while idle is a race to retry, not an
 *   endpoint failure).
 */
import { Readable, Writable, type Duplex } from 'node:stream';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { takeReads } from './direct-read.js';
import { headerName, isToken } from './header-names.js';
import { holdWrites } from './write-batch.js';

/** What a request needs on the wire. */
export interface H1Request {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Lower-case names, no hop-by-hop headers (the client writes `host` and framing itself). */
  readonly headers: OutgoingHttpHeaders;
  /** Writes the body to the given stream and ends it; false when it could not (absent: no body). */
  readonly writeBody: ((dst: Writable) => boolean) | undefined;
}

/** Why a request failed. */
export class H1Failure extends Error {
  constructor(
    /** `connect-failure`: no connection could be opened; `reset`: anything after that. */
    readonly kind: 'connect-failure' | 'reset',
    message: string,
    /** No response byte had arrived on a connection that served requests before. */
    readonly staleReuse: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'H1Failure';
  }
}

export interface H1Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * The whole body, when it arrived together with the head (an empty or length-framed body
   * already read): the exchange is over and `body` need not be read. Undefined otherwise.
   */
  readonly complete: Buffer | undefined;
  /** The body as a stream (made on first use when `complete` is set). */
  readonly body: Readable;
  /** Always false: HTTP/1.1 has no HEADERS-with-END_STREAM (kept so HTTP/1.1 and HTTP/2 answers read alike). */
  readonly endAfterHeaders: false;
  /** Trailers of a chunked body, once `body` ended. */
  trailers(): Record<string, string> | undefined;
  /** Drops the response; the connection is closed, never reused. */
  abort(): void;
}

export interface H1PoolOptions {
  /** Opens a new byte stream to the endpoint. */
  open: () => Promise<Duplex>;
  /** Idle connections kept (default 256). */
  maxIdle?: number;
  /** Idle connections close after this many ms (default 60,000). */
  idleTimeoutMs?: number;
  /** Largest response head accepted, bytes (default 65,536). */
  maxHeadBytes?: number;
}

const BAD_VALUE = /[\r\n\0]/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,15})(?:[ \t]*;.*)?$/;
const EMPTY = Buffer.alloc(0);
/** Methods whose empty body goes without `content-length: 0` (what node:http does too). */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/** Serialises the request head; throws H1Failure on a header that cannot be written safely. */
function requestHead(req: H1Request, chunked: boolean, emptyBody: boolean): string {
  if (!isToken(req.method) || BAD_VALUE.test(req.path) || req.path.includes(' ') || BAD_VALUE.test(req.authority)) {
    throw new H1Failure('reset', `invalid upstream request line ${JSON.stringify(`${req.method} ${req.path}`)}`, false);
  }
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n`;
  let hasLength = false;
  for (const name in req.headers) {
    const v = req.headers[name];
    if (v === undefined) continue;
    if (headerName(name) === undefined) throw new H1Failure('reset', `invalid upstream header name ${JSON.stringify(name)}`, false);
    if (name === 'content-length') {
      if (chunked) continue;
      hasLength = true;
    }
    if (typeof v === 'string') {
      if (BAD_VALUE.test(v)) throw new H1Failure('reset', `invalid value of upstream header ${name}`, false);
      head += `${name}: ${v}\r\n`;
    } else if (typeof v === 'number') {
      head += `${name}: ${v}\r\n`;
    } else {
      for (const x of v) {
        if (BAD_VALUE.test(x)) throw new H1Failure('reset', `invalid value of upstream header ${name}`, false);
        head += `${name}: ${x}\r\n`;
      }
    }
  }
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  else if (emptyBody && !hasLength && !NO_BODY_METHODS.has(req.method)) head += 'content-length: 0\r\n';
  return head + '\r\n';
}

/** Adds one parsed header line to a node-style header object (set-cookie an array, others joined). */
function addHeader(h: IncomingHttpHeaders, line: string): boolean {
  const colon = line.indexOf(':');
  if (colon <= 0) return false;
  const name = headerName(line.slice(0, colon));
  if (name === undefined) return false;
  const value = line.slice(colon + 1).trim();
  const cur = h[name];
  if (cur === undefined) h[name] = name === 'set-cookie' ? [value] : value;
  else if (Array.isArray(cur)) cur.push(value);
  else h[name] = `${cur}, ${value}`;
  return true;
}

class ResponseBody extends Readable {
  constructor(private readonly conn: H1Connection) {
    super();
  }

  override _read(): void {
    this.conn.resumeFromBody();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.bodyDestroyed();
    cb(err);
  }
}

/** A response as the pool hands it out; its body stream is made only if it is asked for. */
class Response implements H1Response {
  /** HTTP/1.1 has no HEADERS-with-END_STREAM (the proxy reads HTTP/1.1 and HTTP/2 answers alike). */
  readonly endAfterHeaders = false;

  constructor(
    readonly status: number,
    readonly headers: IncomingHttpHeaders,
    readonly complete: Buffer | undefined,
    private stream: Readable | undefined,
    private readonly ex: Exchange,
    private readonly conn: H1Connection,
  ) {}

  get body(): Readable {
    if (this.stream === undefined) {
      const r = new Readable({ read() {} });
      if (this.complete !== undefined && this.complete.length > 0) r.push(this.complete);
      r.push(null);
      this.stream = r;
    }
    return this.stream;
  }

  trailers(): Record<string, string> | undefined {
    return this.ex.trailers;
  }

  abort(): void {
    this.conn.abandon(this.ex);
    if (this.stream !== undefined && !this.stream.destroyed) this.stream.destroy();
  }
}

type BodyMode = 'none' | 'length' | 'chunked' | 'close';
type ChunkState = 'size' | 'data' | 'data-crlf' | 'trailers';

interface Exchange {
  readonly resolve: (r: H1Response) => void;
  readonly reject: (e: H1Failure) => void;
  readonly head: boolean;
  responded: boolean;
  gotBytes: boolean;
  requestDone: boolean;
  responseDone: boolean;
  body: ResponseBody | undefined;
  trailers: Record<string, string> | undefined;
}

/** One upstream connection; serves one exchange at a time. */
class H1Connection {
  private ex: Exchange | undefined;
  private buf: Buffer = EMPTY;
  private mode: BodyMode = 'none';
  private remaining = 0;
  private chunk: ChunkState = 'size';
  private keepAlive = true;
  private headParsed = false;
  private closed = false;
  private sink: Writable | undefined;
  /** The bytes being parsed may be a view of direct-read.ts's shared buffer (copy to keep). */
  private viewing = false;
  /** Reads arrive as views of a shared buffer (a direct-read socket). */
  private readonly direct: boolean;
  served = 0;
  idleSince = 0;

  constructor(readonly sock: Duplex, private readonly pool: H1Pool) {
    this.direct = takeReads(sock, (view) => this.onData(view));
    if (!this.direct) sock.on('data', (c: Buffer) => this.onData(c));
    sock.on('end', () => this.onEnd());
    sock.on('error', (err: Error) => this.fail(`upstream connection error: ${(err as Error & { code?: string }).code ?? err.message}`, err));
    sock.on('close', () => this.fail('upstream closed the connection'));
  }

  /** Starts an exchange on this (idle) connection. */
  start(req: H1Request, resolve: (r: H1Response) => void, reject: (e: H1Failure) => void): void {
    const hasBody = req.writeBody !== undefined;
    const chunked = hasBody && req.headers['content-length'] === undefined;
    let head: string;
    try {
      head = requestHead(req, chunked, !hasBody);
    } catch (err) {
      this.pool.release(this);
      reject(err as H1Failure);
      return;
    }
    this.ex = { resolve, reject, head: req.method === 'HEAD', responded: false, gotBytes: false, requestDone: !hasBody, responseDone: false, body: undefined, trailers: undefined };
    this.buf = EMPTY;
    this.headParsed = false;
    this.keepAlive = true;
    this.sock.resume();
    holdWrites(this.sock);
    this.sock.write(head, 'latin1');
    if (req.writeBody !== undefined) {
      const sock = this.sock;
      const ex = this.ex;
      const sink = new Writable({
        write: (c: Buffer, _enc, cb) => {
          if (c.length === 0) return cb();
          let ok: boolean;
          if (chunked) {
            sock.write(`${c.length.toString(16)}\r\n`);
            sock.write(c);
            ok = sock.write('\r\n');
          } else {
            ok = sock.write(c);
          }
          if (ok) cb();
          else sock.once('drain', () => cb());
        },
        final: (cb) => {
          if (chunked) sock.write('0\r\n\r\n');
          ex.requestDone = true;
          cb();
          if (this.ex === ex) this.maybeDone();
        },
      });
      sink.on('error', () => {});
      this.sink = sink;
      if (!req.writeBody(sink)) {
        this.ex = undefined;
        this.destroy();
        reject(new H1Failure('reset', 'request body can no longer be replayed', false));
      }
    }
  }

  resumeFromBody(): void {
    if (!this.closed) this.sock.resume();
  }

  /** The consumer dropped the body before its end: the connection cannot be reused. */
  bodyDestroyed(): void {
    const ex = this.ex;
    if (ex !== undefined && ex.responded && !ex.responseDone) {
      this.ex = undefined;
      this.destroy();
    }
  }

  private onData(c: Buffer): void {
    const ex = this.ex;
    if (ex === undefined) {
      // Bytes on an idle connection: the server is confused or closing; never reuse it.
      this.destroy();
      return;
    }
    ex.gotBytes = true;
    this.viewing = this.direct && this.buf.length === 0;
    const data = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    this.buf = EMPTY;
    try {
      this.parse(data, ex);
    } finally {
      this.viewing = false;
    }
  }

  /** A buffer to keep past the current read (a copy when the read is a shared view). */
  private keep(b: Buffer): Buffer {
    return this.viewing && b.length > 0 ? Buffer.from(b) : b;
  }

  private parse(input: Buffer, ex: Exchange): void {
    let data = input;
    while (data.length > 0 && this.ex === ex) {
      if (!this.headParsed) {
        const end = data.indexOf('\r\n\r\n');
        if (end === -1) {
          if (data.length > this.pool.maxHeadBytes) return this.fail(`upstream response head is over ${this.pool.maxHeadBytes} bytes`);
          this.buf = this.keep(data);
          return;
        }
        const rest = data.subarray(end + 4);
        const used = this.parseHead(data.toString('latin1', 0, end), ex, rest);
        if (used < 0) return;
        data = used === 0 ? rest : rest.subarray(used);
        continue;
      }
      data = this.onBody(data, ex);
    }
    // Bytes past the end of a finished response: never reuse a connection that does this.
    if (data.length > 0 && this.ex !== ex && !this.closed) this.destroy();
  }

  /**
   * Parses a response head with `rest`, the bytes after it; returns how many of those it took
   * as the whole body (0 when none or the body streams), -1 when the exchange failed.
   */
  private parseHead(text: string, ex: Exchange, rest: Buffer): number {
    const lines = text.split('\r\n');
    const m = STATUS_LINE.exec(lines[0] ?? '');
    if (m === null) {
      this.fail(`upstream sent a malformed status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
      return -1;
    }
    const status = Number(m[2]);
    const headers: IncomingHttpHeaders = {};
    for (let i = 1; i < lines.length; i++) {
      if (!addHeader(headers, lines[i] as string)) {
        this.fail(`upstream sent a malformed header line ${JSON.stringify((lines[i] as string).slice(0, 80))}`);
        return -1;
      }
    }
    if (status < 200) {
      if (status === 101) {
        this.fail('upstream switched protocols on a plain request');
        return -1;
      }
      return 0; // 100 Continue and other interim answers: wait for the final one
    }
    this.headParsed = true;
    const conn = headers.connection;
    const tokens = typeof conn === 'string' ? conn.toLowerCase() : '';
    this.keepAlive = m[1] === '1' ? !tokens.includes('close') : tokens.includes('keep-alive');
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    if (ex.head || status === 204 || status === 304) this.mode = 'none';
    else if (te !== undefined) {
      if (!/(?:^|,)\s*chunked\s*$/i.test(te)) {
        this.mode = 'close';
        this.keepAlive = false;
      } else {
        this.mode = 'chunked';
        this.chunk = 'size';
      }
    } else if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) {
        this.fail(`upstream sent an invalid content-length ${JSON.stringify(cl.slice(0, 40))}`);
        return -1;
      }
      this.remaining = Number(cl);
      this.mode = this.remaining === 0 ? 'none' : 'length';
    } else {
      this.mode = 'close';
      this.keepAlive = false;
    }
    ex.responded = true;
    // A small answer usually arrives whole with its head: hand it over as one buffer, without
    // a body stream and its per-response bookkeeping.
    let complete: Buffer | undefined;
    let used = 0;
    if (this.mode === 'none') complete = EMPTY;
    else if (this.mode === 'length' && rest.length >= this.remaining) {
      used = this.remaining;
      complete = this.keep(used === rest.length ? rest : rest.subarray(0, used));
      this.remaining = 0;
    }
    const body = complete === undefined ? new ResponseBody(this) : undefined;
    ex.body = body;
    ex.resolve(new Response(status, headers, complete, body, ex, this));
    if (complete !== undefined) this.bodyEnd(ex);
    return used;
  }

  /** The consumer dropped the response: the connection is closed unless the exchange was over. */
  abandon(ex: Exchange): void {
    if (this.ex === ex && !(ex.requestDone && ex.responseDone)) {
      this.ex = undefined;
      this.destroy();
    }
  }

  /** Consumes body bytes; returns what is left over (or EMPTY). */
  private onBody(data: Buffer, ex: Exchange): Buffer {
    const body = ex.body as ResponseBody;
    switch (this.mode) {
      case 'length': {
        const n = Math.min(this.remaining, data.length);
        this.push(body, n === data.length ? data : data.subarray(0, n));
        this.remaining -= n;
        if (this.remaining === 0) this.bodyEnd(ex);
        return n === data.length ? EMPTY : data.subarray(n);
      }
      case 'close':
        this.push(body, data);
        return EMPTY;
      case 'chunked':
        return this.onChunked(data, ex, body);
      case 'none':
        // Bytes past the end of a response: never reuse a connection that does this.
        this.keepAlive = false;
        this.destroy();
        return EMPTY;
    }
  }

  private onChunked(data: Buffer, ex: Exchange, body: ResponseBody): Buffer {
    let d = data;
    while (d.length > 0 && this.ex === ex) {
      if (this.chunk === 'data') {
        const n = Math.min(this.remaining, d.length);
        this.push(body, n === d.length ? d : d.subarray(0, n));
        this.remaining -= n;
        d = n === d.length ? EMPTY : d.subarray(n);
        if (this.remaining === 0) this.chunk = 'data-crlf';
        continue;
      }
      if (this.chunk === 'data-crlf') {
        if (d.length < 2) {
          this.buf = this.keep(d);
          return EMPTY;
        }
        if (d[0] !== 13 || d[1] !== 10) {
          this.fail('upstream sent a malformed chunked body');
          return EMPTY;
        }
        d = d.subarray(2);
        this.chunk = 'size';
        continue;
      }
      const eol = d.indexOf('\r\n');
      if (eol === -1) {
        if (d.length > 4096) this.fail('upstream sent an over-long chunk line');
        else this.buf = this.keep(d);
        return EMPTY;
      }
      const line = d.toString('latin1', 0, eol);
      d = d.subarray(eol + 2);
      if (this.chunk === 'size') {
        const m = CHUNK_SIZE.exec(line);
        if (m === null) {
          this.fail(`upstream sent a malformed chunk size ${JSON.stringify(line.slice(0, 40))}`);
          return EMPTY;
        }
        this.remaining = parseInt(m[1] as string, 16);
        this.chunk = this.remaining === 0 ? 'trailers' : 'data';
        continue;
      }
      // trailers
      if (line === '') {
        this.bodyEnd(ex);
        if (d.length > 0) {
          this.keepAlive = false;
          this.destroy();
        }
        return EMPTY;
      }
      const t: IncomingHttpHeaders = {};
      if (!addHeader(t, line)) {
        this.fail('upstream sent a malformed trailer');
        return EMPTY;
      }
      ex.trailers ??= {};
      for (const [k, v] of Object.entries(t)) if (v !== undefined) ex.trailers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    return EMPTY;
  }

  private push(body: ResponseBody, c: Buffer): void {
    if (!body.destroyed && !body.push(this.keep(c))) this.sock.pause();
  }

  private bodyEnd(ex: Exchange): void {
    ex.responseDone = true;
    const body = ex.body;
    if (body !== undefined && !body.destroyed) body.push(null);
    this.headParsed = false;
    this.mode = 'none';
    this.maybeDone();
  }

  /** The exchange is over when the request went out completely and the response came in. */
  private maybeDone(): void {
    const ex = this.ex;
    if (ex === undefined || !ex.requestDone || !ex.responseDone) return;
    this.ex = undefined;
    this.sink = undefined;
    this.served++;
    if (this.keepAlive && !this.closed) this.pool.release(this);
    else this.destroy();
  }

  private onEnd(): void {
    const ex = this.ex;
    if (ex !== undefined && ex.responded && this.mode === 'close' && ex.body !== undefined) {
      this.keepAlive = false;
      this.bodyEnd(ex);
      return;
    }
    this.fail('upstream closed the connection');
  }

  /** Fails the current exchange (if any) and discards the connection. */
  private fail(reason: string, cause?: Error): void {
    const ex = this.ex;
    this.ex = undefined;
    this.destroy();
    if (ex === undefined) return;
    const err = new H1Failure('reset', reason, !ex.gotBytes && this.served > 0, cause !== undefined ? { cause } : undefined);
    if (!ex.responded) ex.reject(err);
    else if (ex.body !== undefined && !ex.body.destroyed && !ex.body.readableEnded) ex.body.destroy(err);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    this.sink?.destroy();
    this.sock.destroy();
    if (this.ex !== undefined) this.fail('upstream connection closed');
  }
}

/** Keep-alive HTTP/1.1 connections to one endpoint. */
export class H1Pool {
  private readonly idle: H1Connection[] = [];
  private readonly all = new Set<H1Connection>();
  readonly maxHeadBytes: number;
  private readonly maxIdle: number;
  private readonly idleTimeoutMs: number;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: H1PoolOptions) {
    this.maxHeadBytes = o.maxHeadBytes ?? 65_536;
    this.maxIdle = o.maxIdle ?? 256;
    this.idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  }

  /** Connections open (idle or busy). */
  get size(): number {
    return this.all.size;
  }

  /**
   * Sends one request; resolves at the response head. A request that fails on a reused
   * connection before any response byte is sent once more on a fresh connection when
   * `retryStale` allows it (its body can be written again).
   */
  request(req: H1Request, retryStale: boolean): Promise<H1Response> {
    return new Promise((resolve, reject) => this.send(req, retryStale, resolve, reject));
  }

  /** `request` with callbacks: exactly one of them is called, once. */
  send(req: H1Request, retryStale: boolean, resolve: (r: H1Response) => void, reject: (e: H1Failure) => void): void {
    const conn = this.idle.pop();
    if (conn === undefined) {
      this.fresh(req, resolve, reject);
      return;
    }
    conn.start(req, resolve, retryStale ? (err) => (err.staleReuse ? this.fresh(req, resolve, reject) : reject(err)) : reject);
  }

  private fresh(req: H1Request, resolve: (r: H1Response) => void, reject: (e: H1Failure) => void): void {
    if (this.closed) {
      reject(new H1Failure('connect-failure', 'waypoint is closing', false));
      return;
    }
    this.o.open().then(
      (sock) => {
        if (this.closed) {
          sock.destroy();
          reject(new H1Failure('connect-failure', 'waypoint is closing', false));
          return;
        }
        const conn = new H1Connection(sock, this);
        this.all.add(conn);
        conn.start(req, resolve, reject);
      },
      (err: Error) => reject(new H1Failure('connect-failure', err.message, false, { cause: err })),
    );
  }

  /** A connection whose exchange is over and that may be reused. */
  release(conn: H1Connection): void {
    if (this.closed || this.idle.length >= this.maxIdle) {
      conn.destroy();
      return;
    }
    conn.idleSince = Date.now();
    conn.sock.resume();
    this.idle.push(conn);
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(250, Math.floor(this.idleTimeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  forget(conn: H1Connection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  private sweep(): void {
    const limit = Date.now() - this.idleTimeoutMs;
    for (const c of [...this.idle]) if (c.idleSince <= limit) c.destroy();
    if (this.idle.length === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Closes every connection, idle or busy. */
  close(): void {
    this.closed = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const c of [...this.all]) c.destroy();
  }
}
