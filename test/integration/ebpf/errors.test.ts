/**
 * Bad input and hostile environments produce named errors and never crash the agent process: a
 * missing netns, a cgroup v1 path, a missing capability, a program the verifier rejects, a bad pod.
 * An agent that crashes mid-capture fails its caller's call and leaves its pod fail-closed, with
 * the pins for its successor.
 */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, Peer, topology, cgroupAttachments, pinsLeft, ADDON, OBJECT, POD_ADDR, NODE_ADDR, SETPRIV } from './harness.js';

const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };
const here = dirname(fileURLToPath(import.meta.url));
const ECONNREFUSED = 111;

privilegedTest('bad input yields named errors and the agent keeps running', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const agent = new Agent(sb, topo.agentCg);

  const v1 = await sb.cgroupV1('v1');
  const e = await agent.callError('open', { opts: { pinDir: topo.pinDir, cgroupPath: v1.path } });
  t.is(e.code, 'AMBIT_ERR_EBPF_CGROUP_NOT_V2');
  t.regex(e.message, /not on cgroup v2/);
  t.is((await agent.callError('open', { opts: { pinDir: topo.pinDir, cgroupPath: join(topo.root.path, 'nope') } })).code, 'AMBIT_ERR_EBPF_CGROUP_MISSING');
  t.is((await agent.callError('open', { opts: { pinDir: '/tmp/not-bpffs', cgroupPath: topo.root.path } })).code, 'AMBIT_ERR_EBPF_PIN_DIR');

  await agent.call('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path } });
  t.teardown(() => agent.call('close', { cleanup: true }).catch(() => undefined));
  const missing = await agent.callError('enroll', { pod: { id: 'x/gone', netnsPath: '/run/netns/ambit-does-not-exist', address: POD_ADDR } });
  t.is(missing.code, 'AMBIT_ERR_EBPF_NETNS_MISSING');
  t.regex(missing.message, /does not exist/);
  const bad = await agent.callError('enroll', { pod: { id: 'x/bad', netnsPath: topo.pod.path, address: 'not-an-ip' } });
  t.is(bad.code, 'AMBIT_ERR_EBPF_BAD_POD');
  t.is(bad.field, 'address');
  t.is((await agent.callError('enroll', { pod: { id: 'x/bad', netnsPath: topo.pod.path, address: POD_ADDR, excludedCidrs: ['1.2.3.4/40'] } })).code, 'AMBIT_ERR_EBPF_BAD_POD');

  await agent.call('enroll', { pod: { id: 'x/ok', netnsPath: topo.pod.path, address: POD_ADDR } });
  t.is((await agent.callError('enroll', { pod: { id: 'x/ok', netnsPath: topo.pod.path, address: POD_ADDR } })).code, 'AMBIT_ERR_EBPF_ALREADY_ENROLLED');
  t.is((await agent.callError('enroll', { pod: { id: 'x/twin', netnsPath: topo.pod.path, address: POD_ADDR } })).code, 'AMBIT_ERR_EBPF_LISTENER_IN_USE');
  t.like(await agent.call('stats'), { pods: 1 }, 'the agent is alive and consistent after every failure');
}, needs);

privilegedTest('a rejected program reaches JavaScript with errno and the verifier log', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const dir = mkdtempSync(join(tmpdir(), 'ambit-verifier-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const obj = join(dir, 'rejected.bpf.o');
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', '-I', join(dirname(OBJECT)), '-c', join(here, 'fixtures', 'rejected.bpf.c'), '-o', obj]);
  const agent = new Agent(sb, undefined);
  const e = await agent.callError('load-object', { path: obj });
  t.is(e.code, 'AMBIT_ERR_EBPF_VERIFIER');
  t.is(e.errnoName, 'EACCES');
  t.is(e.errno, 13);
  t.regex(e.verifierLog ?? '', /invalid bpf_context access|invalid access/);
  t.is((await agent.callError('load-object', { path: join(dir, 'missing.o') })).code, 'AMBIT_ERR_EBPF_OBJECT_UNAVAILABLE');
  await agent.call('exit');
}, needs);

// What the kernel checks for BPF is capabilities (CAP_BPF, CAP_SYS_ADMIN), not the uid: root with
// every capability dropped is refused as any unprivileged user is, and, unlike another uid, it can
// still read this checkout wherever it was cloned.
privilegedTest('without privileges open() fails with a permission error naming the capabilities', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const agent = new Agent(sb, undefined, { noCapabilities: true });
  t.deepEqual(await agent.call('identity'), { uid: 0, capEff: '0000000000000000' }, 'the agent is root with no capability at all');
  const e = await agent.callError('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path } });
  t.is(e.code, 'AMBIT_ERR_EBPF_PERMISSION');
  t.is(e.errnoName, 'EPERM');
  t.regex(e.message, /CAP_BPF/);
  t.deepEqual(pinsLeft(topo.pinDir), [], 'nothing was pinned');
  t.deepEqual(cgroupAttachments(topo.root.path), [], 'nothing was attached');
  t.is(await agent.call('exit'), true, 'the unprivileged agent is still running');
}, { ...needs, paths: [...needs.paths, SETPRIV] });

privilegedTest('an agent that crashes while capturing leaves its pod fail-closed and its pins for the next agent', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const server = new Peer(sb, topo.node);
  await server.serve(9000, 'srv');
  const app = new Peer(sb, topo.pod, topo.podsCg);
  const opts = { pinDir: topo.pinDir, cgroupPath: topo.root.path, nodeAddresses: [NODE_ADDR] };
  const pod = { id: 'default/app', netnsPath: topo.pod.path, address: POD_ADDR };

  const agent = new Agent(sb, topo.agentCg);
  await agent.call('open', { opts });
  await agent.call('enroll', { pod });
  const held = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(Object.values(await app.echo([held[0]!.id], 'a')), ['agent:a'], 'captured before the crash');
  const pins = pinsLeft(topo.pinDir);
  const attached = cgroupAttachments(topo.root.path).map((a) => a.id).sort();

  await t.throwsAsync(agent.call('crash'), { message: /agent exited/ }, 'the call in flight fails, the caller is told');
  t.is((await agent.exited).signal, 'SIGSEGV');
  const after = Object.values(await app.echo([held[0]!.id], 'b'))[0];
  t.true(after === null || after?.startsWith('error:ConnectionReset'), `the captured connection died with its agent (${after})`);
  const refused = await app.connect([[NODE_ADDR, 9000]]);
  t.deepEqual(refused.map((c) => c.error), [ECONNREFUSED], 'a new connect of the enrolled pod is refused, never sent around the agent');
  t.deepEqual(pinsLeft(topo.pinDir), pins, 'the pins outlive the crash');
  t.deepEqual(cgroupAttachments(topo.root.path).map((a) => a.id).sort(), attached, 'the programs stay attached');

  const next = new Agent(sb, topo.agentCg);
  t.teardown(() => next.call('close', { cleanup: true }).catch(() => undefined));
  const opened = await next.call<{ pods: { id: string }[] }>('open', { opts });
  t.deepEqual(opened.pods.map((p) => p.id), ['default/app'], 'the next agent adopts the crashed agent\'s pod');
  const counts = await next.call<{ pod: string; direction: string; count: number }[]>('fail-closed');
  t.deepEqual(counts.map((c) => [c.pod, c.direction, c.count]), [['default/app', 'outbound', 1]], 'and reads the refusal made while none ran');
}, needs);
