/**
 * Facts about the host that capture depends on: where cgroup v2 is mounted (found in
 * /proc/mounts, never assumed: hybrid hosts mount it at /sys/fs/cgroup/unified), whether a path is
 * on cgroup2 or bpffs, and mounting bpffs when it is missing. Invariant: a cgroup path handed to the
 * kernel has been checked to be a cgroup2 directory, so a v1-only host fails with a named error
 * instead of an EBADF from bpf().
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { addon } from './native.js';
import { CaptureConfigError, fromNative } from './errors.js';

export const CGROUP2_SUPER_MAGIC = 0x63677270;
export const BPF_FS_MAGIC = 0xcafe4a11;

interface Mount {
  source: string;
  target: string;
  fstype: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mounts(): Mount[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [source = '', target = '', fstype = ''] = l.split(' ');
      return { source, target: unescapeMount(target), fstype };
    });
}

/** The cgroup v2 mount point, or undefined on a v1-only host. */
export function cgroup2Mount(): string | undefined {
  const m = mounts().filter((x) => x.fstype === 'cgroup2');
  return m.sort((a, b) => a.target.length - b.target.length)[0]?.target;
}

/** Throws unless `path` is an existing directory on cgroup v2. */
export function checkCgroupPath(path: string): string {
  const abs = resolve(path);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new CaptureConfigError('AMBIT_ERR_EBPF_CGROUP_MISSING', 'cgroupPath', `cgroup ${abs} does not exist: create it, or point --cgroup-root at the kubepods cgroup on the cgroup v2 mount (${cgroup2Mount() ?? 'none found'})`);
  }
  let magic: number;
  try {
    magic = addon().fsMagic(abs);
  } catch (err) {
    throw fromNative(err, `statfs ${abs}`);
  }
  if (magic !== CGROUP2_SUPER_MAGIC) {
    const v2 = cgroup2Mount();
    throw new CaptureConfigError(
      'AMBIT_ERR_EBPF_CGROUP_NOT_V2',
      'cgroupPath',
      `${abs} is not on cgroup v2; cgroup BPF programs need a cgroup v2 hierarchy` +
        (v2 === undefined ? ' and this host mounts none (cgroup v1 only: boot with systemd.unified_cgroup_hierarchy=1 or mount cgroup2)' : ` (cgroup v2 is mounted at ${v2})`),
    );
  }
  return abs;
}

/**
 * Makes sure `pinDir` exists on bpffs, mounting bpffs at the standard /sys/fs/bpf (or the pin
 * dir's top-level parent under it) when nothing is mounted there yet.
 */
export function ensurePinDir(pinDir: string): string {
  const abs = resolve(pinDir);
  const fsOf = (p: string): number => {
    try {
      return addon().fsMagic(p);
    } catch (err) {
      throw fromNative(err, `statfs ${p}`);
    }
  };
  // The closest existing ancestor tells which file system the pin dir would live on.
  let probe = abs;
  while (!existsSync(probe)) probe = dirname(probe);
  if (fsOf(probe) !== BPF_FS_MAGIC) {
    const bpffs = '/sys/fs/bpf';
    if (!(abs === bpffs || abs.startsWith(bpffs + '/'))) {
      throw new CaptureConfigError('AMBIT_ERR_EBPF_PIN_DIR', 'pinDir', `pin dir ${abs} is not on a bpf file system: use a directory under /sys/fs/bpf, or mount bpffs (mount -t bpf bpf DIR)`);
    }
    if (!existsSync(bpffs)) mkdirSync(bpffs, { recursive: true });
    if (fsOf(bpffs) !== BPF_FS_MAGIC) {
      try {
        addon().mountBpffs(bpffs);
      } catch (err) {
        throw fromNative(err, `mount bpffs at ${bpffs}`);
      }
    }
  }
  mkdirSync(abs, { recursive: true, mode: 0o700 });
  if (fsOf(abs) !== BPF_FS_MAGIC) {
    throw new CaptureConfigError('AMBIT_ERR_EBPF_PIN_DIR', 'pinDir', `pin dir ${abs} is not on a bpf file system`);
  }
  return abs;
}
