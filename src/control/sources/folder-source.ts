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
 * - Change notifications are debounced (default 25 ms); a periodic rescan (default every 10 s)
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
import type { Resource } from '../../model/resource.js';
import { DocumentCache } from '../../model/load/document-cache.js';
import { dropDuplicates, loadFile, YAML_EXTENSIONS } from '../../model/load/load-paths.js';
import { ControlConfigError } from '../errors.js';
import type { MeshCompiler } from '../model-port.js';
import { Projector } from '../projection.js';
import type { ConfigProblem, ConfigSource, SourceSink, SourceStatus } from '../source.js';
import { errorsOf, toProblem } from './problems.js';

export interface FolderSourceOptions {
  /** The folder to read (required). */
  dir: string;
  compiler: MeshCompiler;
  /** Quiet time after a change before reloading, ms (default 25). */
  debounceMs?: number;
  /** Full rescan interval as a safety net for lost notifications, ms (default 10000; 0 disables). */
  rescanMs?: number;
  /** Istio root namespace (default `istio-system`). */
  rootNamespace?: string;
  logger?: Logger;
}

interface FileState { id: string; resources: Resource[]; diagnostics: Diagnostic[] }

export class FolderSource implements ConfigSource {
  private readonly files = new Map<string, FileState>();
  private readonly documents = new DocumentCache();
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

  status(): SourceStatus { return { ...this.st, details: { files: this.files.size, reloads: this.reloads } }; }

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

  private changed(delay = this.opts.debounceMs ?? 25): void {
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
    let touched = false;
    for (const p of [...this.files.keys()]) if (!present.has(p)) { this.files.delete(p); this.documents.forget(p); touched = true; }
    for (const p of paths) {
      let id: string;
      try {
        const s = await stat(p);
        id = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch {
        this.files.delete(p); this.documents.forget(p); touched = true; continue; // removed between listing and stat
      }
      if (this.files.get(p)?.id === id) continue;
      const r = await loadFile(p, p, { documentCache: this.documents });
      this.files.set(p, { id, resources: r.resources, diagnostics: r.diagnostics });
      touched = true;
    }
    if (!touched && this.st.synced) return;
    const tRead = performance.now();
    this.reloads++;
    const diagnostics: Diagnostic[] = [];
    const all: Resource[] = [];
    for (const f of [...this.files.keys()].sort()) {
      const s = this.files.get(f)!;
      all.push(...s.resources);
      diagnostics.push(...s.diagnostics);
    }
    const resources = dropDuplicates(all, diagnostics);
    const compiled = this.opts.compiler.compile(resources);
    const tCompile = performance.now();
    diagnostics.push(...compiled.diagnostics);
    const errors = errorsOf(diagnostics);
    if (errors.length > 0 || compiled.mesh === undefined) {
      this.reject(errors.length > 0 ? errors.map(toProblem) : [{ message: 'the model could not compile the configuration' }]);
      return;
    }
    for (const w of diagnostics.filter((d) => d.severity === 'warning').slice(0, 20)) {
      this.log.warn({ file: w.file, line: w.line, code: w.code }, w.message);
    }
    const mesh = this.projector.project(compiled.mesh, resources);
    const tProject = performance.now();
    this.st = { ...this.st, synced: true, lastAcceptedAt: new Date().toISOString(), problems: [] };
    this.sink?.replaceAll(mesh, changedAt);
    this.log.debug({
      sinceChangeMs: Date.now() - changedAt, readMs: Math.round(tRead - t0), compileMs: Math.round(tCompile - tRead),
      projectMs: Math.round(tProject - tCompile), publishMs: Math.round(performance.now() - tProject),
    }, 'configuration reloaded');
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
