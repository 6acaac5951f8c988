/**
 * The subscriber side of Discovery.Stream, for node agents and waypoints: connect, say hello
 * with the version held, apply the full view or deltas into a LocalView, ack or nack each push,
 * reconnect with jittered backoff, and keep the last good view on disk.
 *
 * Invariants:
 * - The view only ever changes by a whole push; a push that fails to apply (bad payload, a delta
 *   on the wrong base, an `onUpdate` hook that throws) is rolled back and nacked with the reason,
 *   and the view keeps the last good state.
 * - While the control plane is unreachable, the view (from memory or from the cache file at
 *   start) keeps being served; reconnects resume from the version held.
 * - The cache file is written atomically, at most once per `persistIntervalMs`, and on close.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import { protos, type DiscoveryClient as GrpcDiscoveryClient, type DiscoveryResponse__Output } from '../control/proto.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { CHANNEL_OPTIONS, channelCredentials, type ControlPlaneTarget } from './channel.js';
import { LocalView, type ViewChange } from './local-view.js';
import { readViewCache, writeViewCache } from './view-cache.js';

export type TokenSource = string | (() => string | Promise<string>);

export interface DiscoveryClientOptions extends ControlPlaneTarget {
  kind: 'agent' | 'waypoint';
  /** Node name (agent) or "namespace/name" (waypoint). */
  name: string;
  /** Bootstrap or service-account token; a function is called on every connect (rotation). */
  token: TokenSource;
  /** Where the last good view is kept (default: not persisted). */
  cacheFile?: string;
  /** Least time between two cache writes, ms (default 1000). */
  persistIntervalMs?: number;
  /** Reconnect backoff (defaults: 200 ms initial, 30 s max, factor 2, full jitter). */
  backoff?: BackoffOptions;
  /**
   * Called after a push applied and before it is acked; throwing rolls the push back and nacks
   * it with the error message (default: none).
   */
  onUpdate?: (change: ViewChange, view: LocalView) => void;
  /** Count the exact protobuf size of every push in `bytesReceived` (default false: costs a re-encode). */
  measureBytes?: boolean;
  logger?: Logger;
}

export interface DiscoveryClientEvents {
  update: [change: ViewChange & { source: 'cache' | 'server' }];
  connected: [];
  disconnected: [reason: string];
  nacked: [version: number, error: string];
}

export class DiscoveryClient extends EventEmitter<DiscoveryClientEvents> {
  view = new LocalView();
  /** True while a stream is open and has delivered its first push. */
  connected = false;
  private client: GrpcDiscoveryClient | undefined;
  private call: grpc.ClientDuplexStream<unknown, DiscoveryResponse__Output> | undefined;
  private readonly backoff: Backoff;
  private retryTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persistDirty = false;
  private persisting: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly log: Logger;
  private firstView: Promise<void>;
  private resolveFirst: () => void = () => {};
  /** Bytes of every push received as encoded on the wire (only with `measureBytes`). */
  bytesReceived = 0;

  constructor(private readonly opts: DiscoveryClientOptions) {
    super();
    this.log = childLogger('discovery.client', opts.logger);
    this.backoff = new Backoff(opts.backoff);
    this.firstView = new Promise((resolve) => { this.resolveFirst = resolve; });
  }

  /** Load the cached view (if any) and start connecting. Resolves once the cache was read. */
  async start(): Promise<void> {
    if (this.opts.cacheFile !== undefined) {
      try {
        const snap = await readViewCache(this.opts.cacheFile);
        if (snap !== undefined) {
          this.view = LocalView.fromSnapshot(snap);
          this.log.info({ version: snap.version, resources: this.view.count() }, 'serving the cached view until the control plane answers');
          this.emit('update', { version: snap.version, full: true, upserted: [], removed: [], changedAtMs: 0, source: 'cache' });
          this.resolveFirst();
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'ignoring the cached view');
      }
    }
    const Ctor = protos().discovery.ambit.v1.Discovery;
    this.client = new Ctor(this.opts.address, channelCredentials(this.opts), CHANNEL_OPTIONS);
    void this.connect();
  }

