/**
 * The waypoint's HTTP/1.1 server side: requests framed by llhttp (llhttp.ts, node:http's own
 * parser in strict mode) from any byte stream (an HBONE CONNECT stream, a plain socket), and
 * responses written without node:http's ServerResponse and IncomingMessage machinery, which
 * cost as much CPU per request as the proxying itself. It offers the small request/response
 * surface the proxy uses (headers, a Readable body, writeHead/write/end, trailers,
 * `close`/`finish`/`drain`, `switchProtocols`).
 *
 * Invariants (one bad client never affects others):
 * - Where a request starts and ends, what its headers and body bytes are, is llhttp's decision
 *   (no lenient flag), so no parser behind the waypoint can be made to see another request
 *   (smuggling). On top, ambit refuses more, never less: a second `host` or
 *   `transfer-encoding`, `transfer-encoding` in HTTP/1.0, HTTP/1.1 without `host`, CONNECT,
 *   versions other than 1.x, more than `maxHeaderCount` header lines. A refused request is
 *   answered (400, 431, 505) and the connection closed; it never reaches the proxy.
 * - A request head or trailer section over `maxHeaderBytes` gets 431 / 400; a head not complete
 *   within `headersTimeoutMs` (slowloris; counted from the connection's start for its first
 *   request, from the first byte for later ones) gets 408; a body not complete within
 *   `requestTimeoutMs` gets 408 if nothing was answered yet. Idle keep-alive connections close
 *   after `keepAliveTimeoutMs`. Deadlines are checked by one sweep per server.
 * - Requests on one connection are answered in order, one at a time: once a request is complete,
 *   llhttp reads nothing more (the connection is paused) until its response is written;
 *   requests already framed in the same read wait in a queue, and a bad one among them is
 *   answered after those before it.
 * - An Upgrade request (token-exact `Connection: upgrade` plus `Upgrade`, as llhttp decides too)
 *   is an ordinary request until the proxy calls `switchProtocols` after the upstream's 101;
 *   until then llhttp stops after it and the bytes behind it wait. Answered any other way, the
 *   connection stays HTTP and the next request is parsed and checked like any other. `h2c` is
 *   never switched to: its Upgrade and HTTP2-Settings headers are dropped.
 * - A response is framed by its `content-length`, else chunked (HTTP/1.1) or by closing the
 *   connection (HTTP/1.0); HEAD, 1xx, 204 and 304 answers carry no body. A connection is
 *   reused only when the request body was read completely and both sides allow keep-alive.
 * - Responses are written through write-batch.ts: bytes reach the socket at the end of the
 *   event-loop turn that wrote them (in order), and a response counts as finished (`finish`,
 *   next pipelined request) only once its bytes were handed to the socket. A whole response
 *   with a small body goes out as one buffer.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { badHeaderValue, headerName } from './header-names.js';
import { Http1Parser, ParseFailure, type MessageHead } from './llhttp.js';
import { holdWrites } from './write-batch.js';

export interface H1ServerLimits {
  /** Largest request head (and trailer section) accepted, bytes (default 16,384; larger gets 431). */
  maxHeaderBytes?: number;
  /** Most header lines in a head or trailer section (default 100, as Envoy; more gets 431). */
  maxHeaderCount?: number;
  /** Time to receive a complete request head, ms (default 10,000; slower gets 408). */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, ms (default 300,000; 0 disables). */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections close after this, ms (default 60,000). */
  keepAliveTimeoutMs?: number;
  /** How often deadlines are checked, ms (default 1,000). */
  checkIntervalMs?: number;
}

export type RefusalReason = 'header_overflow' | 'slow_client' | 'malformed';

export interface H1ServerHandlers {
  /** A request (an Upgrade request too: see `H1ServerResponse.switchProtocols`). */
  request(req: H1IncomingRequest, res: H1ServerResponse): void;
  /** A client was refused before its request reached the proxy (already answered and closed). */
  refused(stream: Duplex, reason: RefusalReason, status: number, detail: string): void;
}

