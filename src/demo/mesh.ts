/**
 * The demo mesh (docs/architecture.md#the-test-topology): a Cluster (cluster.ts) plus everything that runs on it — the
 * control plane reading a copy of examples/demo/ in the state directory, one agent per node in its
 * node's netns, and the sample apps in their pods. `ambit demo` and the e2e tests both drive it.
 *
 *   control netns 198.18.0.100   ambit control --config <state>/mesh (TLS 15012)
 *   node-1 netns  198.18.0.1     ambit agent --node node-1     pods: client, echo-1
 *   node-2 netns  198.18.0.2     ambit agent --node node-2     pods: echo-2, tcp-echo, outside
 *                                                               (+ waypoint, with `waypoint: true`)
 *                                 node-1 also: ingress, with `ingress: true`
 *
 * With `waypoint: true` node-2 also gets a pod `waypoint` in namespace demo, labelled as the pod
 * of Gateway demo/waypoint and not captured itself (it receives HBONE on 15008 directly);
 * `startWaypoint()` runs `ambit waypoint` in it once the Gateway is declared (examples/demo/try/
 * waypoint.yaml), and `bindWaypoint()` labels a Service so that agents send it there.
 *
 * With `ingress: true` node-1 also gets a pod `ingress` in namespace demo, the pod of the ingress
 * Gateway demo/ingress (class ambit), not captured; `startIngress()` declares it
 * (examples/demo/try/ingress.yaml plus a generated kubernetes.io/tls Secret) and runs
 * `ambit waypoint --ingress` in it, listening on the pod's address for the `outside` pod.
 *
 * Invariants:
 * - Every process runs in the cluster's cgroup subtree (pods under their node's cgroup, which
 *   is the agent's --cgroup-root; agents and the control plane under `system`), so teardown by
 *   cgroup kills everything, and capture never touches the machine's other processes.
 * - Processes are started detached with their output in `<state>/logs/`, so `--detach` leaves a
 *   working mesh behind and `ambit demo down` finds it from `<state>` alone.
 * - The mesh is edited only by writing files in `<state>/mesh`, as a user would.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withLongRunningFlags } from '../util/node-flags.js';
import { selfSignedTlsCertificate } from '../identity/self-signed.js';
import { Cluster, CONTROL_ADDRESS, ClusterError, destroyCluster, execIn, spawnIn, type RunIn } from './cluster.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEMO_EXAMPLES = join(REPO_ROOT, 'examples', 'demo');

export const ECHO_VIP = '198.18.128.100';
export const TCP_ECHO_VIP = '198.18.128.101';

export interface DemoPod {
  name: string;
  namespace: string;
  node: string;
  serviceAccount: string;
  app: string;
  /** What runs in the pod: the HTTP echo on 8080, the TCP echo on 9000, or nothing. */
  serves: 'http' | 'tcp' | 'none';
  /** `version` label (default none): lets routes pick a replica by DestinationRule subset. */
  version?: string;
  /** Extra pod labels (default none). */
  labels?: Readonly<Record<string, string>>;
}

export const DEMO_PODS: readonly DemoPod[] = [
  { name: 'client', namespace: 'demo', node: 'node-1', serviceAccount: 'client', app: 'client', serves: 'none' },
  { name: 'echo-1', namespace: 'demo', node: 'node-1', serviceAccount: 'echo', app: 'echo', serves: 'http', version: 'v1' },
  { name: 'echo-2', namespace: 'demo', node: 'node-2', serviceAccount: 'echo', app: 'echo', serves: 'http', version: 'v2' },
  { name: 'tcp-echo', namespace: 'demo', node: 'node-2', serviceAccount: 'tcp-echo', app: 'tcp-echo', serves: 'tcp' },
  { name: 'outside', namespace: 'legacy', node: 'node-2', serviceAccount: 'default', app: 'outside', serves: 'none' },
];

