/**
 * `ambit demo`: the first command a new user runs. Builds a two-node mesh of network namespaces
 * on this machine (docs/architecture.md#the-test-topology), starts the control plane, two agents and the sample apps, shows
 * traffic in plaintext, labels the namespace ambient, shows the same traffic carried by HBONE with
 * mutual TLS, and prints what to try next. Needs root.
 *
 *   ambit demo [--state-dir DIR] [--detach]   build and run; stays in the foreground until Ctrl-C,
 *                                             SIGTERM or SIGHUP (the terminal went away), then
 *                                             removes everything; with --detach leaves it running
 *                                             and exits (a signal during the build still removes it)
 *   ambit demo down [--state-dir DIR]          remove everything a demo made
 *   ambit demo status|config-dump|why|top ...  the operator command against the running demo: run in
 *                                             the control netns with --control set
 *   ambit demo upgrade-agent NODE              zero-downtime agent upgrade on a node (src/demo/upgrade.ts)
 *   ambit demo exec POD -- CMD [ARGS...]       run a command inside a demo pod (netns + cgroup, so
 *                                             it is captured like the pod's own processes)
 *   ambit demo app http-echo|tcp-echo|client   the sample apps (run inside the pods)
 */
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DemoMesh, DEMO_EXAMPLES, DEMO_INGRESS, DEMO_PODS, ECHO_VIP, TCP_ECHO_VIP, REPO_ROOT, defaultCommand } from '../demo/mesh.js';
import { Cluster, CONTROL_ADDRESS, spawnIn } from '../demo/cluster.js';
import { startHttpEcho } from '../demo/apps/http-echo.js';
import { startTcpEcho } from '../demo/apps/tcp-echo.js';
import { runHttpClient, runTcpClient } from '../demo/apps/client.js';
import { upgradeAgent } from '../demo/upgrade.js';

const DEFAULT_STATE = '/run/ambit-demo';
const DEFAULT_PREFIX = 'ambitd';
/** The signals that end a foreground demo, each removing it: Ctrl-C, kill, the terminal closing. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** The operator commands `ambit demo <command>` runs against the demo's control plane. */
const OPERATOR_COMMANDS = new Set(['status', 'config-dump', 'why', 'top']);

const HELP = `usage:
  ambit demo [--state-dir DIR] [--detach] [--no-waypoint] [--prefix NAME]
                                            build the two-node demo mesh and show it working,
                                            L4, L7 through a waypoint, then HTTPS from outside
                                            through the ingress gateway; stays in the foreground
                                            until Ctrl-C, SIGTERM or SIGHUP (then removes
                                            everything); --detach leaves it running;
                                            --no-waypoint stops at L4 (no waypoint, no ingress)
  ambit demo down [--state-dir DIR]          remove everything the demo made
  ambit demo status|config-dump|why|top [--state-dir DIR] [ARGS...]
                                            that operator command against the running demo (run
                                            in the demo's control netns, --control set for you),
                                            e.g. ambit demo config-dump --node node-1
  ambit demo upgrade-agent NODE [--state-dir DIR]
                                            replace NODE's agent without a gap: start a new one,
                                            wait until it is ready, SIGTERM the old one, wait for
                                            it to drain and exit
  ambit demo exec POD -- CMD [ARGS...]       run a command in a demo pod (captured like the pod)
  ambit demo app http-echo|tcp-echo|client   the sample apps the pods run

  --state-dir DIR   where the demo keeps its mesh folder, CA, tokens and logs (default ${DEFAULT_STATE})
  --prefix NAME     first part of the names of its netns, cgroups and BPF pins, 1-8 of [a-z0-9]
                    (default ${DEFAULT_PREFIX}); two demos with their own state dir and prefix can run side by side
`;

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function needRoot(): number | undefined {
  if (isRoot()) return undefined;
  process.stderr.write('ambit demo needs root (it creates network namespaces, cgroups and eBPF programs): run it with sudo\n');
  return 1;
}

/** How the user invoked ambit, for the commands we print. */
function self(): string {
  const script = process.argv[1] ?? 'ambit';
  if (/\/ambit$/.test(script)) return 'ambit';
  const rel = relative(process.cwd(), script) || script;
  const loader = process.execArgv.join(' ');
  return `node ${loader ? `${loader} ` : ''}${rel}`;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'app') return runApp(rest);
  if (sub === 'exec') return runExec(rest);
  if (sub === 'down') return runDown(rest);
  if (sub === 'upgrade-agent') return runUpgradeAgent(rest);
  if (sub !== undefined && OPERATOR_COMMANDS.has(sub)) return runOperator(sub, rest);
  if (sub === '--help' || sub === '-h' || sub === 'help') { process.stdout.write(HELP); return 0; }
  return runUp(argv);
}

