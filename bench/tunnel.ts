/**
 * `npm run bench -- tunnel [--quick]`: the HBONE tunnel against a stunnel4 mTLS pair and direct
 * loopback, measured in one run.
 *
 * Paths (all on 127.0.0.1, each hop its own process, so the tunnel ends compete for the two
 * cores the way stunnel's do):
 *   direct:  client -> target
 *   ambit:   client -> HBONE client listener (process) -> HBONE server (process) -> target
 *   stunnel: client -> stunnel client (process) -> stunnel server (process) -> target
 *   tcp-relay: client -> haproxy (TCP mode, process) -> haproxy (process) -> target: no TLS, the
 *            floor two extra user-space hops set on this machine
 * Both tunnels use the same CA and workload certificates, TLS 1.3 and mutual authentication.
 *
 * Metrics per subject:
 *   (each measured in rounds that interleave the subjects: round 1 runs every subject, then
 *   round 2 does...; bench/lib/report.ts reports the median and range over the rounds)
 *   throughput_gbps  iperf3 -c ... -J through the path (iperf3 -s is the target), receiver side
 *   cpu_s_per_gb     CPU seconds both tunnel processes used during that iperf3 run per GB carried
 *                    (from /proc; steadier than throughput when neighbours share the cores)
 *   rps              wrk -t1 -c16 --latency against a tiny keep-alive HTTP server (saturation)
 *   wrk_p50_ms, wrk_p99_ms   wrk's latency percentiles at saturation
 *   p50_ms, p99_ms   a fixed 1,000 requests/s with h2load (`--h1 --rps 125` on 8 keep-alive
 *                    connections): a native client that paces itself without eating the cores
 *                    the tunnel processes need; percentiles come from its per-request log
 *                    (`--log-file`), the first second (connection warm-up) left out
 *   setup_ms         a fresh pool -> TLS handshake + first answered CONNECT (the round's median of
 *                    30 handshakes, 10 with --quick), for two subjects: `ambit` offering ambit's
 *                    default groups (X25519MLKEM768, then X25519: the hybrid post-quantum group
 *                    is negotiated) and `ambit-x25519` offering X25519 only (the classical
 *                    baseline); the server offers the defaults. Handshakes alternate between the
 *                    two, and each checks which group its session negotiated.
 *
 * The two ambit processes run with LONG_RUNNING_NODE_FLAGS (src/util/node-flags.ts);
 * `--node-flag=X` (repeatable) adds or overrides one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { interleavedRound, median, Samples, type BenchOptions } from './lib/report.js';
import { CertificateAuthority } from '../src/identity/ca.js';
import { IdentityManager, type WorkloadCertificate } from '../src/identity/manager.js';
import { StaticCredentialSource } from '../src/identity/static-credentials.js';
import { HboneServer } from '../src/tunnel/server.js';
import { HbonePool } from '../src/tunnel/pool.js';
import { splice } from '../src/tunnel/splice.js';
import { withLongRunningFlags } from '../src/util/node-flags.js';
import { DEFAULT_TLS_GROUPS } from '../src/tunnel/tls-groups.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(HERE), '..');
const CLIENT_ID = 'spiffe://cluster.local/ns/bench/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/bench/sa/server';

// ---------------------------------------------------------------------------------------------
// Child process roles: `node --import tsx bench/tunnel.ts --role <role> ...`

interface CertFile { client: WorkloadCertificate; server: WorkloadCertificate }

async function loadCerts(file: string): Promise<StaticCredentialSource> {
  const raw = JSON.parse(await readFile(file, 'utf8')) as CertFile;
  const fix = (c: WorkloadCertificate): WorkloadCertificate => ({ ...c, notBefore: new Date(c.notBefore), notAfter: new Date(c.notAfter), renewAt: new Date(c.renewAt) });
  return new StaticCredentialSource([fix(raw.client), fix(raw.server)]);
}

function optionalArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? undefined : process.argv[i + 1];
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** `--stream-window N --session-window N` (bytes) for tuning runs; default: the library's. */
function windowOptions(): { streamWindowBytes?: number; sessionWindowBytes?: number } {
  const stream = optionalArg('stream-window');
  const session = optionalArg('session-window');
  return { ...(stream === undefined ? {} : { streamWindowBytes: Number(stream) }), ...(session === undefined ? {} : { sessionWindowBytes: Number(session) }) };
}

