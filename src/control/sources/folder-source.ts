/**
 * The folder source (`ambit control --config DIR`): every *.yaml, *.yml and *.json under DIR
 * (recursively, dot-files skipped, as `ambit analyze` reads them), watched for changes.
 *
 * Invariants:
 * - A reload is atomic: all files are validated and compiled together, and the result replaces
 *   the previous configuration only if the model reports no error. Otherwise the last good
 *   configuration keeps serving, and the errors (file:line:column, code) are reported to the
 *   sink (logged, counted in ambit_control_config_errors_total, shown on /config_dump).
 * - Only files whose identity (inode, size, mtime, ctime) changed are read again, and within a
 *   changed file only the documents whose text changed are parsed again (DocumentCache); every
 *   other parsed resource is reused as the same object, so the incremental compile and the
 *   projection's identity cache make an unchanged resource free.
 * - When the compiler supports it (`MeshCompiler.update`), a reload hands it only the resources
 *   that changed, and the control plane only the table entries that changed (projected from the
 *   compile's changes), so a one-pod edit costs that pod, not a pass over the mesh. A full
 *   compile and projection run on the first load, after a rejected load, and while the same
 *   object is defined twice (whichever file's definition wins can change without its file
 *   changing).
 * - Change notifications are debounced (default 5 ms: editors and deploy tools write a file in
 *   one burst, and a longer quiet time only adds to every change's propagation delay; raise it
 *   when many files change at once, one after another); a periodic rescan (default every 10 s)
 *   catches events the platform dropped. Reloads never overlap. Every directory of the tree is
 *   watched on its own (inotify on the directory sees creates, writes and renames of its
 *   entries); Node 20's `recursive` emulation on Linux loses files replaced by rename, which is
 *   how editors and deploy tools save.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Logger } from '../../util/log.js';
import { childLogger } from '../../util/log.js';
import type { Diagnostic } from '../../model/diagnostics.js';
import type { Resource, ResourceRef } from '../../model/resource.js';
import { DocumentCache } from '../../model/load/document-cache.js';
import { collapseIgnoredKinds, dropDuplicates, loadFile, YAML_EXTENSIONS } from '../../model/load/load-paths.js';
import { ControlConfigError } from '../errors.js';
import type { MeshCompiler } from '../model-port.js';
import { Projector } from '../projection.js';
import type { ConfigProblem, ConfigSource, SourceSink, SourceStatus } from '../source.js';
import { errorsOf, toProblem } from './problems.js';

export interface FolderSourceOptions {
  /** The folder to read (required). */
  dir: string;
  compiler: MeshCompiler;
  /**
   * Quiet time after a change notification before reloading, ms (default 5). Notifications that
   * arrive within it are handled by one reload; changes that arrive while a reload runs are
   * picked up by one more reload right after it.
   */
  debounceMs?: number;
  /** Full rescan interval as a safety net for lost notifications, ms (default 10000; 0 disables). */
  rescanMs?: number;
  /** Istio root namespace (default `istio-system`). */
  rootNamespace?: string;
  /**
   * Unknown fields are warnings and dropped, instead of errors that reject the reload (default
   * false: Istio's validation rejects them; `ambit control --allow-unknown-fields`).
   */
  allowUnknownFields?: boolean;
  logger?: Logger;
}

interface FileState { id: string; resources: Resource[]; diagnostics: Diagnostic[] }

export class FolderSource implements ConfigSource {
  private readonly files = new Map<string, FileState>();
  private readonly documents = new DocumentCache();
  /** Which file defines each resource the compiler holds; valid only while no object is defined twice. */
  private readonly owners = new Map<string, string>();
  private ownersValid = false;
  /** The sink holds exactly the projection of the compiler's last result (false after a rejection). */
  private projected = false;
  private readonly projector: Projector;
  private readonly log: Logger;
  private sink: SourceSink | undefined;
  private readonly watchers = new Map<string, FSWatcher>();
  private debounce: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private firstChangeAt = 0;
  private st: SourceStatus;
  /** Reloads attempted (accepted or rejected), for tests and /config_dump. */
  reloads = 0;

  constructor(private readonly opts: FolderSourceOptions) {
    this.projector = new Projector(opts.rootNamespace !== undefined ? { rootNamespace: opts.rootNamespace } : {});
    this.log = childLogger('control.source.folder', opts.logger);
    this.st = { kind: 'folder', location: opts.dir, synced: false, problems: [] };
  }

