/**
 * A cluster of Linux network namespaces on one machine (docs/architecture.md#the-test-topology),
 * for `ambit demo` and the e2e tests: node netns joined by a bridge in a private "fabric" netns,
 * one netns per pod wired to its node's pod bridge by a veth pair, a private cgroup v2 subtree per
 * node holding its pods' processes, and processes started inside a netns and a cgroup.
 *
 *   fabric netns: bridge `fab` ── veth ── node-<n> netns eth0 198.18.0.<n>/24 (ip_forward on)
 *                                 └─ veth ── control netns 198.18.0.100/24
 *   node-<n> netns: bridge `pods` 198.19.<n>.1/24 ── veth ── pod netns eth0 198.19.<n>.<k>/24
 *                   routes: 198.19.<m>.0/24 via 198.18.0.<m>; 198.18.128.0/24 (VIPs) unreachable
 *                   (only captured connections to a VIP are served, by the agent)
 *   pod netns: default route via 198.19.<n>.1
 *
 * Invariants:
 * - Only 198.18.0.0/15 is used, nothing is attached to the machine's own netns, so no traffic
 *   can leave the machine; cgroups live under `<cgroup2>/<prefix>`, never the root cgroup.
 * - Every name starts with the cluster's prefix and is recorded in `<stateDir>/cluster.json`
 *   before it is created, so `destroyCluster(stateDir)` (and `ambit demo down`) removes
 *   everything, even after a crash half-way through creation.
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AmbitError } from '../util/errors.js';

const execFileP = promisify(execFile);

export class ClusterError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DEMO_CLUSTER', message, options);
    this.name = 'ClusterError';
  }
}

/** Runs a command; a failure names the command and its stderr. */
export async function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 << 20, timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new ClusterError(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

export function cgroup2Root(): string {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  const target = line?.split(' ')[1];
  if (target === undefined) throw new ClusterError('no cgroup v2 mount in /proc/mounts (ambit needs the unified cgroup hierarchy)');
  return target;
}

export const FABRIC_PREFIX = '198.18.0';
export const CONTROL_ADDRESS = '198.18.0.100';
export const VIP_CIDR = '198.18.128.0/24';

export interface NodeInfo {
  /** Kubernetes node name, `node-<n>`. */
  name: string;
  index: number;
  netns: string;
  /** 198.18.0.<n>. */
  address: string;
  /** 198.19.<n>.0/24. */
  podCidr: string;
  /** cgroup holding this node's pods (the agent's --cgroup-root). */
  cgroup: string;
  /** bpffs pin dir of this node's agent. */
  pinDir: string;
}

export interface PodInfo {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  netns: string;
  /** /run/netns/<netns>, the `ambit.dev/netns` annotation. */
  netnsPath: string;
}

export interface ClusterRecord {
  prefix: string;
  stateDir: string;
  /** Every netns created (or about to be), in creation order. */
  netns: string[];
  cgroup: string;
  pinRoot: string;
  nodes: NodeInfo[];
  pods: PodInfo[];
  controlNetns: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kills every process of a cgroup subtree and removes it, deepest first. */
export async function destroyCgroup(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (const entry of readdirSync(path)) {
    const child = join(path, entry);
    if (statSync(child).isDirectory()) await destroyCgroup(child);
  }
  const procs = () => { try { return readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number); } catch { return []; } };
  for (let i = 0; i < 100 && procs().length > 0; i++) {
    if (existsSync(join(path, 'cgroup.kill'))) writeFileSync(join(path, 'cgroup.kill'), '1');
    else for (const pid of procs()) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await sleep(20);
  }
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(path);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      await sleep(20);
    }
  }
  rmdirSync(path);
}

export interface RunIn {
  /** netns name (default: the caller's). */
  netns?: string;
  /** cgroup directory to join before exec (default: the caller's). */
  cgroup?: string;
}

/**
 * Spawns `cmd` inside the netns at `netnsPath` and the cgroup directory `cgroupPath` (either
 * empty: the caller's). The shell joins the cgroup before it execs, so the process and all its
 * children are inside from their first instruction.
 */
export function spawnAt(cgroupPath: string, netnsPath: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const script = [
    'ulimit -n 65536 2>/dev/null || true',
    'cg="$1"; ns="$2"; shift 2',
    'if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || exit 97; fi',
    'if [ -n "$ns" ]; then exec nsenter --net="$ns" -- "$@"; else exec "$@"; fi',
  ].join('\n');
  return spawn('/bin/sh', ['-c', script, 'sh', cgroupPath, netnsPath, cmd, ...args], opts);
}

/** Spawns `cmd` inside a netns and a cgroup (joined before exec, so children are inside too). */
export function spawnIn(where: RunIn, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawnAt(where.cgroup ?? '', where.netns === undefined ? '' : `/run/netns/${where.netns}`, cmd, args, opts);
}

