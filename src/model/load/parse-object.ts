/**
 * One plain object (from a YAML document or the Kubernetes API) → a validated, typed, frozen
 * `Resource`, or diagnostics explaining why not.
 *
 * Invariants:
 * - An object with any error-severity problem yields no resource: ambit never runs half a
 *   policy (dropping one bad `ipBlocks` entry would widen a rule), as the API server rejects it.
 * - Unknown fields are errors in objects from files (Istio's validation rejects them; a typo
 *   must not leave a setting silently missing), warnings under `allowUnknownFields` and under
 *   `status` (written by controllers, whose newer fields are not typos). Objects
 *   from the Kubernetes API default to warnings: the API server validated them already, so an
 *   unknown field there is a field newer than ambit's schema, not a typo.
 * - Warnings and infos (unimplemented features, kinds ambit does not model) keep the resource.
 * - Every diagnostic names the resource and, when the object came from a file, its position.
 */
import { describeRef, formatPath, severityOf, type Diagnostic, type ResourceRef } from '../diagnostics.js';
import { findKind, kindsNamed } from '../kinds/all-kinds.js';
import { nameProblem, objectMeta } from '../schema/common.js';
import { INVALID, isPlainObject, reportUnknownField, SchemaContext, type Issue } from '../schema/dsl.js';
import { findUnmodelledKind } from '../kinds/unmodelled.js';
import { deepFreeze, kindKey, refKey, type Origin, type Resource } from '../resource.js';

export interface ParseResult {
  /** The resource, absent when the object has errors or is of a kind ambit ignores. */
  resource?: Resource;
  diagnostics: Diagnostic[];
}

export interface ParseObjectOptions {
  /** Where the object came from (default: no file positions). */
  origin?: Origin;
  /**
   * Report unknown fields as warnings and drop them, instead of refusing the object (default:
   * false for objects from files, i.e. with an `origin`; true for objects without one, from
   * the Kubernetes API, which validated them).
   */
  allowUnknownFields?: boolean;
}

/** `networking.istio.io/v1` → group and version (`v1` → core group). */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.lastIndexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

function toDiagnostic(issue: Issue, origin: Origin | undefined, ref: ResourceRef | undefined): Diagnostic {
  const d: Diagnostic = { severity: issue.severity ?? severityOf(issue.code), code: issue.code, message: issue.message };
  const pos = origin?.locate(issue.path, issue.atKey);
  if (origin !== undefined) d.file = origin.file;
  if (pos !== undefined) {
    d.line = pos.line;
    d.column = pos.column;
  } else if (origin !== undefined) {
    d.line = origin.line;
    d.column = origin.column;
  }
  if (issue.path.length > 0) d.path = formatPath(issue.path);
  if (ref !== undefined) d.resource = ref;
  return d;
}

