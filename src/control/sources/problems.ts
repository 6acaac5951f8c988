/**
 * Model diagnostics as control-plane configuration problems (file:line:column, code, field).
 */
import type { Diagnostic } from '../../model/diagnostics.js';
import type { ConfigProblem } from '../source.js';

export function toProblem(d: Diagnostic): ConfigProblem {
  const p: ConfigProblem = { message: d.message, code: d.code };
  if (d.file !== undefined) p.file = d.file;
  if (d.line !== undefined) p.line = d.line;
  if (d.column !== undefined) p.column = d.column;
  if (d.path !== undefined) p.path = d.path;
  return p;
}

export function errorsOf(ds: readonly Diagnostic[]): Diagnostic[] {
  return ds.filter((d) => d.severity === 'error');
}
