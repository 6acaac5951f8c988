/**
 * Connections to an app that carry the client's own address as their source (as ztunnel's do):
 * typed wrapper over native/src/source_address.cc. The socket is created inside the app's pod
 * netns with IP_TRANSPARENT and a mark, bound to the client address (port chosen at connect);
 * the pod netns routes replies to marked connections back over its loopback (a fwmark rule, a
 * `local default dev lo` route in a table of its own, and tcp_fwmark_accept so the app's accepted
 * socket inherits the mark). Used by src/agent/source-address.ts.
 *
 * Invariants: every netns handle has close(); a netns is only ever entered on a fresh native
 * thread; a connect failure of the app itself (refused, timed out) is an `AppConnectError`, a
 * failure to set the transparent socket up is a `TransparentSetupError`, so callers can fall back
 * on the second and never on the first.
 */
import { Socket } from 'node:net';
import { openSync, closeSync, fstatSync } from 'node:fs';
import { AmbitError } from '../util/errors.js';
import { addon } from './native.js';
import { fromNative, type NativeErrorShape } from './errors.js';

/** The routing that makes replies to marked connections stay in the pod netns. */
export interface SourceRouting {
  /** Socket mark of the agent's app-facing sockets (default 0xab17). */
  mark: number;
  /** Bits of the mark the rule matches (default 0xffff). */
  mask: number;
  /** Routing table holding `local default dev lo` (default 43799 = 0xab17). */
  table: number;
  /** Priority of the fwmark rule (default 1500: after `local`, before `main`). */
  priority: number;
}

export const DEFAULT_SOURCE_ROUTING: SourceRouting = { mark: 0xab17, mask: 0xffff, table: 0xab17, priority: 1500 };

/** The app refused or did not answer: a real upstream failure (never a reason to fall back). */
export class AppConnectError extends AmbitError {
  readonly errnoName: string;
  constructor(message: string, native: NativeErrorShape, options?: { cause?: unknown }) {
    super('AMBIT_ERR_SOURCE_CONNECT', message, options);
    this.name = 'AppConnectError';
    this.errnoName = native.code ?? 'EINVAL';
  }
}

/** The transparent socket could not be set up (privilege, address, netns): fall back. */
export class TransparentSetupError extends AmbitError {
  readonly errnoName: string;
  constructor(message: string, native: NativeErrorShape, options?: { cause?: unknown }) {
    super('AMBIT_ERR_SOURCE_SETUP', message, options);
    this.name = 'TransparentSetupError';
    this.errnoName = native.code ?? 'EINVAL';
  }
}

/**
 * Why this process cannot open transparent sockets (e.g. 'EPERM: needs CAP_NET_ADMIN'), or
 * undefined when it can.
 */
export function transparentUnsupported(): string | undefined {
  let r: string | null;
  try {
    r = addon().transparentProbe();
  } catch (err) {
    return `native addon unavailable (${(err as Error).message})`;
  }
  if (r === null) return undefined;
  return r === 'EPERM' ? 'EPERM: IP_TRANSPARENT and SO_MARK need CAP_NET_ADMIN' : `${r} from setsockopt(IP_TRANSPARENT)`;
}

/** The inode of this process's own netns (to tell a pod netns from the agent's). */
export function ownNetnsIno(): number {
  const fd = openSync('/proc/self/ns/net', 'r');
  try {
    return fstatSync(fd).ino;
  } finally {
    closeSync(fd);
  }
}

/** An open handle on the netns a socket lives in (the pod's, for a listener Capture made). */
export class NetnsHandle {
  private constructor(readonly fd: number, readonly ino: number) {}

  static ofSocket(fd: number): NetnsHandle {
    try {
      const r = addon().socketNetns(fd);
      return new NetnsHandle(r.fd, r.ino);
    } catch (err) {
      throw fromNative(err, 'netns of a listener (ioctl SIOCGSKNS)');
    }
  }

  /** Adds (`enable`) or removes the reply routing inside this netns; idempotent. */
  async routing(r: SourceRouting, enable: boolean): Promise<{ ipv6: boolean }> {
    try {
      return await addon().sourceRouting(this.fd, { ...r, enable });
    } catch (err) {
      throw fromNative(err, `${enable ? 'add' : 'remove'} the source-address reply routing (fwmark rule, local route, tcp_fwmark_accept)`);
    }
  }

  /** A TCP connection to `dst` from `source` (any address), made inside this netns. */
  async connect(source: string, dst: { address: string; port: number }, mark: number, timeoutMs: number): Promise<Socket> {
    let fd: number;
    try {
      fd = await addon().transparentConnect(this.fd, source, dst.address, dst.port, mark, timeoutMs);
    } catch (err) {
      const n = err as NativeErrorShape;
      const what = `connect to ${dst.address}:${dst.port} as ${source}`;
      if (n.syscall === 'connect' || n.syscall === 'poll') throw new AppConnectError(`${what}: ${n.message}`, n, { cause: err });
      throw new TransparentSetupError(`${what}: ${n.message}`, n, { cause: err });
    }
    const sock = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    return sock;
  }

  close(): void {
    try { addon().closeFd(this.fd); } catch { /* already closed */ }
  }
}
