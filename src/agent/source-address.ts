/**
 * Source address preservation: the agent delivers each inbound connection (HBONE, permitted
 * plaintext, and in-process delivery to a pod of this node) to the app with the client pod's own
 * address as the source, as ztunnel does, so apps log the real client and policies in the pod
 * can match on it. The app-facing socket is made inside the pod netns (src/ebpf/source-address.ts);
 * the pod netns gets a reply path for marked connections while it is enrolled.
 *
 * Invariants:
 * - Support is decided once at start-up (`start()`: can this process open IP_TRANSPARENT sockets?)
 *   and per pod when its listeners start (can its netns take the routing?). Whatever cannot
 *   preserve the source falls back to connecting from the node's netns, and says so: one log line
 *   at start-up or per pod, `ambit_source_address_preserved{pod}` 0, and every such connection
 *   counted in `ambit_source_address_fallbacks_total{pod,reason}`. Never silently.
 * - A failure of the app itself (refused, timed out) is reported as such, never retried from the
 *   node: a fallback only replaces a transparent socket that could not be set up.
 * - The reply routing of a pod netns is shared by every listener of that netns and removed only
 *   on un-enrollment, once the last connection that needs it (an open transparent socket) ended,
 *   so connections open across a release keep their reply path; connections made for the pod
 *   after that come from the node. An agent that stops or hands over leaves the routing to its
 *   successor (which adopts it: setting it up is idempotent).
 * - Listeners that are not in a pod netns (tests listening on an address, or a netns equal to the
 *   agent's own) never get routing: the agent's netns is never changed.
 */
import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import { connectTcp } from '../tunnel/server.js';
import {
  DEFAULT_SOURCE_ROUTING, NetnsHandle, TransparentSetupError, AppConnectError, ownNetnsIno, transparentUnsupported,
  type SourceRouting,
} from '../ebpf/source-address.js';
import type { ListenTarget } from './context.js';

export interface SourceAddressOptions {
  log: Logger;
  registry?: Registry;
  /** Preserve client addresses at all (default true); false connects from the node's netns. */
  enabled?: boolean;
  /** Mark, table and rule priority used in pod netns (default DEFAULT_SOURCE_ROUTING). */
  routing?: SourceRouting;
}

/** One listener's use of its pod's netns; `release()` once the listener is closed for good. */
export interface PodSourceUse {
  /** The pod is being un-enrolled: remove the routing once every listener is released. */
  requestTeardown(): void;
  release(): void;
}

interface NetnsEntry {
  netns: NetnsHandle;
  /** Listeners attached (released when closed for good). */
  users: number;
  /** Open transparent sockets into this netns. */
  active: number;
  /** Un-enrollment asked for the routing to go. */
  teardown: boolean;
  /** Routing removed (or being removed) and handle closed: no longer usable. */
  done: boolean;
  ipv6: boolean;
}

type Endpoint = { address: string; port: number };

export class SourceAddress {
  private readonly log: Logger;
  private readonly routing: SourceRouting;
  private unsupported: string | undefined = 'not started';
  private ownIno = -1;
  private readonly byIno = new Map<number, NetnsEntry>();
  /** Pod key -> the netns its listeners live in; absent: the pod falls back (`why`). */
  private readonly pods = new Map<string, { entry?: NetnsEntry; why?: string }>();
  private readonly warned = new Set<string>();
  private readonly preserved: Gauge<'pod'>;
  private readonly fallbacks: Counter<'pod' | 'reason'>;

  constructor(private readonly opts: SourceAddressOptions) {
    this.log = opts.log;
    this.routing = opts.routing ?? DEFAULT_SOURCE_ROUTING;
    const registers = opts.registry !== undefined ? [opts.registry] : [];
    this.preserved = new Gauge({ name: 'ambit_source_address_preserved', help: '1 when connections to this pod\'s apps carry the client\'s own address as the source, 0 when they come from the node (see the agent log for why)', labelNames: ['pod'], registers });
    this.fallbacks = new Counter({ name: 'ambit_source_address_fallbacks_total', help: 'Connections delivered to an app from the node\'s address instead of the client\'s, by pod and reason', labelNames: ['pod', 'reason'], registers });
  }

