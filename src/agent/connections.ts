/**
 * The connections the agent is proxying: what `/connections` lists, what SIGTERM drains, and the
 * single place where a connection's metrics and access-log line are produced.
 *
 * Invariants:
 * - Every connection the agent accepts is opened here exactly once and closed exactly once
 *   (`close` is idempotent); Istio's opened/closed counters and byte counters move only here.
 * - Labels are fixed when the connection is opened (who talks to whom does not change), except
 *   `response_flags`, which the close may set (the opened counter keeps the flags known at open).
 * - Bytes are counted once: an open connection whose proxy set `bytes` reports what moved since
 *   the last scrape (under its labels at open), and the close adds the rest (under its labels at
 *   close), as Envoy's periodic TCP reports do.
 * - Denied and failed connections are recorded too (opened and closed at once, with their flag),
 *   as Envoy and ztunnel count them.
 * - Telemetry is decided once per connection, at open, from the local pod's effective settings
 *   (outbound: CLIENT, inbound: SERVER): a disabled metric is never incremented for it (so no
 *   series appears), a removed tag is left out of its labels, an upserted one takes its value;
 *   the access-log line is written only when the log is enabled and its filter holds. When a
 *   view disables a metric for a local workload, `pruneDisabled` removes the series it already
 *   had (a connection opened before the change keeps its decision until it closes).
 */
import type { Counter } from 'prom-client';
import type { AgentMetrics, TcpLabelName, TcpLabels } from './metrics.js';
import type { AccessLog } from './access-log.js';
import { applyTagOverrides, type ConcreteMetric, type ModeTelemetry } from '../model/compile/telemetry.js';
import type { Attributes, Value } from '../model/telemetry/expression.js';
import type { EffectiveTelemetry } from '../model/compile/telemetry.js';
import { workloadName } from '../metrics/workload-name.js';

export type Direction = 'outbound' | 'inbound' | 'inbound_plaintext';

/**
 * Envoy-style response flags: `-` none, `DENY` refused by policy (authorization or STRICT mTLS),
 * `UF` upstream connect failure, `UH` no healthy upstream, `NR` no route, `DC` downstream reset,
 * `UC` upstream reset.
 */
export type ResponseFlag = '-' | 'DENY' | 'UF' | 'UH' | 'NR' | 'DC' | 'UC';

export interface ConnectionRecord {
  id: number;
  direction: Direction;
  /** The local pod the agent acts for (source pod outbound, destination pod inbound). */
  pod: string;
  startedAt: Date;
  endedAt: Date | undefined;
  source: { address: string; port: number };
  destination: { address: string; port: number };
  /** How the agent reached the destination: `hbone`, `waypoint`, `local`, `passthrough`. */
  protocol: 'hbone' | 'waypoint' | 'local' | 'passthrough' | 'plaintext';
  upstream: string | undefined;
  /**
   * Key-exchange group of the HBONE TLS connection carrying it (e.g. X25519MLKEM768, X25519):
   * outbound, as the client read it from its session; inbound, as the server read it from its
   * own; `unknown` if OpenSSL recorded none; undefined for connections without TLS (plaintext,
   * passthrough, in-process delivery) and for outbound connections that never got a CONNECT
   * stream (no route, every endpoint failed, or the destination refused the CONNECT).
   */
  tlsGroup: string | undefined;
  labels: TcpLabels;
  bytesSent: number;
  bytesReceived: number;
  reason: string | undefined;
  policy: string | undefined;
}

/** The Telemetry settings of a local pod for one side (outbound: CLIENT, inbound: SERVER). */
export type TelemetryLookup = (pod: string, mode: 'client' | 'server') => ModeTelemetry;

