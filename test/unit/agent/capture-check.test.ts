/**
 * The capture self-check's judgement over a fake kernel view (the real reads are covered by
 * test/e2e/capture-check.test.ts): what counts as broken, one log line per transition, the gauge
 * per pod, readiness input and the /config_dump shape.
 */
import test from 'ava';
import { Registry } from 'prom-client';
import { CaptureCheck, nodeProblems, podProblems, type CheckedPod } from '../../../src/agent/capture-check.js';
import type { CaptureKernelState, PodKernelState } from '../../../src/ebpf/capture-inspect.js';
import { logSink } from '../../helpers/log-sink.js';

const PIN = '/sys/fs/bpf/ambit/node-1';

function podState(id: string, address: string, over: Partial<PodKernelState> = {}): PodKernelState {
  return {
    id, address, netnsCookie: 4096n, record: true, addressCookie: 4096n,
    link: { id: 40, attached: true, netnsIno: 111, pinned: true, pin: `${PIN}/links/pod_4096_x` },
    listeners: { plaintext: 7n, hbone: 8n, outbound: 6n },
    ...over,
  };
}

function kernel(pods: PodKernelState[]): CaptureKernelState {
  return {
    pinDir: PIN, cgroupPath: '/sys/fs/cgroup/kubepods.slice',
    cgroupPrograms: ['ambit_connect4', 'ambit_sockops'].map((program, i) => ({ program, id: 10 + i, attached: true, pinned: true, pin: `${PIN}/links/cg_${program}` })),
    maps: [{ name: 'ambit_pods', pinned: true, pin: `${PIN}/maps/ambit_pods` }],
    pods,
  };
}

function setup(initial: CaptureKernelState, pods: CheckedPod[]) {
  const log = logSink();
  const lines = log.lines();
  const registry = new Registry();
  const state = { view: initial, pods, fail: undefined as Error | undefined };
  const inodes: Record<string, number> = { '/run/netns/a': 111, '/run/netns/b': 222 };
  const check = new CaptureCheck({
    inspect: () => { if (state.fail) throw state.fail; return state.view; },
    pods: () => state.pods,
    registry, log: log.logger,
    netnsInode: (p) => inodes[p],
  });
  const gauge = async (pod: string) => (await registry.getSingleMetric('ambit_capture_healthy')?.get())?.values.find((v) => v.labels['pod'] === pod)?.value;
  const broken = () => lines.filter((l) => String(l['msg']).includes('is broken'));
  return { check, state, lines, gauge, broken };
}

const A: CheckedPod = { key: 'demo/a', netnsPath: '/run/netns/a', enrolledAt: new Date(1000) };
const B: CheckedPod = { key: 'demo/b', netnsPath: '/run/netns/b', enrolledAt: new Date(1000) };

test('a pod whose kernel objects are all in place is healthy, silently', async (t) => {
  const { check, gauge, lines } = setup(kernel([podState('demo/a', '198.19.1.10')]), [A]);
  const h = check.check();
  t.deepEqual(h.map((x) => [x.pod, x.healthy, x.missing, x.linkId]), [['demo/a', true, [], 40]]);
  t.is(await gauge('demo/a'), 1);
  t.deepEqual(check.broken(), []);
  t.is(lines.length, 0);
});

test('a detached sk_lookup link: gauge 0, one log line per transition, healthy again clears it', async (t) => {
  const { check, state, gauge, lines, broken } = setup(kernel([podState('demo/a', '198.19.1.10'), podState('demo/b', '198.19.1.11', { link: { id: 41, attached: true, netnsIno: 222, pinned: true, pin: 'p' } })]), [A, B]);
  check.check();
  state.view = kernel([podState('demo/a', '198.19.1.10', { link: { id: 40, attached: false, netnsIno: 0, pinned: true, pin: 'p' } }), podState('demo/b', '198.19.1.11', { link: { id: 41, attached: true, netnsIno: 222, pinned: true, pin: 'p' } })]);
  for (let i = 0; i < 5; i++) check.check();
  t.is(await gauge('demo/a'), 0);
  t.is(await gauge('demo/b'), 1, 'the other pod stays healthy');
  t.is(broken().length, 1, 'logged once, not every tick');
  t.regex(String(broken()[0]?.['msg']), /capture of pod demo\/a is broken: sk_lookup link 40 is detached/);
  t.deepEqual(broken()[0]?.['missing'], ["sk_lookup link 40 is detached from the pod's netns"]);
  t.deepEqual(check.broken().map((b) => b.pod), ['demo/a']);
  // What is missing changes: a new line.
  state.view = kernel([podState('demo/a', '198.19.1.10', { link: { id: 40, attached: false, netnsIno: 0, pinned: false, pin: 'p' } }), podState('demo/b', '198.19.1.11', { link: { id: 41, attached: true, netnsIno: 222, pinned: true, pin: 'p' } })]);
  check.check();
  t.is(broken().length, 2);
  // Repaired.
  state.view = kernel([podState('demo/a', '198.19.1.10', { link: { id: 42, attached: true, netnsIno: 111, pinned: true, pin: 'p' } }), podState('demo/b', '198.19.1.11', { link: { id: 41, attached: true, netnsIno: 222, pinned: true, pin: 'p' } })]);
  check.check();
  check.check();
  t.is(await gauge('demo/a'), 1);
  t.deepEqual(check.broken(), []);
  t.is(lines.filter((l) => String(l['msg']).includes('healthy again')).length, 1);
  t.is(check.dump().pods.find((p) => p.pod === 'demo/a')?.linkId, 42);
});

