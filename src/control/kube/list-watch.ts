/**
 * List-then-watch for one Kubernetes resource type, as client-go's reflector does it:
 * paginated list -> remember the list's resourceVersion -> watch from it with bookmarks ->
 * apply ADDED / MODIFIED / DELETED to a local store, advance the version on every event and
 * BOOKMARK -> when the watch times out, watch again from the last version (no re-list).
 *
 * Invariants:
 * - The store only ever reflects a consistent state of the API: a list replaces it whole, and
 *   events apply in order after the version they were watched from.
 * - "410 Gone" (as an HTTP status or as an ERROR event, which is how the API server reports a
 *   compacted resourceVersion) triggers a fresh list; no event is lost or applied twice.
 * - Other failures retry with jittered exponential backoff (default 200 ms .. 30 s), watching
 *   from the last version; a failed list is retried as a list.
 * - An optional kind (a CRD) that answers 404 counts as synced and empty; it is listed again
 *   every `missingRetryMs` in case the CRD is installed later.
 */
import type { Logger } from '../../util/log.js';
import { childLogger } from '../../util/log.js';
import { Backoff, type BackoffOptions } from '../../discovery/backoff.js';
import { KubeApiError } from '../errors.js';
import type { KubeHttp } from './kube-http.js';
import { apiVersionOf, listPath, type KubeKind } from './kube-kinds.js';

export type KubeObject = Record<string, unknown> & { metadata?: { name?: string; namespace?: string; resourceVersion?: string } };

export interface ListWatchOptions {
  /** Items per list page (default 500). */
  pageSize?: number;
  /** Server-side watch timeout, seconds (default 300; the API server adds jitter itself). */
  watchTimeoutSeconds?: number;
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

  /** `onChange` runs after every list and every event that changed the store. */
  constructor(private readonly http: KubeHttp, readonly kind: KubeKind, private readonly onChange: () => void, private readonly opts: ListWatchOptions = {}) {
    this.backoff = new Backoff(opts.backoff);
    this.log = childLogger(`control.kube.${kind.plural}`, opts.logger);
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
        const delay = this.backoff.next();
        this.log.warn({ err: (err as Error).message, retryInMs: delay }, `${needList ? 'list' : 'watch'} of ${this.kind.plural} failed; retrying`);
        await this.sleep(delay);
      }
    }
  }

  /** Lists every page; replaces the store. Returns false when an optional kind is not installed. */
  private async list(): Promise<boolean> {
    const items = new Map<string, KubeObject>();
    let cont = '';
    let rv = '';
    do {
      const q = new URLSearchParams({ limit: String(this.opts.pageSize ?? 500) });
      if (cont !== '') q.set('continue', cont);
      const res = await this.http.request('GET', `${listPath(this.kind)}?${q}`);
      if (res.status === 404 && this.kind.optional) {
        if (this.stats.installed) this.log.warn(`${this.kind.kind} (${apiVersionOf(this.kind)}) is not installed in this cluster; treating it as empty`);
        this.stats.installed = false;
        this.store.clear();
        this.synced = true;
        this.onChange();
        return false;
      }
      if (res.status === 410) throw new KubeApiError(`list ${this.kind.plural}: continue token expired`, 410);
      if (res.status !== 200) throw new KubeApiError(`list ${this.kind.plural}: HTTP ${res.status}: ${describe(res.body)}`, res.status);
      const body = res.body as { metadata?: { resourceVersion?: string; continue?: string }; items?: KubeObject[] };
      for (const it of body.items ?? []) {
        // List items carry no kind/apiVersion on the wire; fill them in so objects look alike.
        const o: KubeObject = { apiVersion: apiVersionOf(this.kind), kind: this.kind.kind, ...it };
        items.set(ListWatch.keyOf(o), o);
      }
      rv = body.metadata?.resourceVersion ?? rv;
      cont = body.metadata?.continue ?? '';
    } while (cont !== '' && !this.stopped);
    this.stats.installed = true;
    this.stats.lists++;
    this.store.clear();
    for (const [k, v] of items) this.store.set(k, v);
    this.rv = rv;
    this.stats.resourceVersion = rv;
    this.synced = true;
    this.onChange();
    return true;
  }

  private async watchOnce(): Promise<void> {
    const q = new URLSearchParams({
      watch: 'true', resourceVersion: this.rv, allowWatchBookmarks: 'true',
      timeoutSeconds: String(this.opts.watchTimeoutSeconds ?? 300),
    });
    this.stats.watches++;
    let gone: KubeApiError | undefined;
    const w = this.http.watch(`${listPath(this.kind)}?${q}`, (ev) => {
      if (gone !== undefined) return;
      const o = ev.object as KubeObject;
      switch (ev.type) {
        case 'ADDED':
        case 'MODIFIED':
          this.store.set(ListWatch.keyOf(o), { apiVersion: apiVersionOf(this.kind), kind: this.kind.kind, ...o });
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
          this.log.warn({ type: ev.type }, 'unknown watch event type ignored');
      }
    });
    this.abortWatch = w.abort;
    try {
      await w.done;
    } finally {
      this.abortWatch = undefined;
    }
    if (gone !== undefined) throw gone;
  }

  private advance(o: KubeObject): void {
    const rv = o.metadata?.resourceVersion;
    if (typeof rv === 'string' && rv !== '') { this.rv = rv; this.stats.resourceVersion = rv; }
  }
}

function describe(body: unknown): string {
  if (typeof body === 'object' && body !== null) {
    const s = body as { message?: string; reason?: string };
    return s.message ?? s.reason ?? JSON.stringify(body).slice(0, 200);
  }
  return String(body).slice(0, 200);
}