function stateDirOf(args: string[]): { stateDir: string; rest: string[] } | undefined {
  try {
    const { values, positionals } = parseArgs({ args, options: { 'state-dir': { type: 'string' }, detach: { type: 'boolean' } }, allowPositionals: true });
    return { stateDir: values['state-dir'] ?? DEFAULT_STATE, rest: positionals };
  } catch (err) {
    process.stderr.write(`ambit demo: ${(err as Error).message}\n\n${HELP}`);
    return undefined;
  }
}

async function runDown(args: string[]): Promise<number> {
  const root = needRoot();
  if (root !== undefined) return root;
  const o = stateDirOf(args);
  if (o === undefined) return 2;
  if (!existsSync(join(o.stateDir, 'cluster.json'))) {
    process.stdout.write(`no demo recorded in ${o.stateDir}; nothing to remove\n`);
    return 0;
  }
  const mesh = DemoMesh.attach({ prefix: DEFAULT_PREFIX, stateDir: o.stateDir });
  const problems = await mesh.down();
  rmSync(o.stateDir, { recursive: true, force: true });
  for (const p of problems) process.stderr.write(`ambit demo down: ${p}\n`);
  process.stdout.write(problems.length === 0 ? 'demo removed: processes, namespaces, cgroups, BPF pins and state\n' : 'demo removed with problems (see above)\n');
  return problems.length === 0 ? 0 : 1;
}

async function runUpgradeAgent(args: string[]): Promise<number> {
  const root = needRoot();
  if (root !== undefined) return root;
  const o = stateDirOf(args);
  if (o === undefined) return 2;
  const [node, extra] = o.rest;
  if (node === undefined || extra !== undefined) {
    process.stderr.write('usage: ambit demo upgrade-agent NODE [--state-dir DIR]   (nodes: node-1, node-2)\n');
    return 2;
  }
  if (!existsSync(join(o.stateDir, 'cluster.json'))) {
    process.stderr.write(`ambit demo upgrade-agent: no demo recorded in ${o.stateDir}; start one with: ${self()} demo --detach\n`);
    return 1;
  }
  const mesh = DemoMesh.attach({ prefix: DEFAULT_PREFIX, stateDir: o.stateDir });
  try {
    const { newPid } = await upgradeAgent(mesh, node, { progress: (l) => process.stdout.write(`• ${l}\n`) });
    process.stdout.write(`upgraded the agent of ${node} without a gap (now pid ${newPid})\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`ambit demo upgrade-agent: ${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * `ambit demo status` (and config-dump, why, top): the demo's control plane and agents live in
 * network namespaces that the machine's own netns has no route to, so the command runs in the
 * control netns, where the control plane answers on 198.18.0.100 and each agent's admin and
 * metrics ports on its node address (the demo starts agents with --admin-host 0.0.0.0).
 */
async function runOperator(command: string, args: string[]): Promise<number> {
  const root = needRoot();
  if (root !== undefined) return root;
  let stateDir = DEFAULT_STATE;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--state-dir' && args[i + 1] !== undefined) stateDir = args[++i] as string;
    else if (a.startsWith('--state-dir=')) stateDir = a.slice('--state-dir='.length);
    else rest.push(a);
  }
  if (!existsSync(join(stateDir, 'cluster.json'))) {
    process.stderr.write(`ambit demo ${command}: no demo recorded in ${stateDir}; start one with: ${self()} demo\n`);
    return 1;
  }
  const cluster = Cluster.load(stateDir);
  const [cmd, ...pre] = defaultCommand();
  const given = rest.some((a) => /^--(control|config)(=|$)/.test(a));
  const control = given ? [] : ['--control', `http://${CONTROL_ADDRESS}:15014`];
  const child = spawnIn({ netns: cluster.controlNetns }, cmd as string, [...pre, command, ...control, ...rest], { stdio: 'inherit' });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal !== null ? 1 : 0))));
}

async function runExec(args: string[]): Promise<number> {
  const root = needRoot();
  if (root !== undefined) return root;
  let stateDir = DEFAULT_STATE;
  if (args[0] === '--state-dir' && args[1] !== undefined) { stateDir = args[1]; args = args.slice(2); }
  const [pod, dashdash, cmd, ...cmdArgs] = args;
  if (pod === undefined || dashdash !== '--' || cmd === undefined) {
    process.stderr.write(`usage: ambit demo exec POD -- CMD [ARGS...]   (pods: ${DEMO_PODS.map((p) => p.name).join(', ')})\n`);
    return 2;
  }
  const cluster = Cluster.load(stateDir);
  const child = spawnIn(cluster.podPlace(pod), cmd, cmdArgs, { stdio: 'inherit' });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
}

