/**
 * `ambit top`: a live per-node view in the terminal, from the agents' /metrics (15020):
 * enrolled pods, open connections, new connections/s, bytes/s, denials/s (and total), control
 * plane connection, and the top talkers. Agents come from the control plane's subscriber list
 * or `--agent NODE=HOST[:PORT]`; one that does not answer is shown as UNREACHABLE with the
 * reason, and the others keep updating. `--once` prints one frame (two scrapes `--interval`
 * apart) and exits: 0 when at least one agent answered, 1 otherwise.
 */
import { agentTargets, controlDump, DEFAULT_CONTROL, parseAgentFlags, type AgentTarget } from './lib/targets.js';
import { httpGet } from './lib/http.js';
import { computeFrame, renderFrame, scrapeOf, type Scrape } from './lib/top-frame.js';
import { CliError } from './lib/errors.js';
import { parseOptions } from './lib/options.js';

const HELP = `usage: ambit top [options]

  --control URL        control plane metrics port, to list the connected agents (default ${DEFAULT_CONTROL})
  --agent NODE=HOST[:PORT]  an agent's metrics address (repeatable; default port 15020); with
                       --agent only, the control plane is not asked
  --metrics-port N     agents' metrics port when found through the control plane (default 15020)
  --interval MS        refresh period (default 2000)
  --once               print one frame and exit
  --width N            columns (default: the terminal's, else 80)
`;

async function scrape(t: AgentTarget, timeoutMs: number): Promise<Scrape> {
  const node = t.node ?? new URL(t.metrics).host;
  try {
    const r = await httpGet(`${t.metrics}/metrics`, `the agent of ${node}`, timeoutMs);
    if (r.status !== 200) return { node, at: Date.now(), error: `HTTP ${r.status} from ${t.metrics}/metrics` };
    return scrapeOf(node, Date.now(), r.body);
  } catch (err) {
    const msg = (err as Error).message.replace(/^cannot reach the agent of \S+ at /, '');
    return { node, at: Date.now(), error: msg };
  }
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('top', HELP, argv, {
        control: { type: 'string' }, agent: { type: 'string', multiple: true }, 'metrics-port': { type: 'string' },
        interval: { type: 'string' }, once: { type: 'boolean' }, width: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  const interval = Number(values.interval ?? (values.once ? 1000 : 2000));
  if (!Number.isInteger(interval) || interval < 100) { process.stderr.write('ambit top: --interval must be an integer >= 100 (ms)\n'); return 2; }
  const width = Number(values.width ?? process.stdout.columns ?? 80);
  const metricsPort = Number(values['metrics-port'] ?? 15020);
  const flags = parseAgentFlags(values.agent ?? []);
  const findTargets = async (): Promise<AgentTarget[]> => {
    const dump = flags.length > 0 && values.control === undefined ? undefined : await controlDump(values.control ?? DEFAULT_CONTROL);
    const targets = agentTargets(dump, flags, { admin: 15000, metrics: metricsPort }, 'metrics');
    if (targets.length === 0) throw new CliError('AMBIT_ERR_CLI_NOT_FOUND', 'no agent is connected to the control plane; pass --agent NODE=HOST[:PORT] to watch one directly');
    return targets;
  };
  let targets = await findTargets();
  const timeout = Math.min(3000, Math.max(500, interval - 100));
  let prev = await Promise.all(targets.map((t) => scrape(t, timeout)));
  if (values.once) {
    await new Promise((r) => setTimeout(r, interval));
    const cur = await Promise.all(targets.map((t) => scrape(t, timeout)));
    process.stdout.write(renderFrame(computeFrame(prev, cur), width) + '\n');
    return cur.some((c) => c.samples !== undefined) ? 0 : 1;
  }
  let stopped = false;
  const stop = () => { stopped = true; };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let round = 0;
  while (!stopped) {
    await new Promise((r) => setTimeout(r, interval));
    if (stopped) break;
    if (++round % 15 === 0 && (values.control !== undefined || flags.length === 0)) {
      // Pick up agents that joined or left.
      targets = await findTargets().catch(() => targets);
    }
    const cur = await Promise.all(targets.map((t) => scrape(t, timeout)));
    const w = Number(values.width ?? process.stdout.columns ?? width);
    process.stdout.write(`\x1b[H\x1b[2J${renderFrame(computeFrame(prev, cur), w)}\n\n(Ctrl-C to quit)\n`);
    prev = cur;
  }
  return 0;
}