  /** Resolves when a view is available (from the cache or the control plane). */
  whenReady(): Promise<void> { return this.firstView; }

  private async connect(): Promise<void> {
    if (this.closed || this.client === undefined) return;
    let token: string;
    try {
      token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    } catch (err) {
      this.retry(`cannot read the token: ${(err as Error).message}`);
      return;
    }
    if (this.closed) return;
    const call = this.client.Stream() as unknown as grpc.ClientDuplexStream<unknown, DiscoveryResponse__Output>;
    this.call = call;
    let gotFirst = false;
    call.on('data', (r: DiscoveryResponse__Output) => {
      if (this.call !== call) return;
      if (!gotFirst) {
        gotFirst = true;
        this.connected = true;
        this.backoff.reset();
        this.emit('connected');
      }
      this.onResponse(call, r);
    });
    const ended = (reason: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      const was = this.connected;
      this.connected = false;
      if (was) this.emit('disconnected', reason);
      this.retry(reason);
    };
    call.on('error', (err: grpc.ServiceError) => ended(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    call.on('end', () => ended('stream ended by the control plane'));
    call.write({ hello: { kind: this.opts.kind === 'agent' ? 'AGENT' : 'WAYPOINT', name: this.opts.name, token, resumeEpoch: this.view.epoch, resumeVersion: this.view.version } });
  }

  private retry(reason: string): void {
    if (this.closed) return;
    const delay = this.backoff.next();
    this.log.warn({ reason, retryInMs: delay, version: this.view.version }, 'control plane stream down; serving the last good view');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { void this.connect(); }, delay);
  }

  private onResponse(call: grpc.ClientDuplexStream<unknown, DiscoveryResponse__Output>, r: DiscoveryResponse__Output): void {
    if (this.opts.measureBytes === true) this.bytesReceived += encodedSize(r);
    const undo = this.view.toUndo(r);
    let change: ViewChange;
    try {
      change = this.view.apply(r);
      this.opts.onUpdate?.(change, this.view);
    } catch (err) {
      undo();
      const msg = (err as Error).message;
      this.log.error({ version: r.version, err: msg }, 'push rejected; keeping the last good view');
      call.write({ nack: { version: r.version, error: msg } });
      this.emit('nacked', r.version, msg);
      // A delta on the wrong base means we are out of step: resume on a fresh stream.
      if ((err as { code?: string }).code === 'AMBIT_ERR_DISCOVERY_APPLY' && !r.full && r.baseVersion !== this.view.version) {
        this.call = undefined;
        call.cancel();
        this.retry('resynchronising after a delta on the wrong base');
      }
      return;
    }
    call.write({ ack: { version: r.version } });
    this.resolveFirst();
    this.schedulePersist();
    this.emit('update', { ...change, source: 'server' });
  }

  private schedulePersist(): void {
    if (this.opts.cacheFile === undefined) return;
    this.persistDirty = true;
    if (this.persistTimer !== undefined) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      void this.persist();
    }, this.opts.persistIntervalMs ?? 1000);
  }

  /** Write the view to the cache file now (also called by close()). */
  persist(): Promise<void> {
    const file = this.opts.cacheFile;
    if (file === undefined || !this.persistDirty) return this.persisting;
    this.persistDirty = false;
    const snap = this.view.toSnapshot();
    this.persisting = this.persisting.then(() => writeViewCache(file, snap)).catch((err: unknown) => {
      this.log.error({ file, err: (err as Error).message }, 'cannot persist the view');
    });
    return this.persisting;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    await this.persist();
  }
}

/** Exact protobuf size of a push (re-encoded with the method's own serializer). */
export function encodedSize(r: DiscoveryResponse__Output): number {
  return protos().discovery.ambit.v1.Discovery.service.Stream.responseSerialize(r).length;
}
