/**
 * A small typed schema language, written once and used by every kind: each schema both
 * validates a plain JS value (from YAML or the Kubernetes API) and yields a typed value, and
 * `Infer<typeof schema>` gives the TypeScript type, so the checks and the types cannot drift.
 *
 * Invariants:
 * - Parsing never throws; every problem becomes an `Issue` with a field path.
 * - Unknown fields are errors, as Istio's validation rejects them (a typo such as
 *   `circuitBreaker` must not leave a resilience or security setting silently missing); a
 *   context built with `unknownFields: 'warn'` reports them as warnings and drops them.
 * - Recognised-but-unimplemented fields and values are reported (warning) and kept (consumers
 *   decide how to fail closed); `notApplied` fields are accepted and reported (info) with why
 *   ambit does not act on them; `ignored` fields are known, irrelevant to the mesh, accepted
 *   silently and dropped.
 * - Every schema describes its shape (`shape`), so tools (the compatibility table) can walk the
 *   fields of a kind without parsing anything.
 * - `null` counts as absent (as the Kubernetes API server treats it).
 * - An invalid optional field is dropped; an invalid required field makes its object invalid.
 */
import type { DiagnosticCode, FieldPath, PathSegment, Severity } from '../diagnostics.js';
import { parseDurationMs } from '../duration.js';

export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;

export interface Issue {
  code: DiagnosticCode;
  /** Overrides the code's default severity. */
  severity?: Severity;
  message: string;
  path: FieldPath;
  /** Point at the key rather than the value (unknown fields). */
  atKey?: boolean;
}

export interface SchemaContextOptions {
  /** How unknown fields are reported: `error` (default, the object is refused) or `warn` (dropped). */
  unknownFields?: 'error' | 'warn';
}

/** Collects issues while a value is parsed. */
export class SchemaContext {
  readonly issues: Issue[] = [];
  readonly unknownFields: 'error' | 'warn';

  constructor(o: SchemaContextOptions = {}) {
    this.unknownFields = o.unknownFields ?? 'error';
  }

  report(code: DiagnosticCode, message: string, path: readonly PathSegment[], opts: { severity?: Severity; atKey?: boolean } = {}): void {
    const issue: Issue = { code, message, path: path.slice() };
    if (opts.severity !== undefined) issue.severity = opts.severity;
    if (opts.atKey === true) issue.atKey = true;
    this.issues.push(issue);
  }
}

/** The structure of a schema, for tools that walk a kind's fields (docs/compatibility.md). */
export type SchemaShape =
  | { readonly type: 'object'; readonly fields: Fields; readonly freeForm: boolean }
  | { readonly type: 'array'; readonly item: Schema<unknown> }
  | { readonly type: 'record'; readonly value: Schema<unknown> }
  | { readonly type: 'enum'; readonly values: readonly string[]; readonly unimplemented: readonly string[]; readonly deprecated: readonly string[]; readonly note: string | undefined }
  /** Opaque: anything is accepted below it. */
  | { readonly type: 'any' };

export interface Schema<T> {
  /** Human description used in messages (`integer 1..65535`). */
  readonly description: string;
  /** Structure of containers and enums (default: a scalar, nothing to walk). */
  readonly shape?: SchemaShape;
  /** Validates `value` found at `path` (a scratch stack: restore it before returning). */
  parse(value: unknown, path: PathSegment[], ctx: SchemaContext): T | Invalid;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** Type name of a value for messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number') return `number ${v}`;
  if (typeof v === 'boolean') return `boolean ${v}`;
  return typeof v;
}

