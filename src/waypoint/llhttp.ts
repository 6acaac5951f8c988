/**
 * HTTP/1.1 framing by llhttp, the parser inside Node (node:http's own, reached through
 * `_http_common`'s HTTPParser, the binding node:http itself uses), in strict mode: no lenient
 * flag is ever set, so every framing decision (where a head ends, what a header line is, which
 * bytes belong to a body, chunk sizes and extensions, trailers, CL/TE conflicts, when a message
 * is complete) is llhttp's, byte for byte the same as node:http's server and client.
 *
 * On top of llhttp, this wrapper only ever refuses more, never accepts more:
 * - at most `maxHeaderCount` header lines per head and per trailer section (431 / 400);
 * - at most `maxFramingBytes` of chunked framing between two data chunks (a chunk-size line
 *   with its extensions, CRLFs, the trailer section), and no chunk-size line of leading zeros
 *   over about 1–5 KiB (a 4 KiB read slice of nothing but hex digits), so a never-ending size
 *   line is refused (400) instead of read forever. llhttp itself bounds heads and trailers
 *   (`maxHeaderBytes`, 431) and chunk extensions (16 KiB).
 *
 * Invariants:
 * - `execute` never throws for any input: a sink callback that throws is caught and reported as
 *   an internal failure, never an exception out of the parser.
 * - After a failure the parser is dead: later `execute` calls return the same failure and no
 *   sink callback runs again (callbacks still queued inside the same llhttp call are dropped).
 * - `execute` consumes all bytes it is given except at an upgrade (llhttp stops after the head
 *   of a message that switches protocols; the rest is the caller's) — `consumed` says where.
 * - A length-framed body is counted out by this wrapper once llhttp framed its head (llhttp is
 *   told to stop after the head, as for an upgrade, and restarts afresh after the body): the
 *   bytes are the ones llhttp would have given, by llhttp's own content-length decision, without
 *   its per-chunk native copy and call. Chunked and close-delimited bodies are llhttp's.
 * - Body chunks handed to the sink are copies, or views of the caller's buffer only when the
 *   caller owns it (`ownsInput`); never views of a shared read buffer.
 * - The native parser is freed exactly once, never while llhttp is running (a sink callback that
 *   closes the connection defers the free until llhttp returns).
 */
import { createRequire } from 'node:module';

interface NodeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code?: string; reason?: string; bytesParsed?: number }) | undefined;
  finish(): (Error & { code?: string; reason?: string }) | undefined;
  close(): void;
  [k: number]: unknown;
}

interface NodeParserCtor {
  new (): NodeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: NodeParserCtor; methods: string[] };
const HTTPParser = common.HTTPParser;
const METHODS = common.methods;

/** A request or response head as llhttp framed it. */
export interface MessageHead {
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Request method (empty for responses). */
  readonly method: string;
  /** Request target as sent (empty for responses). */
  readonly url: string;
  /** Response status (0 for requests). */
  readonly status: number;
  /** Header lines in order: name (as sent), value (llhttp trims the OWS around it). */
  readonly rawHeaders: readonly string[];
  /** llhttp switches protocols after this message (an Upgrade request or a 101 answer). */
  readonly upgrade: boolean;
  /** llhttp's keep-alive decision for the message. */
  readonly keepAlive: boolean;
}

export interface ParserSink {
  /** A head; return true to read no body (the answer to a HEAD request). */
  head(h: MessageHead): boolean;
  body(chunk: Buffer): void;
  /** The message is complete; `trailers` as raw name/value pairs (empty when none). */
  complete(trailers: readonly string[]): void;
}

/** Why the parser refused its input. */
export class ParseFailure {
  constructor(
    /** 400 malformed, 431 head too large, 505 version, 500 internal (a sink callback threw). */
    readonly status: number,
    /** llhttp's code (`HPE_*`) or ambit's (`AMBIT_*`). */
    readonly code: string,
    /** Fixed text (never the input bytes). */
    readonly reason: string,
  ) {}
}

export interface ParserLimits {
  /** Largest head and trailer section, bytes. */
  readonly maxHeaderBytes: number;
  /** Most header lines per head or trailer section. */
  readonly maxHeaderCount: number;
  /** Most chunked-framing bytes between two data chunks (default maxHeaderBytes + 4 KiB). */
  readonly maxFramingBytes?: number;
}

