/**
 * `npm run bench -- mesh [--quick]`: the demo cluster of network namespaces, pod to pod across the
 * two nodes (client on node-1 → echo-2 on node-2), measured in one run:
 * - throughput (iperf3, one stream): no mesh (`direct`), a stunnel4 mTLS pair on the same path
 *   (`stunnel`), the same pair of relays with no TLS (`tcp-relay`: haproxy in TCP mode, the floor
 *   two user-space hops set on this machine), and ambit (namespace labelled ambient: capture +
 *   HBONE);
 * - latency at a fixed 1,000 requests/s over keep-alive HTTP/1.1 to the echo app (p50/p99) with
 *   h2load (`--h1 --rps`, 8 connections x 125 req/s, a native client that paces itself and
 *   leaves the cores to the mesh), percentiles from its per-request log;
 * - ambit agents' RSS: idle with the demo's pods (`rss_mb_idle`), node-1's agent once 50 more
 *   pods on that node are enrolled (`rss_mb_50_pods`, what the agent's memory budget is set
 *   against), the peak under the load below (`rss_mb_load`) and 3 s after it
 *   (`rss_mb_after_load`); CPU seconds per GB carried (both agents summed). The load runs with
 *   the 50 extra pods enrolled. Throughput and latency figures are medians of 3 runs each (1
 *   with --quick).
 *
 * The processes run from JavaScript compiled by tsc into a private `.tmp-bench-mesh-<pid>/`
 * folder (as `npm run build` makes dist/ for a deployment), not through the tsx loader, whose
 * loader thread alone costs ~30 MB of RSS per process and would blur the agent's memory figures.
 * If tsc fails, the bench falls back to tsx and says so (`runtime_compiled` row: 1 compiled, 0 tsx).
 * The mesh processes run with LONG_RUNNING_NODE_FLAGS (src/util/node-flags.ts), as the bin and
 * the image start them; `--node-flag=X` (repeatable) adds or overrides one.
 * Needs root, iperf3, h2load, stunnel4 and openssl.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, type ChildProcess } from 'node:child_process';
import type { BenchOptions, Row } from './lib/report.js';
import { DemoMesh, REPO_ROOT } from '../src/demo/mesh.js';
import { withLongRunningFlags } from '../src/util/node-flags.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Extra pods enrolled on node-1 for the memory measurement (RSS with 50 enrolled pods). */
const EXTRA_PODS = 50;
/** Service accounts the extra pods are spread over (replicas share identities, as in a cluster). */
const EXTRA_IDENTITIES = 10;

function procStat(pid: number): { rssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return { rssMb: rss, cpuS: ticks / 100 };
}

/** Compiles src/ with tsc into a private folder beside src/ (so repo-relative paths resolve). */
function compile(nodeFlags: string[]): { command: string[]; dir: string | undefined } {
  const dir = join(REPO_ROOT, `.tmp-bench-mesh-${process.pid}`);
  try {
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO_ROOT, 'tsconfig.json'), '--outDir', dir, '--sourceMap', 'false', '--declaration', 'false'], { cwd: REPO_ROOT, stdio: 'ignore' });
  } catch {
    // tsc exits non-zero on type errors but still emits; only a missing entry point is fatal.
  }
  if (existsSync(join(dir, 'cli', 'main.js'))) return { command: [process.execPath, ...nodeFlags, join(dir, 'cli', 'main.js')], dir };
  rmSync(dir, { recursive: true, force: true });
  process.stderr.write('mesh bench: tsc produced no cli/main.js; running the processes through tsx (RSS includes its loader thread)\n');
  return { command: [process.execPath, ...nodeFlags, '--import=tsx', join(REPO_ROOT, 'src/cli/main.ts')], dir: undefined };
}

