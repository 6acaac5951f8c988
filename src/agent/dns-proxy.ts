/**
 * The agent's DNS proxy (Istio ambient's DNS capture role, port 15053 in each enrolled pod's netns).
 *
 * Captured queries of a pod (src/ebpf/dns-capture.ts rewrites them to the pod's 127.0.0.1:15053)
 * arrive on a per-pod UDP socket served by `serve()`, and over TCP (RFC 7766: 2-byte length
 * framing, several queries per connection, answered in order) on a per-pod listener served by
 * `serveTcp()`; a TCP query is forwarded over TCP. A query for a name of the mesh's table
 * (dns-names.ts) is answered here: A with the VIPs, AAAA with the IPv6 VIPs or, for an IPv4-only
 * service, an empty NOERROR (never NXDOMAIN, which would make the resolver give up on the name), TTL
 * 30 s, authoritative. Everything else (other names, other types or classes, other opcodes,
 * several questions) is forwarded unchanged to the resolver the pod addressed, and its answer is
 * relayed back byte for byte.
 *
 * Wire format is dns-packet's; nothing here parses DNS by hand beyond reading the 16-bit id of a
 * datagram dns-packet rejected, to answer FORMERR.
 *
 * Fail safe. No input from a pod ends the agent:
 * - a datagram shorter than a header, or a response (QR set), is dropped; one dns-packet cannot
 *   decode, or a query without a question, gets FORMERR;
 * - a forward that gets no answer within `forwardTimeoutMs`, that fails to send, or that has no
 *   known upstream gets SERVFAIL, so the pod's resolver moves on at once;
 * - at most `maxInFlight` forwards run at a time (each holds a socket); beyond that SERVFAIL;
 * - a TCP connection idle for `tcpIdleMs`, or buffering more than one maximal message, is closed.
 * Forwards go out from the agent's own network namespace, each from a fresh socket (a kernel-chosen
 * source port) and are matched by upstream address, port and id, so an off-path spoofer has both
 * the port and the id to guess.
 */
import dgram from 'node:dgram';
import { connect, isIP, type Server, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, Packet, Question } from 'dns-packet';
import { childLogger, type Logger } from '../util/log.js';
import { DnsNameTable } from './dns-names.js';
import type { DnsMetrics, DnsResult } from './dns-metrics.js';

/** Where a pod sent its query before capture rewrote it. */
export interface DnsUpstream {
  address: string;
  port: number;
}

/** The pod a DNS socket serves. */
export interface DnsClient {
  /** Pod id for logs, e.g. `shop/web-1`. */
  id: string;
  /** The pod's namespace: enables `<service>` alone for that namespace (default: none). */
  namespace?: string;
  /** The resolver this pod addressed last (from the capture maps), null when unknown. */
  upstream(): DnsUpstream | null;
}

export interface DnsProxyOptions {
  /** The name table answered from (default: empty, everything is forwarded); replace with setTable(). */
  table?: DnsNameTable;
  /** TTL of answers from the table, seconds (default 30). */
  ttlSeconds?: number;
  /** How long to wait for the upstream resolver before answering SERVFAIL, ms (default 2500, under glibc's 5 s retry). */
  forwardTimeoutMs?: number;
  /** Forwards in flight at once, over all pods (default 1024). */
  maxInFlight?: number;
  /** A TCP client connection without a complete query for this long is closed, ms (default 10000). */
  tcpIdleMs?: number;
  /** Metrics (default: none). */
  metrics?: DnsMetrics;
  /** Parent logger (default: the process root logger). */
  logger?: Logger;
}

const RCODE_NOERROR = 0;
const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const HEADER_BYTES = 12;

/** What the proxy did with one datagram: the reply to send (null: nothing) and how it counts. */
export interface DnsOutcome {
  reply: Buffer | null;
  result: DnsResult;
}

export class DnsProxy {
  readonly log: Logger;
  readonly ttlSeconds: number;
  readonly forwardTimeoutMs: number;
  readonly maxInFlight: number;
  readonly tcpIdleMs: number;
  #table: DnsNameTable;
  #inFlight = 0;
  readonly #metrics: DnsMetrics | undefined;
  readonly #sockets = new Set<dgram.Socket>();
  #closed = false;

