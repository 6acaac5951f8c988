/**
 * Fail closed and the narrow bypass (bpf/capture.bpf.c, src/ebpf/local-bypass.ts): an enrolled
 * pod whose agent is gone refuses inbound (sk_lookup SK_DROP, answered with a RST) and outbound
 * (connect returns ECONNREFUSED) instead of letting traffic go around the agent, and counts both per
 * pod; only SYNs sent by a process of the node itself reach the app directly, while traffic that
 * the node forwards and masquerades to its own address is steered to the agent.
 *
 *   ext netns 198.19.3.2/24 ──veth── node 198.19.3.1/24, forwarded and masqueraded (nft) to the pod
 */
import { existsSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, Peer, topology, ADDON, OBJECT, POD_ADDR, NODE_ADDR, REMOTE_ADDR, type Topology } from './harness.js';

const NFT = ['/usr/sbin/nft', '/sbin/nft'].find((p) => existsSync(p)) ?? '/usr/sbin/nft';
const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };
const needsNat = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux', NFT] };
const ECONNREFUSED = 111;
const POD = { id: 'default/server', address: POD_ADDR };

interface Rec { listener: string; remoteAddress: string; remotePort: number }

async function startAgent(sb: Sandbox, topo: Topology): Promise<Agent> {
  const agent = new Agent(sb, topo.agentCg, { netns: topo.node });
  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] } });
  return agent;
}

/** A client netns behind the node: its connections to the pod are forwarded and masqueraded to NODE_ADDR. */
async function externalClient(sb: Sandbox, topo: Topology): Promise<Peer> {
  const ext = await sb.netns('ext');
  await sb.veth({ netns: topo.node, addresses: ['198.19.3.1/24'] }, { netns: ext, addresses: ['198.19.3.2/24'] });
  await sb.ip(ext, ['route', 'add', 'default', 'via', '198.19.3.1']);
  await sb.sysctl(topo.node, 'net.ipv4.ip_forward', '1');
  const nft = async (args: string[]) => sb.exec(NFT, args, { netns: topo.node });
  await nft(['add', 'table', 'ip', 'ambit_test']);
  await nft(['add', 'chain', 'ip', 'ambit_test', 'post', '{ type nat hook postrouting priority 100; }']);
  await nft(['add', 'rule', 'ip', 'ambit_test', 'post', 'ip', 'saddr', '198.19.3.0/24', 'ip', 'daddr', POD_ADDR, 'masquerade']);
  return new Peer(sb, ext);
}

privilegedTest('with its agent SIGKILLed an enrolled pod refuses inbound with a RST and outbound with ECONNREFUSED, counted per pod; node probes still reach the app', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const app = new Peer(sb, topo.pod, topo.podsCg);
  await app.serve(80, 'app');
  const node = new Peer(sb, topo.node);
  await node.serve(9000, 'direct', NODE_ADDR);

  const agent = await startAgent(sb, topo);
  await agent.call('enroll', { pod: { ...POD, netnsPath: topo.pod.path } });
  const alive = await node.connect([[POD_ADDR, 80]], REMOTE_ADDR);
  t.deepEqual(Object.values(await node.echo([alive[0]!.id], 'a')), ['agent:a'], 'agent alive: a non-local client lands on the agent');

  await agent.kill();
  const t0 = Date.now();
  const inbound = await node.connect([[POD_ADDR, 80], [POD_ADDR, 15008]], REMOTE_ADDR);
  const outbound = await app.connect([[NODE_ADDR, 9000]]);
  const elapsed = Date.now() - t0;
  t.deepEqual(inbound.map((c) => c.error), [ECONNREFUSED, ECONNREFUSED], 'inbound around the dead agent is refused (RST), not delivered to the app');
  t.deepEqual(outbound.map((c) => c.error), [ECONNREFUSED], 'outbound of the enrolled pod is refused, never sent uncaptured');
  t.true(elapsed < 2000, `refusals are immediate, not timeouts (${elapsed} ms)`);

  const probe = await node.connect([[POD_ADDR, 80]], NODE_ADDR);
  t.deepEqual(Object.values(await node.echo([probe[0]!.id], 'p')), ['app:p'], 'a probe opened on the node still reaches the app with no agent');
  const local = await app.connect([['127.0.0.1', 80], [POD_ADDR, 80]]);
  t.deepEqual(local.map((c) => c.error), [null, null], 'the pod still reaches itself');

  const next = await startAgent(sb, topo);
  t.teardown(() => next.call('close', { cleanup: true }).catch(() => undefined));
  const counts = await next.call<{ pod: string; direction: string; count: number }[]>('fail-closed');
  const by = Object.fromEntries(counts.map((c) => [`${c.pod} ${c.direction}`, c.count]));
  t.deepEqual(by, { 'default/server inbound': 2, 'default/server outbound': 1 }, 'the next agent reads what was refused while none ran');

  await next.call('enroll', { pod: { ...POD, netnsPath: topo.pod.path } });
  const back = await node.connect([[POD_ADDR, 80]], REMOTE_ADDR);
  t.deepEqual(Object.values(await node.echo([back[0]!.id], 'b')), ['agent:b'], 're-enrolled: steered to the agent again');
  await next.call('release', { podId: POD.id });
  t.deepEqual(await next.call('fail-closed'), [], 'release forgets the pod\'s counts');
  const released = await node.connect([[POD_ADDR, 80]], REMOTE_ADDR);
  t.deepEqual(Object.values(await node.echo([released[0]!.id], 'r')), ['app:r'], 'a released pod is not ours: the app answers');
}, needs);

