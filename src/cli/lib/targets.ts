/**
 * Where the operator commands find things: the control plane's /config_dump (on its metrics port,
 * 15014) lists the connected subscribers with their peer address and config versions; an agent's
 * admin (15000) and metrics (15020) ports are on that peer address, or on what `--agent
 * NODE=HOST[:PORT]` says (a `kubectl port-forward`, or the agent's pod IP).
 *
 * Invariant: an explicit `--agent` always wins over what the control plane reports, so a node
 * whose agent is not connected can still be inspected.
 */
import type { SessionInfo } from '../../control/discovery-service.js';
import { baseUrl, getJson } from './http.js';
import { CliError } from './errors.js';

/** A subscriber as the control plane's /config_dump lists it. */
export type SubscriberInfo = SessionInfo;

export interface ControlDump {
  epoch: string;
  version: number;
  ready: boolean;
  identity: string;
  source: { kind: string; location: string; synced: boolean; problems: { message: string }[] };
  configErrorsTotal: number;
  lastRejected: { message: string; file?: string; line?: number }[];
  resources: Record<string, number>;
  subscribers: SubscriberInfo[];
  resourceList?: { kind: string; name: string; version: number; value: unknown }[];
}

export const DEFAULT_CONTROL = 'http://127.0.0.1:15014';

export async function controlDump(control: string, withResources = false, timeoutMs = 3000): Promise<ControlDump> {
  const url = `${baseUrl(control, 15014)}/config_dump${withResources ? '?resources=1' : ''}`;
  return getJson<ControlDump>(url, 'the control plane', timeoutMs);
}

/** The host of a gRPC peer string (`ipv4:198.18.0.1:40312`, `ipv6:[::1]:5000`, `1.2.3.4:5`). */
export function peerHost(peer: string): string | undefined {
  const p = peer.replace(/^ipv[46]:/, '');
  const m = /^\[([^\]]+)\]:\d+$/.exec(p) ?? /^([^:]+):\d+$/.exec(p);
  return m?.[1];
}

/** `--agent` values: `NODE=HOST[:PORT]` (or just `HOST[:PORT]`, named by the agent itself later). */
export function parseAgentFlags(values: readonly string[]): { node: string | undefined; target: string }[] {
  return values.map((v) => {
    const eq = v.indexOf('=');
    if (eq === 0 || v === '') throw new CliError('AMBIT_ERR_CLI_USAGE', `--agent '${v}': expected NODE=HOST[:PORT] or HOST[:PORT]`);
    return eq < 0 ? { node: undefined, target: v } : { node: v.slice(0, eq), target: v.slice(eq + 1) };
  });
}

export interface AgentTarget {
  /** Node name (from the control plane, or the `--agent` flag). */
  node: string | undefined;
  /** Base URL of the admin port. */
  admin: string;
  /** Base URL of the metrics port. */
  metrics: string;
  /** What the control plane knows of it, when connected. */
  subscriber?: SubscriberInfo;
}

/**
 * Agents to contact: every connected agent subscriber, overridden or completed by `--agent`.
 * `flagPort` says which port an `--agent HOST:PORT` names (status and config-dump: admin; top:
 * metrics); the other port is the default one on the same host.
 */
export function agentTargets(dump: ControlDump | undefined, flags: { node: string | undefined; target: string }[], ports: { admin: number; metrics: number }, flagPort: 'admin' | 'metrics' = 'admin'): AgentTarget[] {
  const out = new Map<string, AgentTarget>();
  const on = (host: string, port: number) => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  for (const s of dump?.subscribers ?? []) {
    if (s.kind !== 'agent') continue;
    const host = peerHost(s.peer);
    if (host === undefined) continue;
    out.set(s.name, { node: s.name, admin: on(host, ports.admin), metrics: on(host, ports.metrics), subscriber: s });
  }
  let anon = 0;
  for (const f of flags) {
    const key = f.node ?? `#${anon++}`;
    const prev = out.get(key);
    const given = baseUrl(f.target, flagPort === 'admin' ? ports.admin : ports.metrics);
    const host = new URL(given).hostname.replace(/^\[|\]$/g, '');
    const admin = flagPort === 'admin' ? given : on(host, ports.admin);
    const metrics = flagPort === 'metrics' ? given : on(host, ports.metrics);
    out.set(key, { node: f.node, admin, metrics, ...(prev?.subscriber !== undefined ? { subscriber: prev.subscriber } : {}) });
  }
  return [...out.values()].sort((a, b) => (a.node ?? '~').localeCompare(b.node ?? '~'));
}
