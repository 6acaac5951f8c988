/**
 * The Kubernetes source (`ambit control --kubernetes [--kubeconfig FILE]`): list/watch of
 * Namespaces, Pods, Services, EndpointSlices, ServiceAccounts, Nodes and the mesh kinds
 * (kube/list-watch.ts on @kubernetes/client-node: re-list on 410 Gone, bookmarks, reconnects with
 * backoff), validated by the model object by object and compiled together.
 *
 * Invariants:
 * - Nothing is delivered before every watched kind has listed once (a half-listed cluster would
 *   look like mass deletion to subscribers).
 * - Changes are coalesced (default 50 ms) and compiled together; objects are parsed once per
 *   resourceVersion. Only what the compile changed is projected and handed to the control plane
 *   (a full projection on the first delivery and after a compile that yielded no mesh).
 * - Unlike the folder source, an invalid object does not hold back the rest of the cluster: in a
 *   cluster, objects arrive independently and a policy admitted by the API server may still fail
 *   ambit's checks. The object is left out, reported (log, metric, /config_dump), and everything
 *   else keeps updating. Only a compile that yields no mesh at all is rejected as a whole.
 * - After each delivered compile the routes' status (Accepted, ResolvedRefs per parentRef) is
 *   written back where it changed (kube/route-status-writer.ts), unless `writeRouteStatus` is
 *   false; a failing write never holds back the configuration.
 */
import type { Logger } from '../../util/log.js';
import { childLogger } from '../../util/log.js';
import type { Diagnostic } from '../../model/diagnostics.js';
import type { Resource } from '../../model/resource.js';
import { parseObject } from '../../model/load/parse-object.js';
import type { KubeConfig } from '@kubernetes/client-node';
import { apiServerOf } from '../kube/kube-config.js';
import { WATCHED_KINDS, type KubeKind } from '../kube/kube-kinds.js';
import { ListWatch, type KubeObject, type ListWatchOptions } from '../kube/list-watch.js';
import { RouteStatusWriter } from '../kube/route-status-writer.js';
import type { MeshCompiler } from '../model-port.js';
import { Projector } from '../projection.js';
import type { ConfigSource, SourceSink, SourceStatus } from '../source.js';
import { errorsOf, toProblem } from './problems.js';

export interface KubeSourceOptions {
  /** Where the API server is and how to authenticate (kube/kube-config.ts). */
  kube: KubeConfig;
  compiler: MeshCompiler;
  /** Coalescing window for changes, ms (default 50). */
  debounceMs?: number;
  /** Kinds to watch (default WATCHED_KINDS). */
  kinds?: readonly KubeKind[];
  /** Passed to every list/watch (page size, watch timeout, backoff). */
  listWatch?: ListWatchOptions;
  /** Istio root namespace (default `istio-system`). */
  rootNamespace?: string;
  /**
   * Write the Accepted and ResolvedRefs conditions the model computes to the routes' status
   * subresource (kube/route-status-writer.ts) (default true).
   */
  writeRouteStatus?: boolean;
  logger?: Logger;
}

export class KubeSource implements ConfigSource {
  private readonly watches: ListWatch[];
  private readonly statusWriter: RouteStatusWriter | undefined;
  private readonly parsed = new WeakMap<KubeObject, { resource: Resource | undefined; diagnostics: Diagnostic[] }>();
  private readonly projector: Projector;
  private readonly log: Logger;
  private sink: SourceSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private resolveSynced: (() => void) | undefined;
  private st: SourceStatus;
  private closed = false;
  private lastErrors = '';
  /** The sink holds the projection of the compiler's last result. */
  private projected = false;

  constructor(private readonly opts: KubeSourceOptions) {
    this.log = childLogger('control.source.kube', opts.logger);
    this.projector = new Projector(opts.rootNamespace !== undefined ? { rootNamespace: opts.rootNamespace } : {});
    const lwOpts: ListWatchOptions = { ...opts.listWatch, logger: this.log };
    this.watches = (opts.kinds ?? WATCHED_KINDS).map((k) => new ListWatch(opts.kube, k, () => this.changed(), lwOpts));
    this.st = { kind: 'kubernetes', location: apiServerOf(opts.kube), synced: false, problems: [] };
    this.statusWriter = opts.writeRouteStatus === false ? undefined : new RouteStatusWriter(opts.kube, { logger: this.log });
  }

