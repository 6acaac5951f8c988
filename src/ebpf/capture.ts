/**
 * Capture: the agent's handle on eBPF traffic capture (docs/architecture.md#the-data-path).
 *
 * `Capture.open()` loads bpf/.output/capture.bpf.o, attaches its cgroup programs (connect4,
 * connect6, sockops, getsockopt) to a cgroup v2 directory with bpf_links, and pins maps and links
 * under `pinDir`. `enroll(pod)` creates the pod's three listeners inside its netns, registers the
 * netns cookie and links sk_lookup into the netns; `release(podId)` undoes that.
 *
 * Pin layout (pinDir = /sys/fs/bpf/ambit/<node> on a node):
 *   maps/<map name>                     every map (LIBBPF_PIN_BY_NAME)
 *   links/cg_<program>                  cgroup links
 *   links/pod_<netns cookie>_<base64url pod id>   one sk_lookup link per enrolled pod
 *
 * Invariants:
 *  - after a restart, open() adopts what is pinned: the same maps are reused, pinned links get the
 *    freshly loaded programs through bpf_link_update (never a second attachment), and pods whose
 *    netns disappeared are dropped. reconcile() then aligns the pinned pods with the desired ones.
 *  - a pod's netns cookie goes into ambit_pods last on enroll and leaves it first on release, so
 *    a connect is only ever rewritten while the pod's capture listener exists (in this process).
 *  - release() never touches established connections nor their records: a released pod's captured
 *    connections keep working and keep answering originalDestination().
 *  - listener fds returned by enroll() belong to the caller (net.Server.listen({ fd })).
 *  - enroll(pod, inherited) reuses listeners a running agent handed over (upgrade) instead of
 *    binding new ones, after checking they live in the pod's netns; the pinned link is adopted.
 */
