/**
 * Outbound capture on a real kernel: connects from a pod netns inside a private cgroup are
 * rewritten to the agent's 127.0.0.1:15001 and each recovers its exact original destination, both
 * from the connection record and through a plain getsockopt(SO_ORIGINAL_DST).
 */
import type { ExecutionContext } from 'ava';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, Peer, topology, ADDON, OBJECT, POD_ADDR, NODE_ADDR } from './harness.js';

const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };

interface Rec {
  listener: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  orig: { address: string; port: number; direction: string } | null;
  sockopt: { address: string; port: number } | null;
}

privilegedTest('1,000 concurrent connects land on 15001 and each recovers its original destination', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const agent = new Agent(sb, topo.agentCg);
  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] } });
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  await agent.call('enroll', { pod: { id: 'default/client', netnsPath: topo.pod.path, address: POD_ADDR } });

  const peer = new Peer(sb, topo.pod, topo.podsCg);
  const N = 1000;
  const targets: [string, number][] = [];
  for (let i = 0; i < N; i++) targets.push([`198.18.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`, 20000 + i]);
  const conns = await peer.connect(targets);
  t.deepEqual(conns.filter((c) => c.error !== null).map((c) => c.error), [], 'every connect succeeds');
  t.true(conns.every((c) => c.peer?.[0] === '127.0.0.1' && c.peer[1] === 15001), 'every connect lands on the capture listener');

  // The agent accepts asynchronously: wait until it has seen all of them.
  let recs: Rec[] = [];
  for (let i = 0; i < 200; i++) {
    recs = (await agent.call<Rec[]>('connections')).filter((r) => r.listener === 'outbound');
    if (recs.length >= N) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(recs.length, N);
  const byPort = new Map(recs.map((r) => [r.remotePort, r]));
  let exactRecord = 0;
  let exactSockopt = 0;
  for (const c of conns) {
    const r = byPort.get(c.local?.[1] ?? -1);
    if (r?.orig?.address === c.target[0] && r.orig.port === c.target[1] && r.orig.direction === 'outbound') exactRecord++;
    if (r?.sockopt?.address === c.target[0] && r.sockopt.port === c.target[1]) exactSockopt++;
  }
  t.is(exactRecord, N, 'originalDestination() is exact for every connection');
  t.is(exactSockopt, N, 'getsockopt(SO_ORIGINAL_DST) is exact for every connection');

  // A process that knows nothing of ambit (python) asks the kernel the usual way.
  const py = await agent.call<{ remotePort: number; dst: [string, number] | string }[]>('python-origdst', { count: 100 });
  const want = new Map(conns.map((c) => [c.local?.[1], c.target]));
  t.is(py.length, 100);
  t.true(py.every((p) => JSON.stringify(p.dst) === JSON.stringify(want.get(p.remotePort))), 'python getsockopt(SOL_IP, 80) answers every connection');

  const echo = await peer.echo([conns[0]!.id, conns[N - 1]!.id], 'hi');
  t.deepEqual(Object.values(echo), ['agent:hi', 'agent:hi'], 'data flows through the captured connections');

  const stats = await agent.call<Record<string, number>>('stats');
  t.true(stats['captured']! >= N);
  t.true(stats['linked']! >= N);
  t.true(stats['origDstHits']! >= N + 100);
  t.is(stats['recordFailures'], 0);
}, needs);

privilegedTest('excluded ports and CIDRs and loopback destinations are left alone', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const node = new Peer(sb, topo.node);
  await node.serve(9000, 'direct', NODE_ADDR);
  await node.serve(9001, 'direct', NODE_ADDR);
  const agent = new Agent(sb, topo.agentCg);
  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] } });
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  await agent.call('enroll', {
    pod: { id: 'default/excl', netnsPath: topo.pod.path, address: POD_ADDR, excludedPorts: [9000], excludedCidrs: ['198.19.1.0/30'] },
  });
  const peer = new Peer(sb, topo.pod, topo.podsCg);
  await peer.serve(7000, 'local', '127.0.0.1');
  const conns = await peer.connect([[NODE_ADDR, 9000], [NODE_ADDR, 9001], ['127.0.0.1', 7000], ['198.19.1.9', 9001]]);
  t.deepEqual(conns.slice(0, 3).map((c) => c.peer), [[NODE_ADDR, 9000], [NODE_ADDR, 9001], ['127.0.0.1', 7000]]);
  t.deepEqual(conns[3]!.peer, ['127.0.0.1', 15001], 'outside the excluded CIDR: captured');
  const echo = await peer.echo(conns.map((c) => c.id), 'x');
  t.deepEqual(Object.values(echo), ['direct:x', 'direct:x', 'local:x', 'agent:x']);
}, needs);