  constructor(opts: DnsProxyOptions = {}) {
    this.log = childLogger('agent.dns', opts.logger);
    this.#table = opts.table ?? new DnsNameTable([]);
    this.ttlSeconds = opts.ttlSeconds ?? 30;
    this.forwardTimeoutMs = opts.forwardTimeoutMs ?? 2500;
    this.maxInFlight = opts.maxInFlight ?? 1024;
    this.tcpIdleMs = opts.tcpIdleMs ?? 10_000;
    this.#metrics = opts.metrics;
  }

  get table(): DnsNameTable {
    return this.#table;
  }

  /** Swaps in the table of a newly applied view. */
  setTable(table: DnsNameTable): void {
    this.#table = table;
  }

  /**
   * Answers the queries arriving on `socket` (bound in the pod's netns). The socket stays the
   * caller's to close; errors on it are logged, never thrown.
   */
  serve(socket: dgram.Socket, client: DnsClient): void {
    this.#sockets.add(socket);
    socket.on('error', (err) => this.log.warn({ pod: client.id, err: err.message }, 'DNS socket error'));
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('message', (msg, rinfo) => {
      this.handle(msg, client).then((out) => {
        this.#metrics?.requests.inc({ result: out.result });
        if (out.reply === null || this.#closed) return;
        try {
          socket.send(out.reply, rinfo.port, rinfo.address, (err) => {
            if (err) this.log.debug({ pod: client.id, err: err.message }, 'cannot send DNS reply');
          });
        } catch (err) {
          // The socket was closed while the query was forwarded (pod released).
          this.log.debug({ pod: client.id, err: (err as Error).message }, 'cannot send DNS reply');
        }
      }, (err: unknown) => {
        // handle() resolves on every input; this is a bug, not a pod's doing.
        this.#metrics?.requests.inc({ result: 'failed' });
        this.log.error({ pod: client.id, err: String(err) }, 'DNS query handling failed');
      });
    });
  }

  /**
   * Answers DNS over TCP on `server` (a listener in the pod's netns, already listening; create it
   * with `allowHalfOpen: true` so a client that half-closes after its queries still gets every
   * answer). The server stays the caller's to close.
   */
  serveTcp(server: Server, client: DnsClient): void {
    server.on('error', (err) => this.log.warn({ pod: client.id, err: err.message }, 'DNS TCP listener error'));
    server.on('connection', (socket: Socket) => this.#tcpConnection(socket, client));
  }

  #tcpConnection(socket: Socket, client: DnsClient): void {
    socket.on('error', () => {});
    socket.setTimeout(this.tcpIdleMs, () => socket.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let chain: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > 2 + 65535) { socket.destroy(); return; }
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        chain = chain.then(async () => {
          const out = await this.handle(Buffer.from(msg), client, 'tcp');
          this.#metrics?.requests.inc({ result: out.result });
          if (out.reply === null || socket.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.reply.length);
          socket.write(Buffer.concat([len, out.reply]));
        }).catch((err: unknown) => {
          this.#metrics?.requests.inc({ result: 'failed' });
          this.log.error({ pod: client.id, err: String(err) }, 'DNS query handling failed');
        });
      }
    });
    socket.on('end', () => { void chain.then(() => socket.end()); });
  }

  /** What to answer to one query of `client` (a datagram, or a TCP message without its length). Never rejects. */
  async handle(msg: Buffer, client: DnsClient, transport: 'udp' | 'tcp' = 'udp'): Promise<DnsOutcome> {
    try {
      return await this.#handle(msg, client, transport);
    } catch (err) {
      this.log.warn({ pod: client.id, err: (err as Error).message }, 'DNS query dropped: it cannot be answered');
      return { reply: null, result: 'failed' };
    }
  }

  async #handle(msg: Buffer, client: DnsClient, transport: 'udp' | 'tcp'): Promise<DnsOutcome> {
    if (msg.length < HEADER_BYTES) return { reply: null, result: 'failed' };
    const id = msg.readUInt16BE(0);
    if ((msg[2]! & 0x80) !== 0) return { reply: null, result: 'failed' }; // a response: never loop one back
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return { reply: errorReply(id, msg, RCODE_FORMERR, undefined), result: 'failed' };
    }
    const questions = query.questions ?? [];
    if (questions.length === 0) return { reply: errorReply(id, msg, RCODE_FORMERR, undefined), result: 'failed' };
    const q = questions[0]!;
    if (questions.length === 1 && ((msg[2]! >> 3) & 0x0f) === 0 /* opcode QUERY */ && (q.class === 'IN' || q.class === undefined) && (q.type === 'A' || q.type === 'AAAA')) {
      const record = this.#table.lookup(q.name, client.namespace);
      if (record !== undefined) {
        const addresses = q.type === 'A' ? record.ipv4 : record.ipv6;
        return { reply: this.#answer(id, msg, q, addresses), result: 'answered' };
      }
    }
    return this.#forward(id, msg, q, client, transport);
  }

  #answer(id: number, msg: Buffer, q: Question, addresses: readonly string[]): Buffer {
    const answers: Answer[] = addresses.map((data) => ({ type: q.type as 'A' | 'AAAA', class: 'IN', name: q.name, ttl: this.ttlSeconds, data }));
    return dnsPacket.encode({
      type: 'response',
      id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (msg[2]! & 0x01 ? dnsPacket.RECURSION_DESIRED : 0) | RCODE_NOERROR,
      questions: [q],
      answers,
    });
  }

  async #forward(id: number, msg: Buffer, q: Question, client: DnsClient, transport: 'udp' | 'tcp'): Promise<DnsOutcome> {
    let upstream: DnsUpstream | null;
    try {
      upstream = client.upstream();
    } catch (err) {
      this.log.warn({ pod: client.id, err: (err as Error).message }, 'cannot read the pod\'s original resolver');
      upstream = null;
    }
    const family = upstream === null ? 0 : isIP(upstream.address);
    if (upstream === null || family === 0) {
      this.log.debug({ pod: client.id, name: q.name }, 'no known upstream resolver for this pod: SERVFAIL');
      return { reply: errorReply(id, msg, RCODE_SERVFAIL, q), result: 'failed' };
    }
    if (this.#inFlight >= this.maxInFlight || this.#closed) {
      return { reply: errorReply(id, msg, RCODE_SERVFAIL, q), result: 'failed' };
    }
    this.#inFlight++;
    try {
      const reply = transport === 'tcp'
        ? await exchangeTcp(msg, id, upstream, this.forwardTimeoutMs)
        : await exchange(msg, id, upstream, family === 6 ? 'udp6' : 'udp4', this.forwardTimeoutMs);
      return { reply, result: 'forwarded' };
    } catch (err) {
      this.log.debug({ pod: client.id, name: q.name, upstream: `${upstream.address}:${upstream.port}`, err: (err as Error).message }, 'DNS forward failed: SERVFAIL');
      return { reply: errorReply(id, msg, RCODE_SERVFAIL, q), result: 'failed' };
    } finally {
      this.#inFlight--;
    }
  }

  /** Stops answering (sockets stay the callers'; forwards in flight end with their timeout). */
  close(): void {
    this.#closed = true;
  }
}

