/**
 * `npm run bench -- mesh [--quick]` (issue 6, DESIGN.md §10): the demo cluster of network
 * namespaces, pod to pod across the two nodes (client on node-1 → echo-2 on node-2), measured in
 * one run:
 * - throughput (iperf3, one stream): no mesh (`direct`), a stunnel4 mTLS pair on the same path
 *   (`stunnel`), and ambit (namespace labelled ambient: capture + HBONE);
 * - latency at a fixed 1,000 requests/s over keep-alive HTTP to the echo app (p50/p99), direct
 *   vs ambit (stunnel: same fixed-rate client through its tunnel);
 * - ambit agents' RSS idle and under load, and CPU seconds per GB carried (both agents summed).
 * Needs root, iperf3, stunnel4 and openssl.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { BenchOptions, Row } from './lib/report.js';
import { DemoMesh, REPO_ROOT } from '../src/demo/mesh.js';

const AMBIT = [process.execPath, '--import=tsx', join(REPO_ROOT, 'src/cli/main.ts')];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function procStat(pid: number): { rssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return { rssMb: rss, cpuS: ticks / 100 };
}

const LATENCY_SCRIPT = `
const http=require('http');const [url,rate,secs]=process.argv.slice(1);const agent=new http.Agent({keepAlive:true,maxSockets:32});
const lat=[];let sent=0,done=0,errors=0;const total=Number(rate)*Number(secs);const start=process.hrtime.bigint();
function one(){const t0=process.hrtime.bigint();http.get(url,{agent},(res)=>{res.resume();res.on('end',()=>{lat.push(Number(process.hrtime.bigint()-t0)/1e6);fin()})}).on('error',()=>{errors++;fin()})}
function fin(){if(++done===total){lat.sort((a,b)=>a-b);const q=(p)=>lat[Math.min(lat.length-1,Math.floor(p*lat.length))];process.stdout.write(JSON.stringify({p50:q(0.5),p99:q(0.99),errors,n:lat.length})+'\\n');process.exit(0)}}
function tick(){const due=Math.min(total,Math.floor(Number(process.hrtime.bigint()-start)/1e9*Number(rate)));while(sent<due){sent++;one()}if(sent<total)setTimeout(tick,1)}
tick();`;

export async function run(opts: BenchOptions): Promise<Row[]> {
  const secs = opts.quick ? 3 : 10;
  const latSecs = opts.quick ? 3 : 10;
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-bench-mesh-'));
  const rows: Row[] = [];
  const mesh = await DemoMesh.up({ prefix: `b${(process.pid % 1296).toString(36)}`, stateDir, command: AMBIT, ambient: false, logLevel: 'warn' }, (l) => process.stderr.write(`${l}\n`));
  try {
    const server = mesh.cluster.pod('echo-2').ip;
    const iperfServer = mesh.spawnInPod('echo-2', 'iperf3', ['-s', '-p', '5201']);
    await sleep(500);
    const iperf = async (host: string, port: number): Promise<{ gbps: number; bytes: number }> => {
      const r = await mesh.exec('client', 'iperf3', ['-c', host, '-p', String(port), '-t', String(secs), '-J'], (secs + 20) * 1000);
      const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
      return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
    };
    const latency = async (url: string) => {
      const r = await mesh.exec('client', process.execPath, ['-e', LATENCY_SCRIPT, url, '1000', String(latSecs)], (latSecs + 30) * 1000);
      return JSON.parse(r.stdout) as { p50: number; p99: number; errors: number };
    };
    // direct
    const direct = await iperf(server, 5201);
    rows.push({ subject: 'direct', metric: 'throughput_gbps', value: direct.gbps });
    const dl = await latency(`http://${server}:8080/`);
    rows.push({ subject: 'direct', metric: 'p50_ms', value: dl.p50 }, { subject: 'direct', metric: 'p99_ms', value: dl.p99 });
    // stunnel4 mTLS pair on the same path
    const certDir = join(stateDir, 'stunnel');
    execFileSync('mkdir', ['-p', certDir]);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=bench', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
    const conf = (name: string, body: string) => { const f = join(certDir, `${name}.conf`); writeFileSync(f, `foreground = yes\npid =\ncert = ${join(certDir, 'cert.pem')}\nkey = ${join(certDir, 'key.pem')}\nCAfile = ${join(certDir, 'cert.pem')}\nverifyPeer = yes\nsslVersion = TLSv1.3\n${body}`); return f; };
    const sServer = mesh.spawnInPod('echo-2', 'stunnel4', [conf('server', `[iperf]\naccept = ${server}:5443\nconnect = 127.0.0.1:5201\n[http]\naccept = ${server}:5444\nconnect = 127.0.0.1:8080\n`)]);
    const sClient = mesh.spawnInPod('client', 'stunnel4', [conf('client', `client = yes\n[iperf]\naccept = 127.0.0.1:5202\nconnect = ${server}:5443\n[http]\naccept = 127.0.0.1:5203\nconnect = ${server}:5444\n`)]);
    await sleep(1000);
    const st = await iperf('127.0.0.1', 5202);
    rows.push({ subject: 'stunnel', metric: 'throughput_gbps', value: st.gbps });
    const sl = await latency('http://127.0.0.1:5203/');
    rows.push({ subject: 'stunnel', metric: 'p50_ms', value: sl.p50 }, { subject: 'stunnel', metric: 'p99_ms', value: sl.p99 });
    sServer.kill('SIGKILL');
    sClient.kill('SIGKILL');
    // ambit
    mesh.setAmbient(true);
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    const pids = JSON.parse(readFileSync(join(stateDir, 'pids.json'), 'utf8')) as Record<string, number>;
    const agents = [pids['agent-node-1'], pids['agent-node-2']].filter((p): p is number => p !== undefined);
    await sleep(1000);
    const idle = agents.map(procStat);
    rows.push({ subject: 'ambit', metric: 'rss_mb_idle', value: Math.max(...idle.map((s) => s.rssMb)) });
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
  } finally {
    await mesh.down();
    rmSync(stateDir, { recursive: true, force: true });
  }
  return rows;
}
