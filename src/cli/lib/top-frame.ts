/**
 * The data and the rendering of `ambit top`: per-node rows computed from two scrapes of each
 * agent's /metrics (rates are the counter deltas over the time between them), top talkers over
 * the same interval, and a frame that fits the terminal width (80 columns at least).
 *
 * Invariants: a counter that went down (agent restarted) counts from zero, never negative; an
 * agent that did not answer keeps its row, with the reason instead of numbers.
 */
import { parsePromText, sumBy, total, type Sample } from './prom-text.js';
import { table, rate } from './format.js';

export interface Scrape {
  /** Node name, or the target when unknown. */
  node: string;
  /** ms since epoch. */
  at: number;
  samples?: Sample[];
  /** Why the agent did not answer. */
  error?: string;
}

export interface NodeRow {
  node: string;
  error?: string;
  enrolledPods: number;
  activeConnections: number;
  openedPerSecond: number;
  bytesPerSecond: number;
  denialsPerSecond: number;
  denialsTotal: number;
  controlPlaneConnected: boolean;
}

export interface Talker {
  source: string;
  destination: string;
  bytesPerSecond: number;
  connections: number;
}

export interface TopFrame {
  at: Date;
  intervalSeconds: number;
  nodes: NodeRow[];
  talkers: Talker[];
}

export function scrapeOf(node: string, at: number, text: string): Scrape {
  return { node, at, samples: parsePromText(text) };
}

const inc = (now: number, before: number) => (now >= before ? now - before : now);

/** A frame from the previous and the current scrape of each node (same order, same nodes). */
export function computeFrame(prev: readonly Scrape[], cur: readonly Scrape[]): TopFrame {
  const nodes: NodeRow[] = [];
  const talk = new Map<string, { bytes: number; conns: number }>();
  let interval = 0;
  for (const c of cur) {
    const p = prev.find((x) => x.node === c.node);
    const seconds = p !== undefined ? Math.max(0.001, (c.at - p.at) / 1000) : 1;
    interval = Math.max(interval, p !== undefined ? seconds : 0);
    if (c.samples === undefined) {
      nodes.push({ node: c.node, error: c.error ?? 'no answer', enrolledPods: 0, activeConnections: 0, openedPerSecond: 0, bytesPerSecond: 0, denialsPerSecond: 0, denialsTotal: 0, controlPlaneConnected: false });
      continue;
    }
    const s = c.samples;
    const ps = p?.samples ?? [];
    const bytesNow = total(s, 'istio_tcp_sent_bytes_total') + total(s, 'istio_tcp_received_bytes_total');
    const bytesBefore = total(ps, 'istio_tcp_sent_bytes_total') + total(ps, 'istio_tcp_received_bytes_total');
    const denials = total(s, 'ambit_agent_denials_total');
    nodes.push({
      node: c.node,
      enrolledPods: total(s, 'ambit_agent_enrolled_pods'),
      activeConnections: total(s, 'ambit_agent_active_connections'),
      openedPerSecond: p?.samples === undefined ? 0 : inc(total(s, 'istio_tcp_connections_opened_total'), total(ps, 'istio_tcp_connections_opened_total')) / seconds,
      bytesPerSecond: p?.samples === undefined ? 0 : inc(bytesNow, bytesBefore) / seconds,
      denialsPerSecond: p?.samples === undefined ? 0 : inc(denials, total(ps, 'ambit_agent_denials_total')) / seconds,
      denialsTotal: denials,
      controlPlaneConnected: total(s, 'ambit_agent_control_plane_connected') > 0,
    });
    // Talkers from the source side, so each connection counts once.
    const by = ['source_workload_namespace', 'source_workload', 'destination_service', 'destination_workload_namespace', 'destination_workload'];
    const nowBytes = new Map<string, number>();
    for (const m of ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
      for (const [k, v] of sumBy(s, m, by, { reporter: 'source' })) nowBytes.set(k, (nowBytes.get(k) ?? 0) + v);
    }
    const beforeBytes = new Map<string, number>();
    for (const m of ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
      for (const [k, v] of sumBy(ps, m, by, { reporter: 'source' })) beforeBytes.set(k, (beforeBytes.get(k) ?? 0) + v);
    }
    const nowConns = sumBy(s, 'istio_tcp_connections_opened_total', by, { reporter: 'source' });
    const beforeConns = sumBy(ps, 'istio_tcp_connections_opened_total', by, { reporter: 'source' });
    for (const [k, v] of nowBytes) {
      const t = talk.get(k) ?? { bytes: 0, conns: 0 };
      t.bytes += p?.samples === undefined ? 0 : inc(v, beforeBytes.get(k) ?? 0) / seconds;
      t.conns += p?.samples === undefined ? 0 : inc(nowConns.get(k) ?? 0, beforeConns.get(k) ?? 0);
      talk.set(k, t);
    }
  }
  const talkers: Talker[] = [...talk.entries()]
    .filter(([, v]) => v.bytes > 0 || v.conns > 0)
    .map(([k, v]) => {
      const [sns, sw, dsvc, dns, dw] = k.split('\u0000');
      const dst = dsvc !== undefined && dsvc !== 'unknown' && dsvc !== '' ? dsvc.replace(/\.svc\.cluster\.local$/, '') : `${dns}/${dw}`;
      return { source: `${sns}/${sw}`, destination: dst, bytesPerSecond: v.bytes, connections: v.conns };
    })
    .sort((a, b) => b.bytesPerSecond - a.bytesPerSecond || b.connections - a.connections)
    .slice(0, 10);
  return { at: new Date(cur[0]?.at ?? Date.now()), intervalSeconds: interval, nodes, talkers };
}

const n1 = (v: number) => (v >= 100 ? Math.round(v).toString() : v.toFixed(1));

/** The frame as text, at most `width` columns wide. */
export function renderFrame(f: TopFrame, width = 80): string {
  const w = Math.max(60, width);
  const head = `ambit top — ${f.at.toISOString().replace('T', ' ').slice(0, 19)}Z — ${f.nodes.length} node(s), rates over ${f.intervalSeconds.toFixed(1)}s`;
  const rows = f.nodes.map((n) => n.error !== undefined
    ? [n.node, '', '', '', '', '', '']
    : [n.node, String(n.enrolledPods), String(n.activeConnections), n1(n.openedPerSecond), rate(n.bytesPerSecond), `${n1(n.denialsPerSecond)} (${n.denialsTotal})`, n.controlPlaneConnected ? 'ok' : 'LOST']);
  const nodeTable = table([
    { title: 'NODE', flex: true }, { title: 'PODS', right: true }, { title: 'CONNS', right: true }, { title: 'NEW/S', right: true },
    { title: 'BYTES/S', right: true }, { title: 'DENIED/S (ALL)', right: true }, { title: 'CONTROL' },
  ], rows, w);
  // An unreachable row's message spans the numeric columns: print it on its own line instead.
  const lines = nodeTable.split('\n').map((l, i) => {
    const n = f.nodes[i - 1];
    return n?.error !== undefined ? `${n.node.padEnd(8)}  UNREACHABLE: ${n.error}`.slice(0, w) : l;
  });
  const talkers = f.talkers.length === 0 ? '  (no traffic in this interval)' : table([
    { title: 'SOURCE', flex: true }, { title: 'DESTINATION', flex: true }, { title: 'BYTES/S', right: true }, { title: 'NEW', right: true },
  ], f.talkers.map((t) => [t.source, t.destination, rate(t.bytesPerSecond), String(t.connections)]), w);
  return [head.slice(0, w), '', ...lines, '', 'top talkers (source side)', talkers].join('\n');
}