/** Waits for a spawned child (stdio piped) to exit, feeding it `input`; SIGKILL after `timeoutMs` (default 30 s). */
export async function collect(child: ChildProcess, opts: { timeoutMs?: number; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  // A child that exits before reading its input (a refused connect, a quick failure) closes the
  // pipe: the EPIPE is its exit code's business, not an uncaught error.
  child.stdin?.on('error', () => {});
  child.stdin?.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs a command to completion inside a netns/cgroup; resolves with stdout, stderr and the exit code. */
export function execIn(where: RunIn, cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return collect(spawnIn(where, cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] }), opts);
}

export interface ClusterOptions {
  /** Prefix of every name (netns, cgroup, pins); at most 8 characters of [a-z0-9] (required). */
  prefix: string;
  /** Where cluster.json and everything else of the cluster is kept (required). */
  stateDir: string;
  /** Number of nodes (default 2, at most 9). */
  nodes?: number;
}

export class Cluster {
  private constructor(readonly record: ClusterRecord) {}

  get nodes(): NodeInfo[] { return this.record.nodes; }
  get pods(): PodInfo[] { return this.record.pods; }
  get controlNetns(): string { return this.record.controlNetns; }

  node(name: string): NodeInfo {
    const n = this.record.nodes.find((x) => x.name === name);
    if (n === undefined) throw new ClusterError(`no node ${name}`);
    return n;
  }

  pod(name: string): PodInfo {
    const p = this.record.pods.find((x) => x.name === name);
    if (p === undefined) throw new ClusterError(`no pod ${name}`);
    return p;
  }

  private save(): void {
    writeFileSync(join(this.record.stateDir, 'cluster.json'), JSON.stringify(this.record, null, 2) + '\n');
  }

  /** Reads the record of a cluster made earlier (by another process). */
  static load(stateDir: string): Cluster {
    const file = join(stateDir, 'cluster.json');
    if (!existsSync(file)) throw new ClusterError(`no cluster recorded in ${stateDir} (nothing to do)`);
    return new Cluster(JSON.parse(readFileSync(file, 'utf8')) as ClusterRecord);
  }

  /** Builds the nodes, the fabric and the control-plane netns. */
  static async create(opts: ClusterOptions): Promise<Cluster> {
    if (!/^[a-z][a-z0-9]{0,7}$/.test(opts.prefix)) throw new ClusterError(`cluster prefix '${opts.prefix}' must be 1-8 characters [a-z0-9], starting with a letter`);
    const count = opts.nodes ?? 2;
    if (!(count >= 1 && count <= 9)) throw new ClusterError('a cluster has 1 to 9 nodes');
    mkdirSync(opts.stateDir, { recursive: true });
    const cgroup = join(cgroup2Root(), `ambit-${opts.prefix}`);
    const p = opts.prefix;
    const record: ClusterRecord = {
      prefix: p, stateDir: opts.stateDir, netns: [], cgroup, pinRoot: `/sys/fs/bpf/ambit-${p}`, nodes: [], pods: [], controlNetns: `${p}-control`,
    };
    const c = new Cluster(record);
    try {
      mkdirSync(cgroup, { recursive: true });
      mkdirSync(join(cgroup, 'system'), { recursive: true });
      await c.addNetns(`${p}-fabric`);
      await sh('ip', ['-n', `${p}-fabric`, 'link', 'add', 'fab', 'type', 'bridge']);
      await sh('ip', ['-n', `${p}-fabric`, 'link', 'set', 'fab', 'up']);
      for (let i = 1; i <= count; i++) {
        const node: NodeInfo = {
          name: `node-${i}`, index: i, netns: `${p}-node${i}`, address: `${FABRIC_PREFIX}.${i}`, podCidr: `198.19.${i}.0/24`,
          cgroup: join(cgroup, `node-${i}`), pinDir: join(record.pinRoot, `node-${i}`),
        };
        record.nodes.push(node);
        mkdirSync(node.cgroup, { recursive: true });
        await c.addNetns(node.netns);
        await c.fabricLink(node.netns, `f${p}${i}`, `${node.address}/24`);
        await sh('ip', ['-n', node.netns, 'link', 'add', 'pods', 'type', 'bridge']);
        await sh('ip', ['-n', node.netns, 'addr', 'add', `198.19.${i}.1/24`, 'dev', 'pods']);
        await sh('ip', ['-n', node.netns, 'link', 'set', 'pods', 'up']);
        await sysctl(node.netns, 'net.ipv4.ip_forward', '1');
        await sh('ip', ['-n', node.netns, 'route', 'add', 'unreachable', VIP_CIDR]);
      }
      for (const a of record.nodes) {
        for (const b of record.nodes) {
          if (a !== b) await sh('ip', ['-n', a.netns, 'route', 'add', b.podCidr, 'via', b.address]);
        }
      }
      await c.addNetns(record.controlNetns);
      await c.fabricLink(record.controlNetns, `f${p}c`, `${CONTROL_ADDRESS}/24`);
      for (const n of record.nodes) await sh('ip', ['-n', record.controlNetns, 'route', 'add', n.podCidr, 'via', n.address]);
    } catch (err) {
      await destroyCluster(opts.stateDir).catch(() => undefined);
      throw err;
    }
    return c;
  }