/** The waypoint Gateway of namespace demo (declared by examples/demo/try/waypoint.yaml). */
export const DEMO_WAYPOINT = { namespace: 'demo', name: 'waypoint' } as const;

/** The pod that runs `ambit waypoint` for Gateway demo/waypoint (with `waypoint: true`). */
export const WAYPOINT_POD: DemoPod = {
  name: 'waypoint', namespace: 'demo', node: 'node-2', serviceAccount: 'waypoint', app: 'waypoint', serves: 'none',
  // The pod of Gateway demo/waypoint, outside capture: clients' agents reach it by HBONE on 15008.
  labels: { 'gateway.networking.k8s.io/gateway-name': DEMO_WAYPOINT.name, 'ambit.dev/dataplane-mode': 'none' },
};

/** The ingress Gateway of namespace demo (declared by examples/demo/try/ingress.yaml). */
export const DEMO_INGRESS = { namespace: 'demo', name: 'ingress', hostname: 'echo.demo.example' } as const;

/** The pod that runs `ambit waypoint --ingress` for Gateway demo/ingress (with `ingress: true`). */
export const INGRESS_POD: DemoPod = {
  name: 'ingress', namespace: 'demo', node: 'node-1', serviceAccount: 'ingress', app: 'ingress', serves: 'none',
  // The gateway's own pod, outside capture: it enters the mesh over HBONE with its own identity.
  labels: { 'gateway.networking.k8s.io/gateway-name': DEMO_INGRESS.name, 'ambit.dev/dataplane-mode': 'none' },
};

export interface DemoMeshOptions {
  /** Prefix of every name the cluster creates, 1-8 of [a-z0-9] (required). */
  prefix: string;
  /** State directory (required): mesh copy, CA, tokens, logs, cluster record. */
  stateDir: string;
  /** How to run `ambit` (default: this process's node, its loader flags and main script). */
  command?: string[];
  /** Folder of mesh resources to start from (default examples/demo). */
  examplesDir?: string;
  /** Label namespace `demo` ambient from the start (default false: plaintext first). */
  ambient?: boolean;
  /** Log level of the processes started (default info). */
  logLevel?: string;
  /** Extra agent flags (e.g. a short --drain-ms in tests). */
  agentArgs?: string[];
  /** Add the waypoint pod of namespace demo and its bootstrap token (default false). */
  waypoint?: boolean;
  /** Add the ingress pod of namespace demo and its bootstrap token (default false). */
  ingress?: boolean;
  /**
   * Stops the mesh from starting anything more once aborted (default none): `up()` then removes
   * what it made and rejects, and later spawns, execs and waits reject at once, so a demo that
   * is being torn down on a signal never races a step that is still starting processes.
   */
  signal?: AbortSignal;
}