  /** Decides whether this agent can preserve source addresses at all; logs the answer once. */
  start(): void {
    if (this.opts.enabled === false) {
      this.unsupported = 'disabled by configuration';
    } else {
      this.unsupported = transparentUnsupported();
      try {
        this.ownIno = ownNetnsIno();
      } catch (err) {
        this.unsupported ??= `cannot read the agent's own netns: ${(err as Error).message}`;
      }
    }
    if (this.unsupported === undefined) {
      this.log.info({ mark: `0x${this.routing.mark.toString(16)}`, table: this.routing.table, priority: this.routing.priority }, 'source addresses preserved: apps see the client pod\'s address (transparent sockets in each pod netns)');
    } else {
      this.log.warn({ reason: this.unsupported }, 'source addresses NOT preserved: apps in enrolled pods see connections from the node\'s address; ambit_source_address_preserved is 0 and ambit_source_address_fallbacks_total counts them');
    }
  }

  /** A listener of `podKey` starts serving; `listen.fd` is a socket Capture made in the pod netns. */
  async attach(podKey: string, listen: ListenTarget): Promise<PodSourceUse> {
    const fd = (listen as { fd?: unknown }).fd;
    if (this.unsupported !== undefined) return this.fallBack(podKey, this.unsupported);
    if (typeof fd !== 'number') return this.fallBack(podKey, 'listener is not a socket made in the pod netns');
    let netns: NetnsHandle;
    try {
      netns = NetnsHandle.ofSocket(fd);
    } catch (err) {
      return this.fallBack(podKey, (err as Error).message);
    }
    if (netns.ino === this.ownIno) {
      netns.close();
      return this.fallBack(podKey, 'listener is in the agent\'s own netns, not a pod netns');
    }
    let entry = this.byIno.get(netns.ino);
    if (entry === undefined) {
      let ipv6: boolean;
      try {
        ({ ipv6 } = await netns.routing(this.routing, true));
      } catch (err) {
        netns.close();
        return this.fallBack(podKey, `the pod netns cannot take the reply routing: ${(err as Error).message}`);
      }
      // Another listener of the same netns may have won the race meanwhile.
      const raced = this.byIno.get(netns.ino);
      if (raced !== undefined) {
        netns.close();
        entry = raced;
      } else {
        entry = { netns, users: 0, active: 0, teardown: false, done: false, ipv6 };
        this.byIno.set(netns.ino, entry);
      }
    } else {
      netns.close();
    }
    entry.users++;
    entry.teardown = false;
    const e = entry;
    const had = this.pods.get(podKey);
    this.pods.set(podKey, { entry: e });
    this.preserved.set({ pod: podKey }, 1);
    if (had?.entry !== e) this.log.info({ pod: podKey, ipv6: e.ipv6 }, 'pod apps see client addresses (reply routing set up in the pod netns)');
    let released = false;
    return {
      requestTeardown: () => {
        e.teardown = true;
        this.maybeRemove(e, podKey);
      },
      release: () => {
        if (released) return;
        released = true;
        if (--e.users > 0 || e.done) return;
        if (e.teardown) { this.maybeRemove(e, podKey); return; }
        // Stopping (drain, hand-over): the routing stays for the successor.
        e.done = true;
        this.forget(e);
        e.netns.close();
      },
    };
  }

  /** Removes a released pod's routing once no transparent socket needs it any more. */
  private maybeRemove(e: NetnsEntry, podKey: string): void {
    if (!e.teardown || e.active > 0 || e.done) return;
    e.done = true;
    this.forget(e);
    e.netns.routing(this.routing, false)
      .then(() => this.log.info({ pod: podKey }, 'removed the source-address reply routing from the released pod\'s netns'))
      .catch((err: Error) => this.log.warn({ pod: podKey, err: err.message }, 'cannot remove the source-address reply routing from the pod netns (it only affects connections marked by the agent)'))
      .finally(() => e.netns.close());
  }