async function roleHboneServer(): Promise<void> {
  const buf = optionalArg('splice-buffer');
  const server = await HboneServer.create({ identity: SERVER_ID, credentials: await loadCerts(arg('certs')), authorize: () => ({ allow: true }), ...(buf === undefined ? {} : { spliceBufferBytes: Number(buf) }), ...windowOptions() });
  const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(JSON.stringify({ port }) + '\n');
}

/** The ambit "client side": plain TCP listeners, each tunnelling to one authority. */
async function roleHboneClient(): Promise<void> {
  const pool = new HbonePool({ credentials: await loadCerts(arg('certs')), ...windowOptions() });
  const serverPort = Number(arg('server'));
  const buf = optionalArg('splice-buffer');
  const spliceOpts = buf === undefined ? {} : { maxBufferedBytes: Number(buf) };
  const ports: number[] = [];
  for (const authority of arg('authorities').split(',')) {
    const listener = createNetServer({ allowHalfOpen: true, noDelay: true }, (sock: Socket) => {
      sock.on('error', () => {});
      sock.pause();
      pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port: serverPort }, destinationIdentity: SERVER_ID, authority, forwardedFor: { host: sock.remoteAddress ?? '127.0.0.1', port: sock.remotePort ?? 0 } }).then(
        (stream) => {
          splice(stream, sock, () => {}, spliceOpts);
          sock.resume();
        },
        () => sock.destroy(),
      );
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    ports.push((listener.address() as AddressInfo).port);
  }
  process.stdout.write(JSON.stringify({ ports }) + '\n');
}

async function roleHttpTarget(): Promise<void> {
  const body = Buffer.from('ok\n');
  const server = createHttpServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
}

// ---------------------------------------------------------------------------------------------
// Orchestration

const children: ChildProcess[] = [];

/** Spawns a process and waits for its first stdout line (JSON) when `json` is set. */
async function start(cmd: string, args: string[], json: boolean): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AMBIT_LOG_LEVEL: 'warn' } });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  if (!json) {
    await new Promise((r) => setTimeout(r, 300));
    if (child.exitCode !== null) throw new Error(`${cmd} exited: ${stderr}`);
    return { child, info: {} };
  }
  const rl = createInterface({ input: child.stdout! });
  const line = await new Promise<string>((resolve, reject) => {
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr}`)));
  });
  return { child, info: JSON.parse(line) as Record<string, unknown> };
}

function nodeRole(role: string, extra: string[] = [], nodeFlags: string[] = []): string[] {
  return [...nodeFlags, '--import', 'tsx', HERE, '--role', role, ...extra];
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = netConnect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err || out}`))));
  });
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 is index 0: utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Kernel clock ticks per second for /proc times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

async function iperf(port: number, seconds: number): Promise<{ gbps: number; bytes: number }> {
  let last = '';
  // iperf3 -s serves one test at a time and may still be wrapping up the previous one.
  for (let attempt = 0; attempt < 5; attempt++) {
    const raw = await exec('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J']).catch((err: Error) => err.message);
    try {
      const out = JSON.parse(raw) as { error?: string; end?: { sum_received?: { bits_per_second?: number; bytes?: number } } };
      const bps = out.end?.sum_received?.bits_per_second;
      if (bps !== undefined && out.error === undefined) return { gbps: bps / 1e9, bytes: out.end?.sum_received?.bytes ?? 0 };
      last = out.error ?? 'no result';
    } catch {
      last = raw.slice(0, 200);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`iperf3 through 127.0.0.1:${port} failed: ${last}`);
}

function wrkMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

