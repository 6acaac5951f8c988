/**
 * The control plane's Prometheus metrics, registered into an injected registry (one registry per
 * control-plane instance, so tests can run several side by side). Names use the `ambit_control_`
 * prefix; labels have small, fixed value sets (subscriber kind, push type, refusal reason).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ControlMetrics {
  subscribers: Gauge<'kind'>;
  pushes: Counter<'kind' | 'type'>;
  pushLatency: Histogram<'kind'>;
  nacks: Counter<'kind'>;
  configErrors: Counter<'source'>;
  configReloads: Counter<'source'>;
  resources: Gauge<'kind'>;
  certsSigned: Counter<'kind'>;
  certsRefused: Counter<'kind' | 'reason'>;
  authFailures: Counter<'service'>;
}

export function createControlMetrics(registry: Registry): ControlMetrics {
  const registers = [registry];
  return {
    subscribers: new Gauge({ name: 'ambit_control_subscribers', help: 'Connected discovery subscribers', labelNames: ['kind'], registers }),
    pushes: new Counter({ name: 'ambit_control_pushes_total', help: 'Discovery pushes sent (type: full or delta)', labelNames: ['kind', 'type'], registers }),
    pushLatency: new Histogram({
      name: 'ambit_control_push_latency_seconds',
      help: 'Time from a change being seen by the control plane to the subscriber acking the push that carries it',
      labelNames: ['kind'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    nacks: new Counter({ name: 'ambit_control_nacks_total', help: 'Pushes a subscriber could not apply', labelNames: ['kind'], registers }),
    configErrors: new Counter({ name: 'ambit_control_config_errors_total', help: 'Configuration loads rejected by validation (the last good snapshot kept serving)', labelNames: ['source'], registers }),
    configReloads: new Counter({ name: 'ambit_control_config_reloads_total', help: 'Configuration loads accepted', labelNames: ['source'], registers }),
    resources: new Gauge({ name: 'ambit_control_resources', help: 'Resources distributed, by kind', labelNames: ['kind'], registers }),
    certsSigned: new Counter({ name: 'ambit_control_certs_signed_total', help: 'Workload certificates signed', labelNames: ['kind'], registers }),
    certsRefused: new Counter({ name: 'ambit_control_certs_refused_total', help: 'Certificate requests refused', labelNames: ['kind', 'reason'], registers }),
    authFailures: new Counter({ name: 'ambit_control_auth_failures_total', help: 'Requests with a missing or rejected token', labelNames: ['service'], registers }),
  };
}
