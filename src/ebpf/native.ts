/**
 * The one importer of the native addon (native/build/Release/ambit_native.node). It declares the
 * addon's surface as TypeScript types and loads it lazily, so modules that never capture never load
 * native code. Everything else in src/ebpf/ goes through `addon()`; nothing outside src/ebpf/ may.
 *
 * The addon deals in raw fds (numbers) and Buffers; ownership of every fd it returns passes to the
 * caller, who closes it with `closeFd` (or hands it to net.Server.listen({ fd })).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AddonUnavailableError } from './errors.js';

export interface NativeProgramSpec {
  name: string;
  section: string;
  type: string;
  expectedAttachType: string;
  instructions: number;
}

export interface NativeMapSpec {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  internal: boolean;
  pinPath?: string;
}

export interface NativeBpfObject {
  programs(): NativeProgramSpec[];
  maps(): NativeMapSpec[];
  setMaxEntries(map: string, maxEntries: number): void;
  load(): Promise<void>;
  programFd(name: string): number;
  mapFd(name: string): number;
  close(): void;
}

export interface NativeLinkInfo {
  id: number;
  progId: number;
  type: string;
  cgroupId?: bigint;
  netnsIno?: number;
  attachType?: string;
}

export interface NativeMapInfo {
  id: number;
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface NativeProbe {
  progTypes: Record<string, boolean>;
  mapTypes: Record<string, boolean>;
  permission: boolean;
  kernelRelease: string;
}

export interface ListenSpec {
  host: string;
  port: number;
  /** listen(2) backlog (default 4096). */
  backlog?: number;
  /** When true a failure yields fd -1 and a reason instead of failing the call (default false). */
  optional?: boolean;
  /** A bound UDP socket (SO_REUSEPORT, no listen) instead of a TCP listener (default false). */
  udp?: boolean;
}

export interface NativeAddon {
  BpfObject: new (path: string, opts: { pinRoot?: string }) => NativeBpfObject;
  attachCgroup(progFd: number, cgroupPath: string, attachType: string): number;
  attachNetns(progFd: number, netnsPath: string): number;
  /** tcx link of a SCHED_CLS program on a device of the calling netns (Linux 6.6+). */
  attachTcx(progFd: number, ifname: string, direction: 'ingress' | 'egress'): { linkFd: number; ifindex: number };
  /** Device a tcx link is attached to; 0 once the device is gone. */
  tcxLinkIfindex(linkFd: number): number;
  linkUpdate(linkFd: number, progFd: number): void;
  linkDetach(linkFd: number): void;
  linkInfo(linkFd: number): NativeLinkInfo;
  progInfo(progFd: number): { id: number; name: string; type: string; tag: string };
  mapInfo(mapFd: number): NativeMapInfo;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  closeFd(fd: number): void;
  mapLookup(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
  mapUpdate(mapFd: number, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(mapFd: number, key: Buffer): boolean;
  mapKeys(mapFd: number, keySize: number): Buffer[];
  sockmapInsert(mapFd: number, key: Buffer, socketFd: number): void;
  numPossibleCpus(): number;
  probeFeatures(): NativeProbe;
  listenInNetns(netnsPath: string, specs: ListenSpec[]): Promise<{ netnsCookie: bigint; fds: number[]; skipped: (string | null)[] }>;
  netnsCookie(netnsPath: string): Promise<bigint>;
  socketCookie(fd: number): bigint;
  socketNetnsCookie(fd: number): bigint;
  originalDst(fd: number, family: 4 | 6): { family: 4 | 6; address: string; port: number } | null;
  cgroupId(cgroupPath: string): bigint;
  fsMagic(path: string): number;
  mountBpffs(path: string): void;
  /** native/src/fd_passing.cc: SCM_RIGHTS over a unix stream socket (agent upgrade handover). */
  unixConnect(path: string): number;
  sendFds(sockFd: number, data: Buffer, fds: number[], timeoutMs?: number): Promise<void>;
  recvFds(sockFd: number, timeoutMs?: number): Promise<{ data: Buffer; fds: number[] }>;
  /** native/src/source_address.cc: delivering to an app with the client's address as the source. */
  transparentProbe(): string | null;
  socketNetns(fd: number): { fd: number; ino: number };
  sourceRouting(netnsFd: number, opts: { mark: number; mask?: number; table: number; priority: number; enable: boolean }): Promise<{ ipv6: boolean }>;
  transparentConnect(netnsFd: number, source: string, destination: string, port: number, mark: number, timeoutMs?: number): Promise<number>;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the addon is built (AMBIT_NATIVE_ADDON overrides, for packaging). */
export const ADDON_PATH = process.env['AMBIT_NATIVE_ADDON'] ?? join(root, 'native', 'build', 'Release', 'ambit_native.node');

/** Where the BPF objects are built. */
export const BPF_OUTPUT_DIR = join(root, 'bpf', '.output');

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use; AddonUnavailableError when it was not built. */
export function addon(): NativeAddon {
  if (loaded === undefined) {
    if (!existsSync(ADDON_PATH)) throw new AddonUnavailableError(ADDON_PATH, new Error('file not found'));
    try {
      loaded = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
    } catch (err) {
      throw new AddonUnavailableError(ADDON_PATH, err);
    }
  }
  return loaded;
}
