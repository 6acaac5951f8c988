/**
 * A small HTTP client for the Kubernetes API: JSON requests and watch streams (newline-delimited
 * JSON events over a chunked response). Over https with the configured CA and client
 * certificate; plain http only when the server URL says so (a local proxy, the test API server).
 */
import http from 'node:http';
import https from 'node:https';
import { KubeApiError } from '../errors.js';
import type { KubeConnection } from './kube-config.js';

export interface KubeResponse { status: number; body: unknown }

export class KubeHttp {
  private readonly agent: http.Agent;
  private readonly secure: boolean;

  constructor(readonly conn: KubeConnection) {
    this.secure = conn.server.startsWith('https:');
    this.agent = this.secure
      ? new https.Agent({ keepAlive: true, ...(conn.caPem ? { ca: conn.caPem } : {}), ...(conn.certPem ? { cert: conn.certPem } : {}), ...(conn.keyPem ? { key: conn.keyPem } : {}), rejectUnauthorized: conn.insecureSkipTlsVerify !== true })
      : new http.Agent({ keepAlive: true });
  }

  private options(method: string, path: string, extra: Record<string, string> = {}): http.RequestOptions {
    const url = new URL(this.conn.server + path);
    const headers: Record<string, string> = { accept: 'application/json', ...extra };
    const token = this.conn.token?.();
    if (token) headers['authorization'] = `Bearer ${token}`;
    return { method, protocol: url.protocol, hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path: url.pathname + url.search, headers, agent: this.agent };
  }

  /** One JSON request; resolves with any HTTP status (callers decide), rejects on network errors. */
  request(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const opts = this.options(method, path, payload ? { 'content-type': 'application/json' } : {});
    const mod = this.secure ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try { parsed = text === '' ? undefined : JSON.parse(text); } catch { /* non-JSON error body */ }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new KubeApiError(`${method} ${path} timed out after ${timeoutMs} ms`)));
      req.on('error', (err) => reject(err instanceof KubeApiError ? err : new KubeApiError(`${method} ${this.conn.server}${path}: ${err.message}`, undefined, { cause: err })));
      if (payload) req.write(payload);
      req.end();
    });
  }

  /**
   * Open a watch. `onEvent` gets each decoded event; the promise resolves when the server ends
   * the stream (timeout) and rejects on HTTP errors (KubeApiError with status) or network errors.
   * `abort()` on the returned handle ends it early (resolves).
   */
  watch(path: string, onEvent: (e: { type: string; object: Record<string, unknown> }) => void): { done: Promise<void>; abort: () => void } {
    const opts = this.options('GET', path);
    const mod = this.secure ? https : http;
    let req: http.ClientRequest | undefined;
    let aborted = false;
    const done = new Promise<void>((resolve, reject) => {
      req = mod.request(opts, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => reject(new KubeApiError(`watch ${path}: HTTP ${res.statusCode}: ${statusMessage(Buffer.concat(chunks).toString('utf8'))}`, res.statusCode)));
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            let ev: { type: string; object: Record<string, unknown> };
            try {
              ev = JSON.parse(line) as typeof ev;
            } catch {
              res.destroy(new KubeApiError(`watch ${path}: undecodable event`));
              return;
            }
            onEvent(ev);
          }
        });
        res.on('end', () => resolve());
        res.on('close', () => resolve());
        res.on('error', (err) => aborted ? resolve() : reject(err));
      });
      req.on('error', (err) => aborted ? resolve() : reject(new KubeApiError(`watch ${this.conn.server}${path}: ${err.message}`, undefined, { cause: err })));
      req.end();
    });
    return { done, abort: () => { aborted = true; req?.destroy(); } };
  }

  close(): void { this.agent.destroy(); }
}

function statusMessage(text: string): string {
  try {
    const s = JSON.parse(text) as { message?: string; reason?: string };
    return s.message ?? s.reason ?? text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}
