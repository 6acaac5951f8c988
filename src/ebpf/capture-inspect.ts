/**
 * What the kernel holds of capture right now, read back through the addon (no cached state):
 * for each cgroup program its link (still attached to the capture cgroup? pinned?), for each map
 * its pin, and for each pod its sk_lookup link (attached to a netns? which one? pinned?), its
 * record in `ambit_pods`, its address in `ambit_podaddrs` (what makes sk_lookup hold inbound to
 * the agent), its two inbound listeners in the `ambit_inbound` SOCKHASH and its outbound capture
 * listener in `ambit_outbound` (a SOCKHASH lookup from user space returns the socket cookie of
 * the listener the kernel would use).
 *
 * This module only reports facts; src/agent/capture-check.ts decides what counts as broken.
 * Invariants: read-only (never attaches, detaches or writes a map); every fd it opens to compare
 * a pin is closed before it returns; a failing probe of one object is reported on that object
 * (`error`) instead of failing the whole inspection.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addon } from './native.js';
import type { BpfMap } from './bpf-map.js';
import { INBOUND_HBONE, INBOUND_PLAIN, MAP_NAMES, encodeAddress, encodeInboundKey, u64Key } from './layout.js';

export interface LinkState {
  /** Kernel link id (what `bpftool link show` lists), 0 when the link could not be read. */
  id: number;
  /** Still attached: a netns link keeps a netns, a cgroup link the capture cgroup. */
  attached: boolean;
  /** The pin exists and holds this same link. */
  pinned: boolean;
  pin: string;
  /** Why the link could not be read (fd closed, ...). */
  error?: string;
}

export interface CgroupProgramState extends LinkState {
  program: string;
}

export interface PodKernelState {
  id: string;
  netnsCookie: bigint;
  address: string;
  /** The sk_lookup link; `netnsIno` is the inode of the netns it is attached to (0 once detached). */
  link: LinkState & { netnsIno: number };
  /** The pod's record in ambit_pods (its netns cookie) is present. */
  record: boolean;
  /**
   * The netns cookie ambit_podaddrs maps the pod's address to, null when missing (undefined: the
   * loaded object has no such map).
   */
  addressCookie: bigint | null | undefined;
  /** Socket cookies of the listeners in ambit_inbound / ambit_outbound, null when the entry is missing. */
  listeners: { plaintext: bigint | null | undefined; hbone: bigint | null | undefined; outbound: bigint | null | undefined };
}

export interface CaptureKernelState {
  pinDir: string;
  cgroupPath: string;
  cgroupPrograms: CgroupProgramState[];
  /** Maps pinned under pinDir/maps: the pin exists and is the map this capture uses. */
  maps: { name: string; pinned: boolean; pin: string }[];
  pods: PodKernelState[];
}

/** The internals of a Capture that inspection reads (passed by Capture.inspect()). */
export interface CaptureHandles {
  pinDir: string;
  cgroupPath: string;
  cgroupLinks: ReadonlyMap<string, number>;
  maps: ReadonlyMap<string, BpfMap>;
  pods: Iterable<{ id: string; netnsCookie: bigint; address: string; linkFd: number; linkPin: string }>;
}

function message(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code !== undefined ? `${e.code}: ${e.message ?? ''}` : String(e.message ?? err);
}

/** True when `pin` exists and names the kernel object with `id` (link or map). */
function pinHolds(pin: string, id: number, kind: 'link' | 'map'): boolean {
  if (id === 0 || !existsSync(pin)) return false;
  const native = addon();
  let fd: number;
  try {
    fd = native.objGet(pin);
  } catch {
    return false;
  }
  try {
    return (kind === 'link' ? native.linkInfo(fd).id : native.mapInfo(fd).id) === id;
  } catch {
    return false;
  } finally {
    try { native.closeFd(fd); } catch { /* closed */ }
  }
}

function cgroupLink(program: string, fd: number, pin: string, cgroupId: bigint | undefined): CgroupProgramState {
  try {
    const info = addon().linkInfo(fd);
    // A detached cgroup link reports cgroup id 0.
    const attached = info.cgroupId !== undefined && info.cgroupId !== 0n && (cgroupId === undefined || info.cgroupId === cgroupId);
    return { program, id: info.id, attached, pinned: pinHolds(pin, info.id, 'link'), pin };
  } catch (err) {
    return { program, id: 0, attached: false, pinned: existsSync(pin), pin, error: message(err) };
  }
}

function lookupCookie(map: BpfMap | undefined, key: Buffer): bigint | null | undefined {
  if (map === undefined) return undefined;
  try {
    const v = map.lookup(key);
    return v === null || v.length < 8 ? null : v.readBigUInt64LE(0);
  } catch {
    return null;
  }
}

/** Reads the kernel's view of the capture described by `h`. */
export function inspectCapture(h: CaptureHandles): CaptureKernelState {
  const native = addon();
  let cgroupId: bigint | undefined;
  try { cgroupId = native.cgroupId(h.cgroupPath); } catch { cgroupId = undefined; }
  const cgroupPrograms: CgroupProgramState[] = [];
  for (const [name, fd] of h.cgroupLinks) {
    cgroupPrograms.push(cgroupLink(name, fd, join(h.pinDir, 'links', `cg_${name.replace(/^ambit_/, '')}`), cgroupId));
  }
  const maps: CaptureKernelState['maps'] = [];
  for (const [name, m] of h.maps) {
    const pin = join(h.pinDir, 'maps', name);
    let id = 0;
    try { id = native.mapInfo(m.fd).id; } catch { id = 0; }
    maps.push({ name, pinned: pinHolds(pin, id, 'map'), pin });
  }
  const podsMap = h.maps.get(MAP_NAMES.pods);
  const inbound = h.maps.get(MAP_NAMES.inbound);
  const outbound = h.maps.get(MAP_NAMES.outbound);
  const podAddresses = h.maps.get(MAP_NAMES.podAddresses);
  const pods: PodKernelState[] = [];
  for (const p of h.pods) {
    let link: PodKernelState['link'];
    try {
      const info = native.linkInfo(p.linkFd);
      const netnsIno = info.netnsIno ?? 0;
      link = { id: info.id, attached: netnsIno !== 0, netnsIno, pinned: pinHolds(p.linkPin, info.id, 'link'), pin: p.linkPin };
    } catch (err) {
      link = { id: 0, attached: false, netnsIno: 0, pinned: existsSync(p.linkPin), pin: p.linkPin, error: message(err) };
    }
    let record = false;
    try { record = podsMap?.lookup(u64Key(p.netnsCookie)) != null; } catch { record = false; }
    pods.push({
      id: p.id, netnsCookie: p.netnsCookie, address: p.address, link, record,
      addressCookie: lookupCookie(podAddresses, encodeAddress(p.address)),
      listeners: {
        plaintext: lookupCookie(inbound, encodeInboundKey(p.address, INBOUND_PLAIN)),
        hbone: lookupCookie(inbound, encodeInboundKey(p.address, INBOUND_HBONE)),
        outbound: lookupCookie(outbound, u64Key(p.netnsCookie)),
      },
    });
  }
  return { pinDir: h.pinDir, cgroupPath: h.cgroupPath, cgroupPrograms, maps, pods };
}
