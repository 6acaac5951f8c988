/**
 * Bad input and hostile environments produce named errors and never crash the agent process: a
 * missing netns, a cgroup v1 path, a missing capability, a program the verifier rejects, a bad pod.
 * A crash of the process holding the addon fails the caller's call, not the test run.
 */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox } from '../../helpers/netns.js';
import { Agent, topology, ADDON, OBJECT, POD_ADDR } from './harness.js';

const needs = { root: true, paths: [ADDON, OBJECT, '/sys/kernel/btf/vmlinux'] };
const here = dirname(fileURLToPath(import.meta.url));

function cgroupV1Mount(): string | undefined {
  return readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'cgroup')?.[1];
}

privilegedTest('bad input yields named errors and the agent keeps running', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const agent = new Agent(sb, topo.agentCg);

  const v1 = cgroupV1Mount();
  if (v1 !== undefined) {
    const e = await agent.callError('open', { opts: { pinDir: topo.pinDir, cgroupPath: v1 } });
    t.is(e.code, 'AMBIT_ERR_EBPF_CGROUP_NOT_V2');
    t.regex(e.message, /not on cgroup v2/);
  }
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

privilegedTest('without privileges open() fails with a permission error naming the capabilities', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const topo = await topology(sb);
  const agent = new Agent(sb, undefined, { uid: 65534 });
  const e = await agent.callError('open', { opts: { pinDir: topo.pinDir, cgroupPath: topo.root.path } });
  t.is(e.code, 'AMBIT_ERR_EBPF_PERMISSION');
  t.regex(e.message, /CAP_BPF/);
  t.is(await agent.call('exit'), true, 'the unprivileged agent is still running');
}, needs);

privilegedTest('a crash of the process holding the addon fails its calls, not the run', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const agent = new Agent(sb, undefined);
  await t.throwsAsync(agent.call('crash'), { message: /agent exited/ });
  t.is((await agent.exited).signal, 'SIGSEGV');
}, needs);
