/**
 * DNS capture: the agent's handle on bpf/dns.bpf.c (UDP DNS of enrolled pods to the agent's DNS
 * proxy, docs in that file).
 *
 * `DnsCapture.open()` loads bpf/.output/dns.bpf.o and attaches its four cgroup programs
 * (connect4, sendmsg4, recvmsg4, getpeername4) to the same cgroup as Capture, with bpf_links
 * pinned beside Capture's: maps under `<pinDir>/maps/ambit_dns_*`, links as
 * `<pinDir>/links/cg_dns_<program>`. `enroll(pod)` binds the pod's DNS sockets (UDP and TCP
 * 127.0.0.1:15053 inside its netns), registers them as liveness tokens and the netns cookie in
 * ambit_dns_pods; `release(podId)` undoes that. DNS over TCP reads capture's ambit_pending (the
 * same pin), so open Capture first.
 *
 * Invariants:
 *  - after a restart, open() adopts pinned links with bpf_link_update (never a second attachment);
 *    pinned pod records stay until the pod is enrolled again or released (a record without a live
 *    socket rewrites nothing: DNS capture fails open, see dns.bpf.c);
 *  - `open({ enabled: false })` (agent `--dns-capture=false`) detaches and unpins whatever a
 *    previous agent attached, so switching the flag off takes effect at the next start;
 *  - the liveness socket goes in before the pod record, and the record leaves first on release;
 *  - Capture.close({ cleanup: true }) also removes these pins (every map and `cg_` link of the
 *    pin dir); close this first so its links are detached, not merely unpinned.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { childLogger, type Logger } from '../util/log.js';
import { addon, BPF_OUTPUT_DIR } from './native.js';
import { CaptureConfigError, CaptureError, fromNative } from './errors.js';
import { checkCgroupPath, ensurePinDir } from './host.js';
import { ObjectSpec, type LoadedObject } from './object.js';
import { BpfMap } from './bpf-map.js';
import { attachPinnedCgroupLinks } from './cgroup-links.js';
import { u32Key, u64Key } from './layout.js';

export interface DnsCaptureOptions {
  /** bpffs directory of this agent's pins, the same as Capture's (required). */
  pinDir: string;
  /** cgroup v2 directory, the same as Capture's (required). */
  cgroupPath: string;
  /** The DNS listeners' port (UDP and TCP) on 127.0.0.1 inside each pod netns (default 15053, Istio's). */
  port?: number;
  /** Capture's outbound listener port in each pod netns, as Capture was opened with (default 15001). */
  capturePort?: number;
  /** Attach the programs (default true); false detaches and unpins a previous agent's. */
  enabled?: boolean;
  /** Compiled BPF object (default bpf/.output/dns.bpf.o). */
  objectPath?: string;
  /** Parent logger (default: the process root logger). */
  logger?: Logger;
}

export interface DnsPodListener {
  /** The bound UDP socket, for dgram.Socket#bind({ fd }); the caller's to close. */
  fd: number;
  /** The TCP listener, for net.Server#listen({ fd }); absent when it could not be bound (DNS over TCP then goes to the resolver). */
  tcpFd?: number;
  netnsCookie: bigint;
}

export interface DnsResolverAddress {
  address: string;
  port: number;
}

export const DNS_PROGRAMS = ['ambit_dns_connect4', 'ambit_dns_sendmsg4', 'ambit_dns_recvmsg4', 'ambit_dns_getpeername4'] as const;
const MAPS = { pods: 'ambit_dns_pods', listen: 'ambit_dns_listen', listenTcp: 'ambit_dns_listen_tcp', orig: 'ambit_dns_orig', upstream: 'ambit_dns_upstream', counters: 'ambit_dns_counters' } as const;
const COUNTERS = ['captured', 'restored', 'noListener', 'recordFailed', 'capturedTcp'] as const;
const POD_FLAG_TCP = 0x1;
export type DnsCaptureStats = Record<(typeof COUNTERS)[number], number> & { pods: number };

function linkPin(pinDir: string, program: string): string {
  return join(pinDir, 'links', `cg_${program.replace(/^ambit_/, '')}`);
}

/** struct ambit_dns_pod. */
function encodePodRecord(port: number, capturePort: number, flags: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(port, 0);
  b.writeUInt16LE(capturePort, 2);
  b.writeUInt32LE(flags, 4);
  return b;
}

/** struct ambit_dns_dst: addr (network order), port, proxy_port (host order). */
function decodeDst(b: Buffer): DnsResolverAddress {
  return { address: `${b[0]}.${b[1]}.${b[2]}.${b[3]}`, port: b.readUInt16LE(4) };
}

