/**
 * `npm run bench -- waypoint [--quick]`: the waypoint's L7 engine as an HTTP/1.1 reverse proxy
 * against nginx and haproxy configured as equivalent reverse proxies, in one run.
 *
 * Setup (all on 127.0.0.1, private config and pid files in a temp dir, every process killed at
 * the end):
 *   backend: one nginx worker answering `200 ok` (2 bytes), the same for every subject
 *   ambit:   wrk -> waypoint (child process: StreamDispatcher + WaypointProxy, one service, the
 *            default route, default retry policy, access log off) -> backend over plain TCP
 *            keep-alive (an endpoint outside the mesh: no HBONE on either side, so the three
 *            proxies do the same work)
 *   nginx:   wrk -> nginx (1 worker, upstream keepalive) -> backend
 *   haproxy: wrk -> haproxy (1 thread, http-reuse always) -> backend
 * Each proxy gets one core's worth of work (one worker/thread; Node is single-threaded).
 *
 * The waypoint runs as compiled JavaScript, as in production (dist/), not through tsx's
 * on-the-fly transform (whose keep-names wrappers alone cost ~10% per request): the ambit role
 * of this file is bundled with esbuild (tsx's own compiler) into node_modules/.cache/ambit-bench/
 * so that its package imports resolve; if esbuild cannot be loaded, the role runs under tsx and
 * the table says so on stderr.
 *
 * Metrics per subject: rps, p50_ms, p99_ms from `wrk -t2 -c32 --latency` (keep-alive), and
 * rss_mb of the proxy process(es) after each round's load (nginx: master + worker), and
 * cpu_us_per_req: the proxy process(es)' user + system CPU time over a round divided by the
 * requests wrk counted (what a request costs, which a busy neighbour on the machine does not
 * move). The machines are noisy, so every subject is measured in interleaved rounds (ambit,
 * haproxy, nginx, ambit, ...; 3 by default, `--rounds N`), and bench/lib/report.ts reports the
 * median and range over the rounds.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { interleaved, Samples, type BenchOptions } from './lib/report.js';
import { withLongRunningFlags } from '../src/util/node-flags.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(HERE), '..');
const run$ = promisify(execFile);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = createServer();
      void c;
      import('node:net').then(({ connect }) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => { s.destroy(); r(true); });
        s.once('error', () => r(false));
      }, () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function rssMb(pids: number[]): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    if (m !== null) kb += Number(m[1]);
  }
  return Math.round((kb / 1024) * 10) / 10;
}

async function childPids(pid: number): Promise<number[]> {
  try {
    const { stdout } = await run$('pgrep', ['-P', String(pid)]);
    return stdout.split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

interface WrkResult { rps: number; p50: number; p99: number; requests: number }

/** CPU time (user + system) a process has used so far, microseconds (from /proc/<pid>/stat). */
async function cpuUs(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ")"; utime and stime are
    // fields 14 and 15 of the whole line, 12 and 13 after it.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return (ticks / CLOCK_TICKS) * 1e6;
}
/** USER_HZ: Linux reports utime/stime in 1/100 s on every architecture Node runs on. */
const CLOCK_TICKS = 100;

function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

