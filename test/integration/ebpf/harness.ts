/**
 * Test harness of the capture tests: the topology (a node netns, a pod netns wired to it, a
 * never-enrolled netns, a private cgroup tree with `agent` and `pods` children, a private pin dir)
 * and drivers for the two child processes, the capture agent (fixtures/capture-agent.ts) and the
 * python peers (fixtures/peer.py). Everything is created through a Sandbox and removed with it.
 *
 *   node netns   198.19.1.1/24 (the node address) + 198.19.1.3/24 (a "remote" client)  ──veth──
 *   pod netns    198.19.1.2/24, default route via 198.19.1.1
 *   other netns  198.19.2.2/24 ──veth── node 198.19.2.1/24 (in the pods cgroup, never enrolled)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Sandbox, type Cgroup, type Netns } from '../../helpers/netns.js';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..', '..');
export const AGENT_FIXTURE = join(here, 'fixtures', 'capture-agent.ts');
export const PEER_FIXTURE = join(here, 'fixtures', 'peer.py');
export const ADDON = join(REPO, 'native', 'build', 'Release', 'ambit_native.node');
export const OBJECT = join(REPO, 'bpf', '.output', 'capture.bpf.o');

/** util-linux setpriv, which runs a command with capabilities dropped. */
export const SETPRIV = '/usr/bin/setpriv';
const DROP_ALL_CAPABILITIES = ['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--no-new-privs'];

export const NODE_ADDR = '198.19.1.1';
export const REMOTE_ADDR = '198.19.1.3';
export const POD_ADDR = '198.19.1.2';
export const OTHER_NODE_SIDE = '198.19.2.1';

export interface Topology {
  sb: Sandbox;
  node: Netns;
  pod: Netns;
  other: Netns;
  root: Cgroup;
  agentCg: Cgroup;
  podsCg: Cgroup;
  pinDir: string;
}

export async function topology(sb: Sandbox): Promise<Topology> {
  const node = await sb.netns('node');
  const pod = await sb.netns('pod');
  const other = await sb.netns('other');
  await sb.veth({ netns: node, addresses: [`${NODE_ADDR}/24`, `${REMOTE_ADDR}/24`] }, { netns: pod, addresses: [`${POD_ADDR}/24`] });
  await sb.veth({ netns: node, addresses: [`${OTHER_NODE_SIDE}/24`] }, { netns: other, addresses: ['198.19.2.2/24'] });
  await sb.ip(pod, ['route', 'add', 'default', 'via', NODE_ADDR]);
  await sb.ip(other, ['route', 'add', 'default', 'via', OTHER_NODE_SIDE]);
  const root = await sb.cgroup('cap');
  const agentCg = await sb.cgroup('agent', root);
  const podsCg = await sb.cgroup('pods', root);
  const pinDir = `/sys/fs/bpf/${sb.id}`;
  // Pins outlive a killed agent; remove them whatever the test did (unpinned links detach).
  sb.defer(() => removePins(pinDir));
  return { sb, node, pod, other, root, agentCg, podsCg, pinDir };
}

export interface CallError extends Error {
  code?: string;
  errno?: number;
  errnoName?: string;
  syscall?: string;
  verifierLog?: string;
  field?: string;
}

