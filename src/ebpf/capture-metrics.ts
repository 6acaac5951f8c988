/**
 * Prometheus view of capture: the per-CPU kernel counters, summed at scrape time, as
 * `ambit_capture_events_total{event}` and the number of known pods as `ambit_capture_pods`.
 * Nothing is counted in JavaScript, so the figures are exact whatever the agent does; a closed
 * capture simply stops reporting.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { COUNTERS } from './layout.js';

interface StatsSource {
  stats(): Record<string, number>;
}

export function registerCaptureMetrics(registry: Registry, capture: StatsSource): void {
  const read = (): Record<string, number> | undefined => {
    try {
      return capture.stats();
    } catch {
      return undefined;
    }
  };
  new Counter({
    name: 'ambit_capture_events_total',
    help: 'eBPF capture events by kind (captured connects, excluded, linked, SO_ORIGINAL_DST hits/misses, inbound steered/bypassed/missed, record failures)',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      const s = read();
      if (s === undefined) return;
      this.reset();
      for (const name of COUNTERS) this.inc({ event: name }, s[name] ?? 0);
    },
  });
  new Gauge({
    name: 'ambit_capture_pods',
    help: 'Pods known to eBPF capture (enrolled or adopted from pins)',
    registers: [registry],
    collect() {
      const s = read();
      if (s !== undefined) this.set(s['pods'] ?? 0);
    },
  });
}