function wrongType(ctx: SchemaContext, path: PathSegment[], expected: string, v: unknown): Invalid {
  let hint = '';
  if (expected.startsWith('a string') && (typeof v === 'number' || typeof v === 'boolean')) hint = ` (quote it: "${String(v)}")`;
  ctx.report('AMBIT_SCHEMA_TYPE', `expected ${expected}, got ${typeName(v)}${hint}`, path);
  return INVALID;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------- scalars

export interface StringOptions {
  /** Regular expression the whole string must match (default none). */
  pattern?: RegExp;
  /** What `pattern` means, for the message (default "the required format"). */
  format?: string;
  /** Code reported when `pattern` or `check` fails (default AMBIT_SCHEMA_FORMAT). */
  code?: DiagnosticCode;
  /** Extra check returning a message when the value is wrong (default none). */
  check?: (s: string) => string | undefined;
  /** Minimum length (default 0). */
  minLength?: number;
  /** Maximum length (default unlimited). */
  maxLength?: number;
}

export function str(o: StringOptions = {}): Schema<string> {
  const description = o.format !== undefined ? `a string (${o.format})` : 'a string';
  return {
    description,
    parse(v, path, ctx) {
      if (typeof v !== 'string') return wrongType(ctx, path, 'a string', v);
      if (o.minLength !== undefined && v.length < o.minLength) {
        ctx.report('AMBIT_SCHEMA_RANGE', o.minLength === 1 ? 'must not be empty' : `must be at least ${o.minLength} characters`, path);
        return INVALID;
      }
      if (o.maxLength !== undefined && v.length > o.maxLength) {
        ctx.report('AMBIT_SCHEMA_RANGE', `must be at most ${o.maxLength} characters (has ${v.length})`, path);
        return INVALID;
      }
      if (o.pattern !== undefined && !o.pattern.test(v)) {
        ctx.report(o.code ?? 'AMBIT_SCHEMA_FORMAT', `${JSON.stringify(v)} is not ${o.format ?? 'in the required format'}`, path);
        return INVALID;
      }
      if (o.check !== undefined) {
        const problem = o.check(v);
        if (problem !== undefined) {
          ctx.report(o.code ?? 'AMBIT_SCHEMA_FORMAT', problem, path);
          return INVALID;
        }
      }
      return v;
    },
  };
}

export interface EnumOptions<V extends string> {
  /** Values the API defines that ambit does not implement: accepted with a warning (default none). */
  unimplemented?: readonly V[];
  /** Why they are not implemented, appended to the warning (default none). */
  note?: string;
  /** Deprecated values: accepted with an info (default none). */
  deprecated?: readonly V[];
}

export function enumOf<const V extends string>(values: readonly V[], o: EnumOptions<V> = {}): Schema<V> {
  const set = new Set<string>(values);
  return {
    description: `one of ${values.join(', ')}`,
    shape: { type: 'enum', values, unimplemented: o.unimplemented ?? [], deprecated: o.deprecated ?? [], note: o.note },
    parse(v, path, ctx) {
      if (typeof v !== 'string') return wrongType(ctx, path, `a string (one of ${values.join(', ')})`, v);
      if (!set.has(v)) {
        const ci = values.find((x) => x.toLowerCase() === v.toLowerCase());
        ctx.report('AMBIT_SCHEMA_ENUM', `${JSON.stringify(v)} is not one of ${values.join(', ')}${ci !== undefined ? ` (did you mean ${ci}? values are case-sensitive)` : ''}`, path);
        return INVALID;
      }
      if (o.unimplemented?.includes(v as V)) {
        ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `${v} is not implemented by ambit${o.note !== undefined ? `: ${o.note}` : ''}`, path);
      }
      if (o.deprecated?.includes(v as V)) ctx.report('AMBIT_SCHEMA_DEPRECATED', `${v} is deprecated`, path);
      return v as V;
    },
  };
}

export interface NumberOptions {
  /** Inclusive minimum (default none). */
  min?: number;
  /** Inclusive maximum (default none). */
  max?: number;
}

function rangeText(o: NumberOptions): string {
  if (o.min !== undefined && o.max !== undefined) return ` ${o.min}..${o.max}`;
  if (o.min !== undefined) return ` >= ${o.min}`;
  if (o.max !== undefined) return ` <= ${o.max}`;
  return '';
}

function checkRange(v: number, o: NumberOptions, path: PathSegment[], ctx: SchemaContext): boolean {
  if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) {
    ctx.report('AMBIT_SCHEMA_RANGE', `${v} is out of range (allowed${rangeText(o)})`, path);
    return false;
  }
  return true;
}

export function int(o: NumberOptions = {}): Schema<number> {
  const description = `an integer${rangeText(o)}`;
  return {
    description,
    parse(v, path, ctx) {
      if (typeof v !== 'number' || !Number.isInteger(v)) return wrongType(ctx, path, description, v);
      return checkRange(v, o, path, ctx) ? v : INVALID;
    },
  };
}

export function num(o: NumberOptions = {}): Schema<number> {
  const description = `a number${rangeText(o)}`;
  return {
    description,
    parse(v, path, ctx) {
      if (typeof v !== 'number' || !Number.isFinite(v)) return wrongType(ctx, path, description, v);
      return checkRange(v, o, path, ctx) ? v : INVALID;
    },
  };
}