/** Chunked bodies are fed to llhttp in slices this large, so framing is counted finely enough. */
const SLICE = 4096;
const NO_TRAILERS: readonly string[] = Object.freeze([]);
/** A slice of only hex digits this long is an over-long chunk-size line (trailers have a colon). */
const MAX_SIZE_RUN = 1024;
const HEX_RUN = /^[0-9A-Fa-f]+$/;

export type ExecuteResult = { readonly ok: true; readonly consumed: number } | { readonly ok: false; readonly failure: ParseFailure };

/** One llhttp parser for one connection's requests or responses. */
export class Http1Parser {
  private readonly p: NodeParser;
  private readonly maxFraming: number;
  private headers: string[] = [];
  private url = '';
  private failure: ParseFailure | undefined;
  private inBody = false;
  private chunked = false;
  /** Something other than framing happened in the current slice (a head, data, the end). */
  private progressed = false;
  private framing = 0;
  private readonly type: number;
  /** llhttp stopped after a message that switches protocols; the next bytes need a fresh start. */
  private afterUpgrade = false;
  /** Bytes still due of a length-framed body that ambit counts out (see onHeadersComplete). */
  private lengthLeft = 0;
  /** llhttp's message-complete for that head (it saw no body) is not the message's end. */
  private ownBody = false;
  /** Inside llhttp (a callback may ask to close: the native parser is freed when it returns). */
  private running = false;
  private closing = false;
  private freed = false;

  /**
   * `ownsInput`: buffers given to `execute` stay the caller's to keep (stream 'data' chunks), so
   * body bytes can be handed over as views; false for reads of a shared buffer (copied).
   */
  constructor(kind: 'request' | 'response', private readonly limits: ParserLimits, private readonly sink: ParserSink, private readonly ownsInput = false) {
    this.maxFraming = limits.maxFramingBytes ?? limits.maxHeaderBytes + 4096;
    const p = new HTTPParser();
    this.type = kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE;
    p.initialize(this.type, {}, limits.maxHeaderBytes, HTTPParser.kLenientNone);
    p[HTTPParser.kOnHeaders] = (h: string[], url: string) => this.onHeaders(h, url);
    p[HTTPParser.kOnHeadersComplete] = (maj: number, min: number, h: string[] | undefined, method: number | undefined, url: string | undefined, status: number | undefined, _msg: string | undefined, upgrade: boolean, keepAlive: boolean) =>
      this.onHeadersComplete(maj, min, h, method, url, status, upgrade, keepAlive);
    p[HTTPParser.kOnBody] = (b: Buffer) => this.onBody(b);
    p[HTTPParser.kOnMessageComplete] = () => this.onComplete();
    this.p = p;
  }

  /** The failure that stopped the parser, if any. */
  get failed(): ParseFailure | undefined {
    return this.failure;
  }

  /** Parses `data`; see the module invariants for `consumed`. */
  execute(data: Buffer): ExecuteResult {
    if (this.failure !== undefined) return { ok: false, failure: this.failure };
    if (this.lengthLeft === 0 && ((this.inBody && !this.chunked) || data.length <= SLICE)) {
      const r = this.run(data);
      if (!r.ok || this.lengthLeft === 0 || r.consumed === data.length) return r;
      return this.execute2(data, r.consumed);
    }
    return this.execute2(data, 0);
  }

  /** `execute` from `off` on: length-framed body bytes counted out, heads and chunked bodies in slices. */
  private execute2(data: Buffer, from: number): ExecuteResult {
    let off = from;
    while (off < data.length) {
      if (this.lengthLeft > 0) {
        const n = Math.min(this.lengthLeft, data.length - off);
        const chunk = data.subarray(off, off + n);
        off += n;
        this.lengthLeft -= n;
        this.ownedBody(this.ownsInput ? chunk : Buffer.from(chunk));
        if (this.failure !== undefined) return { ok: false, failure: this.failure };
        continue;
      }
      // A chunked body or a head: slices, so that framing between data chunks is counted; a
      // close-delimited body goes in one piece.
      const end = this.inBody && !this.chunked ? data.length : Math.min(data.length, off + SLICE);
      const piece = off === 0 && end === data.length ? data : data.subarray(off, end);
      const r = this.run(piece);
      if (!r.ok) return r;
      off += r.consumed;
      if (r.consumed < piece.length && this.lengthLeft === 0) break; // stopped at an upgrade (see run)
    }
    return { ok: true, consumed: off };
  }