function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const secs = opts.quick ? 3 : 10;
  const latSecs = opts.quick ? 4 : 10;
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-bench-mesh-'));
  const rows: Row[] = [];
  // The processes run with ambit's long-running flags (src/util/node-flags.ts), as the bin and
  // the image start them; `--node-flag=X` (repeatable) adds or overrides one.
  const nodeFlags = withLongRunningFlags(opts.args.filter((a) => a.startsWith('--node-flag=')).map((a) => a.slice('--node-flag='.length)));
  process.stderr.write(`mesh bench: node flags for the mesh processes: ${nodeFlags.join(' ')}\n`);
  const { command, dir: buildDir } = compile(nodeFlags);
  rows.push({ subject: 'ambit', metric: 'runtime_compiled', value: buildDir === undefined ? 0 : 1 });
  let mesh: DemoMesh | undefined;
  try {
    mesh = await DemoMesh.up({ prefix: `b${(process.pid % 1296).toString(36)}`, stateDir, command, ambient: false, logLevel: 'warn' }, (l) => process.stderr.write(`${l}\n`));
    const m = mesh;
    const server = m.cluster.pod('echo-2').ip;
    const iperfServer = m.spawnInPod('echo-2', 'iperf3', ['-s', '-p', '5201']);
    await sleep(500);
    // Each figure is the median of `rounds` runs (the machines are noisy); bytes are summed.
    const rounds = opts.quick ? 1 : 3;
    const median = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
    const iperfOnce = async (host: string, port: number): Promise<{ gbps: number; bytes: number }> => {
      const r = await m.exec('client', 'iperf3', ['-c', host, '-p', String(port), '-t', String(secs), '-J'], (secs + 20) * 1000);
      const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
      return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
    };
    const iperf = async (host: string, port: number): Promise<{ gbps: number; bytes: number }> => {
      const runs: Array<{ gbps: number; bytes: number }> = [];
      for (let i = 0; i < rounds; i++) runs.push(await iperfOnce(host, port));
      return { gbps: median(runs.map((r) => r.gbps)), bytes: runs.reduce((a, r) => a + r.bytes, 0) };
    };
    let latencyRun = 0;
    /** 1,000 req/s for `latSecs` (after a 1 s warm-up that is not counted) with h2load. */
    const latency = async (url: string): Promise<{ p50: number; p99: number; errors: number }> => {
      const runs: Array<{ p50: number; p99: number; errors: number }> = [];
      for (let i = 0; i < rounds; i++) runs.push(await latencyOnce(url));
      return { p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)), errors: runs.reduce((a, r) => a + r.errors, 0) };
    };
    async function latencyOnce(url: string): Promise<{ p50: number; p99: number; errors: number }> {
      const log = join(stateDir, `h2load-${++latencyRun}.log`);
      const r = await m.exec('client', 'h2load', ['--h1', '-c', '8', '-m', '1', '--rps', '125', '-D', String(latSecs), '--warm-up-time', '1', '--log-file', log, url], (latSecs + 30) * 1000);
      if (!existsSync(log)) throw new Error(`h2load wrote no log (exit ${r.code}): ${r.stderr || r.stdout}`);
      const lat: number[] = [];
      let errors = 0;
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l.length > 0);
      const t0 = Number(lines[0]?.split('\t')[0] ?? 0);
      for (const line of lines) {
        const [start, status, us] = line.split('\t').map(Number);
        if (start === undefined || start - t0 < 1e6) continue; // warm-up second
        if (status !== 200) errors++;
        else lat.push((us ?? 0) / 1000);
      }
      const failed = /(\d+) failed/.exec(r.stdout)?.[1];
      errors += Number(failed ?? 0);
      lat.sort((a, b) => a - b);
      if (errors > 0) process.stderr.write(`mesh bench: ${errors} failed requests at 1,000 req/s via ${url}\n`);
      return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), errors };
    }
    // direct
    const direct = await iperf(server, 5201);
    rows.push({ subject: 'direct', metric: 'throughput_gbps', value: direct.gbps });
    const dl = await latency(`http://${server}:8080/`);
    rows.push({ subject: 'direct', metric: 'p50_ms', value: dl.p50 }, { subject: 'direct', metric: 'p99_ms', value: dl.p99 });
    // stunnel4 mTLS pair on the same path
    const certDir = join(stateDir, 'stunnel');
    execFileSync('mkdir', ['-p', certDir]);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=bench', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
    const conf = (name: string, body: string) => { const f = join(certDir, `${name}.conf`); writeFileSync(f, `foreground = yes\npid =\ncert = ${join(certDir, 'cert.pem')}\nkey = ${join(certDir, 'key.pem')}\nCAfile = ${join(certDir, 'cert.pem')}\nverifyPeer = yes\nsslVersion = TLSv1.3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n${body}`); return f; };
    /** Measures a relay pair (server side in echo-2, client side in the client pod) as `subject`. */
    const measurePair = async (subject: string, spawnPair: () => ChildProcess[], iperfPort: number, httpPort: number): Promise<void> => {
      const procs = spawnPair();
      await sleep(1000);
      const t = await iperf('127.0.0.1', iperfPort);
      rows.push({ subject, metric: 'throughput_gbps', value: t.gbps });
      const l = await latency(`http://127.0.0.1:${httpPort}/`);
      rows.push({ subject, metric: 'p50_ms', value: l.p50 }, { subject, metric: 'p99_ms', value: l.p99 });
      for (const p of procs) p.kill('SIGKILL');
    };
    await measurePair('stunnel', () => [
      m.spawnInPod('echo-2', 'stunnel4', [conf('server', `[iperf]\naccept = ${server}:5443\nconnect = 127.0.0.1:5201\n[http]\naccept = ${server}:5444\nconnect = 127.0.0.1:8080\n`)]),
      m.spawnInPod('client', 'stunnel4', [conf('client', `client = yes\n[iperf]\naccept = 127.0.0.1:5202\nconnect = ${server}:5443\n[http]\naccept = 127.0.0.1:5203\nconnect = ${server}:5444\n`)]),
    ], 5202, 5203);
    // The floor: the same two user-space hops as the stunnel pair with no TLS at all (haproxy in
    // TCP mode in the same pods), i.e. what the relays alone cost on this machine.
    const relayConf = (name: string, routes: Array<[string, string]>) => {
      const f = join(certDir, `${name}.cfg`);
      const lines = ['global', '  nbthread 1', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s'];
      routes.forEach(([from, to], i) => lines.push(`listen r${i}`, `  bind ${from}`, `  server s ${to}`));
      writeFileSync(f, lines.join('\n') + '\n');
      return f;
    };
    await measurePair('tcp-relay', () => [
      m.spawnInPod('echo-2', 'haproxy', ['-db', '-f', relayConf('relay-server', [[`${server}:5445`, '127.0.0.1:5201'], [`${server}:5446`, '127.0.0.1:8080']])]),
      m.spawnInPod('client', 'haproxy', ['-db', '-f', relayConf('relay-client', [['127.0.0.1:5204', `${server}:5445`], ['127.0.0.1:5205', `${server}:5446`]])]),
    ], 5204, 5205);
    // ambit
    m.setAmbient(true);
    await m.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    const pids = JSON.parse(readFileSync(join(stateDir, 'pids.json'), 'utf8')) as Record<string, number>;
    const agents = [pids['agent-node-1'], pids['agent-node-2']].filter((p): p is number => p !== undefined);
    await sleep(2000);
    rows.push({ subject: 'ambit', metric: 'rss_mb_idle', value: Math.max(...agents.map((p) => procStat(p).rssMb)) });

    // 50 more pods on node-1, captured (ambient namespace), spread over 10 identities; the load
    // below then runs with them enrolled, as it would on a busy node.
    process.stderr.write(`mesh bench: enrolling ${EXTRA_PODS} more pods on node-1\n`);
    const names: string[] = [];
    const docs: string[] = [];
    for (let i = 0; i < EXTRA_IDENTITIES; i++) docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bench-${i}\n  namespace: demo`);
    for (let i = 0; i < EXTRA_PODS; i++) {
      const name = `bench-${i}`;
      const info = await m.cluster.addPod({ name, namespace: 'demo', node: 'node-1' });
      names.push(name);
      docs.push(`apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: demo\n  labels:\n    app: bench\n  annotations:\n    ambit.dev/netns: ${info.netnsPath}\nspec:\n  nodeName: node-1\n  serviceAccountName: bench-${i % EXTRA_IDENTITIES}\n  containers:\n    - name: bench\n      image: ambit-demo/bench\nstatus:\n  phase: Running\n  podIP: ${info.ip}`);
    }
    m.setResource('60-bench-pods.yaml', docs.join('\n---\n') + '\n');
    await m.waitCaptured(names, true, 120_000);
    await sleep(3000);
    const node1 = pids['agent-node-1'];
    const enrolled = (await m.agentDump('node-1')).localPods.filter((p) => p.captured).length;
    rows.push({ subject: 'ambit', metric: 'enrolled_pods_node1', value: enrolled });
    if (node1 !== undefined) rows.push({ subject: 'ambit', metric: 'rss_mb_50_pods', value: procStat(node1).rssMb });

    const idle = agents.map(procStat);
    let peakRss = 0;
    const sampler = setInterval(() => { for (const p of agents) try { peakRss = Math.max(peakRss, procStat(p).rssMb); } catch { /* gone */ } }, 200);
    const amb = await iperf(server, 5201);
    const after = agents.map(procStat);
    rows.push({ subject: 'ambit', metric: 'throughput_gbps', value: amb.gbps });
    const cpu = after.reduce((s, a, i) => s + a.cpuS - (idle[i]?.cpuS ?? 0), 0);
    rows.push({ subject: 'ambit', metric: 'cpu_s_per_gb', value: cpu / (amb.bytes / 1e9) });
    const al = await latency(`http://${server}:8080/`);
    clearInterval(sampler);
    rows.push({ subject: 'ambit', metric: 'p50_ms', value: al.p50 }, { subject: 'ambit', metric: 'p99_ms', value: al.p99 });
    rows.push({ subject: 'ambit', metric: 'rss_mb_load', value: peakRss });
    iperfServer.kill('SIGKILL');
    await sleep(3000);
    rows.push({ subject: 'ambit', metric: 'rss_mb_after_load', value: Math.max(...agents.map((p) => procStat(p).rssMb)) });
  } finally {
    await mesh?.down();
    rmSync(stateDir, { recursive: true, force: true });
    if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
  }
  return rows;
}
