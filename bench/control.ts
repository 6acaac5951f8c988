/**
 * `npm run bench -- control [--quick]`: the control plane at scale.
 *
 * A folder mesh of 10,000 pods (100 nodes, 1,000 services, in 100 pod files of 100) served by an
 * in-process control plane; 100 agent subscribers over TLS in a child process (so the control
 * plane's RSS is this process's). Then, repeatedly, one pod changes in one file, and we measure
 * from the file write to each subscriber having applied the delta (p50, p99 over every
 * subscriber and change), the bytes each subscriber received for that change (exact protobuf
 * size), and the control plane's RSS. `--quick`: 1,000 pods, 20 subscribers, 5 changes.
 *
 * One control plane serves every round; each round starts a fresh subscriber process (so every
 * subscriber connects and gets its full view again), then makes its changes. Rows per round
 * (subject `ambit`): push_p50_ms, push_p99_ms (over every subscriber and change of the round),
 * rss_mb (the control plane's peak during the round), delta_bytes (mean), plus full_view_s
 * (time for every subscriber to receive its first full view) for context.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { interleaved, quantile, Samples, type BenchOptions } from './lib/report.js';

const ROLE = process.env['AMBIT_BENCH_CONTROL_ROLE'];

interface Params { pods: number; nodes: number; podsPerFile: number; podsPerService: number; subscribers: number; changes: number }

function podYaml(i: number, p: Params, version: string): string {
  const node = `node-${i % p.nodes}`;
  const app = Math.floor(i / p.podsPerService);
  const ip = `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-${i}\n  namespace: ns-${app % 10}\n  labels:\n    app: app-${app}\n    version: "${version}"\nspec:\n  nodeName: ${node}\n  serviceAccountName: app-${app}\n  containers:\n    - name: main\n      ports:\n        - containerPort: 8080\nstatus:\n  phase: Running\n  podIP: ${ip}\n`;
}

/** A consistent mesh (no analyzer findings): every pod's namespace, node and service account exist. */
function writeMesh(dir: string, p: Params): void {
  mkdirSync(join(dir, 'pods'), { recursive: true });
  const base: string[] = [];
  for (let n = 0; n < 10; n++) base.push(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-${n}\n  labels:\n    ambit.dev/dataplane-mode: ambient\n`);
  for (let n = 0; n < p.nodes; n++) base.push(`apiVersion: v1\nkind: Node\nmetadata:\n  name: node-${n}\nstatus:\n  addresses:\n    - type: InternalIP\n      address: 198.18.${Math.floor(n / 250)}.${(n % 250) + 1}\n`);
  writeFileSync(join(dir, 'base.yaml'), base.join('---\n'));
  const services: string[] = [];
  const accounts: string[] = [];
  for (let a = 0; a < Math.ceil(p.pods / p.podsPerService); a++) {
    services.push(`apiVersion: v1\nkind: Service\nmetadata:\n  name: app-${a}\n  namespace: ns-${a % 10}\nspec:\n  clusterIP: 198.18.${128 + Math.floor(a / 250)}.${(a % 250) + 1}\n  selector:\n    app: app-${a}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n`);
    accounts.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app-${a}\n  namespace: ns-${a % 10}\n`);
  }
  writeFileSync(join(dir, 'services.yaml'), services.join('---\n'));
  writeFileSync(join(dir, 'accounts.yaml'), accounts.join('---\n'));
  for (let n = 0; n < 10; n++) {
    writeFileSync(join(dir, `policy-${n}.yaml`), `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-blocked\n  namespace: ns-${n}\nspec:\n  action: DENY\n  rules:\n    - from:\n        - source:\n            namespaces: ["blocked"]\n`);
  }
  for (let f = 0; f * p.podsPerFile < p.pods; f++) writePodFile(dir, f, p, new Map());
}

function writePodFile(dir: string, f: number, p: Params, versions: Map<number, string>): void {
  const docs: string[] = [];
  for (let i = f * p.podsPerFile; i < Math.min(p.pods, (f + 1) * p.podsPerFile); i++) docs.push(podYaml(i, p, versions.get(i) ?? 'v1'));
  const file = join(dir, 'pods', `pods-${String(f).padStart(3, '0')}.yaml`);
  writeFileSync(`${file}.tmp~`, docs.join('---\n'));
  renameSync(`${file}.tmp~`, file);
}