export function defaultCommand(): string[] {
  const script = process.argv[1];
  if (script === undefined) throw new ClusterError('cannot tell how this process was started; pass command');
  return [process.execPath, ...withLongRunningFlags(process.execArgv), script];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class DemoMesh {
  readonly cluster: Cluster;
  readonly stateDir: string;
  readonly meshDir: string;
  private readonly command: string[];
  private readonly children = new Map<string, ChildProcess>();
  private readonly opts: DemoMeshOptions;

  private constructor(cluster: Cluster, opts: DemoMeshOptions) {
    this.cluster = cluster;
    // The agent flags are kept in the state dir so that `ambit demo upgrade-agent` (attached from
    // another process) starts the new agent exactly as the first one was started.
    const argsFile = join(opts.stateDir, 'agent-args.json');
    if (opts.agentArgs !== undefined) writeFileSync(argsFile, JSON.stringify(opts.agentArgs) + '\n');
    else if (existsSync(argsFile)) opts = { ...opts, agentArgs: JSON.parse(readFileSync(argsFile, 'utf8')) as string[] };
    this.opts = opts;
    this.stateDir = opts.stateDir;
    this.meshDir = join(opts.stateDir, 'mesh');
    this.command = opts.command ?? defaultCommand();
  }

  /** Builds the cluster and starts everything; on failure removes what was made. */
  static async up(opts: DemoMeshOptions, progress: (line: string) => void = () => {}): Promise<DemoMesh> {
    mkdirSync(join(opts.stateDir, 'logs'), { recursive: true });
    progress('building the cluster: 2 node netns on a bridge, pod netns wired to their node');
    const cluster = await Cluster.create({ prefix: opts.prefix, stateDir: opts.stateDir, nodes: 2 });
    const mesh = new DemoMesh(cluster, opts);
    try {
      for (const p of mesh.pods) {
        mesh.checkStopped();
        await cluster.addPod({ name: p.name, namespace: p.namespace, node: p.node });
      }
      mesh.checkStopped();
      mesh.writeMesh();
      progress(`control plane: reading ${mesh.meshDir}`);
      await mesh.startControl();
      progress('agents: one per node, in the node netns');
      for (const n of cluster.nodes) await mesh.startAgent(n.name);
      progress('apps: HTTP echo on both nodes, TCP echo, client, and a pod outside the mesh');
      await mesh.startApps();
      for (const n of cluster.nodes) await mesh.waitAgentReady(n.name);
    } catch (err) {
      await mesh.down().catch(() => undefined);
      throw err;
    }
    return mesh;
  }

  /** Attaches to a mesh started earlier (by `ambit demo --detach`). */
  static attach(opts: DemoMeshOptions): DemoMesh {
    return new DemoMesh(Cluster.load(opts.stateDir), opts);
  }

  /** The pods of this mesh: the demo's, plus the waypoint and ingress pods when asked for. */
  get pods(): readonly DemoPod[] {
    return [...DEMO_PODS, ...(this.opts.waypoint === true ? [WAYPOINT_POD] : []), ...(this.opts.ingress === true ? [INGRESS_POD] : [])];
  }

  private writeMesh(): void {
    mkdirSync(this.meshDir, { recursive: true });
    const src = this.opts.examplesDir ?? DEMO_EXAMPLES;
    for (const f of readdirSync(src)) {
      if (/\.(ya?ml|json)$/.test(f)) cpSync(join(src, f), join(this.meshDir, f));
    }
    const docs: string[] = [
      '# Generated by ambit demo: the nodes and pods of this cluster (addresses and netns paths are real).',
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system',
    ];
    for (const n of this.cluster.nodes) {
      docs.push(`apiVersion: v1\nkind: Node\nmetadata:\n  name: ${n.name}\nspec:\n  podCIDR: ${n.podCidr}\nstatus:\n  addresses:\n    - type: InternalIP\n      address: ${n.address}`);
    }
    for (const p of this.pods) {
      const info = this.cluster.pod(p.name);
      const port = p.serves === 'http' ? '\n      ports:\n        - name: http\n          containerPort: 8080' : p.serves === 'tcp' ? '\n      ports:\n        - name: tcp\n          containerPort: 9000' : '';
      const labels = { app: p.app, ...(p.version !== undefined ? { version: p.version } : {}), ...(p.labels ?? {}) };
      const labelYaml = Object.entries(labels).map(([k, v]) => `\n    ${k}: ${v}`).join('');
      docs.push(`apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${p.name}\n  namespace: ${p.namespace}\n  labels:${labelYaml}\n  annotations:\n    ambit.dev/netns: ${info.netnsPath}\nspec:\n  nodeName: ${p.node}\n  serviceAccountName: ${p.serviceAccount}\n  containers:\n    - name: ${p.app}\n      image: ambit-demo/${p.app}${port}\nstatus:\n  phase: Running\n  podIP: ${info.ip}`);
    }
    writeFileSync(join(this.meshDir, '50-generated-pods.yaml'), docs.join('\n---\n') + '\n');
    this.setAmbient(this.opts.ambient === true);
    const tokens: string[] = ['# bootstrap tokens written by ambit demo (one per agent)'];
    for (const n of this.cluster.nodes) {
      const t = randomBytes(24).toString('base64url');
      tokens.push(`${t} agent ${n.name}`);
      writeFileSync(join(this.stateDir, `${n.name}.token`), `${t}\n`, { mode: 0o600 });
    }
    if (this.opts.waypoint === true) {
      const t = randomBytes(24).toString('base64url');
      tokens.push(`${t} waypoint ${DEMO_WAYPOINT.namespace}/${DEMO_WAYPOINT.name}`);
      writeFileSync(join(this.stateDir, 'waypoint.token'), `${t}\n`, { mode: 0o600 });
    }
    if (this.opts.ingress === true) {
      const t = randomBytes(24).toString('base64url');
      tokens.push(`${t} waypoint ${DEMO_INGRESS.namespace}/${DEMO_INGRESS.name}`);
      writeFileSync(join(this.stateDir, 'ingress.token'), `${t}\n`, { mode: 0o600 });
    }
    writeFileSync(join(this.stateDir, 'tokens'), tokens.join('\n') + '\n', { mode: 0o600 });
  }

  /** Labels namespace `demo` ambient (or `none`) by editing the mesh folder. */
  setAmbient(on: boolean): void {
    const file = join(this.meshDir, '10-namespaces.yaml');
    const text = readFileSync(file, 'utf8');
    const next = text.replace(/(name: demo\n\s+labels:\n\s+ambit\.dev\/dataplane-mode: )\S+/, `$1${on ? 'ambient' : 'none'}`);
    if (next === text && !text.includes(`dataplane-mode: ${on ? 'ambient' : 'none'}`)) throw new ClusterError(`cannot find the dataplane-mode label of namespace demo in ${file}`);
    writeFileSync(file, next);
  }

  /**
   * Binds Service `demo/<service>` to waypoint `waypoint` with the label ambit.dev/use-waypoint
   * (undefined removes the label), by editing the Service in the mesh folder as a user would.
   */
  bindWaypoint(service: string, waypoint: string | undefined): void {
    const file = join(this.meshDir, '20-services.yaml');
    const text = readFileSync(file, 'utf8');
    const head = new RegExp(`(kind: Service\\nmetadata:\\n  name: ${service}\\n  namespace: demo\\n)(  labels:\\n    ambit\\.dev/use-waypoint: \\S+\\n)?`);
    if (!head.test(text)) throw new ClusterError(`cannot find Service demo/${service} in ${file}`);
    writeFileSync(file, text.replace(head, (_m, meta: string) => meta + (waypoint === undefined ? '' : `  labels:\n    ambit.dev/use-waypoint: ${waypoint}\n`)));
  }

  /**
   * Runs `ambit waypoint` for Gateway demo/waypoint in the waypoint pod (needs `waypoint: true`)
   * and waits until it has its first configuration. Declare the Gateway first
   * (examples/demo/try/waypoint.yaml): the control plane signs the waypoint's certificate only
   * for a declared Gateway.
   */
  async startWaypoint(): Promise<void> {
    if (this.opts.waypoint !== true) throw new ClusterError('this demo mesh was started without its waypoint pod (option waypoint)');
    const pod = this.cluster.pod(WAYPOINT_POD.name);
    this.spawnAmbit('waypoint', this.cluster.podPlace(WAYPOINT_POD.name), [
      'waypoint', '--name', `${DEMO_WAYPOINT.namespace}/${DEMO_WAYPOINT.name}`, '--service-account', WAYPOINT_POD.serviceAccount,
      '--control-plane', `${CONTROL_ADDRESS}:15012`, '--trust-bundle', join(this.stateDir, 'ca', 'root-cert.pem'),
      '--token-file', join(this.stateDir, 'waypoint.token'),
    ]);
    await this.waitHttp(this.cluster.node(pod.node).netns, `http://${pod.ip}:15021/healthz/ready`, 30_000, 'the waypoint');
  }

  /**
   * Declares the ingress Gateway demo/ingress (examples/demo/try/ingress.yaml, and the Secret
   * demo/ingress-cert with a self-signed certificate for echo.demo.example made now), runs
   * `ambit waypoint --ingress` in the ingress pod (needs `ingress: true`) and waits until it
   * serves its first configuration. Returns the certificate (PEM) for clients to trust.
   */
  async startIngress(): Promise<{ address: string; certPem: string }> {
    if (this.opts.ingress !== true) throw new ClusterError('this demo mesh was started without its ingress pod (option ingress)');
    const { certPem, keyPem } = await selfSignedTlsCertificate({ hostnames: [DEMO_INGRESS.hostname] });
    const b64 = (x: string) => Buffer.from(x).toString('base64');
    // The key lives in the mesh folder (the control plane's input, mode 0600) and in the ingress's view only.
    writeFileSync(join(this.meshDir, '61-ingress-cert.yaml'), `# Generated by ambit demo: the ingress's TLS certificate (self-signed, for ${DEMO_INGRESS.hostname}).\napiVersion: v1\nkind: Secret\nmetadata:\n  name: ingress-cert\n  namespace: ${DEMO_INGRESS.namespace}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: ${b64(certPem)}\n  tls.key: ${b64(keyPem)}\n`, { mode: 0o600 });
    writeFileSync(join(this.stateDir, 'ingress-cert.pem'), certPem);
    this.setResource('61-ingress.yaml', readFileSync(join(DEMO_EXAMPLES, 'try', 'ingress.yaml'), 'utf8'));
    const pod = this.cluster.pod(INGRESS_POD.name);
    this.spawnAmbit('ingress', this.cluster.podPlace(INGRESS_POD.name), [
      'waypoint', '--ingress', '--name', `${DEMO_INGRESS.namespace}/${DEMO_INGRESS.name}`, '--service-account', INGRESS_POD.serviceAccount,
      '--host', pod.ip, '--control-plane', `${CONTROL_ADDRESS}:15012`, '--trust-bundle', join(this.stateDir, 'ca', 'root-cert.pem'),
      '--token-file', join(this.stateDir, 'ingress.token'),
    ]);
    await this.waitHttp(this.cluster.node(pod.node).netns, `http://${pod.ip}:15021/healthz/ready`, 30_000, 'the ingress');
    return { address: pod.ip, certPem };
  }

  /** The waypoint's metrics text. */
  async waypointMetrics(): Promise<string> {
    const pod = this.cluster.pod(WAYPOINT_POD.name);
    return (await this.httpGet(this.cluster.node(pod.node).netns, `http://${pod.ip}:15020/metrics`)).body;
  }

  /** Writes (or with `yaml` undefined, removes) a file of the mesh folder. */
  setResource(file: string, yaml: string | undefined): void {
    const path = join(this.meshDir, file);
    if (yaml === undefined) rmSync(path, { force: true });
    else writeFileSync(path, yaml);
  }

  /** Throws once the mesh's `signal` is aborted (the demo is being removed). */
  private checkStopped(): void {
    if (this.opts.signal?.aborted === true) throw new ClusterError('the demo is being removed (stopped by a signal)');
  }

  private spawnAmbit(name: string, where: RunIn, args: string[]): ChildProcess {
    this.checkStopped();
    const log = openSync(join(this.stateDir, 'logs', `${name}.log`), 'a');
    const [cmd, ...pre] = this.command;
    const child = spawnIn(where, cmd as string, [...pre, ...args], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, AMBIT_LOG_LEVEL: this.opts.logLevel ?? 'info' },
    });
    closeSync(log);
    child.unref();
    this.children.set(name, child);
    this.recordPid(name, child.pid);
    return child;
  }

  private recordPid(name: string, pid: number | undefined): void {
    const file = join(this.stateDir, 'pids.json');
    const pids = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) as Record<string, number> : {};
    if (pid === undefined) delete pids[name]; else pids[name] = pid;
    writeFileSync(file, JSON.stringify(pids, null, 2) + '\n');
  }

  private pidOf(name: string): number | undefined {
    const c = this.children.get(name);
    if (c !== undefined && c.exitCode === null && c.signalCode === null) return c.pid;
    const file = join(this.stateDir, 'pids.json');
    if (!existsSync(file)) return undefined;
    return (JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>)[name];
  }

  /** Stops a process started by this mesh (SIGTERM drains; SIGKILL is a crash) and waits for it. */
  async stop(name: string, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
    const pid = this.pidOf(name);
    if (pid === undefined) return;
    // The recorded pid is the shell that exec'd nsenter, which exec'd the process: the same pid.
    try { process.kill(pid, signal); } catch { this.recordPid(name, undefined); return; }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try { process.kill(pid, 0); } catch { break; }
      await sleep(25);
    }
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    this.recordPid(name, undefined);
  }

  /** Starts the control plane; `extraArgs` go after the demo's own (default none, e.g. `--outbound-traffic-policy REGISTRY_ONLY`). */
  async startControl(extraArgs: readonly string[] = []): Promise<void> {
    this.spawnAmbit('control', { netns: this.cluster.controlNetns, cgroup: this.cluster.systemCgroup() }, [
      'control', '--config', this.meshDir, '--token-file', join(this.stateDir, 'tokens'), '--ca-dir', join(this.stateDir, 'ca'),
      '--host', CONTROL_ADDRESS, '--grpc-plaintext-port', 'off', ...extraArgs,
    ]);
    await this.waitHttp(this.cluster.controlNetns, `http://${CONTROL_ADDRESS}:15021/healthz/ready`, 30_000, 'the control plane');
  }

  /** Starts the agent of a node (another one may run: the new one takes over, src/demo/upgrade.ts). */
  async startAgent(node: string): Promise<ChildProcess> {
    const n = this.cluster.node(node);
    return this.spawnAmbit(`agent-${node}`, { netns: n.netns, cgroup: this.cluster.systemCgroup() }, [
      'agent', '--node', node, '--control', `${CONTROL_ADDRESS}:15012`, '--control-ca', join(this.stateDir, 'ca', 'root-cert.pem'),
      '--token-file', join(this.stateDir, `${node}.token`), '--cgroup-root', n.cgroup, '--pin-dir', n.pinDir,
      '--state-dir', join(this.stateDir, `agent-${node}`),
      // The node netns is private to the demo: admin on every address of it (loopback and the
      // node address), so `ambit demo status` run in the control netns reaches it.
      '--admin-host', '0.0.0.0', ...(this.opts.agentArgs ?? []),
    ]);
  }

  /** The pid of the agent of a node this mesh knows about (undefined when none runs). */
  agentPid(node: string): number | undefined {
    return this.pidOf(`agent-${node}`);
  }

  /** Records which process is the agent of a node (after a failed upgrade: the old one again). */
  setAgentPid(node: string, pid: number | undefined): void {
    this.recordPid(`agent-${node}`, pid);
  }

  /** The agent flags this mesh starts agents with. */
  get agentArgs(): readonly string[] {
    return this.opts.agentArgs ?? [];
  }

  async waitAgentReady(node: string, timeoutMs = 30_000): Promise<void> {
    await this.waitHttp(this.cluster.node(node).netns, 'http://127.0.0.1:15021/healthz/ready', timeoutMs, `the agent of ${node}`);
  }

  private async startApps(): Promise<void> {
    for (const p of this.pods) {
      if (p.serves === 'none') continue;
      this.spawnAmbit(`app-${p.name}`, this.cluster.podPlace(p.name), ['demo', 'app', p.serves === 'http' ? 'http-echo' : 'tcp-echo', '--name', p.name]);
    }
    for (const p of this.pods) {
      if (p.serves === 'none') continue;
      const info = this.cluster.pod(p.name);
      const url = p.serves === 'http' ? `http://${info.ip}:8080/healthz` : undefined;
      if (url !== undefined) await this.waitHttp(this.cluster.node(p.node).netns, url, 20_000, `app ${p.name}`);
    }
  }

  /** GET from inside a netns (node netns: admin, metrics; control netns: readiness). */
  async httpGet(netns: string, url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
    const script = `fetch(process.argv[1],{signal:AbortSignal.timeout(${timeoutMs})}).then(async r=>{process.stdout.write(r.status+"\\n"+await r.text())},e=>{process.stdout.write("0\\n"+(e.cause?.code??e.message));})`;
    const r = await execIn({ netns }, process.execPath, ['-e', script, url], { timeoutMs: timeoutMs + 5000 });
    const nl = r.stdout.indexOf('\n');
    return { status: Number(r.stdout.slice(0, nl)) || 0, body: r.stdout.slice(nl + 1) };
  }

  private async waitHttp(netns: string, url: string, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      this.checkStopped();
      const r = await this.httpGet(netns, url, 2000);
      if (r.status === 200) return;
      last = `${r.status} ${r.body.trim()}`;
      await sleep(200);
    }
    throw new ClusterError(`${what} is not ready after ${timeoutMs} ms (${url}: ${last}); see ${join(this.stateDir, 'logs')}`);
  }

  /** The agent's /config_dump. */
  async agentDump(node: string): Promise<{ localPods: { pod: string; captured: boolean }[]; view: { version: number } }> {
    const r = await this.httpGet(this.cluster.node(node).netns, 'http://127.0.0.1:15000/config_dump');
    if (r.status !== 200) throw new ClusterError(`agent of ${node} did not answer /config_dump: ${r.status} ${r.body}`);
    return JSON.parse(r.body) as { localPods: { pod: string; captured: boolean }[]; view: { version: number } };
  }

  /** The agent's metrics text. */
  async agentMetrics(node: string): Promise<string> {
    return (await this.httpGet(this.cluster.node(node).netns, 'http://127.0.0.1:15020/metrics')).body;
  }

  /** Waits until each named pod is (or is not) captured by its node's agent. */
  async waitCaptured(pods: string[], captured: boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkStopped();
      const pending: string[] = [];
      for (const node of this.cluster.nodes) {
        const mine = pods.filter((p) => this.cluster.pod(p).node === node.name);
        if (mine.length === 0) continue;
        const dump = await this.agentDump(node.name).catch(() => undefined);
        for (const p of mine) {
          const key = `${this.cluster.pod(p).namespace}/${p}`;
          if ((dump?.localPods.find((x) => x.pod === key)?.captured ?? false) !== captured) pending.push(p);
        }
      }
      if (pending.length === 0) return;
      if (Date.now() > deadline) throw new ClusterError(`pods ${pending.join(', ')} not ${captured ? 'captured' : 'released'} after ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** Runs a command in a pod (its netns and its node's cgroup, so it is captured when enrolled). */
  exec(pod: string, cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    this.checkStopped();
    return execIn(this.cluster.podPlace(pod), cmd, args, { timeoutMs });
  }

  /** Starts a long-running process in a pod (the caller stops it). */
  spawnInPod(pod: string, cmd: string, args: string[]): ChildProcess {
    return spawnIn(this.cluster.podPlace(pod), cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** The `ambit` command line (for exec in pods). */
  ambit(): string[] {
    return [...this.command];
  }

  /** Stops every process and removes the cluster and the state directory's runtime files. */
  async down(): Promise<string[]> {
    const problems = await destroyCluster(this.stateDir);
    rmSync(join(this.stateDir, 'pids.json'), { force: true });
    return problems;
  }
}
