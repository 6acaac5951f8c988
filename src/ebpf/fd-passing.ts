/**
 * Passing open file descriptors to an unrelated process over a unix socket (SCM_RIGHTS), the one
 * thing Node's IPC cannot do outside child_process: an upgraded agent is not its predecessor's
 * child. Typed wrapper over native/src/fd_passing.cc; used by src/agent/handover.ts.
 *
 * Invariants: fds sent stay open in the sender (the receiver gets duplicates of the same open
 * file descriptions, so a listening socket keeps its accept queue); fds received belong to the
 * caller and are close-on-exec; a failed receive hands out nothing (what arrived is closed).
 */
import type { Server, Socket } from 'node:net';
import { addon } from './native.js';
import { CaptureError, fromNative } from './errors.js';

/** A connected AF_UNIX stream socket to `path`, as a raw fd (close it with closeFd). */
export function unixConnect(path: string): number {
  try {
    return addon().unixConnect(path);
  } catch (err) {
    throw fromNative(err, `connect to ${path}`);
  }
}

/** Sends `data` with `fds` attached on a connected unix stream socket (default timeout 5 s). */
export async function sendFds(sockFd: number, data: Buffer, fds: number[], timeoutMs = 5000): Promise<void> {
  try {
    await addon().sendFds(sockFd, data, fds, timeoutMs);
  } catch (err) {
    throw fromNative(err, 'send fds (SCM_RIGHTS)');
  }
}

/** Receives bytes and fds until the peer closes (default timeout 5 s). */
export async function recvFds(sockFd: number, timeoutMs = 5000): Promise<{ data: Buffer; fds: number[] }> {
  try {
    return await addon().recvFds(sockFd, timeoutMs);
  } catch (err) {
    throw fromNative(err, 'receive fds (SCM_RIGHTS)');
  }
}

/** Closes a raw fd (one received, or one a failed hand-over leaves over). */
export function closeFd(fd: number): void {
  try { addon().closeFd(fd); } catch { /* already closed */ }
}

/** The fd under a listening net.Server or a connected net.Socket (Linux libuv handles expose it). */
export function handleFd(h: Server | Socket): number {
  const fd = (h as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new CaptureError('AMBIT_ERR_EBPF_NOT_A_SOCKET', 'this server or socket has no fd (not listening, closed, or not a libuv stream)');
  return fd;
}