async function runApp(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      name: { type: 'string' }, port: { type: 'string' }, url: { type: 'string' }, tcp: { type: 'string' },
      count: { type: 'string' }, interval: { type: 'string' }, message: { type: 'string' }, body: { type: 'string' },
    },
  });
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  switch (name) {
    case 'http-echo':
      await startHttpEcho({ name: values.name ?? 'echo', port: num(values.port, 8080) });
      return waitForSignal();
    case 'tcp-echo':
      await startTcpEcho({ name: values.name ?? 'tcp-echo', port: num(values.port, 9000) });
      return waitForSignal();
    case 'client':
      if (values.tcp !== undefined) {
        const i = values.tcp.lastIndexOf(':');
        return runTcpClient({ host: values.tcp.slice(0, i), port: Number(values.tcp.slice(i + 1)), count: num(values.count, 0), intervalMs: num(values.interval, 500), ...(values.message !== undefined ? { message: values.message } : {}) });
      }
      if (values.url === undefined) { process.stderr.write('ambit demo app client: pass --url URL or --tcp HOST:PORT\n'); return 2; }
      return runHttpClient({ url: values.url, count: num(values.count, 1), intervalMs: num(values.interval, 500), ...(values.body !== undefined ? { body: values.body } : {}) });
    default:
      process.stderr.write('usage: ambit demo app http-echo|tcp-echo [--name N] [--port P] | client (--url URL | --tcp HOST:PORT) [--count N] [--interval MS]\n');
      return 2;
  }
}

