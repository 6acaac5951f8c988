/**
 * List-then-watch for one Kubernetes resource type, as client-go's reflector does it, on
 * @kubernetes/client-node: paginated list (the typed list calls of CoreV1Api / DiscoveryV1Api,
 * CustomObjectsApi for the mesh CRDs) -> remember the list's resourceVersion -> watch from it
 * with bookmarks (the library's Watch) -> apply ADDED / MODIFIED / DELETED to a local store,
 * advance the version on every event and BOOKMARK -> when the watch ends, watch again from the
 * last version (no re-list). HTTP, TLS, authentication and JSON decoding are the library's.
 *
 * Why not the library's ListWatch / makeInformer: it never sets allowWatchBookmarks (a quiet
 * kind's version falls behind compaction, so every reconnect re-lists), lists in one request
 * (no pagination), and on any error other than 410 it stops for good after one 'error' callback.
 *
 * Invariants:
 * - The store only ever reflects a consistent state of the API: a list replaces it whole, and
 *   events apply in order after the version they were watched from. A failing or unreachable
 *   API server never empties it: the last good state stays, and `stats.lastError` says why
 *   it is not advancing.
 * - "410 Gone" (as an HTTP status or as an ERROR event, which is how the API server reports a
 *   compacted resourceVersion) triggers a fresh list; no event is lost or applied twice.
 * - Other failures retry with jittered exponential backoff (default 200 ms .. 30 s), watching
 *   from the last version; a failed list is retried as a list.
 * - An optional kind (a CRD) that answers 404 counts as synced and empty; it is listed again
 *   every `missingRetryMs` in case the CRD is installed later.
 * - Objects look alike whichever way they came: list items get kind/apiVersion filled in and
 *   are plain JSON (the typed list's model objects, dates included, serialised back).
 */
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import { childLogger } from '../../util/log.js';
import { Backoff, type BackoffOptions } from '../../discovery/backoff.js';
import { ControlConfigError, KubeApiError } from '../errors.js';
import { kubeApiError, statusOf } from './api-error.js';
import { apiServerOf } from './kube-config.js';
import { apiVersionOf, listPath, type KubeKind } from './kube-kinds.js';

export type KubeObject = Record<string, unknown> & { metadata?: { name?: string; namespace?: string; resourceVersion?: string } };

export interface ListWatchOptions {
  /** Items per list page (default 500). */
  pageSize?: number;
  /** Server-side watch timeout, seconds (default 300; the API server adds jitter itself). */
  watchTimeoutSeconds?: number;
  /**
   * A watch that delivers nothing (no event, no bookmark) for this long is closed and opened
   * again from the last version; also bounds connecting, ms (default 90000: the API server
   * sends a bookmark about once a minute).
   */
  idleTimeoutMs?: number;
  /** Re-list interval for an optional kind that is not installed, ms (default 30000). */
  missingRetryMs?: number;
  backoff?: BackoffOptions;
  logger?: Logger;
}

export interface ListWatchStats {
  lists: number;
  watches: number;
  relistsAfterGone: number;
  bookmarks: number;
  errors: number;
  resourceVersion: string;
  installed: boolean;
  /** The last failure, for /config_dump (absent once a list or watch succeeds again). */
  lastError?: string;
}

interface Page { items: KubeObject[]; resourceVersion: string; continue: string }
type Lister = (limit: number, cont: string | undefined) => Promise<Page>;

/** Plain JSON of a typed list's items: the library's model classes use the wire field names. */
function page(list: { metadata?: { resourceVersion?: string; _continue?: string }; items?: unknown[] }): Page {
  return {
    items: JSON.parse(JSON.stringify(list.items ?? [])) as KubeObject[],
    resourceVersion: list.metadata?.resourceVersion ?? '',
    continue: list.metadata?._continue ?? '',
  };
}

type Query = { limit: number; _continue?: string };
const query = (limit: number, cont: string | undefined): Query => ({ limit, ...(cont !== undefined ? { _continue: cont } : {}) });

