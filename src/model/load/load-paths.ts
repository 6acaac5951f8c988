/**
 * Loading resources from files and folders (the file source) and from plain objects (the
 * Kubernetes source). Both end in the same `LoadResult`: valid resources plus diagnostics.
 *
 * Invariants:
 * - A path that does not exist or cannot be read throws `InputUnreadableError`
 *   (`ambit analyze` exits 2); problems inside readable files are diagnostics (exit 1).
 * - Files are read in sorted order, so results and diagnostics are deterministic.
 * - A file larger than `maxFileBytes` is refused before it is read.
 * - The same kind/namespace/name twice is an error on the later one; the first wins.
 * - A kind ambit does not model is reported once (at its first object, with the count), not
 *   once per object.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, isAbsolute } from 'node:path';
import type { Diagnostic } from '../diagnostics.js';
import { InputUnreadableError } from '../errors.js';
import type { Resource } from '../resource.js';
import type { CachedChunk, DocumentCache } from './document-cache.js';
import { parseObject } from './parse-object.js';
import { hasYamlError, parseYamlChunk, parseYamlText, splitYamlDocuments, type YamlChunk, type YamlLimits } from './yaml-text.js';

/** Default size limit of one file: 10 MiB (a large cluster dump is a few MiB). */
export const DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024;

/** File extensions read when walking a folder (explicitly named files are read whatever their name). */
export const YAML_EXTENSIONS: readonly string[] = ['.yaml', '.yml', '.json'];

export interface LoadOptions extends YamlLimits {
  /** Largest file read, in bytes (default `DEFAULT_MAX_FILE_BYTES`, 10 MiB). */
  maxFileBytes?: number;
  /** Show file names relative to this folder (default: as given). */
  relativeTo?: string;
  /**
   * Parsed documents of earlier reads, reused for documents whose text is unchanged (default:
   * none, every document is parsed). Used by the control plane's folder source.
   */
  documentCache?: DocumentCache;
  /**
   * Report unknown fields as warnings and keep the resource, instead of refusing it (default
   * false: Istio's validation rejects unknown fields). A `documentCache` must always be used
   * with the same value.
   */
  allowUnknownFields?: boolean;
}

export interface LoadResult {
  /** Valid resources, in file order; duplicates removed. */
  resources: Resource[];
  /** Every problem found, in file order. */
  diagnostics: Diagnostic[];
  /** Files read. */
  files: string[];
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'a path component is not a directory';
  if (code === 'ELOOP') return 'too many symbolic links';
  return (err as Error).message;
}

async function collectFiles(path: string, explicit: boolean, seen: Set<string>, out: string[]): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new InputUnreadableError(path, describeFsError(err), { cause: err });
  }
  if (st.isDirectory()) {
    let real: string;
    let entries: string[];
    try {
      real = await realpath(path);
      entries = await readdir(path);
    } catch (err) {
      throw new InputUnreadableError(path, describeFsError(err), { cause: err });
    }
    if (seen.has(real)) return; // symlink loop or the same folder twice
    seen.add(real);
    for (const name of entries.sort()) {
      if (name.startsWith('.')) continue;
      const child = join(path, name);
      let cst;
      try {
        cst = await stat(child);
      } catch (err) {
        throw new InputUnreadableError(child, describeFsError(err), { cause: err });
      }
      if (cst.isDirectory()) await collectFiles(child, false, seen, out);
      else if (cst.isFile() && YAML_EXTENSIONS.includes(extname(name).toLowerCase())) out.push(child);
    }
  } else if (st.isFile() || explicit) {
    out.push(path);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Reads and parses one file; size, binary and encoding problems become diagnostics. */
export async function loadFile(path: string, shown: string, opts: LoadOptions = {}): Promise<{ resources: Resource[]; diagnostics: Diagnostic[] }> {
  const maxBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const diagnostics: Diagnostic[] = [];
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new InputUnreadableError(path, describeFsError(err), { cause: err });
  }
  if (size > maxBytes) {
    diagnostics.push({ severity: 'error', code: 'AMBIT_INPUT_TOO_LARGE', message: `file is ${(size / 1048576).toFixed(1)} MiB, more than the limit of ${(maxBytes / 1048576).toFixed(1)} MiB; it was not read (split it, or raise the limit)`, file: shown, line: 1, column: 1 });
    return { resources: [], diagnostics };
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new InputUnreadableError(path, describeFsError(err), { cause: err });
  }
  if (bytes.subarray(0, 65536).includes(0)) {
    diagnostics.push({ severity: 'error', code: 'AMBIT_INPUT_NOT_YAML', message: 'file is binary (contains NUL bytes), not YAML', file: shown, line: 1, column: 1 });
    return { resources: [], diagnostics };
  }
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    diagnostics.push({ severity: 'error', code: 'AMBIT_INPUT_NOT_YAML', message: 'file is not valid UTF-8 text, so it cannot be YAML', file: shown, line: 1, column: 1 });
    return { resources: [], diagnostics };
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (opts.documentCache !== undefined) {
    const cached = loadChunks(text, shown, opts, opts.documentCache);
    if (cached !== undefined) return cached;
  }
  const parsed = parseYamlText(text, shown, opts);
  diagnostics.push(...parsed.diagnostics);
  const resources: Resource[] = [];
  for (const o of parsed.objects) {
    const r = parseObject(o.value, { origin: o.origin, ...(opts.allowUnknownFields !== undefined ? { allowUnknownFields: opts.allowUnknownFields } : {}) });
    diagnostics.push(...r.diagnostics);
    if (r.resource !== undefined) resources.push(r.resource);
  }
  return { resources, diagnostics };
}