async function wrk(port: number, seconds: number): Promise<WrkResult> {
  const { stdout } = await run$('wrk', ['-t2', '-c32', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`], { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(stdout)?.[1] ?? '');
  const p99 = ms(/\s99%\s+(\S+)/.exec(stdout)?.[1] ?? '');
  const requests = Number(/(\d+) requests in /.exec(stdout)?.[1]);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
  if (non2xx !== null) throw new Error(`wrk saw ${non2xx[1]} error responses through 127.0.0.1:${port}: the proxy is misconfigured`);
  return { rps, p50, p99, requests };
}

function started(child: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`${what} failed to start: ${err.message}`)));
    child.once('spawn', () => resolve());
  });
}

// ---------------------------------------------------------------------------------------------
// Child role: the ambit waypoint engine on a plain listener.

async function serveAmbit(listenPort: number, backendPort: number): Promise<void> {
  const { pino } = await import('pino');
  const { WaypointConfig } = await import('../src/waypoint/config.js');
  const { WaypointProxy } = await import('../src/waypoint/proxy.js');
  const { StreamDispatcher } = await import('../src/waypoint/dispatch.js');
  const { AccessLog } = await import('../src/waypoint/access-log.js');
  const { TcpConnector } = await import('../src/waypoint/upstream.js');
  const { Registry } = await import('prom-client');
  const VIP = '198.18.128.10';
  const config = new WaypointConfig({
    bound: [{
      service: {
        key: 'bench/backend', name: 'backend', namespace: 'bench', hostname: 'backend.bench.svc.cluster.local', vips: [VIP], labels: {},
        ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP', appProtocol: undefined }],
        endpoints: [{ workload: 'bench/backend-0', ip: '127.0.0.1', node: 'n1', ready: true, enrolled: false, ports: { 80: backendPort }, labels: {} }],
      },
      routes: [], destinationPolicy: undefined, authorization: [], requestAuthentication: [], rateLimits: [],
    }],
    workloads: [{ key: 'bench/backend-0', name: 'backend-0', namespace: 'bench', identity: 'spiffe://cluster.local/ns/bench/sa/backend', labels: {}, enrolled: false }],
  });
  const logger = pino({ level: 'warn' });
  const proxy = new WaypointProxy({ config, connector: new TcpConnector(), logger, registry: new Registry(), accessLog: new AccessLog({ disabled: true }) });
  const dispatcher = new StreamDispatcher(proxy, logger, {});
  const server = createServer({ noDelay: true }, (sock: Socket) => {
    dispatcher.serve(sock, { peerIdentity: 'spiffe://cluster.local/ns/bench/sa/client', sourceIp: sock.remoteAddress ?? '127.0.0.1', sourcePort: sock.remotePort ?? 0, destinationIp: VIP, destinationPort: 80 });
  });
  server.listen(listenPort, '127.0.0.1');
  process.once('SIGTERM', () => process.exit(0));
}

/**
 * Bundles this file (its ambit role and the waypoint sources) into plain JavaScript with
 * esbuild; undefined when esbuild cannot be loaded.
 */
async function bundleAmbitRole(): Promise<string | undefined> {
  let esbuild: { build(o: Record<string, unknown>): Promise<unknown> };
  try {
    esbuild = (await import('esbuild' as string)) as typeof esbuild;
  } catch {
    return undefined;
  }
  const outDir = join(ROOT, 'node_modules', '.cache', 'ambit-bench');
  await mkdir(outDir, { recursive: true });
  const outfile = join(outDir, 'waypoint-role.mjs');
  await esbuild.build({ entryPoints: [HERE], bundle: true, platform: 'node', format: 'esm', target: 'node24', packages: 'external', outfile, logLevel: 'error' });
  return outfile;
}

// ---------------------------------------------------------------------------------------------

export async function run(opts: BenchOptions): Promise<Samples> {
  const seconds = opts.quick ? 3 : 6;
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-waypoint-'));
  const children: ChildProcess[] = [];
  try {
    const [backendPort, ambitPort, nginxPort, haproxyPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const nginxBase = (name: string, body: string) => `worker_processes 1;
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}.error.log`)} warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  keepalive_requests 1000000;
  ${body}
}
`;
    await writeFile(join(dir, 'backend.conf'), nginxBase('backend', `server { listen 127.0.0.1:${backendPort}; location / { return 200 "ok"; } }`));
    await writeFile(join(dir, 'proxy.conf'), nginxBase('proxy', `upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPort}; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }`));
    await writeFile(join(dir, 'haproxy.cfg'), `global
  nbthread 1
  pidfile ${join(dir, 'haproxy.pid')}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:${haproxyPort}
  default_backend be
backend be
  server s1 127.0.0.1:${backendPort}
`);
    const start = async (cmd: string, args: string[], what: string, port: number): Promise<ChildProcess> => {
      const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(c);
      let err = '';
      c.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
      await started(c, what);
      try {
        await waitPort(port);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}; stderr: ${err.slice(0, 500)}`);
      }
      return c;
    };
    await start('nginx', ['-e', join(dir, 'backend.error.log'), '-c', join(dir, 'backend.conf'), '-p', dir], 'backend nginx', backendPort);
    const compiled = await bundleAmbitRole();
    if (compiled === undefined) process.stderr.write('waypoint bench: esbuild is not available, the ambit role runs under tsx (slower than compiled JS)\n');
    // The waypoint process gets the flags every long-running ambit process starts with (the bin's
    // shebang, the image's entrypoint): src/util/node-flags.ts.
    // `--node-flag=X` (repeatable) adds or overrides one, to compare settings run against run.
    const nodeFlags = withLongRunningFlags(opts.args.filter((a) => a.startsWith('--node-flag=')).map((a) => a.slice('--node-flag='.length)).filter((f) => f !== ''));
    process.stderr.write(`waypoint bench: node flags for the waypoint: ${nodeFlags.join(' ')}\n`);
    const ambitArgs = [...nodeFlags, ...(compiled === undefined ? ['--import=tsx', HERE] : [compiled])];
    const ambit = await start(process.execPath, [...ambitArgs, '--role', 'ambit', String(ambitPort), String(backendPort)], 'ambit waypoint', ambitPort);
    const nginx = await start('nginx', ['-e', join(dir, 'proxy.error.log'), '-c', join(dir, 'proxy.conf'), '-p', dir], 'nginx proxy', nginxPort);
    const haproxy = await start('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], 'haproxy', haproxyPort);

    const subjects: { name: string; port: number; pids: () => Promise<number[]> }[] = [
      { name: 'ambit', port: ambitPort, pids: async () => [ambit.pid as number] },
      { name: 'haproxy', port: haproxyPort, pids: async () => [haproxy.pid as number] },
      { name: 'nginx', port: nginxPort, pids: async () => [nginx.pid as number, ...(await childPids(nginx.pid as number))] },
    ];
    // Warm up every path (JIT, pooled connections), then measure in interleaved rounds.
    for (const s of subjects) await wrk(s.port, 2);
    // CPU per request: the proxy's utime + stime across a wrk run over the requests wrk counted
    // (robust against a noisy neighbour, which moves rps but not the work per request).
    const out = new Samples();
    await interleaved('waypoint bench', opts.rounds, subjects, async (s) => {
      const pids = await s.pids();
      const before = await cpuUs(pids);
      const w = await wrk(s.port, seconds);
      const after = await cpuUs(pids);
      out.add(s.name, 'rps', w.rps);
      out.add(s.name, 'p50_ms', w.p50);
      out.add(s.name, 'p99_ms', w.p99);
      out.add(s.name, 'rss_mb', await rssMb(await s.pids()));
      if (w.requests > 0) out.add(s.name, 'cpu_us_per_req', (after - before) / w.requests);
    });
    return out;
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--role')) {
  const i = process.argv.indexOf('--role');
  if (process.argv[i + 1] === 'ambit') void serveAmbit(Number(process.argv[i + 2]), Number(process.argv[i + 3]));
}
