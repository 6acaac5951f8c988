/**
 * Metrics of the agent's DNS proxy (src/agent/dns-proxy.ts), registered into the agent's injected
 * registry: `ambit_dns_requests_total{result}` with `result` one of
 * - `answered`: answered from the mesh's name table (including the empty AAAA of an IPv4 service),
 * - `forwarded`: relayed to the resolver the pod addressed, and its answer relayed back,
 * - `failed`: malformed (FORMERR or dropped), forward timed out or failed (SERVFAIL).
 * and, once DNS capture is open, `ambit_dns_capture_events_total{event}`: bpf/dns.bpf.c's per-CPU
 * counters summed at scrape time (captured, captured_tcp, restored, no_listener, record_failed).
 * Label values are the ones above, never names or addresses.
 */
import { Counter, type Registry } from 'prom-client';

const KERNEL_EVENTS = { captured: 'captured', capturedTcp: 'captured_tcp', restored: 'restored', noListener: 'no_listener', recordFailed: 'record_failed' } as const;

/** Registers `ambit_dns_capture_events_total`, read from `stats()` (DnsCapture.stats) at each scrape. */
export function registerDnsCaptureMetrics(registry: Registry, stats: () => Record<string, number>): void {
  if (registry.getSingleMetric('ambit_dns_capture_events_total') !== undefined) registry.removeSingleMetric('ambit_dns_capture_events_total');
  new Counter({
    name: 'ambit_dns_capture_events_total',
    help: 'eBPF DNS capture events: queries rewritten to the agent (UDP, TCP), replies shown from the original resolver, queries left to the resolver (no live listener, record failure)',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      let s: Record<string, number>;
      try { s = stats(); } catch { return; }
      this.reset();
      for (const [key, event] of Object.entries(KERNEL_EVENTS)) this.inc({ event }, s[key] ?? 0);
    },
  });
}

export type DnsResult = 'answered' | 'forwarded' | 'failed';

export interface DnsMetrics {
  requests: Counter<'result'>;
}

export function createDnsMetrics(registry: Registry): DnsMetrics {
  const existing = registry.getSingleMetric('ambit_dns_requests_total');
  if (existing !== undefined) return { requests: existing as Counter<'result'> };
  return {
    requests: new Counter({
      name: 'ambit_dns_requests_total',
      help: 'DNS queries of enrolled pods handled by the agent, by result (answered from the mesh, forwarded upstream, failed)',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