/** One query to `upstream` from a fresh socket: the first datagram from it with the same id. */
function exchange(msg: Buffer, id: number, upstream: DnsUpstream, type: 'udp4' | 'udp6', timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(type);
    let done = false;
    const finish = (err: Error | null, reply?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err !== null) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(err));
    sock.on('message', (reply, rinfo) => {
      if (rinfo.address !== upstream.address || rinfo.port !== upstream.port) return;
      if (reply.length < HEADER_BYTES || reply.readUInt16BE(0) !== id || (reply[2]! & 0x80) === 0) return;
      finish(null, reply);
    });
    sock.send(msg, upstream.port, upstream.address, (err) => { if (err) finish(err); });
  });
}

/** One query to `upstream` over TCP: the first message it answers with the same id. */
function exchangeTcp(msg: Buffer, id: number, upstream: DnsUpstream, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: upstream.address, port: upstream.port });
    let done = false;
    let buf: Buffer = Buffer.alloc(0);
    const finish = (err: Error | null, reply?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err !== null) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(err));
    sock.on('end', () => finish(new Error('upstream closed the connection without an answer')));
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const reply = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + reply.length);
        if (reply.length >= HEADER_BYTES && reply.readUInt16BE(0) === id && (reply[2]! & 0x80) !== 0) return finish(null, Buffer.from(reply));
      }
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    sock.write(Buffer.concat([len, msg]));
  });
}

/** A header-only (or question-echoing) error response with the query's id, opcode and RD bit. */
function errorReply(id: number, msg: Buffer, rcode: number, q: Question | undefined): Buffer {
  const opcodeAndRd = ((msg[2] ?? 0) & 0x79) << 8; // opcode (bits 14-11) and RD (bit 8)
  return dnsPacket.encode({
    type: 'response',
    id,
    flags: opcodeAndRd | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: q === undefined ? [] : [q],
  });
}