async function wrk(port: number, seconds: number): Promise<{ rps: number; p50: number; p99: number }> {
  const out = await exec('wrk', ['-t1', '-c16', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return m === null ? Number.NaN : wrkMs(m[1] ?? '', m[2] ?? 'ms');
  };
  return { rps, p50: pct('50'), p99: pct('99') };
}

/** Fixed-rate HTTP/1.1 load with h2load: `rate` requests/s over 8 connections for `seconds`. */
async function fixedRate(port: number, rate: number, seconds: number, dir: string): Promise<{ p50: number; p99: number; errors: number }> {
  const log = join(dir, `h2load-${port}-${Date.now()}.log`);
  const clients = 8;
  const out = await exec('h2load', ['--h1', '-c', String(clients), '-m', '1', '--rps', String(Math.max(1, Math.round(rate / clients))), '-D', String(seconds + 1), '--log-file', log, `http://127.0.0.1:${port}/`]);
  const lines = (await readFile(log, 'utf8')).split('\n').filter((l) => l.length > 0);
  await rm(log, { force: true });
  const t0 = Number(lines[0]?.split('\t')[0] ?? 0);
  const latencies: number[] = [];
  let errors = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  for (const line of lines) {
    const [start, status, us] = line.split('\t').map(Number);
    if (start === undefined || start - t0 < 1e6) continue; // first second: connections warming up
    if (status === 200) latencies.push((us ?? 0) / 1000);
    else errors++;
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  return { p50: q(0.5), p99: q(0.99), errors };
}

/**
 * One fresh pool's TLS handshake + first answered CONNECT, in ms, offering `groups`; checks that
 * the session negotiated `expect` (so a classical subject really measures X25519).
 */
async function setupOnce(serverPort: number, targetPort: number, creds: StaticCredentialSource, groups: readonly string[], expect: string): Promise<number> {
  const pool = new HbonePool({ credentials: creds, tlsGroups: groups });
  try {
    const t0 = performance.now();
    const s = await pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port: serverPort }, destinationIdentity: SERVER_ID, authority: `127.0.0.1:${targetPort}` });
    const ms = performance.now() - t0;
    const group = pool.stats()[0]?.tlsGroup;
    s.destroy();
    if (group !== expect) throw new Error(`setup_ms offering ${groups.join(':')} negotiated ${group ?? 'nothing'}, expected ${expect}`);
    return ms;
  } finally {
    pool.destroy();
  }
}

/** The setup_ms subjects: ambit's default groups (post-quantum hybrid first) and classical only. */
const SETUP_SUBJECTS = [
  { name: 'ambit', groups: DEFAULT_TLS_GROUPS, expect: 'X25519MLKEM768' },
  { name: 'ambit-x25519', groups: ['X25519'], expect: 'X25519' },
] as const;

function stunnelConf(dir: string, name: string, lines: string[]): Promise<string> {
  const file = join(dir, `${name}.conf`);
  return writeFile(file, ['foreground = yes', 'syslog = no', `pid =`, 'debug = 3', `output = ${join(dir, `${name}.log`)}`, ...lines, ''].join('\n')).then(() => file);
}

