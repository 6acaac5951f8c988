/**
 * Kernel feature requirements of capture. `probeFeatures()` asks the kernel (through libbpf's
 * probes, by name) and `checkFeatures()` turns a missing program or map type into a
 * MissingKernelFeatureError naming the feature and the first kernel that has it. Features that
 * libbpf cannot probe (helpers, SO_NETNS_COOKIE, sk_lookup's ingress_ifindex) are covered by the
 * minimum kernel check on the release string.
 */
import { addon, type NativeProbe } from './native.js';
import { EbpfPermissionError, MissingKernelFeatureError } from './errors.js';

/** Program types capture loads, with the kernel that introduced them. */
export const REQUIRED_PROGRAM_TYPES: Record<string, { feature: string; since: string }> = {
  cgroup_sock_addr: { feature: 'the cgroup/connect4 program type (cgroup_sock_addr)', since: '4.17' },
  sock_ops: { feature: 'the sockops program type', since: '4.13' },
  cgroup_sockopt: { feature: 'the cgroup/getsockopt program type (cgroup_sockopt)', since: '5.3' },
  sk_lookup: { feature: 'the sk_lookup program type', since: '5.9' },
};

/** Map types capture creates. */
export const REQUIRED_MAP_TYPES: Record<string, { feature: string; since: string }> = {
  hash: { feature: 'BPF hash maps', since: '3.19' },
  lru_hash: { feature: 'BPF LRU hash maps', since: '4.10' },
  percpu_array: { feature: 'BPF per-CPU arrays', since: '4.6' },
  lpm_trie: { feature: 'BPF LPM trie maps', since: '4.11' },
  sockhash: { feature: 'SOCKHASH maps holding listening sockets', since: '5.10' },
};

/**
 * The oldest kernel everything works on: bpf_get_netns_cookie in sockops (5.15) and
 * SO_NETNS_COOKIE (5.14), sk_lookup ingress_ifindex (5.17).
 */
export const MINIMUM_KERNEL = { release: '5.17', feature: 'sk_lookup ingress_ifindex and netns cookies in sockops' };

export function probeFeatures(): NativeProbe {
  return addon().probeFeatures();
}

function kernelAtLeast(release: string, min: string): boolean {
  const [a = 0, b = 0] = release.split(/[.-]/).map(Number);
  const [x = 0, y = 0] = min.split('.').map(Number);
  return a > x || (a === x && b >= y);
}

/** Throws the first missing requirement of `probe` as a typed error. */
export function checkFeatures(probe: NativeProbe): void {
  if (!probe.permission) {
    throw new EbpfPermissionError('probing BPF program types', { message: 'bpf(BPF_PROG_LOAD) refused', code: 'EPERM', errno: 1, syscall: 'bpf' });
  }
  for (const [name, req] of Object.entries(REQUIRED_PROGRAM_TYPES)) {
    if (probe.progTypes[name] !== true) throw new MissingKernelFeatureError(req.feature, req.since, probe.kernelRelease);
  }
  for (const [name, req] of Object.entries(REQUIRED_MAP_TYPES)) {
    if (probe.mapTypes[name] !== true) throw new MissingKernelFeatureError(req.feature, req.since, probe.kernelRelease);
  }
  if (!kernelAtLeast(probe.kernelRelease, MINIMUM_KERNEL.release)) {
    throw new MissingKernelFeatureError(MINIMUM_KERNEL.feature, MINIMUM_KERNEL.release, probe.kernelRelease);
  }
}
