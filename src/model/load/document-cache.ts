/**
 * The parsed documents of each file read before, so re-reading a changed file parses only the
 * documents whose text changed, and hands back the very same Resource objects for the others.
 * Identity matters downstream: the incremental compile and the control plane's projection treat
 * an unchanged object as free, so a one-pod edit in a file of a hundred pods costs one pod.
 *
 * Invariants:
 * - A cached document is reused only for the same file name, the same chunk text and the same
 *   line offset (positions are part of a Resource, through its origin).
 * - Only the chunks of each file's latest text are kept: every load replaces the file's entry,
 *   so the cache never holds more than the files' current content.
 * - A text whose chunks have YAML errors, or directives, is never cached (load-paths.ts parses
 *   it whole, exactly as without a cache).
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Resource } from '../resource.js';
import type { YamlChunk } from './yaml-text.js';

/** What one chunk of a file parsed and validated to. */
export interface CachedChunk {
  readonly lineOffset: number;
  /** YAML-level findings (warnings only: chunks with errors are not cached). */
  readonly yaml: readonly Diagnostic[];
  /** Each object of the chunk: its resource (absent when invalid) and its findings. */
  readonly objects: readonly { readonly resource: Resource | undefined; readonly diagnostics: readonly Diagnostic[] }[];
}

export class DocumentCache {
  private readonly files = new Map<string, Map<string, CachedChunk>>();

  /** The cached result for a chunk of `file`, if its text and position are unchanged. */
  lookup(file: string, chunk: YamlChunk): CachedChunk | undefined {
    const hit = this.files.get(file)?.get(chunk.text);
    return hit !== undefined && hit.lineOffset === chunk.lineOffset ? hit : undefined;
  }

  /** Replace everything cached for `file` with the chunks of its latest text. */
  replace(file: string, chunks: readonly (readonly [YamlChunk, CachedChunk])[]): void {
    this.files.set(file, new Map(chunks.map(([c, r]) => [c.text, r])));
  }

  /** Drop a file (removed, or read in a way that is not cached). */
  forget(file: string): void {
    this.files.delete(file);
  }

  /** Files with cached chunks. */
  get size(): number {
    return this.files.size;
  }
}