import { readdirSync, rmdirSync, unlinkSync, existsSync } from 'node:fs';
import { isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { childLogger, type Logger } from '../util/log.js';
import { addon, BPF_OUTPUT_DIR } from './native.js';
import { CaptureConfigError, CaptureError, fromNative, EbpfSyscallError } from './errors.js';
import { checkFeatures, probeFeatures } from './features.js';
import { checkCgroupPath, ensurePinDir } from './host.js';
import { ObjectSpec, type LoadedObject } from './object.js';
import { BpfMap } from './bpf-map.js';
import { attachPinnedCgroupLinks } from './cgroup-links.js';
import {
  COUNTERS, COUNTER_SLOTS, INBOUND_HBONE, INBOUND_PLAIN, MAP_LAYOUT, MAP_NAMES, POD_FLAG_OUTBOUND6,
  cidrKeyNetns, decodeDst, decodePod, decodePortKey, encodeAddress, encodeAgentSynKey, encodeCidrKey, encodeConnKey,
  encodeInboundKey, encodePod, encodePortKey, parseCidr, u32Key, u64Key, type CounterName,
} from './layout.js';
import { registerCaptureMetrics } from './capture-metrics.js';
import { inspectCapture, type CaptureKernelState } from './capture-inspect.js';
import { LocalBypass, type PodBypass } from './local-bypass.js';
import { readFailClosed, type FailClosedCount } from './fail-closed.js';

export interface CaptureOptions {
  /** bpffs directory holding this agent's pins (required; /sys/fs/bpf/ambit/<node> on a node). */
  pinDir: string;
  /** cgroup v2 directory the cgroup programs attach to (required; the kubepods cgroup on a node). */
  cgroupPath: string;
  /** This node's addresses as pods see them (default []); inbound from them reaches apps directly only on SYNs the node itself sent (local-bypass.ts). */
  nodeAddresses?: string[];
  /** Listener ports inside each pod netns (default outbound 15001, inboundPlain 15006, inboundHbone 15008). */
  ports?: { outbound?: number; inboundPlain?: number; inboundHbone?: number };
  /** Capacity of the connection record tables (default 65536). */
  maxConnections?: number;
  /** Compiled BPF object (default bpf/.output/capture.bpf.o). */
  objectPath?: string;
  /** Registry for `ambit_capture_*` metrics (default: none). */
  registry?: Registry;
  /** Parent logger (default: the process root logger). */
  logger?: Logger;
}

export interface PodCapture {
  /** Stable pod identifier, e.g. `namespace/name` (any non-empty string). */
  id: string;
  /** The pod's network namespace, e.g. /run/netns/<name> or /proc/<pid>/ns/net. */
  netnsPath: string;
  /** The pod's address; inbound to it is steered to the agent. */
  address: string;
  /** Outbound destination ports never captured (default []). */
  excludedPorts?: number[];
  /** Outbound destination CIDRs never captured (default []). */
  excludedCidrs?: string[];
}

/** A pod's listeners taken over from a previous agent (src/agent/handover.ts); owned by enroll. */
export interface InheritedPodListeners {
  outbound: number;
  outbound6?: number;
  inboundPlain: number;
  inboundHbone: number;
}

/** Listening sockets created in the pod netns, ready for net.Server.listen({ fd }). */
export interface PodListeners {
  /** 127.0.0.1:15001, where captured outbound connects land. */
  outbound: number;
  /** [::1]:15001 for native IPv6 connects; absent when the pod netns has no IPv6 loopback. */
  outbound6?: number;
  /** 127.0.0.1:15006, inbound plaintext steered by sk_lookup. */
  inboundPlain: number;
  /** 127.0.0.1:15008, inbound HBONE steered by sk_lookup. */
  inboundHbone: number;
  netnsCookie: bigint;
}

export interface OriginalDestination {
  address: string;
  port: number;
  family: 4 | 6;
  /** outbound: a captured connect (from the record); inbound: steered by sk_lookup (the local address). */
  direction: 'outbound' | 'inbound';
}

export type CaptureStats = Record<CounterName, number> & { pods: number };

interface PodState {
  id: string;
  netnsCookie: bigint;
  address: string;
  linkFd: number;
  linkPin: string;
  /** Listeners were created by this process (false for a pod adopted from pins). */
  enrolled: boolean;
}

const CGROUP_PROGRAMS = ['ambit_connect4', 'ambit_connect6', 'ambit_sockops', 'ambit_getsockopt'] as const;
const SK_LOOKUP_PROGRAM = 'ambit_sk_lookup';
const TC_PROGRAM = 'ambit_tc_egress';

function podPinName(cookie: bigint, id: string): string {
  return `pod_${cookie}_${Buffer.from(id, 'utf8').toString('base64url')}`;
}

function parsePodPinName(name: string): { cookie: bigint; id: string } | undefined {
  const m = /^pod_(\d+)_([A-Za-z0-9_-]*)$/.exec(name);
  if (m?.[1] === undefined || m[2] === undefined) return undefined;
  return { cookie: BigInt(m[1]), id: Buffer.from(m[2], 'base64url').toString('utf8') };
}

function checkPort(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', field, `${field} must be a port number 1..65535, got ${String(v)}`);
  }
  return v;
}

function validatePod(pod: PodCapture): void {
  if (typeof pod !== 'object' || pod === null) throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', 'pod', 'pod must be an object');
  if (typeof pod.id !== 'string' || pod.id === '') throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', 'id', 'pod id must be a non-empty string');
  if (typeof pod.netnsPath !== 'string' || pod.netnsPath === '') {
    throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', 'netnsPath', `pod ${pod.id}: netnsPath must be a path`);
  }
  if (typeof pod.address !== 'string' || isIP(pod.address) === 0) {
    throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', 'address', `pod ${pod.id}: address ${String(pod.address)} is not an IP address`);
  }
  for (const p of pod.excludedPorts ?? []) checkPort(p, `pod ${pod.id} excludedPorts`);
  for (const c of pod.excludedCidrs ?? []) {
    try {
      parseCidr(c);
    } catch {
      throw new CaptureConfigError('AMBIT_ERR_EBPF_BAD_POD', 'excludedCidrs', `pod ${pod.id}: excludedCidrs entry ${c} is not a CIDR`);
    }
  }
}

function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new CaptureError('AMBIT_ERR_EBPF_NOT_A_SOCKET', 'originalDestination needs a connected TCP socket with an fd (not a closed or TLS-wrapped socket)');
  }
  return fd;
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