export function bool(): Schema<boolean> {
  return {
    description: 'a boolean',
    parse(v, path, ctx) {
      return typeof v === 'boolean' ? v : wrongType(ctx, path, 'a boolean (true or false)', v);
    },
  };
}

/** Kubernetes IntOrString (a Service targetPort). */
export function intOrString(ints: Schema<number>, strings: Schema<string>): Schema<number | string> {
  return {
    description: `${ints.description} or ${strings.description}`,
    parse(v, path, ctx) {
      if (typeof v === 'number') return ints.parse(v, path, ctx);
      if (typeof v === 'string') return strings.parse(v, path, ctx);
      return wrongType(ctx, path, `${ints.description} or a string`, v);
    },
  };
}

export interface DurationOptions {
  /** Minimum in milliseconds (default 0). */
  minMs?: number;
  /** Maximum in milliseconds (default none). */
  maxMs?: number;
}

/** A duration string (`1.5s`, `100ms`); the string is kept, `parseDurationMs` converts it. */
export function duration(o: DurationOptions = {}): Schema<string> {
  return {
    description: 'a duration (e.g. 1.5s, 100ms)',
    parse(v, path, ctx) {
      if (typeof v === 'number') {
        ctx.report('AMBIT_SCHEMA_DURATION', `${v} has no unit; write e.g. "${v}s" or "${v}ms"`, path);
        return INVALID;
      }
      if (typeof v !== 'string') return wrongType(ctx, path, 'a duration string such as "1.5s" or "100ms"', v);
      const ms = parseDurationMs(v);
      if (ms === undefined) {
        ctx.report('AMBIT_SCHEMA_DURATION', `${JSON.stringify(v)} is not a duration (write e.g. 1.5s, 100ms, 2m)`, path);
        return INVALID;
      }
      if (o.minMs !== undefined && ms < o.minMs) {
        ctx.report('AMBIT_SCHEMA_DURATION', `${v} is below the minimum of ${o.minMs}ms`, path);
        return INVALID;
      }
      if (o.maxMs !== undefined && ms > o.maxMs) {
        ctx.report('AMBIT_SCHEMA_DURATION', `${v} is above the maximum of ${o.maxMs}ms`, path);
        return INVALID;
      }
      return v;
    },
  };
}

/** Anything (used for opaque values such as JWKS documents). */
export function anyValue(): Schema<unknown> {
  return { description: 'any value', shape: { type: 'any' }, parse: (v) => v };
}

// ------------------------------------------------------------------------------ containers

export interface ArrayOptions<T> {
  /** Minimum number of items (default 0). */
  minItems?: number;
  /** Maximum number of items (default unlimited). */
  maxItems?: number;
  /** Items must be unique by this key; `what` names the key in the message (default: no check). */
  uniqueBy?: { key: (item: T) => string | undefined; what: string };
}

export function arr<T>(item: Schema<T>, o: ArrayOptions<T> = {}): Schema<T[]> {
  return {
    description: `a list of ${item.description}`,
    shape: { type: 'array', item: item as Schema<unknown> },
    parse(v, path, ctx) {
      if (!Array.isArray(v)) return wrongType(ctx, path, `a list`, v);
      if (o.minItems !== undefined && v.length < o.minItems) {
        ctx.report('AMBIT_SCHEMA_RANGE', o.minItems === 1 ? 'must have at least one item' : `must have at least ${o.minItems} items`, path);
        return INVALID;
      }
      if (o.maxItems !== undefined && v.length > o.maxItems) {
        ctx.report('AMBIT_SCHEMA_RANGE', `must have at most ${o.maxItems} items (has ${v.length})`, path);
        return INVALID;
      }
      const out: T[] = [];
      const seen = o.uniqueBy !== undefined ? new Map<string, number>() : undefined;
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        const r = item.parse(v[i], path, ctx);
        if (r !== INVALID) {
          if (seen !== undefined && o.uniqueBy !== undefined) {
            const k = o.uniqueBy.key(r);
            if (k !== undefined) {
              const prev = seen.get(k);
              if (prev !== undefined) ctx.report('AMBIT_SCHEMA_DUPLICATE_ITEM', `duplicate ${o.uniqueBy.what} ${JSON.stringify(k)} (also at index ${prev})`, path);
              else seen.set(k, i);
            }
          }
          out.push(r);
        }
        path.pop();
      }
      return out;
    },
  };
}

export interface RecordOptions {
  /** Checks a key; returns a message and code when it is wrong (default: any key). */
  key?: (k: string) => { code: DiagnosticCode; message: string } | undefined;
}

