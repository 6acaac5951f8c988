/**
 * Kubernetes-mode pod discovery against real /proc layouts made by the test: processes in network
 * namespaces and in cgroups named the way the kubelet names them (cgroup v2 with the systemd and
 * the cgroupfs driver, and cgroup v1 in a hierarchy the test mounts), a hostNetwork pod, a pod
 * that appears after the first scan, and a pod that goes away. Checks that the netns path found
 * really is the pod's netns (its veth address is visible through it). Everything is created in a
 * Sandbox and removed after, even on failure.
 */
import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { privilegedTest } from '../../helpers/privileged.js';
import { Sandbox, sh, type Cgroup, type Netns } from '../../helpers/netns.js';
import { PodLocator } from '../../../src/agent/kube/pod-locator.js';
import { scanPods } from '../../../src/agent/kube/proc-scan.js';

const NEEDS = { root: true, paths: ['/usr/sbin/ip', '/usr/bin/nsenter'] };

/** A cgroup directory at an exact path (made with its parents); removed by the sandbox's cgroup cleanup. */
function cgroupAt(path: string): Cgroup {
  mkdirSync(path, { recursive: true });
  return { path, addProcess: () => undefined, pids: () => [] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function started(sb: Sandbox, netns: Netns | undefined, cg: Cgroup): Promise<number> {
  const child = sb.spawn('sleep', ['300'], { ...(netns ? { netns } : {}), cgroup: cg, stdio: 'ignore' });
  // The shell joins the cgroup, then execs nsenter, which execs sleep: same pid throughout.
  for (let i = 0; i < 100; i++) {
    try {
      if (readlinkSync(`/proc/${child.pid}/exe`).endsWith('/sleep')) return child.pid as number;
    } catch { /* not yet */ }
    await sleep(10);
  }
  throw new Error('sleep did not start');
}

privilegedTest('finds each pod\'s netns and cgroup from /proc for systemd and cgroupfs layouts, v2 and v1', async (t: ExecutionContext) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const base = await sb.cgroup('kube');
  const node = await sb.netns('node');
  const hostNetns = readlinkSync('/proc/self/ns/net');
  const uids = { systemd: randomUUID(), cgroupfs: randomUUID(), v1: randomUUID(), host: randomUUID(), late: randomUUID() };
  const pods: Record<string, Netns> = {};
  let k = 10;
  for (const name of ['systemd', 'cgroupfs', 'v1', 'late']) {
    pods[name] = await sb.netns(name);
    await sb.veth({ netns: node, addresses: [`198.19.7.${k}/32`] }, { netns: pods[name] as Netns, addresses: [`198.19.8.${k}/24`] });
    k++;
  }
  const u = (x: string) => x.replace(/-/g, '_');
  // cgroup v2, systemd driver: a sandbox (pause) scope started first, then a container scope.
  const sdPod = join(base.path, 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${u(uids.systemd)}.slice`);
  const pause = await started(sb, pods['systemd'], cgroupAt(join(sdPod, `cri-containerd-${'1'.repeat(64)}.scope`)));
  await sleep(20);
  const app = await started(sb, pods['systemd'], cgroupAt(join(sdPod, `cri-containerd-${'2'.repeat(64)}.scope`)));
  // cgroup v2, cgroupfs driver.
  const fsPid = await started(sb, pods['cgroupfs'], cgroupAt(join(base.path, 'kubepods', 'besteffort', `pod${uids.cgroupfs}`, '3'.repeat(64))));
  // hostNetwork pod: a kubepods cgroup, but the node's own netns.
  const hostPid = await started(sb, undefined, cgroupAt(join(base.path, 'kubepods', `pod${uids.host}`, '4'.repeat(64))));
  // cgroup v1 (hybrid hosts keep v1 hierarchies): a v1 hierarchy of the sandbox's own, so the layout
  // is tested whatever the host mounts.
  const v1Top = await sb.cgroupV1('kube-v1');
  const v1Pid = await started(sb, pods['v1'], cgroupAt(join(v1Top.path, 'kubepods', 'burstable', `pod${uids.v1}`, '5'.repeat(64))));

  const scan = scanPods({ procRoot: '/proc', hostNetns });
  const sd = scan.get(uids.systemd);
  t.truthy(sd, 'systemd-layout pod found');
  t.is(sd?.pid, pause, 'the oldest process (the sandbox) represents the pod');
  t.deepEqual(sd?.pids, [pause, app].sort((a, b) => a - b));
  t.is(sd?.containers.length, 2);
  t.like(sd?.cgroup, { driver: 'systemd', hierarchy: 'v2' });
  t.true(sd?.cgroup.podPath.endsWith(`kubepods-burstable-pod${u(uids.systemd)}.slice`));
  t.false(sd?.hostNetwork);
  t.like(scan.get(uids.cgroupfs), { pid: fsPid, hostNetwork: false, cgroup: { driver: 'cgroupfs', hierarchy: 'v2' } });
  t.like(scan.get(uids.host), { pid: hostPid, hostNetwork: true });
  t.like(scan.get(uids.v1), { pid: v1Pid, cgroup: { driver: 'cgroupfs', hierarchy: 'v1' } });

  // The path found is the pod's netns: its veth address is visible through it.
  let clock = 0;
  const locator = new PodLocator({ procRoot: '/proc', hostNetns, minRescanMs: 1000, now: () => clock });
  for (const [name, ip] of [['systemd', '198.19.8.10'], ['cgroupfs', '198.19.8.11'], ['v1', '198.19.8.12']] as const) {
    const path = locator.netnsPath(uids[name as keyof typeof uids]);
    t.truthy(path, `${name}: located`);
    const addrs = await sh('nsenter', [`--net=${path}`, '--', 'ip', '-o', '-4', 'addr', 'show']);
    t.true(addrs.includes(ip), `${name}: ${path} is the pod's netns`);
    t.is(statSync(path as string).ino, statSync(pods[name]?.path as string).ino, `${name}: same netns inode`);
  }
  t.like(locator.locate(uids.host), { found: false, retry: false }, 'hostNetwork pods are never captured');
  t.like(locator.locate(undefined), { found: false, retry: false });

  // A pod that appears after the agent: a miss, rate-limited rescans, then found.
  const scans = locator.scans;
  t.like(locator.locate(uids.late), { found: false, retry: true });
  t.is(locator.scans, scans, 'a miss inside minRescanMs does not rescan');
  const latePid = await started(sb, pods['late'], cgroupAt(join(base.path, 'kubepods.slice', `kubepods-pod${u(uids.late)}.slice`, `cri-containerd-${'6'.repeat(64)}.scope`)));
  t.like(locator.locate(uids.late), { found: false }, 'still cached as missing until the interval passes');
  clock += 1000;
  const late = locator.locate(uids.late);
  t.true(late.found, 'found after the interval');
  t.is(late.found ? late.location.pid : 0, latePid);

  // A pod that goes away: the cached entry is stale (its process is gone) and is not returned.
  process.kill(fsPid, 'SIGKILL');
  for (let i = 0; i < 100 && existsSync(`/proc/${fsPid}`); i++) await sleep(10);
  t.like(locator.locate(uids.cgroupfs), { found: false, retry: true });
}, NEEDS);

test('an unreadable /proc is a named error, and the locator reports it instead of throwing', (t) => {
  const err = t.throws(() => scanPods({ procRoot: '/nonexistent-proc-root' }));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_POD_DISCOVERY');
  t.regex(err?.message ?? '', /hostPath \/proc at \/host\/proc/);
  const locator = new PodLocator({ procRoot: '/nonexistent-proc-root' });
  const r = locator.locate('0b7c5e9a-1f2d-4c3b-9a8e-7d6f5e4c3b2a');
  t.like(r, { found: false, retry: true });
  t.regex(r.found ? '' : r.reason, /pod discovery failed/);
});
