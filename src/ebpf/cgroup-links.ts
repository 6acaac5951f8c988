/**
 * Cgroup programs attached through pinned bpf_links, so they outlive the agent and a successor
 * adopts them: the capture's programs and the DNS capture's go through this one routine.
 *
 * Invariants:
 * - A pinned link on the same cgroup and attach type is adopted by swapping its program
 *   (`bpf_link_update`): there is no instant without a program attached.
 * - A pinned link that cannot be adopted (other cgroup or attach type, update refused) is detached
 *   and unpinned, then a new link is attached and pinned.
 * - Each link fd is recorded in `into` as soon as it is held, so a failure part-way still lets the
 *   caller close what was taken.
 */
import { existsSync, unlinkSync } from 'node:fs';
import type { Logger } from '../util/log.js';
import { addon } from './native.js';
import { fromNative } from './errors.js';
import type { LoadedObject } from './object.js';

export function attachPinnedCgroupLinks(
  obj: LoadedObject,
  programs: readonly string[],
  cgroupPath: string,
  pinOf: (program: string) => string,
  into: Map<string, number>,
  log: Logger,
): void {
  const native = addon();
  const cgroupId = native.cgroupId(cgroupPath);
  const specs = new Map(obj.programs().map((p) => [p.name, p]));
  for (const name of programs) {
    const progFd = obj.programFd(name);
    const attachType = specs.get(name)?.expectedAttachType ?? '';
    const pin = pinOf(name);
    if (existsSync(pin)) {
      const fd = native.objGet(pin);
      const info = native.linkInfo(fd);
      if (info.cgroupId === cgroupId && info.attachType === attachType) {
        try {
          native.linkUpdate(fd, progFd);
          into.set(name, fd);
          log.debug({ program: name, link: info.id }, 'adopted cgroup link');
          continue;
        } catch (err) {
          log.warn({ program: name, err: String(err) }, 'pinned cgroup link cannot be updated; re-attaching');
        }
      }
      try { native.linkDetach(fd); } catch { /* already detached (cgroup removed) */ }
      native.closeFd(fd);
      unlinkSync(pin);
    }
    let fd: number;
    try {
      fd = native.attachCgroup(progFd, cgroupPath, attachType);
    } catch (err) {
      throw fromNative(err, `attach ${name} to cgroup ${cgroupPath}`);
    }
    into.set(name, fd);
    try {
      native.objPin(fd, pin);
    } catch (err) {
      throw fromNative(err, `pin link ${pin}`);
    }
  }
}
