/**
 * A raw-socket HTTP/1.1 client for the waypoint's attack tests. node:http validates and
 * normalises what it sends and refuses much of what it would receive, so it can neither send a
 * smuggling attempt nor show what a broken proxy answers. This writes exact bytes (strings as
 * latin1, one byte per character), reads until the peer closes, a condition holds or a deadline
 * passes, and parses what came back loosely: a sequence of responses, each marked complete or
 * truncated. A test can then tell a refusal, a reset and a hang apart, and say which it saw.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** Header lines in order, names lower-cased. */
  headerList: Array<[string, string]>;
  /** Headers by lower-case name, repeats joined with `, `. */
  headers: Record<string, string>;
  /** The body, de-chunked; after a 101, the bytes that followed the head. */
  body: string;
  trailers: Record<string, string>;
  /** The framing finished: content-length reached, last chunk and trailers read, or no body. */
  complete: boolean;
}

export interface RawResult {
  /** Everything received (latin1). */
  text: string;
  responses: RawResponse[];
  /** The peer closed the connection (FIN or reset). */
  closed: boolean;
  /** The connection was reset (ECONNRESET, EPIPE). */
  reset: boolean;
  /** The deadline passed with the connection open and the condition not met. */
  timedOut: boolean;
  /** Bytes after the last complete response that do not start another (latin1). */
  leftover: string;
}

/** Parses a byte stream of responses; `closed` completes a close-delimited body. */
export function parseResponses(data: Buffer, closed: boolean): RawResponse[] {
  return parseAll(data, closed).responses;
}

function parseAll(data: Buffer, closed: boolean): { responses: RawResponse[]; leftover: string } {
  const out: RawResponse[] = [];
  let done = 0;
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = data.toString('latin1', at, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (m === null) break;
    const r: RawResponse = { status: Number(m[1]), headerList: [], headers: {}, body: '', trailers: {}, complete: false };
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      const name = (c === -1 ? l : l.slice(0, c)).toLowerCase();
      const value = c === -1 ? '' : l.slice(c + 1).trim();
      r.headerList.push([name, value]);
      r.headers[name] = r.headers[name] === undefined ? value : `${r.headers[name]}, ${value}`;
    }
    out.push(r);
    at = end + 4;
    if (r.status === 101) {
      r.body = data.toString('latin1', at);
      r.complete = true;
      break;
    }
    if (r.status < 200 || r.status === 204 || r.status === 304) {
      r.complete = true;
      done = at;
      continue;
    }
    if (/chunked/i.test(r.headers['transfer-encoding'] ?? '')) {
      at = dechunk(data, at, r);
      if (!r.complete) break;
      done = at;
    } else if (r.headers['content-length'] !== undefined) {
      const n = Number(r.headers['content-length']);
      r.body = data.toString('latin1', at, Math.min(data.length, at + n));
      r.complete = at + n <= data.length;
      at += n;
      if (!r.complete) break;
      done = at;
    } else {
      r.body = data.toString('latin1', at);
      r.complete = closed;
      done = data.length;
      break;
    }
  }
  const last = out.at(-1);
  return { responses: out, leftover: last === undefined || !last.complete || last.status === 101 ? '' : data.toString('latin1', done) };
}

/** Reads a chunked body into `r` from `at`; returns where it ended. */
function dechunk(data: Buffer, start: number, r: RawResponse): number {
  let at = start;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol === -1) return data.length;
    const size = parseInt(data.toString('latin1', at, eol), 16);
    if (!Number.isFinite(size)) return data.length;
    at = eol + 2;
    if (size === 0) break;
    if (at + size + 2 > data.length) {
      r.body += data.toString('latin1', at);
      return data.length;
    }
    r.body += data.toString('latin1', at, at + size);
    at += size + 2;
  }
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol === -1) return data.length;
    const line = data.toString('latin1', at, eol);
    at = eol + 2;
    if (line === '') break;
    const c = line.indexOf(':');
    r.trailers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
  }
  r.complete = true;
  return at;
}

/** One client connection to the proxy. */
export class RawConnection {
  private readonly chunks: Buffer[] = [];
  private readonly waiters = new Set<() => void>();
  closed = false;
  reset = false;
  /** Bytes written so far. */
  written = 0;

  constructor(readonly sock: Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.wake();
    });
    sock.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.reset = true;
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  write(bytes: string | Buffer): void {
    if (this.sock.destroyed) return;
    const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    this.written += b.length;
    this.sock.write(b);
  }

  data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  result(timedOut = false): RawResult {
    const data = this.data();
    return { text: data.toString('latin1'), ...parseAll(data, this.closed), closed: this.closed, reset: this.reset, timedOut };
  }

  /** Waits until `until` holds for what arrived, the peer closes, or `ms` pass. */
  wait(until: (r: RawResult) => boolean = () => false, ms = 3000): Promise<RawResult> {
    return new Promise((resolve) => {
      const check = () => {
        const r = this.result();
        if (!this.closed && !until(r)) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(this.result(true));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for `n` complete responses in total (or close, or `ms`). */
  responses(n: number, ms = 3000): Promise<RawResult> {
    return this.wait((r) => r.responses.filter((x) => x.complete).length >= n, ms);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

export function rawConnect(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const c = new RawConnection(sock);
    sock.once('connect', () => resolve(c));
    sock.once('error', reject);
  });
}

/** Connects, writes `bytes`, and waits for one complete response, a close, or `ms`. */
export async function exchange(port: number, bytes: string | Buffer, ms = 3000): Promise<RawResult> {
  const c = await rawConnect(port);
  c.write(bytes);
  const r = await c.responses(1, ms);
  c.destroy();
  return r;
}

/** One line for failure messages: what the client saw. */
export function describe(r: RawResult): string {
  const how = r.timedOut ? 'connection still open at the deadline (hang)' : r.reset ? 'connection reset' : r.closed ? 'connection closed' : 'connection open';
  if (r.responses.length === 0) return `no response (${JSON.stringify(r.text.slice(0, 120))}); ${how}`;
  const parts = r.responses.map((x) => `${x.status}${x.complete ? '' : ' (truncated)'} ${JSON.stringify(x.headers).slice(0, 200)} body ${JSON.stringify(x.body.slice(0, 80))}`);
  return `${parts.join(' | ')}${r.leftover === '' ? '' : ` then ${JSON.stringify(r.leftover.slice(0, 80))}`}; ${how}`;
}

/** The waypoint refused: its first answer has one of `statuses`, or it closed without answering. */
export function refused(r: RawResult, statuses: readonly number[]): boolean {
  const first = r.responses[0];
  if (first === undefined) return r.closed && !r.timedOut;
  return statuses.includes(first.status);
}
