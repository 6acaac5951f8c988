/**
 * Metrics of the agent's DNS proxy (src/agent/dns-proxy.ts), registered into the agent's injected
 * registry: `ambit_dns_requests_total{result}` with `result` one of
 * - `answered`: answered from the mesh's name table (including the empty AAAA of an IPv4 service),
 * - `forwarded`: relayed to the resolver the pod addressed, and its answer relayed back,
 * - `failed`: malformed (FORMERR or dropped), forward timed out or failed (SERVFAIL).
 * Label values are the three above, never names or addresses.
 */
import { Counter, type Registry } from 'prom-client';

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