  status(): SourceStatus { return { ...this.st, details: { files: this.files.size, reloads: this.reloads, debounceMs: this.opts.debounceMs ?? 5 } }; }

  async start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    try {
      if (!(await stat(this.opts.dir)).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      throw new ControlConfigError(`--config ${this.opts.dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
    }
    this.firstChangeAt = Date.now();
    await this.reload();
    const every = this.opts.rescanMs ?? 10_000;
    if (every > 0) {
      this.rescan = setInterval(() => this.changed(0), every);
      this.rescan.unref();
    }
  }

  private changed(delay = this.opts.debounceMs ?? 5): void {
    if (this.closed) return;
    if (this.firstChangeAt === 0) this.firstChangeAt = Date.now();
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => { void this.reload(); }, delay);
  }

  /** Reload now (serialised: a reload requested while one runs runs once more after it). */
  reload(): Promise<void> {
    if (this.running !== undefined) { this.again = true; return this.running; }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.reloadOnce();
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'reading the config folder failed; the last good configuration keeps serving');
          this.reject([{ message: (err as Error).message, code: 'AMBIT_ERR_CONFIG_READ' }]);
        }
      } while (this.again && !this.closed);
    })().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async reloadOnce(): Promise<void> {
    const changedAt = this.firstChangeAt || Date.now();
    this.firstChangeAt = 0;
    const t0 = performance.now();
    const { files: paths, dirs } = await listFiles(this.opts.dir);
    this.syncWatchers(dirs);
    const present = new Set(paths);
    /** Files removed or re-read, with the resources they had before. */
    const changedFiles = new Map<string, readonly Resource[]>();
    const drop = (p: string): void => {
      const before = this.files.get(p);
      if (before !== undefined && !changedFiles.has(p)) changedFiles.set(p, before.resources);
      this.files.delete(p);
      this.documents.forget(p);
    };
    for (const p of [...this.files.keys()]) if (!present.has(p)) drop(p);
    // Stat every file at once (the thread pool runs them in parallel), then read the changed ones in order.
    const ids = await Promise.all(paths.map(async (p) => {
      try {
        const s = await stat(p);
        return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch {
        return undefined; // removed between listing and stat
      }
    }));
    for (let i = 0; i < paths.length; i++) {
      const p = paths[i] as string;
      const id = ids[i];
      if (id === undefined) { drop(p); continue; }
      const before = this.files.get(p);
      if (before?.id === id) continue;
      const r = await loadFile(p, p, { documentCache: this.documents, allowUnknownFields: this.opts.allowUnknownFields === true });
      if (!changedFiles.has(p)) changedFiles.set(p, before?.resources ?? []);
      this.files.set(p, { id, resources: r.resources, diagnostics: r.diagnostics });
    }
    if (changedFiles.size === 0 && this.st.synced) return;
    const tRead = performance.now();
    this.reloads++;
    const diagnostics: Diagnostic[] = [];
    const sortedFiles = [...this.files.keys()].sort();
    for (const f of sortedFiles) diagnostics.push(...this.files.get(f)!.diagnostics);
    const compiler = this.opts.compiler;
    const delta = compiler.update !== undefined && this.ownersValid ? this.diff(changedFiles) : undefined;
    let resources: Resource[] | undefined;
    let compiled;
    if (delta !== undefined && compiler.update !== undefined) {
      compiled = compiler.update(delta.upserts, delta.removals);
    } else {
      const all: Resource[] = [];
      for (const f of sortedFiles) all.push(...this.files.get(f)!.resources);
      resources = dropDuplicates(all, diagnostics);
      this.owners.clear();
      for (const f of sortedFiles) for (const r of this.files.get(f)!.resources) if (!this.owners.has(r.key)) this.owners.set(r.key, f);
      this.ownersValid = resources.length === all.length;
      compiled = compiler.compile(resources);
    }
    const tCompile = performance.now();
    diagnostics.push(...compiled.diagnostics);
    const errors = errorsOf(diagnostics);
    if (errors.length > 0 || compiled.mesh === undefined) {
      this.projected = false;
      this.reject(errors.length > 0 ? errors.map(toProblem) : [{ message: 'the model could not compile the configuration' }]);
      return;
    }
    for (const w of collapseIgnoredKinds(diagnostics).filter((d) => d.severity === 'warning').slice(0, 20)) {
      this.log.warn({ file: w.file, line: w.line, code: w.code }, w.message);
    }
    this.st = { ...this.st, synced: true, lastAcceptedAt: new Date().toISOString(), problems: [] };
    const mesh = compiled.mesh;
    let tProject: number;
    if (this.projected && compiled.changes !== undefined && mesh.workloadByKey !== undefined && mesh.serviceByKey !== undefined) {
      const d = this.projector.projectChanges(mesh, compiled.changes);
      tProject = performance.now();
      this.sink?.applyDelta(d.upserts, d.removals, changedAt);
    } else {
      if (resources === undefined) {
        resources = [];
        for (const f of sortedFiles) resources.push(...this.files.get(f)!.resources);
      }
      const projected = this.projector.project(mesh, resources);
      tProject = performance.now();
      this.sink?.replaceAll(projected, changedAt);
    }
    this.projected = true;
    this.log.debug({
      sinceChangeMs: Date.now() - changedAt, readMs: Math.round(tRead - t0), compileMs: Math.round(tCompile - tRead),
      projectMs: Math.round(tProject - tCompile), publishMs: Math.round(performance.now() - tProject),
    }, 'configuration reloaded');
  }

  /**
   * What the changed files add and remove, by object identity (unchanged documents keep their
   * Resource objects), with `owners` updated; undefined when an object is now defined twice
   * (the full path reports it and decides which definition wins).
   */
  private diff(changedFiles: ReadonlyMap<string, readonly Resource[]>): { upserts: Resource[]; removals: ResourceRef[] } | undefined {
    const removals = new Map<string, ResourceRef>();
    for (const [file, before] of changedFiles) {
      const after = new Set(this.files.get(file)?.resources ?? []);
      for (const r of before) if (!after.has(r) && this.owners.get(r.key) === file) removals.set(r.key, r.ref);
    }
    const upserts: Resource[] = [];
    const claims = new Map<string, string>();
    for (const [file, beforeList] of changedFiles) {
      const before = new Set(beforeList);
      for (const r of this.files.get(file)?.resources ?? []) {
        if (claims.has(r.key)) return undefined;
        claims.set(r.key, file);
        const owner = this.owners.get(r.key);
        if (owner !== undefined && owner !== file && !removals.has(r.key)) return undefined;
        if (!before.has(r)) upserts.push(r);
      }
    }
    for (const r of upserts) removals.delete(r.key);
    for (const key of removals.keys()) this.owners.delete(key);
    for (const [key, file] of claims) this.owners.set(key, file);
    return { upserts, removals: [...removals.values()] };
  }

  private syncWatchers(dirs: string[]): void {
    if (this.closed) return;
    const want = new Set(dirs);
    for (const [d, w] of this.watchers) if (!want.has(d)) { w.close(); this.watchers.delete(d); }
    for (const d of dirs) {
      if (this.watchers.has(d)) continue;
      try {
        const w = watch(d, () => this.changed());
        w.on('error', (err) => {
          this.log.warn({ dir: d, err: err.message }, 'watching a config directory failed; relying on the periodic rescan');
          w.close();
          this.watchers.delete(d);
        });
        this.watchers.set(d, w);
      } catch (err) {
        this.log.warn({ dir: d, err: (err as Error).message }, 'cannot watch a config directory; relying on the periodic rescan');
      }
    }
  }

  private reject(problems: ConfigProblem[]): void {
    this.st = { ...this.st, lastRejectedAt: new Date().toISOString(), problems };
    this.sink?.rejected(problems);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.rescan);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.running;
  }
}

/** The files `ambit analyze DIR` would read, sorted, and the directories they live in. */
async function listFiles(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const out: string[] = [];
  const dirs: string[] = [];
  const walk = async (d: string): Promise<void> => {
    dirs.push(d);
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (err) {
      if (d === dir) throw new ControlConfigError(`cannot read config folder ${dir}: ${(err as Error).message}`, { cause: err });
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && YAML_EXTENSIONS.includes(extname(e.name).toLowerCase())) out.push(p);
    }
  };
  await walk(dir);
  return { files: out, dirs };
}
