/**
 * The Discovery.Stream handler: one Session per connected subscriber.
 *
 * Invariants kept per session:
 * - Nothing is pushed before a successful Hello, and nothing before the first snapshot is ready.
 * - The first push is a full view, or a delta since the subscriber's resume version when it
 *   names the current epoch and the table still has the history; every later push is a delta
 *   whose `base_version` is the version of the previous push on this stream.
 * - Global resources go to everyone; scoped resources (policies, routes) are tracked per session
 *   in `scopedSent`, so a policy leaving a node's scope is removed from that node only.
 * - A resumed session resends its (small) scoped set with `replace_kinds`, since what the
 *   subscriber held before the reconnect is not known.
 * - Every push is written as bytes built by the service's PushEncoder: each resource is
 *   serialized once and shared by every push that carries it, the global part of a full view
 *   once per table version, and a delta with no scoped part once per change and base version.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import type { Authenticator } from './auth.js';
import type { ControlMetrics } from './metrics.js';
import { protos, type DiscoveryRequest__Output, type DiscoveryResponse, type ResourceRef } from './proto.js';
import { PushEncoder, type PushHeader } from './push-encoder.js';
import type { ChangeSet, ResourceTable, TableEntry } from './resource-table.js';
import { GLOBAL_KINDS, SCOPED_KINDS, splitKey } from './mesh-resource.js';
import { contextFingerprint, scopedView, selects, viewContext, type SubscriberId, type ViewContext } from './views.js';
import { PermissionDeniedError, UnauthenticatedError } from './errors.js';

/** Writes take a message, or its encoding when several subscribers share one (see discoveryServiceDefinition). */
type Call = grpc.ServerDuplexStream<DiscoveryRequest__Output, DiscoveryResponse | Buffer>;

export interface DiscoveryServiceOptions {
  table: ResourceTable;
  authenticator: Authenticator;
  metrics: ControlMetrics;
  /**
   * Full views being sent at once (default 4). A full view of a large mesh is megabytes once
   * serialized; when a restarted control plane meets every subscriber at once, sending them all
   * together would hold hundreds of megabytes of buffers. Later subscribers wait their turn (a
   * slot frees when the subscriber acks its view or leaves).
   */
  maxConcurrentFullViews?: number;
  /** How long a new stream may take to send its hello, ms (default 10000). */
  helloTimeoutMs?: number;
  /** Parent logger (default: the root logger). */
  logger?: Logger;
}

/** A subscriber as shown on /config_dump. */
export interface SessionInfo {
  kind: string;
  name: string;
  peer: string;
  version: number;
  acked: number;
  nacked?: { version: number; error: string };
  connectedAt: string;
}

export class DiscoveryService {
  private readonly sessions = new Set<Session>();
  private readonly waiting = new Set<Session>();
  private ready = false;
  private closing = false;
  private fullViewSlots: number;
  private readonly fullViewQueue: Session[] = [];
  readonly log: Logger;
  /** Encodes pushes once and shares the bytes among sessions. */
  readonly encoder = new PushEncoder(encodeResponse);

  constructor(readonly opts: DiscoveryServiceOptions) {
    this.log = childLogger('control.discovery', opts.logger);
    this.fullViewSlots = opts.maxConcurrentFullViews ?? 4;
  }

  /** Run `s.sendInitial()` when a full-view slot is free. */
  _queueInitial(s: Session): void {
    if (this.fullViewSlots > 0) { this.fullViewSlots--; s.holdsSlot = true; s.sendInitial(); return; }
    this.fullViewQueue.push(s);
  }

  /** A session is done with its full view (acked or gone): give the slot to the next in line. */
  _releaseSlot(s: Session): void {
    if (!s.holdsSlot) return;
    s.holdsSlot = false;
    for (;;) {
      const next = this.fullViewQueue.shift();
      if (next === undefined) { this.fullViewSlots++; return; }
      if (!this.sessions.has(next)) continue;
      next.holdsSlot = true;
      next.sendInitial();
      return;
    }
  }

  /** grpc-js handlers for ambit.v1.Discovery. */
  handlers(): grpc.UntypedServiceImplementation {
    return { Stream: (call: Call) => this.onStream(call) };
  }

