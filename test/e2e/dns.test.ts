/**
 * The agent's DNS proxy end to end in the demo mesh (real control plane, agents, eBPF): an
 * enrolled pod whose resolv.conf names a fake upstream resolver (run in node-2's netns, at the
 * node's 198.18.0.x address) resolves `echo.demo.svc.cluster.local` (and `echo` through its search
 * path) to the Service's VIP and reaches it by name through the mesh, while other names are
 * forwarded to and answered by that upstream; a pod outside the mesh asks the upstream itself and
 * gets no mesh answers. DNS over TCP is answered too, though capture's own connect4 sees the connect
 * first. The agent counts both in ambit_dns_requests_total.
 */
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { ECHO_VIP, REPO_ROOT } from '../../src/demo/mesh.js';
import { spawnIn } from '../../src/demo/cluster.js';
import { NEEDS, startMesh, servedBy } from './helpers.js';

const needs = { ...NEEDS, paths: [...NEEDS.paths, join(REPO_ROOT, 'bpf/.output/dns.bpf.o'), '/usr/bin/getent', '/usr/bin/unshare', '/usr/bin/curl'] };
const FAKE_RESOLVER = join(REPO_ROOT, 'test/integration/ebpf/fixtures/fake-resolver.ts');

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
let resolver: ChildProcess | undefined;
let dir: string | undefined;
let resolvConf = '';
const upstreamSeen: string[] = [];

if (privilegeGap(needs) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true });
    mesh = m.mesh;
    cleanup = m.cleanup;
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2'], true);
    const node2 = mesh.cluster.node('node-2');
    resolver = spawnIn({ netns: node2.netns }, process.execPath, ['--import=tsx', FAKE_RESOLVER], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      resolver!.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'ready') resolve();
          else upstreamSeen.push(line);
        }
      });
      resolver!.once('exit', (c) => reject(new Error(`fake resolver exited ${c}`)));
    });
    dir = mkdtempSync(join(tmpdir(), 'ambit-e2e-dns-'));
    resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, `nameserver ${node2.address}\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:1\n`);
  });
  test.after.always(async () => {
    resolver?.kill('SIGKILL');
    await cleanup?.();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
}

/** Runs `cmd` in a pod with the test's resolv.conf bind-mounted in a private mount namespace. */
function inPod(pod: string, cmd: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return mesh.exec(pod, 'unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolvConf, ...cmd], 20_000);
}

/** Sends one framed DNS message (hex) over TCP and prints the framed reply (hex). */
const PY_TCP_QUERY = `
import socket, struct, sys
q = bytes.fromhex(sys.argv[2])
s = socket.create_connection((sys.argv[1], 53), timeout=5)
s.sendall(struct.pack('!H', len(q)) + q)
n = b''
while len(n) < 2: n += s.recv(2 - len(n))
size = struct.unpack('!H', n)[0]
r = b''
while len(r) < size: r += s.recv(size - len(r))
print(r.hex())
`;

function dnsCount(metrics: string, result: string): number {
  const m = new RegExp(`^ambit_dns_requests_total\\{result="${result}"\\} (\\d+)`, 'm').exec(metrics);
  return m === null ? 0 : Number(m[1]);
}

privilegedTest('an enrolled pod resolves a mesh service to its VIP and reaches it by name; other names go to its own resolver', async (t: ExecutionContext) => {
  const fqdn = await inPod('client', ['getent', 'ahostsv4', 'echo.demo.svc.cluster.local']);
  t.is(fqdn.code, 0, fqdn.stderr);
  t.is(fqdn.stdout.trim().split(/\s+/)[0], ECHO_VIP);
  const short = await inPod('client', ['getent', 'hosts', 'echo']);
  t.is(short.code, 0, short.stderr);
  t.is(short.stdout.trim().split(/\s+/)[0], ECHO_VIP, 'the search path reaches the service name');
  const body = await inPod('client', ['curl', '-s', '-S', '-m', '4', 'http://echo.demo.svc.cluster.local/']);
  t.is(body.code, 0, body.stderr);
  t.regex(servedBy(body.stdout), /^echo-[12]$/, 'the service answers by name, through the mesh');
  const other = await inPod('client', ['getent', 'ahostsv4', 'upstream.example']);
  t.is(other.code, 0, other.stderr);
  t.is(other.stdout.trim().split(/\s+/)[0], '198.18.77.7', 'forwarded to and answered by the pod\'s resolver');
  t.false(upstreamSeen.some((l) => / echo\.demo\.svc\.cluster\.local A/.test(l)), `mesh names never reach the upstream (${upstreamSeen.join('; ')})`);
  // DNS over TCP: capture's connect4 runs first here (the agent opens capture before DNS) and the
  // DNS program takes the connect over from capture's parked destination.
  const q = dnsPacket.encode({ type: 'query', id: 4711, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'echo.demo.svc.cluster.local', class: 'IN' }] });
  const tcp = await inPod('client', ['python3', '-c', PY_TCP_QUERY, mesh.cluster.node('node-2').address, q.toString('hex')]);
  t.is(tcp.code, 0, tcp.stderr);
  const reply = dnsPacket.decode(Buffer.from(tcp.stdout.trim(), 'hex'));
  t.is(reply.id, 4711);
  t.deepEqual(reply.answers?.map((a) => (a as { data: string }).data), [ECHO_VIP], 'answered over TCP from the mesh');
  const metrics = await mesh.agentMetrics('node-1');
  t.true(dnsCount(metrics, 'answered') >= 3, metrics.split('\n').filter((l) => l.startsWith('ambit_dns')).join('\n'));
  t.true(dnsCount(metrics, 'forwarded') >= 1);
  t.regex(metrics, /^ambit_dns_capture_events_total\{event="captured_tcp"\} [1-9]/m, 'the kernel counters are exported');
});

privilegedTest('a pod outside the mesh asks its resolver itself and gets no mesh answers', async (t: ExecutionContext) => {
  const before = upstreamSeen.length;
  const r = await inPod('outside', ['getent', 'ahostsv4', 'echo.demo.svc.cluster.local']);
  t.is(r.code, 2, 'the fake upstream knows no mesh names');
  const outsideIp = mesh.cluster.pod('outside').ip;
  t.true(upstreamSeen.slice(before).some((l) => l.startsWith(`${outsideIp} echo.demo.svc.cluster.local A`)), upstreamSeen.slice(before).join('; '));
});
