/**
 * `ambit why SRC DST[:PORT] [--method M --path P]`: explains, step by step, what the mesh does
 * with that traffic — enrollment, destination and waypoint, route, the policy and rule that
 * decide, mTLS — from a folder of YAML (`--config DIR`, as the control plane would serve it) or a
 * running control plane (`--control URL`, what it serves now). The explanation runs the agents'
 * and waypoints' own decision code (src/cli/lib/why.ts). Exit 0 with the explanation, 1 when the
 * mesh cannot be read or a name is unknown, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import { explain, type WhyQuery } from './lib/why.js';
import { viewFromControl, viewFromFolder } from './lib/mesh-view.js';
import { DEFAULT_CONTROL } from './lib/targets.js';
import { CliError } from './lib/errors.js';

const HELP = `usage: ambit why SRC DST[:PORT] [options]

  SRC                  a pod (namespace/name or name) or an IP address
  DST                  a pod, a service host (name.namespace or name.namespace.svc.cluster.local) or an IP;
                       PORT defaults to the only port of the service or pod

where the mesh comes from (default: the control plane at ${DEFAULT_CONTROL}):
  --config DIR         a folder of mesh YAML, compiled as the control plane would
  --control URL        a running control plane's metrics port (15014), e.g. after
                       kubectl -n ambit-system port-forward deploy/ambit-control 15014

request (L7, at a waypoint):
  --method M           HTTP method (default GET)
  --path P             request path (default /)

other:
  --output text|json   (default text)
  --trust-domain NAME  (default cluster.local)
  --root-namespace NS  Istio root namespace (default istio-system)
`;

/** `host:port`, `[v6]:port`, or a bare destination. */
export function splitDestination(arg: string): { destination: string; port: number | undefined } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(arg);
  if (v6 !== null) return { destination: v6[1] as string, port: v6[2] !== undefined ? Number(v6[2]) : undefined };
  const m = /^(.*):(\d+)$/.exec(arg);
  if (m !== null && !(m[1] as string).includes(':')) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new CliError('AMBIT_ERR_CLI_USAGE', `port ${m[2]} is not 1-65535`);
    return { destination: m[1] as string, port };
  }
  return { destination: arg, port: undefined };
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true,
      options: {
        config: { type: 'string' }, control: { type: 'string' }, method: { type: 'string' }, path: { type: 'string' },
        output: { type: 'string' }, 'trust-domain': { type: 'string' }, 'root-namespace': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`ambit why: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (positionals.length !== 2) { process.stderr.write(`ambit why: expected SRC and DST[:PORT]\n\n${HELP}`); return 2; }
  if (values.config !== undefined && values.control !== undefined) { process.stderr.write('ambit why: pass --config or --control, not both\n'); return 2; }
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') { process.stderr.write(`ambit why: --output must be text or json\n`); return 2; }
  if (values.path !== undefined && !values.path.startsWith('/')) { process.stderr.write(`ambit why: --path must start with /\n`); return 2; }
  const opts = { ...(values['trust-domain'] !== undefined ? { trustDomain: values['trust-domain'] } : {}), ...(values['root-namespace'] !== undefined ? { rootNamespace: values['root-namespace'] } : {}) };
  const { destination, port } = splitDestination(positionals[1] as string);
  const view = values.config !== undefined ? await viewFromFolder(values.config, opts) : await viewFromControl(values.control ?? DEFAULT_CONTROL);
  const q: WhyQuery = {
    source: positionals[0] as string, destination,
    ...(port !== undefined ? { port } : {}), ...(values.method !== undefined ? { method: values.method } : {}), ...(values.path !== undefined ? { path: values.path } : {}),
  };
  const r = explain(view, q, opts);
  if (output === 'json') {
    process.stdout.write(JSON.stringify({ query: q, ...r }, null, 2) + '\n');
  } else {
    process.stdout.write(r.steps.map((s, i) => `${String(i + 1).padStart(2)}. ${s}`).join('\n') + '\n');
  }
  return 0;
}