  /** The first snapshot is in the table: serve subscribers that were waiting for it. */
  markReady(): void {
    if (this.ready) return;
    this.ready = true;
    for (const s of this.waiting) this._queueInitial(s);
    this.waiting.clear();
  }

  /** Push one applied change set to every session. */
  publish(cs: ChangeSet): void {
    if (!this.ready) return;
    // Subscribers at the same base version whose push has no scoped part get byte-identical
    // messages: encode those once per change, not once per subscriber.
    const shared = new Map<number, Buffer>();
    for (const s of this.sessions) if (s.started) s.onChange(cs, shared);
  }

  sessionInfo(): SessionInfo[] {
    return [...this.sessions].filter((s) => s.sub !== undefined).map((s) => s.info());
  }

  get sessionCount(): number { return this.sessions.size; }

  /** Stop accepting subscribers and end every stream with UNAVAILABLE so they reconnect elsewhere. */
  closeAll(reason = 'control plane shutting down'): void {
    this.closing = true;
    for (const s of [...this.sessions]) s.end(grpc.status.UNAVAILABLE, reason);
  }

  private onStream(call: Call): void {
    if (this.closing) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down' });
      return;
    }
    const s = new Session(this, call);
    this.sessions.add(s);
    const helloTimer = setTimeout(() => {
      if (!s.started) s.end(grpc.status.DEADLINE_EXCEEDED, 'no hello within the allowed time');
    }, this.opts.helloTimeoutMs ?? 10_000);
    helloTimer.unref();
    const cleanup = () => {
      clearTimeout(helloTimer);
      if (!this.sessions.delete(s)) return;
      this.waiting.delete(s);
      this._releaseSlot(s);
      if (s.sub !== undefined && s.started) this.opts.metrics.subscribers.dec({ kind: s.sub.kind });
      this.log.debug({ subscriber: s.sub, peer: call.getPeer() }, 'subscriber disconnected');
    };
    call.on('data', (m: DiscoveryRequest__Output) => { s.onMessage(m); });
    call.on('end', () => { s.end(grpc.status.OK, 'bye'); cleanup(); });
    call.on('cancelled', cleanup);
    call.on('close', cleanup);
    call.on('error', cleanup);
  }

  /** Used by sessions. */
  _start(s: Session): void {
    this.opts.metrics.subscribers.inc({ kind: s.sub?.kind ?? 'unknown' });
    if (this.ready) this._queueInitial(s); else this.waiting.add(s);
  }
  _isOpen(s: Session): boolean { return this.sessions.has(s); }
}

type StreamMethod = grpc.MethodDefinition<unknown, DiscoveryResponse>;

function streamMethod(): StreamMethod {
  return protos().discovery.ambit.v1.Discovery.service['Stream'] as unknown as StreamMethod;
}

function encodeResponse(m: DiscoveryResponse): Buffer {
  return streamMethod().responseSerialize(m);
}

/**
 * The Discovery service definition for grpc-js, with a response serializer that passes
 * already-encoded messages through (see DiscoveryService.publish).
 */
export function discoveryServiceDefinition(): grpc.ServiceDefinition {
  const def = protos().discovery.ambit.v1.Discovery.service;
  const stream = streamMethod();
  return {
    ...def,
    Stream: { ...stream, responseSerialize: (v: DiscoveryResponse | Buffer) => (Buffer.isBuffer(v) ? v : stream.responseSerialize(v)) },
  } as grpc.ServiceDefinition;
}

class Session {
  sub: SubscriberId | undefined;
  started = false;
  /** Holds one of the service's full-view slots until its initial view is acked. */
  holdsSlot = false;
  private initialVersion = -1;
  private helloSeen = false;
  private version = 0;
  private acked = 0;
  private nacked: { version: number; error: string } | undefined;
  private resume: { epoch: string; version: number } | undefined;
  private ctx: ViewContext | undefined;
  private ctxPrint = '';
  private scopedSent = new Map<string, TableEntry>();
  private readonly pending = new Map<number, number>();
  private readonly connectedAt = new Date();
  private ended = false;

  constructor(private readonly svc: DiscoveryService, private readonly call: Call) {}

  info(): SessionInfo {
    return {
      kind: this.sub?.kind ?? 'unknown', name: this.sub?.name ?? '', peer: this.call.getPeer(),
      version: this.version, acked: this.acked, ...(this.nacked ? { nacked: this.nacked } : {}),
      connectedAt: this.connectedAt.toISOString(),
    };
  }