const EMPTY = Buffer.alloc(0);
/** First body chunks up to this size go out in one buffer with the head. */
const SMALL_BODY = 16_384;
/** Headers where a repeat is an error or only the first counts (node:http's list). */
const FIRST_WINS = new Set(['content-type', 'user-agent', 'referer', 'authorization', 'proxy-authorization', 'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires']);
const STATUS_TEXT: Record<number, string> = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content',
  301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
  409: 'Conflict', 413: 'Payload Too Large', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
};

class ParseError extends Error {
  constructor(readonly status: number, readonly reason: RefusalReason, message: string) {
    super(message);
  }
}

/**
 * A request as the proxy reads it; the body is this Readable. A request without a body ends
 * when it is first read (not at once): ending a Readable nobody reads costs a few microseconds
 * of stream bookkeeping on every request, so the proxy checks `bodiless` and leaves it alone.
 */
export class H1IncomingRequest extends Readable {
  trailers: Record<string, string> = {};
  /** The body arrived completely. */
  complete = false;
  /** The request has no body: it is complete, and the stream ends as soon as it is read. */
  bodiless = false;
  /** The protocols of an Upgrade request (lower case, in order); undefined for plain requests. */
  upgrade: string[] | undefined;

  constructor(
    readonly method: string,
    readonly url: string,
    /** `1.1` or `1.0`. */
    readonly httpVersion: string,
    readonly headers: IncomingHttpHeaders,
    /** The connection's stream. */
    readonly socket: Duplex,
    private readonly conn: H1ServerConnection,
  ) {
    super();
    // The proxy reads bodies through BodyBuffer, which listens; this keeps a request nobody
    // reads (an upgrade, a refusal) from crashing on a late client abort.
    this.on('error', () => {});
  }

  override _read(): void {
    if (this.bodiless) {
      this.push(null);
      return;
    }
    this.conn.resumeBody();
  }
}