  /** Body bytes of a length-framed body; its last ones complete the message. */
  private ownedBody(chunk: Buffer): void {
    try {
      if (chunk.length > 0) this.sink.body(chunk);
      if (this.lengthLeft > 0 || this.failure !== undefined) return;
      this.inBody = false;
      this.sink.complete(NO_TRAILERS);
    } catch {
      this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message'));
    }
  }

  private run(data: Buffer): ExecuteResult {
    if (this.afterUpgrade) {
      // node's binding stops reporting errors while llhttp's upgrade flag is set (an upgrade that
      // did not happen, or a head ambit took the body of): what follows is parsed by a parser
      // started afresh, at a message boundary.
      this.afterUpgrade = false;
      this.p.initialize(this.type, {}, this.limits.maxHeaderBytes, HTTPParser.kLenientNone);
    }
    const counting = this.inBody && this.chunked;
    this.progressed = false;
    let r: ReturnType<NodeParser['execute']>;
    this.running = true;
    try {
      r = this.p.execute(data);
    } catch {
      return this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message'));
    } finally {
      this.running = false;
      if (this.closing) this.free();
    }
    if (this.failure !== undefined) return { ok: false, failure: this.failure };
    // node's binding hides llhttp's errors while the upgrade flag is set: a short count in the
    // middle of a message (an Upgrade request's body) is such an error, not a stop.
    if (typeof r === 'number' && (r < 0 || r > data.length || (r < data.length && this.inBody && this.lengthLeft === 0))) {
      return this.fail(new ParseFailure(400, 'HPE_UNKNOWN', 'malformed message'));
    }
    if (typeof r !== 'number') {
      const code = r?.code ?? 'HPE_UNKNOWN';
      return this.fail(new ParseFailure(code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, code, r?.reason ?? 'malformed message'));
    }
    if (counting && this.inBody) {
      if (this.progressed) this.framing = 0;
      else this.framing += r;
      if (this.framing > this.maxFraming) return this.fail(new ParseFailure(400, 'AMBIT_FRAMING_OVERFLOW', `chunked framing over ${this.maxFraming} bytes between data chunks`));
      // A whole slice of hex digits without data: a chunk-size line no honest peer sends.
      if (!this.progressed && r >= MAX_SIZE_RUN && HEX_RUN.test(data.toString('latin1', 0, r))) {
        return this.fail(new ParseFailure(400, 'AMBIT_CHUNK_SIZE_LINE', `chunk-size line over ${MAX_SIZE_RUN} bytes`));
      }
    }
    return { ok: true, consumed: r };
  }

  /** The stream ended: completes a close-delimited body; a failure when a message was cut. */
  finish(): ParseFailure | undefined {
    if (this.failure !== undefined) return this.failure;
    if (this.lengthLeft > 0) return this.fail(new ParseFailure(400, 'HPE_INVALID_EOF_STATE', 'stream ended before the body did')).failure;
    let r: ReturnType<NodeParser['finish']>;
    this.running = true;
    try {
      r = this.p.finish();
    } catch {
      return this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message')).failure;
    } finally {
      this.running = false;
      if (this.closing) this.free();
    }
    if (this.failure !== undefined) return this.failure;
    if (r instanceof Error) return this.fail(new ParseFailure(400, r.code ?? 'HPE_UNKNOWN', r.reason ?? 'incomplete message')).failure;
    return undefined;
  }

  /** Frees the parser (once; from inside a callback, when llhttp returns); no callback runs after this. */
  close(): void {
    if (this.failure === undefined) this.failure = new ParseFailure(400, 'AMBIT_CLOSED', 'parser closed');
    if (this.running) this.closing = true;
    else this.free();
  }