export class Capture {
  readonly pinDir: string;
  readonly cgroupPath: string;
  readonly ports: { outbound: number; inboundPlain: number; inboundHbone: number };
  readonly log: Logger;
  #obj: LoadedObject | undefined;
  readonly #maps: Map<string, BpfMap>;
  readonly #cgroupLinks = new Map<string, number>();
  readonly #pods = new Map<string, PodState>();
  readonly #busy = new Set<string>();
  #bypass: LocalBypass | undefined;
  #closed = false;

  private constructor(opts: { pinDir: string; cgroupPath: string; ports: Capture['ports']; log: Logger; obj: LoadedObject; maps: Map<string, BpfMap> }) {
    this.pinDir = opts.pinDir;
    this.cgroupPath = opts.cgroupPath;
    this.ports = opts.ports;
    this.log = opts.log;
    this.#obj = opts.obj;
    this.#maps = opts.maps;
  }

  /** Loads and attaches capture, adopting whatever a previous agent pinned under `pinDir`. */
  static async open(opts: CaptureOptions): Promise<Capture> {
    if (typeof opts?.pinDir !== 'string' || opts.pinDir === '') throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'pinDir', 'pinDir is required (a directory under /sys/fs/bpf)');
    if (typeof opts.cgroupPath !== 'string' || opts.cgroupPath === '') throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'cgroupPath', 'cgroupPath is required (a cgroup v2 directory)');
    const ports = {
      outbound: checkPort(opts.ports?.outbound ?? 15001, 'ports.outbound'),
      inboundPlain: checkPort(opts.ports?.inboundPlain ?? 15006, 'ports.inboundPlain'),
      inboundHbone: checkPort(opts.ports?.inboundHbone ?? 15008, 'ports.inboundHbone'),
    };
    const nodeAddresses = opts.nodeAddresses ?? [];
    for (const a of nodeAddresses) {
      if (isIP(a) === 0) throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'nodeAddresses', `node address ${a} is not an IP address`);
    }
    const log = childLogger('ebpf.capture', opts.logger);
    checkFeatures(probeFeatures());
    const cgroupPath = checkCgroupPath(opts.cgroupPath);
    const pinDir = ensurePinDir(opts.pinDir);
    ensurePinDir(join(pinDir, 'maps'));
    ensurePinDir(join(pinDir, 'links'));

    const spec = ObjectSpec.open(opts.objectPath ?? join(BPF_OUTPUT_DIR, 'capture.bpf.o'), { pinRoot: join(pinDir, 'maps') });
    for (const m of spec.maps()) {
      const want = MAP_LAYOUT[m.name];
      if (want === undefined || want.keySize !== m.keySize || want.valueSize !== m.valueSize) {
        spec.close();
        throw new CaptureError('AMBIT_ERR_EBPF_LAYOUT', `map ${m.name} of ${spec.path} does not match src/ebpf/layout.ts (rebuild with npm run build)`);
      }
    }
    const maxConnections = opts.maxConnections ?? 65536;
    if (!Number.isInteger(maxConnections) || maxConnections < 1024) {
      spec.close();
      throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'maxConnections', 'maxConnections must be an integer >= 1024');
    }
    spec.setMaxEntries(MAP_NAMES.pending, maxConnections);
    spec.setMaxEntries(MAP_NAMES.conns, maxConnections);
    const pinnedBefore = new Set(readdirSync(join(pinDir, 'maps')));
    let obj: LoadedObject;
    try {
      obj = await spec.load();
    } catch (err) {
      if (err instanceof EbpfSyscallError && err.errnoName === 'EINVAL' && /pinned/i.test(err.libbpfLog ?? '')) {
        throw new CaptureError('AMBIT_ERR_EBPF_PIN_INCOMPATIBLE', `maps pinned under ${pinDir}/maps were made by an incompatible build; close the old capture with cleanup or remove the pins`, { cause: err });
      }
      throw err;
    }
    const maps = new Map<string, BpfMap>();
    for (const name of Object.values(MAP_NAMES)) maps.set(name, new BpfMap(name, obj.mapFd(name)));
    const capture = new Capture({ pinDir, cgroupPath, ports, log, obj, maps });
    try {
      capture.#attachCgroupPrograms();
      capture.#adoptPods();
      capture.#syncNodeAddresses(nodeAddresses);
      capture.#bypass = new LocalBypass(obj.programFd(TC_PROGRAM), join(pinDir, 'links'), log);
    } catch (err) {
      capture.#releaseHandles();
      throw err;
    }
    log.info({ pinDir, cgroupPath, adoptedPods: capture.#pods.size, reusedMaps: obj.maps().filter((m) => pinnedBefore.has(m.name)).length }, 'capture open');
    if (opts.registry !== undefined) registerCaptureMetrics(opts.registry, capture);
    return capture;
  }

  #map(name: string): BpfMap {
    const m = this.#maps.get(name);
    if (m === undefined) throw new Error(`map ${name} missing`);
    return m;
  }

  #object(): LoadedObject {
    if (this.#closed || this.#obj === undefined) throw new CaptureError('AMBIT_ERR_EBPF_CLOSED', 'capture is closed');
    return this.#obj;
  }

  #attachCgroupPrograms(): void {
    attachPinnedCgroupLinks(this.#object(), CGROUP_PROGRAMS, this.cgroupPath, (name) => join(this.pinDir, 'links', `cg_${name.replace(/^ambit_/, '')}`), this.#cgroupLinks, this.log);
  }

  /** Takes over pinned sk_lookup links and drops records of pods whose link or netns is gone. */
  #adoptPods(): void {
    const native = addon();
    const progFd = this.#object().programFd(SK_LOOKUP_PROGRAM);
    const podsMap = this.#map(MAP_NAMES.pods);
    const linksDir = join(this.pinDir, 'links');
    for (const name of readdirSync(linksDir)) {
      const parsed = parsePodPinName(name);
      if (parsed === undefined) continue;
      const pin = join(linksDir, name);
      const fd = native.objGet(pin);
      const info = native.linkInfo(fd);
      const pod = podsMap.lookup(u64Key(parsed.cookie));
      let ok = info.netnsIno !== undefined && info.netnsIno !== 0 && pod !== null && !this.#pods.has(parsed.id);
      if (ok) {
        try {
          native.linkUpdate(fd, progFd);
        } catch {
          ok = false;
        }
      }
      if (!ok || pod === null) {
        try { native.linkDetach(fd); } catch { /* netns already gone */ }
        native.closeFd(fd);
        unlinkSync(pin);
        this.#forgetCookie(parsed.cookie, pod === null ? undefined : decodePod(pod).address);
        this.log.info({ pod: parsed.id }, 'dropped pinned pod whose netns or record is gone');
        continue;
      }
      this.#pods.set(parsed.id, { id: parsed.id, netnsCookie: parsed.cookie, address: decodePod(pod).address, linkFd: fd, linkPin: pin, enrolled: false });
      // Fail closed from the first instant, also for pins left by a build without ambit_podaddrs.
      this.#map(MAP_NAMES.podAddresses).update(encodeAddress(decodePod(pod).address), u64Key(parsed.cookie));
    }
    // Records without a link were left by an enroll that crashed half-way.
    const known = new Set([...this.#pods.values()].map((p) => p.netnsCookie));
    for (const key of podsMap.keys()) {
      const cookie = key.readBigUInt64LE(0);
      if (known.has(cookie)) continue;
      const pod = podsMap.lookup(key);
      this.#forgetCookie(cookie, pod === null ? undefined : decodePod(pod).address);
    }
  }

  #syncNodeAddresses(addresses: string[]): void {
    const m = this.#map(MAP_NAMES.nodeAddresses);
    const want = new Set(addresses.map((a) => encodeAddress(a).toString('hex')));
    for (const key of m.keys()) if (!want.has(key.toString('hex'))) m.delete(key);
    for (const hex of want) m.update(Buffer.from(hex, 'hex'), u32Key(1));
  }

  /** Removes every map entry of a netns cookie (pod record, exclusions, inbound listeners). */
  #forgetCookie(cookie: bigint, address: string | undefined): void {
    this.#map(MAP_NAMES.pods).delete(u64Key(cookie));
    if (address !== undefined) this.#map(MAP_NAMES.podAddresses).delete(encodeAddress(address));
    this.#map(MAP_NAMES.outbound).delete(u64Key(cookie));
    const failClosed = this.#map(MAP_NAMES.failClosed);
    for (const k of failClosed.keys()) if (k.readBigUInt64LE(0) === cookie) failClosed.delete(k);
    this.#clearExclusions(cookie);
    if (address !== undefined) {
      const inbound = this.#map(MAP_NAMES.inbound);
      inbound.delete(encodeInboundKey(address, INBOUND_PLAIN));
      inbound.delete(encodeInboundKey(address, INBOUND_HBONE));
    }
  }

  #clearExclusions(cookie: bigint): void {
    const ports = this.#map(MAP_NAMES.excludedPorts);
    for (const k of ports.keys()) if (decodePortKey(k).netns === cookie) ports.delete(k);
    const cidrs = this.#map(MAP_NAMES.excludedCidrs);
    for (const k of cidrs.keys()) if (cidrKeyNetns(k) === cookie) cidrs.delete(k);
  }

  /** Pods this capture knows: enrolled here, or adopted from pins and not yet re-enrolled. */
  pods(): { id: string; netnsCookie: bigint; address: string; enrolled: boolean }[] {
    return [...this.#pods.values()].map(({ id, netnsCookie, address, enrolled }) => ({ id, netnsCookie, address, enrolled }));
  }

  /**
   * Starts capturing a pod: listeners inside its netns, then sk_lookup, then its netns cookie.
   * A pod adopted from pins is taken over without detaching its link. Existing connections of the
   * pod are not touched.
   */
  async enroll(pod: PodCapture, inherited?: InheritedPodListeners): Promise<PodListeners> {
    this.#object();
    validatePod(pod);
    const existing = this.#pods.get(pod.id);
    if (existing?.enrolled === true || this.#busy.has(pod.id)) {
      throw new CaptureError('AMBIT_ERR_EBPF_ALREADY_ENROLLED', `pod ${pod.id} is already enrolled; release it first`);
    }
    this.#busy.add(pod.id);
    const native = addon();
    let made: { netnsCookie: bigint; fds: number[]; skipped: (string | null)[] } | undefined;
    if (inherited !== undefined) made = await this.#inheritedListeners(pod, inherited);
    try {
      made ??= await native.listenInNetns(pod.netnsPath, [
        { host: '127.0.0.1', port: this.ports.outbound },
        { host: '127.0.0.1', port: this.ports.inboundPlain },
        { host: '127.0.0.1', port: this.ports.inboundHbone },
        { host: '::1', port: this.ports.outbound, optional: true },
      ]);
    } catch (err) {
      this.#busy.delete(pod.id);
      const e = err as { code?: string; syscall?: string };
      if (e.code === 'ENOENT' && e.syscall === 'open') {
        throw new CaptureConfigError('AMBIT_ERR_EBPF_NETNS_MISSING', 'netnsPath', `pod ${pod.id}: network namespace ${pod.netnsPath} does not exist (pod gone, or wrong path)`, { cause: err });
      }
      if (e.code === 'EADDRINUSE') {
        throw new CaptureError('AMBIT_ERR_EBPF_LISTENER_IN_USE', `pod ${pod.id}: a capture port is already bound in its netns (another agent holds it, or the app uses 15001/15006/15008)`, { cause: err });
      }
      throw fromNative(err, `create listeners in ${pod.netnsPath}`);
    }
    const [outbound = -1, inboundPlain = -1, inboundHbone = -1, outbound6 = -1] = made.fds;
    const cookie = made.netnsCookie;
    const fds = made.fds;
    const closeAll = () => { for (const fd of fds) if (fd >= 0) try { native.closeFd(fd); } catch { /* closed */ } };
    try {
      for (const other of this.#pods.values()) {
        if (other.id !== pod.id && other.netnsCookie === cookie) {
          throw new CaptureError('AMBIT_ERR_EBPF_NETNS_IN_USE', `pod ${pod.id}: netns ${pod.netnsPath} is already enrolled as pod ${other.id}`);
        }
      }
      if (existing !== undefined && (existing.netnsCookie !== cookie || existing.address !== pod.address)) {
        this.#dropPod(existing);
      }
      const adopted = existing !== undefined && this.#pods.get(pod.id) === existing ? existing : undefined;
      // Exclusions and inbound listeners first, the pod record last.
      this.#clearExclusions(cookie);
      const xports = this.#map(MAP_NAMES.excludedPorts);
      for (const p of pod.excludedPorts ?? []) xports.update(encodePortKey(cookie, p), u32Key(1));
      const xcidrs = this.#map(MAP_NAMES.excludedCidrs);
      for (const c of pod.excludedCidrs ?? []) xcidrs.update(encodeCidrKey(cookie, c), u32Key(1));
      const inbound = this.#map(MAP_NAMES.inbound);
      inbound.insertSocket(encodeInboundKey(pod.address, INBOUND_PLAIN), inboundPlain);
      inbound.insertSocket(encodeInboundKey(pod.address, INBOUND_HBONE), inboundHbone);
      this.#map(MAP_NAMES.outbound).insertSocket(u64Key(cookie), outbound);
      let state: PodState;
      if (adopted !== undefined) {
        state = { ...adopted, enrolled: true };
      } else {
        let linkFd: number;
        try {
          linkFd = native.attachNetns(this.#object().programFd(SK_LOOKUP_PROGRAM), pod.netnsPath);
        } catch (err) {
          throw fromNative(err, `attach sk_lookup to ${pod.netnsPath}`);
        }
        const linkPin = join(this.pinDir, 'links', podPinName(cookie, pod.id));
        try {
          native.objPin(linkFd, linkPin);
        } catch (err) {
          native.closeFd(linkFd);
          throw fromNative(err, `pin link ${linkPin}`);
        }
        state = { id: pod.id, netnsCookie: cookie, address: pod.address, linkFd, linkPin, enrolled: true };
      }
      this.#pods.set(pod.id, state);
      this.#map(MAP_NAMES.pods).update(u64Key(cookie), encodePod({
        address: pod.address,
        outboundPort: this.ports.outbound,
        flags: outbound6 >= 0 ? POD_FLAG_OUTBOUND6 : 0,
      }));
      this.#map(MAP_NAMES.podAddresses).update(encodeAddress(pod.address), u64Key(cookie));
      this.#bypass?.add(pod.id, pod.address);
    } catch (err) {
      closeAll();
      const state = this.#pods.get(pod.id);
      if (state !== undefined && state.netnsCookie === cookie) this.#dropPod(state);
      else this.#forgetCookie(cookie, pod.address);
      throw err;
    } finally {
      this.#busy.delete(pod.id);
    }
    this.log.info({ pod: pod.id, netnsCookie: String(cookie), address: pod.address, adopted: existing !== undefined }, 'pod enrolled');
    const listeners: PodListeners = { outbound, inboundPlain, inboundHbone, netnsCookie: cookie };
    if (outbound6 >= 0) listeners.outbound6 = outbound6;
    return listeners;
  }

  /**
   * Listeners a previous agent handed over (upgrade): used when every one lives in the pod's
   * netns, else closed (undefined: the caller makes fresh ones).
   */
  async #inheritedListeners(pod: PodCapture, l: InheritedPodListeners): Promise<{ netnsCookie: bigint; fds: number[]; skipped: (string | null)[] } | undefined> {
    const native = addon();
    const fds = [l.outbound, l.inboundPlain, l.inboundHbone, l.outbound6 ?? -1];
    try {
      // The addon resolves netnsCookie() with { netnsCookie } (the listenInNetns result shape).
      const r = await native.netnsCookie(pod.netnsPath) as bigint | { netnsCookie: bigint };
      const want = typeof r === 'bigint' ? r : r.netnsCookie;
      const cookies = fds.filter((fd) => fd >= 0).map((fd) => native.socketNetnsCookie(fd));
      if (cookies.every((c) => c === want)) return { netnsCookie: want, fds, skipped: [] };
      this.log.warn({ pod: pod.id }, 'listeners handed over for this pod live in another netns; making fresh ones');
    } catch (err) {
      this.log.warn({ pod: pod.id, err: (err as Error).message }, 'cannot use the listeners handed over for this pod; making fresh ones');
    }
    for (const fd of fds) if (fd >= 0) try { native.closeFd(fd); } catch { /* closed */ }
    return undefined;
  }

  #dropPod(state: PodState): void {
    const native = addon();
    // The record goes first: no new connect is rewritten once this returns.
    this.#map(MAP_NAMES.pods).delete(u64Key(state.netnsCookie));
    this.#map(MAP_NAMES.podAddresses).delete(encodeAddress(state.address));
    this.#bypass?.remove(state.id);
    try { native.linkDetach(state.linkFd); } catch { /* netns already gone */ }
    try { native.closeFd(state.linkFd); } catch { /* closed */ }
    try { unlinkSync(state.linkPin); } catch { /* not pinned */ }
    this.#forgetCookie(state.netnsCookie, state.address);
    this.#pods.delete(state.id);
  }

  /**
   * Stops capturing new connections of a pod. Its established connections (and their original
   * destination records) are left alone; the caller closes the listeners it was given.
   * Returns false when the pod was not known.
   */
  release(podId: string): boolean {
    this.#object();
    const state = this.#pods.get(podId);
    if (state === undefined) return false;
    this.#dropPod(state);
    this.log.info({ pod: podId }, 'pod released');
    return true;
  }

  /**
   * Aligns capture with the desired pods after a restart: enrolls the ones not enrolled by this
   * process (adopting their pinned links) and releases pinned pods that are no longer wanted.
   * Returns the listeners of every pod enrolled by this call; per-pod failures are collected.
   */
  async reconcile(desired: PodCapture[]): Promise<{ enrolled: Map<string, PodListeners>; released: string[]; failed: Map<string, unknown> }> {
    const want = new Set(desired.map((p) => p.id));
    const released: string[] = [];
    for (const state of [...this.#pods.values()]) {
      if (!want.has(state.id)) {
        this.release(state.id);
        released.push(state.id);
      }
    }
    const enrolled = new Map<string, PodListeners>();
    const failed = new Map<string, unknown>();
    for (const pod of desired) {
      if (this.#pods.get(pod.id)?.enrolled === true) continue;
      try {
        enrolled.set(pod.id, await this.enroll(pod));
      } catch (err) {
        failed.set(pod.id, err);
        this.log.warn({ pod: pod.id, err: (err as Error).message }, 'enroll failed during reconcile');
      }
    }
    return { enrolled, released, failed };
  }

  /**
   * The original destination of a socket accepted on a pod listener: for the outbound listener
   * the destination the app connected to (from the connection record), for the inbound listeners
   * the pod address and port the client dialed (sk_lookup keeps it as the local address).
   * Null when the connection is unknown (not captured, or its record was evicted).
   */
  originalDestination(socket: Socket): OriginalDestination | null {
    this.#object();
    const { localAddress, localPort, remoteAddress, remotePort } = socket;
    if (localAddress === undefined || localPort === undefined || remoteAddress === undefined || remotePort === undefined) return null;
    if (!(localPort === this.ports.outbound && isLoopback(localAddress))) {
      const family = isIP(localAddress) === 6 && !localAddress.startsWith('::ffff:') ? 6 : 4;
      return { address: localAddress.replace(/^::ffff:/, ''), port: localPort, family, direction: 'inbound' };
    }
    let cookie: bigint;
    try {
      cookie = addon().socketNetnsCookie(socketFd(socket));
    } catch (err) {
      throw fromNative(err, 'SO_NETNS_COOKIE of an accepted socket');
    }
    const v = this.#map(MAP_NAMES.conns).lookup(encodeConnKey(cookie, remoteAddress, remotePort, localAddress, localPort));
    if (v === null) return null;
    const dst = decodeDst(v);
    return { address: dst.address, port: dst.port, family: dst.family, direction: 'outbound' };
  }

  /** Counters summed over CPUs, and the number of known pods. */
  stats(): CaptureStats {
    this.#object();
    const counters = this.#map(MAP_NAMES.counters);
    const out = { pods: this.#pods.size } as CaptureStats;
    COUNTERS.forEach((name, i) => {
      if (i >= COUNTER_SLOTS) return;
      const values = counters.lookupPerCpu(u32Key(i)) ?? [];
      out[name] = Number(values.reduce((sum, b) => sum + b.readBigUInt64LE(0), 0n));
    });
    return out;
  }

  /** What the kernel holds of this capture right now (links, pins, map entries), for the self-check. */
  inspect(): CaptureKernelState {
    this.#object();
    return inspectCapture({ pinDir: this.pinDir, cgroupPath: this.cgroupPath, cgroupLinks: this.#cgroupLinks, maps: this.#maps, pods: this.#pods.values() });
  }

  /**
   * Announces one connect the agent is about to make inside a pod netns toward that pod's app
   * (e.g. from the client's address with IP_TRANSPARENT): its SYN reaches the app instead of being
   * steered back to the agent. Call after bind() (the source port is known) and right before
   * connect(); the announcement serves one SYN within 2 s (AMBIT_LOCAL_SYN_TTL_NS).
   */
  announceAppConnect(src: { address: string; port: number }, dst: { address: string; port: number }): void {
    this.#object();
    const at = Buffer.alloc(8);
    at.writeBigUInt64LE(process.hrtime.bigint()); // CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns()
    this.#map(MAP_NAMES.localSyns).update(encodeAgentSynKey(src.address, src.port, dst.address, dst.port), at);
  }

  /** Connections refused because a pod's agent listener was missing, per pod and direction (kernel counts). */
  failClosed(): FailClosedCount[] {
    this.#object();
    return readFailClosed(this.#map(MAP_NAMES.failClosed), this.#pods.values());
  }

  /** The inbound bypass rule and where its tc recorder is attached; with `pod`, that pod's device. */
  localBypass(): ReturnType<LocalBypass['state']> & { pods: Record<string, PodBypass> } {
    this.#object();
    const state = this.#bypass?.state() ?? { rule: '', devices: [] };
    const pods: Record<string, PodBypass> = {};
    for (const p of this.#pods.values()) pods[p.id] = this.#bypass?.pod(p.id) ?? { device: null, reason: p.enrolled ? 'unknown' : 'adopted from pins, not re-enrolled yet' };
    return { ...state, pods };
  }

  /** Ids of the kernel objects this capture holds, for diagnostics and tests. */
  kernelObjects(): { cgroupLinkIds: number[]; podLinkIds: Record<string, number>; mapIds: Record<string, number> } {
    this.#object();
    const native = addon();
    const podLinkIds: Record<string, number> = {};
    for (const p of this.#pods.values()) podLinkIds[p.id] = native.linkInfo(p.linkFd).id;
    const mapIds: Record<string, number> = {};
    for (const [name, m] of this.#maps) mapIds[name] = native.mapInfo(m.fd).id;
    return { cgroupLinkIds: [...this.#cgroupLinks.values()].map((fd) => native.linkInfo(fd).id), podLinkIds, mapIds };
  }

  #releaseHandles(): void {
    const native = addon();
    for (const fd of this.#cgroupLinks.values()) try { native.closeFd(fd); } catch { /* closed */ }
    this.#cgroupLinks.clear();
    this.#bypass?.close();
    this.#bypass = undefined;
    for (const p of this.#pods.values()) try { native.closeFd(p.linkFd); } catch { /* closed */ }
    this.#pods.clear();
    this.#maps.clear();
    this.#obj?.close();
    this.#obj = undefined;
    this.#closed = true;
  }

  /**
   * Closes the handles. By default the pins stay and capture keeps running in the kernel for the
   * next agent to adopt; with `cleanup: true` every pod is released, links are detached and pins,
   * maps and the pin dir are removed, leaving nothing behind.
   */
  close(opts: { cleanup?: boolean } = {}): void {
    if (this.#closed) return;
    if (opts.cleanup === true) {
      const native = addon();
      for (const p of [...this.#pods.values()]) this.#dropPod(p);
      this.#bypass?.close({ detach: true });
      for (const [name, fd] of this.#cgroupLinks) {
        try { native.linkDetach(fd); } catch { /* already detached */ }
        try { unlinkSync(join(this.pinDir, 'links', `cg_${name.replace(/^ambit_/, '')}`)); } catch { /* not pinned */ }
      }
      for (const dir of ['links', 'maps']) {
        const full = join(this.pinDir, dir);
        if (!existsSync(full)) continue;
        for (const f of readdirSync(full)) {
          if (dir === 'maps' || f.startsWith('cg_') || f.startsWith('pod_')) unlinkSync(join(full, f));
        }
        try { rmdirSync(full); } catch { /* not empty: someone else's pins */ }
      }
      try { rmdirSync(this.pinDir); } catch { /* not empty */ }
    }
    this.#releaseHandles();
    this.log.info({ cleanup: opts.cleanup === true }, 'capture closed');
  }
}