/** The answer to one request. */
export class H1ServerResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  destroyed = false;
  private head: string | undefined;
  private mode: 'none' | 'length' | 'chunked' | 'close' = 'none';
  private trailerLines = '';
  private ended = false;

  constructor(private readonly conn: H1ServerConnection, private readonly sock: Duplex, private readonly isHead: boolean, private keepAlive: boolean) {
    super();
  }

  /** Whether the connection stays open after this response (decided at writeHead). */
  get reusable(): boolean {
    return this.keepAlive;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders = {}): this {
    if (this.head !== undefined || this.headersSent) throw new Error('response headers were already written');
    if (!Number.isInteger(status) || status < 100 || status > 999) throw new Error(`invalid status code ${status}`);
    this.statusCode = status;
    let h = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Unknown'}\r\n`;
    let length = false;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      const lower = headerName(name);
      if (lower === undefined) throw new Error(`invalid response header name ${JSON.stringify(name)}`);
      if (lower === 'connection' || lower === 'transfer-encoding' || lower === 'keep-alive') continue;
      if (lower === 'content-length') length = true;
      if (Array.isArray(v)) {
        for (const x of v) {
          if (badHeaderValue(x)) throw new Error(`invalid value of response header ${name}`);
          h += `${name}: ${x}\r\n`;
        }
      } else {
        const s = typeof v === 'string' ? v : String(v);
        if (badHeaderValue(s)) throw new Error(`invalid value of response header ${name}`);
        h += `${name}: ${s}\r\n`;
      }
    }
    const bodyless = this.isHead || status < 200 || status === 204 || status === 304;
    if (bodyless) this.mode = 'none';
    else if (length) this.mode = 'length';
    else if (this.conn.http11) {
      this.mode = 'chunked';
      h += 'transfer-encoding: chunked\r\n';
    } else {
      this.mode = 'close';
      this.keepAlive = false;
    }
    if (!this.conn.bodyComplete) this.keepAlive = false; // an unread request body: close after answering
    h += this.keepAlive ? (this.conn.http11 ? '\r\n' : 'connection: keep-alive\r\n\r\n') : 'connection: close\r\n\r\n';
    this.head = h;
    return this;
  }

  /** Writes a body chunk (headers go with the first one); false when the client is slow. */
  write(chunk: Buffer | string): boolean {
    if (this.ended || this.destroyed) return false;
    if (this.head === undefined) this.writeHead(this.statusCode);
    const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const sock = this.sock;
    holdWrites(sock);
    if (this.mode === 'none' || c.length === 0) return this.flushHead();
    if (!this.headersSent && c.length <= SMALL_BODY) {
      // Head and a small first chunk in one buffer: one write, no writev bookkeeping.
      this.headersSent = true;
      return sock.write(this.headWith(c));
    }
    sock.cork();
    this.flushHead();
    let ok: boolean;
    if (this.mode === 'chunked') {
      sock.write(`${c.length.toString(16)}\r\n`);
      sock.write(c);
      ok = sock.write('\r\n');
    } else {
      ok = sock.write(c);
    }
    sock.uncork();
    return ok;
  }

  /** The head and a first body chunk (framed when chunked) in one buffer. */
  private headWith(c: Buffer): Buffer {
    const h = this.head as string;
    const frame = this.mode === 'chunked' ? `${c.length.toString(16)}\r\n` : '';
    const headLen = h.length + frame.length; // latin1: one byte per character
    const out = Buffer.allocUnsafe(headLen + c.length + (frame === '' ? 0 : 2));
    out.write(frame === '' ? h : h + frame, 0, 'latin1');
    c.copy(out, headLen);
    if (frame !== '') out.write('\r\n', headLen + c.length, 'latin1');
    return out;
  }

  private flushHead(): boolean {
    const h = this.head;
    if (h === undefined || this.headersSent) return true;
    this.headersSent = true;
    return this.sock.write(h, 'latin1');
  }

  /** Trailers sent after a chunked body (dropped for other framings); an unsafe one is skipped, never thrown. */
  addTrailers(t: Record<string, string>): void {
    for (const [k, v] of Object.entries(t)) {
      if (headerName(k) === undefined || typeof v !== 'string' || badHeaderValue(v)) continue;
      this.trailerLines += `${k}: ${v}\r\n`;
    }
  }

  end(chunk?: Buffer | string): this {
    if (this.ended || this.destroyed) return this;
    if (this.head === undefined) {
      if (chunk !== undefined && !this.isHead && this.statusCode >= 200 && this.statusCode !== 204 && this.statusCode !== 304) {
        const len = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        this.writeHead(this.statusCode, { 'content-length': String(len) });
      } else {
        this.writeHead(this.statusCode);
      }
    }
    const sock = this.sock;
    holdWrites(sock);
    const done = () => this.onFlushed();
    if (!this.headersSent && this.mode !== 'chunked') {
      // The whole response at once (the usual case): one write, whose flush finishes it.
      const c = chunk === undefined || this.mode === 'none' ? EMPTY : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (c.length <= SMALL_BODY) {
        this.headersSent = true;
        this.ended = true;
        if (c.length === 0) sock.write(this.head as string, 'latin1', done);
        else sock.write(this.headWith(c), done);
        return this;
      }
    }
    sock.cork();
    if (chunk !== undefined) this.write(chunk);
    else this.flushHead();
    this.ended = true;
    if (this.mode === 'chunked') sock.write(`0\r\n${this.trailerLines}\r\n`, done);
    else if (sock.writableLength === 0) process.nextTick(done);
    else sock.write(EMPTY, done); // corked: joins the same writev
    sock.uncork();
    return this;
  }

  private onFlushed(): void {
    if (this.destroyed) return;
    this.writableFinished = true;
    this.emit('finish');
    this.conn.responseDone(this);
    this.emit('close');
  }

  /**
   * Answers 101 with `headers` and hands the connection over (see H1ServerConnection); undefined
   * when it cannot switch (an answer already started, a request body still arriving).
   */
  switchProtocols(headers: OutgoingHttpHeaders): { socket: Duplex; head: Buffer } | undefined {
    return this.conn.switchProtocols(this, headers);
  }

  /** Abandons the response and closes the connection. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.conn.destroy();
  }

  /** The connection went away. */
  connectionClosed(): void {
    if (this.writableFinished) return;
    this.destroyed = true;
    this.emit('close');
  }
}

