/**
 * The agent's Prometheus metrics, registered into an injected Registry.
 *
 * - Istio's standard TCP metrics, with Istio's names and labels so existing Grafana and Kiali
 *   dashboards work: `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
 *   `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`. `reporter` is `source` for
 *   the outbound side and `destination` for the inbound side; bytes are counted as Istio does
 *   (received = during the request, client to server; sent = during the response, server to
 *   client) whichever side reports. The labels
 *   are Istio's (ztunnel's) TCP label set: workload, app, version, canonical service and cluster
 *   of each peer, the destination service by host, name and namespace, `request_protocol="tcp"`.
 * - ambit's own process metrics with the `ambit_` prefix: enrolled pods, active connections,
 *   certificate expiry, control-plane connection state, denials by policy, plus Node's process
 *   metrics (`ambit_process_*`, `ambit_nodejs_*`). BPF counters are registered by src/ebpf.
 *
 * Label values are bounded by the mesh (workloads, namespaces, policies), never by connections.
 */
import { Counter, Gauge, collectDefaultMetrics, type Registry } from 'prom-client';

export const TCP_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'request_protocol', 'connection_security_policy', 'response_flags',
] as const;

export type TcpLabelName = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabelName, string>;

export interface AgentMetrics {
  opened: Counter<TcpLabelName>;
  closed: Counter<TcpLabelName>;
  sent: Counter<TcpLabelName>;
  received: Counter<TcpLabelName>;
  enrolledPods: Gauge;
  activeConnections: Gauge<'direction'>;
  certificateExpiry: Gauge<'identity'>;
  controlPlaneConnected: Gauge;
  viewVersion: Gauge;
  denials: Counter<'reason' | 'policy' | 'direction'>;
  enrollFailures: Counter;
  /**
   * Run at each scrape before the byte counters are read: the connection tracker adds the bytes
   * that open connections moved since the last scrape, so a long-lived connection shows in
   * `istio_tcp_*_bytes_total` while it lasts, not only when it closes.
   */
  readonly beforeScrape: Set<() => void>;
}

export interface AgentMetricsOptions {
  /** Also register Node's default process metrics with prefix `ambit_` (default true). */
  processMetrics?: boolean;
  /** Seconds until each identity's certificate expires, read at scrape time (default: none). */
  certificates?: () => { identity: string; notAfter: Date }[];
}

export function createAgentMetrics(registry: Registry, opts: AgentMetricsOptions = {}): AgentMetrics {
  const registers = [registry];
  const labelNames = [...TCP_LABELS];
  const certificates = opts.certificates;
  const beforeScrape = new Set<() => void>();
  const flush = () => { for (const f of beforeScrape) f(); };
  const m: AgentMetrics = {
    beforeScrape,
    opened: new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames, registers }),
    closed: new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames, registers }),
    sent: new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent during the response (server to client) of TCP connections', labelNames, registers, collect: flush }),
    received: new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received during the request (client to server) of TCP connections', labelNames, registers, collect: flush }),
    enrolledPods: new Gauge({ name: 'ambit_agent_enrolled_pods', help: 'Local pods whose traffic this agent captures', registers }),
    activeConnections: new Gauge({ name: 'ambit_agent_active_connections', help: 'Connections being proxied, by direction (outbound, inbound, inbound_plaintext)', labelNames: ['direction'], registers }),
    certificateExpiry: new Gauge({
      name: 'ambit_agent_certificate_expiry_seconds',
      help: 'Seconds until the workload certificate of each local identity expires (renewal starts at half-life)',
      labelNames: ['identity'],
      registers,
      collect() {
        if (certificates === undefined) return;
        this.reset();
        const now = Date.now();
        for (const c of certificates()) this.set({ identity: c.identity }, Math.round((c.notAfter.getTime() - now) / 1000));
      },
    }),
    controlPlaneConnected: new Gauge({ name: 'ambit_agent_control_plane_connected', help: '1 while the discovery stream to the control plane is up, else 0 (the last good view keeps serving)', registers }),
    viewVersion: new Gauge({ name: 'ambit_agent_view_version', help: 'Version of the discovery view applied', registers }),
    denials: new Counter({ name: 'ambit_agent_denials_total', help: 'Connections refused by policy, by reason (authorization, strict_mtls) and deciding policy', labelNames: ['reason', 'policy', 'direction'], registers }),
    enrollFailures: new Counter({ name: 'ambit_agent_enroll_failures_total', help: 'Failed attempts to enroll a local pod (retried)', registers }),
  };
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'ambit_' });
  return m;
}