test('a detached cgroup program or a lost map pin breaks every pod', (t) => {
  const v = kernel([podState('demo/a', '198.19.1.10'), podState('demo/b', '198.19.1.11', { link: { id: 41, attached: true, netnsIno: 222, pinned: true, pin: 'p' } })]);
  const { check } = setup(v, [A, B]);
  v.cgroupPrograms[0]!.attached = false;
  v.maps[0]!.pinned = false;
  const h = check.check();
  t.true(h.every((x) => !x.healthy));
  t.deepEqual(h[0]?.missing, ['cgroup program ambit_connect4 (link 10) is not attached to /sys/fs/cgroup/kubepods.slice', `map pin ${PIN}/maps/ambit_pods is missing`]);
});

test('each per-pod fact has its own operator-facing problem', (t) => {
  t.deepEqual(podProblems(undefined, 1), ['capture holds no sk_lookup link or record for the pod (released underneath the agent?)']);
  t.deepEqual(podProblems(podState('x', '198.19.1.10'), 999), ["sk_lookup link 40 is attached to netns inode 111, not the pod's (999)"]);
  t.deepEqual(podProblems(podState('x', '198.19.1.10'), undefined), ["the pod's netns is gone (sk_lookup link 40 points at netns inode 111)"]);
  t.deepEqual(podProblems(podState('x', '198.19.1.10', { record: false, addressCookie: null, listeners: { plaintext: null, hbone: 9n, outbound: null } }), 111, { plaintext: 7n, hbone: 8n, outbound: 6n }), [
    'netns cookie 4096 is missing from ambit_pods (outbound connects are not captured)',
    'address 198.19.1.10 is missing from ambit_podaddrs (inbound to the pod bypasses the agent)',
    'inbound plaintext listener of 198.19.1.10 is missing from ambit_inbound',
    'inbound HBONE listener of 198.19.1.10 in ambit_inbound was replaced (socket cookie 9, enrolled 8)',
    'outbound capture listener of 198.19.1.10 is missing from ambit_outbound',
  ]);
  t.deepEqual(podProblems(podState('x', '198.19.1.10', { addressCookie: 5n }), 111), ["address 198.19.1.10 in ambit_podaddrs belongs to netns cookie 5, not the pod's (4096)"]);
  t.deepEqual(podProblems(podState('x', '198.19.1.10', { link: { id: 0, attached: false, netnsIno: 0, pinned: true, pin: 'p', error: 'EBADF: bad fd' } }), 111), ['sk_lookup link unreadable (EBADF: bad fd)']);
  t.deepEqual(nodeProblems(kernel([])), []);
});

test('a listener replaced after enrollment is caught; a re-enrollment takes a new baseline', (t) => {
  const { check, state } = setup(kernel([podState('demo/a', '198.19.1.10')]), [A]);
  check.check();
  state.view = kernel([podState('demo/a', '198.19.1.10', { listeners: { plaintext: 70n, hbone: 8n, outbound: 6n } })]);
  t.regex(check.check()[0]?.missing[0] ?? '', /plaintext listener .* was replaced \(socket cookie 70, enrolled 7\)/);
  state.pods = [{ ...A, enrolledAt: new Date(2000) }];
  t.true(check.check()[0]?.healthy, 're-enrolled with new listeners');
});

test('unreadable capture state breaks every pod; a released pod leaves the gauge', async (t) => {
  const { check, state, gauge } = setup(kernel([podState('demo/a', '198.19.1.10')]), [A]);
  state.fail = new Error('capture is closed');
  t.deepEqual(check.check()[0]?.missing, ['capture state unreadable (capture is closed)']);
  state.fail = undefined;
  state.pods = [];
  t.deepEqual(check.check(), []);
  t.is(await gauge('demo/a'), undefined);
  t.deepEqual(check.dump().pods, []);
  t.is(typeof check.dump().lastCheck, 'string');
});

test('readiness never vouches for a pod enrolled since the last tick', (t) => {
  const v = kernel([podState('demo/a', '198.19.1.10', { link: { id: 40, attached: false, netnsIno: 0, pinned: true, pin: 'p' } })]);
  const { check } = setup(v, [A]);
  t.deepEqual(check.broken().map((b) => b.pod), ['demo/a'], 'checked on demand, no tick needed');
});
