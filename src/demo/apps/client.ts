/**
 * The demo's client: HTTP requests at a fixed pace (`--url`), or one long-lived TCP connection to
 * the line echo (`--tcp`) that sends a numbered line at a fixed pace and prints every answer, so
 * a user (and the e2e tests) can watch one connection survive mesh changes. Every result is one
 * line on stdout; failures are lines too (`ERROR ...`), never a stack trace.
 */
import { request } from 'node:http';
import { connect } from 'node:net';

export interface HttpClientOptions {
  url: string;
  /** Requests to send (default 1; 0 = until stopped). */
  count?: number;
  /** Pause between requests, ms (default 500). */
  intervalMs?: number;
  /** Request body, e.g. a marker string (default none: GET). */
  body?: string;
  out?: (line: string) => void;
}

function httpOnce(url: string, body: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const req = request(url, { method: body === undefined ? 'GET' : 'POST', timeout: 5000, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString(); });
      res.on('end', () => resolve(`${res.statusCode} ${text.trim()}`));
      res.on('error', (err) => resolve(`ERROR ${err.message}`));
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 5 s')));
    req.on('error', (err: Error & { code?: string }) => resolve(`ERROR ${err.code ?? err.message}`));
    req.end(body);
  });
}

export async function runHttpClient(o: HttpClientOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const count = o.count ?? 1;
  let failures = 0;
  for (let i = 0; count === 0 || i < count; i++) {
    const line = await httpOnce(o.url, o.body);
    if (line.startsWith('ERROR')) failures++;
    out(line);
    if (count === 0 || i + 1 < count) await new Promise((r) => setTimeout(r, o.intervalMs ?? 500));
  }
  return failures === 0 ? 0 : 1;
}

export interface TcpClientOptions {
  host: string;
  port: number;
  /** Lines to send (default 0 = until the connection ends or the process stops). */
  count?: number;
  intervalMs?: number;
  /** Text of every line (default `ping`). */
  message?: string;
  out?: (line: string) => void;
}

export function runTcpClient(o: TcpClientOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  return new Promise((resolve) => {
    const sock = connect({ host: o.host, port: o.port });
    let n = 0;
    let timer: NodeJS.Timeout | undefined;
    let buf = '';
    const send = () => {
      n++;
      sock.write(`${o.message ?? 'ping'} ${n}\n`);
      if (o.count !== undefined && o.count > 0 && n >= o.count) return;
      timer = setTimeout(send, o.intervalMs ?? 500);
    };
    sock.on('connect', () => { out(`CONNECTED ${sock.localAddress}:${sock.localPort}`); send(); });
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        out(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (o.count !== undefined && o.count > 0 && n >= o.count && buf === '') sock.end();
      }
    });
    sock.on('error', (err: Error & { code?: string }) => out(`ERROR ${err.code ?? err.message}`));
    sock.on('close', (hadError) => { clearTimeout(timer); out('CLOSED'); resolve(hadError ? 1 : 0); });
  });
}
