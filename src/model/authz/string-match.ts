/**
 * Istio's string patterns, compiled once into sets and lists so matching a value is a hash lookup
 * plus a few `startsWith`/`endsWith` calls.
 *
 * Pattern forms (Istio's, for principals, namespaces, hosts, methods, header values, claims):
 * - `*` alone: the value is present and non-empty (e.g. `principals: ["*"]` means "any mTLS peer").
 * - `prefix*`: starts with `prefix`.
 * - `*suffix`: ends with `suffix`.
 * - anything else: exact. A `*` elsewhere in the string is a literal character, as in Istio.
 *
 * Paths additionally accept Envoy URI templates when a pattern contains `{*}` (one segment) or
 * `{**}` (any number of segments, last operator only).
 *
 * Invariant: matchers are immutable; an absent value never matches a pattern (so an absent value
 * always passes a `not*` list).
 */

/** A compiled list of patterns; `match` is true when any pattern matches. */
export class StringMatcher {
  private readonly any: boolean;
  private readonly exact: ReadonlySet<string>;
  private readonly prefixes: readonly string[];
  private readonly suffixes: readonly string[];
  private readonly templates: readonly RegExp[];
  private readonly lowerCase: boolean;

  /**
   * @param patterns Istio patterns.
   * @param options.caseInsensitive compare in lower case (default false; hosts use true).
   * @param options.pathTemplates accept `{*}`/`{**}` templates (default false; paths use true).
   */
  constructor(patterns: readonly string[], options: { caseInsensitive?: boolean; pathTemplates?: boolean } = {}) {
    this.lowerCase = options.caseInsensitive ?? false;
    let any = false;
    const exact = new Set<string>();
    const prefixes: string[] = [];
    const suffixes: string[] = [];
    const templates: RegExp[] = [];
    for (const raw of patterns) {
      const p = this.lowerCase ? raw.toLowerCase() : raw;
      if (p === '*') any = true;
      else if (options.pathTemplates === true && isPathTemplate(p)) templates.push(compilePathTemplate(p));
      else if (p.length > 1 && p.endsWith('*')) prefixes.push(p.slice(0, -1));
      else if (p.length > 1 && p.startsWith('*')) suffixes.push(p.slice(1));
      else exact.add(p);
    }
    this.any = any;
    this.exact = exact;
    this.prefixes = prefixes;
    this.suffixes = suffixes;
    this.templates = templates;
  }

  /** True when `value` is present and matches one of the patterns. */
  match(value: string | undefined): boolean {
    if (value === undefined) return false;
    const v = this.lowerCase ? value.toLowerCase() : value;
    if (this.any) return v.length > 0;
    if (this.exact.has(v)) return true;
    for (const p of this.prefixes) if (v.startsWith(p)) return true;
    for (const s of this.suffixes) if (v.endsWith(s)) return true;
    for (const t of this.templates) if (t.test(v)) return true;
    return false;
  }

  /** True when any of `values` matches. */
  matchAny(values: readonly string[] | undefined): boolean {
    if (values === undefined) return false;
    for (const v of values) if (this.match(v)) return true;
    return false;
  }

  /**
   * When every pattern is exact (no wildcard, no template), the set of values that can match;
   * used to index large policy lists. Undefined otherwise.
   */
  exactValues(): readonly string[] | undefined {
    if (this.any || this.prefixes.length > 0 || this.suffixes.length > 0 || this.templates.length > 0) return undefined;
    return [...this.exact];
  }
}

/** True when `p` uses the `{*}` or `{**}` operator of Envoy URI templates. */
export function isPathTemplate(p: string): boolean {
  return p.includes('{*}') || p.includes('{**}');
}

/**
 * Checks an Envoy URI template as Istio accepts it: operators occupy whole segments and `{**}` is
 * the last operator. Returns a problem description, or undefined when valid.
 */
export function pathTemplateProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'a path template must start with "/"';
  const segments = p.slice(1).split('/');
  let sawGlob = false;
  for (const seg of segments) {
    const hasOp = seg.includes('{');
    if (hasOp && seg !== '{*}' && seg !== '{**}') return `template operator must be a whole path segment, got "${seg}"`;
    if (sawGlob && hasOp) return '"{**}" must be the last operator of a path template';
    if (seg === '{**}') sawGlob = true;
  }
  return undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `{*}` is one non-empty segment, `{**}` zero or more segments; the rest is literal. */
function compilePathTemplate(p: string): RegExp {
  const parts = p.split(/(\{\*\*\}|\{\*\})/);
  let re = '^';
  for (const part of parts) {
    if (part === '{*}') re += '[^/]+';
    else if (part === '{**}') re += '.*';
    else re += escapeRegExp(part);
  }
  return new RegExp(re + '$');
}

/** True when a pattern has a `*` somewhere other than its first or last character. */
export function hasInnerWildcard(p: string): boolean {
  const inner = p.slice(1, -1);
  return inner.includes('*') && !isPathTemplate(p);
}