  /** The object of a watched Gateway API route, for the status writer. */
  private routeObject(kind: string, namespace: string, name: string): { object: KubeObject; kind: KubeKind } | undefined {
    const w = this.watches.find((x) => x.kind.group === 'gateway.networking.k8s.io' && x.kind.kind === kind);
    const object = w?.store.get(`${namespace}/${name}`);
    return w === undefined || object === undefined ? undefined : { object, kind: w.kind };
  }

  status(): SourceStatus {
    return { ...this.st, details: Object.fromEntries(this.watches.map((w) => [w.kind.plural, { synced: w.synced, objects: w.store.size, ...w.stats }])) };
  }

  /** Resolves once every kind has listed and the first configuration was delivered or rejected. */
  start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    const synced = new Promise<void>((resolve) => { this.resolveSynced = resolve; });
    for (const w of this.watches) w.start();
    return synced;
  }

  private changed(): void {
    if (this.closed) return;
    if (this.firstChangeAt === 0) this.firstChangeAt = Date.now();
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => { this.timer = undefined; this.rebuild(); }, this.opts.debounceMs ?? 50);
  }

  private rebuild(): void {
    if (this.closed || !this.watches.every((w) => w.synced)) return;
    const changedAt = this.firstChangeAt || Date.now();
    this.firstChangeAt = 0;
    const resources: Resource[] = [];
    const rejectedObjects: Diagnostic[] = [];
    for (const w of this.watches) {
      for (const o of w.store.values()) {
        let p = this.parsed.get(o);
        if (p === undefined) {
          const r = parseObject(o);
          p = { resource: r.resource, diagnostics: r.diagnostics };
          this.parsed.set(o, p);
        }
        if (p.resource !== undefined) resources.push(p.resource);
        else rejectedObjects.push(...errorsOf(p.diagnostics));
      }
    }
    const compiled = this.opts.compiler.compile(resources);
    const errors = [...rejectedObjects, ...errorsOf(compiled.diagnostics)];
    if (compiled.mesh === undefined) {
      this.projected = false;
      const problems = errors.length > 0 ? errors.map(toProblem) : [{ message: 'the model could not compile the cluster configuration' }];
      this.st = { ...this.st, lastRejectedAt: new Date().toISOString(), problems };
      this.sink?.rejected(problems);
      this.resolveSynced?.();
      return;
    }
    const m = compiled.mesh;
    this.st = { ...this.st, synced: true, lastAcceptedAt: new Date().toISOString() };
    if (this.projected && compiled.changes !== undefined && m.workloadByKey !== undefined && m.serviceByKey !== undefined) {
      const d = this.projector.projectChanges(m, compiled.changes);
      this.sink?.applyDelta(d.upserts, d.removals, changedAt);
    } else {
      this.sink?.replaceAll(this.projector.project(m, resources), changedAt);
    }
    this.projected = true;
    if (this.statusWriter !== undefined && compiled.routeStatuses !== undefined) {
      this.statusWriter.sync(compiled.routeStatuses(), (k, ns, n) => this.routeObject(k, ns, n)).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'route status sync failed'));
    }
    // Report left-out objects after delivering the rest, and only when the set of problems
    // changed, so one persistently invalid object is counted once, not on every pod change.
    const print = errors.map((e) => `${e.code}|${e.message}`).join('\n');
    if (print !== this.lastErrors) {
      this.lastErrors = print;
      const problems = errors.map(toProblem);
      this.st = { ...this.st, problems, ...(errors.length > 0 ? { lastRejectedAt: new Date().toISOString() } : {}) };
      if (errors.length > 0) {
        this.sink?.rejected(problems);
        for (const e of errors.slice(0, 20)) this.log.warn({ code: e.code, resource: e.resource }, `object left out: ${e.message}`);
      }
    }
    this.resolveSynced?.();
    this.resolveSynced = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.watches) w.stop();
    this.resolveSynced?.();
  }
}
