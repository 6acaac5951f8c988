/**
 * The narrow inbound bypass (bpf/capture.bpf.c, "Narrow bypass"): which connections reach an
 * enrolled pod's app without going through the agent.
 *
 * Rule: an inbound SYN to an enrolled pod is delivered to the app directly only when
 *  - it is local to the pod netns (loopback, or from the pod's own address), or
 *  - its source is one of the node's addresses AND it was sent by a socket of the node's own
 *    network namespace (a process on the node: the kubelet's probes, the agent delivering to the
 *    app).
 * Everything else is steered to the agent, including traffic that another host sends through the
 * node and that the node masquerades to its own address (NodePort / LoadBalancer with
 * externalTrafficPolicy: Cluster): under STRICT it is refused like any plaintext.
 *
 * How "sent by a socket of the node" is known: a tc program (tcx egress, a bpf_link) on the node
 * device that routes to the pod sees the SYN before it crosses into the pod netns. A locally sent
 * SYN still carries its socket (skb->sk); a forwarded one never does (ip_forward drops skbs that
 * carry a socket, and crossing a veth into the node's netns orphans the skb). The program records
 * the 4-tuple of every such SYN in ambit_localsyn; sk_lookup in the pod netns consumes the record.
 * No packet is changed or dropped by the tc program.
 *
 * This module finds that device (the directly connected route to the pod address in the node's
 * netns, i.e. the netns this process runs in: /proc/net/route, /proc/net/ipv6_route) and keeps one
 * tcx link per device, shared by every pod routed through it (a bridge) and pinned as
 * links/tcx_<device> so a restarted agent adopts it (bpf_link_update, never a second attachment).
 *
 * Invariants:
 *  - only a route without a gateway qualifies: a pod is never reached through the default route,
 *    so capture never attaches to the machine's uplink by accident.
 *  - a pod whose device cannot be found is still captured and fails closed; it only loses the
 *    bypass (its probes are steered to the agent), and says so in state() and a warning.
 */
import { existsSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { addon } from './native.js';
import { encodeAddress } from './layout.js';
import { fromNative } from './errors.js';

export const LOCAL_BYPASS_RULE =
  'inbound reaches an enrolled pod\'s app without the agent only over loopback, from the pod itself, ' +
  'or from a node address on a SYN sent by a process of the node\'s own netns (kubelet probes); ' +
  'traffic forwarded or masqueraded by the node is captured';

export interface BypassDevice {
  device: string;
  ifindex: number;
  linkId: number;
  pods: string[];
}

export interface PodBypass {
  /** Node device whose tcx egress program records the node's own SYNs to this pod, or null. */
  device: string | null;
  reason?: string;
}

interface DeviceLink { fd: number; ifindex: number; pin: string; pods: Set<string> }

const PIN_PREFIX = 'tcx_';

/**
 * Longest-prefix, gateway-less route to `address` in this process's netns: the device name.
 * `tables` replaces /proc/net/route and /proc/net/ipv6_route (tests).
 */
export function directRouteDevice(address: string, tables: { v4?: string; v6?: string } = {}): string | null {
  const want = encodeAddress(address);
  let best: { dev: string; len: number } | null = null;
  if (isIPv4(address)) {
    let text = '';
    try { text = tables.v4 ?? readFileSync('/proc/net/route', 'utf8'); } catch { return null; }
    const ip = want.readUInt32BE(12);
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) continue;
      const [dev = '', dst = '0', gw = '0', flags = '0', , , , mask = '0'] = f;
      // /proc/net/route prints addresses as the kernel's __be32 in host (little-endian) order.
      const le = (h: string) => Buffer.from(h.padStart(8, '0'), 'hex').readUInt32LE(0);
      const m = le(mask);
      if ((parseInt(flags, 16) & 0x1) === 0 || le(gw) !== 0) continue; // RTF_UP, no gateway
      if (((ip & m) >>> 0) !== (le(dst) & m) >>> 0) continue;
      const len = m.toString(2).replace(/0/g, '').length;
      if (best === null || len > best.len) best = { dev, len };
    }
    return best?.dev ?? null;
  }
  let text = '';
  try { text = tables.v6 ?? readFileSync('/proc/net/ipv6_route', 'utf8'); } catch { return null; }
  const bits = (b: Buffer) => [...b].map((x) => x.toString(2).padStart(8, '0')).join('');
  const wantBits = bits(want);
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [dst = '', lenHex = '0', , , nh = '', , , , , dev = ''] = f;
    const len = parseInt(lenHex, 16);
    if (len === 0 || !/^0+$/.test(nh) || dev === 'lo') continue;
    if (bits(Buffer.from(dst, 'hex')).slice(0, len) !== wantBits.slice(0, len)) continue;
    if (best === null || len > best.len) best = { dev, len };
  }
  return best?.dev ?? null;
}