/** A request llhttp framed; queued when it arrived pipelined behind the one being answered. */
interface Message {
  readonly req: H1IncomingRequest;
  keepAlive: boolean;
  readonly expectContinue: boolean;
  /** Body bytes that arrived before the request was handed to the proxy. */
  early: Buffer[] | undefined;
  /** The request was handed to the proxy. */
  dispatched: boolean;
  /** llhttp saw the whole message. */
  done: boolean;
}

/** Parses the head's header lines into node-style headers; a ParseError for what llhttp allows but ambit refuses. */
function requestHeaders(raw: readonly string[], http11: boolean): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = headerName(raw[i] as string);
    if (name === undefined) throw new ParseError(400, 'malformed', 'invalid header name');
    const value = raw[i + 1] as string;
    const cur = headers[name];
    if (cur === undefined) {
      headers[name] = name === 'set-cookie' ? [value] : value;
      continue;
    }
    // llhttp already refuses a repeated content-length; these are ambit's stricter rules.
    if (name === 'host') throw new ParseError(400, 'malformed', 'more than one host header');
    if (name === 'transfer-encoding') throw new ParseError(400, 'malformed', 'more than one transfer-encoding header');
    if (name === 'set-cookie') (cur as string[]).push(value);
    else if (name === 'cookie') headers[name] = `${cur as string}; ${value}`;
    else if (!FIRST_WINS.has(name)) headers[name] = `${cur as string}, ${value}`;
  }
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    if (!http11) throw new ParseError(400, 'malformed', 'transfer-encoding in an HTTP/1.0 request');
    // llhttp takes any coding list ending in chunked; the waypoint decodes no other coding.
    if ((te as string).toLowerCase() !== 'chunked') throw new ParseError(400, 'malformed', 'transfer-encoding other than chunked');
  }
  if (headers.host === undefined && http11) throw new ParseError(400, 'malformed', 'HTTP/1.1 request without host');
  return headers;
}

const NO_TOKENS: readonly string[] = Object.freeze([]);

/** The lower-case tokens of a comma-separated header (`Connection`, `Upgrade`). */
export function headerTokens(v: string | string[] | undefined): readonly string[] {
  if (v === undefined) return NO_TOKENS;
  const out: string[] = [];
  for (const part of (Array.isArray(v) ? v.join(',') : v).split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '') out.push(t);
  }
  return out;
}

/** One client connection. */
export class H1ServerConnection {
  private readonly parser: Http1Parser;
  /** Bytes not fed to the parser yet (held while a complete request waits for its answer). */
  private pending: Buffer = EMPTY;
  /** The request being answered. */
  private active: Message | undefined;
  /** Requests framed behind it (pipelined in the same read). */
  private readonly queue: Message[] = [];
  /** The message llhttp is inside (its body goes there). */
  private parsing: Message | undefined;
  /** llhttp stopped after an Upgrade request: what follows waits for the upstream's answer. */
  private stopped = false;
  /** A failure in a pipelined request, answered after the ones before it. */
  private deferred: ParseFailure | undefined;
  /** When the head of the current request started (0: idle, no byte yet). */
  headStart: number;
  idleSince = 0;
  reqStart = 0;
  http11 = true;
  private bodyPaused = false;
  private closed = false;
  private readonly onData = (c: Buffer) => this.receive(c);
  private readonly onDrain = () => {
    const res = this.res;
    if (res !== undefined && !res.writableFinished) res.emit('drain');
  };
  private res: H1ServerResponse | undefined;

  constructor(readonly stream: Duplex, private readonly server: H1Server) {
    this.headStart = Date.now();
    this.parser = new Http1Parser('request', { maxHeaderBytes: server.maxHeaderBytes, maxHeaderCount: server.maxHeaderCount }, {
      head: (h) => this.onHead(h),
      body: (b) => this.onBody(b),
      complete: (t) => this.onComplete(t),
    }, true); // 'data' chunks are ours to keep: body bytes are handed over as views of them
    stream.on('data', this.onData);
    stream.on('drain', this.onDrain);
    stream.on('end', () => this.onEnd());
    stream.on('error', () => this.destroy());
    stream.on('close', () => this.destroy());
  }

  get waitingForHead(): boolean {
    return this.active === undefined && !this.closed;
  }

