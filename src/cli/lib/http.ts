/**
 * Plain HTTP GETs to the admin and metrics endpoints of the control plane and the agents, with a
 * deadline and errors an operator can act on ("cannot reach the agent of node-2 at
 * http://198.18.0.2:15000: connection refused").
 *
 * Invariant: never throws anything but CliError; never follows redirects off the host asked for.
 */
import { CliError } from './errors.js';

export interface HttpReply { status: number; body: string }

/** GET `url`; resolves with any HTTP status, rejects with CliError when nothing answers in time. */
export async function httpGet(url: string, what: string, timeoutMs = 3000): Promise<HttpReply> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string; message?: string }; message?: string };
    const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : e.cause?.code === 'ECONNREFUSED' ? 'connection refused' : e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
    throw new CliError('AMBIT_ERR_CLI_UNREACHABLE', `cannot reach ${what} at ${url}: ${why}`, { cause: err });
  }
  return { status: res.status, body: await res.text() };
}

/** GET `url` and parse JSON; a non-200 answer or a body that is not JSON is a CliError. */
export async function getJson<T>(url: string, what: string, timeoutMs = 3000): Promise<T> {
  const r = await httpGet(url, what, timeoutMs);
  if (r.status !== 200) throw new CliError('AMBIT_ERR_CLI_BAD_RESPONSE', `${what} answered ${url} with HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`);
  try {
    return JSON.parse(r.body) as T;
  } catch (err) {
    throw new CliError('AMBIT_ERR_CLI_BAD_RESPONSE', `${what} at ${url} did not answer JSON (is this the right port?)`, { cause: err });
  }
}

/** `http://host:port` from `host`, `host:port` or a URL, with `defaultPort` when none is given. */
export function baseUrl(target: string, defaultPort: number): string {
  if (/^https?:\/\//.test(target)) return target.replace(/\/+$/, '');
  if (/^\[[^\]]+\]:\d+$/.test(target) || /^[^:]+:\d+$/.test(target)) return `http://${target}`;
  if (target.includes(':') && !target.startsWith('[')) return `http://[${target}]:${defaultPort}`;
  return `http://${target}:${defaultPort}`;
}
