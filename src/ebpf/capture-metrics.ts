/**
 * Prometheus view of capture: the per-CPU kernel counters, summed at scrape time, as
 * `ambit_capture_events_total{event}` and the number of known pods as `ambit_capture_pods`.
 * Nothing is counted in JavaScript, so the figures are exact whatever the agent does; a closed
 * capture simply stops reporting.
 *
 * `ambit_capture_fail_closed_total{pod,direction}` counts connections refused because the pod's
 * agent listener was missing (bpf/capture.bpf.c "Fail closed"), read from the pinned per-pod map,
 * so refusals made while no agent ran show up once the next one starts.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { COUNTERS } from './layout.js';

interface StatsSource {
  stats(): Record<string, number>;
  failClosed?(): { pod: string; direction: string; count: number }[];
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
  new Counter({
    name: 'ambit_capture_fail_closed_total',
    help: 'Connections of enrolled pods refused because the agent listener was missing (agent down, restarting or crashed), by pod and direction',
    labelNames: ['pod', 'direction'],
    registers: [registry],
    collect() {
      let rows: { pod: string; direction: string; count: number }[] | undefined;
      try { rows = capture.failClosed?.(); } catch { rows = undefined; }
      if (rows === undefined) return;
      this.reset();
      for (const r of rows) this.inc({ pod: r.pod, direction: r.direction }, r.count);
    },
  });
}
