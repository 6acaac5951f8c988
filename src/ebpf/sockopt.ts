/**
 * `SO_ORIGINAL_DST` the way any proxy asks for it: a plain getsockopt(SOL_IP / SOL_IPV6, 80) on
 * the accepted socket. ambit's cgroup/getsockopt program answers it from the connection record when
 * the socket belongs to a cgroup under the capture's cgroup root (the agent's own, in a DaemonSet);
 * elsewhere the kernel's conntrack answers or the call reports "unknown" (null). Capture's
 * `originalDestination()` reads the record directly and works wherever the agent runs.
 */
import type { Socket } from 'node:net';
import { addon } from './native.js';
import { CaptureError, fromNative } from './errors.js';

export function soOriginalDst(socket: Socket): { address: string; port: number; family: 4 | 6 } | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new CaptureError('AMBIT_ERR_EBPF_NOT_A_SOCKET', 'SO_ORIGINAL_DST needs a connected TCP socket with an fd');
  }
  const family = socket.localAddress !== undefined && socket.localAddress.includes(':') && !socket.localAddress.startsWith('::ffff:') ? 6 : 4;
  try {
    return addon().originalDst(fd, family);
  } catch (err) {
    throw fromNative(err, 'getsockopt(SO_ORIGINAL_DST)');
  }
}