/** Drives a capture agent child over IPC. */
export class Agent {
  readonly child: ChildProcess;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /**
   * `netns`: where the agent runs (default: the test's own); the node netns, as on a node, for the
   * local-SYN bypass. `noCapabilities`: the agent runs as root with every capability dropped
   * (bounding, inheritable and ambient sets cleared, no_new_privs), the way a container runs as
   * uid 0 without CAP_BPF; it stays uid 0 so it can still read a checkout others cannot (a clone
   * in a 0700 home directory), which a switch to another uid could not (default false).
   */
  constructor(sb: Sandbox, cgroup: Cgroup | undefined, opts: { noCapabilities?: boolean; netns?: Netns } = {}) {
    const node = [process.execPath, '--import=tsx', AGENT_FIXTURE];
    const [cmd, ...args] = opts.noCapabilities === true ? [SETPRIV, ...DROP_ALL_CAPABILITIES, '--', ...node] : node;
    this.child = sb.spawn(cmd as string, args, {
      ...(cgroup === undefined ? {} : { cgroup }),
      ...(opts.netns === undefined ? {} : { netns: opts.netns }),
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    let ready!: () => void;
    this.ready = new Promise((r) => { ready = r; });
    this.child.on('message', (msg: { id: number; ok: boolean; value?: unknown; error?: Record<string, unknown> }) => {
      if (msg.id === 0) return ready();
      const w = this.#waiting.get(msg.id);
      if (w === undefined) return;
      this.#waiting.delete(msg.id);
      if (msg.ok) w.resolve(msg.value);
      else w.reject(Object.assign(new Error(String(msg.error?.['message'])), msg.error));
    });
    this.exited = new Promise((res) => this.child.once('exit', (code, signal) => {
      for (const w of this.#waiting.values()) w.reject(new Error(`agent exited (${code ?? signal}) before replying`));
      this.#waiting.clear();
      res({ code, signal });
    }));
  }

  async call<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<T> {
    await Promise.race([this.ready, this.exited.then(() => { throw new Error('agent exited before it was ready'); })]);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => { this.#waiting.delete(id); reject(new Error(`agent ${op} timed out`)); }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v as T); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.child.send({ id, op, ...args });
    });
  }

  /** Sends `error` to the caller as a rejected CallError (the agent's typed error data). */
  async callError(op: string, args: Record<string, unknown> = {}): Promise<CallError> {
    try {
      await this.call(op, args);
    } catch (err) {
      return err as CallError;
    }
    throw new Error(`${op} was expected to fail`);
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

export interface PeerConn {
  id: number;
  target: [string, number];
  local: [string, number] | null;
  peer: [string, number] | null;
  error: unknown;
}

/** Drives a python peer (fixtures/peer.py) inside a netns. */
export class Peer {
  readonly child: ChildProcess;
  #buf = '';
  readonly #queue: ((line: string) => void)[] = [];

  constructor(sb: Sandbox, netns: Netns, cgroup?: Cgroup) {
    this.child = sb.spawn('python3', ['-u', PEER_FIXTURE], { netns, ...(cgroup === undefined ? {} : { cgroup }), stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.#buf += d.toString();
      let i;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        this.#queue.shift()?.(line);
      }
    });
  }

  async call<T = Record<string, unknown>>(msg: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`peer ${String(msg['op'])} timed out`)), timeoutMs);
      this.#queue.push((l) => { clearTimeout(timer); resolve(l); });
      this.child.stdin?.write(JSON.stringify(msg) + '\n');
    });
    const reply = JSON.parse(line) as { ok: boolean; error?: string };
    if (!reply.ok) throw new Error(`peer ${String(msg['op'])}: ${reply.error}`);
    return reply as T;
  }

  async connect(targets: [string, number][], bind?: string): Promise<PeerConn[]> {
    const r = await this.call<{ conns: PeerConn[] }>({ op: 'connect', targets, ...(bind === undefined ? {} : { bind }) });
    return r.conns;
  }

  async echo(ids: number[], data: string): Promise<Record<string, string | null>> {
    return (await this.call<{ replies: Record<string, string | null> }>({ op: 'echo', ids, data })).replies;
  }

  async serve(port: number, tag: string, host = '0.0.0.0'): Promise<void> {
    await this.call({ op: 'serve', port, tag, host });
  }
}

/** `bpftool -j <args>` parsed. */
export function bpftool<T = unknown>(args: string[]): T {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }).trim() || 'null') as T;
}

/** Programs attached to a cgroup (directly, not inherited). */
export function cgroupAttachments(path: string): { id: number; attach_type: string; name: string }[] {
  return bpftool<{ id: number; attach_type: string; name: string }[]>(['cgroup', 'show', path]) ?? [];
}

export function removePins(pinDir: string): void {
  if (existsSync(pinDir)) rmSync(pinDir, { recursive: true, force: true });
}

export function pinsLeft(pinDir: string): string[] {
  if (!existsSync(pinDir)) return [];
  const out: string[] = [];
  const walk = (d: string) => { for (const f of readdirSync(d, { withFileTypes: true })) { const p = join(d, f.name); if (f.isDirectory()) { out.push(p + '/'); walk(p); } else out.push(p); } };
  walk(pinDir);
  return out;
}