  get readingBody(): boolean {
    return this.active !== undefined && !this.active.done;
  }

  get answered(): boolean {
    return this.res?.headersSent === true;
  }

  /** The request body arrived completely (or there is none). */
  get bodyComplete(): boolean {
    return this.active === undefined || this.active.done;
  }

  private receive(c: Buffer): void {
    if (this.closed) return;
    if (this.active === undefined && this.headStart === 0) this.headStart = Date.now();
    this.pending = this.pending.length === 0 ? c : Buffer.concat([this.pending, c]);
    this.feed();
  }

  /** Whether llhttp may read on: not while a complete request waits for its answer. */
  private get feeding(): boolean {
    return !this.closed && !this.stopped && this.queue.length === 0 && this.deferred === undefined && (this.active === undefined || !this.active.done);
  }

  private feed(): void {
    for (;;) {
      while (this.feeding && this.pending.length > 0 && !this.bodyPaused) {
        const data = this.pending;
        const r = this.parser.execute(data);
        if (!r.ok) {
          this.pending = EMPTY;
          this.failed(r.failure);
          break;
        }
        this.pending = r.consumed === data.length ? EMPTY : data.subarray(r.consumed);
        if (r.consumed < data.length) this.stopped = true;
      }
      // Requests go to the proxy once llhttp has returned, never from inside its callbacks.
      if (this.closed || this.active !== undefined) break;
      const q = this.queue.shift();
      if (q !== undefined) {
        this.dispatch(q);
        continue;
      }
      if (this.deferred !== undefined) {
        const f = this.deferred;
        this.deferred = undefined;
        this.failed(f);
      }
      break;
    }
    if (this.closed) return;
    // Bytes llhttp may not read yet (a pipelined request, what follows an Upgrade): stop reading
    // more until they can be. A request merely waiting for its answer leaves the socket alone
    // (pausing and resuming per request costs two epoll updates).
    if (!this.closed && (this.pending.length > 0 || this.queue.length > 0)) this.stream.pause();
  }

  /** llhttp (or ambit's checks on top) refused the input. */
  private failed(f: ParseFailure): void {
    const broken = this.parsing;
    this.parsing = undefined;
    const at = broken === undefined || broken.dispatched ? -1 : this.queue.indexOf(broken);
    if (at !== -1) this.queue.splice(at, 1);
    const active = this.active;
    if ((active !== undefined && active.done) || this.queue.length > 0) {
      // A pipelined request is bad: the ones before it are answered first.
      this.deferred = f;
      return;
    }
    this.refuse(f.status, f.status === 431 ? 'header_overflow' : 'malformed', f.reason);
  }

  private onHead(h: MessageHead): boolean {
    if (h.versionMajor !== 1) return this.refuseHead(505, 'HTTP version not supported');
    this.http11 = h.versionMinor === 1;
    let headers: IncomingHttpHeaders;
    try {
      headers = requestHeaders(h.rawHeaders, this.http11);
    } catch (err) {
      return this.refuseHead((err as ParseError).status, (err as ParseError).message);
    }
    if (h.method === 'CONNECT') return this.refuseHead(400, 'CONNECT is not proxied by the waypoint');
    const req = new H1IncomingRequest(h.method, h.url, this.http11 ? '1.1' : '1.0', headers, this.stream, this);
    const connTokens = headerTokens(headers.connection);
    if (h.upgrade && headers.upgrade !== undefined && connTokens.includes('upgrade')) {
      const protocols = headerTokens(headers.upgrade);
      if (protocols.includes('h2c')) {
        // h2c is never switched to: the request goes on as plain HTTP/1.1.
        delete headers.upgrade;
        delete headers['http2-settings'];
      } else {
        req.upgrade = [...protocols];
      }
    }
    const expect = headers.expect;
    // llhttp's rule: a request has a body when chunked or with a content-length above 0.
    const cl = headers['content-length'];
    const bodiless = headers['transfer-encoding'] === undefined && (cl === undefined || Number(cl) === 0);
    const m: Message = { req, keepAlive: h.keepAlive, expectContinue: this.http11 && typeof expect === 'string' && expect.toLowerCase() === '100-continue', early: undefined, dispatched: false, done: bodiless };
    this.parsing = m;
    this.queue.push(m); // handed to the proxy when llhttp returns (feed)
    return false;
  }

