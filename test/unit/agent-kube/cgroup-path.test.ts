/**
 * Pod UID and pod cgroup from /proc/<pid>/cgroup text, for every layout the kubelet produces:
 * cgroup v2 and v1 (and hybrid), systemd and cgroupfs drivers, containerd/CRI-O/Docker scopes,
 * nested kubelets, static pods; and paths that name no pod.
 */
import test from 'ava';
import { podFromCgroupPath, podFromProcCgroup } from '../../../src/agent/kube/cgroup-path.js';

const UID = '0b7c5e9a-1f2d-4c3b-9a8e-7d6f5e4c3b2a';
const UID_ = UID.replace(/-/g, '_');
const CID = 'a'.repeat(64);

test('cgroup v2, systemd driver, containerd scope', (t) => {
  const p = podFromProcCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope\n`);
  t.like(p, { podUid: UID, driver: 'systemd', hierarchy: 'v2', containerId: CID, podPath: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice` });
});

test('cgroup v2, systemd driver, Guaranteed QoS and CRI-O / Docker scopes', (t) => {
  t.like(podFromProcCgroup(`0::/kubepods.slice/kubepods-pod${UID_}.slice/crio-${CID}.scope`), { podUid: UID, containerId: CID });
  t.like(podFromProcCgroup(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${CID}.scope`), { podUid: UID, containerId: CID });
});

test('cgroup v2, cgroupfs driver', (t) => {
  t.like(podFromProcCgroup(`0::/kubepods/burstable/pod${UID}/${CID}\n`), { podUid: UID, driver: 'cgroupfs', podPath: `/kubepods/burstable/pod${UID}`, containerId: CID });
  t.like(podFromProcCgroup(`0::/kubepods/pod${UID}/${CID}\n`), { podUid: UID, driver: 'cgroupfs', podPath: `/kubepods/pod${UID}` });
});

test('containerd with the systemd driver writes cgroupfs-style "slice:runtime:id" paths', (t) => {
  t.like(podFromProcCgroup(`0::/kubepods-besteffort-pod${UID_}.slice:cri-containerd:${CID}`), { podUid: UID, driver: 'systemd', containerId: CID, podPath: `/kubepods-besteffort-pod${UID_}.slice` });
});

test('nested kubelet (kind, k3s in a container) adds a prefix', (t) => {
  t.like(podFromProcCgroup(`0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope`), { podUid: UID });
  t.like(podFromProcCgroup(`0::/docker/${'b'.repeat(64)}/kubepods/besteffort/pod${UID}/${CID}`), { podUid: UID, driver: 'cgroupfs' });
});

test('cgroup v1: the name=systemd line, else any controller line; the pod cgroup itself has no container', (t) => {
  const v1 = [
    '12:pids:/kubepods/burstable/pod' + UID + '/' + CID,
    '11:memory:/kubepods/burstable/pod' + UID + '/' + CID,
    '1:name=systemd:/kubepods/burstable/pod' + UID + '/' + CID,
  ].join('\n');
  t.like(podFromProcCgroup(v1), { podUid: UID, hierarchy: 'v1', containerId: CID });
  t.like(podFromProcCgroup(`4:memory:/kubepods/pod${UID}\n1:name=systemd:/\n0::/`), { podUid: UID, hierarchy: 'v1', containerId: undefined });
});

test('hybrid hosts: the unified line wins when it names the pod', (t) => {
  const other = '11111111-2222-3333-4444-555555555555';
  const text = `1:name=systemd:/kubepods/pod${other}/x\n0::/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${CID}.scope`;
  t.is(podFromProcCgroup(text)?.podUid, UID);
});

test('static pods keep their 32-hex UID', (t) => {
  const hex = '6f1c2a3b4d5e6f708192a3b4c5d6e7f8';
  t.is(podFromProcCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${hex}.slice/cri-containerd-${CID}.scope`)?.podUid, hex);
});

test('paths that name no pod give undefined', (t) => {
  t.is(podFromProcCgroup('0::/system.slice/containerd.service'), undefined);
  t.is(podFromProcCgroup('0::/'), undefined);
  t.is(podFromProcCgroup('0::/user.slice/user-1000.slice/session-2.scope\n1:name=systemd:/user.slice'), undefined);
  t.is(podFromCgroupPath(`/elsewhere/pod${UID}/x`), undefined, 'a pod-named cgroup outside kubepods is not the kubelet\'s');
  t.is(podFromProcCgroup('garbage\n\n::'), undefined);
});
