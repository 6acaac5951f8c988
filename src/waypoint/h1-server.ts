/**
 * The waypoint's HTTP/1.1 server codec: parses requests from any byte stream (an HBONE CONNECT
 * stream, a plain socket) and writes responses, without node:http's ServerResponse and
 * IncomingMessage machinery, which cost as much CPU per request as the proxying itself. It
 * offers the small request/response surface the proxy uses (headers, a Readable body,
 * writeHead/write/end, trailers, `close`/`finish`/`drain`).
 *
 * Invariants (one bad client never affects others):
 * - Parsing is strict, so that no two parsers can disagree on where a request ends (request
 *   smuggling): CRLF line ends only, token method and header names, no obs-fold, no control
 *   characters in values, a `content-length` that is one decimal number (repeats must agree),
 *   `transfer-encoding` only as exactly `chunked` and never together with `content-length`, one
 *   `host`. Anything else is answered 400 and the connection closed.
 * - A request head over `maxHeaderBytes` gets 431; a head not complete within `headersTimeoutMs`
 *   (slowloris; counted from the connection's start for its first request, from the first byte
 *   for later ones) gets 408; a body not complete within `requestTimeoutMs` gets 408 if nothing
 *   was answered yet. Idle keep-alive connections close after `keepAliveTimeoutMs`. Deadlines
 *   are checked by one sweep per server, not a timer per request.
 * - Requests on one connection are answered in order, one at a time: bytes of a pipelined next
 *   request wait (the connection is paused) until the current response is complete.
 * - A response is framed by its `content-length`, else chunked (HTTP/1.1) or by closing the
 *   connection (HTTP/1.0); HEAD, 1xx, 204 and 304 answers carry no body. A connection is
 *   reused only when the request body was read completely and both sides allow keep-alive.
 * - Responses are written through write-batch.ts: bytes reach the socket at the end of the
 *   event-loop turn that wrote them (in order), and a response counts as finished (`finish`,
 *   next pipelined request) only once its bytes were handed to the socket. A whole response
 *   with a small body goes out as one buffer.
 * - A chunked body cut anywhere by the reads (inside a size line, a CRLF, a trailer) waits for
 *   more bytes; it never loops on an incomplete line.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { headerName } from './header-names.js';
import { holdWrites } from './write-batch.js';

export interface H1ServerLimits {
  /** Largest request head accepted, bytes (default 16,384; larger gets 431). */
  maxHeaderBytes?: number;
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
  request(req: H1IncomingRequest, res: H1ServerResponse): void;
  upgrade(req: H1IncomingRequest, socket: Duplex, head: Buffer): void;
  /** A client was refused before its request reached the proxy (already answered and closed). */
  refused(stream: Duplex, reason: RefusalReason, status: number, detail: string): void;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const BAD_OUT = /[\r\n\0]/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,15})(?:[ \t]*;[\t\x20-\x7e]*)?$/;
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
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
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
          if (BAD_OUT.test(x)) throw new Error(`invalid value of response header ${name}`);
          h += `${name}: ${x}\r\n`;
        }
      } else {
        const s = typeof v === 'string' ? v : String(v);
        if (BAD_OUT.test(s)) throw new Error(`invalid value of response header ${name}`);
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

  /** Trailers sent after a chunked body (dropped for other framings). */
  addTrailers(t: Record<string, string>): void {
    for (const [k, v] of Object.entries(t)) {
      if (!TOKEN.test(k) || BAD_OUT.test(v)) throw new Error(`invalid trailer ${JSON.stringify(k)}`);
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

type ConnState = 'head' | 'body' | 'wait' | 'done';

/** One client connection. */
export class H1ServerConnection {
  private buf: Buffer = EMPTY;
  private state: ConnState = 'head';
  /** When the head of the current request started (0: idle, no byte yet). */
  headStart: number;
  idleSince = 0;
  reqStart = 0;
  http11 = true;
  bodyComplete = true;
  private keepAlive = true;
  private req: H1IncomingRequest | undefined;
  private res: H1ServerResponse | undefined;
  private bodyMode: 'length' | 'chunked' = 'length';
  private remaining = 0;
  private chunk: 'size' | 'data' | 'data-crlf' | 'trailers' = 'size';
  private bodyPaused = false;
  private closed = false;
  private readonly onData = (c: Buffer) => this.receive(c);
  private readonly onDrain = () => {
    if (this.res !== undefined && !this.res.writableFinished) this.res.emit('drain');
  };

  constructor(readonly stream: Duplex, private readonly server: H1Server) {
    this.headStart = Date.now();
    stream.on('data', this.onData);
    stream.on('drain', this.onDrain);
    stream.on('end', () => this.onEnd());
    stream.on('error', () => this.destroy());
    stream.on('close', () => this.destroy());
  }

  get waitingForHead(): boolean {
    return this.state === 'head';
  }

  get readingBody(): boolean {
    return this.state === 'body';
  }

  get answered(): boolean {
    return this.res?.headersSent === true;
  }

  private receive(c: Buffer): void {
    if (this.closed) return;
    if (this.state === 'head' && this.headStart === 0) this.headStart = Date.now();
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    this.process();
  }

  private process(): void {
    try {
      while (!this.closed && this.buf.length > 0) {
        if (this.state === 'head') {
          if (!this.parseHead()) return;
        } else if (this.state === 'body') {
          const before = this.buf.length;
          this.parseBody();
          if (this.bodyPaused) return;
          // A chunk line or CRLF cut by the read: wait for the next bytes (not spin on these).
          if (this.state === 'body' && this.buf.length === before) return;
        } else {
          // A pipelined request waits until the current response is complete.
          if (this.state === 'wait') this.stream.pause();
          return;
        }
      }
    } catch (err) {
      if (err instanceof ParseError) this.refuse(err.status, err.reason, err.message);
      else throw err;
    }
  }

  /** Parses a complete head from the buffer; false when more bytes are needed. */
  private parseHead(): boolean {
    const max = this.server.maxHeaderBytes;
    let start = 0;
    while (this.buf.length >= start + 2 && this.buf[start] === 13 && this.buf[start + 1] === 10) start += 2; // stray CRLF before a request
    const end = this.buf.indexOf('\r\n\r\n', start);
    if (end === -1) {
      if (this.buf.length - start > max) throw new ParseError(431, 'header_overflow', `request head over ${max} bytes`);
      if (this.buf.indexOf('\n\n', start) !== -1 || this.buf.indexOf('\n\r\n', start) !== -1) throw new ParseError(400, 'malformed', 'request head with bare LF line ends');
      return false;
    }
    if (end - start > max) throw new ParseError(431, 'header_overflow', `request head over ${max} bytes`);
    const text = this.buf.toString('latin1', start, end);
    this.buf = this.buf.subarray(end + 4);
    const lines = text.split('\r\n');
    const m = REQUEST_LINE.exec(lines[0] as string);
    if (m === null) throw new ParseError(400, 'malformed', `malformed request line ${JSON.stringify((lines[0] as string).slice(0, 60))}`);
    const method = m[1] as string;
    const url = m[2] as string;
    this.http11 = m[3] === '1';
    const headers: IncomingHttpHeaders = {};
    let length: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new ParseError(400, 'malformed', `malformed header line ${JSON.stringify(line.slice(0, 60))}`);
      const rawName = line.slice(0, colon);
      const name = headerName(rawName);
      if (name === undefined) throw new ParseError(400, 'malformed', `invalid header name ${JSON.stringify(rawName.slice(0, 60))}`);
      const value = line.slice(colon + 1).trim();
      if (!FIELD_VALUE.test(value)) throw new ParseError(400, 'malformed', `invalid characters in header ${rawName}`);
      const cur = headers[name];
      if (cur === undefined) {
        headers[name] = name === 'set-cookie' ? [value] : value;
        if (name === 'content-length') length = value;
        continue;
      }
      if (name === 'content-length') {
        if (value !== length) throw new ParseError(400, 'malformed', 'conflicting content-length headers');
      } else if (name === 'host') {
        throw new ParseError(400, 'malformed', 'more than one host header');
      } else if (name === 'set-cookie') {
        (cur as string[]).push(value);
      } else if (name === 'cookie') {
        headers[name] = `${cur as string}; ${value}`;
      } else if (!FIRST_WINS.has(name)) {
        headers[name] = `${cur as string}, ${value}`;
      }
    }
    const te = headers['transfer-encoding'];
    let hasBody = false;
    if (te !== undefined) {
      if (length !== undefined) throw new ParseError(400, 'malformed', 'both content-length and transfer-encoding');
      if (te.trim().toLowerCase() !== 'chunked' || !this.http11) throw new ParseError(400, 'malformed', `unsupported transfer-encoding ${JSON.stringify(te.slice(0, 40))}`);
      this.bodyMode = 'chunked';
      this.chunk = 'size';
      hasBody = true;
    } else if (length !== undefined) {
      if (!/^\d{1,15}$/.test(length)) throw new ParseError(400, 'malformed', `invalid content-length ${JSON.stringify(length.slice(0, 40))}`);
      this.remaining = Number(length);
      this.bodyMode = 'length';
      hasBody = this.remaining > 0;
    }
    if (method === 'CONNECT') throw new ParseError(400, 'malformed', 'CONNECT is not proxied by the waypoint');
    const conn = headers.connection;
    const tokens = typeof conn === 'string' ? conn.toLowerCase() : '';
    this.keepAlive = this.http11 ? !tokens.includes('close') : tokens.includes('keep-alive');
    const req = new H1IncomingRequest(method, url, this.http11 ? '1.1' : '1.0', headers, this.stream, this);
    this.req = req;
    this.headStart = 0;
    this.reqStart = Date.now();
    if (headers.upgrade !== undefined && tokens.includes('upgrade')) {
      this.state = 'done';
      this.detach();
      req.complete = true;
      req.push(null);
      const head = this.buf;
      this.buf = EMPTY;
      this.server.upgraded(this);
      this.server.handlers.upgrade(req, this.stream, head);
      return false;
    }
    this.bodyComplete = !hasBody;
    if (!hasBody) {
      req.complete = true;
      req.bodiless = true;
      this.state = 'wait';
    } else {
      this.state = 'body';
      if (this.http11 && typeof headers.expect === 'string' && headers.expect.toLowerCase() === '100-continue') this.stream.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    const res = new H1ServerResponse(this, this.stream, method === 'HEAD', this.keepAlive);
    this.res = res;
    this.server.handlers.request(req, res);
    return true;
  }

  private parseBody(): void {
    const req = this.req as H1IncomingRequest;
    let d = this.buf;
    this.buf = EMPTY;
    if (this.bodyMode === 'length') {
      const n = Math.min(this.remaining, d.length);
      this.remaining -= n;
      if (n > 0) this.pushBody(req, n === d.length ? d : d.subarray(0, n));
      this.buf = n === d.length ? EMPTY : d.subarray(n);
      if (this.remaining === 0) this.bodyEnd(req);
      return;
    }
    try {
      while (d.length > 0 && this.state === 'body') {
        if (this.chunk === 'data') {
          const n = Math.min(this.remaining, d.length);
          this.pushBody(req, n === d.length ? d : d.subarray(0, n));
          this.remaining -= n;
          d = n === d.length ? EMPTY : d.subarray(n);
          if (this.remaining === 0) this.chunk = 'data-crlf';
          continue;
        }
        if (this.chunk === 'data-crlf') {
          if (d.length < 2) break;
          if (d[0] !== 13 || d[1] !== 10) throw new ParseError(400, 'malformed', 'malformed chunked body');
          d = d.subarray(2);
          this.chunk = 'size';
          continue;
        }
        const eol = d.indexOf('\r\n');
        if (eol === -1) {
          if (d.length > 4096) throw new ParseError(400, 'malformed', 'over-long chunk line');
          break;
        }
        const line = d.toString('latin1', 0, eol);
        d = d.subarray(eol + 2);
        if (this.chunk === 'size') {
          const m = CHUNK_SIZE.exec(line);
          if (m === null) throw new ParseError(400, 'malformed', `malformed chunk size ${JSON.stringify(line.slice(0, 40))}`);
          this.remaining = parseInt(m[1] as string, 16);
          this.chunk = this.remaining === 0 ? 'trailers' : 'data';
          continue;
        }
        if (line === '') {
          this.bodyEnd(req);
          break;
        }
        const colon = line.indexOf(':');
        if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) throw new ParseError(400, 'malformed', 'malformed trailer');
        req.trailers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
    } finally {
      this.buf = d;
    }
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
    if (this.state === 'body' && this.buf.length > 0) this.process();
  }

  private bodyEnd(req: H1IncomingRequest): void {
    // A response finished before the body had arrived closed the connection (writeHead saw an
    // incomplete body), so here the response is always still to come.
    this.state = 'wait';
    this.bodyComplete = true;
    req.complete = true;
    req.push(null);
  }

  /** The current response was written completely. */
  responseDone(res: H1ServerResponse): void {
    if (res !== this.res) return;
    if (!res.reusable || !this.keepAlive) {
      this.stream.end();
      this.closeSoon();
      return;
    }
    if (this.state === 'wait') this.next();
  }

  /** Moves on to the next request of a keep-alive connection. */
  private next(): void {
    this.state = 'head';
    this.req = undefined;
    this.res = undefined;
    this.bodyComplete = true;
    this.headStart = this.buf.length > 0 ? Date.now() : 0;
    this.idleSince = Date.now();
    if (this.buf.length > 0) this.process();
    this.stream.resume();
  }

  private onEnd(): void {
    // The client half-closed: finish the response in progress (if any), then close.
    this.keepAlive = false;
    if (this.state === 'head' || this.state === 'body') {
      if (this.state === 'body') this.req?.destroy(new Error('client aborted the request body'));
      this.destroy();
    }
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
    const req = this.req;
    if (req !== undefined && !req.complete) req.destroy(new Error('client aborted the request body'));
    this.detach();
    this.state = 'done';
    this.closed = true;
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
    if (this.state === 'done' && this.closed) {
      this.res?.connectionClosed();
      return;
    }
    this.closed = true;
    this.state = 'done';
    this.server.forget(this);
    this.stream.destroy();
    const req = this.req;
    if (req !== undefined && !req.complete) req.destroy(new Error('client aborted the request body'));
    this.res?.connectionClosed();
  }
}

/** Serves HTTP/1.1 on streams handed to it. */
export class H1Server {
  readonly maxHeaderBytes: number;
  private readonly headersTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly keepAliveTimeoutMs: number;
  private readonly checkIntervalMs: number;
  private readonly conns = new Set<H1ServerConnection>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(readonly handlers: H1ServerHandlers, limits: H1ServerLimits = {}) {
    this.maxHeaderBytes = limits.maxHeaderBytes ?? 16_384;
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