privilegedTest('traffic masqueraded through the node to its own address is steered to the agent (refused without one); only node-opened connections bypass', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const app = new Peer(sb, topo.pod, topo.podsCg);
  await app.serve(80, 'app');
  const ext = await externalClient(sb, topo);
  const node = new Peer(sb, topo.node);

  const agent = await startAgent(sb, topo);
  await agent.call('enroll', { pod: { ...POD, netnsPath: topo.pod.path } });
  const bypass = await agent.call<{ rule: string; devices: { device: string; pods: string[] }[]; pods: Record<string, { device: string | null }> }>('bypass');
  t.is(bypass.devices.length, 1, 'one tc recorder, on the node device that routes to the pod');
  t.deepEqual(bypass.devices[0]?.pods, [POD.id]);
  t.is(bypass.pods[POD.id]?.device, bypass.devices[0]?.device);

  const forwarded = await ext.connect([[POD_ADDR, 80]]);
  t.deepEqual(forwarded.map((c) => c.error), [null]);
  t.deepEqual(Object.values(await ext.echo([forwarded[0]!.id], 'x')), ['agent:x'], 'masqueraded traffic lands on the agent, not the app');
  const probe = await node.connect([[POD_ADDR, 80]], NODE_ADDR);
  t.deepEqual(Object.values(await node.echo([probe[0]!.id], 'p')), ['app:p'], 'the node\'s own connection reaches the app');
  const recs = await agent.call<Rec[]>('connections');
  t.deepEqual(recs.map((r) => [r.listener, r.remoteAddress]), [['plain', NODE_ADDR]], 'the agent saw the masqueraded connection with the node address as its source');
  const stats = await agent.call<Record<string, number>>('stats');
  t.true(stats['localSyns']! >= 1, 'the node\'s SYN was recorded by the tc program');

  await agent.kill();
  const refused = await ext.connect([[POD_ADDR, 80]]);
  t.deepEqual(refused.map((c) => c.error), [ECONNREFUSED], 'without the agent, masqueraded traffic is refused');
  const probe2 = await node.connect([[POD_ADDR, 80]], NODE_ADDR);
  t.deepEqual(Object.values(await node.echo([probe2[0]!.id], 'q')), ['app:q'], 'node probes still reach the app without the agent');

  const next = await startAgent(sb, topo);
  await next.call('close', { cleanup: true });
  t.deepEqual((await sb.exec('bpftool', ['-j', 'net', 'show'], { netns: topo.node })).includes('ambit_tc_egress'), false, 'cleanup detaches the tc recorder');
}, needsNat);

privilegedTest('a connect the agent announces inside the pod netns reaches the app from any source address; unannounced it is steered', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const app = new Peer(sb, topo.pod, topo.podsCg);
  await app.serve(80, 'app');
  const agent = await startAgent(sb, topo);
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  await agent.call('enroll', { pod: { ...POD, netnsPath: topo.pod.path } });
  // A foreign (client-like) source that is local to the pod netns, so the handshake completes.
  await sb.ip(topo.pod, ['addr', 'add', '198.19.9.10/32', 'dev', 'lo']);
  const dial = (port: number) => sb.exec('python3', ['-c', [
    'import socket',
    's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    `s.bind(("198.19.9.10", ${port})); s.settimeout(3); s.connect(("${POD_ADDR}", 80))`,
    's.sendall(b"x\\n"); print(s.recv(100).decode().strip())',
  ].join('\n')], { netns: topo.pod });
  t.is((await dial(41000)).trim(), 'agent:x', 'unannounced: a foreign source to the pod address is steered to the agent');
  await agent.call('announce', { src: { address: '198.19.9.10', port: 41001 }, dst: { address: POD_ADDR, port: 80 } });
  t.is((await dial(41001)).trim(), 'app:x', 'announced: the agent\'s own connect reaches the app');
  t.is((await dial(41001)).trim(), 'agent:x', 'an announcement serves one connection');
}, needs);
