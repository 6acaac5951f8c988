/**
 * The waypoint's HTTP/1.1 client toward one endpoint: a keep-alive pool of connections over any
 * byte stream the connector opens (HBONE CONNECT streams, plain sockets). Responses are framed
 * by llhttp (llhttp.ts: node:http's parser, strict). It replaces node:http's ClientRequest and
 * Agent on the hot path, which cost more CPU per request than the rest of the waypoint together
 * (streams, header validation, agent bookkeeping, a socket per request re-wired on every reuse).
 *
 * Invariants:
 * - One request at a time per connection, never pipelined; a connection goes back to the pool
 *   only when its request body was sent completely, its response was read completely, and
 *   llhttp's keep-alive decision allows it (HTTP/1.0, `connection: close`, a close-delimited
 *   body never are).
 * - Request framing is unambiguous: a body with a known `content-length` goes as is, any other
 *   body chunked; header names and values are checked for characters that would let a value
 *   inject headers (CR, LF, NUL) before anything is written.
 * - Where a response ends is llhttp's decision; on top the client refuses (the request fails
 *   with `reset`, the connection is discarded) a repeated `transfer-encoding` or
 *   `content-length`, a coding other than chunked, more than 100 header lines, a head or trailer
 *   section over `maxHeadBytes`, a 101 nobody asked for, and any byte of a response nobody
 *   asked for. 1xx interim answers are skipped; HEAD, 204 and 304 answers have no body.
 * - Backpressure: the response body is a Readable; while it is not read the connection is paused.
 *   A length-framed body that arrived whole in the read of its head is handed over as one buffer
 *   (`complete`) instead, and the connection goes back to the pool at once.
 * - Request heads are written through write-batch.ts (sent at the end of the event-loop turn).
 * - A socket opened by direct-read.ts is read without the stream layer: each read is a view of a
 *   shared buffer, which llhttp never keeps (its body chunks and header strings are copies).
 * - Every failure is reported once, with `staleReuse` telling whether no response byte had
 *   arrived on a reused connection (a connection closed by the server while idle is a race to
 *   retry, not an endpoint failure).
 * - An upgrade goes on a connection of its own; on a 101 the socket leaves the client (no
 *   listener of the client stays on it) with the bytes that followed the head.
 */
import { Readable, Writable, type Duplex } from 'node:stream';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { takeReads } from './direct-read.js';
import { badHeaderValue, headerName, isToken } from './header-names.js';
import { Http1Parser, ParseFailure, type MessageHead } from './llhttp.js';
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
  /** Upgrade protocols to ask for (sent with `connection: upgrade`); only through `H1Pool.upgrade`. */
  readonly upgrade?: string;
}

