/**
 * The analyzer behind `ambit analyze` and the control plane's start-up check: load, validate,
 * compile and cross-check, returning every diagnostic sorted by file and line.
 *
 * The public entry points of the model, for other subsystems:
 * - `loadPaths(paths, opts)` (load/load-paths.ts): files and folders → resources + diagnostics.
 * - `parseObjects(objects)` (load/load-paths.ts): Kubernetes API objects → resources + diagnostics.
 * - `compile(resources, opts)` / `applyChange(snapshot, change)` (compile/compile.ts).
 * - `Snapshot` queries (compile/snapshot.ts); `snapshot.diagnostics()` for cross-references.
 */
import { compareDiagnostics, type Diagnostic } from './diagnostics.js';
import { compile } from './compile/compile.js';
import type { CompileOptions } from './compile/options.js';
import type { Snapshot } from './compile/snapshot.js';
import { loadPaths, type LoadOptions } from './load/load-paths.js';

export interface AnalysisResult {
  snapshot: Snapshot;
  /** Load, schema and cross-reference diagnostics, sorted by file, line, column. */
  diagnostics: Diagnostic[];
  files: string[];
  counts: { error: number; warning: number; info: number; resources: number };
}

export async function analyzePaths(paths: readonly string[], opts: LoadOptions & CompileOptions = {}): Promise<AnalysisResult> {
  const loaded = await loadPaths(paths, opts);
  const snapshot = compile(loaded.resources, opts);
  const diagnostics = [...loaded.diagnostics, ...snapshot.diagnostics()].sort(compareDiagnostics);
  const counts = { error: 0, warning: 0, info: 0, resources: loaded.resources.length };
  for (const d of diagnostics) counts[d.severity]++;
  return { snapshot, diagnostics, files: loaded.files, counts };
}
