/**
 * Test topology on one machine (docs/architecture.md#the-test-topology): network namespaces, veth pairs with addresses from
 * 198.18.0.0/15, private cgroups under the cgroup v2 mount (and in a cgroup v1 hierarchy of its
 * own), and processes run inside a netns and a cgroup. Needs root and iproute2.
 *
 * Everything is created through a `Sandbox`, which remembers what it made and removes it in
 * reverse order in `cleanup()` (processes, cgroups, namespaces; veths go with their netns), even
 * when a step failed half-way; `defer(fn)` adds cleanup for things made elsewhere (pins). Names carry the creating pid (`ambt<pid>x<n>`), so `sweepStale()`
 * can remove what a crashed run left behind without touching a live run's resources.
 *
 * Usage:
 *   const sb = new Sandbox(); t.teardown(() => sb.cleanup());
 *   const node = await sb.netns('node'); const pod = await sb.netns('pod');
 *   await sb.veth({ netns: node, addresses: ['198.19.1.1/24'] }, { netns: pod, addresses: ['198.19.1.2/24'] });
 *   const cg = await sb.cgroup('pods');
 *   const child = sb.spawn('python3', ['-c', '...'], { netns: pod, cgroup: cg });
 */
import { execFile, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cgroup2Root, collect, destroyCgroup, spawnAt } from '../../src/demo/cluster.js';

export { cgroup2Root };

const execFileP = promisify(execFile);

export const NAME_PREFIX = 'ambt';

export interface Netns {
  /** Name under /run/netns. */
  name: string;
  /** Path usable with setns(2), nsenter --net, and Capture.enroll. */
  path: string;
}

export interface Cgroup {
  /** Absolute path under the cgroup v2 mount. */
  path: string;
  /** Moves a process (and its future children) into this cgroup. */
  addProcess(pid: number): void;
  /** Pids currently in this cgroup (not descendants). */
  pids(): number[];
}

export interface VethEnd {
  netns: Netns;
  /** Interface name (default generated, at most 15 characters). */
  name?: string;
  /** Addresses in CIDR form, e.g. 198.19.1.2/24 (default none). */
  addresses?: string[];
}

export interface RunOptions {
  /** Network namespace to run in (default: the caller's). */
  netns?: Netns;
  /** cgroup to place the process in before it execs (default: the caller's). */
  cgroup?: Cgroup;
}

