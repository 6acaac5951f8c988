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
 * - ambit agents' RSS: idle with the demo's pods (`rss_mb_idle`, once, the first time the
 *   namespace is ambient), node-1's agent once 50 more pods on that node are enrolled
 *   (`rss_mb_50_pods`, what the agent's memory budget is set against), the peak under the load
 *   below (`rss_mb_load`) and 3 s after it (`rss_mb_after_load`); CPU seconds per GB carried
 *   (both agents summed). The load runs with the 50 extra pods enrolled.
 * Rounds interleave the subjects (direct, stunnel, tcp-relay, ambit; then the next round): the
 * namespace is relabelled not ambient for the first three and ambient for ambit each round, and
 * the bench waits until every pod is released or captured. bench/lib/report.ts reports the
 * median and range over the rounds (3 by default, 1 with --quick, `--rounds N`).
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
import { interleaved, quantile, Samples, type BenchOptions } from './lib/report.js';
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

export async function run(opts: BenchOptions): Promise<Samples> {
  const secs = opts.quick ? 3 : 10;
  const latSecs = opts.quick ? 4 : 10;
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-bench-mesh-'));
  const out = new Samples();
  // The processes run with ambit's long-running flags (src/util/node-flags.ts), as the bin and
  // the image start them; `--node-flag=X` (repeatable) adds or overrides one.
  const nodeFlags = withLongRunningFlags(opts.args.filter((a) => a.startsWith('--node-flag=')).map((a) => a.slice('--node-flag='.length)));
  process.stderr.write(`mesh bench: node flags for the mesh processes: ${nodeFlags.join(' ')}\n`);
  const { command, dir: buildDir } = compile(nodeFlags);
  out.add('ambit', 'runtime_compiled', buildDir === undefined ? 0 : 1);
  let mesh: DemoMesh | undefined;
  const relays: ChildProcess[] = [];
  try {
    mesh = await DemoMesh.up({ prefix: `b${(process.pid % 1296).toString(36)}`, stateDir, command, ambient: false, logLevel: 'warn' }, (l) => process.stderr.write(`${l}\n`));
    const m = mesh;
    const server = m.cluster.pod('echo-2').ip;
    relays.push(m.spawnInPod('echo-2', 'iperf3', ['-s', '-p', '5201']));
    const iperf = async (host: string, port: number): Promise<{ gbps: number; bytes: number }> => {
      const r = await m.exec('client', 'iperf3', ['-c', host, '-p', String(port), '-t', String(secs), '-J'], (secs + 20) * 1000);
      const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
      return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
    };
    let latencyRun = 0;
    /** 1,000 req/s for `latSecs` (after a 1 s warm-up that is not counted) with h2load. */
    const latency = async (url: string): Promise<{ p50: number; p99: number; errors: number }> => {
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
    };

    // The peers: a stunnel4 mTLS pair and the same two user-space hops with no TLS at all (haproxy
    // in TCP mode: what the relays alone cost on this machine), server side in echo-2, client
    // side in the client pod. They run for the whole bench and carry traffic only while the
    // namespace is not ambient (so ambit does not tunnel their traffic too).
    const certDir = join(stateDir, 'stunnel');
    execFileSync('mkdir', ['-p', certDir]);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=bench', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
    const conf = (name: string, body: string) => { const f = join(certDir, `${name}.conf`); writeFileSync(f, `foreground = yes\npid =\ncert = ${join(certDir, 'cert.pem')}\nkey = ${join(certDir, 'key.pem')}\nCAfile = ${join(certDir, 'cert.pem')}\nverifyPeer = yes\nsslVersion = TLSv1.3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n${body}`); return f; };
    const relayConf = (name: string, routes: Array<[string, string]>) => {
      const f = join(certDir, `${name}.cfg`);
      const lines = ['global', '  nbthread 1', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s'];
      routes.forEach(([from, to], i) => lines.push(`listen r${i}`, `  bind ${from}`, `  server s ${to}`));
      writeFileSync(f, lines.join('\n') + '\n');
      return f;
    };
    relays.push(
      m.spawnInPod('echo-2', 'stunnel4', [conf('server', `[iperf]\naccept = ${server}:5443\nconnect = 127.0.0.1:5201\n[http]\naccept = ${server}:5444\nconnect = 127.0.0.1:8080\n`)]),
      m.spawnInPod('client', 'stunnel4', [conf('client', `client = yes\n[iperf]\naccept = 127.0.0.1:5202\nconnect = ${server}:5443\n[http]\naccept = 127.0.0.1:5203\nconnect = ${server}:5444\n`)]),
      m.spawnInPod('echo-2', 'haproxy', ['-db', '-f', relayConf('relay-server', [[`${server}:5445`, '127.0.0.1:5201'], [`${server}:5446`, '127.0.0.1:8080']])]),
      m.spawnInPod('client', 'haproxy', ['-db', '-f', relayConf('relay-client', [['127.0.0.1:5204', `${server}:5445`], ['127.0.0.1:5205', `${server}:5446`]])]),
    );
    await sleep(1000);

    const basePods = ['client', 'echo-1', 'echo-2', 'tcp-echo'];
    const extraPods: string[] = [];
    let ambient = false;
    /** Labels the namespace ambient (or not) and waits until every demo pod follows. */
    const setAmbient = async (on: boolean): Promise<void> => {
      if (ambient === on) return;
      m.setAmbient(on);
      await m.waitCaptured([...basePods, ...extraPods], on, 120_000);
      ambient = on;
    };
    const pids = (): number[] => {
      const all = JSON.parse(readFileSync(join(stateDir, 'pids.json'), 'utf8')) as Record<string, number>;
      return [all['agent-node-1'], all['agent-node-2']].filter((p): p is number => p !== undefined);
    };
    /** Once, the first time the namespace is ambient: idle RSS, then 50 more pods on node-1. */
    const enrollExtraPods = async (): Promise<void> => {
      await sleep(2000);
      out.add('ambit', 'rss_mb_idle', Math.max(...pids().map((p) => procStat(p).rssMb)));
      // 50 more pods on node-1, captured (ambient namespace), spread over 10 identities; ambit's
      // load then runs with them enrolled, as it would on a busy node.
      process.stderr.write(`mesh bench: enrolling ${EXTRA_PODS} more pods on node-1\n`);
      const docs: string[] = [];
      for (let i = 0; i < EXTRA_IDENTITIES; i++) docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bench-${i}\n  namespace: demo`);
      for (let i = 0; i < EXTRA_PODS; i++) {
        const name = `bench-${i}`;
        const info = await m.cluster.addPod({ name, namespace: 'demo', node: 'node-1' });
        extraPods.push(name);
        docs.push(`apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: demo\n  labels:\n    app: bench\n  annotations:\n    ambit.dev/netns: ${info.netnsPath}\nspec:\n  nodeName: node-1\n  serviceAccountName: bench-${i % EXTRA_IDENTITIES}\n  containers:\n    - name: bench\n      image: ambit-demo/bench\nstatus:\n  phase: Running\n  podIP: ${info.ip}`);
      }
      m.setResource('60-bench-pods.yaml', docs.join('\n---\n') + '\n');
      await m.waitCaptured(extraPods, true, 120_000);
    };

    const subjects = [
      { name: 'direct', ambient: false, iperf: [server, 5201], http: `http://${server}:8080/` },
      { name: 'stunnel', ambient: false, iperf: ['127.0.0.1', 5202], http: 'http://127.0.0.1:5203/' },
      { name: 'tcp-relay', ambient: false, iperf: ['127.0.0.1', 5204], http: 'http://127.0.0.1:5205/' },
      { name: 'ambit', ambient: true, iperf: [server, 5201], http: `http://${server}:8080/` },
    ] as const;
    await interleaved('mesh bench', opts.rounds, subjects, async (s) => {
      await setAmbient(s.ambient);
      if (s.name !== 'ambit') {
        out.add(s.name, 'throughput_gbps', (await iperf(s.iperf[0], s.iperf[1])).gbps);
        const l = await latency(s.http);
        out.add(s.name, 'p50_ms', l.p50);
        out.add(s.name, 'p99_ms', l.p99);
        return;
      }
      if (extraPods.length === 0) await enrollExtraPods();
      await sleep(3000);
      const agents = pids();
      const node1 = agents[0];
      out.add('ambit', 'enrolled_pods_node1', (await m.agentDump('node-1')).localPods.filter((p) => p.captured).length);
      if (node1 !== undefined) out.add('ambit', 'rss_mb_50_pods', procStat(node1).rssMb);
      const idle = agents.map(procStat);
      let peakRss = 0;
      const sampler = setInterval(() => { for (const p of agents) try { peakRss = Math.max(peakRss, procStat(p).rssMb); } catch { /* gone */ } }, 200);
      try {
        const t = await iperf(s.iperf[0], s.iperf[1]);
        const after = agents.map(procStat);
        out.add('ambit', 'throughput_gbps', t.gbps);
        out.add('ambit', 'cpu_s_per_gb', after.reduce((sum, a, i) => sum + a.cpuS - (idle[i]?.cpuS ?? 0), 0) / (t.bytes / 1e9));
        const l = await latency(s.http);
        out.add('ambit', 'p50_ms', l.p50);
        out.add('ambit', 'p99_ms', l.p99);
      } finally {
        clearInterval(sampler);
      }
      out.add('ambit', 'rss_mb_load', peakRss);
      await sleep(3000);
      out.add('ambit', 'rss_mb_after_load', Math.max(...agents.map((p) => procStat(p).rssMb)));
    });
  } finally {
    for (const p of relays) p.kill('SIGKILL');
    await mesh?.down();
    rmSync(stateDir, { recursive: true, force: true });
    if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
  }
  return out;
}