/** Why a request failed. */
export class H1Failure extends Error {
  constructor(
    /** `connect-failure`: no connection could be opened; `protocol`: a response refused; `reset`: anything else after that. */
    readonly kind: 'connect-failure' | 'reset' | 'protocol',
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
  /** A 101 to an upgrade: the connection, now the caller's, and the bytes that followed the head. */
  readonly switched?: { readonly socket: Duplex; readonly head: Buffer } | undefined;
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

/** A request target is visible ASCII only (llhttp's strict URL rule). */
const BAD_TARGET = /[^\x21-\x7e]|^$/;
const EMPTY = Buffer.alloc(0);
/** Methods whose empty body goes without `content-length: 0` (what node:http does too). */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
/** Most header lines in a response head or trailer section. */
const MAX_HEADER_COUNT = 100;

/** Serialises the request head; throws H1Failure on a header that cannot be written safely. */
function requestHead(req: H1Request, chunked: boolean, emptyBody: boolean): string {
  if (!isToken(req.method) || BAD_TARGET.test(req.path) || badHeaderValue(req.authority)) {
    throw new H1Failure('reset', `invalid upstream request line ${JSON.stringify(`${req.method} ${req.path}`.slice(0, 80))}`, false);
  }
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n`;
  let hasLength = false;
  for (const name in req.headers) {
    const v = req.headers[name];
    if (v === undefined) continue;
    if (headerName(name) === undefined) throw new H1Failure('reset', `invalid upstream header name ${JSON.stringify(name.slice(0, 60))}`, false);
    if (name === 'content-length') {
      if (chunked) continue;
      hasLength = true;
    }
    if (typeof v === 'string') {
      if (badHeaderValue(v)) throw new H1Failure('reset', `invalid value of upstream header ${name}`, false);
      head += `${name}: ${v}\r\n`;
    } else if (typeof v === 'number') {
      head += `${name}: ${v}\r\n`;
    } else {
      for (const x of v) {
        if (badHeaderValue(x)) throw new H1Failure('reset', `invalid value of upstream header ${name}`, false);
        head += `${name}: ${x}\r\n`;
      }
    }
  }
  if (req.upgrade !== undefined) {
    if (badHeaderValue(req.upgrade)) throw new H1Failure('reset', 'invalid upgrade protocol', false);
    head += `connection: upgrade\r\nupgrade: ${req.upgrade}\r\n`;
  }
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  else if (emptyBody && !hasLength && !NO_BODY_METHODS.has(req.method)) head += 'content-length: 0\r\n';
  return head + '\r\n';
}

/**
 * A response head's header lines as node-style headers (set-cookie an array, others joined);
 * a reason to fail for what llhttp allows but the waypoint will not relay.
 */
function responseHeaders(raw: readonly string[]): IncomingHttpHeaders | string {
  const h: IncomingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = headerName(raw[i] as string);
    if (name === undefined) return 'an invalid header name';
    const value = raw[i + 1] as string;
    const cur = h[name];
    if (cur === undefined) h[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'transfer-encoding' || name === 'content-length') return `more than one ${name} header`;
    else if (Array.isArray(cur)) cur.push(value);
    else h[name] = `${cur}, ${value}`;
  }
  const te = h['transfer-encoding'];
  // llhttp reads any other coding as close-delimited; the waypoint would relay it undecoded.
  if (te !== undefined && te.toLowerCase() !== 'chunked') return 'a transfer-encoding other than chunked';
  return h;
}

class ResponseBody extends Readable {
  constructor(private readonly conn: H1Connection) {
    super();
    // A failure before the proxy listens (it does once the response is handed over) never throws.
    this.on('error', () => {});
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
    readonly switched: { readonly socket: Duplex; readonly head: Buffer } | undefined = undefined,
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
    if (this.switched !== undefined) {
      this.switched.socket.destroy();
      return;
    }
    this.conn.abandon(this.ex);
    if (this.stream !== undefined && !this.stream.destroyed) this.stream.destroy();
  }
}

interface Exchange {
  readonly resolve: (r: H1Response) => void;
  readonly reject: (e: H1Failure) => void;
  readonly head: boolean;
  /** The Upgrade protocols asked for (a 101 answer is expected only then). */
  readonly upgrade: string | undefined;
  /** The final head arrived (status and headers), maybe not handed over yet. */
  status: number;
  headers: IncomingHttpHeaders | undefined;
  /** Body bytes of the current read, before the response is handed over. */
  early: Buffer[] | undefined;
  responded: boolean;
  gotBytes: boolean;
  requestDone: boolean;
  responseDone: boolean;
  /** The answer is 101: the socket is the caller's once handed over. */
  switching: boolean;
  body: ResponseBody | undefined;
  trailers: Record<string, string> | undefined;
}

/** Who keeps a connection between exchanges (a pool; an upgrade's owner discards it). */
interface ConnectionOwner {
  readonly maxHeadBytes: number;
  release(conn: H1Connection): void;
  forget(conn: H1Connection): void;
}

/** One upstream connection; serves one exchange at a time. Responses are framed by llhttp. */
class H1Connection {
  private ex: Exchange | undefined;
  private readonly parser: Http1Parser;
  private keepAlive = true;
  private closed = false;
  private sink: Writable | undefined;
  private readonly onSockData = (c: Buffer) => this.onData(c);
  /** Reads arrive as views of a shared buffer (a direct-read socket); llhttp copies what it keeps. */
  private readonly direct: boolean;
  served = 0;
  idleSince = 0;

  constructor(readonly sock: Duplex, private readonly pool: ConnectionOwner) {
    this.direct = takeReads(sock, (view) => this.onData(view));
    // Reads of the shared buffer are copied where kept; stream chunks are ours already.
    this.parser = new Http1Parser('response', { maxHeaderBytes: pool.maxHeadBytes, maxHeaderCount: MAX_HEADER_COUNT }, {
      head: (h) => this.onHead(h),
      body: (b) => this.onBody(b),
      complete: (t) => this.onComplete(t),
    }, !this.direct);
    if (!this.direct) sock.on('data', this.onSockData);
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
    this.ex = {
      resolve, reject, head: req.method === 'HEAD', upgrade: req.upgrade, status: 0, headers: undefined, early: undefined,
      responded: false, gotBytes: false, requestDone: !hasBody, responseDone: false, switching: false, body: undefined, trailers: undefined,
    };
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
      // The body's source failed (the client went away): the upstream request can never end.
      sink.on('close', () => {
        if (!ex.requestDone && this.ex === ex) this.fail('request body aborted');
      });
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
    const r = this.parser.execute(c);
    if (this.ex === ex && ex.responseDone && !ex.switching) {
      // Complete in this read: it is handed over whatever followed it, and the connection is
      // not reused when anything did.
      if (!r.ok || r.consumed < c.length) this.keepAlive = false;
      if (!ex.responded) this.handOver(ex);
      if (!r.ok && !this.closed) {
        this.ex = undefined;
        this.destroy();
      }
      return;
    }
    if (!r.ok) {
      this.fail(`upstream sent a malformed response (${r.failure.reason})`, undefined, 'protocol');
      return;
    }
    if (this.ex !== ex) {
      // The exchange ended in this read; anything after its response means no reuse.
      if (r.consumed < c.length && !this.closed) this.destroy();
      return;
    }
    if (ex.switching) {
      this.switchOver(ex, r.consumed === c.length ? EMPTY : Buffer.from(c.subarray(r.consumed)));
      return;
    }
    if (r.consumed < c.length) {
      this.fail('upstream switched protocols without being asked', undefined, 'protocol');
      return;
    }
    if (!ex.responded && ex.headers !== undefined) this.handOver(ex);
  }

  private onHead(h: MessageHead): boolean {
    const ex = this.ex;
    if (ex === undefined || ex.headers !== undefined) {
      this.parser.refuse(new ParseFailure(400, 'AMBIT_UNSOLICITED', 'a response nobody asked for'));
      return false;
    }
    if (h.versionMajor !== 1) {
      this.parser.refuse(new ParseFailure(400, 'AMBIT_VERSION', 'not an HTTP/1.x response'));
      return false;
    }
    const status = h.status;
    if (status < 200 && status !== 101) return false; // 100 Continue and other interim answers: wait for the final one
    const headers = responseHeaders(h.rawHeaders);
    if (typeof headers === 'string') {
      this.parser.refuse(new ParseFailure(400, 'AMBIT_REFUSED', headers));
      return false;
    }
    if (status === 101) {
      if (ex.upgrade === undefined || !h.upgrade) {
        this.parser.refuse(new ParseFailure(400, 'AMBIT_UNSOLICITED', 'a 101 answer to a request that asked for no upgrade'));
        return false;
      }
      ex.switching = true;
    }
    ex.status = status;
    ex.headers = headers;
    this.keepAlive = h.keepAlive && ex.upgrade === undefined;
    return ex.head;
  }

  private onBody(b: Buffer): void {
    const ex = this.ex;
    if (ex === undefined) return;
    if (ex.body !== undefined) this.push(ex.body, b);
    else (ex.early ??= []).push(b);
  }

  private onComplete(trailers: readonly string[]): void {
    const ex = this.ex;
    if (ex === undefined || ex.headers === undefined || ex.switching) return; // an interim answer, or a 101 head
    if (trailers.length > 0) {
      const t = responseHeaders(trailers);
      if (typeof t === 'string') {
        this.parser.refuse(new ParseFailure(400, 'AMBIT_REFUSED', `trailers with ${t}`));
        return;
      }
      ex.trailers = {};
      for (const k in t) {
        const v = t[k];
        if (v !== undefined) ex.trailers[k] = Array.isArray(v) ? v.join(', ') : v;
      }
    }
    ex.responseDone = true;
    if (ex.responded) this.bodyEnd(ex);
  }

  /**
   * Hands the response over once the read that brought its head is parsed: a body that came
   * whole with it goes as one buffer (no body stream and its per-response bookkeeping).
   */
  private handOver(ex: Exchange): void {
    ex.responded = true;
    const headers = ex.headers as IncomingHttpHeaders;
    if (ex.responseDone && headers['transfer-encoding'] === undefined) {
      const early = ex.early;
      const whole = early === undefined || early.length === 0 ? EMPTY : early.length === 1 ? (early[0] as Buffer) : Buffer.concat(early);
      ex.early = undefined;
      ex.resolve(new Response(ex.status, headers, whole, undefined, ex, this));
      this.bodyEnd(ex);
      return;
    }
    const body = new ResponseBody(this);
    ex.body = body;
    if (ex.early !== undefined) for (const b of ex.early) this.push(body, b);
    ex.early = undefined;
    ex.resolve(new Response(ex.status, headers, undefined, body, ex, this));
    if (ex.responseDone) this.bodyEnd(ex); // chunked, whole in this read: its trailers go with the stream's end
  }

  /** A 101: the socket leaves this client and becomes the caller's, with the bytes after the head. */
  private switchOver(ex: Exchange, head: Buffer): void {
    this.ex = undefined;
    this.closed = true;
    this.pool.forget(this);
    this.parser.close();
    // Paused until the new owner reads (a flowing stream without a reader would drop bytes).
    this.sock.pause();
    if (this.direct) takeReads(this.sock, undefined);
    this.sock.off('data', this.onSockData);
    this.sock.removeAllListeners('end');
    this.sock.removeAllListeners('close');
    this.sock.removeAllListeners('error');
    this.sock.on('error', () => {});
    ex.responded = true;
    ex.resolve(new Response(101, ex.headers as IncomingHttpHeaders, EMPTY, undefined, ex, this, { socket: this.sock, head }));
  }

  /** The consumer dropped the response: the connection is closed unless the exchange was over. */
  abandon(ex: Exchange): void {
    if (this.ex === ex && !(ex.requestDone && ex.responseDone)) {
      this.ex = undefined;
      this.destroy();
    }
  }

  private push(body: ResponseBody, c: Buffer): void {
    if (!body.destroyed && !body.push(c)) this.sock.pause();
  }

  private bodyEnd(ex: Exchange): void {
    const body = ex.body;
    if (body !== undefined && !body.destroyed) body.push(null);
    this.maybeDone();
  }

  /** The exchange is over when the request went out completely and the response came in. */
  private maybeDone(): void {
    const ex = this.ex;
    if (ex === undefined || !ex.requestDone || !ex.responseDone || !ex.responded) return;
    this.ex = undefined;
    this.sink = undefined;
    this.served++;
    if (this.keepAlive && !this.closed) this.pool.release(this);
    else this.destroy();
  }

  private onEnd(): void {
    const ex = this.ex;
    if (ex !== undefined && ex.headers !== undefined && !ex.responseDone) {
      // A close-delimited body ends here (llhttp decides whether the message was complete).
      this.keepAlive = false;
      const f = this.parser.finish();
      if (f === undefined && ex.responseDone) {
        if (!ex.responded) this.handOver(ex);
        return;
      }
    }
    this.fail('upstream closed the connection');
  }

  /** Fails the current exchange (if any) and discards the connection. */
  private fail(reason: string, cause?: Error, kind: 'reset' | 'protocol' = 'reset'): void {
    const ex = this.ex;
    this.ex = undefined;
    this.destroy();
    if (ex === undefined) return;
    const err = new H1Failure(kind, reason, !ex.gotBytes && this.served > 0, cause !== undefined ? { cause } : undefined);
    if (!ex.responded) ex.reject(err);
    else if (ex.body !== undefined && !ex.body.destroyed && !ex.body.readableEnded) ex.body.destroy(err);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    this.parser.close();
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

  /**
   * Sends an Upgrade request (`req.upgrade` set) on a connection of its own, never pooled;
   * resolves at the response head: `switched` on a 101, else an ordinary answer.
   */
  upgrade(req: H1Request, resolve: (r: H1Response) => void, reject: (e: H1Failure) => void): void {
    this.fresh(req, resolve, reject);
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