function waitForSignal(): Promise<number> {
  return new Promise((resolve) => {
    const stop = () => resolve(0);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

/**
 * Step 4 of the demo: declare the waypoint of namespace demo with its routes and L7 policy
 * (examples/demo/try/waypoint.yaml), run it, bind Service echo to it, and show L7 behaviour that
 * no agent has: a header pins a replica, and a path is denied with 403.
 */
async function showWaypoint(mesh: DemoMesh, say: (l: string) => void): Promise<void> {
  say('\n4. declaring waypoint demo/waypoint (examples/demo/try/waypoint.yaml), starting it, binding service echo ...');
  mesh.setResource('60-waypoint.yaml', readFileSync(join(DEMO_EXAMPLES, 'try', 'waypoint.yaml'), 'utf8'));
  await mesh.startWaypoint();
  mesh.bindWaypoint('echo', 'waypoint');
  const curl = async (path: string, header?: string) => {
    const r = await mesh.exec('client', 'curl', ['-s', '-m', '4', '-o', '/dev/null', '-w', '%{http_code} %header{x-ambit-route}', ...(header ? ['-H', header] : []), `http://${ECHO_VIP}${path}`], 10_000);
    return r.stdout.trim();
  };
  const deadline = Date.now() + 30_000;
  let answer = '';
  while (!/ \S+$/.test(answer) && Date.now() < deadline) {
    answer = await curl('/');
    if (!/ \S+$/.test(answer)) await new Promise((r) => setTimeout(r, 300));
  }
  if (!/ \S+$/.test(answer)) {
    say('   the waypoint did not take the traffic within 30 s; see the logs in the state directory');
    return;
  }
  say(`   GET / -> ${answer} (status, route chosen by the waypoint)`);
  say(`   GET / with x-canary: yes -> ${await curl('/', 'x-canary: yes')}`);
  say(`   GET /admin/stats -> ${await curl('/admin/stats')} (denied by AuthorizationPolicy demo/echo-no-admin at L7)`);
}

/**
 * Step 5 of the demo: declare the ingress gateway demo/ingress (examples/demo/try/ingress.yaml
 * and a generated TLS Secret), run it, and call echo from the pod outside the mesh through it
 * over HTTPS: the request enters the mesh over HBONE with the ingress's identity.
 */
async function showIngress(mesh: DemoMesh, say: (l: string) => void): Promise<void> {
  say('\n5. declaring ingress gateway demo/ingress (examples/demo/try/ingress.yaml, TLS Secret generated), starting it ...');
  const { address } = await mesh.startIngress();
  const certFile = join(mesh.stateDir, 'ingress-cert.pem');
  const curl = () => mesh.exec('outside', 'curl', ['-s', '-m', '4', '--cacert', certFile, '--resolve', `${DEMO_INGRESS.hostname}:443:${address}`, '-o', '/dev/null', '-w', '%{http_code}', `https://${DEMO_INGRESS.hostname}/`], 10_000).then((r) => r.stdout.trim());
  const deadline = Date.now() + 30_000;
  let answer = await curl();
  while (answer !== '200' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 300));
    answer = await curl();
  }
  say(`   outside -> https://${DEMO_INGRESS.hostname}/ at ${address}:443 -> ${answer} (TLS at the ingress, HBONE to echo as spiffe://cluster.local/ns/demo/sa/ingress)`);
}

async function runUp(args: string[]): Promise<number> {
  const root = needRoot();
  if (root !== undefined) return root;
  let values;
  try {
    ({ values } = parseArgs({ args, options: { 'state-dir': { type: 'string' }, detach: { type: 'boolean' }, 'no-waypoint': { type: 'boolean' }, prefix: { type: 'string' } } }));
  } catch (err) {
    process.stderr.write(`ambit demo: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const stateDir = values['state-dir'] ?? DEFAULT_STATE;
  const me = self();
  const sd = stateDir === DEFAULT_STATE ? '' : ` --state-dir ${stateDir}`;
  if (existsSync(join(stateDir, 'cluster.json'))) {
    process.stderr.write(`ambit demo: a demo is already running (state in ${stateDir}); remove it first with: ${me} demo down${sd}\n`);
    return 1;
  }
  // A terminal that went away (SIGHUP) fails every later write with EIO: that must not stop
  // the removal, which is the point of handling the signal.
  for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
  const say = (l: string) => { try { process.stdout.write(`${l}\n`); } catch { /* no terminal any more */ } };
  const withWaypoint = values['no-waypoint'] !== true;
  // From here until the demo is detached or removed, Ctrl-C, SIGTERM and SIGHUP all remove it:
  // the signal aborts whatever step is running (nothing new starts) and the removal begins.
  const stop = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  let built: DemoMesh | undefined;
  let removal: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    removal ??= (async () => {
      say('\nremoving the demo ...');
      // Before `up()` returned there is no mesh yet: it removes what it made when it sees the abort.
      if (built !== undefined) await built.down();
      rmSync(stateDir, { recursive: true, force: true });
      say('done: processes, namespaces, cgroups and BPF pins removed');
    })();
    return removal;
  };
  let stopped: () => void = () => {};
  const stoppedP = new Promise<void>((resolve) => { stopped = resolve; });
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy !== undefined) {
      say(`${signal}: still removing the demo (SIGKILL would leave it behind; then: ${me} demo down${sd})`);
      return;
    }
    stoppedBy = signal;
    say(`\n${signal}: stopping`);
    stop.abort();
    if (built !== undefined) void cleanup().finally(stopped);
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  const release = () => { for (const s of STOP_SIGNALS) process.off(s, onSignal); };
  try {
    built = await DemoMesh.up({ prefix: values.prefix ?? DEFAULT_PREFIX, stateDir, examplesDir: DEMO_EXAMPLES, waypoint: withWaypoint, ingress: withWaypoint, signal: stop.signal }, (l) => say(`• ${l}`));
  } catch (err) {
    // up() has removed what it made; the state directory goes too (logs with it, as on success).
    if (stoppedBy === undefined) { release(); throw err; }
    await cleanup();
    release();
    return 0;
  }
  const mesh = built;
  if (stoppedBy === undefined) try {
    const client = async (url: string, n: number) => {
      const r = await mesh.exec('client', mesh.ambit()[0] as string, [...mesh.ambit().slice(1), 'demo', 'app', 'client', '--url', url, '--count', String(n), '--interval', '100']);
      return r.stdout.trim().split('\n').map((l) => { try { return (JSON.parse(l.slice(4)) as { pod: string }).pod; } catch { return l; } });
    };
    const echo2 = mesh.cluster.pod('echo-2').ip;
    say(`\n1. namespace demo is not in the mesh yet: client -> echo-2 (${echo2}:8080) goes in plaintext`);
    say(`   answered by: ${(await client(`http://${echo2}:8080/`, 2)).join(', ')}`);
    say('\n2. labelling namespace demo ambit.dev/dataplane-mode=ambient (editing the mesh folder) ...');
    mesh.setAmbient(true);
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    say('   the agents captured the pods (no restart)');
    say(`\n3. client -> service echo (VIP ${ECHO_VIP}:80), round robin across both nodes, over HBONE (mutual TLS):`);
    say(`   answered by: ${(await client(`http://${ECHO_VIP}/`, 4)).join(', ')}`);
    const tcp = await mesh.exec('client', mesh.ambit()[0] as string, [...mesh.ambit().slice(1), 'demo', 'app', 'client', '--tcp', `${TCP_ECHO_VIP}:9000`, '--count', '1', '--message', 'hello']);
    say(`   client -> tcp-echo (${TCP_ECHO_VIP}:9000): ${tcp.stdout.split('\n').find((l) => l.startsWith('tcp-echo')) ?? tcp.stdout.trim()}`);
    const metrics = await mesh.agentMetrics('node-2');
    const mtls = metrics.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total') && l.includes('mutual_tls')).length;
    say(`   node-2's agent reports ${mtls} istio_tcp_connections_opened_total series with connection_security_policy="mutual_tls"`);
    if (withWaypoint) await showWaypoint(mesh, say);
    if (withWaypoint) await showIngress(mesh, say);
    const n1 = mesh.cluster.node('node-1').netns;
    const n2 = mesh.cluster.node('node-2').netns;
    say(`
The demo mesh is running (state, logs and the mesh folder in ${stateDir}). Try:

  # requests from the client pod (captured, tunnelled with mTLS)
  ${me} demo exec client -- curl -s http://${ECHO_VIP}/
  ${me} demo exec client -- ${me} demo app client --tcp ${TCP_ECHO_VIP}:9000 --count 5

  # plaintext from a pod outside the mesh (namespace legacy) straight to an echo pod
  ${me} demo exec outside -- curl -s http://${echo2}:8080/

  # the mesh from an operator's seat: health, what an agent holds, why traffic goes as it does, live view
  ${me} demo status${sd}
  ${me} demo config-dump${sd} --node node-1
  ${me} demo why${sd} demo/client echo.demo:80
  ${me} demo top${sd}

  # the agents' raw endpoints, in their node netns: metrics (Istio names), certificates, connections
  ip netns exec ${n2} curl -s localhost:15020/metrics | grep istio_tcp
  ip netns exec ${n1} curl -s localhost:15000/certs
  ip netns exec ${n2} curl -s localhost:15000/connections${withWaypoint ? `

  # L7 through the waypoint: header routing, and its request metrics (reporter="waypoint")
  ${me} demo exec client -- curl -s -i -H 'x-canary: yes' http://${ECHO_VIP}/
  ip netns exec ${n2} curl -s ${mesh.cluster.pod('waypoint').ip}:15020/metrics | grep istio_requests_total

  # from outside the mesh through the ingress gateway (TLS terminated there, HBONE into the mesh)
  ${me} demo exec outside -- curl -s --cacert ${join(stateDir, 'ingress-cert.pem')} --resolve ${DEMO_INGRESS.hostname}:443:${mesh.cluster.pod('ingress').ip} https://${DEMO_INGRESS.hostname}/
  ${me} demo exec outside -- curl -s -H 'host: ${DEMO_INGRESS.hostname}' http://${mesh.cluster.pod('ingress').ip}/` : ''}

  # apply a policy: deny the client, or require mTLS (the outside pod is then refused)
  cp ${join(REPO_ROOT, 'examples/demo/try/deny-client.yaml')} ${mesh.meshDir}/
  cp ${join(REPO_ROOT, 'examples/demo/try/strict-mtls.yaml')} ${mesh.meshDir}/
  tail -f ${join(stateDir, 'logs', 'agent-node-2.log')} | grep denied

  # replace node-2's agent without a gap: open connections keep flowing, new ones never fail
  ${me} demo upgrade-agent node-2${sd}

  # take the namespace out of the mesh again: set ambit.dev/dataplane-mode: none in
  ${join(mesh.meshDir, '10-namespaces.yaml')}

  # remove everything
  ${me} demo down${sd}
`);
  } catch (err) {
    // A step cut short by a signal fails on purpose: the removal it started is what matters.
    if (stoppedBy === undefined) {
      await cleanup();
      release();
      throw err;
    }
  }
  if (stoppedBy === undefined && values.detach === true) {
    release();
    say(`detached: the demo keeps running; remove it with ${me} demo down${sd}`);
    return 0;
  }
  if (stoppedBy === undefined) {
    say('running in the foreground: Ctrl-C (or SIGTERM, or closing the terminal) stops it and removes everything; start with --detach to keep it');
    // Signal listeners and a pending promise do not keep Node running, and the mesh's processes
    // are detached: without a handle of its own the demo would exit here and leave them behind.
    const keepAlive = setInterval(() => {}, 1 << 30);
    await stoppedP;
    clearInterval(keepAlive);
  }
  await cleanup();
  release();
  return 0;
}