/** What an expression can read of a connection (L4 only: HTTP attributes are absent). */
function connectionAttributes(r: ConnectionRecord): Attributes {
  const mtls = r.labels.connection_security_policy === 'mutual_tls';
  const peer = r.direction === 'outbound' ? r.labels.destination_principal : r.labels.source_principal;
  return {
    get(name): Value | undefined {
      switch (name) {
        case 'connection.mtls': return mtls;
        case 'connection.uri_san_peer_certificate': return mtls && peer !== 'unknown' ? peer : undefined;
        case 'source.address': return r.source.address;
        case 'source.port': return r.source.port;
        case 'destination.address': return r.destination.address;
        case 'destination.port': return r.destination.port;
        default: return undefined;
      }
    },
    header: () => undefined,
  };
}

export interface OpenConnection {
  readonly record: ConnectionRecord;
  /** Ends the connection's accounting (idempotent). */
  close(end: { bytesSent: number; bytesReceived: number; flags?: ResponseFlag; reason?: string; policy?: string }): void;
  /** Set by the proxy: tears the connection down (used when a drain deadline passes). */
  kill: () => void;
  /** Set by the proxy once bytes flow: the bytes so far, as `close` will report them (default: none). */
  bytes: (() => { bytesSent: number; bytesReceived: number }) | undefined;
}

let nextId = 0;

export class ConnectionTracker {
  private readonly open = new Map<number, OpenConnection>();
  /** Per open connection: counts the bytes it moved since the last report. */
  private readonly reporters = new Map<number, () => void>();
  private readonly idle: (() => void)[] = [];

  /**
   * `telemetry`: the effective Telemetry of a pod (default: none, every metric and every line,
   * as without Telemetry resources).
   */
  constructor(private readonly metrics: AgentMetrics, private readonly accessLog: AccessLog, private readonly telemetry?: TelemetryLookup) {
    metrics.beforeScrape.add(() => { for (const r of this.reporters.values()) r(); });
  }