/**
 * `text` parsed chunk by chunk, reusing `cache` for unchanged chunks; the same result as
 * parseYamlText + parseObject. Undefined when the text must be parsed whole (directives, or a
 * YAML error in a chunk: see yaml-text.ts).
 */
function loadChunks(text: string, shown: string, opts: LoadOptions, cache: DocumentCache): { resources: Resource[]; diagnostics: Diagnostic[] } | undefined {
  const chunks = splitYamlDocuments(text);
  if (chunks === undefined) {
    cache.forget(shown);
    return undefined;
  }
  const entries: [YamlChunk, CachedChunk][] = [];
  for (const chunk of chunks) {
    let c = cache.lookup(shown, chunk);
    if (c === undefined) {
      const parsed = parseYamlChunk(chunk, shown, opts);
      if (hasYamlError(parsed)) {
        cache.forget(shown);
        return undefined;
      }
      c = {
        lineOffset: chunk.lineOffset,
        yaml: parsed.diagnostics,
        objects: parsed.objects.map((o) => {
          const r = parseObject(o.value, { origin: o.origin, ...(opts.allowUnknownFields !== undefined ? { allowUnknownFields: opts.allowUnknownFields } : {}) });
          return { resource: r.resource, diagnostics: r.diagnostics };
        }),
      };
    }
    entries.push([chunk, c]);
  }
  cache.replace(shown, entries);
  // Same order as a whole-text parse: YAML findings first, then each object's.
  const diagnostics: Diagnostic[] = [];
  const resources: Resource[] = [];
  for (const [, c] of entries) diagnostics.push(...c.yaml);
  for (const [, c] of entries) {
    for (const o of c.objects) {
      diagnostics.push(...o.diagnostics);
      if (o.resource !== undefined) resources.push(o.resource);
    }
  }
  return { resources, diagnostics };
}

/** Drops later duplicates of the same kind/namespace/name, reporting each. */
export function dropDuplicates(resources: readonly Resource[], diagnostics: Diagnostic[]): Resource[] {
  const first = new Map<string, Resource>();
  const out: Resource[] = [];
  for (const r of resources) {
    const prev = first.get(r.key);
    if (prev === undefined) {
      first.set(r.key, r);
      out.push(r);
      continue;
    }
    const where = prev.origin !== undefined ? ` (first defined at ${prev.origin.file}:${prev.origin.line})` : '';
    const d: Diagnostic = {
      severity: 'error',
      code: 'AMBIT_OBJECT_DUPLICATE',
      message: `${r.kind} ${r.ref.namespace === '' ? '' : `${r.ref.namespace}/`}${r.ref.name} is defined twice${where}; this definition is ignored`,
      resource: r.ref,
      path: 'metadata.name',
    };
    const pos = r.origin?.locate(['metadata', 'name']);
    if (r.origin !== undefined) d.file = r.origin.file;
    if (pos !== undefined) {
      d.line = pos.line;
      d.column = pos.column;
    }
    diagnostics.push(d);
  }
  return out;
}

/**
 * Reports each ignored kind once: the first AMBIT_OBJECT_UNKNOWN_KIND of a kind stays (its file
 * and line), carrying the number of objects; the others are dropped. Other diagnostics keep
 * their order.
 */
export function collapseIgnoredKinds(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  const first = new Map<string, Diagnostic>();
  const out: Diagnostic[] = [];
  for (const d of diagnostics) {
    if (d.code !== 'AMBIT_OBJECT_UNKNOWN_KIND' || d.ignoredKind === undefined) {
      out.push(d);
      continue;
    }
    const seen = first.get(d.ignoredKind);
    if (seen === undefined) {
      const copy = { ...d, count: 1 };
      first.set(d.ignoredKind, copy);
      out.push(copy);
    } else {
      seen.count = (seen.count ?? 1) + 1;
    }
  }
  for (const d of first.values()) {
    if ((d.count ?? 1) > 1) d.message = `${d.message} (${d.count} objects; this is the first)`;
  }
  return out;
}

/** Loads files and folders (recursively: *.yaml, *.yml, *.json; dot-files skipped). */
export async function loadPaths(paths: readonly string[], opts: LoadOptions = {}): Promise<LoadResult> {
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) await collectFiles(p, true, seen, files);
  const diagnostics: Diagnostic[] = [];
  const all: Resource[] = [];
  for (const f of files) {
    const shown = opts.relativeTo !== undefined && isAbsolute(f) ? relative(opts.relativeTo, f) : f;
    const r = await loadFile(f, shown, opts);
    all.push(...r.resources);
    diagnostics.push(...r.diagnostics);
  }
  const resources = dropDuplicates(all, diagnostics);
  return { resources, diagnostics: collapseIgnoredKinds(diagnostics), files };
}

/**
 * Validates objects from the Kubernetes API (no positions). Unknown fields are warnings unless
 * `allowUnknownFields` is false (the API server validated the objects already).
 */
export function parseObjects(objects: readonly unknown[], opts: { allowUnknownFields?: boolean } = {}): { resources: Resource[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const all: Resource[] = [];
  for (const o of objects) {
    const r = parseObject(o, opts.allowUnknownFields !== undefined ? { allowUnknownFields: opts.allowUnknownFields } : {});
    diagnostics.push(...r.diagnostics);
    if (r.resource !== undefined) all.push(r.resource);
  }
  const resources = dropDuplicates(all, diagnostics);
  return { resources, diagnostics: collapseIgnoredKinds(diagnostics) };
}