const nowMs = () => performance.timeOrigin + performance.now();

export async function run(opts: BenchOptions): Promise<Samples> {
  process.env['AMBIT_LOG_LEVEL'] ??= 'warn';
  const p: Params = opts.quick
    ? { pods: 1000, nodes: 20, podsPerFile: 100, podsPerService: 10, subscribers: 20, changes: 5 }
    : { pods: 10_000, nodes: 100, podsPerFile: 100, podsPerService: 10, subscribers: 100, changes: 30 };
  const { ControlPlane } = await import('../src/control/control-plane.js');
  const { FolderSource } = await import('../src/control/sources/folder-source.js');
  const { ModelCompiler } = await import('../src/control/model-compiler.js');
  const { TokenFileAuthenticator } = await import('../src/control/auth.js');
  const { CertificateAuthority } = await import('../src/identity/ca.js');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-control-'));
  let child: ChildProcess | undefined;
  let cp: InstanceType<typeof ControlPlane> | undefined;
  try {
    const mesh = join(dir, 'mesh');
    writeMesh(mesh, p);
    writeFileSync(join(dir, 'tokens'), 'bench-token\n');
    const t0 = nowMs();
    cp = new ControlPlane({
      source: new FolderSource({ dir: mesh, compiler: new ModelCompiler(), rescanMs: 0 }),
      authenticator: new TokenFileAuthenticator(join(dir, 'tokens')),
      signer: await CertificateAuthority.open(),
      host: '127.0.0.1', tlsPort: 0, plaintextPort: null, metricsPort: 0, readinessPort: 0,
    });
    await cp.start();
    const findings = (cp.configDump().source as { problems: unknown[] }).problems.length;
    if (findings > 0) process.stderr.write(`note: ${findings} analyzer findings in the bench mesh\n`);
    const plane = cp;
    if (!cp.ready) throw new Error(`bench mesh rejected: ${JSON.stringify(cp.configDump().lastRejected).slice(0, 500)}`);
    const mb = () => `rss ${(process.memoryUsage().rss / 1048576).toFixed(0)} MB, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MB`;
    process.stderr.write(`control plane up with ${cp.table.size} resources in ${((nowMs() - t0) / 1000).toFixed(1)} s (${mb()})\n`);

    const out = new Samples();
    const versions = new Map<number, string>();
    let change = 0;
    await interleaved('control bench', opts.rounds, ['ambit'], async (subject) => {
      // A fresh subscriber process per round: every subscriber connects and gets its full view.
      const sub = fork(fileURLToPath(import.meta.url), [], {
        env: { ...process.env, AMBIT_BENCH_CONTROL_ROLE: 'subscribers', AMBIT_BENCH_ADDR: `127.0.0.1:${plane.ports.tls}`, AMBIT_BENCH_SUBS: String(p.subscribers), AMBIT_BENCH_NODES: String(p.nodes) },
        execArgv: ['--import=tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child = sub;
      const messages: { type: string; [k: string]: unknown }[] = [];
      const waiters: (() => void)[] = [];
      sub.on('message', (m) => { messages.push(m as { type: string }); for (const w of waiters.splice(0)) w(); });
      const next = async (pred: (m: { type: string; [k: string]: unknown }) => boolean, ms: number, what: string) => {
        const end = Date.now() + ms;
        for (;;) {
          const i = messages.findIndex(pred);
          if (i >= 0) return messages.splice(i, 1)[0]!;
          if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
          await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 200); });
        }
      };
      let rss = process.memoryUsage().rss;
      sub.send({ type: 'trust', pem: plane.trustBundlePem });
      const tFull = nowMs();
      await next((m) => m.type === 'ready', 300_000, 'every subscriber to get its full view');
      const fullViewS = (nowMs() - tFull) / 1000;
      process.stderr.write(`${p.subscribers} subscribers have their full view after ${fullViewS.toFixed(1)} s (${mb()})\n`);

      const latencies: number[] = [];
      const bytes: number[] = [];
      for (let c = 0; c < p.changes; c++, change++) {
        const pod = (change * 7919) % p.pods;
        versions.set(pod, `v${change + 2}`);
        const before = plane.table.version;
        const start = nowMs();
        writePodFile(mesh, Math.floor(pod / p.podsPerFile), p, versions);
        while (plane.table.version === before) await new Promise((r) => setTimeout(r, 1));
        const version = plane.table.version;
        if (process.env['AMBIT_BENCH_DEBUG']) process.stderr.write(`change ${change}: table updated after ${(nowMs() - start).toFixed(1)} ms\n`);
        sub.send({ type: 'expect', version });
        const m = await next((x) => x.type === 'applied' && x['version'] === version, 60_000, `version ${version} on every subscriber`);
        for (const at of m['at'] as number[]) latencies.push(at - start);
        if (process.env['AMBIT_BENCH_DEBUG']) process.stderr.write(`  all applied after ${(Math.max(...(m['at'] as number[])) - start).toFixed(1)} ms\n`);
        bytes.push(...(m['bytes'] as number[]));
        rss = Math.max(rss, process.memoryUsage().rss);
        await new Promise((r) => setTimeout(r, 50));
      }
      latencies.sort((x, y) => x - y);
      const meanBytes = bytes.reduce((x, y) => x + y, 0) / Math.max(1, bytes.length);
      process.stderr.write(`${p.changes} one-pod changes x ${p.subscribers} subscribers; ${plane.table.size} resources\n`);
      out.add(subject, 'push_p50_ms', quantile(latencies, 0.5));
      out.add(subject, 'push_p99_ms', quantile(latencies, 0.99));
      out.add(subject, 'rss_mb', rss / 1048576);
      out.add(subject, 'delta_bytes', meanBytes);
      out.add(subject, 'full_view_s', fullViewS);
      await new Promise<void>((r) => { sub.once('exit', () => r()); sub.kill(); });
      child = undefined;
    });
    return out;
  } finally {
    child?.kill();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Child process: N agent subscribers; reports when each version is applied everywhere. */
async function subscribers(): Promise<void> {
  const { DiscoveryClient } = await import('../src/discovery/discovery-client.js');
  const { encodedSize } = await import('../src/discovery/discovery-client.js');
  const n = Number(process.env['AMBIT_BENCH_SUBS']);
  const nodes = Number(process.env['AMBIT_BENCH_NODES']);
  const trust = await new Promise<string[]>((resolve) => process.once('message', (m: { pem: string[] }) => resolve(m.pem)));
  const applied = new Map<number, { at: number[]; bytes: number[] }>();
  const expected = new Set<number>();
  const flush = (v: number) => {
    const a = applied.get(v);
    if (a !== undefined && a.at.length === n && expected.has(v)) {
      process.send?.({ type: 'applied', version: v, at: a.at, bytes: a.bytes });
      applied.delete(v);
      expected.delete(v);
    }
  };
  process.on('message', (m: { type: string; version: number }) => { if (m.type === 'expect') { expected.add(m.version); flush(m.version); } });
  const clients: InstanceType<typeof DiscoveryClient>[] = [];
  let ready = 0;
  for (let i = 0; i < n; i++) {
    const c = new DiscoveryClient({
      address: process.env['AMBIT_BENCH_ADDR'] ?? '', trustBundlePem: trust, kind: 'agent', name: `node-${i % nodes}`, token: 'bench-token',
      onUpdate: (change) => {
        if (change.full) { if (++ready === n) process.send?.({ type: 'ready' }); return; }
        const at = performance.timeOrigin + performance.now();
        let a = applied.get(change.version);
        if (a === undefined) { a = { at: [], bytes: [] }; applied.set(change.version, a); }
        a.at.push(at);
        a.bytes.push(lastSize.get(c) ?? 0);
        flush(change.version);
      },
    });
    const lastSize = new WeakMap<object, number>();
    // Exact size of each push, measured outside the timed path's critical section.
    const orig = (c as unknown as { onResponse: (call: unknown, r: Parameters<typeof encodedSize>[0]) => void }).onResponse.bind(c);
    (c as unknown as { onResponse: typeof orig }).onResponse = (call, r) => { if (!r.full) lastSize.set(c, encodedSize(r)); orig(call, r); };
    clients.push(c);
    await c.start();
  }
  process.on('disconnect', () => { for (const c of clients) void c.close(); process.exit(0); });
}

if (ROLE === 'subscribers') void subscribers();
