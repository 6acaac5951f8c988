/**
 * Capture lifecycle on a real kernel: enrolling a running pod keeps its connections, a
 * never-enrolled netns in the same cgroup is untouched, release stops new captures while captured
 * connections keep working, a killed agent's successor adopts the pins without duplicate
 * attachments, and close({ cleanup: true }) leaves no program, link, pin or map behind.
 */
import type { ExecutionContext } from 'ava';
import { statSync } from 'node:fs';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, Peer, topology, bpftool, cgroupAttachments, pinsLeft, ADDON, OBJECT, POD_ADDR, NODE_ADDR, OTHER_NODE_SIDE } from './harness.js';

const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };

/** Ids of every sk_lookup link attached to a netns, whoever made them (by the netns inode). */
function skLookupLinks(netnsPath: string): number[] {
  const ino = statSync(netnsPath).ino;
  return bpftool<{ id: number; type: string; attach_type?: string; netns_ino?: number }[]>(['link', 'list'])
    .filter((l) => l.type === 'netns' && l.attach_type === 'sk_lookup' && l.netns_ino === ino).map((l) => l.id).sort((a, b) => a - b);
}

interface Rec { listener: string; remotePort: number; orig: { address: string; port: number } | null }
interface Objects { cgroupLinkIds: number[]; podLinkIds: Record<string, number>; mapIds: Record<string, number>; pods: { id: string; enrolled: boolean }[] }

privilegedTest('enroll keeps existing connections, leaves other netns alone; release keeps captured connections', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const server = new Peer(sb, topo.node);
  await server.serve(9000, 'srv');
  const app = new Peer(sb, topo.pod, topo.podsCg);
  const other = new Peer(sb, topo.other, topo.podsCg);
  const before = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(before[0]!.peer, [NODE_ADDR, 9000], 'not captured before enrollment');

  const agent = new Agent(sb, topo.agentCg);
  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] } });
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  await agent.call('enroll', { pod: { id: 'default/app', netnsPath: topo.pod.path, address: POD_ADDR } });

  t.deepEqual(await app.echo([before[0]!.id], 'a'), { [String(before[0]!.id)]: 'srv:a' }, 'a connection made before enrollment still works');
  const captured = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(captured[0]!.peer, ['127.0.0.1', 15001], 'new connects are captured');
  const untouched = await other.connect([[OTHER_NODE_SIDE, 9000]]);
  t.deepEqual(untouched[0]!.peer, [OTHER_NODE_SIDE, 9000], 'a never-enrolled netns in the same cgroup is not captured');
  t.deepEqual(Object.values(await other.echo([untouched[0]!.id], 'o')), ['srv:o']);

  t.true(await agent.call<boolean>('release', { podId: 'default/app' }));
  t.deepEqual(await app.echo([captured[0]!.id], 'c'), { [String(captured[0]!.id)]: 'agent:c' }, 'a captured connection keeps working after release');
  const recs = await agent.call<Rec[]>('connections');
  t.deepEqual(recs.find((r) => r.remotePort === captured[0]!.local![1])?.orig, { address: NODE_ADDR, port: 9000, family: 4, direction: 'outbound' });
  const after = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(after[0]!.peer, [NODE_ADDR, 9000], 'released: new connects go direct');
  t.deepEqual(Object.values(await app.echo([after[0]!.id], 'd')), ['srv:d']);
  t.false(await agent.call<boolean>('release', { podId: 'default/app' }), 'release of an unknown pod is a no-op');
}, needs);

