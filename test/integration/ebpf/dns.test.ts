/**
 * DNS capture on a real kernel: a pod netns in a private cgroup, whose resolv.conf names a fake
 * upstream resolver (198.18.53.53, in its own netns behind the node), resolves a mesh service's
 * name to its VIP through the agent's DNS proxy (bpf/dns.bpf.c + src/agent/dns-proxy.ts), while
 * other names are forwarded to and answered by that upstream. Three resolver libraries: glibc
 * (getent, connected UDP sockets), c-ares (Node's dns.Resolver) and a plain unconnected sendto()
 * from python, which also checks that the reply shows the original resolver as its source; and
 * DNS over TCP (pipelined queries on one python connection, forwarded over TCP).
 * Released, the pod resolves through its upstream directly again.
 */
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox, type Netns, type Cgroup } from '../../helpers/netns.js';
import { topology, ADDON, REPO, bpftool } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const DNS_AGENT = join(here, 'fixtures', 'dns-agent.ts');
const FAKE_RESOLVER = join(here, 'fixtures', 'fake-resolver.ts');
const DNS_OBJECT = join(REPO, 'bpf', '.output', 'dns.bpf.o');
const needs = { root: true, paths: [ADDON, DNS_OBJECT, '/sys/kernel/btf/vmlinux', '/usr/bin/getent', '/usr/bin/unshare'] };

const UPSTREAM = '198.18.53.53';
const UPSTREAM_GW = '198.18.53.1';
const VIP = '198.18.128.10';
const SERVICES = [{ name: 'web', namespace: 'shop', hostname: 'web.shop.svc.cluster.local', vip: VIP, vips: [VIP] }];

/** IPC driver of fixtures/dns-agent.ts. */
class DnsAgent {
  readonly child: ChildProcess;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly ready: Promise<void>;

  constructor(sb: Sandbox, netns: Netns, cgroup: Cgroup) {
    this.child = sb.spawn(process.execPath, ['--import=tsx', DNS_AGENT], { netns, cgroup, cwd: REPO, stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced' });
    let ready!: () => void;
    this.ready = new Promise((r) => { ready = r; });
    this.child.on('message', (msg: { id: number; ok: boolean; value?: unknown; error?: Record<string, unknown> }) => {
      if (msg.id === 0) return ready();
      const w = this.#waiting.get(msg.id);
      this.#waiting.delete(msg.id);
      if (msg.ok) w?.resolve(msg.value);
      else w?.reject(Object.assign(new Error(String(msg.error?.['message'])), msg.error));
    });
    this.child.once('exit', (code, signal) => {
      for (const w of this.#waiting.values()) w.reject(new Error(`dns agent exited (${code ?? signal})`));
      this.#waiting.clear();
    });
  }

  async call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    await this.ready;
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => { this.#waiting.delete(id); reject(new Error(`dns agent ${op} timed out`)); }, 30_000);
      this.#waiting.set(id, { resolve: (v) => { clearTimeout(timer); resolve(v as T); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      this.child.send({ id, op, ...args });
    });
  }
}

/** Runs `cmd` in the pod (netns + cgroup) with `resolvConf` bind-mounted over /etc/resolv.conf in a private mount namespace. */
async function inPod(sb: Sandbox, pod: Netns, cg: Cgroup, resolvConf: string, cmd: string[]): Promise<{ code: number | null; stdout: string }> {
  const script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
  const child = sb.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, resolvConf, ...cmd], { netns: pod, cgroup: cg, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  if (stderr.trim() !== '') stdout += `\n[stderr] ${stderr.trim()}`;
  return { code, stdout };
}

const PY_SENDTO = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 53))
data, src = s.recvfrom(4096)
print(src[0], src[1], data.hex())
`;

const PY_TCP = `
import socket, struct, sys
s = socket.create_connection((sys.argv[1], 53), timeout=5)
peer = s.getpeername()
out = []
for q in sys.argv[2:]:
    b = bytes.fromhex(q)
    s.sendall(struct.pack('!H', len(b)) + b)
for q in sys.argv[2:]:
    n = b''
    while len(n) < 2: n += s.recv(2 - len(n))
    size = struct.unpack('!H', n)[0]
    data = b''
    while len(data) < size: data += s.recv(size - len(data))
    out.append(data.hex())
