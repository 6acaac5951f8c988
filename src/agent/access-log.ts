/**
 * One JSON access-log line per proxied connection, written when it closes (pino, component
 * `agent.access`, message `access`). Fields follow Envoy/ztunnel access logs closely enough for
 * the usual log pipelines: who, to whom, how (mutual_tls or none), bytes each way, duration, and
 * why it ended (response flags, the deciding policy for a denial), and the TLS key-exchange group
 * of the HBONE connection (`tls_group`, see ConnectionRecord.tlsGroup). Never keys or tokens.
 */
import type { Logger } from '../util/log.js';
import type { ConnectionRecord } from './connections.js';

export interface AccessLogEntry {
  id: number;
  direction: ConnectionRecord['direction'];
  start_time: string;
  duration_ms: number;
  src_addr: string;
  dst_addr: string;
  /** Where the agent actually connected (HBONE server, waypoint, or the app). */
  upstream: string | undefined;
  src_workload: string;
  src_namespace: string;
  src_principal: string;
  dst_workload: string;
  dst_namespace: string;
  dst_principal: string;
  dst_service: string;
  protocol: ConnectionRecord['protocol'];
  connection_security_policy: 'mutual_tls' | 'none';
  /** Key-exchange group of the HBONE TLS connection; absent without TLS. */
  tls_group: string | undefined;
  bytes_sent: number;
  bytes_received: number;
  response_flags: string;
  reason: string | undefined;
  policy: string | undefined;
}

export class AccessLog {
  constructor(private readonly log: Logger) {}

  write(r: ConnectionRecord): void {
    const entry: AccessLogEntry = {
      id: r.id,
      direction: r.direction,
      start_time: r.startedAt.toISOString(),
      duration_ms: (r.endedAt ?? new Date()).getTime() - r.startedAt.getTime(),
      src_addr: `${r.source.address}:${r.source.port}`,
      dst_addr: `${r.destination.address}:${r.destination.port}`,
      upstream: r.upstream,
      src_workload: r.labels.source_workload,
      src_namespace: r.labels.source_workload_namespace,
      src_principal: r.labels.source_principal,
      dst_workload: r.labels.destination_workload,
      dst_namespace: r.labels.destination_workload_namespace,
      dst_principal: r.labels.destination_principal,
      dst_service: r.labels.destination_service,
      protocol: r.protocol,
      connection_security_policy: r.labels.connection_security_policy as 'mutual_tls' | 'none',
      tls_group: r.tlsGroup,
      bytes_sent: r.bytesSent,
      bytes_received: r.bytesReceived,
      response_flags: r.labels.response_flags,
      reason: r.reason,
      policy: r.policy,
    };
    if (r.labels.response_flags === '-') this.log.info(entry, 'access');
    else this.log.warn(entry, 'access');
  }
}
