/**
 * Which Kubernetes pod a process belongs to, read from its `/proc/<pid>/cgroup`.
 *
 * The kubelet puts every container of a pod under one pod-level cgroup whose name carries the
 * pod UID. The name depends on the cgroup driver and the hierarchy:
 *
 *   cgroupfs driver:  /kubepods/burstable/pod<uid>/<container-id>
 *                     /kubepods/pod<uid>/<container-id>                 (Guaranteed QoS)
 *   systemd driver:   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
 *                     (dashes of the UID written as underscores, since `-` is systemd's separator)
 *   containerd with systemd driver but cgroupfs-style paths:
 *                     /kubepods-besteffort-pod<uid_>.slice:cri-containerd:<id>
 *   nested runtimes (kind, k3s, a node inside a container) add a prefix, e.g. /kubelet.slice/kubelet-kubepods.slice/...
 *
 * A process line is `hierarchy-id:controllers:path`. On cgroup v2 there is one line `0::/path`;
 * on v1 there is a line per hierarchy; hybrid hosts have both. The unified (v2) line is read first,
 * then the `name=systemd` line, then any other, so all three layouts give the same answer.
 *
 * Invariants: parsing is pure (no I/O); a path that names no pod (system daemons, the agent
 * itself, a host process) yields undefined rather than a guess; UIDs come out lower-case with
 * dashes, as in `metadata.uid` (static pods' 32-hex UIDs stay as they are).
 */

/** The pod a process runs in, according to one cgroup path. */
export interface PodCgroup {
  /** The pod UID as in `metadata.uid`. */
  podUid: string;
  /** The pod-level cgroup path (relative to the hierarchy root), e.g. `/kubepods.slice/.../kubepods-burstable-pod<uid_>.slice`. */
  podPath: string;
  /** The full cgroup path of the process. */
  path: string;
  /** Container ID when the path names one (absent for the pod cgroup itself). */
  containerId: string | undefined;
  /** Which kubelet cgroup driver produced the name. */
  driver: 'systemd' | 'cgroupfs';
  /** Hierarchy the path was read from. */
  hierarchy: 'v2' | 'v1';
}

const UID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}';
/** systemd slice `...-pod<uid_>.slice`, optionally followed by `:runtime:id` (containerd's cgroupfs-style systemd paths). */
const SYSTEMD_POD = new RegExp(`^(?:[a-z0-9]+-)*pod(${UID})\\.slice(?::([a-z-]+):([0-9a-f]{12,}))?$`, 'i');
/** cgroupfs `pod<uid>`. */
const CGROUPFS_POD = new RegExp(`^pod(${UID})$`, 'i');
/** Container scopes and directories: `cri-containerd-<id>.scope`, `docker-<id>.scope`, `crio-<id>.scope`, `<id>`. */
const CONTAINER = /^(?:(?:cri-containerd|docker|crio|containerd|libpod)-)?([0-9a-f]{12,})(?:\.scope)?$/i;

function normalizeUid(raw: string): string {
  return raw.toLowerCase().replace(/_/g, '-');
}

/** The pod of one cgroup path (`/kubepods/...`), or undefined when the path names no pod. */
export function podFromCgroupPath(path: string, hierarchy: PodCgroup['hierarchy'] = 'v2'): PodCgroup | undefined {
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    const sd = SYSTEMD_POD.exec(seg);
    const fs = sd === null ? CGROUPFS_POD.exec(seg) : null;
    const m = sd ?? fs;
    if (m === null) continue;
    // Only pods under a kubepods tree: a pod-named cgroup elsewhere is not the kubelet's.
    const above = segments.slice(0, i + 1).join('/');
    if (!/kubepods/i.test(above)) continue;
    let containerId: string | undefined;
    if (sd !== null && sd[3] !== undefined) {
      containerId = sd[3].toLowerCase();
    } else {
      const next = segments[i + 1];
      const c = next === undefined ? null : CONTAINER.exec(next);
      if (c !== null) containerId = (c[1] as string).toLowerCase();
    }
    const podPath = sd !== null && sd[2] !== undefined ? [...segments.slice(0, i), seg.slice(0, seg.indexOf(':'))].join('/') : segments.slice(0, i + 1).join('/');
    return {
      podUid: normalizeUid(m[1] as string),
      podPath: podPath === '' ? '/' : podPath,
      path,
      containerId,
      driver: sd !== null ? 'systemd' : 'cgroupfs',
      hierarchy,
    };
  }
  return undefined;
}

/** One line of /proc/<pid>/cgroup. */
interface CgroupLine { id: string; controllers: string[]; path: string }

function parseLines(text: string): CgroupLine[] {
  const out: CgroupLine[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const a = raw.indexOf(':');
    const b = a < 0 ? -1 : raw.indexOf(':', a + 1);
    if (b < 0) continue;
    out.push({ id: raw.slice(0, a), controllers: raw.slice(a + 1, b).split(',').filter(Boolean), path: raw.slice(b + 1) });
  }
  return out;
}

/**
 * The pod of a process from the text of its `/proc/<pid>/cgroup`: the unified (v2) line first,
 * then v1's `name=systemd`, then the other v1 hierarchies.
 */
export function podFromProcCgroup(text: string): PodCgroup | undefined {
  const lines = parseLines(text);
  const unified = lines.filter((l) => l.id === '0' && l.controllers.length === 0);
  const systemd = lines.filter((l) => l.controllers.includes('name=systemd'));
  const others = lines.filter((l) => !unified.includes(l) && !systemd.includes(l));
  for (const l of unified) {
    const p = podFromCgroupPath(l.path, 'v2');
    if (p !== undefined) return p;
  }
  for (const l of [...systemd, ...others]) {
    const p = podFromCgroupPath(l.path, 'v1');
    if (p !== undefined) return p;
  }
  return undefined;
}