/** Typed list calls of the built-in kinds ambit watches, by "group/Kind". */
const BUILT_IN: Record<string, (kc: KubeConfig) => (q: Query) => Promise<Parameters<typeof page>[0]>> = {
  '/Namespace': (kc) => { const api = kc.makeApiClient(CoreV1Api); return (q) => api.listNamespace(q); },
  '/Pod': (kc) => { const api = kc.makeApiClient(CoreV1Api); return (q) => api.listPodForAllNamespaces(q); },
  '/Service': (kc) => { const api = kc.makeApiClient(CoreV1Api); return (q) => api.listServiceForAllNamespaces(q); },
  '/ServiceAccount': (kc) => { const api = kc.makeApiClient(CoreV1Api); return (q) => api.listServiceAccountForAllNamespaces(q); },
  '/Node': (kc) => { const api = kc.makeApiClient(CoreV1Api); return (q) => api.listNode(q); },
  'discovery.k8s.io/EndpointSlice': (kc) => { const api = kc.makeApiClient(DiscoveryV1Api); return (q) => api.listEndpointSliceForAllNamespaces(q); },
};

/** The library's list call for a kind: typed for the built-in kinds, CustomObjectsApi for CRDs. */
function listerFor(kc: KubeConfig, kind: KubeKind): Lister {
  const typed = BUILT_IN[`${kind.group}/${kind.kind}`];
  if (typed !== undefined) {
    const list = typed(kc);
    return async (limit, cont) => page(await list(query(limit, cont)));
  }
  if (kind.group === '') throw new ControlConfigError(`no list call for ${kind.kind} (${apiVersionOf(kind)}); add it to BUILT_IN in list-watch.ts`);
  const custom = kc.makeApiClient(CustomObjectsApi);
  return async (limit, cont) => {
    // CustomObjectsApi answers plain JSON, `continue` under its wire name.
    const list = await custom.listClusterCustomObject({ group: kind.group, version: kind.version, plural: kind.plural, ...query(limit, cont) }) as { metadata?: { resourceVersion?: string; continue?: string }; items?: KubeObject[] };
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '', continue: list.metadata?.continue ?? '' };
  };
}

export class ListWatch {
  readonly store = new Map<string, KubeObject>();
  synced = false;
  readonly stats: ListWatchStats = { lists: 0, watches: 0, relistsAfterGone: 0, bookmarks: 0, errors: 0, resourceVersion: '', installed: true };
  private rv = '';
  private stopped = false;
  private abortWatch: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly lister: Lister;
  private readonly watcher: Watch;
  private readonly server: string;
  private readonly idleTimeoutMs: number;

  /** `onChange` runs after every list and every event that changed the store. */
  constructor(kc: KubeConfig, readonly kind: KubeKind, private readonly onChange: () => void, private readonly opts: ListWatchOptions = {}) {
    this.backoff = new Backoff(opts.backoff);
    this.log = childLogger(`control.kube.${kind.plural}`, opts.logger);
    this.lister = listerFor(kc, kind);
    this.watcher = new Watch(kc);
    // Watch's connect/inactivity timeout is a plain field the typings mark private (default 30 s,
    // shorter than the API server's bookmark period, which would reconnect quiet watches twice a
    // minute); no constructor option sets it.
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 90_000;
    (this.watcher as unknown as { requestTimeoutMs: number }).requestTimeoutMs = this.idleTimeoutMs;
    this.server = apiServerOf(kc);
  }

  static keyOf(o: KubeObject): string {
    return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
  }