  onMessage(m: DiscoveryRequest__Output): void {
    if (this.ended) return;
    if (m.hello) {
      if (this.helloSeen) { this.end(grpc.status.INVALID_ARGUMENT, 'hello sent twice on one stream'); return; }
      this.helloSeen = true;
      void this.onHello(m.hello);
      return;
    }
    if (!this.helloSeen) { this.end(grpc.status.INVALID_ARGUMENT, 'the first message on a discovery stream must be a hello'); return; }
    if (m.ack) this.onAck(m.ack.version);
    else if (m.nack) this.onNack(m.nack.version, m.nack.error);
  }

  private async onHello(h: NonNullable<DiscoveryRequest__Output['hello']>): Promise<void> {
    const kind = h.kind === 'AGENT' ? 'agent' : h.kind === 'WAYPOINT' ? 'waypoint' : undefined;
    if (kind === undefined || h.name === '') {
      this.end(grpc.status.INVALID_ARGUMENT, 'hello must name the subscriber kind (AGENT or WAYPOINT) and its name');
      return;
    }
    const claimed: SubscriberId = { kind, name: h.name };
    try {
      const p = await this.svc.opts.authenticator.authenticate(h.token, claimed);
      this.sub = { kind: p.kind, name: p.name };
    } catch (err) {
      const code = err instanceof UnauthenticatedError ? grpc.status.UNAUTHENTICATED
        : err instanceof PermissionDeniedError ? grpc.status.PERMISSION_DENIED : grpc.status.UNAVAILABLE;
      this.svc.opts.metrics.authFailures.inc({ service: 'discovery' });
      this.svc.log.warn({ subscriber: claimed, peer: this.call.getPeer(), err: (err as Error).message }, 'discovery subscriber refused');
      this.end(code, (err as Error).message);
      return;
    }
    if (!this.svc._isOpen(this)) return;
    if (h.resumeEpoch !== '' && h.resumeVersion > 0) this.resume = { epoch: h.resumeEpoch, version: h.resumeVersion };
    this.svc.log.info({ subscriber: this.sub, peer: this.call.getPeer(), resume: this.resume }, 'subscriber connected');
    this.started = true;
    this.svc._start(this);
  }

  sendInitial(): void {
    if (this.ended || this.sub === undefined) { this.svc._releaseSlot(this); return; }
    const table = this.svc.opts.table;
    this.initialVersion = table.version;
    this.ctx = viewContext(table, this.sub);
    this.ctxPrint = contextFingerprint(this.ctx);
    const scoped = scopedView(table, this.ctx);
    this.scopedSent = scoped;
    const r = this.resume;
    const since = r !== undefined && r.epoch === table.epoch ? table.changedSince(r.version) : undefined;
    const enc = this.svc.encoder;
    const scopedEntries = [...scoped.values()];
    const now = Date.now();
    if (r !== undefined && since !== undefined && since.size <= table.size / 2) {
      const upserts: Buffer[] = [];
      const removals: ResourceRef[] = [];
      for (const key of since) {
        const { kind, name } = splitKey(key);
        if (!GLOBAL_KINDS.has(kind)) continue;
        const e = table.get(key);
        if (e !== undefined) upserts.push(enc.entry(e)); else removals.push({ kind, name });
      }
      for (const e of scopedEntries) upserts.push(enc.entry(e));
      const header: PushHeader = { epoch: table.epoch, version: table.version, changedAtMs: now, full: false, baseVersion: r.version, removals, replaceKinds: [...SCOPED_KINDS] };
      this.push(enc.encode(header, upserts), table.version, now, 'resume');
      return;
    }
    const header: PushHeader = { epoch: table.epoch, version: table.version, changedAtMs: now, full: true, baseVersion: 0, removals: [] };
    this.push(enc.encode(header, [enc.globalView(table).bytes, ...scopedEntries.map((e) => enc.entry(e))]), table.version, now, 'full');
  }