  private free(): void {
    this.closing = false;
    if (this.freed) return;
    this.freed = true;
    this.p.close();
  }

  private fail(f: ParseFailure): { ok: false; failure: ParseFailure } {
    this.failure ??= f;
    return { ok: false, failure: this.failure };
  }

  private onHeaders(h: string[], url: string): void {
    if (this.failure !== undefined) return;
    for (const x of h) this.headers.push(x);
    this.url += url;
    if (this.headers.length > this.limits.maxHeaderCount * 2) this.fail(new ParseFailure(this.inBody ? 400 : 431, 'AMBIT_HEADER_COUNT', `more than ${this.limits.maxHeaderCount} header lines`));
  }

  private onHeadersComplete(maj: number, min: number, h: string[] | undefined, method: number | undefined, url: string | undefined, status: number | undefined, upgrade: boolean, keepAlive: boolean): number {
    if (this.failure !== undefined) return -1;
    this.progressed = true;
    let raw = h;
    if (raw === undefined) raw = this.headers;
    else if (this.headers.length > 0) raw = this.headers.concat(raw);
    const target = url === undefined || url === '' ? this.url : this.url + url;
    this.headers = [];
    this.url = '';
    if (raw.length > this.limits.maxHeaderCount * 2) {
      this.fail(new ParseFailure(431, 'AMBIT_HEADER_COUNT', `more than ${this.limits.maxHeaderCount} header lines`));
      return -1;
    }
    let chunked = false;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i] as string;
      if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') chunked = true;
    }
    this.chunked = chunked;
    this.inBody = true;
    // llhttp stops after this message; whatever follows starts on a fresh parser (see execute).
    if (upgrade) this.afterUpgrade = true;
    this.framing = 0;
    const head: MessageHead = {
      versionMajor: maj,
      versionMinor: min,
      method: method === undefined ? '' : (METHODS[method] ?? ''),
      url: target,
      status: status ?? 0,
      rawHeaders: raw,
      upgrade,
      keepAlive,
    };
    try {
      const skip = this.sink.head(head);
      if (this.failure !== undefined) return -1;
      if (skip) return 1;
      const n = chunked || upgrade ? 0 : this.lengthBody(raw, status ?? 0);
      if (n === 0) return 0;
      // A length-framed body: llhttp has framed the head and checked the content-length (one
      // decimal value, no transfer-encoding beside it); the next n bytes are the body by that
      // decision. Answering 2 makes llhttp stop right after the head, and ambit counts the
      // bytes out: llhttp's own body callback costs a native copy and a call per chunk (~1 µs).
      this.lengthLeft = n;
      this.ownBody = true;
      this.afterUpgrade = true;
      return 2;
    } catch {
      this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message'));
      return -1;
    }
  }

  /** The length of a body llhttp would read by content-length (0: none, or not this way). */
  private lengthBody(raw: readonly string[], status: number): number {
    // Answers without a body whatever their content-length (RFC 9112 §6.3).
    if (this.type === HTTPParser.RESPONSE && (status < 200 || status === 204 || status === 304)) return 0;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i] as string;
      if (n.length === 14 && n.toLowerCase() === 'content-length') {
        const v = Number(raw[i + 1]);
        return Number.isSafeInteger(v) && v > 0 ? v : 0;
      }
    }
    return 0;
  }

  private onBody(b: Buffer): void {
    if (this.failure !== undefined) return;
    this.progressed = true;
    try {
      this.sink.body(b);
    } catch {
      this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message'));
    }
  }

  private onComplete(): void {
    if (this.failure !== undefined) return;
    if (this.ownBody) {
      this.ownBody = false; // llhttp's end of a head whose body ambit counts out
      return;
    }
    this.progressed = true;
    this.inBody = false;
    this.chunked = false;
    const trailers = this.headers;
    this.headers = [];
    this.url = '';
    try {
      this.sink.complete(trailers);
    } catch {
      this.fail(new ParseFailure(500, 'AMBIT_SINK_THREW', 'internal error while handling a message'));
    }
  }

  /** Stops parsing: the current llhttp call drops the rest and `execute` reports `f`. */
  refuse(f: ParseFailure): void {
    this.fail(f);
  }
}
