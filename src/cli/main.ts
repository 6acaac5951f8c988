#!/usr/bin/env -S node --initial-old-space-size=64
/**
 * The `ambit` command: one bin, one subcommand per operator task. Each subcommand lives in its
 * own module under src/cli/ and is loaded only when asked for, so `ambit analyze` never pulls
 * in gRPC or the native addon.
 */

interface Subcommand {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  control: { summary: 'run the control plane: discovery and CA over gRPC, from a folder or Kubernetes', load: () => import('./control.js') },
  waypoint: { summary: 'run a waypoint: L7 routing, retries and authorization for bound services over HBONE', load: () => import('./waypoint.js') },
  analyze: { summary: 'validate mesh YAML and report every problem with file:line:col', load: () => import('./analyze.js') },
  agent: { summary: 'run the node agent: eBPF capture, HBONE mTLS tunnel, L4 policy, metrics', load: () => import('./agent.js') },
  demo: { summary: 'build a two-node mesh of network namespaces on this machine and show it working (root)', load: () => import('./demo.js') },
  status: { summary: 'control plane reachability, connected agents and waypoints, config versions, enrolled pods, cert expiries', load: () => import('./status.js') },
  'config-dump': { summary: 'what a node agent (--node N) or a waypoint (--waypoint NS/NAME) holds', load: () => import('./config-dump.js') },
  why: { summary: 'explain step by step what the mesh does with traffic from SRC to DST[:PORT]', load: () => import('./why.js') },
  top: { summary: 'live per-node view from the agents\' metrics: connections, bytes/s, denials, top talkers', load: () => import('./top.js') },
};

function usage(): string {
  const lines = ['usage: ambit <command> [options]', '', 'commands:'];
  for (const [name, sub] of Object.entries(SUBCOMMANDS)) lines.push(`  ${name.padEnd(14)}${sub.summary}`);
  lines.push('', 'Run `ambit <command> --help` for the options of a command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  const sub = SUBCOMMANDS[name];
  if (sub === undefined) {
    process.stderr.write(`ambit: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  const mod = await sub.load();
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`ambit: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    if (process.env['AMBIT_DEBUG']) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    process.exitCode = 1;
  },
);