  onChange(cs: ChangeSet, shared?: Map<number, Buffer>): void {
    if (this.ended || this.sub === undefined || this.ctx === undefined) return;
    const sub = this.sub;
    const upserts: TableEntry[] = [];
    const removals: ResourceRef[] = [];
    const scopedChanged: string[] = [];
    let ctxTouched = false;
    for (const c of cs.changes) {
      if (GLOBAL_KINDS.has(c.kind)) {
        if (c.after !== undefined) upserts.push(c.after); else removals.push({ kind: c.kind, name: c.name });
        if (sub.kind === 'agent') {
          if (c.before?.resource.workload?.node === sub.name || c.after?.resource.workload?.node === sub.name) ctxTouched = true;
        } else if (c.kind === 'WAYPOINT_BINDING' && (c.before?.resource.binding?.waypoint === sub.name || c.after?.resource.binding?.waypoint === sub.name)) {
          ctxTouched = true;
        }
      } else {
        scopedChanged.push(c.key);
      }
    }
    const globalCount = upserts.length + removals.length;
    let recomputeAll = false;
    if (ctxTouched) {
      const ctx = viewContext(this.svc.opts.table, sub);
      const print = contextFingerprint(ctx);
      this.ctx = ctx;
      if (print !== this.ctxPrint) { this.ctxPrint = print; recomputeAll = true; }
    }
    if (recomputeAll) {
      const next = scopedView(this.svc.opts.table, this.ctx);
      for (const [key, e] of next) if (this.scopedSent.get(key) !== e) upserts.push(e);
      for (const [key, e] of this.scopedSent) if (!next.has(key)) removals.push({ kind: e.resource.kind, name: e.resource.name });
      this.scopedSent = next;
    } else {
      for (const key of scopedChanged) {
        const e = this.svc.opts.table.get(key);
        if (e !== undefined && selects(e.resource.select, this.ctx)) {
          this.scopedSent.set(key, e);
          upserts.push(e);
        } else if (this.scopedSent.delete(key)) {
          const { kind, name } = splitKey(key);
          removals.push({ kind, name });
        }
      }
    }
    if (upserts.length === 0 && removals.length === 0) return;
    const enc = this.svc.encoder;
    const build = (): Buffer => enc.encode(
      { epoch: this.svc.opts.table.epoch, version: cs.version, changedAtMs: cs.changedAtMs, full: false, baseVersion: this.version, removals },
      upserts.map((e) => enc.entry(e)),
    );
    if (shared !== undefined && upserts.length + removals.length === globalCount) {
      let buf = shared.get(this.version);
      if (buf === undefined) {
        buf = build();
        shared.set(this.version, buf);
      }
      this.push(buf, cs.version, cs.changedAtMs, 'delta');
      return;
    }
    this.push(build(), cs.version, cs.changedAtMs, 'delta');
  }

  /** `msg` is an encoded DiscoveryResponse (see PushEncoder). */
  private push(msg: Buffer, version: number, changedAtMs: number, type: 'full' | 'delta' | 'resume'): void {
    this.version = version;
    if (type === 'delta') this.pending.set(version, changedAtMs);
    if (this.pending.size > 1000) this.pending.delete(this.pending.keys().next().value as number);
    this.svc.opts.metrics.pushes.inc({ kind: this.sub?.kind ?? 'unknown', type });
    this.call.write(msg);
  }

  private onAck(version: number): void {
    if (version > this.acked) this.acked = version;
    if (this.holdsSlot && version >= this.initialVersion) this.svc._releaseSlot(this);
    const at = this.pending.get(version);
    for (const v of this.pending.keys()) { if (v <= version) this.pending.delete(v); else break; }
    if (at !== undefined && version > 0) this.svc.opts.metrics.pushLatency.observe({ kind: this.sub?.kind ?? 'unknown' }, Math.max(0, Date.now() - at) / 1000);
  }

  private onNack(version: number, error: string): void {
    this.nacked = { version, error };
    if (this.holdsSlot && version >= this.initialVersion) this.svc._releaseSlot(this);
    this.pending.delete(version);
    this.svc.opts.metrics.nacks.inc({ kind: this.sub?.kind ?? 'unknown' });
    this.svc.log.warn({ subscriber: this.sub, version, error }, 'subscriber could not apply a push; it keeps its last good view');
  }

  end(code: grpc.status, details: string): void {
    if (this.ended) return;
    this.ended = true;
    if (code === grpc.status.OK) { this.call.end(); return; }
    this.call.emit('error', { code, details });
  }
}