export class DnsCapture {
  readonly pinDir: string;
  readonly cgroupPath: string;
  readonly port: number;
  readonly capturePort: number;
  readonly log: Logger;
  #obj: LoadedObject | undefined;
  readonly #maps = new Map<string, BpfMap>();
  readonly #links = new Map<string, number>();
  readonly #pods = new Map<string, bigint>();

  private constructor(opts: { pinDir: string; cgroupPath: string; port: number; capturePort: number; log: Logger; obj: LoadedObject }) {
    this.pinDir = opts.pinDir;
    this.cgroupPath = opts.cgroupPath;
    this.port = opts.port;
    this.capturePort = opts.capturePort;
    this.log = opts.log;
    this.#obj = opts.obj;
    for (const name of Object.values(MAPS)) this.#maps.set(name, new BpfMap(name, opts.obj.mapFd(name)));
  }

  /**
   * Loads and attaches DNS capture (adopting pinned links), or with `enabled: false` removes a
   * previous agent's and returns undefined.
   */
  static async open(opts: DnsCaptureOptions): Promise<DnsCapture | undefined> {
    if (typeof opts?.pinDir !== 'string' || opts.pinDir === '') throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'pinDir', 'pinDir is required (a directory under /sys/fs/bpf)');
    if (typeof opts.cgroupPath !== 'string' || opts.cgroupPath === '') throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', 'cgroupPath', 'cgroupPath is required (a cgroup v2 directory)');
    const port = opts.port ?? 15053;
    const capturePort = opts.capturePort ?? 15001;
    for (const [field, v] of [['port', port], ['capturePort', capturePort]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 65535) throw new CaptureConfigError('AMBIT_ERR_EBPF_CONFIG', field, `${field} must be 1..65535, got ${String(v)}`);
    }
    const log = childLogger('ebpf.dns', opts.logger);
    const pinDir = ensurePinDir(opts.pinDir);
    if (opts.enabled === false) {
      DnsCapture.#detachPinned(pinDir, log);
      return undefined;
    }
    const cgroupPath = checkCgroupPath(opts.cgroupPath);
    ensurePinDir(join(pinDir, 'maps'));
    ensurePinDir(join(pinDir, 'links'));
    const spec = ObjectSpec.open(opts.objectPath ?? join(BPF_OUTPUT_DIR, 'dns.bpf.o'), { pinRoot: join(pinDir, 'maps') });
    // Reuse capture's pinned ambit_pending as it was sized (Capture's maxConnections).
    const pendingPin = join(pinDir, 'maps', 'ambit_pending');
    if (existsSync(pendingPin)) {
      const native = addon();
      const fd = native.objGet(pendingPin);
      try { spec.setMaxEntries('ambit_pending', native.mapInfo(fd).maxEntries); } finally { native.closeFd(fd); }
    }
    const obj = await spec.load();
    const dns = new DnsCapture({ pinDir, cgroupPath, port, capturePort, log, obj });
    try {
      dns.#attach();
    } catch (err) {
      dns.close();
      throw err;
    }
    log.info({ pinDir, cgroupPath, port }, 'DNS capture open');
    return dns;
  }

  static #detachPinned(pinDir: string, log: Logger): void {
    const native = addon();
    for (const name of DNS_PROGRAMS) {
      const pin = linkPin(pinDir, name);
      if (!existsSync(pin)) continue;
      const fd = native.objGet(pin);
      try { native.linkDetach(fd); } catch { /* already detached */ }
      native.closeFd(fd);
      unlinkSync(pin);
      log.info({ program: name }, 'DNS capture disabled: detached the previous agent\'s program');
    }
  }

  #object(): LoadedObject {
    if (this.#obj === undefined) throw new CaptureError('AMBIT_ERR_EBPF_CLOSED', 'DNS capture is closed');
    return this.#obj;
  }

  #map(name: string): BpfMap {
    const m = this.#maps.get(name);
    if (m === undefined) throw new CaptureError('AMBIT_ERR_EBPF_CLOSED', 'DNS capture is closed');
    return m;
  }

  #attach(): void {
    attachPinnedCgroupLinks(this.#object(), DNS_PROGRAMS, this.cgroupPath, (name) => linkPin(this.pinDir, name), this.#links, this.log);
  }

  /** Binds the pod's DNS sockets in its netns and starts capturing its DNS. */
  async enroll(pod: { id: string; netnsPath: string }): Promise<DnsPodListener> {
    this.#object();
    const native = addon();
    let made: { netnsCookie: bigint; fds: number[]; skipped: (string | null)[] };
    try {
      made = await native.listenInNetns(pod.netnsPath, [
        { host: '127.0.0.1', port: this.port, udp: true },
        { host: '127.0.0.1', port: this.port, optional: true },
      ]);
    } catch (err) {
      const e = err as { code?: string; syscall?: string };
      if (e.code === 'ENOENT' && e.syscall === 'open') {
        throw new CaptureConfigError('AMBIT_ERR_EBPF_NETNS_MISSING', 'netnsPath', `pod ${pod.id}: network namespace ${pod.netnsPath} does not exist (pod gone, or wrong path)`, { cause: err });
      }
      if (e.code === 'EADDRINUSE') {
        throw new CaptureError('AMBIT_ERR_EBPF_LISTENER_IN_USE', `pod ${pod.id}: UDP 127.0.0.1:${this.port} is taken in its netns (the app uses it, or set another --dns-port)`, { cause: err });
      }
      throw fromNative(err, `bind the DNS socket in ${pod.netnsPath}`);
    }
    const [fd = -1, tcpFd = -1] = made.fds;
    const cookie = made.netnsCookie;
    if (tcpFd < 0) this.log.warn({ pod: pod.id, reason: made.skipped[1] }, `TCP 127.0.0.1:${this.port} cannot be bound in the pod netns; its DNS over TCP goes to its resolver`);
    try {
      this.#map(MAPS.listen).insertSocket(u64Key(cookie), fd);
      if (tcpFd >= 0) this.#map(MAPS.listenTcp).insertSocket(u64Key(cookie), tcpFd);
      this.#map(MAPS.pods).update(u64Key(cookie), encodePodRecord(this.port, this.capturePort, tcpFd >= 0 ? POD_FLAG_TCP : 0));
    } catch (err) {
      for (const f of [fd, tcpFd]) if (f >= 0) try { native.closeFd(f); } catch { /* closed */ }
      throw err;
    }
    this.#pods.set(pod.id, cookie);
    this.log.debug({ pod: pod.id, netnsCookie: String(cookie), tcp: tcpFd >= 0 }, 'pod DNS captured');
    return { fd, ...(tcpFd >= 0 ? { tcpFd } : {}), netnsCookie: cookie };
  }

  /** Stops capturing a pod's DNS (the caller closes its socket). False when unknown. */
  release(podId: string): boolean {
    const cookie = this.#pods.get(podId);
    if (cookie === undefined) return false;
    this.#map(MAPS.pods).delete(u64Key(cookie));
    this.#map(MAPS.listen).delete(u64Key(cookie));
    this.#map(MAPS.listenTcp).delete(u64Key(cookie));
    this.#pods.delete(podId);
    return true;
  }

  /** The resolver a pod (by netns cookie) addressed last, as the kernel recorded it. */
  upstream(netnsCookie: bigint): DnsResolverAddress | null {
    const v = this.#map(MAPS.upstream).lookup(u64Key(netnsCookie));
    return v === null ? null : decodeDst(v);
  }

  /** Kernel counters summed over CPUs, and the number of pods enrolled by this process. */
  stats(): DnsCaptureStats {
    const counters = this.#map(MAPS.counters);
    const out = { pods: this.#pods.size } as DnsCaptureStats;
    COUNTERS.forEach((name, i) => {
      const values = counters.lookupPerCpu(u32Key(i)) ?? [];
      out[name] = Number(values.reduce((sum, b) => sum + b.readBigUInt64LE(0), 0n));
    });
    return out;
  }

  /**
   * Closes the handles; the pinned links keep capturing for the next agent (and fail open while
   * no agent listens). `cleanup: true` detaches and unpins the links and forgets the pods.
   */
  close(opts: { cleanup?: boolean } = {}): void {
    if (this.#obj === undefined) return;
    const native = addon();
    if (opts.cleanup === true) {
      for (const id of [...this.#pods.keys()]) try { this.release(id); } catch { /* closed maps */ }
      for (const [name, fd] of this.#links) {
        try { native.linkDetach(fd); } catch { /* already detached */ }
        try { unlinkSync(linkPin(this.pinDir, name)); } catch { /* not pinned */ }
      }
      for (const name of Object.values(MAPS)) try { unlinkSync(join(this.pinDir, 'maps', name)); } catch { /* not pinned */ }
    }
    for (const fd of this.#links.values()) try { native.closeFd(fd); } catch { /* closed */ }
    this.#links.clear();
    this.#maps.clear();
    this.#obj.close();
    this.#obj = undefined;
    this.log.info({ cleanup: opts.cleanup === true }, 'DNS capture closed');
  }
}