privilegedTest('a restarted agent adopts the pins without duplicate attachments; cleanup leaves nothing', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const server = new Peer(sb, topo.node);
  await server.serve(9000, 'srv');
  const app = new Peer(sb, topo.pod, topo.podsCg);
  const opts = { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] };
  const pod = { id: 'default/app', netnsPath: topo.pod.path, address: POD_ADDR };

  const first = new Agent(sb, topo.agentCg);
  await first.call('open', { opts });
  await first.call('enroll', { pod });
  const before = await first.call<Objects>('objects');
  t.is(cgroupAttachments(topo.root.path).length, 4);
  t.deepEqual(skLookupLinks(topo.pod.path), Object.values(before.podLinkIds), 'one sk_lookup link in the pod netns, the one the agent reports');
  await first.kill();

  // While no agent runs, the programs stay attached (pinned links).
  t.is(cgroupAttachments(topo.root.path).length, 4);

  const second = new Agent(sb, topo.agentCg);
  let closed = false;
  t.teardown(async () => { if (!closed) await second.call('close', { cleanup: true }).catch(() => undefined); });
  const opened = await second.call<{ pods: { id: string; enrolled: boolean }[] }>('open', { opts });
  t.deepEqual(opened.pods.map((p) => [p.id, p.enrolled]), [['default/app', false]], 'the pinned pod is adopted');
  const adopted = await second.call<Objects>('objects');
  t.deepEqual(adopted.cgroupLinkIds, before.cgroupLinkIds, 'the same cgroup links are kept (updated in place)');
  t.deepEqual(adopted.podLinkIds, before.podLinkIds, 'the same sk_lookup link is kept');
  t.deepEqual(adopted.mapIds, before.mapIds, 'the pinned maps are reused');
  const attached = cgroupAttachments(topo.root.path);
  t.is(attached.length, 4, 'no duplicate attachments');
  t.deepEqual(attached.map((a) => a.attach_type).sort(), ['cgroup_getsockopt', 'cgroup_inet4_connect', 'cgroup_inet6_connect', 'cgroup_sock_ops'].sort());
  t.deepEqual(skLookupLinks(topo.pod.path), Object.values(before.podLinkIds), 'no second sk_lookup link in the pod netns after adoption');

  const r = await second.call<{ enrolled: string[]; released: string[] }>('reconcile', { pods: [pod] });
  t.deepEqual(r.enrolled, ['default/app']);
  const conns = await app.connect([['198.18.7.7', 7777]]);
  t.deepEqual(conns[0]!.peer, ['127.0.0.1', 15001], 'capture works again after adoption');
  let recs: Rec[] = [];
  for (let i = 0; i < 50 && recs.length === 0; i++) {
    recs = (await second.call<Rec[]>('connections')).filter((x) => x.remotePort === conns[0]!.local![1]);
    if (recs.length === 0) await new Promise((res) => setTimeout(res, 20));
  }
  t.like(recs[0]?.orig, { address: '198.18.7.7', port: 7777 });
  t.deepEqual((await second.call<Objects>('objects')).podLinkIds, before.podLinkIds, 're-enrolling an adopted pod keeps its link');
  t.deepEqual(skLookupLinks(topo.pod.path), Object.values(before.podLinkIds), 'and attaches no second one');

  const ids = await second.call<Objects>('objects');
  // The programs behind this capture's own links: other tests may run other captures meanwhile,
  // so "no program left" is checked by id, never by name.
  const ownLinkIds = [...ids.cgroupLinkIds, ...Object.values(ids.podLinkIds)];
  const progIds = bpftool<{ id: number; prog_id: number }[]>(['link', 'list']).filter((l) => ownLinkIds.includes(l.id)).map((l) => l.prog_id);
  t.true(progIds.length > 0, 'the links name their programs');
  await second.call('close', { cleanup: true });
  closed = true;
  t.deepEqual(cgroupAttachments(topo.root.path), [], 'no program left on the cgroup');
  t.deepEqual(pinsLeft(topo.pinDir), [], 'no pin left');
  const links = bpftool<{ id: number }[]>(['link', 'list']).map((l) => l.id);
  t.false([...ids.cgroupLinkIds, ...Object.values(ids.podLinkIds)].some((id) => links.includes(id)), 'no link left');
  // Maps are freed asynchronously after their last reference goes.
  let maps: number[] = [];
  for (let i = 0; i < 50; i++) {
    maps = bpftool<{ id: number }[]>(['map', 'list']).map((m) => m.id).filter((id) => Object.values(ids.mapIds).includes(id));
    if (maps.length === 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  t.deepEqual(maps, [], 'no map left');
  let progs: number[] = [];
  for (let i = 0; i < 50; i++) {
    progs = bpftool<{ id: number }[]>(['prog', 'list']).map((p) => p.id).filter((id) => progIds.includes(id));
    if (progs.length === 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  t.deepEqual(progs, [], 'no program left');
  const plain = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(plain[0]!.peer, [NODE_ADDR, 9000], 'connects go direct after cleanup');
}, needs);