/** A mapping with free keys (labels, annotations, portLevelMtls). */
export function record<T>(value: Schema<T>, o: RecordOptions = {}): Schema<Record<string, T>> {
  return {
    description: `a mapping of ${value.description}`,
    shape: { type: 'record', value: value as Schema<unknown> },
    parse(v, path, ctx) {
      if (!isPlainObject(v)) return wrongType(ctx, path, 'a mapping', v);
      const out: Record<string, T> = {};
      for (const k of Object.keys(v)) {
        path.push(k);
        const problem = k === '__proto__' ? { code: 'AMBIT_SCHEMA_INVALID' as const, message: 'key "__proto__" is not allowed' } : o.key?.(k);
        if (problem !== undefined) {
          ctx.report(problem.code, problem.message, path, { atKey: true });
        } else {
          const r = value.parse(v[k], path, ctx);
          if (r !== INVALID) out[k] = r;
        }
        path.pop();
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------- objects

/**
 * What ambit does with a field: `normal` applies it; `deprecated` applies it and says what
 * replaces it (info); `notApplied` accepts it and says why ambit does not act on it (info);
 * `unimplemented` keeps it and warns that ambit does not implement it; `ignored` drops it
 * silently (irrelevant to the mesh: container images, resources).
 */
export type FieldMode = 'normal' | 'unimplemented' | 'notApplied' | 'ignored' | 'deprecated';

export interface Field<T, R extends boolean> {
  readonly schema: Schema<T>;
  readonly required: R;
  readonly mode: FieldMode;
  /** Why unimplemented or not applied / what replaces a deprecated field / how a normal field is applied. */
  readonly note: string | undefined;
}

/** A required field; `note` documents how ambit applies it (shown in docs/compatibility.md) (default none). */
export function req<T>(schema: Schema<T>, note?: string): Field<T, true> {
  return { schema, required: true, mode: 'normal', note };
}

/** An optional field; `note` documents how ambit applies it (shown in docs/compatibility.md) (default none). */
export function opt<T>(schema: Schema<T>, note?: string): Field<T, false> {
  return { schema, required: false, mode: 'normal', note };
}

/** A field the API defines and ambit does not implement: validated, kept, reported as a warning. */
export function unimplemented<T>(schema: Schema<T>, note: string): Field<T, false> {
  return { schema, required: false, mode: 'unimplemented', note };
}

/**
 * A field ambit accepts and does not act on, where that is harmless or the behaviour is ambit's
 * anyway (an HTTP/2 keepalive setting): validated, kept, reported as info
 * ("accepted, not applied: <note>").
 */
export function notApplied<T>(schema: Schema<T>, note: string): Field<T, false> {
  return { schema, required: false, mode: 'notApplied', note };
}

/** A deprecated field: validated, kept, reported as info with what to use instead. */
export function deprecated<T>(schema: Schema<T>, note: string): Field<T, false> {
  return { schema, required: false, mode: 'deprecated', note };
}

const IGNORED: Schema<never> = { description: 'ignored', parse: () => INVALID };

/** A field known to the API and irrelevant to the mesh (container image, resources): accepted and dropped. */
export function ignored(): Field<never, false> {
  return { schema: IGNORED, required: false, mode: 'ignored', note: undefined };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Fields = { readonly [k: string]: Field<any, boolean> };

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type RequiredKeys<F extends Fields> = { [K in keyof F]: F[K] extends Field<infer _T, true> ? K : never }[keyof F];
type OptionalKeys<F extends Fields> = {
  [K in keyof F]: F[K] extends Field<infer T, false> ? ([T] extends [never] ? never : K) : never;
}[keyof F];

export type ObjOf<F extends Fields> = Simplify<
  { [K in RequiredKeys<F>]: F[K] extends Field<infer T, true> ? T : never } & {
    [K in OptionalKeys<F>]?: F[K] extends Field<infer T, false> ? T : never;
  }
>;

export interface ObjectOptions<T> {
  /**
   * Unknown fields: `report` (default) reports AMBIT_SCHEMA_UNKNOWN_FIELD (an error, or a warning
   * under `unknownFields: 'warn'`), `allow` accepts them silently (free-form objects).
   */
  unknown?: 'report' | 'allow';
  /** Groups of fields of which at most one may be set (Istio `oneof`) (default none). */
  atMostOne?: readonly (readonly string[])[];
  /** Groups of fields of which exactly one must be set (default none). */
  exactlyOne?: readonly (readonly string[])[];
  /** Semantic check of the parsed object; report problems through `ctx` (default none). */
  check?: (value: T, path: PathSegment[], ctx: SchemaContext) => void;
  /** Name used in messages (default "a mapping"). */
  name?: string;
}

export interface ObjectSchema<T> extends Schema<T> {
  readonly fields: Fields;
}

export function obj<const F extends Fields>(fields: F, o: ObjectOptions<ObjOf<F>> = {}): ObjectSchema<ObjOf<F>> {
  const names = Object.keys(fields);
  const required = names.filter((n) => fields[n]?.required === true);
  const description = o.name ?? 'a mapping';
  return {
    description,
    fields,
    shape: { type: 'object', fields, freeForm: o.unknown === 'allow' },
    parse(v, path, ctx) {
      if (!isPlainObject(v)) return wrongType(ctx, path, description, v);
      const out: Record<string, unknown> = {};
      let ok = true;
      for (const key of Object.keys(v)) {
        const field = Object.prototype.hasOwnProperty.call(fields, key) ? fields[key] : undefined;
        const value = v[key];
        path.push(key);
        if (field === undefined) {
          if (o.unknown !== 'allow') reportUnknownField(ctx, key, names, path);
        } else if (field.mode !== 'ignored' && value !== null && value !== undefined) {
          if (field.mode === 'unimplemented') {
            ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', `"${key}" is not implemented by ambit${field.note !== undefined ? `: ${field.note}` : ''}`, path, { atKey: true });
          } else if (field.mode === 'notApplied') {
            ctx.report('AMBIT_SCHEMA_NOT_APPLIED', `"${key}" is accepted, not applied: ${field.note ?? 'ambit does not act on it'}`, path, { atKey: true });
          } else if (field.mode === 'deprecated') {
            ctx.report('AMBIT_SCHEMA_DEPRECATED', `"${key}" is deprecated${field.note !== undefined ? `: ${field.note}` : ''}`, path, { atKey: true });
          }
          const r = field.schema.parse(value, path, ctx);
          if (r === INVALID) {
            if (field.required) ok = false;
          } else {
            out[key] = r;
          }
        }
        path.pop();
      }
      for (const name of required) {
        if (v[name] === undefined || v[name] === null) {
          ctx.report('AMBIT_SCHEMA_REQUIRED', `missing required field "${name}"`, path);
          ok = false;
        }
      }
      for (const group of o.atMostOne ?? []) {
        const set = group.filter((g) => out[g] !== undefined);
        if (set.length > 1) ctx.report('AMBIT_SCHEMA_ONE_OF', `only one of ${group.join(', ')} may be set (found ${set.join(', ')})`, path);
      }
      for (const group of o.exactlyOne ?? []) {
        const set = group.filter((g) => v[g] !== undefined && v[g] !== null);
        if (set.length !== 1) {
          ctx.report('AMBIT_SCHEMA_ONE_OF', set.length === 0 ? `one of ${group.join(', ')} must be set` : `only one of ${group.join(', ')} may be set (found ${set.join(', ')})`, path);
          if (set.length === 0) ok = false;
        }
      }
      if (!ok) return INVALID;
      const typed = out as ObjOf<F>;
      o.check?.(typed, path, ctx);
      return typed;
    },
  };
}

/** Reports an unknown field as the context says: an error (the object is refused) or a warning. */
export function reportUnknownField(ctx: SchemaContext, key: string, known: readonly string[], path: readonly PathSegment[]): void {
  const near = closest(key, known);
  const hint = near !== undefined ? ` (did you mean "${near}"?)` : '';
  if (ctx.unknownFields === 'warn') {
    ctx.report('AMBIT_SCHEMA_UNKNOWN_FIELD', `unknown field "${key}"${hint}; it is ignored`, path, { atKey: true, severity: 'warning' });
  } else {
    ctx.report('AMBIT_SCHEMA_UNKNOWN_FIELD', `unknown field "${key}"${hint}: the API does not define it, so the resource is refused (as Istio's validation does); fix the name, or pass --allow-unknown-fields to ignore unknown fields with a warning`, path, { atKey: true });
  }
}

/** The known name closest to a misspelt one (edit distance <= 2), for "did you mean". */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  const lw = word.toLowerCase();
  for (const c of candidates) {
    if (Math.abs(c.length - word.length) >= bestDist) continue;
    const d = editDistance(lw, c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min((prev[j] as number) + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}
