/**
 * Request headers every HBONE CONNECT carries: `forwarded: for="<src ip:port>"` (RFC 7239; IPv6
 * in brackets, so the value is quoted) naming the original client, and a W3C `traceparent` so a
 * connection can be followed across nodes.
 */
import { randomBytes } from 'node:crypto';
import { formatAuthority, parseAuthority, type Authority } from './authority.js';

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** `for="ip:port"` for the original source address. */
export function formatForwarded(host: string, port: number): string {
  return `for="${formatAuthority(host, port)}"`;
}

/** The first `for=` element of a Forwarded header as an address, or undefined if absent/invalid. */
export function parseForwardedFor(value: string | string[] | undefined): Authority | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const m = /(?:^|[;,\s])for=("([^"]*)"|[^;,\s]*)/i.exec(v);
  if (m === null) return undefined;
  try {
    return parseAuthority(m[2] ?? m[1] ?? '');
  } catch {
    return undefined;
  }
}

/** A new W3C traceparent (version 00, random trace and span ids, sampled flag clear). */
export function newTraceparent(): string {
  const b = randomBytes(24);
  b[0] = (b[0] ?? 0) | 1; // all-zero ids are invalid
  b[16] = (b[16] ?? 0) | 1;
  return `00-${b.subarray(0, 16).toString('hex')}-${b.subarray(16).toString('hex')}-00`;
}

/** True for a syntactically valid version-00 traceparent with non-zero ids. */
export function isTraceparent(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = TRACEPARENT_RE.exec(value);
  return m !== null && !/^0+$/.test(m[1] ?? '') && !/^0+$/.test(m[2] ?? '');
}