print(peer[0], peer[1], ' '.join(out))
`;

const C_ARES = `
const { Resolver } = require('node:dns').promises;
const r = new Resolver({ timeout: 3000, tries: 1 });
r.setServers([process.argv[1]]);
Promise.allSettled([r.resolve4(process.argv[2]), r.resolve4(process.argv[3])]).then((rs) => {
  console.log(JSON.stringify(rs.map((x) => x.status === 'fulfilled' ? x.value : String(x.reason.code))));
});
`;

privilegedTest('an enrolled pod resolves mesh services to their VIP and the rest through its own resolver (glibc, c-ares, sendto)', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const dnsNs = await sb.netns('dns');
  await sb.veth({ netns: topo.node, addresses: [`${UPSTREAM_GW}/24`] }, { netns: dnsNs, addresses: [`${UPSTREAM}/24`] });
  await sb.ip(dnsNs, ['route', 'add', 'default', 'via', UPSTREAM_GW]);
  // The node routes between the pod and the resolver, for the uncaptured (released) case.
  await sb.sysctl(topo.node, 'net.ipv4.ip_forward', '1');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-dns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, `nameserver ${UPSTREAM}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:1\n`);

  const resolver = sb.spawn(process.execPath, ['--import=tsx', FAKE_RESOLVER], { netns: dnsNs, cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  const upstreamSeen: string[] = [];
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    resolver.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'ready') resolve();
        else upstreamSeen.push(line);
      }
    });
    resolver.once('exit', (c) => reject(new Error(`fake resolver exited ${c}`)));
  });

  const agent = new DnsAgent(sb, topo.node, topo.agentCg);
  t.true(await agent.call<boolean>('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path }, services: SERVICES }));
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  const attached = bpftool<{ attach_type: string; name: string }[]>(['cgroup', 'show', topo.root.path]).map((a) => a.attach_type).sort();
  for (const type of ['cgroup_inet4_connect', 'cgroup_udp4_sendmsg', 'cgroup_udp4_recvmsg', 'cgroup_inet4_getpeername']) {
    t.true(attached.some((a) => a === type || a.replace(/^cgroup_/, '') === type.replace(/^cgroup_/, '')), `${type} attached (${attached.join(', ')})`);
  }
  await agent.call('enroll', { pod: { id: 'shop/client', netnsPath: topo.pod.path, namespace: 'shop' } });

  // glibc: getent through the pod's resolv.conf (search path applied by the library).
  const a = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'ahostsv4', 'web.shop.svc.cluster.local']);
  t.is(a.code, 0, a.stdout);
  t.regex(a.stdout, new RegExp(`^${VIP.replaceAll('.', '\\.')}\\s`), 'the service FQDN is its VIP');
  const short = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'hosts', 'web']);
  t.is(short.code, 0, short.stdout);
  t.is(short.stdout.trim().split(/\s+/)[0], VIP, 'the short name through the search path (AAAA empty, then A)');
  const fwd = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'ahostsv4', 'upstream.example']);
  t.is(fwd.code, 0, fwd.stdout);
  t.regex(fwd.stdout, /^198\.18\.77\.7\s/, 'an unknown name is answered by the upstream resolver');
  t.true(upstreamSeen.some((l) => l.startsWith(`${UPSTREAM_GW} upstream.example A`)), `the upstream saw the forward from the node (${upstreamSeen.join('; ')})`);
  // (ndots:5 makes glibc try the FQDN with search suffixes first; those are other names, forwarded.)
  t.false(upstreamSeen.some((l) => / web\.shop\.svc\.cluster\.local A/.test(l) || / web\.shop\.svc\.cluster\.local AAAA/.test(l)), `mesh names never reach the upstream (${upstreamSeen.join('; ')})`);
  const unknown = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'ahostsv4', 'nothing.example']);
  t.is(unknown.code, 2, 'NXDOMAIN of the upstream is relayed');

  // c-ares (Node's resolver), pointed at the resolver directly.
  const cares = await inPod(sb, topo.pod, topo.podsCg, resolvConf, [process.execPath, '-e', C_ARES, UPSTREAM, 'web.shop.svc.cluster.local', 'upstream.example']);
  t.deepEqual(JSON.parse(cares.stdout.split('\n')[0] ?? 'null'), [[VIP], ['198.18.77.7']], cares.stdout);

  // An unconnected sendto(): answered by the proxy, yet the reply comes "from" the resolver.
  const query = dnsPacket.encode({ type: 'query', id: 777, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.shop.svc.cluster.local', class: 'IN' }] });
  const py = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['python3', '-c', PY_SENDTO, query.toString('hex'), UPSTREAM]);
  t.is(py.code, 0, py.stdout);
  const [src, port, hex] = py.stdout.trim().split(' ');
  t.is(`${src}:${port}`, `${UPSTREAM}:53`, 'recvmsg4 shows the original resolver as the source');
  const reply = dnsPacket.decode(Buffer.from(hex ?? '', 'hex'));
  t.is(reply.id, 777);
  t.deepEqual(reply.answers?.map((x) => (x as { data: string }).data), [VIP]);

  // DNS over TCP: two queries pipelined on one connection, one answered, one forwarded over TCP.
  const tcpQueries = [
    dnsPacket.encode({ type: 'query', id: 801, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.shop.svc.cluster.local', class: 'IN' }] }),
    dnsPacket.encode({ type: 'query', id: 802, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'upstream.example', class: 'IN' }] }),
  ];
  const tcp = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['python3', '-c', PY_TCP, UPSTREAM, ...tcpQueries.map((q) => q.toString('hex'))]);
  t.is(tcp.code, 0, tcp.stdout);
  const [tcpPeer, tcpPort, ...tcpReplies] = tcp.stdout.trim().split(' ');
  t.is(`${tcpPeer}:${tcpPort}`, `${UPSTREAM}:53`, 'getpeername4 shows the original resolver');
  const decoded = tcpReplies.map((h) => dnsPacket.decode(Buffer.from(h, 'hex')));
  t.deepEqual(decoded.map((d) => [d.id, d.answers?.map((x) => (x as { data: string }).data)]), [[801, [VIP]], [802, ['198.18.77.7']]]);
  t.true(upstreamSeen.includes(`${UPSTREAM_GW} upstream.example A tcp`), `forwarded over TCP from the node (${upstreamSeen.join('; ')})`);

  const stats = await agent.call<{ kernel: Record<string, number>; requests: Record<string, number> }>('stats');
  t.true((stats.kernel['captured'] ?? 0) >= 5, JSON.stringify(stats));
  t.true((stats.kernel['restored'] ?? 0) >= 1, JSON.stringify(stats));
  t.is(stats.kernel['capturedTcp'], 1, JSON.stringify(stats));
  t.true((stats.requests['answered'] ?? 0) >= 3, JSON.stringify(stats));
  t.true((stats.requests['forwarded'] ?? 0) >= 2, JSON.stringify(stats));

  // Released: the pod's queries go to its resolver as if there were no mesh.
  t.true(await agent.call<boolean>('release', { podId: 'shop/client' }));
  const after = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'ahostsv4', 'upstream.example']);
  t.is(after.code, 0, after.stdout);
  t.true(upstreamSeen.some((l) => l.startsWith('198.19.1.2 upstream.example A')), 'the pod itself asked the upstream');
  const gone = await inPod(sb, topo.pod, topo.podsCg, resolvConf, ['getent', 'ahostsv4', 'web.shop.svc.cluster.local']);
  t.is(gone.code, 2, 'mesh names are not answered for a released pod');
}, needs);

privilegedTest('DNS capture links are pinned, adopted by the next agent without a second attachment, and removed by --dns-capture=false', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  /** Ids of the DNS programs attached to the cgroup. */
  const dnsLinks = () => (bpftool<{ id: number; attach_type: string; name: string }[] | null>(['cgroup', 'show', topo.root.path]) ?? []).filter((a) => a.name.startsWith('ambit_dns_')).map((a) => a.id).sort();
  const first = new DnsAgent(sb, topo.node, topo.agentCg);
  t.true(await first.call<boolean>('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path }, services: [] }));
  const before = dnsLinks();
  t.is(before.length, 4);
  await first.call('close', { cleanup: false });
  first.child.kill('SIGKILL');
  t.deepEqual(dnsLinks(), before, 'the pinned links (and their programs) outlive the agent');

  const second = new DnsAgent(sb, topo.node, topo.agentCg);
  t.true(await second.call<boolean>('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path }, services: [] }));
  const after = dnsLinks();
  t.is(after.length, 4, 'adopted: no second attachment');
  t.notDeepEqual(after, before, 'the pinned links now run the new agent\'s programs (bpf_link_update)');
  await second.call('close', { cleanup: false });

  t.false(await second.call<boolean>('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, enabled: false }, services: [] }));
  t.deepEqual(dnsLinks(), [], 'disabled: the previous agent\'s programs are detached');
  second.child.kill('SIGKILL');
}, needs);