  /** Refuses a head llhttp accepted but ambit does not: the parser stops and `failed` answers. */
  private refuseHead(status: number, detail: string): false {
    this.parser.refuse(new ParseFailure(status, 'AMBIT_REFUSED', detail));
    return false;
  }

  private onBody(b: Buffer): void {
    const m = this.parsing;
    if (m === undefined) return;
    if (m.dispatched) this.pushBody(m.req, b);
    else (m.early ??= []).push(b);
  }

  private onComplete(trailers: readonly string[]): void {
    const m = this.parsing;
    if (m === undefined) return;
    this.parsing = undefined;
    for (let i = 0; i < trailers.length; i += 2) {
      const name = headerName(trailers[i] as string);
      if (name !== undefined) m.req.trailers[name] = trailers[i + 1] as string;
    }
    if (m.done) return; // bodiless: complete since its head
    m.done = true;
    if (m.dispatched) this.bodyEnd(m.req);
  }

  /** Hands a request to the proxy. */
  private dispatch(m: Message): void {
    this.active = m;
    m.dispatched = true;
    this.headStart = 0;
    this.reqStart = Date.now();
    const req = m.req;
    const res = new H1ServerResponse(this, this.stream, req.method === 'HEAD', m.keepAlive);
    this.res = res;
    if (m.early !== undefined) for (const b of m.early) this.pushBody(req, b);
    m.early = undefined;
    if (m.done) {
      req.complete = true;
      if (req.readableLength === 0) req.bodiless = true;
      else req.push(null);
    } else if (m.expectContinue) {
      this.stream.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    this.server.handlers.request(req, res);
  }

  private pushBody(req: H1IncomingRequest, c: Buffer): void {
    if (!req.destroyed && !req.push(c)) {
      this.bodyPaused = true;
      this.stream.pause();
    }
  }

  /** The proxy wants more of the request body. */
  resumeBody(): void {
    if (!this.bodyPaused || this.closed) return;
    this.bodyPaused = false;
    this.stream.resume();
    this.feed();
  }

  private bodyEnd(req: H1IncomingRequest): void {
    // A response finished before the body had arrived closed the connection (writeHead saw an
    // incomplete body), so here the response is always still to come.
    req.complete = true;
    req.push(null);
  }

  /**
   * Answers the current request with 101 and gives the connection up: the caller owns the
   * stream from now on; `head` holds the bytes the client sent after the request.
   */
  switchProtocols(res: H1ServerResponse, headers: OutgoingHttpHeaders): { socket: Duplex; head: Buffer } | undefined {
    if (res !== this.res || this.closed || res.headersSent || this.active?.done !== true || this.queue.length > 0) return undefined;
    let h = 'HTTP/1.1 101 Switching Protocols\r\n';
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined || headerName(name) === undefined) continue;
      for (const x of Array.isArray(v) ? v : [String(v)]) if (!badHeaderValue(x)) h += `${name}: ${x}\r\n`;
    }
    res.headersSent = true;
    res.statusCode = 101;
    res.writableFinished = true; // its part is over: the connection's close is the splice's now
    this.res = undefined;
    this.active = undefined;
    this.detach();
    this.closed = true;
    this.server.upgraded(this);
    this.parser.close();
    const head = this.pending;
    this.pending = EMPTY;
    this.stream.write(`${h}\r\n`, 'latin1');
    this.stream.resume();
    return { socket: this.stream, head };
  }

  /** The current response was written completely. */
  responseDone(res: H1ServerResponse): void {
    if (res !== this.res) return;
    const m = this.active;
    if (!res.reusable || m === undefined || !m.keepAlive) {
      this.stream.end();
      this.closeSoon();
      return;
    }
    if (m.done) this.next();
  }

  /** Moves on to the next request of a keep-alive connection. */
  private next(): void {
    this.active = undefined;
    this.res = undefined;
    this.stopped = false;
    this.idleSince = Date.now();
    const q = this.queue.shift();
    if (q !== undefined) {
      this.dispatch(q);
    } else if (this.deferred !== undefined) {
      const f = this.deferred;
      this.deferred = undefined;
      this.failed(f);
      return;
    } else {
      this.headStart = this.pending.length > 0 ? Date.now() : 0;
    }
    this.feed();
    if (this.feeding && !this.bodyPaused && this.stream.isPaused()) this.stream.resume();
  }

  private onEnd(): void {
    // The client half-closed: finish the response in progress (if any), then close.
    const m = this.active;
    if (m === undefined || !m.done) {
      if (m !== undefined) m.req.destroy(new Error('client aborted the request body'));
      this.destroy();
      return;
    }
    m.keepAlive = false;
    for (const q of this.queue) q.keepAlive = false;
  }

  /** Answers a client that cannot be served and closes its connection. */
  refuse(status: number, reason: RefusalReason, detail: string): void {
    if (this.closed) return;
    const text = STATUS_TEXT[status] ?? 'Bad Request';
    if (this.res === undefined || !this.res.headersSent) {
      this.stream.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    }
    this.server.handlers.refused(this.stream, reason, status, detail);
    this.closeSoon();
  }

  private closeSoon(): void {
    const m = this.active;
    if (m !== undefined && !m.done) m.req.destroy(new Error('client aborted the request body'));
    this.detach();
    this.closed = true;
    this.parser.close();
    this.server.forget(this);
    const t = setTimeout(() => this.stream.destroy(), 1_000);
    t.unref();
    this.stream.once('close', () => clearTimeout(t));
    this.stream.resume();
  }

  private detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('drain', this.onDrain);
  }

  destroy(): void {
    if (this.closed) {
      this.res?.connectionClosed();
      return;
    }
    this.closed = true;
    this.parser.close();
    this.server.forget(this);
    this.stream.destroy();
    const m = this.active;
    if (m !== undefined && !m.done) m.req.destroy(new Error('client aborted the request body'));
    this.res?.connectionClosed();
  }
}

