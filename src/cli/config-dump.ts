/**
 * `ambit config-dump --node N | --waypoint NS/NAME`: what one subscriber holds.
 *
 * - `--node N`: the agent's own /config_dump (admin port): the view version it applied, whether
 *   it is connected, each local pod with why it is or is not captured, its mTLS mode and the
 *   policies enforced for it; plus what the control plane last sent and the agent acked.
 * - `--waypoint NS/NAME`: waypoints keep no admin port, so the control plane's resources are
 *   turned into that waypoint's configuration with the waypoint's own code (configFromView):
 *   the services bound to it, their routes, destination policy and AuthorizationPolicies; plus
 *   the version the waypoint acked.
 *
 * JSON on stdout. Exit 0, 1 when the subscriber or the control plane cannot be reached.
 */
import { agentTargets, controlDump, DEFAULT_CONTROL, parseAgentFlags } from './lib/targets.js';
import { getJson } from './lib/http.js';
import { viewFromControl } from './lib/mesh-view.js';
import { CliError } from './lib/errors.js';
import { configFromView } from '../waypoint/view-config.js';
import { parseOptions } from './lib/options.js';

const HELP = `usage: ambit config-dump (--node NAME | --waypoint NAMESPACE/NAME) [options]

  --node NAME               the agent of this node: its /config_dump
  --waypoint NS/NAME        this waypoint: its bound services, routes and policies, from the control plane
  --control URL             control plane metrics port (default ${DEFAULT_CONTROL})
  --agent NODE=HOST[:PORT]  the agent's admin address, if the control plane cannot tell (default port 15000)
  --admin-port N            agents' admin port (default 15000)
`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('config-dump', HELP, argv, {
        node: { type: 'string' }, waypoint: { type: 'string' }, control: { type: 'string' },
        agent: { type: 'string', multiple: true }, 'admin-port': { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  if ((values.node === undefined) === (values.waypoint === undefined)) {
    process.stderr.write(`ambit config-dump: pass exactly one of --node or --waypoint\n\n${HELP}`);
    return 2;
  }
  const control = values.control ?? DEFAULT_CONTROL;
  if (values.node !== undefined) {
    const node = values.node;
    const flags = parseAgentFlags(values.agent ?? []).map((f) => ({ node: f.node ?? node, target: f.target }));
    const explicit = flags.some((f) => f.node === node);
    const dump = explicit && values.control === undefined ? undefined : await controlDump(control);
    const t = agentTargets(dump, flags, { admin: Number(values['admin-port'] ?? 15000), metrics: 15020 }, 'admin').find((x) => x.node === node);
    if (t === undefined) {
      const known = (dump?.subscribers ?? []).filter((s) => s.kind === 'agent').map((s) => s.name);
      throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `no agent of node '${node}' is connected to the control plane${known.length > 0 ? ` (connected: ${known.join(', ')})` : ''}; pass --agent ${node}=HOST[:PORT] to ask it directly`);
    }
    const agent = await getJson<Record<string, unknown>>(`${t.admin}/config_dump`, `the agent of ${node}`);
    const out = { subscriber: { kind: 'agent', name: node, admin: t.admin, ...(t.subscriber !== undefined ? { sent: t.subscriber.version, acked: t.subscriber.acked, connectedAt: t.subscriber.connectedAt, ...(t.subscriber.nacked ? { nacked: t.subscriber.nacked } : {}) } : { connected: false }) }, holds: agent };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return 0;
  }
  const name = values.waypoint as string;
  if (!/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(name)) throw new CliError('AMBIT_ERR_CLI_USAGE', `--waypoint must be NAMESPACE/NAME, got '${name}'`);
  const dump = await controlDump(control);
  const sub = dump.subscribers.find((s) => s.kind === 'waypoint' && s.name === name);
  const view = await viewFromControl(control);
  if (view.get('WAYPOINT_BINDING', name) === undefined) {
    const known = [...view.all('WAYPOINT_BINDING').keys()];
    throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', `no waypoint ${name} in the mesh${known.length > 0 ? ` (waypoints: ${known.join(', ')})` : ' (no Gateway of class ambit-waypoint)'}`);
  }
  const cfg = configFromView(view, { waypoint: name });
  const bound = [...cfg.bound()].map((b) => ({
    service: b.service.key, hostname: b.service.hostname, vips: b.service.vips, ports: b.service.ports,
    endpoints: b.service.endpoints.map((e) => ({ workload: e.workload, ip: e.ip, ready: e.ready })),
    routes: b.routes.map((r) => ({ source: `${r.source.kind} ${r.source.namespace}/${r.source.name} ${r.path}`, name: r.name, matches: r.matches, action: r.action, timeoutMs: r.timeoutMs, retries: r.retries, fault: r.fault })),
    destinationPolicy: b.destinationPolicy,
    authorizationPolicies: b.authorization.map((p) => `${p.key} (${p.action})`),
    requestAuthentications: b.requestAuthentication.length,
  }));
  const out = {
    subscriber: { kind: 'waypoint', name, ...(sub !== undefined ? { sent: sub.version, acked: sub.acked, connectedAt: sub.connectedAt, ...(sub.nacked ? { nacked: sub.nacked } : {}) } : { connected: false }) },
    controlPlaneVersion: `${dump.epoch}@${dump.version}`,
    holds: { binding: view.get('WAYPOINT_BINDING', name), bound },
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  return 0;
}