  private async addNetns(name: string): Promise<void> {
    this.record.netns.push(name);
    this.save();
    await sh('ip', ['netns', 'add', name]);
    await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /** A veth from `netns` (as eth0, with `cidr`) to the fabric bridge. */
  private async fabricLink(netns: string, peer: string, cidr: string): Promise<void> {
    const fabric = `${this.record.prefix}-fabric`;
    await sh('ip', ['link', 'add', 'eth0', 'netns', netns, 'type', 'veth', 'peer', 'name', peer, 'netns', fabric]);
    await sh('ip', ['-n', netns, 'addr', 'add', cidr, 'dev', 'eth0']);
    await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', fabric, 'link', 'set', peer, 'master', 'fab']);
    await sh('ip', ['-n', fabric, 'link', 'set', peer, 'up']);
  }

  /** A pod netns on `node` with the next free address of its pod range. */
  async addPod(spec: { name: string; namespace: string; node: string }): Promise<PodInfo> {
    if (!/^[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?$/.test(spec.name)) throw new ClusterError(`pod name '${spec.name}' must be a short DNS label (at most 16 characters)`);
    const node = this.node(spec.node);
    const used = this.record.pods.filter((x) => x.node === node.name).length;
    const ip = `198.19.${node.index}.${10 + used}`;
    const netns = `${this.record.prefix}-${spec.name}`;
    const pod: PodInfo = { name: spec.name, namespace: spec.namespace, node: node.name, ip, netns, netnsPath: `/run/netns/${netns}` };
    this.record.pods.push(pod);
    await this.addNetns(netns);
    const hostSide = `p${this.record.prefix}${node.index}${used}`.slice(0, 15);
    await sh('ip', ['link', 'add', 'eth0', 'netns', netns, 'type', 'veth', 'peer', 'name', hostSide, 'netns', node.netns]);
    await sh('ip', ['-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', netns, 'route', 'add', 'default', 'via', `198.19.${node.index}.1`]);
    await sh('ip', ['-n', node.netns, 'link', 'set', hostSide, 'master', 'pods']);
    await sh('ip', ['-n', node.netns, 'link', 'set', hostSide, 'up']);
    this.save();
    return pod;
  }

  /** Where a pod's processes run: its netns and its node's cgroup. */
  podPlace(name: string): RunIn {
    const pod = this.pod(name);
    return { netns: pod.netns, cgroup: this.node(pod.node).cgroup };
  }

  /** Where system processes (agents, control plane) run: a cgroup outside the nodes' pod cgroups. */
  systemCgroup(): string {
    return join(this.record.cgroup, 'system');
  }
}

async function sysctl(netns: string, key: string, value: string): Promise<void> {
  await sh('nsenter', [`--net=/run/netns/${netns}`, '--', 'sysctl', '-q', '-w', `${key}=${value}`]);
}

/**
 * Removes everything a cluster recorded in `stateDir`: processes (by cgroup), network namespaces,
 * BPF pins, cgroups. Idempotent; keeps `stateDir` itself (the caller decides).
 */
export async function destroyCluster(stateDir: string): Promise<string[]> {
  const file = join(stateDir, 'cluster.json');
  if (!existsSync(file)) return [];
  const record = JSON.parse(readFileSync(file, 'utf8')) as ClusterRecord;
  const problems: string[] = [];
  try { await destroyCgroup(record.cgroup); } catch (err) { problems.push(`cgroup ${record.cgroup}: ${(err as Error).message}`); }
  if (existsSync(record.pinRoot)) {
    try { rmSync(record.pinRoot, { recursive: true, force: true }); } catch (err) { problems.push(`pins ${record.pinRoot}: ${(err as Error).message}`); }
  }
  const listed = await sh('ip', ['netns', 'list']).catch(() => '');
  const present = new Set(listed.split('\n').map((l) => l.split(' ')[0]));
  for (const ns of [...record.netns].reverse()) {
    if (!present.has(ns)) continue;
    try { await sh('ip', ['netns', 'delete', ns]); } catch (err) { problems.push((err as Error).message); }
  }
  rmSync(file, { force: true });
  return problems;
}

/** True when a pid recorded earlier is still running. */
export { pidAlive };
