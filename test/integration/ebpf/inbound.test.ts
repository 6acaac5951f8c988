/**
 * Inbound steering with sk_lookup: connections to the pod address land on the agent's 15006 (plain)
 * or 15008 (HBONE) listeners with the dialed address as their local address, while the node's own
 * address (the agent delivering to the app, kubelet probes) and loopback reach the app directly.
 */
import type { ExecutionContext } from 'ava';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, Peer, topology, ADDON, OBJECT, POD_ADDR, NODE_ADDR, REMOTE_ADDR } from './harness.js';

const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };

interface Rec {
  listener: string;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  orig: { address: string; port: number; direction: string } | null;
}

privilegedTest('inbound to the pod address lands on 15006/15008; the node address and loopback reach the app', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const app = new Peer(sb, topo.pod, topo.podsCg);
  await app.serve(80, 'app');
  await app.serve(15008, 'app-hbone', POD_ADDR);

  const agent = new Agent(sb, topo.agentCg, { netns: topo.node });
  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] } });
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  await agent.call('enroll', { pod: { id: 'default/server', netnsPath: topo.pod.path, address: POD_ADDR } });

  const remote = new Peer(sb, topo.node);
  const fromRemote = await remote.connect([[POD_ADDR, 80], [POD_ADDR, 15008], [POD_ADDR, 8080]], REMOTE_ADDR);
  t.deepEqual(fromRemote.map((c) => c.error), [null, null, null]);
  const remoteEcho = await remote.echo(fromRemote.map((c) => c.id), 'r');
  t.deepEqual(Object.values(remoteEcho), ['agent:r', 'agent:r', 'agent:r'], 'a remote client reaches the agent, not the app');

  const fromNode = await remote.connect([[POD_ADDR, 80]], NODE_ADDR);
  t.deepEqual(await remote.echo([fromNode[0]!.id], 'n'), { [String(fromNode[0]!.id)]: 'app:n' }, 'the node address reaches the app directly');

  const local = await app.connect([['127.0.0.1', 80], [POD_ADDR, 80]]);
  t.deepEqual(Object.values(await app.echo(local.map((c) => c.id), 'l')), ['app:l', 'app:l'], 'loopback and the pod itself reach the app');

  const recs = await agent.call<Rec[]>('connections');
  const byPort = new Map(recs.map((r) => [r.remotePort, r]));
  const plain = byPort.get(fromRemote[0]!.local![1]);
  const hbone = byPort.get(fromRemote[1]!.local![1]);
  const other = byPort.get(fromRemote[2]!.local![1]);
  t.like(plain, { listener: 'plain', remoteAddress: REMOTE_ADDR, localAddress: POD_ADDR, localPort: 80 });
  t.like(plain?.orig, { address: POD_ADDR, port: 80, direction: 'inbound' });
  t.like(hbone, { listener: 'hbone', remoteAddress: REMOTE_ADDR, localAddress: POD_ADDR, localPort: 15008 });
  t.like(other, { listener: 'plain', localAddress: POD_ADDR, localPort: 8080 });
  t.is(recs.length, 3, 'nothing else reached the agent');

  const stats = await agent.call<Record<string, number>>('stats');
  t.is(stats['inboundSteered'], 3);
  t.true(stats['inboundBypassed']! >= 2);
}, needs);
