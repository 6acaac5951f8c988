/**
 * The narrow interface the control plane needs from the resource model (src/model/): validate
 * and compile a set of parsed resources into the compiled mesh that projection.ts distributes.
 * Sources hold the parsed resources (per file, or per Kubernetes object) and call this on every
 * change; `diagnostics` with severity `error` reject the change.
 */
import type { Diagnostic } from '../model/diagnostics.js';
import type { Resource } from '../model/resource.js';
import type { CompiledMesh } from './projection.js';

export interface CompileResult {
  /** Undefined when the resources cannot be compiled at all. */
  mesh: CompiledMesh | undefined;
  /** Everything the model found, errors and warnings. */
  diagnostics: readonly Diagnostic[];
}

export interface MeshCompiler {
  compile(resources: readonly Resource[]): CompileResult;
}