/** Runs a command and returns stdout; a failure names the command and its stderr. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}


function makeCgroup(path: string): Cgroup {
  return {
    path,
    addProcess(pid: number) {
      writeFileSync(join(path, 'cgroup.procs'), `${pid}\n`);
    },
    pids() {
      return readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    },
  };
}

export class Sandbox {
  readonly id: string;
  #n = 0;
  readonly #netns: Netns[] = [];
  readonly #cgroups: string[] = [];
  readonly #children = new Set<ChildProcess>();
  readonly #deferred: (() => unknown)[] = [];
  #cleaned = false;

  constructor() {
    this.id = `${NAME_PREFIX}${process.pid}x${Math.floor(Math.random() * 36 ** 2).toString(36)}`;
  }

  #name(label: string): string {
    return `${this.id}${this.#n++}-${label}`.slice(0, 60);
  }

  /** A new network namespace with loopback up. */
  async netns(label = 'ns'): Promise<Netns> {
    const name = this.#name(label);
    await sh('ip', ['netns', 'add', name]);
    const ns = { name, path: `/run/netns/${name}` };
    this.#netns.push(ns);
    await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces, both ends up, with their addresses. */
  async veth(a: VethEnd, b: VethEnd): Promise<{ a: string; b: string }> {
    const base = `v${process.pid.toString(36)}${(this.#n++).toString(36)}`.slice(0, 13);
    const an = a.name ?? `${base}a`;
    const bn = b.name ?? `${base}b`;
    await sh('ip', ['link', 'add', an, 'netns', a.netns.name, 'type', 'veth', 'peer', 'name', bn, 'netns', b.netns.name]);
    for (const [end, name] of [[a, an], [b, bn]] as const) {
      for (const addr of end.addresses ?? []) await sh('ip', ['-n', end.netns.name, 'addr', 'add', addr, 'dev', name]);
      await sh('ip', ['-n', end.netns.name, 'link', 'set', name, 'up']);
    }
    return { a: an, b: bn };
  }

  /** Runs `ip -n <netns> ...args`. */
  async ip(netns: Netns, args: string[]): Promise<string> {
    return sh('ip', ['-n', netns.name, ...args]);
  }

  /** Sets a sysctl inside a namespace, e.g. ('net.ipv4.ip_forward', '1'). */
  async sysctl(netns: Netns, key: string, value: string): Promise<void> {
    await sh('nsenter', [`--net=${netns.path}`, '--', 'sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** A private cgroup under the cgroup v2 mount (or under `parent`). */
  async cgroup(label = 'cg', parent?: Cgroup): Promise<Cgroup> {
    const path = join(parent?.path ?? cgroup2Root(), this.#name(label));
    mkdirSync(path);
    if (parent === undefined) this.#cgroups.push(path);
    return makeCgroup(path);
  }

  /**
   * A private cgroup in a cgroup v1 hierarchy, on any host: the named, controller-less hierarchy
   * `name=ambit-test`, mounted at a private mount point under the temp dir. Every sandbox shares
   * that one hierarchy (the kernel keeps a named v1 hierarchy after its last unmount, so a fixed
   * name leaves at most one behind, empty); the cgroup, what runs in it and the mount point are
   * removed with the sandbox.
   */
  async cgroupV1(label = 'cg'): Promise<Cgroup> {
    const mnt = mkdtempSync(join(tmpdir(), `${this.id}-v1-`));
    try {
      await sh('mount', ['-t', 'cgroup', '-o', 'none,name=ambit-test', 'cgroup', mnt]);
    } catch (err) {
      rmdirSync(mnt);
      throw err;
    }
    const path = join(mnt, this.#name(label));
    this.defer(async () => {
      await destroyCgroup(path);
      await sh('umount', [mnt]);
      rmdirSync(mnt);
    });
    mkdirSync(path);
    return makeCgroup(path);
  }

  /**
   * Spawns a process inside a netns and/or cgroup. The process joins the cgroup before it execs,
   * so it and all its children are inside from their first instruction. Tracked for cleanup.
   */
  spawn(cmd: string, args: string[], opts: RunOptions & SpawnOptions = {}): ChildProcess {
    const { netns, cgroup, ...spawnOpts } = opts;
    const child = spawnAt(cgroup?.path ?? '', netns?.path ?? '', cmd, args, spawnOpts);
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Runs a command to completion inside a netns/cgroup and returns its stdout. */
  async exec(cmd: string, args: string[], opts: RunOptions & { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const { code, stdout: out, stderr: err } = await collect(this.spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] }), opts);
    if (code !== 0) throw new Error(`${cmd} exited with ${code}: ${err.trim()}`);
    return out;
  }

  /** Registers extra cleanup (e.g. a pin dir), run first, newest first, during cleanup(). */
  defer(fn: () => unknown): void {
    this.#deferred.push(fn);
  }

  /** Removes everything this sandbox created; safe to call twice. */
  async cleanup(): Promise<void> {
    if (this.#cleaned) return;
    this.#cleaned = true;
    const errors: string[] = [];
    for (const fn of this.#deferred.reverse()) {
      try { await fn(); } catch (err) { errors.push((err as Error).message); }
    }
    for (const child of this.#children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => { child.once('exit', r); setTimeout(r, 2000); });
      }
    }
    for (const path of this.#cgroups.reverse()) {
      try { await destroyCgroup(path); } catch (err) { errors.push(`cgroup ${path}: ${(err as Error).message}`); }
    }
    for (const ns of this.#netns.reverse()) {
      try { await sh('ip', ['netns', 'delete', ns.name]); } catch (err) { errors.push((err as Error).message); }
    }
    if (errors.length > 0) throw new Error(`sandbox cleanup incomplete: ${errors.join('; ')}`);
  }
}

/** Removes namespaces and cgroups left by sandboxes of processes that no longer exist. */
export async function sweepStale(): Promise<string[]> {
  const removed: string[] = [];
  const owner = (name: string): number | undefined => {
    const m = new RegExp(`^${NAME_PREFIX}(\\d+)x`).exec(name);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  };
  const list = await sh('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = owner(name);
    if (pid !== undefined && !pidAlive(pid)) {
      await sh('ip', ['netns', 'delete', name]).catch(() => undefined);
      removed.push(`netns ${name}`);
    }
  }
  const root = cgroup2Root();
  for (const entry of readdirSync(root)) {
    const pid = owner(entry);
    if (pid !== undefined && !pidAlive(pid)) {
      await destroyCgroup(join(root, entry)).catch(() => undefined);
      removed.push(`cgroup ${entry}`);
    }
  }
  // cgroupV1(): a mount point `<tmp>/<sandbox id>-v1-*` holding the sandbox's v1 cgroups.
  for (const entry of readdirSync(tmpdir())) {
    const pid = owner(entry);
    if (pid === undefined || pidAlive(pid) || !entry.includes('-v1-')) continue;
    const mnt = join(tmpdir(), entry);
    for (const cg of readdirSync(mnt, { withFileTypes: true })) if (cg.isDirectory()) await destroyCgroup(join(mnt, cg.name)).catch(() => undefined);
    await sh('umount', [mnt]).catch(() => undefined);
    try { rmdirSync(mnt); removed.push(`cgroup v1 mount ${entry}`); } catch { /* still mounted or not empty */ }
  }
  return removed;
}