  private forget(e: NetnsEntry): void {
    if (this.byIno.get(e.netns.ino) === e) this.byIno.delete(e.netns.ino);
    for (const [k, p] of this.pods) if (p.entry === e) { this.pods.delete(k); this.preserved.remove({ pod: k }); }
  }

  /**
   * A connection to the app at `dst` in pod `podKey` for a client at `source`: from the client's
   * address when the pod supports it, else from the node (counted, logged once per pod and reason).
   */
  async connect(podKey: string, source: Endpoint, dst: Endpoint, timeoutMs: number): Promise<Socket> {
    const pod = this.pods.get(podKey);
    const entry = pod?.entry;
    if (entry === undefined) {
      this.fallbacks.inc({ pod: podKey, reason: pod?.why !== undefined ? 'unsupported' : 'not_attached' });
      return connectTcp({ host: dst.address, port: dst.port, family: dst.address.includes(':') ? 6 : 4 }, timeoutMs);
    }
    const family = (a: string) => (a.includes(':') && !a.startsWith('::ffff:') ? 6 : 4);
    const src = source.address.replace(/^::ffff:/, '');
    if (src === '' || family(src) !== family(dst.address)) {
      this.fellBack(podKey, 'family', `client address ${src || '(none)'} and app address ${dst.address} are of different families`);
    } else if (family(dst.address) === 6 && !entry.ipv6) {
      this.fellBack(podKey, 'no_ipv6_routing', 'the pod netns took the IPv4 reply routing only (IPv6 disabled, or its loopback down)');
    } else {
      try {
        entry.active++; // held from before the connect, so a teardown cannot slip in meanwhile
        let sock: Socket;
        try {
          sock = await entry.netns.connect(src, dst, this.routing.mark, timeoutMs);
        } catch (err) {
          entry.active--;
          this.maybeRemove(entry, podKey);
          throw err;
        }
        sock.once('close', () => { entry.active--; this.maybeRemove(entry, podKey); });
        sock.setNoDelay(true);
        sock.on('error', () => {}); // the splice attaches the real handler
        return sock;
      } catch (err) {
        if (err instanceof AppConnectError) throw err;
        if (!(err instanceof TransparentSetupError)) throw err;
        this.fellBack(podKey, err.errnoName, err.message);
      }
    }
    return connectTcp({ host: dst.address, port: dst.port, family: family(dst.address) }, timeoutMs);
  }

  /** Pods whose apps see client addresses (true) or the node's (false), for dumps. */
  status(): Record<string, boolean> {
    return Object.fromEntries([...this.pods].map(([k, p]) => [k, p.entry !== undefined]));
  }

  private fallBack(podKey: string, why: string): PodSourceUse {
    if (this.pods.get(podKey)?.entry === undefined) {
      this.pods.set(podKey, { why });
      this.preserved.set({ pod: podKey }, 0);
      if (this.unsupported === undefined || !this.warned.has(`attach:${podKey}`)) {
        this.warned.add(`attach:${podKey}`);
        this.log.warn({ pod: podKey, reason: why }, 'pod apps will see connections from the node\'s address, not the client\'s');
      }
    }
    return {
      requestTeardown() {},
      release: () => {
        if (this.pods.get(podKey)?.entry !== undefined || !this.pods.has(podKey)) return;
        this.pods.delete(podKey);
        this.preserved.remove({ pod: podKey });
      },
    };
  }

  private fellBack(podKey: string, reason: string, detail: string): void {
    this.fallbacks.inc({ pod: podKey, reason });
    const key = `${podKey}:${reason}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log.warn({ pod: podKey, reason: detail }, 'a connection to the app was delivered from the node\'s address: the transparent socket could not be set up (logged once per pod and reason)');
  }
}