  start(init: Omit<ConnectionRecord, 'id' | 'startedAt' | 'endedAt' | 'bytesSent' | 'bytesReceived' | 'reason' | 'policy' | 'tlsGroup'> & { tlsGroup?: string | undefined }): OpenConnection {
    const record: ConnectionRecord = { ...init, tlsGroup: init.tlsGroup, id: ++nextId, startedAt: new Date(), endedAt: undefined, bytesSent: 0, bytesReceived: 0, reason: undefined, policy: undefined };
    const tel = this.telemetry?.(record.pod, record.direction === 'outbound' ? 'client' : 'server');
    const overrides = tel === undefined || tel.tcpMetricsDefault ? undefined : tel.metrics;
    const attributes = tel === undefined || (overrides === undefined && tel.accessLog.filter === undefined) ? undefined : connectionAttributes(record);
    const count = (counter: Counter<TcpLabelName>, metric: ConcreteMetric, labels: TcpLabels, n?: number): void => {
      if (overrides === undefined) { counter.inc(labels, n); return; }
      const s = overrides[metric];
      if (!s.disabled) counter.inc(applyTagOverrides(labels, s, attributes as Attributes), n);
    };
    this.metrics.activeConnections.inc({ direction: record.direction });
    count(this.metrics.opened, 'TCP_OPENED_CONNECTIONS', record.labels);
    let closed = false;
    let sent = 0;
    let received = 0;
    // A record's bytesSent is what the client sent (client to server), bytesReceived what it got
    // back. Istio's counters are named the other way round: istio_tcp_received_bytes_total is
    // "received during request" (client to server), istio_tcp_sent_bytes_total "sent during
    // response" (server to client), as sidecars and ztunnel report them and Kiali reads them.
    const report = (labels: TcpLabels, bytesSent: number, bytesReceived: number) => {
      if (bytesSent > sent) { count(this.metrics.received, 'TCP_RECEIVED_BYTES', labels, bytesSent - sent); sent = bytesSent; }
      if (bytesReceived > received) { count(this.metrics.sent, 'TCP_SENT_BYTES', labels, bytesReceived - received); received = bytesReceived; }
    };
    const conn: OpenConnection = {
      record,
      kill: () => {},
      bytes: undefined,
      close: (end) => {
        if (closed) return;
        closed = true;
        record.endedAt = new Date();
        record.bytesSent = end.bytesSent;
        record.bytesReceived = end.bytesReceived;
        record.reason = end.reason;
        record.policy = end.policy;
        if (end.flags !== undefined) record.labels = { ...record.labels, response_flags: end.flags };
        count(this.metrics.closed, 'TCP_CLOSED_CONNECTIONS', record.labels);
        report(record.labels, end.bytesSent, end.bytesReceived);
        this.metrics.activeConnections.dec({ direction: record.direction });
        this.open.delete(record.id);
        this.reporters.delete(record.id);
        const log = tel?.accessLog;
        if (log === undefined || (log.enabled && (log.filter === undefined || log.filter.evaluate(attributes as Attributes) === true))) this.accessLog.write(record);
        if (this.open.size === 0) for (const f of this.idle.splice(0)) f();
      },
    };
    this.open.set(record.id, conn);
    const labelsAtOpen = record.labels;
    this.reporters.set(record.id, () => {
      const now = conn.bytes?.();
      if (now !== undefined) report(labelsAtOpen, now.bytesSent, now.bytesReceived);
    });
    return conn;
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Removes the series of TCP metrics that Telemetry disables for the local workloads of `state`:
   * reporter `source` series of the workload (CLIENT) and reporter `destination` ones (SERVER).
   * Resolves to the number of series removed.
   */
  async pruneDisabled(state: { localWorkloads(): readonly { key: string; name: string; namespace: string; labels: Readonly<Record<string, string>> }[]; telemetryFor(key: string): EffectiveTelemetry }): Promise<number> {
    const disabled: { reporter: string; side: 'source' | 'destination'; name: string; namespace: string; metric: ConcreteMetric }[] = [];
    for (const w of state.localWorkloads()) {
      const t = state.telemetryFor(w.key);
      if (t.isDefault) continue;
      for (const [mode, reporter, side] of [['client', 'source', 'source'], ['server', 'destination', 'destination']] as const) {
        for (const metric of ['TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES'] as const) {
          if (t[mode].metrics[metric].disabled) disabled.push({ reporter, side, name: workloadName(w), namespace: w.namespace, metric });
        }
      }
    }
    if (disabled.length === 0) return 0;
    const counters: [ConcreteMetric, Counter<TcpLabelName>][] = [
      ['TCP_OPENED_CONNECTIONS', this.metrics.opened], ['TCP_CLOSED_CONNECTIONS', this.metrics.closed],
      ['TCP_SENT_BYTES', this.metrics.sent], ['TCP_RECEIVED_BYTES', this.metrics.received],
    ];
    let removed = 0;
    for (const [metric, counter] of counters) {
      const rules = disabled.filter((d) => d.metric === metric);
      if (rules.length === 0) continue;
      for (const v of (await counter.get()).values) {
        const l = v.labels as Partial<TcpLabels>;
        if (rules.some((d) => l.reporter === d.reporter && l[`${d.side}_workload`] === d.name && l[`${d.side}_workload_namespace`] === d.namespace)) {
          counter.remove(v.labels as TcpLabels);
          removed++;
        }
      }
    }
    return removed;
  }

  list(): ConnectionRecord[] {
    return [...this.open.values()].map((c) => c.record);
  }

  /** Resolves when no connection is open, or after `timeoutMs` (then kills what is left). */
  async drain(timeoutMs: number): Promise<{ killed: number }> {
    if (this.open.size === 0) return { killed: 0 };
    const done = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idle.push(() => { clearTimeout(timer); resolve(true); });
    });
    if (done) return { killed: 0 };
    const left = [...this.open.values()];
    for (const c of left) c.kill();
    return { killed: left.length };
  }
}
