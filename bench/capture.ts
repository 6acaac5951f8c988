/**
 * `npm run bench -- capture [--quick]`: the cost eBPF capture adds to connect(), and the cost of
 * recovering an original destination. Needs root.
 *
 * One pod netns, one listener (the pod's capture listener 127.0.0.1:15001, served here). A python
 * client times each connect() syscall:
 *   ambit   client in a cgroup under the capture root, connecting to 198.18.50.x:80 -> rewritten
 *           by cgroup/connect4 to 15001 and recorded by sockops;
 *   direct  client in a cgroup with no programs attached, connecting straight to 127.0.0.1:15001.
 * Same netns, same listener, same handshake: the difference is the capture. Each round runs 5,000
 * connects per subject (1,000 with --quick), ambit then direct, and gives per subject:
 *   connect_us       the round's median connect() time (on a 2-core machine the mean is
 *                    dominated by scheduling outliers: the accepting side competes with the
 *                    client)
 *   connect_mean_us  the round's mean, beside it
 *   connect_p99_us   the round's 99th percentile
 *   lookup_us        ambit only: the round's median Capture.originalDestination() on an accepted
 *                    socket (one SO_NETNS_COOKIE + one map lookup)
 */
import { createServer, type Socket } from 'node:net';
import { interleaved, median, Samples, type BenchOptions } from './lib/report.js';
import { Sandbox, type Cgroup, type Netns } from '../test/helpers/netns.js';
import { Capture } from '../src/ebpf/capture.js';
import { pino } from 'pino';

const silent = pino({ level: 'silent' });

const CLIENT = `
import socket, sys, time, json
n = int(sys.argv[1]); mode = sys.argv[2]
times = []
for i in range(n):
    if i % 500 == 0:
        time.sleep(0.05)  # let the accepting side drain, so no SYN meets a full backlog
    dst = ("198.18.%d.%d" % (50 + (i // 250) % 50, i % 250 + 1), 80) if mode == "ambit" else ("127.0.0.1", 15001)
    s = socket.socket()
    t0 = time.perf_counter_ns()
    s.connect(dst)
    times.append(time.perf_counter_ns() - t0)
    s.close()
times.sort()
print(json.dumps({"mean": sum(times) / n / 1000, "p50": times[n // 2] / 1000, "p99": times[int(n * 0.99)] / 1000}))
`;

async function runClient(sb: Sandbox, netns: Netns, cgroup: Cgroup, n: number, mode: 'ambit' | 'direct') {
  const out = await sb.exec('python3', ['-c', CLIENT, String(n), mode], { netns, cgroup, timeoutMs: 300_000 });
  return JSON.parse(out) as { mean: number; p50: number; p99: number };
}

export async function run(opts: BenchOptions): Promise<Samples> {
  if (process.getuid?.() !== 0) throw new Error('the capture benchmark needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)');
  const n = opts.quick ? 1000 : 5000;
  const sb = new Sandbox();
  let capture: Capture | undefined;
  try {
    const pod = await sb.netns('benchpod');
    const root = await sb.cgroup('benchcap');
    const captured = await sb.cgroup('pods', root);
    const plain = await sb.cgroup('benchplain');
    capture = await Capture.open({ pinDir: `/sys/fs/bpf/${sb.id}`, cgroupPath: root.path, logger: silent });
    const listeners = await capture.enroll({ id: 'bench/client', netnsPath: pod.path, address: '198.19.9.2' });
    const lookups: number[] = [];
    let phase: 'ambit' | 'direct' = 'ambit';
    let misses = 0;
    const cap = capture;
    const server = createServer((socket: Socket) => {
      const t0 = process.hrtime.bigint();
      const dst = cap.originalDestination(socket);
      const dt = Number(process.hrtime.bigint() - t0) / 1000;
      if (phase === 'ambit') {
        if (dst?.direction === 'outbound') lookups.push(dt);
        else misses++;
      }
      socket.destroy();
    });
    await new Promise<void>((r) => server.listen({ fd: listeners.outbound }, r));
    // Warm-up both paths, then measure in interleaved rounds (ambit, direct, ambit, ...).
    await runClient(sb, pod, captured, 200, 'ambit');
    await new Promise((r) => setTimeout(r, 100));
    phase = 'direct';
    await runClient(sb, pod, plain, 200, 'direct');
    await new Promise((r) => setTimeout(r, 100));
    misses = 0;
    const out = new Samples();
    await interleaved('capture', opts.rounds, ['ambit', 'direct'] as const, async (subject) => {
      phase = subject;
      lookups.length = 0;
      const r = await runClient(sb, pod, subject === 'ambit' ? captured : plain, n, subject);
      out.add(subject, 'connect_us', r.p50);
      out.add(subject, 'connect_mean_us', r.mean);
      out.add(subject, 'connect_p99_us', r.p99);
      await new Promise((res) => setTimeout(res, 100)); // the last accepts, and the backlog drains
      if (subject === 'ambit') out.add(subject, 'lookup_us', median(lookups));
    });
    server.close();
    for (const fd of [listeners.inboundPlain, listeners.inboundHbone, listeners.outbound6]) {
      if (fd !== undefined) await new Promise<void>((r) => { const s = createServer(); s.listen({ fd }, () => s.close(() => r())); });
    }
    const stats = capture.stats();
    process.stderr.write(`capture: ${stats.captured} captured, ${stats.linked} linked, ${misses} captured accepts without a record\n`);
    return out;
  } finally {
    capture?.close({ cleanup: true });
    await sb.cleanup();
  }
}