export async function run(opts: BenchOptions): Promise<Samples> {
  const seconds = opts.quick ? 2 : 5;
  const rounds = opts.rounds;
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-tunnel-'));
  try {
    // Certificates: one CA, a client and a server identity, shared by ambit and stunnel.
    const ca = await CertificateAuthority.open();
    const mgr = new IdentityManager({ signer: ca });
    const [client, server] = await Promise.all([mgr.credentials(CLIENT_ID), mgr.credentials(SERVER_ID)]);
    mgr.close();
    const certFile = join(dir, 'certs.json');
    await writeFile(certFile, JSON.stringify({ client, server }), { mode: 0o600 });
    for (const [name, c] of [['client', client], ['server', server]] as const) {
      await writeFile(join(dir, `${name}.crt`), c.chainPem.join(''), { mode: 0o600 });
      await writeFile(join(dir, `${name}.key`), c.keyPem, { mode: 0o600 });
    }
    await writeFile(join(dir, 'ca.crt'), ca.trustBundlePem().join(''));
    const creds = new StaticCredentialSource([client, server]);

    // Targets.
    const iperfPort = await freePort();
    await start('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(iperfPort)], false);
    await waitForPort(iperfPort);
    const httpPort = Number((await start(process.execPath, nodeRole('http-target'), true)).info['port']);
    const authorities = `127.0.0.1:${iperfPort},127.0.0.1:${httpPort}`;

    // ambit pair.
    // Both ambit processes run with ambit's long-running flags (src/util/node-flags.ts), as the
    // bin and the image start them; `--node-flag=X` (repeatable) adds or overrides one, to
    // compare runtime settings run against run (e.g. `--node-flag=--initial-old-space-size=8`).
    const nodeFlags = withLongRunningFlags(opts.args.filter((a) => a.startsWith('--node-flag=')).map((a) => a.slice('--node-flag='.length)));
    process.stderr.write(`tunnel bench: node flags for the ambit processes: ${nodeFlags.join(' ')}\n`);
    const hboneServer = await start(process.execPath, nodeRole('hbone-server', ['--certs', certFile], nodeFlags), true);
    const hboneServerPort = Number(hboneServer.info['port']);
    const hboneClient = await start(process.execPath, nodeRole('hbone-client', ['--certs', certFile, '--server', String(hboneServerPort), '--authorities', authorities], nodeFlags), true);
    const [ambitIperf, ambitHttp] = hboneClient.info['ports'] as number[];

    // stunnel pair.
    const [sServerIperf, sServerHttp, sClientIperf, sClientHttp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const common = ['sslVersionMin = TLSv1.3', 'sslVersionMax = TLSv1.3', `CAfile = ${join(dir, 'ca.crt')}`, 'verifyChain = yes', 'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1'];
    const sServer = await stunnelConf(dir, 'stunnel-server', [
      `cert = ${join(dir, 'server.crt')}`, `key = ${join(dir, 'server.key')}`, ...common,
      '[iperf]', `accept = 127.0.0.1:${sServerIperf}`, `connect = 127.0.0.1:${iperfPort}`,
      '[http]', `accept = 127.0.0.1:${sServerHttp}`, `connect = 127.0.0.1:${httpPort}`,
    ]);
    const sClient = await stunnelConf(dir, 'stunnel-client', [
      'client = yes', `cert = ${join(dir, 'client.crt')}`, `key = ${join(dir, 'client.key')}`, ...common,
      '[iperf]', `accept = 127.0.0.1:${sClientIperf}`, `connect = 127.0.0.1:${sServerIperf}`,
      '[http]', `accept = 127.0.0.1:${sClientHttp}`, `connect = 127.0.0.1:${sServerHttp}`,
    ]);
    const stunnelServer = await start('stunnel4', [sServer], false);
    const stunnelClient = await start('stunnel4', [sClient], false);
    await Promise.all([sServerIperf, sServerHttp, sClientIperf, sClientHttp].map(waitForPort));

    // The floor: a plain TCP relay pair with no TLS (haproxy in TCP mode, one process per side
    // like the two tunnels), so the table shows what two extra user-space hops cost on this
    // machine before any encryption or framing.
    const [rAIperf, rAHttp, rBIperf, rBHttp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const relayConf = async (name: string, routes: Array<[number, number]>) => {
      const file = join(dir, `${name}.cfg`);
      const lines = ['global', '  nbthread 1', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s'];
      routes.forEach(([from, to], i) => lines.push(`listen r${i}`, `  bind 127.0.0.1:${from}`, `  server s 127.0.0.1:${to}`));
      await writeFile(file, lines.join('\n') + '\n');
      return file;
    };
    const relayB = await start('haproxy', ['-db', '-f', await relayConf('relay-b', [[rBIperf, iperfPort], [rBHttp, httpPort]])], false);
    const relayA = await start('haproxy', ['-db', '-f', await relayConf('relay-a', [[rAIperf, rBIperf], [rAHttp, rBHttp]])], false);
    await Promise.all([rAIperf, rAHttp, rBIperf, rBHttp].map(waitForPort));

    const pids = (...cs: ChildProcess[]) => cs.map((c) => c.pid ?? 0);
    const subjects = [
      { name: 'ambit', iperf: ambitIperf ?? 0, http: ambitHttp ?? 0, pids: pids(hboneClient.child, hboneServer.child) },
      { name: 'stunnel', iperf: sClientIperf, http: sClientHttp, pids: pids(stunnelClient.child, stunnelServer.child) },
      { name: 'tcp-relay', iperf: rAIperf, http: rAHttp, pids: pids(relayA.child, relayB.child) },
      { name: 'direct', iperf: iperfPort, http: httpPort, pids: [] as number[] },
    ];
    // Rounds interleave the subjects so a noisy neighbour hurts all of them alike (each phase
    // runs every subject in turn, then the next phase, then the next round).
    const out = new Samples();
    const setupN = opts.quick ? 10 : 30;
    for (let round = 0; round < rounds; round++) {
      await interleavedRound('tunnel bench: iperf3', round, rounds, subjects, async (s) => {
        const cpu0 = await Promise.all(s.pids.map(cpuSeconds));
        const r = await iperf(s.iperf, seconds);
        const cpu1 = await Promise.all(s.pids.map(cpuSeconds));
        out.add(s.name, 'throughput_gbps', r.gbps);
        if (s.pids.length > 0 && r.bytes > 0) {
          const used = cpu1.reduce((a, b) => a + b, 0) - cpu0.reduce((a, b) => a + b, 0);
          out.add(s.name, 'cpu_s_per_gb', used / (r.bytes / 1e9));
        }
      });
      await interleavedRound('tunnel bench: wrk', round, rounds, subjects, async (s) => {
        const w = await wrk(s.http, seconds);
        out.add(s.name, 'rps', w.rps);
        out.add(s.name, 'wrk_p50_ms', w.p50);
        out.add(s.name, 'wrk_p99_ms', w.p99);
      });
      await interleavedRound('tunnel bench: 1,000 req/s', round, rounds, subjects, async (s) => {
        const f = await fixedRate(s.http, 1000, seconds, dir);
        if (f.errors > 0) process.stderr.write(`tunnel bench: ${s.name}: ${f.errors} failed requests at 1,000 req/s\n`);
        out.add(s.name, 'p50_ms', f.p50);
        out.add(s.name, 'p99_ms', f.p99);
      });
      // setup_ms: handshakes alternate between the two group lists, one of each in turn; the
      // round's figure per subject is the median of its `setupN` handshakes.
      process.stderr.write(`tunnel bench: round ${round + 1}/${rounds}: setup_ms (${SETUP_SUBJECTS.map((s) => s.name).join(', ')})\n`);
      const setup = new Map<string, number[]>(SETUP_SUBJECTS.map((s) => [s.name, []]));
      for (let i = 0; i < setupN; i++) {
        for (const s of SETUP_SUBJECTS) setup.get(s.name)?.push(await setupOnce(hboneServerPort, httpPort, creds, s.groups, s.expect));
      }
      for (const s of SETUP_SUBJECTS) out.add(s.name, 'setup_ms', median(setup.get(s.name) ?? []));
    }

    const v = (s: string, m: string) => median(out.values(s, m));
    const added = (subject: string) => (v(subject, 'p50_ms') - v('direct', 'p50_ms')).toFixed(3);
    process.stderr.write(`tunnel bench: added p50 at 1,000 req/s vs direct (medians): ambit ${added('ambit')} ms, stunnel ${added('stunnel')} ms, plain TCP relay pair (no TLS) ${added('tcp-relay')} ms\n`);
    process.stderr.write(`tunnel bench: setup_ms post-quantum/classical ${(v('ambit', 'setup_ms') / v('ambit-x25519', 'setup_ms')).toFixed(2)}x\n`);
    return out;
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    children.length = 0;
    await rm(dir, { recursive: true, force: true });
  }
}

// Entry point of the child roles.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === HERE && process.argv.includes('--role')) {
  const role = arg('role');
  const roles: Record<string, () => Promise<void>> = { 'hbone-server': roleHboneServer, 'hbone-client': roleHboneClient, 'http-target': roleHttpTarget };
  const fn = roles[role];
  if (fn === undefined) throw new Error(`unknown role ${role}`);
  fn().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
  process.on('SIGTERM', () => process.exit(0));
}
