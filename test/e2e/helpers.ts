/**
 * Shared setup of the e2e tests: a demo mesh (src/demo/mesh.ts) with a unique prefix and state
 * directory per test file, started with this checkout's CLI through tsx, removed in
 * `after.always` whatever happened; plus small drivers for traffic from pods, long-lived TCP
 * connections and packet captures on the link between the nodes.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DemoMesh, REPO_ROOT } from '../../src/demo/mesh.js';
import { spawnIn, execIn } from '../../src/demo/cluster.js';

export const NEEDS = { root: true, paths: [join(REPO_ROOT, 'native/build/Release/ambit_native.node'), join(REPO_ROOT, 'bpf/.output/capture.bpf.o'), '/sys/kernel/btf/vmlinux', '/usr/bin/tcpdump'] };
export const AMBIT = [process.execPath, '--import=tsx', join(REPO_ROOT, 'src/cli/main.ts')];

export async function startMesh(opts: { ambient?: boolean; agentArgs?: string[] } = {}): Promise<{ mesh: DemoMesh; stateDir: string; cleanup: () => Promise<void> }> {
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-'));
  const prefix = `e${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
  let mesh: DemoMesh | undefined;
  const cleanup = async () => {
    if (mesh !== undefined) await mesh.down();
    else await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: opts.ambient ?? false, agentArgs: opts.agentArgs ?? ['--drain-ms', '1000'] });
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { mesh, stateDir, cleanup };
}

/** One HTTP request from a pod with curl; the body (or `ERR <code>` when curl failed). */
export async function curl(mesh: DemoMesh, pod: string, url: string, data?: string): Promise<string> {
  const r = await mesh.exec(pod, 'curl', ['-s', '-S', '-m', '4', ...(data !== undefined ? ['--data-binary', data] : []), url], 10_000);
  return r.code === 0 ? r.stdout : `ERR ${r.code}`;
}

/** The `pod` field of an echo answer. */
export function servedBy(body: string): string {
  try {
    return (JSON.parse(body) as { pod: string }).pod;
  } catch {
    return body.trim();
  }
}

/** A long-lived TCP connection from a pod to the line echo, sending a line every 100 ms. */
export class HeldConnection {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private buf = '';

  constructor(mesh: DemoMesh, pod: string, target: string) {
    const [cmd, ...pre] = AMBIT;
    this.child = mesh.spawnInPod(pod, cmd as string, [...pre, 'demo', 'app', 'client', '--tcp', target, '--interval', '100']);
    this.child.stdout?.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) { this.lines.push(this.buf.slice(0, i)); this.buf = this.buf.slice(i + 1); }
    });
  }

  answers(): number {
    return this.lines.filter((l) => l.includes(': ping')).length;
  }

  closed(): boolean {
    return this.lines.includes('CLOSED');
  }

  /** Resolves once `n` more answers arrived; rejects if the connection closed or time ran out. */
  async more(n: number, timeoutMs = 10_000): Promise<void> {
    const start = this.answers();
    const deadline = Date.now() + timeoutMs;
    while (this.answers() < start + n) {
      if (this.closed()) throw new Error(`held connection closed: ${this.lines.slice(-5).join(' | ')}`);
      if (Date.now() > deadline) throw new Error(`held connection got ${this.answers() - start}/${n} answers in ${timeoutMs} ms: ${this.lines.slice(-5).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** tcpdump on the bridge between the nodes; `stop()` returns the captured payload text. */
export async function captureFabric(mesh: DemoMesh): Promise<{ stop: () => Promise<string> }> {
  const fabric = `${mesh.cluster.record.prefix}-fabric`;
  const child = spawnIn({ netns: fabric }, 'tcpdump', ['-i', 'fab', '-A', '-s', '0', '-l', '-n', 'tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString('latin1'); });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
    child.stderr?.on('data', (d: Buffer) => { if (d.toString().includes('listening on')) { clearTimeout(timer); resolve(); } });
  });
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      return out;
    },
  };
}

/**
 * Sends random bytes, then some TLS- and HTTP-looking junk, to host:port from inside a netns, and
 * resolves with the byte count once the connect succeeded and the kernel took every byte; throws
 * when the connect failed or the write did not complete, so a caller cannot pass on nothing sent.
 */
export async function garbage(where: { netns: string; cgroup?: string }, host: string, port: number): Promise<number> {
  const script = [
    "const junk=Buffer.concat([require('crypto').randomBytes(4096),Buffer.from('\\x16\\x03\\x01\\x02\\x00GET / HTTP/1.1\\r\\nHost: \\x00\\r\\n\\r\\n','latin1')]);",
    'let r={connected:false,written:0};const out=(x)=>{console.log(JSON.stringify({...r,...x}));process.exit(0)};',
    `const s=require('net').connect(${port},${JSON.stringify(host)});`,
    // Whatever the port answers is read (so closing sends a FIN, not a RST that could drop the
    // junk before the server read it); the report waits for the close or one second.
    "s.resume();s.on('error',(e)=>{if(r.written===0)out({error:e.code||e.message})});",
    "s.on('connect',()=>{r.connected=true;s.write(junk,(e)=>{if(e)return out({error:e.code||e.message});r.written=junk.length;s.end();s.on('close',()=>out({}));setTimeout(()=>out({}),1000)})});",
    "setTimeout(()=>out({error:'timed out'}),5000);",
  ].join('');
  const r = await execIn(where, process.execPath, ['-e', script], { timeoutMs: 10_000 });
  let result: { connected: boolean; written: number; error?: string };
  try {
    result = JSON.parse(r.stdout.trim()) as typeof result;
  } catch {
    throw new Error(`garbage to ${host}:${port}: the sender said nothing (exit ${r.code}): ${r.stderr.trim()}`);
  }
  if (!result.connected || result.written === 0) throw new Error(`garbage to ${host}:${port} was not sent: ${result.error ?? 'no bytes written'}`);
  return result.written;
}