/** Serves HTTP/1.1 on streams handed to it. */
export class H1Server {
  readonly maxHeaderBytes: number;
  readonly maxHeaderCount: number;
  private readonly headersTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly keepAliveTimeoutMs: number;
  private readonly checkIntervalMs: number;
  private readonly conns = new Set<H1ServerConnection>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(readonly handlers: H1ServerHandlers, limits: H1ServerLimits = {}) {
    this.maxHeaderBytes = limits.maxHeaderBytes ?? 16_384;
    this.maxHeaderCount = limits.maxHeaderCount ?? 100;
    this.headersTimeoutMs = limits.headersTimeoutMs ?? 10_000;
    this.requestTimeoutMs = limits.requestTimeoutMs ?? 300_000;
    this.keepAliveTimeoutMs = limits.keepAliveTimeoutMs ?? 60_000;
    this.checkIntervalMs = limits.checkIntervalMs ?? 1_000;
  }

  /** Serves HTTP/1.1 on `stream` (which must not have been read from). */
  serve(stream: Duplex): H1ServerConnection {
    const c = new H1ServerConnection(stream, this);
    this.conns.add(c);
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), this.checkIntervalMs);
      this.sweeper.unref();
    }
    return c;
  }

  /** Open connections (upgraded ones are the proxy's). */
  get connections(): number {
    return this.conns.size;
  }

  upgraded(c: H1ServerConnection): void {
    this.conns.delete(c);
  }

  forget(c: H1ServerConnection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const c of [...this.conns]) {
      if (c.waitingForHead) {
        if (c.headStart > 0 && now - c.headStart > this.headersTimeoutMs) c.refuse(408, 'slow_client', `request head not complete within ${this.headersTimeoutMs} ms`);
        else if (c.headStart === 0 && now - c.idleSince > this.keepAliveTimeoutMs) c.destroy();
      } else if (c.readingBody && this.requestTimeoutMs > 0 && now - c.reqStart > this.requestTimeoutMs && !c.answered) {
        c.refuse(408, 'slow_client', `request not complete within ${this.requestTimeoutMs} ms`);
      }
    }
  }

  close(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const c of [...this.conns]) c.destroy();
    this.conns.clear();
  }
}
