/**
 * Zero-downtime upgrade (docs/operations.md#upgrades): a second agent started for the same node
 * with the same `--state-dir` takes the listening sockets of the running one, so no connect is ever
 * refused.
 *
 *   old agent                                   new agent
 *   listens on <state-dir>/handover.sock
 *                                                connects, sends {"hello":"ambit-handover",node,pid}
 *   closes handover.sock (unlinks it), replies
 *   [u32 LE length][JSON offer] + SCM_RIGHTS fds
 *   and hangs up                                 receives until EOF, adopts the pins, serves the
 *   readiness says "handed over" (503)           same sockets (net.Server.listen({ fd })), then
 *   still accepts on every socket until SIGTERM  listens on handover.sock itself
 *   SIGTERM: stops accepting, drains, exits      (ready: the only one answering readiness 200)
 *
 * What is handed over: every enrolled pod's listeners (127.0.0.1:15001, [::1]:15001,
 * 127.0.0.1:15006, 127.0.0.1:15008 in the pod netns) and the node-netns listeners (admin 15000,
 * metrics 15020, readiness 15021). Handing over, rather than SO_REUSEPORT, keeps one accept
 * queue per socket: nothing queued in the old agent's backlog is lost when it closes its copy,
 * and sk_lookup's sockmap keeps pointing at the very socket both agents accept from. (Reuseport
 * groups would also let a stray process on the node join the agent's ports.)
 *
 * Invariants:
 * - The sockets are duplicates of the same open file descriptions: either agent may accept from
 *   them; a socket lives while one agent holds it, so the old agent closing its copies (drain)
 *   never refuses a connect.
 * - An agent hands over at most once; afterwards it changes no capture state (enrollment is
 *   frozen) so it never releases a pod the new agent serves.
 * - A stale socket file (the previous agent crashed) is removed and start-up continues: capture
 *   is then re-adopted from pins and fresh listeners are made (crash restart, item 4).
 * - The wire format is versioned; a request for another node is refused (wrong --state-dir).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../util/log.js';
import { closeFd, handleFd, recvFds, sendFds, unixConnect } from '../ebpf/fd-passing.js';

/** File name of the hand-over socket in the state dir. */
export const HANDOVER_SOCKET = 'handover.sock';

const VERSION = 1;
const HELLO = 'ambit-handover';

/** A pod's listener fds (what Capture.enroll made), as offered and as received. */
export interface PodListenerFds {
  outbound: number;
  outbound6?: number;
  inboundPlain: number;
  inboundHbone: number;
}

export type NodePort = 'admin' | 'metrics' | 'readiness';

/** What a running agent offers: its pods' listeners and its node-netns servers. */
export interface HandoverOffer {
  pods: { id: string; fds: PodListenerFds }[];
  node: Partial<Record<NodePort, Server>>;
}

interface WireOffer {
  version: number;
  node: string;
  pid: number;
  pods: { id: string; fds: Record<string, number> }[];
  nodePorts: Partial<Record<NodePort, number>>;
}

/** Sockets received from the previous agent; whatever is not taken is closed by `closeRest()`. */
export class InheritedListeners {
  constructor(readonly fromPid: number, private readonly pods: Map<string, PodListenerFds>, private readonly node: Map<NodePort, number>) {}

  get podCount(): number { return this.pods.size; }

  /** The listeners of a pod (once: the caller owns them). */
  takePod(id: string): PodListenerFds | undefined {
    const l = this.pods.get(id);
    this.pods.delete(id);
    return l;
  }

  /** A node-netns listener fd (once). */
  takeNode(name: NodePort): number | undefined {
    const fd = this.node.get(name);
    this.node.delete(name);
    return fd;
  }

  /** Closes the pods' listeners `keep` says no to. Returns their ids. */
  closeUnless(keep: (id: string) => boolean): string[] {
    const ids = [...this.pods.keys()].filter((id) => !keep(id));
    for (const id of ids) {
      const l = this.pods.get(id);
      this.pods.delete(id);
      if (l !== undefined) for (const fd of [l.outbound, l.outbound6, l.inboundPlain, l.inboundHbone]) if (fd !== undefined) closeFd(fd);
    }
    return ids;
  }

  /** Closes what nobody took (pods no longer wanted). Returns their ids. */
  closeRest(): string[] {
    const ids = [...this.pods.keys()];
    for (const l of this.pods.values()) for (const fd of [l.outbound, l.outbound6, l.inboundPlain, l.inboundHbone]) if (fd !== undefined) closeFd(fd);
    for (const fd of this.node.values()) closeFd(fd);
    this.pods.clear();
    this.node.clear();
    return ids;
  }
}

/**
 * Asks the agent running for `node` (if any) for its listeners. Undefined when none runs (no
 * socket, or a stale one from a crash, which is removed) or when it does not answer in time.
 */