  start(): void { void this.run(); }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abortWatch?.();
    this.wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          const installed = await this.list();
          if (this.stopped) return;
          if (!installed) { await this.sleep(this.opts.missingRetryMs ?? 30_000); continue; }
          needList = false;
        }
        await this.watchOnce();
        this.backoff.reset();
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof KubeApiError && err.status === 410) {
          this.stats.relistsAfterGone++;
          this.log.info({ resourceVersion: this.rv }, 'watch expired (410 Gone); listing again');
          needList = true;
          continue;
        }
        this.stats.errors++;
        this.stats.lastError = (err as Error).message;
        const delay = this.backoff.next();
        this.log.warn({ err: (err as Error).message, retryInMs: delay }, `${needList ? 'list' : 'watch'} of ${this.kind.plural} failed; keeping the last ${this.store.size} objects and retrying`);
        await this.sleep(delay);
      }
    }
  }

  /** Lists every page; replaces the store. Returns false when an optional kind is not installed. */
  private async list(): Promise<boolean> {
    const items = new Map<string, KubeObject>();
    let cont: string | undefined;
    let rv = '';
    do {
      let p: Page;
      try {
        p = await this.lister(this.opts.pageSize ?? 500, cont);
      } catch (err) {
        if (statusOf(err) === 404 && this.kind.optional) {
          if (this.stats.installed) this.log.warn(`${this.kind.kind} (${apiVersionOf(this.kind)}) is not installed in this cluster; treating it as empty`);
          this.stats.installed = false;
          delete this.stats.lastError;
          this.store.clear();
          this.synced = true;
          this.onChange();
          return false;
        }
        const what = statusOf(err) === 410 ? `list ${this.kind.plural} (continue token expired)` : `list ${this.kind.plural}`;
        throw kubeApiError(what, this.server, err);
      }
      for (const it of p.items) {
        // List items carry no kind/apiVersion on the wire; fill them in so objects look alike.
        const o: KubeObject = { ...it, apiVersion: apiVersionOf(this.kind), kind: this.kind.kind };
        items.set(ListWatch.keyOf(o), o);
      }
      rv = p.resourceVersion || rv;
      cont = p.continue === '' ? undefined : p.continue;
    } while (cont !== undefined && !this.stopped);
    if (this.stopped) return true;
    this.stats.installed = true;
    this.stats.lists++;
    delete this.stats.lastError;
    this.store.clear();
    for (const [k, v] of items) this.store.set(k, v);
    this.rv = rv;
    this.stats.resourceVersion = rv;
    this.synced = true;
    this.onChange();
    return true;
  }

  /** One watch from the last version; resolves when it ends normally, rejects with KubeApiError. */
  private watchOnce(): Promise<void> {
    this.stats.watches++;
    const path = listPath(this.kind);
    let gone: KubeApiError | undefined;
    return new Promise<void>((resolve, reject) => {
      const onEvent = (type: string, obj: unknown) => {
        if (gone !== undefined || this.stopped) return;
        const o = obj as KubeObject;
        switch (type) {
          case 'ADDED':
          case 'MODIFIED':
            this.store.set(ListWatch.keyOf(o), { ...o, apiVersion: apiVersionOf(this.kind), kind: this.kind.kind });
            this.advance(o);
            this.onChange();
            break;
          case 'DELETED':
            this.store.delete(ListWatch.keyOf(o));
            this.advance(o);
            this.onChange();
            break;
          case 'BOOKMARK':
            this.stats.bookmarks++;
            this.advance(o);
            break;
          case 'ERROR': {
            const s = o as { code?: number; message?: string; reason?: string };
            gone = new KubeApiError(`watch ${this.kind.plural}: ${s.message ?? s.reason ?? 'error event'}`, s.code);
            this.abortWatch?.();
            break;
          }
          default:
            this.log.warn({ type }, 'unknown watch event type ignored');
        }
      };
      const done = (err: unknown) => {
        this.abortWatch = undefined;
        if (gone !== undefined) reject(gone);
        else if (this.stopped) resolve();
        else if ((err as { name?: string } | null)?.name === 'TimeoutError') {
          this.log.debug(`watch of ${this.kind.plural} idle for ${this.idleTimeoutMs} ms; watching again`);
          resolve();
        } else if (err) reject(kubeApiError(`watch ${this.kind.plural}`, this.server, err));
        else { delete this.stats.lastError; resolve(); }
      };
      this.watcher.watch(path, { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300 }, onEvent, done)
        .then((ctl) => {
          this.abortWatch = () => ctl.abort();
          if (this.stopped || gone !== undefined) ctl.abort();
        }, (err: unknown) => reject(kubeApiError(`watch ${this.kind.plural}`, this.server, err)));
    });
  }

  private advance(o: KubeObject): void {
    const rv = o.metadata?.resourceVersion;
    if (typeof rv === 'string' && rv !== '') { this.rv = rv; this.stats.resourceVersion = rv; }
  }
}