/** Validates one object. */
export function parseObject(raw: unknown, opts: ParseObjectOptions = {}): ParseResult {
  const origin = opts.origin;
  const ctx = new SchemaContext({ unknownFields: (opts.allowUnknownFields ?? origin === undefined) ? 'warn' : 'error' });
  let ignoredKind: string | undefined;
  const finish = (resource: Resource | undefined, ref: ResourceRef | undefined): ParseResult => {
    const diagnostics = ctx.issues.map((i) => toDiagnostic(i, origin, ref));
    if (ignoredKind !== undefined) for (const d of diagnostics) if (d.code === 'AMBIT_OBJECT_UNKNOWN_KIND') d.ignoredKind = ignoredKind;
    if (ref !== undefined) for (const d of diagnostics) d.message = `${describeRef(ref)}: ${d.message}`;
    const failed = diagnostics.some((d) => d.severity === 'error');
    return failed || resource === undefined ? { diagnostics } : { resource, diagnostics };
  };

  if (!isPlainObject(raw)) {
    ctx.report('AMBIT_INPUT_NOT_OBJECT', 'not a Kubernetes object (expected a mapping with apiVersion and kind)', []);
    return finish(undefined, undefined);
  }
  const apiVersion = raw['apiVersion'];
  const kind = raw['kind'];
  if (typeof apiVersion !== 'string' || apiVersion === '' || typeof kind !== 'string' || kind === '') {
    const missing = typeof apiVersion !== 'string' || apiVersion === '' ? 'apiVersion' : 'kind';
    ctx.report('AMBIT_OBJECT_NO_KIND', `object has no ${missing} (every Kubernetes object needs apiVersion and kind)`, raw[missing] === undefined ? [] : [missing]);
    return finish(undefined, undefined);
  }
  const { group, version } = splitApiVersion(apiVersion);
  const def = findKind(group, kind);
  const unmodelled = def === undefined ? findUnmodelledKind(group, kind) : undefined;
  if (unmodelled !== undefined) {
    ignoredKind = `${group === '' ? '' : `${group}/`}${kind}`;
    ctx.report('AMBIT_OBJECT_UNKNOWN_KIND', `${kind} (${group === '' ? 'core' : group}) is not modelled by ambit, so these objects are ignored: ${unmodelled.note}`, ['kind']);
    return finish(undefined, undefined);
  }
  if (def === undefined) {
    const named = kindsNamed(kind);
    if (named.length > 0) {
      const accepted = named.flatMap((k) => k.versions.map((v) => (k.group === '' ? v : `${k.group}/${v}`)));
      ctx.report('AMBIT_OBJECT_UNSUPPORTED_VERSION', `${kind} with apiVersion ${apiVersion} is not supported (accepted: ${accepted.join(', ')})`, ['apiVersion']);
    } else {
      ignoredKind = `${group === '' ? '' : `${group}/`}${kind}`;
      ctx.report('AMBIT_OBJECT_UNKNOWN_KIND', `ambit does not model ${kind} (${group === '' ? 'core' : group}), so these objects are ignored`, ['kind']);
    }
    return finish(undefined, undefined);
  }
  if (!def.versions.includes(version)) {
    ctx.report('AMBIT_OBJECT_UNSUPPORTED_VERSION', `${kind} version ${version} is not supported (accepted: ${def.versions.map((v) => (group === '' ? v : `${group}/${v}`)).join(', ')})`, ['apiVersion']);
    return finish(undefined, undefined);
  }

  const path: (string | number)[] = ['metadata'];
  const rawMeta = raw['metadata'];
  if (rawMeta === undefined || rawMeta === null) {
    ctx.report('AMBIT_SCHEMA_REQUIRED', 'missing required field "metadata"', []);
    return finish(undefined, undefined);
  }
  const meta = objectMeta.parse(rawMeta, path, ctx);
  if (meta === INVALID) return finish(undefined, undefined);
  const namespace = def.namespaced ? meta.namespace ?? 'default' : '';
  const ref: ResourceRef = { group, kind, namespace, name: meta.name };
  const badName = nameProblem(meta.name, def.nameRule);
  if (badName !== undefined) ctx.report('AMBIT_SCHEMA_NAME', badName, ['metadata', 'name']);
  const metadata = { ...meta };
  if (def.namespaced) metadata.namespace = namespace;
  else delete metadata.namespace;

  let spec: unknown = {};
  let status: unknown;
  const topLevel = def.specFromTopLevel;
  if (topLevel !== undefined) {
    const content: Record<string, unknown> = {};
    for (const k of topLevel) if (raw[k] !== undefined && raw[k] !== null) content[k] = raw[k];
    const r = def.spec.parse(content, [], ctx);
    if (r !== INVALID) spec = r;
  }
  for (const key of Object.keys(raw)) {
    if (key === 'apiVersion' || key === 'kind' || key === 'metadata') continue;
    if (topLevel?.includes(key)) continue;
    const value = raw[key];
    if (key === 'spec' && topLevel === undefined) {
      if (value === null || value === undefined) continue;
      const r = def.spec.parse(value, ['spec'], ctx);
      if (r !== INVALID) spec = r;
    } else if (key === 'status') {
      if (def.status === undefined || value === null || value === undefined) continue;
      // Status is written by controllers, not people: a field newer than ambit's schema (a
      // newer kubelet's) is no typo to refuse a Pod for, so unknown status fields only warn.
      const statusCtx = new SchemaContext({ unknownFields: 'warn' });
      const r = def.status.parse(value, ['status'], statusCtx);
      ctx.issues.push(...statusCtx.issues);
      if (r !== INVALID) status = r;
    } else if (!def.otherFields?.includes(key)) {
      reportUnknownField(ctx, key, ['apiVersion', 'kind', 'metadata', 'spec', ...(def.status !== undefined ? ['status'] : []), ...(def.otherFields ?? [])], [key]);
    }
  }
  if (def.validate !== undefined && raw['spec'] !== undefined && raw['spec'] !== null) {
    const reported = new Set(ctx.issues.map((i) => formatPath(i.path)));
    for (const issue of def.validate(raw['spec'])) {
      const p = ['spec', ...issue.path];
      if (reported.has(formatPath(p))) continue;
      ctx.report(issue.code, issue.message, p, { severity: issue.severity });
    }
  }
  if (def.specRequired === true && (raw['spec'] === undefined || raw['spec'] === null)) {
    ctx.report('AMBIT_SCHEMA_REQUIRED', 'missing required field "spec"', []);
  }

  const resource: Resource = {
    apiVersion,
    group,
    version,
    kind: def.kind,
    ref,
    key: refKey(ref),
    metadata,
    spec,
    status,
    ...(origin !== undefined ? { origin } : {}),
  };
  deepFreeze(resource.metadata);
  deepFreeze(resource.spec);
  deepFreeze(resource.status);
  deepFreeze(resource.ref);
  return finish(Object.freeze(resource), ref);
}

/** `kindKey` of a resource, re-exported for callers that index by kind. */
export function resourceKindKey(r: Resource): string {
  return kindKey(r.group, r.kind);
}