export async function takeOver(path: string, node: string, log: Logger, timeoutMs = 5000): Promise<InheritedListeners | undefined> {
  if (!existsSync(path)) return undefined;
  let fd: number;
  try {
    fd = unixConnect(path);
  } catch (err) {
    const code = (err as { errnoName?: string }).errnoName;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      try { unlinkSync(path); } catch { /* gone */ }
      log.info({ path }, 'no running agent behind the hand-over socket (previous agent crashed?); starting fresh');
    } else {
      log.warn({ path, err: (err as Error).message }, 'cannot reach the running agent for a hand-over; starting fresh');
    }
    return undefined;
  }
  try {
    await sendFds(fd, Buffer.from(JSON.stringify({ hello: HELLO, version: VERSION, node, pid: process.pid }) + '\n'), [], timeoutMs);
    const { data, fds } = await recvFds(fd, timeoutMs);
    const len = data.length >= 4 ? data.readUInt32LE(0) : 0;
    let offer: WireOffer;
    try {
      offer = JSON.parse(data.subarray(4, 4 + len).toString('utf8')) as WireOffer;
      if (offer.version !== VERSION || offer.node !== node) throw new Error(`offer for node ${offer.node} version ${offer.version}`);
    } catch (err) {
      for (const f of fds) closeFd(f);
      log.warn({ path, err: (err as Error).message }, 'the running agent refused or garbled the hand-over; starting fresh');
      return undefined;
    }
    const at = (i: number | undefined): number | undefined => (i === undefined ? undefined : fds[i]);
    const pods = new Map<string, PodListenerFds>();
    for (const p of offer.pods) {
      const outbound = at(p.fds['outbound']);
      const inboundPlain = at(p.fds['inboundPlain']);
      const inboundHbone = at(p.fds['inboundHbone']);
      const outbound6 = at(p.fds['outbound6']);
      if (outbound === undefined || inboundPlain === undefined || inboundHbone === undefined) continue;
      pods.set(p.id, { outbound, inboundPlain, inboundHbone, ...(outbound6 !== undefined ? { outbound6 } : {}) });
    }
    const nodeFds = new Map<NodePort, number>();
    for (const [k, i] of Object.entries(offer.nodePorts)) {
      const f = at(i);
      if (f !== undefined) nodeFds.set(k as NodePort, f);
    }
    log.info({ fromPid: offer.pid, pods: pods.size, nodePorts: [...nodeFds.keys()], fds: fds.length }, 'took over the listeners of the running agent');
    return new InheritedListeners(offer.pid, pods, nodeFds);
  } catch (err) {
    log.warn({ path, err: (err as Error).message }, 'hand-over from the running agent failed; starting fresh');
    return undefined;
  } finally {
    closeFd(fd);
  }
}

/**
 * The running agent's side: serves one hand-over on `path`, then closes (a successor owns the
 * path from then on). `offer` is read at request time; `onHandedOver` runs once the fds left.
 */
export class HandoverServer {
  private server: Server | undefined;
  private done = false;

  constructor(private readonly opts: { path: string; node: string; log: Logger; offer: () => HandoverOffer; onHandedOver: (pid: number) => void }) {}

  async listen(): Promise<void> {
    mkdirSync(dirname(this.opts.path), { recursive: true });
    try { unlinkSync(this.opts.path); } catch { /* none */ }
    const server = createServer({ pauseOnConnect: false }, (sock) => this.serve(sock));
    server.on('error', (err) => this.opts.log.warn({ err: err.message }, 'hand-over socket failed'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.path, () => { server.off('error', reject); resolve(); });
    });
    server.unref();
    this.server = server;
  }

  private serve(sock: Socket): void {
    let buf = '';
    sock.on('error', () => {});
    sock.setTimeout(5000, () => sock.destroy());
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) { if (buf.length > 4096) sock.destroy(); return; }
      sock.off('data', onData);
      sock.pause();
      void this.answer(sock, buf.slice(0, nl));
    };
    sock.on('data', onData);
  }

  private async answer(sock: Socket, line: string): Promise<void> {
    let req: { hello?: string; version?: number; node?: string; pid?: number };
    try { req = JSON.parse(line) as typeof req; } catch { sock.destroy(); return; }
    if (req.hello !== HELLO || req.version !== VERSION || req.node !== this.opts.node || this.done) {
      this.opts.log.warn({ request: req }, 'refused a hand-over request (other node, other version, or already handed over)');
      sock.destroy();
      return;
    }
    this.done = true;
    const offer = this.opts.offer();
    const fds: number[] = [];
    const idx = (fd: number) => { fds.push(fd); return fds.length - 1; };
    const wire: WireOffer = { version: VERSION, node: this.opts.node, pid: process.pid, pods: [], nodePorts: {} };
    for (const p of offer.pods) {
      const f: Record<string, number> = { outbound: idx(p.fds.outbound), inboundPlain: idx(p.fds.inboundPlain), inboundHbone: idx(p.fds.inboundHbone) };
      if (p.fds.outbound6 !== undefined) f['outbound6'] = idx(p.fds.outbound6);
      wire.pods.push({ id: p.id, fds: f });
    }
    for (const [name, s] of Object.entries(offer.node) as [NodePort, Server][]) {
      try { wire.nodePorts[name] = idx(handleFd(s)); } catch { /* not listening */ }
    }
    // The path becomes the successor's: close (libuv unlinks it) before the successor listens.
    this.close();
    const json = Buffer.from(JSON.stringify(wire), 'utf8');
    const head = Buffer.alloc(4);
    head.writeUInt32LE(json.length, 0);
    try {
      await sendFds(handleFd(sock), Buffer.concat([head, json]), fds);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'hand-over failed while sending the listeners');
      sock.destroy();
      return;
    }
    sock.destroy();
    this.opts.log.info({ toPid: req.pid, pods: wire.pods.length, nodePorts: Object.keys(wire.nodePorts) }, 'handed the listeners over to a new agent; serving until SIGTERM, then draining');
    this.opts.onHandedOver(req.pid ?? 0);
  }

  close(): void {
    this.server?.close();
    this.server = undefined;
  }
}

/** Serves an HTTP (or any net) server on an inherited listening fd. */
export function listenOnFd(s: Server, fd: number): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen({ fd }, () => {
      s.off('error', reject);
      const a = s.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    });
  });
}