export class LocalBypass {
  readonly #progFd: number;
  readonly #linksDir: string;
  readonly #log: Logger;
  readonly #devices = new Map<string, DeviceLink>();
  readonly #pods = new Map<string, PodBypass>();

  constructor(progFd: number, linksDir: string, log: Logger) {
    this.#progFd = progFd;
    this.#linksDir = linksDir;
    this.#log = log;
  }

  /** Makes sure the device that routes to `address` records the node's SYNs; keyed by pod id. */
  add(podId: string, address: string): PodBypass {
    this.remove(podId);
    const device = directRouteDevice(address);
    if (device === null) {
      const s: PodBypass = { device: null, reason: `no directly connected route to ${address} in the agent's netns` };
      this.#pods.set(podId, s);
      this.#log.warn({ pod: podId, address }, 'no node device routes to this pod: probes from the node will be captured like any other plaintext (is the agent in the node\'s netns?)');
      return s;
    }
    let link = this.#devices.get(device);
    if (link === undefined) {
      try {
        link = this.#attach(device);
      } catch (err) {
        const s: PodBypass = { device: null, reason: `tcx attach on ${device} failed: ${(err as Error).message}` };
        this.#pods.set(podId, s);
        this.#log.warn({ pod: podId, device, err: (err as Error).message }, 'cannot attach the local-SYN recorder: probes from the node will be captured');
        return s;
      }
      this.#devices.set(device, link);
    }
    link.pods.add(podId);
    const s: PodBypass = { device };
    this.#pods.set(podId, s);
    return s;
  }

  /** Forgets a pod; the device's link goes when its last pod does. */
  remove(podId: string): void {
    const s = this.#pods.get(podId);
    this.#pods.delete(podId);
    if (s?.device == null) return;
    const link = this.#devices.get(s.device);
    if (link === undefined) return;
    link.pods.delete(podId);
    if (link.pods.size === 0) this.#detach(s.device, link);
  }

  pod(podId: string): PodBypass | undefined {
    return this.#pods.get(podId);
  }

  state(): { rule: string; devices: BypassDevice[] } {
    const native = addon();
    const devices: BypassDevice[] = [];
    for (const [device, l] of this.#devices) {
      let linkId = 0;
      try { linkId = native.linkInfo(l.fd).id; } catch { /* closed */ }
      devices.push({ device, ifindex: l.ifindex, linkId, pods: [...l.pods].sort() });
    }
    return { rule: LOCAL_BYPASS_RULE, devices };
  }

  /** Closes the handles; with `detach`, also detaches and unpins every tcx link this agent made or adopted, and stale ones. */
  close(opts: { detach?: boolean } = {}): void {
    const native = addon();
    for (const [device, l] of this.#devices) {
      if (opts.detach === true) this.#detach(device, l);
      else try { native.closeFd(l.fd); } catch { /* closed */ }
    }
    this.#devices.clear();
    this.#pods.clear();
    if (opts.detach === true && existsSync(this.#linksDir)) {
      for (const f of readdirSync(this.#linksDir)) {
        if (!f.startsWith(PIN_PREFIX)) continue;
        const pin = join(this.#linksDir, f);
        try {
          const fd = native.objGet(pin);
          try { native.linkDetach(fd); } catch { /* device gone */ }
          native.closeFd(fd);
        } catch { /* not a link */ }
        try { unlinkSync(pin); } catch { /* gone */ }
      }
    }
  }

  #attach(device: string): DeviceLink {
    const native = addon();
    const pin = join(this.#linksDir, `${PIN_PREFIX}${device}`);
    if (existsSync(pin)) {
      const fd = native.objGet(pin);
      const ifindex = native.tcxLinkIfindex(fd);
      try {
        if (ifindex === 0) throw new Error('device gone');
        native.linkUpdate(fd, this.#progFd);
        this.#log.debug({ device, ifindex }, 'adopted tcx link');
        return { fd, ifindex, pin, pods: new Set() };
      } catch {
        try { native.linkDetach(fd); } catch { /* defunct */ }
        native.closeFd(fd);
        unlinkSync(pin);
      }
    }
    let made: { linkFd: number; ifindex: number };
    try {
      made = native.attachTcx(this.#progFd, device, 'egress');
    } catch (err) {
      throw fromNative(err, `attach tcx egress to ${device}`);
    }
    try {
      native.objPin(made.linkFd, pin);
    } catch (err) {
      native.closeFd(made.linkFd);
      throw fromNative(err, `pin link ${pin}`);
    }
    this.#log.info({ device, ifindex: made.ifindex }, 'local-SYN recorder attached');
    return { fd: made.linkFd, ifindex: made.ifindex, pin, pods: new Set() };
  }

  #detach(device: string, l: DeviceLink): void {
    const native = addon();
    try { native.linkDetach(l.fd); } catch { /* device gone */ }
    try { native.closeFd(l.fd); } catch { /* closed */ }
    try { unlinkSync(l.pin); } catch { /* not pinned */ }
    this.#devices.delete(device);
  }
}
