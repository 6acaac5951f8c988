/**
 * W3C Trace Context at the waypoint: a request's `traceparent` is continued (same trace id, a
 * new span id for the hop to the upstream, flags kept) and `tracestate` passed on untouched; a
 * request without a valid `traceparent` starts a new trace, sampled (flag 01) with the
 * probability Telemetry's `randomSamplingPercentage` gives, else not sampled (flag 00: without
 * a Telemetry the waypoint does not decide sampling for the application). A trace that comes
 * with the request keeps its caller's decision (parent-based sampling, as Envoy does).
 *
 * Invariants: the trace id never changes across the hop; the span id sent upstream is never the
 * one received; invalid input (wrong version 00 shape, all-zero ids) is treated as absent, as the
 * W3C spec requires.
 */
import { randomBytes } from 'node:crypto';

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export interface TraceContext {
  readonly traceId: string;
  /** Span id of the caller (absent when this hop started the trace). */
  readonly parentSpanId: string | undefined;
  /** Span id of this hop: what the upstream sees as its parent. */
  readonly spanId: string;
  readonly flags: string;
  /** `traceparent` to send upstream. */
  readonly traceparent: string;
  /** True when the request carried no valid traceparent. */
  readonly generated: boolean;
}

/** Random bytes drawn from a pool refilled 64 KiB at a time (one refill per ~2,700 requests). */
const POOL_BYTES = 65_536;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

function nonZeroHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const b = pool.subarray(offset, offset + bytes);
  offset += bytes;
  b[0] = (b[0] ?? 0) | 1;
  return b.toString('hex');
}

/** Parses a traceparent header; undefined when absent or invalid. */
export function parseTraceparent(value: string | string[] | undefined): { traceId: string; spanId: string; flags: string } | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const m = TRACEPARENT_RE.exec(v.trim().toLowerCase());
  if (m === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff') return undefined;
  if (version === '00' && rest !== undefined) return undefined; // version 00 has exactly four fields
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, flags };
}

/**
 * Continues the trace of an incoming request, or starts one, sampled with probability
 * `samplePercent` / 100 (default undefined: not sampled).
 */
export function traceFor(incoming: string | string[] | undefined, samplePercent?: number, rand: () => number = Math.random): TraceContext {
  const parsed = parseTraceparent(incoming);
  const spanId = nonZeroHex(8);
  if (parsed === undefined) {
    const traceId = nonZeroHex(16);
    const flags = samplePercent !== undefined && samplePercent > 0 && (samplePercent >= 100 || rand() * 100 < samplePercent) ? '01' : '00';
    return { traceId, parentSpanId: undefined, spanId, flags, traceparent: `00-${traceId}-${spanId}-${flags}`, generated: true };
  }
  return { traceId: parsed.traceId, parentSpanId: parsed.spanId, spanId, flags: parsed.flags, traceparent: `00-${parsed.traceId}-${spanId}-${parsed.flags}`, generated: false };
}
